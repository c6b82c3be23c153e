from django.urls import path

from turnaround import views

urlpatterns = [
    path("operations/", views.operations_page, name="operations-page"),
    path("operations/panel/", views.operations_panel, name="operations-panel"),
    path(
        "operations/studies/<id:study_id>/reassign/",
        views.operations_reassign,
        name="operations-reassign",
    ),
    path(
        "operations/studies/<id:study_id>/reroute/",
        views.operations_reroute,
        name="operations-reroute",
    ),
    path(
        "operations/studies/<id:study_id>/priority/",
        views.operations_priority,
        name="operations-priority",
    ),
    path(
        "operations/alerts/<id:alert_id>/acknowledge/",
        views.operations_acknowledge,
        name="operations-acknowledge",
    ),
    path(
        "operations/readers/<id:radiologist_id>/pause/",
        views.operations_pause,
        name="operations-pause",
    ),
    path(
        "operations/readers/<id:radiologist_id>/resume/",
        views.operations_resume,
        name="operations-resume",
    ),
    path(
        "operations/readers/<id:radiologist_id>/cases/",
        views.operations_reader_cases,
        name="operations-reader-cases",
    ),
    path("portal/", views.portal_page, name="portal-page"),
    path("portal/panel/", views.portal_panel, name="portal-panel"),
]

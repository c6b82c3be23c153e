from django.urls import path

from reporting import views
from teleradiology import converters  # noqa: F401 - registers <id:...>

urlpatterns = [
    path("studies/<id:study_id>/report/", views.editor_page, name="report-editor"),
    path("studies/<id:study_id>/report/start/", views.report_start, name="report-start"),
    path("studies/<id:study_id>/report/save/", views.report_autosave, name="report-autosave"),
    path("studies/<id:study_id>/report/sign/", views.report_sign, name="report-sign-page"),
    path(
        "studies/<id:study_id>/report/critical-communications/",
        views.critical_communication_add,
        name="report-critical-page",
    ),
    path("studies/<id:study_id>/report/addenda/", views.addendum_add, name="report-addendum-page"),
]

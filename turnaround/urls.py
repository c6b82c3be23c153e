from django.urls import path

from turnaround import views

urlpatterns = [
    path("operations/", views.operations_page, name="operations-page"),
    path("operations/panel/", views.operations_panel, name="operations-panel"),
    path("portal/", views.portal_page, name="portal-page"),
    path("portal/panel/", views.portal_panel, name="portal-panel"),
]

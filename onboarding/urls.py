from django.urls import path

from onboarding import views

urlpatterns = [
    path("facilities/<id:id>/checklist/", views.checklist_page, name="facility-checklist-page"),
    path(
        "facilities/<id:id>/checklist/test/",
        views.checklist_test,
        name="facility-checklist-test-page",
    ),
]

from django.urls import path

from teleradiology import converters  # noqa: F401 - registers <id:...>
from worklist import views

urlpatterns = [
    path("", views.home, name="home"),
    path("worklist/", views.worklist_page, name="worklist-page"),
    path("worklist/rows/", views.worklist_rows, name="worklist-rows"),
    path("worklist/next/", views.next_case, name="next-case-page"),
    path("worklist/availability/", views.worklist_availability, name="worklist-availability"),
    path("worklist/pause/", views.pause, name="worklist-pause"),
    path("worklist/resume/", views.resume, name="worklist-resume"),
    path("cases/", views.my_cases_page, name="my-cases-page"),
    path("studies/<id:study_id>/", views.study_page, name="study-page"),
    path("studies/<id:study_id>/claim/", views.claim, name="claim-page"),
    path("studies/<id:study_id>/release/", views.release, name="release-page"),
]

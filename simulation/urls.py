"""The rule simulator's pages, under /routing/simulations/."""

from django.urls import path

from simulation import views

urlpatterns = [
    path("", views.simulations_page, name="simulations-page"),
    path("drafts/new/", views.draft_new, name="simulation-draft-new"),
    path("drafts/<id:draft_id>/", views.draft_page, name="simulation-draft"),
    path("drafts/<id:draft_id>/name/", views.draft_rename, name="simulation-draft-rename"),
    path("drafts/<id:draft_id>/delete/", views.draft_delete, name="simulation-draft-delete"),
    path("drafts/<id:draft_id>/rules/new/", views.rule_add, name="simulation-rule-add"),
    path("drafts/<id:draft_id>/rules/<int:index>/", views.rule_save, name="simulation-rule-save"),
    path(
        "drafts/<id:draft_id>/rules/<int:index>/delete/",
        views.rule_delete,
        name="simulation-rule-delete",
    ),
    path("drafts/<id:draft_id>/replay/", views.draft_replay, name="simulation-replay"),
    path("drafts/<id:draft_id>/publish/", views.draft_publish, name="simulation-publish"),
    path("runs/<id:run_id>/", views.run_page, name="simulation-run"),
    path("runs/<id:run_id>/progress/", views.run_progress, name="simulation-run-progress"),
]

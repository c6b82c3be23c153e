"""Mounted at /viewer/ (viewer.build.URL_PREFIX: the bundle is rewritten for it)."""

from django.urls import path, re_path

from viewer import views

urlpatterns = [
    path("", views.home, name="viewer"),
    path("app-config.js", views.app_config, name="viewer-config"),
    re_path(r"^(?P<path>.+)$", views.file_or_route, name="viewer-file"),
]

"""DICOMweb routes (PS3.18 10.4-10.6), under ``/dicomweb/``.  UIDs are matched
loosely here and checked by the views, so a malformed one answers 400, not 404."""

from django.urls import path, re_path

from dicomweb import views

UID = r"(?P<{}>[^/]{{1,200}})"
S, SE, SOP = UID.format("study"), UID.format("series"), UID.format("sop")

app_name = "dicomweb"

urlpatterns = [
    path("studies", views.StudiesView.as_view(), name="studies"),
    path("series", views.SeriesSearchView.as_view(), name="series"),
    path("instances", views.InstancesSearchView.as_view(), name="instances"),
    re_path(rf"^studies/{S}$", views.RetrieveView.as_view(), name="study"),
    re_path(rf"^studies/{S}/metadata$", views.MetadataView.as_view(), name="study-metadata"),
    re_path(rf"^studies/{S}/thumbnail$", views.ThumbnailView.as_view(), name="study-thumbnail"),
    re_path(rf"^studies/{S}/series$", views.SeriesSearchView.as_view(), name="study-series"),
    re_path(
        rf"^studies/{S}/instances$", views.InstancesSearchView.as_view(), name="study-instances"
    ),
    re_path(rf"^studies/{S}/series/{SE}$", views.RetrieveView.as_view(), name="series-retrieve"),
    re_path(
        rf"^studies/{S}/series/{SE}/metadata$",
        views.MetadataView.as_view(),
        name="series-metadata",
    ),
    re_path(
        rf"^studies/{S}/series/{SE}/thumbnail$",
        views.ThumbnailView.as_view(),
        name="series-thumbnail",
    ),
    re_path(
        rf"^studies/{S}/series/{SE}/instances$",
        views.InstancesSearchView.as_view(),
        name="series-instances",
    ),
    re_path(
        rf"^studies/{S}/series/{SE}/instances/{SOP}$",
        views.RetrieveView.as_view(),
        name="instance",
    ),
    re_path(
        rf"^studies/{S}/series/{SE}/instances/{SOP}/metadata$",
        views.MetadataView.as_view(),
        name="instance-metadata",
    ),
    re_path(
        rf"^studies/{S}/series/{SE}/instances/{SOP}/rendered$",
        views.RenderedView.as_view(),
        name="instance-rendered",
    ),
    re_path(
        rf"^studies/{S}/series/{SE}/instances/{SOP}/thumbnail$",
        views.ThumbnailView.as_view(),
        name="instance-thumbnail",
    ),
    re_path(
        rf"^studies/{S}/series/{SE}/instances/{SOP}/frames/(?P<frames>[^/]{{1,2000}})$",
        views.FramesView.as_view(),
        name="frames",
    ),
    re_path(
        rf"^studies/{S}/series/{SE}/instances/{SOP}/frames/(?P<frame>[^/]{{1,12}})/rendered$",
        views.RenderedView.as_view(),
        name="frame-rendered",
    ),
    re_path(
        rf"^studies/{S}/series/{SE}/instances/{SOP}/bulk/(?P<tag>[^/]{{1,20}})$",
        views.BulkDataView.as_view(),
        name="bulk",
    ),
]

from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from audit.api import AuditEventViewSet
from health.views import healthz
from ingest.api import QuarantineViewSet
from network import api as network_api
from onboarding import api as onboarding_api
from orders.api import Hl7MessageViewSet
from priors.api import StudyPriorsApi
from reporting.api.delivery import ReportFhirApi, ReportHl7Api, ReportMessagesApi, ReportPdfApi
from reporting.api.macros import MacroViewSet
from reporting.api.reports import ReportViewSet, StudyReportApi
from reporting.api.templates import ReportTemplateViewSet
from review import api as review_api
from routing.api import RoutingRuleViewSet, StudyRoutingApi, StudyTriageApi
from simulation import api as simulation_api
from studies.api import OrderViewSet, StudyViewSet
from teleradiology.converters import IdRouter
from teleradiology.keepalive import session_keepalive
from turnaround import api as turnaround_api
from turnaround import views as turnaround_views
from worklist import api as worklist_api

router = IdRouter()
router.register("facilities", network_api.FacilityViewSet, basename="facility")
router.register("radiologists", network_api.RadiologistViewSet, basename="radiologist")
router.register("licenses", network_api.LicenseViewSet, basename="license")
router.register("privileges", network_api.FacilityPrivilegeViewSet, basename="privilege")
router.register("shifts", network_api.ShiftViewSet, basename="shift")
router.register("rotas", network_api.RotaViewSet, basename="rota")
router.register("leaves", network_api.LeaveViewSet, basename="leave")
router.register("jurisdictions", network_api.JurisdictionViewSet, basename="jurisdiction")
router.register("regions", network_api.RegionViewSet, basename="region")
router.register("subspecialties", network_api.SubspecialtyViewSet, basename="subspecialty")
router.register("studies", StudyViewSet, basename="study")
router.register("orders", OrderViewSet, basename="order")
router.register("audit-events", AuditEventViewSet, basename="audit-event")
router.register("quarantine", QuarantineViewSet, basename="quarantine")
router.register("hl7-messages", Hl7MessageViewSet, basename="hl7-message")
router.register("routing-rules", RoutingRuleViewSet, basename="routing-rule")
router.register("report-templates", ReportTemplateViewSet, basename="report-template")
router.register("reports", ReportViewSet, basename="report")
router.register("me/macros", MacroViewSet, basename="macro")
router.register("second-opinions", review_api.SecondOpinionViewSet, basename="second-opinion")
router.register("peer-reviews", review_api.PeerReviewViewSet, basename="peer-review")
router.register(
    "routing-simulations/drafts", simulation_api.DraftViewSet, basename="routing-simulation-draft"
)
router.register(
    "routing-simulations/runs", simulation_api.RunViewSet, basename="routing-simulation-run"
)

urlpatterns = [
    path("", include("worklist.urls")),
    path("", include("reporting.urls")),
    path("", include("turnaround.urls")),
    path("", include("onboarding.urls")),
    path("routing/simulations/", include("simulation.urls")),
    path("viewer/", include("viewer.urls")),
    # Sign-in (password, second factor, lockout), sign-out, security settings, API
    # tokens; also the admin's and the browsable API's sign-in (before their own).
    path("", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("dicomweb/", include("dicomweb.urls")),
    path("api/v1/", include(router.urls)),
    path("api/v1/me/", network_api.MeApi.as_view(), name="me"),
    path("api/v1/me/pause/", network_api.MePauseApi.as_view(), name="me-pause"),
    path("api/v1/me/resume/", network_api.MeResumeApi.as_view(), name="me-resume"),
    path(
        "api/v1/reading-groups/<id:reading_group_id>/",
        network_api.ReadingGroupApi.as_view(),
        name="reading-group",
    ),
    path(
        "api/v1/facilities/<id:id>/checklist/",
        onboarding_api.ChecklistApi.as_view(),
        name="facility-checklist",
    ),
    path(
        "api/v1/facilities/<id:id>/checklist/test/",
        onboarding_api.ChecklistTestApi.as_view(),
        name="facility-checklist-test",
    ),
    path("api/v1/studies/<id:study_id>/routing/", StudyRoutingApi.as_view(), name="study-routing"),
    path("api/v1/studies/<id:study_id>/priors/", StudyPriorsApi.as_view(), name="study-priors"),
    path("api/v1/worklist/", worklist_api.WorklistApi.as_view(), name="worklist"),
    path("api/v1/worklist/next/", worklist_api.NextCaseApi.as_view(), name="worklist-next"),
    path("api/v1/me/cases/", worklist_api.MyCasesApi.as_view(), name="my-cases"),
    path("api/v1/studies/<id:study_id>/claim/", worklist_api.ClaimApi.as_view(), name="claim"),
    path("api/v1/studies/<id:study_id>/accept/", worklist_api.AcceptApi.as_view(), name="accept"),
    path(
        "api/v1/studies/<id:study_id>/decline/", worklist_api.DeclineApi.as_view(), name="decline"
    ),
    path(
        "api/v1/studies/<id:study_id>/release/", worklist_api.ReleaseApi.as_view(), name="release"
    ),
    path(
        "api/v1/studies/<id:study_id>/reassign/",
        worklist_api.ReassignApi.as_view(),
        name="reassign",
    ),
    path("api/v1/studies/<id:study_id>/triage/", StudyTriageApi.as_view(), name="study-triage"),
    path(
        "api/v1/studies/<id:study_id>/report/",
        StudyReportApi.as_view(),
        name="study-report",
    ),
    path(
        "api/v1/reports/<id:report_id>/hl7",
        ReportHl7Api.as_view(),
        name="report-hl7",
    ),
    path(
        "api/v1/reports/<id:report_id>/fhir",
        ReportFhirApi.as_view(),
        name="report-fhir",
    ),
    path(
        "api/v1/reports/<id:report_id>/pdf",
        ReportPdfApi.as_view(),
        name="report-pdf",
    ),
    path(
        "api/v1/reports/<id:report_id>/messages/",
        ReportMessagesApi.as_view(),
        name="report-messages",
    ),
    path(
        "api/v1/studies/<id:study_id>/timeline/",
        turnaround_api.StudyTimelineApi.as_view(),
        name="study-timeline",
    ),
    path("api/v1/turnaround/", turnaround_api.TurnaroundApi.as_view(), name="turnaround"),
    path(
        "api/v1/reports/<id:report_id>/second-opinions/",
        review_api.ReportSecondOpinionsApi.as_view(),
        name="report-second-opinions",
    ),
    path(
        "api/v1/reports/<id:report_id>/peer-reviews/",
        review_api.ReportPeerReviewsApi.as_view(),
        name="report-peer-reviews",
    ),
    path(
        "api/v1/peer-review-policies/",
        review_api.PeerReviewPolicyListApi.as_view(),
        name="peer-review-policies",
    ),
    path(
        "api/v1/peer-review-policies/<id:reading_group_id>/",
        review_api.PeerReviewPolicyApi.as_view(),
        name="peer-review-policy",
    ),
    path("api/v1/operations/", turnaround_api.OperationsApi.as_view(), name="operations"),
    path(
        "api/v1/operations/studies/<id:study_id>/readers/",
        turnaround_api.ReassignChoicesApi.as_view(),
        name="operations-reassign-choices",
    ),
    path(
        "api/v1/operations/studies/<id:study_id>/reroute/",
        turnaround_api.RerouteApi.as_view(),
        name="operations-reroute-api",
    ),
    path(
        "api/v1/operations/alerts/<id:alert_id>/acknowledge/",
        turnaround_api.AlertAcknowledgeApi.as_view(),
        name="operations-acknowledge-api",
    ),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's init script as a file: no inline script (CSP).
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api/swagger_ui.html"),
        name="docs",
    ),
    path("api-auth/", include("rest_framework.urls")),
    path("healthz", healthz, name="healthz"),
    path("session/keep-alive/", session_keepalive, name="session-keepalive"),
    path("metrics", turnaround_views.metrics, name="metrics"),
]
# Static files from Django itself only with DEBUG on (the demo, served by gunicorn
# as in production); a production proxy serves STATIC_ROOT (collectstatic).
urlpatterns += staticfiles_urlpatterns()

"""Two reading groups, A and B, each with everything a tenant owns: people of every
role, a final report with its versions, addendum, critical communication, result
message and delivery, a second opinion and a peer review, an offered study with its
routing decisions, images behind DICOMweb, configuration (rules, pools, template,
macro, endpoint, policy), an alert and a quarantined object.

The patients of each group have identifiers found nowhere else, so a response that
carries one of them carries that group's patient data (the detector of the
audit-coverage test and of the permission matrix).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_raise
from ingest.models import QuarantinedObject
from ingest.storage import FileSystemStorage
from ingest.synthetic import StudySpec
from network.models import Facility, Leave, Radiologist, ReadingGroup, Rota
from network.services import facility_staff_grant, reading_group_admin_grant
from reporting.models import FacilityEndpoint, Macro, Report, ReportTemplate
from reporting.services.critical import critical_communication_record
from reporting.services.delivery import facility_endpoint_save
from reporting.services.macros import macro_save
from reporting.services.reports import report_addendum_add, report_save_draft, report_sign
from reporting.services.templates import report_template_create, report_templates_seed
from review.models import ReviewCase
from review.services import peer_review_policy_set, peer_review_request, second_opinion_request
from routing.models import FacilityTierPool, ReaderPool, RoutingRule
from routing.services import study_route
from studies.models import Study
from studies.services import study_transition
from tests import factories as f
from tests.dicomweb.conftest import StoredStudy, store_study

COMPLETE_VALUES = {"indication": "Fall, head strike.", "haemorrhage": False, "acute_infarct": False}


@dataclass
class Patient:
    patient_id: str
    family: str
    given: str
    birth_date: dt.date
    accession: str

    @property
    def markers(self) -> list[str]:
        """Strings that, found in a response, mean this patient's data left with it."""
        born = self.birth_date
        return [
            self.patient_id,
            self.family,
            self.family.title(),
            self.accession,
            born.isoformat(),
            born.strftime("%Y%m%d"),
        ]


@dataclass
class Tenant:
    label: str
    group: ReadingGroup
    facility: Facility
    admin: User
    staff: User
    reader: Radiologist
    second_reader: Radiologist
    patients: list[Patient]
    final_study: Study
    report: Report
    stored: StoredStudy
    offered_study: Study
    template: ReportTemplate
    rule: RoutingRule
    pool: ReaderPool
    macro: Macro
    endpoint: FacilityEndpoint
    alert: Alert
    quarantined: QuarantinedObject
    second_opinion: ReviewCase
    peer_review: ReviewCase
    objects: dict[str, Any] = field(default_factory=dict)
    hl7_message: Any = None  # an HL7 order as received (orders.Hl7Message)
    routing_draft: Any = None  # a draft of its rules (simulation.RoutingDraft)
    simulation_run: Any = None  # a finished replay of that draft (simulation.SimulationRun)

    @property
    def markers(self) -> list[str]:
        return [m for p in self.patients for m in p.markers]


def _reader(group: ReadingGroup, facility: Facility, name: str) -> Radiologist:
    now = timezone.now()
    reader = f.RadiologistFactory(
        user=f.UserFactory(username=name, first_name=name.title()),
        reading_group=group,
        home_region=facility.region,
        subspecialties=["neuro", "general"],
        workload_cap=9,
    )
    f.LicenseFactory(
        radiologist=reader,
        jurisdiction=facility.jurisdiction,
        scope="final",
        valid_from=dt.date(2020, 1, 1),
        valid_to=dt.date(2099, 12, 31),
    )
    f.PrivilegeFactory(
        radiologist=reader,
        facility=facility,
        valid_from=dt.date(2020, 1, 1),
        valid_to=dt.date(2099, 12, 31),
    )
    f.ShiftFactory(
        radiologist=reader,
        starts_at=now - dt.timedelta(hours=4),
        ends_at=now + dt.timedelta(hours=8),
    )
    # A weekly rota and leave (no shifts generated from them: the fixture's shift
    # above is the one that matters).
    Rota.objects.create(
        radiologist=reader,
        weekday=6,
        starts_at=dt.time(22),
        ends_at=dt.time(6),
        valid_from=dt.date(2099, 1, 1),
    )
    Leave.objects.create(
        radiologist=reader, starts_on=dt.date(2099, 2, 1), ends_on=dt.date(2099, 2, 7)
    )
    return reader


def build_tenant(
    label: str, *, storage: FileSystemStorage, folder: Path, region_code: str, state: str
) -> Tenant:
    """One reading group with everything it owns (see the module's docstring)."""
    low = label.lower()
    group = f.ReadingGroupFactory(name=f"Tenant {label}")
    facility = f.FacilityFactory(
        name=f"Facility {label}",
        reading_group=group,
        ae_titles=[f"TEN_{label}"],
        jurisdiction=f.JurisdictionFactory(code=state),
        region=f.RegionFactory(code=region_code, name=region_code, country="US"),
    )
    admin = f.UserFactory(username=f"admin_{low}")
    reading_group_admin_grant(actor=None, user=admin, group=group)
    staff = f.UserFactory(username=f"staff_{low}")
    facility_staff_grant(actor=None, user=staff, facility=facility)
    reader = _reader(group, facility, f"dr_{low}_one")
    second_reader = _reader(group, facility, f"dr_{low}_two")

    rule = RoutingRule.objects.create(
        reading_group=group,
        name=f"Neuro {label}",
        position=10,
        modalities=["CT", "MR"],
        body_parts=["HEAD"],
        allow_general=True,
    )
    rule.subspecialties.set([f.subspecialty("neuro")])
    rule.facilities.set([facility])
    default = RoutingRule.objects.create(
        reading_group=group, name=f"Default {label}", is_default=True, allow_general=True
    )
    default.subspecialties.set([f.subspecialty("general")])
    pool = ReaderPool.objects.create(reading_group=group, name=f"Pool {label}")
    pool.radiologists.set([reader, second_reader])

    seed = {"A": 1, "B": 2}.get(label, 3)
    patients = [
        Patient(
            patient_id=f"PID{label}{seed}7{n}41",
            family=f"ZQX{label}FAMILY{n}",
            given=f"Given{label}",
            birth_date=dt.date(1950 + 7 * seed + n, 2 + seed + n, 11 + seed + 3 * n),
            accession=f"ACX{label}{seed}9{n}",
        )
        for n in range(3)
    ]
    final_patient, offered_patient, claimed_patient = patients

    # The final report's study, with images behind DICOMweb.
    spec = StudySpec(
        patient_id=final_patient.patient_id,
        patient_name=f"{final_patient.family}^{final_patient.given}",
        birth_date=final_patient.birth_date.strftime("%Y%m%d"),
        accession=final_patient.accession,
    )
    stored = store_study(
        storage,
        facility,
        folder / low,
        spec=spec,
        series=(("CT", 2),),
        rows=16,
        columns=16,
        aet=f"TEN_{label}",
    )
    study = stored.study
    now = timezone.now()
    study_transition(study_id=study.pk, to_status="ready", at=now)
    study_transition(study_id=study.pk, to_status="offered")
    study_transition(
        study_id=study.pk, to_status="claimed", assigned_radiologist=reader, claim_activity_at=now
    )
    report_templates_seed()
    shared = ReportTemplate.objects.get(code="ct-head-noncontrast", reading_group=None)
    draft = report_save_draft(
        study_id=study.pk,
        radiologist=reader,
        template_id=shared.pk,
        values={**COMPLETE_VALUES, "haemorrhage": True, "midline_shift": 0},
        impression=f"Subdural haematoma of {final_patient.family}.",
        critical_severity="critical",
    )
    critical_communication_record(
        report_id=draft.pk,
        radiologist=reader,
        recipient_name=f"Dr Caller {label}",
        recipient_role="Emergency physician",
        method="phone",
        communicated_at=now - dt.timedelta(minutes=1),
        read_back_confirmed=True,
    )
    endpoint = facility_endpoint_save(
        endpoint=FacilityEndpoint(
            facility=facility, kind=FacilityEndpoint.Kind.MLLP, host="127.0.0.1", port=9
        ),
        actor=None,
    )
    report_sign(report_id=draft.pk, radiologist=reader, status="final")
    report_addendum_add(
        report_id=draft.pk, radiologist=reader, text=f"Addendum for {final_patient.family}."
    )
    report = Report.objects.get(pk=draft.pk)
    second_opinion = second_opinion_request(report_id=report.pk, actor=staff, question="Sure?")
    peer_review = peer_review_request(report_id=report.pk, actor=admin)
    peer_review_policy_set(reading_group=group, sample_percent=Decimal(5), actor=admin)

    # A study offered to the group's readers, with its routing decisions.
    offered = f.StudyFactory(
        facility=facility,
        modality="CT",
        body_part="HEAD",
        priority=2,
        patient_id=offered_patient.patient_id,
        patient_name=f"{offered_patient.family}^{offered_patient.given}",
        patient_birth_date=offered_patient.birth_date,
        accession_number=offered_patient.accession,
        received_at=now - dt.timedelta(minutes=2),
    )
    study_transition(study_id=offered.pk, to_status="ready", at=now)
    study_route(study_id=offered.pk, now=now)
    # The offered study's order (as the HL7 feed leaves it) and an order still
    # waiting for its images, each of one of the tenant's patients.
    f.OrderFactory(
        facility=facility,
        accession_number=offered_patient.accession,
        study=offered,
        patient=offered.patient_record,
        reason_for_exam=f"Reason of {offered_patient.family}",
        patient_class="E",
    )
    f.OrderFactory(
        facility=facility,
        accession_number=f"EXP{label}{seed}",
        patient=study.patient_record,
        received_at=now - dt.timedelta(hours=1),
    )

    # A study the reader holds (their cases), not yet reported.
    claimed = f.StudyFactory(
        facility=facility,
        modality="CT",
        body_part="CHEST",
        priority=3,
        patient_id=claimed_patient.patient_id,
        patient_name=f"{claimed_patient.family}^{claimed_patient.given}",
        patient_birth_date=claimed_patient.birth_date,
        accession_number=claimed_patient.accession,
        received_at=now - dt.timedelta(minutes=3),
    )
    study_transition(study_id=claimed.pk, to_status="ready", at=now)
    study_transition(study_id=claimed.pk, to_status="offered")
    study_transition(
        study_id=claimed.pk,
        to_status="claimed",
        assigned_radiologist=reader,
        claim_activity_at=now,
    )

    template = report_template_create(
        actor=admin,
        reading_group=group,
        document={
            "code": f"tenant-{low}-note",
            "name": f"Tenant {label} note",
            "modality": "CT",
            "schema": shared.schema,
        },
    )
    macro = macro_save(radiologist=reader, name=f"macro {low}", text=f"Macro text {label}.")
    alert = alert_raise(
        kind=Alert.Kind.SLA,
        dedupe_key=f"tenant-{low}-sla",
        message=f"Study {offered.pk} at risk",
        reading_group=group,
        study=offered,
    )
    assert alert is not None
    quarantined = QuarantinedObject.objects.create(
        received_at=now,
        calling_ae=f"TEN_{label}",
        facility=facility,
        reason="unparseable",
        size_bytes=10,
        sha256="0" * 64,
        study_instance_uid=f"2.25.{seed}999",
    )
    FacilityTierPool.objects.create(facility=facility, tier=1, pool=pool)
    tenant = Tenant(
        label=label,
        group=group,
        facility=facility,
        admin=admin,
        staff=staff,
        reader=reader,
        second_reader=second_reader,
        patients=patients,
        final_study=study,
        report=report,
        stored=stored,
        offered_study=offered,
        template=template,
        rule=rule,
        pool=pool,
        macro=macro,
        endpoint=endpoint,
        alert=alert,
        quarantined=quarantined,
        second_opinion=second_opinion,
        peer_review=peer_review,
    )
    tenant.hl7_message = _hl7_message(tenant, offered_patient, now)
    tenant.routing_draft, tenant.simulation_run = _simulation_rows(tenant, now)
    _accounts_rows(tenant)
    return tenant


def _hl7_message(t: Tenant, patient: Patient, now: dt.datetime) -> Any:
    """An HL7 order from the tenant's facility, as the listener stores it."""
    from orders.models import Hl7Message

    raw = (
        f"MSH|^~\\&|RIS|TEN{t.label}|TELERAD|TELERAD|20261207103000||ORM^O01|HL7{t.label}|P|2.5.1\r"
        f"PID|1||{patient.patient_id}||{patient.family}^{patient.given}||"
        f"{patient.birth_date.strftime('%Y%m%d')}\r"
    )
    return Hl7Message.objects.create(
        facility=t.facility,
        received_at=now,
        peer_address="127.0.0.1",
        control_id=f"HL7{t.label}",
        message_type="ORM^O01",
        version="2.5.1",
        sending_facility=f"TEN{t.label}",
        patient_id=patient.patient_id,
        raw=raw,
        size_bytes=len(raw),
        encoding="utf-8",
        outcome="AE",
        error_text=f"unknown accession {patient.accession}",
        error_field="OBR-18",
        ack="MSH|^~\\&|TELERAD||RIS|TEN|20261207103000||ACK^O01^ACK|A1|P|2.5.1\rMSA|AE|x\r",
    )


def _accounts_rows(t: Tenant) -> None:
    """Rows of the sign-in apps that belong to the tenant's people (their second
    factors, API tokens, sign-in attempts), for the pages that show them."""
    from django.apps import apps

    if apps.is_installed("django_otp.plugins.otp_totp"):
        apps.get_model("otp_totp", "TOTPDevice").objects.create(user=t.admin, name="phone")
    if apps.is_installed("django_otp.plugins.otp_static"):
        apps.get_model("otp_static", "StaticDevice").objects.create(user=t.admin, name="codes")
    if apps.is_installed("accounts"):
        with contextlib.suppress(LookupError):
            apps.get_model("accounts", "ApiToken").objects.create(user=t.admin, expiry=None)
    if apps.is_installed("axes"):
        common = {
            "username": t.admin.username,
            "ip_address": "127.0.0.9",
            "user_agent": "test",
            "http_accept": "*/*",
            "path_info": "/login/",
        }
        for name, extra in (
            ("AccessAttempt", {"get_data": "", "post_data": "", "failures_since_start": 1}),
            ("AccessLog", {}),
            ("AccessFailureLog", {"locked_out": False}),
        ):
            with contextlib.suppress(LookupError):
                model = apps.get_model("axes", name)
                names = {f.name for f in model._meta.get_fields()}
                model.objects.create(**{k: v for k, v in {**common, **extra}.items() if k in names})


def build_world(storage: FileSystemStorage, folder: Path) -> tuple[Tenant, Tenant]:
    """Groups A and B, apart (each in its own jurisdiction and region)."""
    a = build_tenant("A", storage=storage, folder=folder, region_code="us-tx-north", state="US-TX")
    b = build_tenant("B", storage=storage, folder=folder, region_code="us-northeast", state="US-NY")
    return a, b


def _simulation_rows(t: Tenant, now: dt.datetime) -> tuple[Any, Any]:
    """A draft of the tenant's rules and a finished run of it whose sample names one
    of its studies (what another group's people must never see)."""
    from simulation.models import RoutingDraft, SimulationRun
    from simulation.selectors import live_rules_as_draft

    draft = RoutingDraft.objects.create(
        reading_group=t.group,
        name=f"Draft {t.label}",
        rules=live_rules_as_draft(reading_group_id=t.group.pk),
    )
    run = SimulationRun.objects.create(
        draft=draft,
        reading_group=t.group,
        window_start=now - dt.timedelta(days=7),
        window_end=now,
        status=SimulationRun.Status.DONE,
        result={
            "elsewhere": {
                "count": 1,
                "sample": [{"study_id": t.final_study.pk, "label": t.final_study.accession_number}],
            }
        },
    )
    return draft, run


# --- Filling URL parameters with a tenant's objects ------------------------------
def router_objects(t: Tenant) -> dict[str, Any]:
    """The object behind each API router basename, for tenant ``t``.  Reference data
    (jurisdictions, regions, subspecialties) is shared by every group."""
    from audit.models import AuditEvent

    reader = t.reader
    return {
        "facility": t.facility,
        "radiologist": reader,
        "license": reader.licenses.first(),
        "privilege": reader.privileges.first(),
        "shift": reader.shifts.first(),
        "rota": reader.rotas.first(),
        "leave": reader.leaves.first(),
        "jurisdiction": t.facility.jurisdiction,
        "region": t.facility.region,
        "subspecialty": reader.subspecialties.first(),
        "study": t.final_study,
        "audit-event": AuditEvent.objects.filter(reading_group_id=t.group.pk)
        .exclude(patient_id="")
        .first(),
        "quarantine": t.quarantined,
        "hl7-message": t.hl7_message,
        "routing-rule": t.rule,
        "report-template": t.template,
        "report": t.report,
        "macro": t.macro,
        "second-opinion": t.second_opinion,
        "peer-review": t.peer_review,
        "routing-simulation-draft": t.routing_draft,
        "routing-simulation-run": t.simulation_run,
    }


SHARED_BASENAMES = {"jurisdiction", "region", "subspecialty"}
SHARED_MODELS = {
    "network.jurisdiction",
    "network.region",
    "network.subspecialty",
    "auth.group",
    "auth.permission",
    "contenttypes.contenttype",
    "health.heartbeat",
}


def admin_object(t: Tenant, label: str) -> Any:
    """An object of the admin model ``label`` that belongs to tenant ``t``: a known one,
    else any row whose reading group (found as the audit trail finds it) is t's, else
    a row owned by one of t's users."""
    from django.apps import apps

    from audit.models import AuditEvent
    from audit.services import group_path

    known: dict[str, Any] = {
        "auth.user": t.staff,
        "network.readinggroup": t.group,
        "studies.study": t.final_study,
        "reporting.report": t.report,
        "reporting.reporttemplate": t.template,
        "routing.routingrule": t.rule,
        "routing.readerpool": t.pool,
        "alerts.alert": t.alert,
        "ingest.quarantinedobject": t.quarantined,
        "orders.hl7message": t.hl7_message,
        "review.reviewcase": t.second_opinion,
        "audit.auditevent": AuditEvent.objects.filter(reading_group_id=t.group.pk)
        .exclude(patient_id="")
        .first(),
    }
    if label in known:
        return known[label]
    model = apps.get_model(label)
    if label == "health.heartbeat":
        return model._default_manager.get_or_create(
            name="tenant-beat", defaults={"at": timezone.now()}
        )[0]
    if label in SHARED_MODELS:
        return model._default_manager.first()
    path = group_path(model)
    if path is not None:
        row = model._default_manager.filter(**{path: t.group.pk}).first()
        if row is not None:
            return row
    users = [t.admin.pk, t.staff.pk, t.reader.user_id]
    names = [t.admin.username, t.staff.username, t.reader.user.username]
    fields = {f.name for f in model._meta.get_fields()}
    if "username" in fields:
        row = model._default_manager.filter(username__in=names).first()
        if row is not None:
            return row
    for name in ("user", "owner", "created_by"):
        try:
            model._meta.get_field(name)
        except Exception:  # noqa: S112 -- a model without the field
            continue
        row = model._default_manager.filter(**{f"{name}_id__in": users}).first()
        if row is not None:
            return row
    return None


def make_picker(t: Tenant) -> Any:
    """``pick(route, name)`` for routes.build_path, with tenant ``t``'s objects."""
    from django.contrib.contenttypes.models import ContentType

    from tests.security.routes import Route, admin_model_label

    objects = router_objects(t)
    basenames = sorted(objects, key=len, reverse=True)
    instance_uid = str(t.final_study.series.first().instances.first().sop_instance_uid)  # type: ignore[union-attr]

    def basename_of(route: Route) -> str | None:
        short = route.name.rsplit(":", 1)[-1]
        for base in basenames:
            if short == base or short.startswith(base + "-"):
                return base
        return None

    def pick(route: Route, name: str) -> str | None:
        simple = {
            "study_id": t.final_study.pk,
            "report_id": t.report.pk,
            "reading_group_id": t.group.pk,
            "format": "json",
            "app_label": "network",
            "study": t.final_study.study_instance_uid,
            "series": t.stored.series_uids[0],
            "sop": instance_uid,
            "frames": "1",
            "frame": "1",
            "tag": "7FE00010",
            "radiologist_id": t.reader.pk,
            "alert_id": t.alert.pk,
            "draft_id": t.routing_draft.pk,
            "run_id": t.simulation_run.pk,
            "index": 0,
        }
        if route.name == "admin:view_on_site":
            if name == "content_type_id":
                return str(ContentType.objects.get_for_model(Study).pk)
            if name == "object_id":
                return str(t.final_study.pk)
        if name == "format" and "drf_format_suffix" in route.template:
            return ".json"
        if name in simple:
            return str(simple[name])
        if name == "user_id":
            return str(t.staff.pk)
        if name == "url":
            return "no-such-page/"
        if name == "token_id":
            from django.apps import apps

            token = (
                apps.get_model("accounts", "ApiToken")
                .objects.filter(user__in=[t.admin, t.staff, t.reader.user])
                .first()
            )
            return str(token.pk) if token is not None else None
        if name == "path":
            return "admin/css/base.css" if route.template.startswith("^static") else "index.html"
        label = admin_model_label(route)
        if label is not None and name in ("object_id", "id", "pk"):
            obj = admin_object(t, label)
            return str(obj.pk) if obj is not None else None
        base = basename_of(route)
        if base is not None and name in ("pk", "id"):
            obj = objects[base]
            return str(obj.pk) if obj is not None else None
        return None

    return pick

"""A report's template must fit its study (modality, body part, procedure): the service
refuses one that does not, with a sentence the API answers as a 400; the editor offers
only fitting ones; an admin's per-template override lets one template fit any study."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client

from reporting.models import Report, ReportTemplate
from reporting.selectors import template_fit_refusal, template_matches
from reporting.services.templates import report_template_clean, report_template_new_version
from studies.services import study_transition
from teleradiology.errors import DomainError
from tests import factories as f
from tests.reporting.conftest import NOW, hand_to

pytestmark = pytest.mark.django_db

MAMMO_REFUSAL = (
    "The template 'Mammography screening' does not fit this study: it is for modality MG, "
    "body part BREAST; this study is MR BRAIN. "
    "Choose a template for this study's modality and body part."
)


@pytest.fixture
def mr_brain_study(facility_a, reader):
    study = f.StudyFactory(
        facility=facility_a,
        modality="MR",
        body_part="BRAIN",
        priority=2,
        received_at=NOW - dt.timedelta(minutes=1),
    )
    study_transition(study_id=study.pk, to_status="ready", at=NOW)
    return hand_to(study, reader)


def _save(api, reader, study, template):
    return api(reader.user).post(
        f"/api/v1/studies/{study.pk}/report/", {"template": template.pk}, format="json"
    )


def _signed_in(user):
    client = Client()
    client.force_login(user)
    return client


def _general(group_admin, api, templates, **changes):
    """A group's own copy of the mammography template, allowed on any study."""
    exported = api(group_admin).get(
        f"/api/v1/report-templates/{templates['mg-screening'].pk}/export/"
    )
    document = {**exported.json(), "code": "general-any", "name": "General", **changes}
    response = api(group_admin).post("/api/v1/report-templates/", document, format="json")
    assert response.status_code == 201, response.json()
    return response


def test_the_api_refuses_a_template_that_does_not_fit_with_its_reason(
    api, reader, mr_brain_study, templates
):
    response = _save(api, reader, mr_brain_study, templates["mg-screening"])
    assert response.status_code == 400
    assert response.json() == {"detail": MAMMO_REFUSAL, "code": "template_unfit"}
    assert not Report.objects.filter(study=mr_brain_study).exists()
    fitting = _save(api, reader, mr_brain_study, templates["mr-brain"])
    assert fitting.status_code == 200 and fitting.json()["template_code"] == "mr-brain"


def test_the_editor_start_form_shows_the_same_refusal(reader, mr_brain_study, templates):
    response = _signed_in(reader.user).post(
        f"/studies/{mr_brain_study.pk}/report/start/", {"template": templates["mg-screening"].pk}
    )
    assert response.status_code == 400
    assert "does not fit this study" in response.content.decode()
    assert not Report.objects.filter(study=mr_brain_study).exists()


def test_an_admins_override_lets_a_template_fit_any_study(
    api, reader, group_admin, mr_brain_study, templates
):
    created = _general(group_admin, api, templates, allow_any_study=True).json()
    assert created["allow_any_study"] is True
    general = ReportTemplate.objects.get(pk=created["id"])
    assert template_fit_refusal(template=general, study=mr_brain_study) is None
    # Offered after the templates that fit by their scope, in the API and the editor.
    assert [t.code for t in template_matches(study=mr_brain_study)] == ["mr-brain", "general-any"]
    listed = api(reader.user).get("/api/v1/report-templates/", {"study": mr_brain_study.pk})
    assert {t["code"] for t in listed.json()["results"]} == {"mr-brain", "general-any"}
    page = _signed_in(reader.user).get(f"/studies/{mr_brain_study.pk}/report/").content.decode()
    assert page.index("MRI brain") < page.index("General (v1)")
    assert "Mammography screening" not in page
    response = _save(api, reader, mr_brain_study, general)
    assert response.status_code == 200 and response.json()["template_code"] == "general-any"


def test_without_the_override_the_same_template_is_refused(
    api, reader, group_admin, mr_brain_study, templates
):
    created = _general(group_admin, api, templates).json()
    assert created["allow_any_study"] is False
    general = ReportTemplate.objects.get(pk=created["id"])
    refused = _save(api, reader, mr_brain_study, general)
    assert refused.status_code == 400 and "'General' does not fit" in refused.json()["detail"]


def test_a_new_version_keeps_or_changes_the_override(api, group_admin, templates):
    created = _general(group_admin, api, templates, allow_any_study=True).json()
    renamed = api(group_admin).post(
        f"/api/v1/report-templates/{created['id']}/new-version/", {"name": "G"}, format="json"
    )
    assert renamed.status_code == 201 and renamed.json()["allow_any_study"] is True
    narrowed = api(group_admin).post(
        f"/api/v1/report-templates/{renamed.json()['id']}/new-version/",
        {"allow_any_study": False},
        format="json",
    )
    assert narrowed.status_code == 201 and narrowed.json()["allow_any_study"] is False
    exported = api(group_admin).get(f"/api/v1/report-templates/{narrowed.json()['id']}/export/")
    assert exported.json()["allow_any_study"] is False


def test_the_override_must_be_a_boolean(templates):
    document = {"code": "x", "name": "X", "schema": templates["xr-chest"].schema}
    with pytest.raises(DomainError, match=r"'allow_any_study' must be true or false\."):
        report_template_clean({**document, "allow_any_study": "yes"})
    assert report_template_clean(document)["allow_any_study"] is False


def test_the_admin_sets_the_override(templates):
    root = Client()
    root.force_login(f.UserFactory(username="root", is_superuser=True, is_staff=True))
    assert b"allow_any_study" in root.get("/admin/reporting/reporttemplate/add/").content
    mammo = templates["mg-screening"]
    response = root.post(
        "/admin/reporting/reporttemplate/add/",
        {
            "reading_group": "",
            "code": "general-admin",
            "name": "General",
            "modality": "",
            "body_parts": "[]",
            "procedure_codes": "[]",
            "allow_any_study": "on",
            "schema": json.dumps(mammo.schema),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ReportTemplate.objects.get(code="general-admin").allow_any_study is True
    listing = root.get("/admin/reporting/reporttemplate/").content.decode()
    assert "column-allow_any_study" in listing


def test_a_study_no_template_fits_says_so_in_the_editor(facility_a, reader, templates):
    study = f.StudyFactory(
        facility=facility_a, modality="NM", body_part="BONE", received_at=NOW - dt.timedelta(1)
    )
    study_transition(study_id=study.pk, to_status="ready", at=NOW)
    hand_to(study, reader)
    page = _signed_in(reader.user).get(f"/studies/{study.pk}/report/").content.decode()
    assert 'id="no-fitting-template"' in page and 'id="start-report"' not in page


@pytest.mark.parametrize(
    ("modality", "body_part", "procedure", "fits"),
    [
        ("CT", "HEAD", "", True),
        ("ct", "head", "", True),  # case does not matter
        ("", "HEAD", "", True),  # an unknown modality is not held against a template
        ("MR", "HEAD", "", False),
        ("CT", "CHEST", "", False),
        ("CT", "", "", False),  # an unknown body part is
    ],
)
def test_what_fits_a_ct_head_template(facility_a, ct_head, modality, body_part, procedure, fits):
    study = f.StudyFactory.build(
        facility=facility_a, modality=modality, body_part=body_part, procedure_code=procedure
    )
    assert (template_fit_refusal(template=ct_head, study=study) is None) is fits


def test_a_procedure_coded_template_fits_only_its_procedures(ct_head, facility_a):
    coded = report_template_new_version(
        template_id=ct_head.pk, actor=None, changes={"procedure_codes": ["IMG123"]}
    )
    study = f.StudyFactory.build(facility=facility_a, modality="CT", body_part="HEAD")
    study.procedure_code = "IMG999"
    assert "procedure IMG123" in (template_fit_refusal(template=coded, study=study) or "")
    study.procedure_code = "IMG123"
    assert template_fit_refusal(template=coded, study=study) is None

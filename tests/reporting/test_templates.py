"""The starter library: seeded once, matched to studies, and the list's query count."""

from __future__ import annotations

import pytest

from reporting.models import ReportTemplate
from reporting.selectors import template_matches
from reporting.services.templates import report_templates_seed
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_seeding_twice_changes_nothing():
    assert report_templates_seed() == 8
    assert report_templates_seed() == 0
    assert ReportTemplate.objects.filter(is_active=True, version=1).count() == 8


@pytest.mark.parametrize(
    ("modality", "body_part", "expected"),
    [
        ("CT", "HEAD", {"ct-head-noncontrast"}),
        ("MR", "KNEE", {"mr-knee"}),
        ("MG", "BREAST", {"mg-screening"}),
        ("US", "ABDOMEN", {"us-abdomen"}),
        ("CT", "ABDOMEN", {"ct-abdomen-pelvis"}),
        ("CR", "CHEST", {"xr-chest"}),
        ("NM", "BONE", set()),
    ],
)
def test_templates_match_studies_by_modality_and_body_part(
    facility_a, templates, modality, body_part, expected
):
    study = f.StudyFactory(facility=facility_a, modality=modality, body_part=body_part)
    assert {t.code for t in template_matches(study=study)} == expected


def test_the_template_list_costs_a_fixed_number_of_queries(
    api, templates, licensed_reader, django_assert_max_num_queries
):
    with django_assert_max_num_queries(8):
        response = api(licensed_reader.user).get("/api/v1/report-templates/")
    assert response.status_code == 200 and response.json()["count"] == 8


def test_the_seed_command_loads_the_library_once():
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("seed_report_templates", stdout=out)
    call_command("seed_report_templates", stdout=out)
    assert "8 new" in out.getvalue() and "0 new" in out.getvalue()

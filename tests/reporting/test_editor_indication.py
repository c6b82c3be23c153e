"""The report's indication pre-filled from the study's order: the rule (pure), the
service that applies it when a report starts, and the editor page that shows it."""

from __future__ import annotations

import pytest
from django.test import Client

from reporting import editor
from reporting.models import Report
from reporting.services.reports import report_save_draft
from reporting.services.templates import report_template_create
from studies.models import Study
from tests import factories as f

SCHEMA = {
    "sections": [
        {
            "key": "clinical",
            "title": "Clinical information",
            "fields": [
                {"key": "history", "label": "History", "type": "text"},
                {"key": "indication", "label": "Indication", "type": "text", "max_length": 20},
            ],
        },
        {
            "key": "findings",
            "title": "Findings",
            "fields": [{"key": "brain", "label": "Brain", "type": "text"}],
        },
    ]
}


# --- the rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "history", "expected"),
    [
        ("Headache", "On warfarin.", "Headache\nOn warfarin."),
        ("  Headache ", "", "Headache"),
        ("", "On warfarin.", "On warfarin."),
        ("Headache", "headache", "Headache"),  # the history only repeats the reason
        ("", " ", ""),
    ],
)
def test_indication_text(reason, history, expected):
    assert editor.indication_text(reason_for_exam=reason, clinical_history=history) == expected


def test_the_indication_field_is_found_by_key_in_the_rules_order():
    # "indication" comes before "history" in INDICATION_KEYS, whatever the layout.
    assert editor.indication_field(SCHEMA)["key"] == "indication"
    only_history = {
        "sections": [{**SCHEMA["sections"][0], "fields": [SCHEMA["sections"][0]["fields"][0]]}]
    }
    assert editor.indication_field(only_history)["key"] == "history"
    no_text = {
        "sections": [
            {
                "key": "s",
                "title": "S",
                "fields": [{"key": "indication", "label": "I", "type": "choice", "choices": ["a"]}],
            }
        ]
    }
    assert editor.indication_field(no_text) is None


def test_prefill_fills_only_an_empty_field_and_keeps_its_length():
    assert editor.indication_prefill(SCHEMA, {}, "Headache") == {"indication": "Headache"}
    assert editor.indication_prefill(SCHEMA, {"indication": "  "}, "Headache") == {
        "indication": "Headache"
    }
    given = {"indication": "As dictated", "brain": "Normal."}
    assert editor.indication_prefill(SCHEMA, given, "Headache") == given
    assert editor.indication_prefill(SCHEMA, {"brain": "x"}, "") == {"brain": "x"}
    long = editor.indication_prefill(SCHEMA, {}, "A very long reason for the exam")
    assert long == {"indication": "A very long reason f"}  # max_length 20
    no_field = {"sections": [SCHEMA["sections"][1]]}
    assert editor.indication_prefill(no_field, {"brain": "x"}, "Headache") == {"brain": "x"}


# --- the service and the page --------------------------------------------------------


def _order(study: Study, **fields):
    return f.OrderFactory(
        facility=study.facility, accession_number=study.accession_number, study=study, **fields
    )


@pytest.mark.django_db
def test_a_new_report_starts_with_the_orders_indication(claimed, reader, ct_head):
    _order(claimed, reason_for_exam="Fall, head strike", clinical_history="On warfarin.")
    report = report_save_draft(study_id=claimed.pk, radiologist=reader, template_id=ct_head.pk)
    assert report.values["indication"] == "Fall, head strike\nOn warfarin."
    assert report.values["brain"].startswith("Grey-white")  # the template's normal text stays


@pytest.mark.django_db
def test_what_the_reader_sent_wins_and_later_saves_are_left_alone(claimed, reader, ct_head):
    _order(claimed, reason_for_exam="Fall, head strike")
    report = report_save_draft(
        study_id=claimed.pk,
        radiologist=reader,
        template_id=ct_head.pk,
        values={"indication": "Dictated indication"},
    )
    assert report.values["indication"] == "Dictated indication"
    # An autosave that empties the field keeps it empty: only a new report is filled.
    values = {k: v for k, v in report.values.items() if k != "indication"}
    report = report_save_draft(study_id=claimed.pk, radiologist=reader, values=values)
    assert "indication" not in report.values


@pytest.mark.django_db
def test_no_order_no_indication(claimed, reader, ct_head):
    report = report_save_draft(study_id=claimed.pk, radiologist=reader, template_id=ct_head.pk)
    assert "indication" not in report.values


@pytest.mark.django_db
def test_switching_template_fills_the_new_templates_indication(
    claimed, reader, ct_head, group_admin, group_a
):
    _order(claimed, reason_for_exam="Weakness left arm")
    other = report_template_create(
        actor=group_admin,
        reading_group=group_a,
        document={
            "code": "ct-head-short",
            "name": "CT head (short)",
            "modality": "CT",
            "body_parts": ["HEAD"],
            "schema": {
                "sections": [
                    {
                        "key": "clinical",
                        "title": "Clinical",
                        "fields": [
                            {"key": "clinical_information", "label": "Clinical", "type": "text"}
                        ],
                    }
                ]
            },
        },
    )
    report_save_draft(study_id=claimed.pk, radiologist=reader, template_id=ct_head.pk)
    report = report_save_draft(study_id=claimed.pk, radiologist=reader, template_id=other.pk)
    assert report.values == {"clinical_information": "Weakness left arm"}


@pytest.mark.django_db
def test_the_editor_shows_the_order_and_the_filled_indication(claimed, reader, ct_head):
    _order(
        claimed,
        reason_for_exam="Fall, head strike",
        clinical_history="On warfarin.",
        patient_class="E",
        patient_location="ED^BAY4",
    )
    client = Client()
    client.force_login(reader.user)
    page = client.get(f"/studies/{claimed.pk}/report/").content.decode()
    assert '<dd id="order-reason">Fall, head strike</dd>' in page
    assert '<dd id="order-class">Emergency · ED^BAY4</dd>' in page
    client.post(f"/studies/{claimed.pk}/report/start/", {"template": ct_head.pk})
    page = client.get(f"/studies/{claimed.pk}/report/").content.decode()
    assert (
        '<textarea id="f-indication" name="v.indication" rows="2">'
        "Fall, head strike\nOn warfarin.</textarea>"
    ) in page
    assert Report.objects.get(study=claimed).values["indication"].startswith("Fall")


@pytest.mark.django_db
def test_the_editor_says_when_there_is_no_order(claimed, reader):
    client = Client()
    client.force_login(reader.user)
    page = client.get(f"/studies/{claimed.pk}/report/").content.decode()
    assert '<dd id="no-order">No order received.</dd>' in page

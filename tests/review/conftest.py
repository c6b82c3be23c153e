"""A final CT head report of facility A, signed by the local reader of a three-tier
network (regional and global readers are the other eligible readers)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from reporting.models import Report, ReportTemplate
from reporting.services.reports import report_save_draft, report_sign
from studies.models import Study
from studies.services import study_transition
from tests import factories as f
from tests.reporting.conftest import (  # noqa: F401 - fixtures
    COMPLETE_VALUES,
    _at_now,
    claimed,
    ct_head,
    reader,
    templates,
)
from tests.routing.conftest import (  # noqa: F401 - fixtures
    NOW,
    make_reader,
    neuro_rule,
    ready_study,
    regions,
    tiered,
)


def sign_final(study: Study, reader: Any, template: ReportTemplate) -> Report:  # noqa: F811
    report = report_save_draft(
        study_id=study.pk,
        radiologist=reader,
        template_id=template.pk,
        values=COMPLETE_VALUES,
        impression="No acute intracranial finding.",
    )
    return report_sign(report_id=report.pk, radiologist=reader, status="final")


def another_final(facility: Any, reader: Any, template: ReportTemplate) -> Report:  # noqa: F811
    """One more final by ``reader``, handed the study directly (no routing needed)."""
    study = f.StudyFactory(
        facility=facility,
        modality="CT",
        body_part="HEAD",
        priority=1,
        received_at=NOW - dt.timedelta(minutes=1),
    )
    study_transition(study_id=study.pk, to_status="ready", at=NOW)
    study_transition(study_id=study.pk, to_status="offered")
    study_transition(
        study_id=study.pk, to_status="claimed", assigned_radiologist=reader, claim_activity_at=NOW
    )
    return sign_final(study, reader, template)


@pytest.fixture
def final(claimed: Study, reader: Any, ct_head: ReportTemplate) -> Report:  # noqa: F811
    return sign_final(claimed, reader, ct_head)

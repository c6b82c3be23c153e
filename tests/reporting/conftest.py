"""A claimed CT head study in facility A, the starter templates, and a reader holding it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import time_machine

from reporting.models import ReportTemplate
from reporting.services.templates import report_templates_seed
from routing.services import study_route
from studies.models import Study
from studies.services import study_transition
from tests.routing.conftest import (  # noqa: F401 - fixtures
    NOW,
    make_reader,
    neuro_rule,
    ready_study,
    regions,
    tiered,
)
from worklist.services.claims import study_claim

# A CT head report that may be signed: every required field and an impression.
COMPLETE_VALUES = {
    "indication": "Fall, head strike.",
    "haemorrhage": False,
    "acute_infarct": False,
}


@pytest.fixture(autouse=True)
def _at_now() -> Iterator[None]:
    with time_machine.travel(NOW, tick=True):
        yield


@pytest.fixture
def templates(db: Any) -> dict[str, ReportTemplate]:
    report_templates_seed()
    return {t.code: t for t in ReportTemplate.objects.all()}


@pytest.fixture
def ct_head(templates: dict[str, ReportTemplate]) -> ReportTemplate:
    return templates["ct-head-noncontrast"]


@pytest.fixture
def reader(tiered: dict[str, Any]) -> Any:  # noqa: F811 - the imported fixture
    return tiered["local"]


@pytest.fixture
def claimed(tiered: dict[str, Any], ready_study: Study) -> Study:  # noqa: F811
    """Routed (offered to the local tier) and claimed by the local reader."""
    study_route(study_id=ready_study.pk, now=NOW)
    return study_claim(study_id=ready_study.pk, radiologist=tiered["local"])


def hand_to(study: Study, reader: Any) -> Study:
    """Put a ready study straight into ``reader``'s hands (no routing needed)."""
    study_transition(study_id=study.pk, to_status="offered")
    return study_transition(
        study_id=study.pk, to_status="claimed", assigned_radiologist=reader, claim_activity_at=NOW
    )

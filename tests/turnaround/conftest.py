"""Studies with a scripted life, for turnaround figures (facility targets: STAT 30 min,
urgent 120 min, routine 1440 min, from the facility factory)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from studies.services import study_transition
from tests import factories as f

DAY = dt.datetime(2026, 6, 1, 14, 0, tzinfo=dt.UTC)  # 09:00 in Chicago (facility zone)


def scripted_study(
    facility: Any,
    *,
    received_at: dt.datetime,
    reader: Any = None,
    ready: float | None = None,
    claimed: float | None = None,
    final: float | None = None,
    priority: int = 1,
    modality: str = "CT",
) -> Any:
    """A study received at ``received_at``, then ready, offered, claimed and final at
    the given minutes after receipt (None: it stops before that step)."""
    study = f.StudyFactory(
        facility=facility, received_at=received_at, priority=priority, modality=modality
    )
    if ready is None:
        return study
    at = received_at + dt.timedelta(minutes=ready)
    study_transition(study_id=study.pk, to_status="ready", at=at)
    study = study_transition(study_id=study.pk, to_status="offered", at=at)
    if claimed is None:
        return study
    study = study_transition(
        study_id=study.pk,
        to_status="claimed",
        at=received_at + dt.timedelta(minutes=claimed),
        assigned_radiologist=reader,
    )
    if final is None:
        return study
    return study_transition(
        study_id=study.pk, to_status="final", at=received_at + dt.timedelta(minutes=final)
    )

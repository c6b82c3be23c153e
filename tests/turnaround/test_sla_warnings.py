"""SLA warnings: each threshold alerts once per study, swept again and again."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from alerts.models import Alert
from studies.services import study_transition
from tests.turnaround.conftest import DAY, scripted_study
from turnaround.tasks import sla_warnings_sweep

pytestmark = pytest.mark.django_db


def sweep_at(minutes: float, capture: Any) -> int:
    """Run the beat task with the clock ``minutes`` after DAY; mail is sent on commit."""
    with (
        time_machine.travel(DAY + dt.timedelta(minutes=minutes), tick=False),
        capture(execute=True),
    ):
        return sla_warnings_sweep()


def keys() -> list[str]:
    return sorted(Alert.objects.filter(kind="sla").values_list("dedupe_key", flat=True))


def test_each_threshold_alerts_exactly_once(
    facility_a: Any,
    group_admin: Any,
    licensed_reader: Any,
    django_capture_on_commit_callbacks: Any,
    mailoutbox: Any,
) -> None:
    # STAT, 30-minute target: 50% at 15 minutes, 80% at 24, breach at 30.
    waiting = scripted_study(facility_a, received_at=DAY, ready=1)
    claimed = scripted_study(
        facility_a, reader=licensed_reader, received_at=DAY, ready=1, claimed=3
    )
    on_time = scripted_study(
        facility_a, reader=licensed_reader, received_at=DAY, ready=1, claimed=3, final=20
    )
    raised = []
    for minutes in (5, 14.9, 15, 15.5, 20, 23.9, 24, 24, 29.9, 30, 31, 60, 600):
        raised.append((minutes, sweep_at(minutes, django_capture_on_commit_callbacks)))

    assert [m for m, n in raised if n] == [15, 24, 30]
    assert dict(raised)[30] == 2  # the waiting study and the claimed one breach
    assert keys() == sorted(
        [
            f"sla:{waiting.pk}:50",
            f"sla:{waiting.pk}:80",
            f"sla:{waiting.pk}:breach",
            f"sla:{claimed.pk}:breach",
        ]
    )
    assert not Alert.objects.filter(study=on_time).exists()
    alert = Alert.objects.get(dedupe_key=f"sla:{waiting.pk}:80")
    assert alert.reading_group == facility_a.reading_group
    assert "80% of its 30-minute turnaround target" in alert.message
    # Mailed to the group's admin, once per alert.
    assert len(mailoutbox) == 4
    assert {tuple(m.to) for m in mailoutbox} == {(group_admin.email,)}


def test_a_study_claimed_before_a_threshold_is_not_warned_but_still_breaches(
    facility_a: Any, licensed_reader: Any, django_capture_on_commit_callbacks: Any
) -> None:
    study = scripted_study(facility_a, received_at=DAY, ready=1)
    sweep_at(16, django_capture_on_commit_callbacks)
    study_transition(
        study_id=study.pk,
        to_status="claimed",
        assigned_radiologist=licensed_reader,
        at=DAY + dt.timedelta(minutes=17),
    )
    for minutes in (24, 25, 30, 31):
        sweep_at(minutes, django_capture_on_commit_callbacks)

    assert keys() == [f"sla:{study.pk}:50", f"sla:{study.pk}:breach"]


def test_each_group_hears_of_its_own_facilities(
    facility_a: Any,
    facility_c: Any,
    group_admin: Any,
    other_admin: Any,
    django_capture_on_commit_callbacks: Any,
    mailoutbox: Any,
) -> None:
    scripted_study(facility_c, received_at=DAY, ready=1)

    sweep_at(16, django_capture_on_commit_callbacks)

    [alert] = Alert.objects.filter(kind="sla")
    assert alert.reading_group == facility_c.reading_group
    assert [m.to for m in mailoutbox] == [[other_admin.email]]


def test_fractions_come_from_settings(
    settings: Any, facility_a: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.SLA_WARNING_FRACTIONS = (0.25,)
    study = scripted_study(facility_a, received_at=DAY, ready=1, priority=2)  # 120 minutes

    for minutes in (29, 30, 60, 100, 120):
        sweep_at(minutes, django_capture_on_commit_callbacks)

    assert keys() == [f"sla:{study.pk}:25", f"sla:{study.pk}:breach"]


def test_a_study_already_overdue_is_told_of_the_breach_only(
    facility_a: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # The sweeper was down: warnings for thresholds long passed would be noise.
    study = scripted_study(facility_a, received_at=DAY, ready=1)

    sweep_at(45, django_capture_on_commit_callbacks)
    sweep_at(46, django_capture_on_commit_callbacks)

    assert keys() == [f"sla:{study.pk}:breach"]


def test_beat_runs_the_sweep_on_its_setting() -> None:
    from django.conf import settings

    from teleradiology.celery import app

    entry = app.conf.beat_schedule["turnaround-sla-warnings"]
    assert entry["task"] == "turnaround.sla_warnings_sweep" == sla_warnings_sweep.name
    assert entry["schedule"] == settings.SLA_WARNING_SWEEP_SECONDS == 30.0
    assert settings.SLA_WARNING_FRACTIONS == (0.5, 0.8)

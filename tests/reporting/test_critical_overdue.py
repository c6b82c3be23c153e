"""A critical finding left without a communication record alerts the group's admins once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from alerts.models import Alert
from reporting.models import Report
from reporting.services.critical import critical_communication_record
from reporting.services.reports import report_save_draft
from reporting.tasks import critical_overdue_sweep
from tests.reporting.conftest import COMPLETE_VALUES, NOW

pytestmark = pytest.mark.django_db


def sweep_at(minutes: float, capture: Any) -> int:
    """Run the beat task with the clock ``minutes`` after NOW; mail is sent on commit."""
    with (
        time_machine.travel(NOW + dt.timedelta(minutes=minutes), tick=False),
        capture(execute=True),
    ):
        return critical_overdue_sweep()


def draft(study: Any, reader: Any, template: Any, severity: str, at_minutes: float = 0) -> Report:
    with time_machine.travel(NOW + dt.timedelta(minutes=at_minutes), tick=False):
        return report_save_draft(
            study_id=study.pk,
            radiologist=reader,
            template_id=template.pk,
            values=COMPLETE_VALUES,
            impression="Acute subdural haematoma.",
            critical_severity=severity,
        )


def communicate(report: Report, reader: Any, *, read_back: bool, at_minutes: float) -> None:
    when = NOW + dt.timedelta(minutes=at_minutes)
    with time_machine.travel(when, tick=False):
        critical_communication_record(
            report_id=report.pk,
            radiologist=reader,
            recipient_name="Dr Rivera",
            recipient_role="Emergency physician",
            method="phone",
            communicated_at=when,
            read_back_confirmed=read_back,
        )


def test_alerts_once_after_the_limit_to_the_admins_and_the_reader(
    claimed, reader, ct_head, group_admin, django_capture_on_commit_callbacks, mailoutbox, settings
):
    settings.CRITICAL_RESULT_COMMUNICATION_MINUTES = 30
    report = draft(claimed, reader, ct_head, "critical")
    assert report.critical_marked_at == NOW
    counts = [sweep_at(m, django_capture_on_commit_callbacks) for m in (0, 29.9, 30, 31, 90, 600)]
    assert counts == [0, 0, 1, 0, 0, 0]
    alert = Alert.objects.get(kind="critical_uncommunicated")
    assert alert.dedupe_key == f"critical_overdue:{report.pk}"
    assert alert.study == claimed and alert.reading_group == claimed.facility.reading_group
    assert alert.recipient == reader.user
    assert claimed.accession_number in alert.message
    assert "no read-back-confirmed communication recorded 30 minutes" in alert.message
    assert len(mailoutbox) == 1
    assert set(mailoutbox[0].to) == {group_admin.email, reader.user.email}


def test_a_confirmed_communication_in_time_prevents_the_alert(
    claimed, reader, ct_head, django_capture_on_commit_callbacks, settings
):
    settings.CRITICAL_RESULT_COMMUNICATION_MINUTES = 15
    report = draft(claimed, reader, ct_head, "critical")
    # Told, but without read-back: that is not yet a communication the sign accepts.
    communicate(report, reader, read_back=False, at_minutes=5)
    assert sweep_at(16, django_capture_on_commit_callbacks) == 1
    Alert.objects.all().delete()
    communicate(report, reader, read_back=True, at_minutes=17)
    assert sweep_at(20, django_capture_on_commit_callbacks) == 0
    assert not Alert.objects.exists()


def test_the_clock_starts_when_the_finding_becomes_critical(
    claimed, reader, ct_head, django_capture_on_commit_callbacks, settings
):
    settings.CRITICAL_RESULT_COMMUNICATION_MINUTES = 30
    report = draft(claimed, reader, ct_head, "urgent")
    assert report.critical_marked_at is None
    assert sweep_at(60, django_capture_on_commit_callbacks) == 0  # urgent: no clock
    report = draft(claimed, reader, ct_head, "critical", at_minutes=60)
    assert report.critical_marked_at == NOW + dt.timedelta(minutes=60)
    # Saving again while critical does not restart the clock.
    draft(claimed, reader, ct_head, "critical", at_minutes=70)
    assert sweep_at(89, django_capture_on_commit_callbacks) == 0
    assert sweep_at(90, django_capture_on_commit_callbacks) == 1
    # Taken back to none: the clock stops.
    report = draft(claimed, reader, ct_head, "none", at_minutes=95)
    assert report.critical_marked_at is None


def test_an_unmarked_finding_does_not_alert(
    claimed, reader, ct_head, django_capture_on_commit_callbacks, settings
):
    settings.CRITICAL_RESULT_COMMUNICATION_MINUTES = 30
    draft(claimed, reader, ct_head, "critical")
    draft(claimed, reader, ct_head, "incidental", at_minutes=10)
    assert sweep_at(120, django_capture_on_commit_callbacks) == 0


def test_beat_runs_the_sweep_and_the_limit_comes_from_the_environment() -> None:
    from django.conf import settings

    from teleradiology.celery import app
    from tests.test_settings import _manage

    entry = app.conf.beat_schedule["reporting-critical-overdue"]
    assert entry["task"] == "reporting.critical_overdue_sweep" == critical_overdue_sweep.name
    assert entry["schedule"] == settings.CRITICAL_OVERDUE_SWEEP_SECONDS
    code = "from django.conf import settings; print(settings.CRITICAL_RESULT_COMMUNICATION_MINUTES)"
    shown = _manage("shell", "-c", code, CRITICAL_RESULT_COMMUNICATION_MINUTES="12")
    assert shown.stdout.strip().splitlines()[-1] == "12", shown.stderr
    refused = _manage("shell", "-c", code, CRITICAL_RESULT_COMMUNICATION_MINUTES="0")
    assert refused.returncode != 0 and "at least 1" in refused.stderr

"""Signing and autosave under contention on PostgreSQL, with real threads."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from reporting.models import Report, ReportVersion
from reporting.services.delivery import report_message_deliver
from reporting.services.reports import report_save_draft, report_sign
from studies.models import Study
from teleradiology.errors import DomainError
from tests.reporting.conftest import COMPLETE_VALUES

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _run(n, target):
    barrier = threading.Barrier(n)
    errors: list[Exception] = []

    def go(index):
        try:
            barrier.wait()
            target(index)
        except DomainError as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def test_concurrent_signatures_sign_once_and_concurrent_saves_all_kept(claimed, reader, ct_head):
    report = report_save_draft(
        study_id=claimed.pk,
        radiologist=reader,
        template_id=ct_head.pk,
        values=COMPLETE_VALUES,
        impression="No acute finding.",
    )

    def autosave(index):
        report_save_draft(study_id=claimed.pk, radiologist=reader, impression=f"Autosave {index}.")

    assert _run(8, autosave) == []
    # Every save got its own version number: none lost, none duplicated.
    numbers = list(ReportVersion.objects.filter(report=report).values_list("number", flat=True))
    assert sorted(numbers) == list(range(1, 10))

    def sign(index):
        report_sign(report_id=report.pk, radiologist=reader, status="final")

    errors = _run(6, sign)
    assert len(errors) == 5  # the other five found it final already
    signed = Report.objects.get(pk=report.pk)
    assert signed.status == "final"
    assert ReportVersion.objects.filter(report=report, status="final").count() == 1
    assert Study.objects.get(pk=claimed.pk).transitions.filter(to_status="final").count() == 1


def test_concurrent_senders_send_a_message_once(claimed, reader, ct_head, facility_a):
    from django.utils import timezone

    from reporting.models import ReportMessage
    from tests.reporting.test_delivery import MllpListener, mllp_endpoint

    report = report_save_draft(
        study_id=claimed.pk,
        radiologist=reader,
        template_id=ct_head.pk,
        values=COMPLETE_VALUES,
        impression="No acute finding.",
    )
    report_sign(report_id=report.pk, radiologist=reader, status="final")
    listener = MllpListener()
    try:
        listener.start(["AA"])
        mllp_endpoint(facility_a, listener.port)
        message = ReportMessage.objects.get(report=report, kind="hl7")
        ReportMessage.objects.filter(pk=message.pk).update(
            delivery_status="pending", next_attempt_at=timezone.now()
        )
        outcomes: list[str] = []

        def deliver(index):
            outcomes.append(report_message_deliver(message_id=message.pk))

        assert _run(6, deliver) == []
    finally:
        listener.close()
    assert sorted(outcomes) == ["accepted"] + ["skipped"] * 5
    assert len(listener.received) == 1
    message.refresh_from_db()
    assert message.delivery_status == "sent" and message.attempts == 1

"""Delivery of result messages to facilities: where each facility receives its
results (its endpoint), and the attempts at sending (HL7 v2 over MLLP, FHIR over
HTTPS), each recorded with the application's answer (HL7 MSA, FHIR HTTP status and
OperationOutcome), retried with backoff from the time stored on the message up to
REPORT_DELIVERY_MAX_ATTEMPTS, and a failure told to the facility's staff and the
group's admins once.

The messages themselves are built when a report is signed (preliminary or final) or
gets an addendum
(``reporting.services._messages``); the PDF is made on request (``reporting.pdf``).
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_raise
from audit.models import AuditEvent
from audit.services import audit_record
from reporting import transport
from reporting.models import DeliveryAttempt, FacilityEndpoint, ReportMessage
from reporting.services._messages import _DELIVERED_KIND, _enqueue_deliveries
from teleradiology.errors import InvalidTransition


# --- Facilities' result endpoints ---------------------------------------------------
def facility_endpoint_save(
    *,
    endpoint: FacilityEndpoint,
    actor: User | None,
    ip_address: str | None = None,
) -> FacilityEndpoint:
    """Validate and save where a facility receives its results, audited with the changes."""
    creating = endpoint._state.adding
    endpoint.full_clean()
    with transaction.atomic():
        before = (
            None
            if creating
            else FacilityEndpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
        )
        endpoint.save()
        changes = {
            f.attname: [getattr(before, f.attname), getattr(endpoint, f.attname)]
            for f in FacilityEndpoint._meta.concrete_fields
            if before is not None
            and f.attname != "updated_at"
            and getattr(before, f.attname) != getattr(endpoint, f.attname)
        }
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CREATE if creating else AuditEvent.Action.UPDATE,
            obj=endpoint,
            ip_address=ip_address,
            detail={"facility": endpoint.facility_id, **changes},
        )
    return endpoint


def facility_endpoint_delete(
    *, endpoint: FacilityEndpoint, actor: User | None, ip_address: str | None = None
) -> None:
    """Remove a facility's result endpoint (its pending messages wait for a new one), audited."""
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=AuditEvent.Action.DELETE,
            obj=endpoint,
            ip_address=ip_address,
            detail={"facility": endpoint.facility_id, "deleted": str(endpoint)},
        )
        endpoint.delete()


# --- Result messages and their delivery ------------------------------------------------
# A sender holds a message this long; longer than the delivery task's hard time limit,
# so a message whose worker died is tried again, and never by two senders at once.
DELIVERY_LEASE = dt.timedelta(seconds=120)


def delivery_backoff(attempts: int) -> dt.timedelta:
    """How long to wait after ``attempts`` failed tries: doubling from the base, capped."""
    base = float(settings.REPORT_DELIVERY_RETRY_BASE_SECONDS)
    cap = float(settings.REPORT_DELIVERY_RETRY_MAX_SECONDS)
    return dt.timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), cap))


def _attempt(message: ReportMessage, endpoint: FacilityEndpoint | None) -> transport.Outcome:
    if endpoint is None or _DELIVERED_KIND.get(endpoint.kind) != message.kind:
        return transport.Outcome(
            accepted=False,
            retry=True,
            kind=DeliveryAttempt.Outcome.ERROR,
            detail="The facility has no active endpoint for this kind of message; kept queued.",
        )
    if endpoint.kind == FacilityEndpoint.Kind.MLLP:
        assert endpoint.port is not None  # noqa: S101 - a database constraint
        return transport.mllp_send(
            host=endpoint.host,
            port=endpoint.port,
            message=message.payload,
            control_id=message.control_id,
            timeout=endpoint.timeout_seconds,
        )
    return transport.fhir_post(
        url=endpoint.url, body=message.payload, timeout=endpoint.timeout_seconds
    )


def _exhausted(message: ReportMessage) -> bool:
    tries: int = settings.REPORT_DELIVERY_MAX_ATTEMPTS
    return message.attempts - message.attempts_at_queue >= tries


_RESULT_WORD: dict[str, str] = {
    ReportMessage.ResultStatus.PRELIMINARY: "preliminary result",
    ReportMessage.ResultStatus.FINAL: "final result",
    ReportMessage.ResultStatus.AMENDED: "addendum",
}


def _failure_alert(
    message: ReportMessage, endpoint: FacilityEndpoint | None, reason: str
) -> Alert | None:
    """Tell the facility's staff and the group's admins that a result did not reach
    the facility (no patient name in it: it is mailed)."""
    study = message.report.study
    name = study.accession_number or study.study_instance_uid
    where = str(endpoint) if endpoint is not None else "no active endpoint"
    text = (
        f"The {_RESULT_WORD.get(message.result_status, 'result')} of {study.modality} "
        f"study {name} from {study.facility.name} ({message.get_kind_display()} "
        f"{message.control_id}) was not delivered to {where} after {message.attempts} "
        f"attempt(s): {reason.splitlines()[0] if reason else 'no answer'}"
    )
    # The conditional update that failed the message ran once; the dedupe key (one
    # per failure of the message: a requeued message that fails again is told
    # again) keeps it once even against a replayed transaction.
    return alert_raise(
        kind=Alert.Kind.DELIVERY_FAILED,
        dedupe_key=f"delivery_failed:{message.pk}:{message.attempts}",
        message=text[:1000],
        reading_group=study.facility.reading_group,
        facility=study.facility,
        study=study,
    )


def report_message_deliver(*, message_id: int) -> str:
    """Make one attempt at sending a pending message to its facility's endpoint and
    record it with the application's answer: sent on an acknowledgement, failed on a
    refusal (AR/CR, HTTP 4xx) or once REPORT_DELIVERY_MAX_ATTEMPTS tries went
    unanswered or NAKed (AE/CE, HTTP 5xx, network), otherwise pending again after a
    backoff.  A failure alerts the facility's staff and the group's admins, once.

    Idempotent: the attempt starts with a conditional update that only a due pending
    message passes, so a sent message is never sent again and two workers never send
    the same message at once; the failure (and its alert) is a conditional update
    that only one worker wins.  The network call runs outside any transaction.
    """
    started = timezone.now()
    claimed = ReportMessage.objects.filter(
        pk=message_id,
        delivery_status=ReportMessage.Delivery.PENDING,
        next_attempt_at__lte=started,
    ).update(next_attempt_at=started + DELIVERY_LEASE, attempts=F("attempts") + 1)
    if claimed != 1:
        return "skipped"  # sent, refused, not yet due, or another sender holds it
    message = ReportMessage.objects.select_related("report__study__facility__reading_group").get(
        pk=message_id
    )
    endpoint = FacilityEndpoint.objects.filter(
        facility_id=message.report.study.facility_id, active=True
    ).first()
    outcome = _attempt(message, endpoint)
    finished = timezone.now()
    answered = bool(outcome.ack_code) or outcome.http_status is not None
    answer: dict[str, object] = (
        {
            "ack_code": outcome.ack_code,
            "ack_control_id": outcome.ack_control_id[:64],
            "ack_text": outcome.ack_text,
            "http_status": outcome.http_status,
            "ack_at": finished,
        }
        if answered
        else {}
    )
    gives_up = not outcome.accepted and (not outcome.retry or _exhausted(message))
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            message=message,
            number=message.attempts,
            started_at=started,
            finished_at=finished,
            outcome=outcome.kind,
            detail=outcome.detail,
            ack_code=outcome.ack_code,
            ack_text=outcome.ack_text,
            http_status=outcome.http_status,
        )
        # Conditional on still pending: a sender whose lease ran out must not undo
        # what a later sender recorded.
        still_pending = ReportMessage.objects.filter(
            pk=message.pk, delivery_status=ReportMessage.Delivery.PENDING
        )
        if outcome.accepted:
            still_pending.update(
                delivery_status=ReportMessage.Delivery.SENT,
                sent_at=finished,
                next_attempt_at=None,
                acknowledgement=outcome.detail,
                last_error="",
                **answer,
            )
        elif not gives_up:
            still_pending.update(
                next_attempt_at=finished + delivery_backoff(message.attempts),
                last_error=outcome.detail,
                **answer,
            )
        else:
            reason = outcome.detail
            if outcome.retry:
                reason = f"Gave up after {message.attempts} attempts. Last: {outcome.detail}"
            failed = still_pending.update(
                delivery_status=ReportMessage.Delivery.FAILED,
                next_attempt_at=None,
                last_error=reason[: transport.DETAIL_LIMIT + 100],
                failure_alerted_at=finished,
                **answer,
            )
            if failed == 1:  # this sender failed it: it, and only it, tells
                _failure_alert(message, endpoint, outcome.ack_text or outcome.detail)
        if gives_up or outcome.accepted:
            audit_record(
                actor=None,
                action=AuditEvent.Action.EXPORT,
                obj=message,
                patient_id=message.report.study.patient_id,
                detail={
                    "report": message.report_id,
                    "kind": message.kind,
                    "control_id": message.control_id,
                    "attempt": message.attempts,
                    "outcome": outcome.kind,
                    "endpoint": str(endpoint) if endpoint else "",
                },
            )
    return outcome.kind


def report_messages_sweep(*, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Enqueue a delivery for every pending message whose next attempt is due: the
    durable timer behind retries, so a lost task or a restarted worker loses nothing."""
    now = now or timezone.now()
    due = list(
        ReportMessage.objects.filter(
            delivery_status=ReportMessage.Delivery.PENDING, next_attempt_at__lte=now
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    _enqueue_deliveries(due, after_commit=False)  # a read: nothing to wait for
    return len(due)


def report_message_requeue(*, message_id: int, actor: User | None = None) -> ReportMessage:
    """Send a refused (failed) message again, once someone has fixed the cause."""
    now = timezone.now()
    with transaction.atomic():
        message = (
            ReportMessage.objects.select_for_update()
            .select_related("report__study")
            .get(pk=message_id)
        )
        if message.delivery_status != ReportMessage.Delivery.FAILED:
            raise InvalidTransition(
                f"Only a failed message is sent again (this one is {message.delivery_status}).",
                code="not_failed",
            )
        message.delivery_status = ReportMessage.Delivery.PENDING
        message.next_attempt_at = now
        message.attempts_at_queue = message.attempts  # a fresh retry budget
        message.save(update_fields=["delivery_status", "next_attempt_at", "attempts_at_queue"])
        audit_record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            obj=message,
            patient_id=message.report.study.patient_id,
            detail={"requeued": True, "control_id": message.control_id},
        )
        _enqueue_deliveries([message.pk])
    return message

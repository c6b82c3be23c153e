"""The HL7 message store: every frame kept with its outcome, applied at most once.

A message is stored and applied in one transaction, and its ACK is built from what
was committed: the listener sends it only after ``message_receive`` returns, so an
AA means the message and its effects are durable.  Applying runs in a savepoint of
its own: a message the apply step refuses (``MessageRejected``, or a fault of ours)
leaves no half-applied change, yet is stored with its outcome for an admin to see
and replay.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from network.models import Facility
from orders import hl7
from orders.errors import MessageRejected
from orders.models import Hl7Message
from orders.selectors import hl7_admission, message_applied
from orders.services.apply import message_apply
from teleradiology.errors import Conflict, DomainError

logger = logging.getLogger("orders.messages")


@dataclass(frozen=True)
class Receipt:
    """What the transport sends back: the ACK (text and the codec to encode it in),
    and the stored message it answers."""

    message_id: int
    outcome: str
    ack: str
    encoding: str


class _AlreadyApplied(Exception):
    """The control id was applied by another message first (the unique constraint)."""


def _clip(value: str, limit: int) -> str:
    return value[:limit]


def _storable(text: str) -> str:
    # PostgreSQL text cannot hold NUL; every other character is kept as received.
    return text.replace("\x00", "\ufffd")


def _store(
    inbound: hl7.Inbound,
    *,
    peer_address: str | None,
    received_at: dt.datetime,
    apply_received_at: dt.datetime,
    size_bytes: int,
    truncated: bool,
    actor: User | None,
    replay_of: Hl7Message | None = None,
) -> Hl7Message:
    """Admit, apply (once per control id) and store one message; call inside the
    caller's transaction.  Returns the stored row, its ACK built."""
    header = inbound.header
    problem = inbound.problem
    facility: Facility | None = None
    if header.sending_facility_id:
        admission = hl7_admission(sending_facility=header.sending_facility_id, address=peer_address)
        facility = admission.facility
        if problem is None and (facility is None or admission.refused):
            problem = hl7.Problem("AR", admission.refused, "MSH-4", hl7.ERR_UNKNOWN_KEY)

    row = Hl7Message(
        facility=facility,
        received_at=received_at,
        peer_address=peer_address or None,
        control_id=_clip(header.control_id, 199),
        message_type=_clip(header.message_type, 20),
        version=_clip(header.version, 16),
        sending_facility=_clip(header.sending_facility, 227),
        patient_id=inbound.patient_id,
        raw=_storable(inbound.raw),
        raw_truncated=truncated,
        size_bytes=size_bytes,
        encoding=inbound.encoding,
        charset=_clip(header.charset, 32),
        replay_of=replay_of,
    )
    ack_from = settings.HL7_SENDING_APPLICATION

    def answer(code: str, text: str = "", field: str = "", error_code: str = "") -> None:
        row.outcome = code
        row.error_text = _clip(text, 500)
        row.error_field = _clip(field, 16)
        row.ack = hl7.build_ack(
            header,
            code=code,
            text=text,
            field=field,
            error_code=error_code,
            sending_application=ack_from,
        )

    original: Hl7Message | None = None
    if problem is None and facility is not None:
        original = message_applied(facility_id=facility.pk, control_id=header.control_id)
        if original is None:
            try:
                with transaction.atomic():  # a savepoint: a refusal undoes the apply only
                    row.summary = _clip(
                        message_apply(
                            facility=facility,
                            message=inbound.message,
                            raw=inbound.raw,
                            received_at=apply_received_at,
                        ),
                        500,
                    )
                    answer("AA")
                    try:
                        row.save(force_insert=True)
                    except IntegrityError as exc:
                        raise _AlreadyApplied from exc
            except MessageRejected as exc:
                row.summary = ""
                problem = hl7.Problem(exc.code, exc.text, exc.field)
            except _AlreadyApplied:
                # Another copy was applied while this one was (it committed first).
                row.pk = None
                row.summary = ""
                original = message_applied(facility_id=facility.pk, control_id=header.control_id)
                if original is None:  # cannot happen: the constraint named it
                    problem = hl7.Problem("AR", "conflicting copy; send again", "MSH-10")
            except Exception as exc:
                # A fault of ours (or of a peer service) must not lose the message:
                # stored as refused, for an admin to replay once it is fixed.
                logger.exception("applying HL7 message %s failed", header.control_id)
                row.pk = None
                row.summary = ""
                problem = hl7.Problem(
                    "AR",
                    f"internal error while applying ({type(exc).__name__}); kept for replay",
                    error_code=hl7.ERR_INTERNAL,
                )
        if original is not None:
            row.duplicate_of = original
            row.summary = f"repeat of message {original.pk} (control id already applied)"
            answer(original.outcome)
            row.save(force_insert=True)
    if problem is not None:
        answer(problem.code, problem.text, problem.field, problem.error_code)
        row.save(force_insert=True)

    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        obj=row,
        patient_id=row.patient_id,
        detail={
            "hl7": row.message_type,
            "control_id": row.control_id,
            "outcome": row.outcome,
            **({"replay_of": replay_of.pk} if replay_of is not None else {}),
            **({"duplicate_of": row.duplicate_of_id} if row.duplicate_of_id else {}),
        },
    )
    return row


def message_receive(
    *,
    data: bytes,
    peer_address: str | None,
    received_at: dt.datetime | None = None,
    size_bytes: int | None = None,
    truncated: bool = False,
    frame_problem: hl7.Problem | None = None,
) -> Receipt:
    """Store one received frame with its outcome, applying it once per (facility,
    control id); committed before it returns, so the ACK it gives may be sent."""
    received_at = received_at or timezone.now()
    inbound = hl7.read(data, problem=frame_problem)
    with transaction.atomic(durable=True):
        row = _store(
            inbound,
            peer_address=peer_address,
            received_at=received_at,
            apply_received_at=received_at,
            size_bytes=len(data) if size_bytes is None else size_bytes,
            truncated=truncated,
            actor=None,
        )
    return Receipt(message_id=row.pk, outcome=row.outcome, ack=row.ack, encoding=inbound.encoding)


def message_replay(
    *, message_id: int, actor: User | None, ip_address: str | None = None
) -> Hl7Message:
    """Apply a stored message again (an admin fixed its cause): re-read its raw text,
    re-admit its sender, apply, and store the outcome as a new message that names the
    one replayed; audited.  An applied message, a repeat, or one kept only in part
    is not replayed."""
    with transaction.atomic(durable=True):
        original = Hl7Message.objects.select_for_update().get(pk=message_id)
        if original.outcome == Hl7Message.Outcome.AA:
            raise Conflict("The message was applied; there is nothing to replay.", code="applied")
        if original.raw_truncated:
            raise DomainError(
                "The message was too large and is kept only in part; it cannot be replayed.",
                code="truncated",
            )
        inbound = hl7.read_text(original.raw, encoding=original.encoding)
        row = _store(
            inbound,
            peer_address=original.peer_address,
            received_at=timezone.now(),
            apply_received_at=original.received_at,
            size_bytes=original.size_bytes,
            truncated=False,
            actor=actor,
            replay_of=original,
        )
        Hl7Message.objects.filter(pk=original.pk).update(
            replayed_at=row.received_at,
            replay_count=F("replay_count") + 1,
            replayed_by=actor.get_username() if actor is not None else "",
        )
        audit_record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            obj=original,
            patient_id=original.patient_id,
            ip_address=ip_address,
            detail={"replayed_as": row.pk, "outcome": row.outcome},
        )
    return row

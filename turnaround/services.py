"""Turnaround's writes: SLA warnings raised as alerts, once per study and threshold; an
admin's re-route from the operations page, audited."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_raise
from audit.models import AuditEvent
from audit.services import audit_record
from network.models import Priority
from routing.services import study_reroute
from studies.models import Study
from turnaround import selectors

# A sweep handles at most this many studies per threshold; the next sweep
# (seconds later) picks up the rest, so a backlog never outlives the time limit.
SWEEP_BATCH = 500


def _message(study: Study, fraction: float | None, now: dt.datetime) -> str:
    name = study.accession_number or study.study_instance_uid
    target = int((study.sla_due_at - study.received_at).total_seconds() // 60)
    head = f"{Priority(study.priority).label} study {name} from {study.facility.name}"
    due = study.sla_due_at.strftime("%Y-%m-%d %H:%M UTC")
    if fraction is None:
        return (
            f"{head} missed its {target}-minute turnaround target (due {due}); "
            f"it is {study.get_status_display().lower()}, not final."
        )
    left = max(0, int((study.sla_due_at - now).total_seconds() // 60))
    return (
        f"{head} has used {selectors.sla_threshold_label(fraction)}% of its "
        f"{target}-minute turnaround target unclaimed; {left} minutes left (due {due})."
    )


def sla_warnings_raise(*, now: dt.datetime | None = None) -> list[Alert]:
    """Alert the facility's reading group for each SLA threshold a live study has crossed
    (each configured fraction unclaimed, then the breach); once per study and threshold,
    kept by the alert's unique dedupe key ``sla:{study}:{threshold}``."""
    now = now or timezone.now()
    thresholds: list[float | None] = [*settings.SLA_WARNING_FRACTIONS, None]
    raised = []
    for fraction in thresholds:
        label = selectors.sla_threshold_label(fraction)
        for study in selectors.sla_crossings(now=now, fraction=fraction)[:SWEEP_BATCH]:
            # alert_raise commits the row on its own and mails after commit; a
            # concurrent sweep that got there first makes this a no-op (None).
            alert = alert_raise(
                kind=Alert.Kind.SLA,
                dedupe_key=f"sla:{study.pk}:{label}",
                message=_message(study, fraction, now),
                reading_group=study.facility.reading_group,
                study=study,
            )
            if alert is not None:
                raised.append(alert)
    return raised


def study_reroute_by_admin(*, study: Study, actor: User | None, ip_address: str | None) -> bool:
    """An admin's re-route of a waiting study from the operations page: routing's
    ``study_reroute`` (open offers withdrawn, the rules applied afresh) and the audit
    event naming the admin, in one transaction.  False, and nothing written, when the
    study is no longer waiting (claimed or final meanwhile)."""
    with transaction.atomic():
        rerouted = study_reroute(study_id=study.pk, reason="re-routed by a group admin")
        if rerouted:
            audit_record(
                actor=actor,
                action=AuditEvent.Action.UPDATE,
                obj=study,
                patient_id=study.patient_id,
                ip_address=ip_address,
                detail={"rerouted": "from the operations page"},
            )
    return rerouted

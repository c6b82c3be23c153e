"""Fetching a ready study's relevant priors from its facility's PACS.

One attempt (``study_priors_fetch``) claims the study's fetch row, asks the PACS
for the patient's studies (C-FIND), records the relevant ones, and moves each to
our gateway (C-MOVE to ``DICOM_PRIORS_AE_TITLE``), which files what arrives as
prior studies.  No transaction is open while the PACS is asked: each step commits
its own small write.  When every chosen prior is retrieved or has failed (or none
was relevant) the study's priors hold is released, so it is offered at once; the
hold's own timestamp bounds the wait otherwise (the routing sweep offers it when
it passes, "priors pending"), whatever the PACS does.

A PACS that is down or refuses is tried again with exponential back-off:
``next_attempt_at`` on the fetch row, found by the beat sweep
(``prior_fetches_sweep``), at most ``PRIORS_FETCH_MAX_ATTEMPTS`` attempts.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_record
from priors import pacs, selectors
from priors.models import PriorFetch, PriorStudy
from priors.relevance import Choice, StudyFacts, relevant_priors
from studies.models import Study
from studies.services import study_hold_release
from teleradiology.queue import enqueue

logger = logging.getLogger(__name__)

UNFINISHED = (PriorFetch.Status.QUERYING, PriorFetch.Status.RETRIEVING)
OPEN_PRIOR = (PriorStudy.Status.PENDING, PriorStudy.Status.RETRIEVING)


@dataclass(frozen=True)
class _Attempt:
    """What one attempt needs, read when it was claimed."""

    fetch_id: int
    study_id: int
    status: str
    facility_id: int
    pacs: pacs.Pacs
    patient_id: str
    current: StudyFacts
    max_count: int
    max_years: int


def study_priors_fetch(*, study_id: int, now: dt.datetime | None = None) -> str:
    """Run one attempt at fetching ``study_id``'s relevant priors and return the
    fetch's status after it ("" when there is nothing to fetch or another attempt
    holds it).  Idempotent: a finished fetch, one whose attempt runs elsewhere and
    one whose retry is not yet due are left alone, and a prior already retrieved
    is not moved again."""
    attempt = _attempt_claim(study_id=study_id, now=now or timezone.now())
    if attempt is None:
        return ""
    try:
        if attempt.status == PriorFetch.Status.QUERYING:
            candidates = pacs.studies_find(
                attempt.pacs,
                calling_ae=settings.DICOM_PRIORS_AE_TITLE,
                patient_id=attempt.patient_id,
                timeout=settings.PRIORS_PACS_TIMEOUT_SECONDS,
            )
            choices = relevant_priors(
                current=attempt.current,
                candidates=candidates,
                max_count=attempt.max_count,
                max_years=attempt.max_years,
                today=timezone.localdate(),
            )
            _choices_record(attempt=attempt, choices=choices)
        for prior_id, uid in _priors_to_move(fetch_id=attempt.fetch_id):
            _prior_retrieving(prior_id=prior_id)
            result = pacs.study_move(
                attempt.pacs,
                calling_ae=settings.DICOM_PRIORS_AE_TITLE,
                move_destination=settings.DICOM_PRIORS_AE_TITLE,
                patient_id=attempt.patient_id,
                study_instance_uid=uid,
                timeout=settings.PRIORS_PACS_TIMEOUT_SECONDS,
                dimse_timeout=settings.PRIORS_MOVE_TIMEOUT_SECONDS,
            )
            _prior_moved(prior_id=prior_id, facility_id=attempt.facility_id, result=result)
    except pacs.PacsUnavailable as exc:
        logger.warning("priors of study %s: %s", study_id, exc)
        return _attempt_failed(fetch_id=attempt.fetch_id, error=str(exc))
    return _fetch_complete(fetch_id=attempt.fetch_id)


def _attempt_claim(*, study_id: int, now: dt.datetime) -> _Attempt | None:
    """Claim the next attempt of the study's fetch (creating the fetch on the first
    one) by a lease on the row; None if there is nothing to do now."""
    study = Study.objects.select_related("facility").filter(pk=study_id, is_prior=False).first()
    if study is None:
        return None
    facility = study.facility
    if not facility.has_pacs or not study.patient_id:
        # Nothing to ask (the PACS was removed since, or the study names no
        # patient): the study need not wait, and a fetch begun earlier ends here
        # (its open priors failed) rather than be swept again and again.
        with transaction.atomic():
            fetch = (
                PriorFetch.objects.select_for_update()
                .filter(study_id=study_id, status__in=UNFINISHED)
                .first()
            )
            if fetch is not None:
                why = "the facility no longer has a PACS"
                fetch.last_error = why
                PriorStudy.objects.filter(current_id=study_id, status__in=OPEN_PRIOR).update(
                    status=PriorStudy.Status.FAILED, reason=why, updated_at=now
                )
                _finish(fetch, status=PriorFetch.Status.FAILED, now=now)
        study_hold_release(study_id=study_id, hold="priors")
        return None
    try:
        with transaction.atomic():
            PriorFetch.objects.get_or_create(study_id=study_id)
    except IntegrityError:
        pass  # another attempt created it first
    with transaction.atomic():
        fetch = PriorFetch.objects.select_for_update().get(study_id=study_id)
        if fetch.status not in UNFINISHED:
            return None
        if fetch.next_attempt_at is not None and fetch.next_attempt_at > now:
            return None  # running elsewhere, or a retry not yet due
        fetch.running = True
        fetch.attempts += 1
        fetch.started_at = fetch.started_at or now
        fetch.next_attempt_at = now + dt.timedelta(seconds=settings.PRIORS_ATTEMPT_LEASE_SECONDS)
        fetch.save(update_fields=["running", "attempts", "started_at", "next_attempt_at"])
    assert facility.pacs_port is not None  # noqa: S101 - has_pacs says so
    return _Attempt(
        fetch_id=fetch.pk,
        study_id=study_id,
        status=fetch.status,
        facility_id=facility.pk,
        pacs=pacs.Pacs(
            ae_title=facility.pacs_ae_title, host=facility.pacs_host, port=facility.pacs_port
        ),
        patient_id=study.patient_id,
        current=StudyFacts(
            study_instance_uid=study.study_instance_uid,
            study_date=study.study_date,
            modalities=(study.modality,) if study.modality else (),
            body_part=study.body_part,
            description=study.study_description,
        ),
        max_count=facility.priors_max_count,
        max_years=facility.priors_max_years,
    )


def _choices_record(*, attempt: _Attempt, choices: list[Choice]) -> None:
    """Record the chosen priors (pending; one the facility already sent us is linked
    as retrieved, not moved again) and move the fetch on to retrieving."""
    uids = [c.prior.study_instance_uid for c in choices]
    stored = dict(
        Study.objects.filter(study_instance_uid__in=uids).values_list(
            "study_instance_uid", "facility_id"
        )
    )
    stored_ids = dict(
        Study.objects.filter(study_instance_uid__in=uids).values_list("study_instance_uid", "pk")
    )
    with transaction.atomic():
        for choice in choices:
            facts = choice.prior
            uid = facts.study_instance_uid
            row = PriorStudy(
                current_id=attempt.study_id,
                study_instance_uid=uid,
                study_date=facts.study_date,
                modality="\\".join(facts.modalities)[:64],
                description=facts.description[:200],
                body_part=facts.body_part[:64],
                accession_number=facts.accession_number[:16],
                relevance_code=choice.code,
                relevance=choice.reason[:200],
            )
            if uid in stored and stored[uid] == attempt.facility_id:
                row.status = PriorStudy.Status.RETRIEVED
                row.prior_id = stored_ids[uid]
            elif uid in stored:
                row.status = PriorStudy.Status.FAILED
                row.reason = "a study with this UID is stored for another facility"
            row.save()
        PriorFetch.objects.filter(pk=attempt.fetch_id).update(
            status=PriorFetch.Status.RETRIEVING, updated_at=timezone.now()
        )


def _priors_to_move(*, fetch_id: int) -> list[tuple[int, str]]:
    study_id = PriorFetch.objects.values_list("study_id", flat=True).get(pk=fetch_id)
    return list(
        PriorStudy.objects.filter(current_id=study_id, status__in=OPEN_PRIOR)
        .order_by("-study_date", "id")
        .values_list("pk", "study_instance_uid")
    )


def _prior_retrieving(*, prior_id: int) -> None:
    PriorStudy.objects.filter(pk=prior_id, status__in=OPEN_PRIOR).update(
        status=PriorStudy.Status.RETRIEVING, updated_at=timezone.now()
    )


def _prior_moved(*, prior_id: int, facility_id: int, result: pacs.MoveResult) -> None:
    """Record how one C-MOVE ended: retrieved (linked to the prior study the gateway
    filed) or failed with the PACS's reason."""
    row = PriorStudy.objects.get(pk=prior_id)
    stored = (
        Study.objects.filter(study_instance_uid=row.study_instance_uid, facility_id=facility_id)
        .values_list("pk", flat=True)
        .first()
    )
    row.instances_retrieved = result.completed
    row.instances_failed = result.failed
    if result.ok and stored is not None:
        row.status = PriorStudy.Status.RETRIEVED
        row.prior_id = stored
        row.reason = result.reason
    else:
        row.status = PriorStudy.Status.FAILED
        row.reason = (result.reason or "the PACS sent no instance of it")[:500]
    row.save(
        update_fields=[
            "status",
            "prior",
            "reason",
            "instances_retrieved",
            "instances_failed",
            "updated_at",
        ]
    )


def _attempt_failed(*, fetch_id: int, error: str) -> str:
    """The PACS was unavailable: try again after a back-off, or give up after the
    last attempt (the open priors fail with the error, the hold is released)."""
    now = timezone.now()
    with transaction.atomic():
        fetch = PriorFetch.objects.select_for_update().get(pk=fetch_id)
        fetch.running = False
        fetch.last_error = error[:500]
        PriorStudy.objects.filter(
            current_id=fetch.study_id, status=PriorStudy.Status.RETRIEVING
        ).update(status=PriorStudy.Status.PENDING, reason=error[:500], updated_at=now)
        if fetch.attempts < settings.PRIORS_FETCH_MAX_ATTEMPTS:
            fetch.next_attempt_at = now + retry_delay(fetch.attempts)
            fetch.save(update_fields=["running", "last_error", "next_attempt_at", "updated_at"])
            return str(fetch.status)
        PriorStudy.objects.filter(current_id=fetch.study_id, status__in=OPEN_PRIOR).update(
            status=PriorStudy.Status.FAILED,
            reason=f"gave up after {fetch.attempts} attempts: {error}"[:500],
            updated_at=now,
        )
        return _finish(fetch, status=PriorFetch.Status.FAILED, now=now)


def retry_delay(attempts: int) -> dt.timedelta:
    """The wait before the next attempt after ``attempts`` failed ones: doubling
    from PRIORS_RETRY_SECONDS, at most PRIORS_RETRY_MAX_SECONDS."""
    seconds = settings.PRIORS_RETRY_SECONDS * 2 ** max(0, attempts - 1)
    return dt.timedelta(seconds=min(seconds, settings.PRIORS_RETRY_MAX_SECONDS))


def _fetch_complete(*, fetch_id: int) -> str:
    """Every chosen prior is retrieved or failed (or none was chosen): the fetch is
    done and the study's priors hold released."""
    now = timezone.now()
    with transaction.atomic():
        fetch = PriorFetch.objects.select_for_update().get(pk=fetch_id)
        if fetch.status not in UNFINISHED:
            return str(fetch.status)
        return _finish(fetch, status=PriorFetch.Status.DONE, now=now)


def _finish(fetch: PriorFetch, *, status: str, now: dt.datetime) -> str:
    """Close the fetch (inside the caller's transaction), audit what came in, and
    release the study's hold so it is offered without waiting further."""
    fetch.status = status
    fetch.running = False
    fetch.next_attempt_at = None
    fetch.finished_at = now
    fetch.save(
        update_fields=[
            "status",
            "running",
            "next_attempt_at",
            "finished_at",
            "last_error",
            "updated_at",
        ]
    )
    counts = {
        s: PriorStudy.objects.filter(current_id=fetch.study_id, status=s).count()
        for s in (PriorStudy.Status.RETRIEVED, PriorStudy.Status.FAILED)
    }
    audit_record(
        actor=None,
        action=AuditEvent.Action.UPDATE,
        obj=fetch,
        detail={
            "event": "priors fetched",
            "status": status,
            "attempts": fetch.attempts,
            "retrieved": counts[PriorStudy.Status.RETRIEVED],
            "failed": counts[PriorStudy.Status.FAILED],
        },
    )
    study_hold_release(study_id=fetch.study_id, hold="priors", at=now)
    return status


def prior_fetches_sweep(*, now: dt.datetime | None = None, batch_size: int = 200) -> int:
    """Hand every due fetch (a retry, or an attempt whose worker died) and every
    ready study held for priors whose fetch never started to the fetch task; the
    task's claim keeps a fetch to one attempt at a time.  Returns how many."""
    now = now or timezone.now()
    due = list(selectors.fetches_due(now=now)[:batch_size])
    lost = list(
        selectors.studies_without_fetch(ready_before=now - dt.timedelta(seconds=30))[:batch_size]
    )
    for study_id in [*due, *lost]:
        # Nothing written here that the task must see: send at once.
        enqueue("priors.study_priors_fetch", study_id, after_commit=False)
    return len(due) + len(lost)

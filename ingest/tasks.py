"""Ingest's background work: the completeness sweep and late-image checks."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from alerts.models import Alert
from alerts.services import alert_raise
from ingest import services
from ingest.models import QuarantinedObject
from ingest.storage import default_storage
from teleradiology.celery import AppTask


@shared_task(base=AppTask, name="ingest.studies_mark_ready", soft_time_limit=20, time_limit=30)
def studies_mark_ready() -> int:
    """Beat sweep: declare ready the studies whose quiet period has passed (idempotent)."""
    return len(services.studies_mark_ready(quiet_seconds=settings.STUDY_QUIET_SECONDS))


@shared_task(
    base=AppTask,
    name="ingest.study_check_images_after_report",
    # Idempotent: the alerts' dedupe keys (study and late instance count after the
    # final report; study, reader and window while it is held) raise each once.
    acks_late=True,
    max_retries=5,
    soft_time_limit=20,
    time_limit=30,
)
def study_check_images_after_report(study_id: int) -> bool:
    """Tell the holder of a claimed or preliminary study, or the group's admins after
    the final report, that late images arrived (ingest.study_late_images_alert)."""
    return services.study_late_images_alert(study_id=study_id)


@shared_task(
    base=AppTask,
    name="ingest.quarantine_alert",
    # Idempotent: the alert's dedupe key (facility, study) raises it once.
    acks_late=True,
    max_retries=5,
    soft_time_limit=20,
    time_limit=30,
)
def quarantine_alert(quarantine_id: int) -> bool:
    """Tell the sending facility's group admins, once per facility and study, that an
    object conflicting with a stored one was quarantined (the stored one untouched)."""
    row = QuarantinedObject.objects.select_related("facility__reading_group").get(pk=quarantine_id)
    if row.facility is None:
        return False
    raised = alert_raise(
        kind=Alert.Kind.INGEST_CONFLICT,
        dedupe_key=f"ingest-conflict:{row.facility_id}:{row.study_instance_uid}",
        message=(
            f"{row.facility.name} ({row.calling_ae}) sent objects that conflict with stored "
            f"ones, first: {row.reason}. They are in quarantine (first: #{row.pk}); the "
            "stored images are unchanged. Check the sender's UID generation."
        )[:1000],
        reading_group=row.facility.reading_group,
    )
    return raised is not None


@shared_task(
    base=AppTask,
    name="ingest.storage_usage_sweep",
    soft_time_limit=120,
    time_limit=180,
    autoretry_for=(),  # not retried: the next beat run measures afresh
)
def storage_usage_sweep() -> int:
    """Beat sweep: measure each facility's stored bytes and alert near its quota."""
    return len(services.storage_usage_measure())


@shared_task(
    base=AppTask,
    name="ingest.orphans_sweep",
    soft_time_limit=1800,
    time_limit=1900,
    autoretry_for=(),  # not retried: a long walk of the storage; the next beat run walks again
)
def orphans_sweep() -> int:
    """Beat sweep: move stored files that no row names into quarantine, with a row."""
    return services.orphans_sweep(
        storage=default_storage(), older_than_seconds=settings.INGEST_ORPHAN_MIN_AGE_SECONDS
    )


@shared_task(
    base=AppTask,
    name="ingest.studies_dicom_json_build",
    # Idempotent: only instances without JSON are built, and a stale build is not
    # recorded over a newer version.
    acks_late=True,
    max_retries=3,
    soft_time_limit=300,
    time_limit=330,
)
def studies_dicom_json_build(study_ids: list[int]) -> int:
    """Build the stored DICOM JSON of the studies' instances (their WADO-RS metadata)."""
    return services.instances_dicom_json_build(storage=default_storage(), study_ids=study_ids)

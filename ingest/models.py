"""What the gateway could not file under a study: kept, with the reason, never dropped."""

from django.db import models


class QuarantinedObject(models.Model):
    """An object received but not filed (unparseable, missing UIDs, wrong facility)."""

    received_at = models.DateTimeField(db_index=True)
    calling_ae = models.CharField(max_length=16, blank=True)
    peer_address = models.GenericIPAddressField(null=True, blank=True)
    facility = models.ForeignKey(
        "network.Facility", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=500)
    # The C-STORE status the sender was answered (see ingest/status.py).
    status = models.PositiveIntegerField(default=0xC210)
    # Where the object is kept; blank for one refused as too large (recorded only).
    storage_key = models.CharField(max_length=300, blank=True, db_index=True)
    size_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    sop_instance_uid = models.CharField(max_length=200, blank=True)
    # Indexed: a new study counts the objects of it refused before it existed.
    study_instance_uid = models.CharField(max_length=200, blank=True, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.received_at:%Y-%m-%d %H:%M:%S} {self.calling_ae}: {self.reason}"


class FacilityStorageUsage(models.Model):
    """Bytes stored for a facility (instances, their earlier versions and its
    quarantine), measured by a beat sweep; the gateway compares it with the
    facility's quota when it admits an association."""

    facility = models.OneToOneField(
        "network.Facility", primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    stored_bytes = models.PositiveBigIntegerField(default=0)
    measured_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"facility {self.facility_id}: {self.stored_bytes} bytes"

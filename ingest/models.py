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
    storage_key = models.CharField(max_length=300, blank=True)
    size_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    sop_instance_uid = models.CharField(max_length=200, blank=True)
    study_instance_uid = models.CharField(max_length=200, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.received_at:%Y-%m-%d %H:%M:%S} {self.calling_ae}: {self.reason}"

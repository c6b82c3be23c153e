"""Recording that the background machinery is alive."""

import socket

from django.utils import timezone

from health.models import Heartbeat


def heartbeat_record(*, name: str = "worker") -> Heartbeat:
    """Upsert the named heartbeat to now; idempotent, one row per name."""
    beat, _ = Heartbeat.objects.update_or_create(
        name=name, defaults={"at": timezone.now(), "hostname": socket.gethostname()}
    )
    return beat

"""Liveness of the background processes, as seen from the database."""

from django.db import models


class Heartbeat(models.Model):
    """The last time a worker ran a beat-scheduled task: proof both are alive."""

    name = models.CharField(max_length=100, unique=True)
    at = models.DateTimeField()
    hostname = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.at:%H:%M:%S}"

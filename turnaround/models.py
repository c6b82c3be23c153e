"""Turnaround keeps no tables of its own; this holds its one permission."""

from django.db import models


class MetricsAccess(models.Model):
    """Not a table: carries ``turnaround.view_metrics`` (read ``/metrics`` signed in)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_metrics", "Can read the Prometheus metrics (/metrics)")]

    def __str__(self) -> str:
        return "metrics access"

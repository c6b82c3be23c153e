"""Turnaround arithmetic, free of the database."""

import datetime as dt


def sla_due_at(*, received_at: dt.datetime, tat_minutes: int) -> dt.datetime:
    """When the final report is due: receipt plus the contracted turnaround."""
    if tat_minutes <= 0:
        raise ValueError("turnaround must be positive")
    return received_at + dt.timedelta(minutes=tat_minutes)

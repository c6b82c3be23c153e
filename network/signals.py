"""What the network tells the stages above it, which it may not import.

``eligibility_changed`` is sent synchronously, inside the transaction of the change,
with the ids of the readers whose eligibility may have changed (a license, privilege,
shift, pause, subspecialty or standing): routing listens, withdraws the offers the
change makes ineligible and re-routes what is left with nobody, in that same
transaction (routing.apps connects the receiver).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.dispatch import Signal

eligibility_changed = Signal()


def eligibility_changed_send(*, radiologist_ids: Iterable[int], at: dt.datetime) -> None:
    """Tell the listeners that these readers' eligibility may have changed at ``at``."""
    ids = sorted({int(pk) for pk in radiologist_ids})
    if ids:
        eligibility_changed.send(sender=None, radiologist_ids=ids, at=at)

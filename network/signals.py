"""What the network tells the stages above it, which it may not import.

``eligibility_changed`` is sent synchronously, inside the transaction of the change,
with the ids of the readers whose eligibility may have changed (a license, privilege,
shift, pause, subspecialty, standing, cap or home region): routing listens, withdraws
the offers the change makes ineligible and re-routes what is left with nobody, in
that same transaction (routing.apps connects the receiver); and the network appends
a version of each reader's facts to their history (network.history, connected in
network.apps), in that transaction too.

``aging_changed`` is sent, inside the transaction of the change, when a reading
group's aging step (``ReadingGroup.worklist_aging_minutes``) changes: worklist
listens and re-keys the group's open offers (worklist.apps connects the receiver).
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


aging_changed = Signal()


def aging_changed_send(*, reading_group_id: int, step: dt.timedelta) -> None:
    """Tell the listeners that the group's aging step is now ``step``."""
    aging_changed.send(sender=None, reading_group_id=int(reading_group_id), step=step)

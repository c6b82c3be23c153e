"""Aging: the worklist order that lets no priority class starve (pure, no Django).

A waiting study rises one priority level per ``step`` of waiting.  Its aged
priority at time ``now`` is ``priority - (now - received_at) / step``; ordering by
it at any ``now`` is ordering by ``received_at + (priority - 1) * step`` (``now`` is
the same for every row), a key fixed when the offer is made, so the worklist stays
one walk of one index.  A STAT study arriving at ``t`` ranks with an urgent study
that arrived at ``t - step`` and a routine one that arrived at ``t - 2 * step``.

The bound: a study's key never changes and every study arriving after
``rank_at`` has a larger key, so only the finite work with a smaller key can ever
be ahead of it.  With readers keeping up on average (utilisation below 1), a study
reaches the top of every worklist it is on within ``(priority - 1) * step`` plus
the time to read what was already ahead of it then; docs/routing.md works the
numbers for the default step.
"""

from __future__ import annotations

import datetime as dt

STAT = 1


def rank_offset(*, priority: int, step: dt.timedelta) -> dt.timedelta:
    """How far after its arrival a study of ``priority`` ranks: one step per level
    below STAT (a set-based re-key adds it to ``received_at`` in the database)."""
    return (priority - STAT) * step


def rank_at(*, priority: int, received_at: dt.datetime, step: dt.timedelta) -> dt.datetime:
    """The fixed sort key of a study on a worklist (smaller first)."""
    return received_at + rank_offset(priority=priority, step=step)


def aged_priority(*, priority: int, waited: dt.timedelta, step: dt.timedelta) -> float:
    """A study's priority after waiting ``waited`` (lower is more urgent; may go
    below STAT's 1 for a study that waited longer than its offset)."""
    return priority - waited / step

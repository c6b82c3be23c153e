"""The history of readers' eligibility facts: ``network.ReaderVersion``, append-only.

Every change saved through network's services that may change who may read what
(a license, privilege, shift, rota, leave, pause, standing or subspecialty) sends
``network.signals.eligibility_changed`` inside its transaction; the receiver
connected in ``network.apps`` records a new version of each named reader's facts
here, unless nothing the policy reads has changed.  A version is in force from its
``recorded_at`` until the reader's next one, so the readers' state at any past
instant has one answer (the rule simulator reads it through the same eligibility
policy as live routing: ``simulation.roster``).

Before a reader's first version (history began when this table did), their first
version stands for the earlier past.

INTERFACE (laid by the lead; the history helper implements the bodies):
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CredentialSpan:
    """A license or privilege as recorded: valid from ``starts_at`` until ``ends_at``
    (instants, ``network.validity.validity_window`` in the jurisdiction's or the
    facility's time zone), its status active or not, and (licenses) whether it
    allows final reads."""

    starts_at: dt.datetime
    ends_at: dt.datetime
    active: bool
    final_scope: bool = True


@dataclass(frozen=True)
class ReaderState:
    """One version of a reader's eligibility facts."""

    radiologist_id: int
    name: str
    recorded_at: dt.datetime
    active: bool
    is_available: bool
    paused_until: dt.datetime | None
    workload_cap: int
    home_region_id: int
    country: str  # the home region's reading-group country (as routing reads it)
    subspecialties: frozenset[str]
    licenses: Mapping[str, tuple[CredentialSpan, ...]]  # by jurisdiction code
    privileges: Mapping[int, tuple[CredentialSpan, ...]]  # by facility id
    # The reader's shifts that had not ended when the version was recorded,
    # (starts_at, ends_at), sorted by start.
    shifts: tuple[tuple[dt.datetime, dt.datetime], ...]

    def available_at(self, at: dt.datetime) -> bool:
        """Accepting cases at ``at``: not paused, or the pause had run out
        (``routing.selectors.READER_AVAILABLE``)."""
        return self.is_available or (self.paused_until is not None and self.paused_until <= at)

    def on_shift_at(self, at: dt.datetime) -> bool:
        """A recorded shift under way at ``at`` (starts_at <= at < ends_at)."""
        i = bisect.bisect_right(self.shifts, (at, dt.datetime.max.replace(tzinfo=dt.UTC)))
        return any(start <= at < end for start, end in self.shifts[max(0, i - 8) : i])

    def next_shift_start(self, after: dt.datetime) -> dt.datetime | None:
        """The first recorded shift start strictly after ``after``."""
        for start, _ in self.shifts:
            if start > after:
                return start
        return None


class ReaderTimeline:
    """A reader's versions in order; ``at(t)`` is the version in force at ``t``."""

    def __init__(self, states: Sequence[ReaderState]) -> None:
        if not states:
            raise ValueError("a timeline needs at least one version")
        self.states = sorted(states, key=lambda s: s.recorded_at)
        self._times = [s.recorded_at for s in self.states]

    def at(self, when: dt.datetime) -> ReaderState:
        i = bisect.bisect_right(self._times, when)
        return self.states[max(0, i - 1)]


def reader_versions_record(*, radiologist_ids: Iterable[int], at: dt.datetime) -> int:
    """Append a version of each reader's current facts recorded at ``at`` (one
    set-based read for all), skipping a reader whose facts equal their latest
    version's; the number written."""
    raise NotImplementedError


def reader_timelines(
    *, reading_group_id: int, since: dt.datetime, until: dt.datetime
) -> dict[int, ReaderTimeline]:
    """The timelines of the group's readers over [since, until): each reader's
    version in force at ``since`` (or their first) and every later one recorded
    before ``until``, decoded once (bounded by the number of changes, not of
    studies)."""
    raise NotImplementedError


def history_began(*, reading_group_id: int) -> dt.datetime | None:
    """When the group's first version was recorded (None: no history yet)."""
    raise NotImplementedError

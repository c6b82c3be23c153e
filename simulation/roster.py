"""The readers of one reading group as they were over a past window: the replay's
``engine.Roster``, built from the history of their eligibility facts
(``network.history.reader_timelines``) and the group's tier configuration as it
is now (facilities' regions and countries, the named pools per facility and tier,
the pools' readers: routing keeps no history of them).

It answers as live routing reads the database at the same instant:
``plausible`` is ``routing.selectors._plausible_pairs`` (the group's readers on
shift holding some license in the jurisdiction and some privilege at the
facility, whatever their status or validity) and ``facts`` is
``routing.selectors._Readers.facts`` (the same tier by ``eligibility.tier_of``,
the same credentials, judged by the same policy), with the simulated load in
place of the live one.

Everything is read once, in a handful of queries; the answers are cached (per
reader version, facility and jurisdiction; and per stretch of time in which
nobody's version or shift changes), so a replay of tens of thousands of studies
reads no more and recomputes little.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Mapping

from django.db.models import QuerySet

from network.history import CredentialSpan, ReaderState, ReaderTimeline, reader_timelines
from network.models import Facility
from routing.eligibility import CandidateFacts, Credential, tier_of
from routing.models import FacilityTierPool, ReaderPool

# What facts() reads of a (reader version, facility, jurisdiction): name, tier,
# active, subspecialties, licenses, privileges, workload cap.
_Static = tuple[str, int, bool, frozenset[str], tuple[Credential, ...], tuple[Credential, ...], int]


def _credentials(
    spans: tuple[CredentialSpan, ...], key: str, *, is_license: bool
) -> tuple[Credential, ...]:
    """Recorded spans as the policy's credentials (as ``routing.selectors.
    credential_from_row`` makes them: a privilege never has a final scope)."""
    return tuple(
        Credential(
            key=key,
            starts_at=s.starts_at,
            ends_at=s.ends_at,
            active=s.active,
            final_scope=is_license and s.final_scope,
        )
        for s in spans
    )


class _Facility:
    __slots__ = ("country", "pools", "region_id")

    def __init__(self, region_id: int, country: str, pools: Mapping[int, int]) -> None:
        self.region_id = region_id
        self.country = country
        self.pools = pools


class HistoryRoster:
    """``engine.Roster`` for one reading group over ``[since, until)``."""

    def __init__(
        self,
        *,
        reading_group_id: int,
        since: dt.datetime,
        until: dt.datetime,
        timelines: Mapping[int, ReaderTimeline] | None = None,
    ) -> None:
        self.reading_group_id = reading_group_id
        self.timelines: Mapping[int, ReaderTimeline] = (
            timelines
            if timelines is not None
            else reader_timelines(reading_group_id=reading_group_id, since=since, until=until)
        )
        self._facilities: dict[int, _Facility] = {}
        self._facilities_read(Facility.objects.filter(reading_group_id=reading_group_id))
        self._reader_pools: dict[int, frozenset[int]] = {}
        members: dict[int, set[int]] = defaultdict(set)
        for pool_id, reader_id in ReaderPool.radiologists.through.objects.filter(
            readerpool__reading_group_id=reading_group_id
        ).values_list("readerpool_id", "radiologist_id"):
            members[reader_id].add(pool_id)
        self._reader_pools = {r: frozenset(p) for r, p in members.items()}
        # Caches.
        self._static: dict[tuple[int, dt.datetime, int, str], _Static] = {}
        self._pairs: dict[tuple[int, str], tuple[list[int], list[dt.datetime]]] = {}
        self._plausible: dict[tuple[int, str, int], tuple[int, ...]] = {}
        self._changes: dict[int, list[dt.datetime]] = {}
        self._starts: dict[int, list[dt.datetime]] = {}

    def _facilities_read(self, facilities: QuerySet[Facility]) -> None:
        """The facilities' region, country and named pools (two queries)."""
        rows = list(facilities.values_list("pk", "region_id", "region__country"))
        pools: dict[int, dict[int, int]] = defaultdict(dict)
        for facility_id, tier, pool_id in FacilityTierPool.objects.filter(
            facility_id__in=[r[0] for r in rows]
        ).values_list("facility_id", "tier", "pool_id"):
            pools[facility_id][tier] = pool_id
        for pk, region_id, country in rows:
            self._facilities[pk] = _Facility(region_id, country, pools.get(pk, {}))

    def _facility(self, facility_id: int) -> _Facility:
        found = self._facilities.get(facility_id)
        if found is None:  # moved to the group since: read it (once)
            self._facilities_read(Facility.objects.filter(pk=facility_id))
            found = self._facilities[facility_id]
        return found

    # --- the protocol -------------------------------------------------------------

    def name(self, radiologist_id: int) -> str:
        return self.timelines[radiologist_id].states[-1].name

    def state(self, radiologist_id: int, at: dt.datetime) -> ReaderState:
        """The reader's version in force at ``at``."""
        return self.timelines[radiologist_id].at(at)

    def on_shift(self, radiologist_id: int, at: dt.datetime) -> bool:
        return self.state(radiologist_id, at).on_shift_at(at)

    def available(self, radiologist_id: int, at: dt.datetime) -> bool:
        return self.state(radiologist_id, at).available_at(at)

    def next_shift_start(self, radiologist_id: int, after: dt.datetime) -> dt.datetime | None:
        """The first instant after ``after`` at which the reader starts a shift the
        history had recorded by then (a shift known to any version counts only if
        the version in force at its start still has it)."""
        starts = self._starts.get(radiologist_id)
        if starts is None:
            starts = self._starts[radiologist_id] = sorted(
                {start for s in self.timelines[radiologist_id].states for start, _ in s.shifts}
            )
        for start in starts[bisect.bisect_right(starts, after) :]:
            if self.on_shift(radiologist_id, start):
                return start
        return None

    def plausible(self, facility_id: int, jurisdiction: str, at: dt.datetime) -> list[int]:
        """The group's readers on shift at ``at`` holding some license in the
        jurisdiction and some privilege at the facility (any status or validity),
        by id: live routing's candidates (``routing.selectors._plausible_pairs``).
        Cached per stretch of time in which none of the pair's readers changes
        version or starts or ends a shift."""
        readers, changes = self._pair(facility_id, jurisdiction)
        key = (facility_id, jurisdiction, bisect.bisect_right(changes, at))
        found = self._plausible.get(key)
        if found is None:
            found = ()
            for pk in readers:
                s = self.timelines[pk].at(at)
                if (
                    s.licenses.get(jurisdiction)
                    and s.privileges.get(facility_id)
                    and s.on_shift_at(at)
                ):
                    found += (pk,)
            self._plausible[key] = found
        return list(found)

    def facts(
        self,
        radiologist_id: int,
        *,
        facility_id: int,
        jurisdiction: str,
        at: dt.datetime,
        open_claims: int,
        recent_work: float,
    ) -> CandidateFacts:
        """The reader's facts for a study of the facility and jurisdiction at ``at``,
        as ``routing.selectors._Readers.facts`` gathers them, with the simulated
        open claims and recent work."""
        s = self.timelines[radiologist_id].at(at)
        key = (radiologist_id, s.recorded_at, facility_id, jurisdiction)
        static = self._static.get(key)
        if static is None:
            static = self._static[key] = self._static_facts(s, facility_id, jurisdiction)
        name, tier, active, subspecialties, licenses, privileges, cap = static
        return CandidateFacts(
            radiologist_id=radiologist_id,
            name=name,
            tier=tier,
            active=active,
            available=s.available_at(at),
            on_shift=s.on_shift_at(at),
            subspecialties=subspecialties,
            licenses=licenses,
            privileges=privileges,
            open_claims=open_claims,
            workload_cap=cap,
            recent_work=recent_work,
        )

    # --- the caches ---------------------------------------------------------------

    def _static_facts(self, s: ReaderState, facility_id: int, jurisdiction: str) -> _Static:
        facility = self._facility(facility_id)
        tier = tier_of(
            home_region_id=s.home_region_id,
            home_country=s.country,
            facility_region_id=facility.region_id,
            facility_country=facility.country,
            local_pool=facility.pools.get(0),
            regional_pool=facility.pools.get(1),
            pools=self._reader_pools.get(s.radiologist_id, frozenset()),
        )
        return (
            s.name,
            tier,
            s.active,
            frozenset(s.subspecialties),
            _credentials(s.licenses.get(jurisdiction, ()), jurisdiction, is_license=True),
            _credentials(s.privileges.get(facility_id, ()), str(facility_id), is_license=False),
            s.workload_cap,
        )

    def _reader_changes(self, pk: int) -> list[dt.datetime]:
        """Every instant at which the reader's version or shift status may change."""
        found = self._changes.get(pk)
        if found is None:
            points: set[dt.datetime] = set()
            for s in self.timelines[pk].states:
                points.add(s.recorded_at)
                for start, end in s.shifts:
                    points.add(start)
                    points.add(end)
            found = self._changes[pk] = sorted(points)
        return found

    def _pair(self, facility_id: int, jurisdiction: str) -> tuple[list[int], list[dt.datetime]]:
        """The readers who ever (in some version) held a license in the jurisdiction
        and a privilege at the facility, and the instants their answers may change."""
        key = (facility_id, jurisdiction)
        found = self._pairs.get(key)
        if found is None:
            readers = sorted(
                pk
                for pk, timeline in self.timelines.items()
                if any(
                    s.licenses.get(jurisdiction) and s.privileges.get(facility_id)
                    for s in timeline.states
                )
            )
            changes = sorted({t for pk in readers for t in self._reader_changes(pk)})
            found = self._pairs[key] = (readers, changes)
        return found

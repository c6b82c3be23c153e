"""The history of readers' eligibility facts: ``network.ReaderVersion``, append-only.

Every change saved through network's services that may change who may read what
(a license, privilege, shift, rota, leave, pause, standing, cap, home region or
subspecialty) sends ``network.signals.eligibility_changed`` inside its transaction;
the receiver connected in ``network.apps`` records a new version of each named
reader's facts here, unless nothing the policy reads has changed.  A version is in
force from its ``recorded_at`` until the reader's next one, so the readers' state at
any past instant has one answer (the rule simulator reads it through the same
eligibility policy as live routing: ``simulation.roster``).  The history is of what
was recorded when: a shift shortened after the fact shows in the versions from the
correction on, not before it.

Before a reader's first version (history began when this table did, or when
migration 0010 recorded every reader then), their first version stands for the
earlier past.

The facts (``ReaderVersion.facts``, ``FACTS_FORMAT`` 1) are JSON, as of the
version's ``recorded_at``::

    {"format": 1, "name": "Dr A", "active": true, "is_available": false,
     "paused_until": "2026-06-01T15:00:00+00:00",  # null when not paused
     "workload_cap": 5, "home_region_id": 3, "country": "US",  # the home region's
     "subspecialties": ["msk", "neuro"],
     "licenses": [[jurisdiction code, valid_from, valid_to, valid_until_time | null,
                   the jurisdiction's time zone, status, scope], ...],
     "privileges": [[facility id, valid_from, valid_to, valid_until_time | null,
                     the facility's time zone, status], ...],
     "shifts": [[starts_at, ends_at], ...]}  # those not ended at recorded_at

dates as ``YYYY-MM-DD``, times as ``HH:MM[:SS]``, instants as ISO 8601 in UTC, every
list sorted.  The credentials are kept as their rows say (dates in their zone), and
turned into instants when read, by ``network.validity.validity_window`` as live
routing turns its rows (``routing.selectors.credential_from_row``).  A pause that has
run out by ``recorded_at`` is written as no pause.

Backdated versions (demo seeding, tests): ``reader_versions_record(radiologist_ids=...,
at=<past instant>)`` records the readers' facts as the tables hold them now, stamped
``at``, and skips a reader whose version in force at ``at`` says the same; record in
the order of time (set the rows as they were, record, change them, record later).
To write a version whose facts differ from the tables, take
``reader_facts(radiologist_ids=..., at=...)``, edit the dicts (same format) and
``ReaderVersion.objects.bulk_create`` them with ``radiologist_id``,
``reading_group_id``, ``recorded_at`` and ``facts``: nothing else derives from a
version.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, NamedTuple

from django.db.models import Min, Model, OuterRef, Q, Subquery

from network.validity import validity_window

FACTS_FORMAT = 1
ACTIVE = "active"  # network.models.CredentialStatus.ACTIVE
FINAL = "final"  # network.models.License.Scope.FINAL
# Readers read per set of statements: bounded so that the statements' parameters
# stay within any backend's limits.
_CHUNK = 500


@dataclass(frozen=True)
class CredentialSpan:
    """A license or privilege as recorded: valid from ``starts_at`` until ``ends_at``
    (instants, ``network.validity.validity_window`` in the jurisdiction's or the
    facility's time zone), its status active or not, and (licenses) whether it
    allows final reads (a privilege's is False, as routing reads it)."""

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
    country: str  # the home region's country (routing's ``rg.country``)
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

    @cached_property
    def _on_duty(self) -> tuple[list[dt.datetime], list[dt.datetime]]:
        """The shifts merged into disjoint periods (overlapping or adjacent shifts make
        one), as their starts and ends in order."""
        starts: list[dt.datetime] = []
        ends: list[dt.datetime] = []
        for start, end in sorted(self.shifts):
            if ends and start <= ends[-1]:
                ends[-1] = max(ends[-1], end)
            else:
                starts.append(start)
                ends.append(end)
        return starts, ends

    def on_shift_at(self, at: dt.datetime) -> bool:
        """A recorded shift under way at ``at`` (starts_at <= at < ends_at)."""
        starts, ends = self._on_duty
        i = bisect.bisect_right(starts, at) - 1
        return i >= 0 and at < ends[i]

    @cached_property
    def _starts(self) -> list[dt.datetime]:
        return sorted(start for start, _ in self.shifts)

    def next_shift_start(self, after: dt.datetime) -> dt.datetime | None:
        """The first recorded shift start strictly after ``after``."""
        starts = self._starts
        i = bisect.bisect_right(starts, after)
        return starts[i] if i < len(starts) else None


class ReaderTimeline:
    """A reader's versions in order; ``at(t)`` is the version in force at ``t``
    (before the first, the first)."""

    def __init__(self, states: Sequence[ReaderState]) -> None:
        if not states:
            raise ValueError("a timeline needs at least one version")
        self.states = sorted(states, key=lambda s: s.recorded_at)
        self._times = [s.recorded_at for s in self.states]

    def at(self, when: dt.datetime) -> ReaderState:
        i = bisect.bisect_right(self._times, when)
        return self.states[max(0, i - 1)]


# --- Writing ---------------------------------------------------------------------
class Tables(NamedTuple):
    """The models read and written: network's own, or a migration's historical ones
    (migration 0010 records the first versions with them)."""

    radiologist: type[Model]
    license: type[Model]
    privilege: type[Model]
    shift: type[Model]
    version: type[Model]


def _tables() -> Tables:
    from network.models import FacilityPrivilege, License, Radiologist, ReaderVersion, Shift

    return Tables(Radiologist, License, FacilityPrivilege, Shift, ReaderVersion)


def _instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def _as_of(facts: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
    """The facts as they stand at ``at``: shifts ended by then dropped, a pause run
    out by then read as no pause (what a version recorded at ``at`` would say)."""
    out = dict(facts)
    out["shifts"] = [s for s in facts["shifts"] if dt.datetime.fromisoformat(s[1]) > at]
    until = facts["paused_until"]
    if until is not None and dt.datetime.fromisoformat(until) <= at:
        out["is_available"] = True
        out["paused_until"] = None
    return out


def _read(tables: Tables, ids: list[int], at: dt.datetime) -> dict[int, tuple[int, dict[str, Any]]]:
    """(reading group id, facts) of each named reader now, in five statements."""
    readers = (
        tables.radiologist._default_manager.filter(pk__in=ids)
        .order_by()
        .values_list(
            "pk",
            "reading_group_id",
            "display_name",
            "is_active",
            "is_available",
            "paused_until",
            "workload_cap",
            "home_region_id",
            "home_region__country",
        )
    )
    facts: dict[int, dict[str, Any]] = {}
    groups: dict[int, int] = {}
    for pk, group, name, active, available, until, cap, region, country in readers:
        groups[pk] = group
        facts[pk] = {
            "format": FACTS_FORMAT,
            "name": name,
            "active": bool(active),
            "is_available": bool(available),
            "paused_until": None if until is None else _instant(until),
            "workload_cap": int(cap),
            "home_region_id": int(region),
            "country": country,
            "subspecialties": [],
            "licenses": [],
            "privileges": [],
            "shifts": [],
        }
    if not facts:
        return {}
    found = list(facts)
    radiologist: Any = tables.radiologist
    through = radiologist.subspecialties.through
    for pk, code in (
        through._default_manager.filter(radiologist_id__in=found)
        .order_by()
        .values_list("radiologist_id", "subspecialty__code")
    ):
        facts[pk]["subspecialties"].append(code)
    for pk, code, valid_from, valid_to, until, zone, status, scope in (
        tables.license._default_manager.filter(radiologist_id__in=found)
        .order_by()
        .values_list(
            "radiologist_id",
            "jurisdiction__code",
            "valid_from",
            "valid_to",
            "valid_until_time",
            "jurisdiction__timezone",
            "status",
            "scope",
        )
    ):
        facts[pk]["licenses"].append(
            [
                code,
                valid_from.isoformat(),
                valid_to.isoformat(),
                None if until is None else until.isoformat(),
                zone,
                status,
                scope,
            ]
        )
    for pk, facility_id, valid_from, valid_to, until, zone, status in (
        tables.privilege._default_manager.filter(radiologist_id__in=found)
        .order_by()
        .values_list(
            "radiologist_id",
            "facility_id",
            "valid_from",
            "valid_to",
            "valid_until_time",
            "facility__timezone",
            "status",
        )
    ):
        facts[pk]["privileges"].append(
            [
                int(facility_id),
                valid_from.isoformat(),
                valid_to.isoformat(),
                None if until is None else until.isoformat(),
                zone,
                status,
            ]
        )
    for pk, starts_at, ends_at in (
        tables.shift._default_manager.filter(radiologist_id__in=found, ends_at__gt=at)
        .order_by()
        .values_list("radiologist_id", "starts_at", "ends_at")
    ):
        facts[pk]["shifts"].append([_instant(starts_at), _instant(ends_at)])
    out = {}
    for pk, f in facts.items():
        for name in ("subspecialties", "licenses", "privileges"):
            f[name].sort(key=lambda item: [("" if v is None else str(v)) for v in item])
        f["shifts"].sort()
        out[pk] = (groups[pk], _as_of(f, at))
    return out


def reader_facts(*, radiologist_ids: Iterable[int], at: dt.datetime) -> dict[int, dict[str, Any]]:
    """Each named reader's facts as a version recorded at ``at`` would hold them
    (the ``facts`` format above), by reader id; nothing written."""
    ids = sorted({int(pk) for pk in radiologist_ids})
    tables = _tables()
    out: dict[int, dict[str, Any]] = {}
    for i in range(0, len(ids), _CHUNK):
        out.update({pk: facts for pk, (_, facts) in _read(tables, ids[i : i + _CHUNK], at).items()})
    return out


def versions_record(tables: Tables, *, radiologist_ids: Iterable[int], at: dt.datetime) -> int:
    """``reader_versions_record`` with the given tables (a migration's own)."""
    ids = sorted({int(pk) for pk in radiologist_ids})
    written = 0
    versions = tables.version._default_manager
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        current = _read(tables, chunk, at)
        if not current:
            continue
        # The version in force at ``at`` of each reader (one statement: the
        # readerversion_latest_idx answers each reader's probe).
        in_force = versions.filter(radiologist_id=OuterRef("radiologist_id"), recorded_at__lte=at)
        latest = dict(
            versions.filter(
                radiologist_id__in=list(current),
                pk=Subquery(in_force.order_by("-recorded_at", "-pk").values("pk")[:1]),
            )
            .order_by()
            .values_list("radiologist_id", "facts")
        )
        rows = []
        for pk, (group_id, facts) in current.items():
            held = latest.get(pk)
            # (A version of another format is never equal: a new one is written.)
            if (
                held is not None
                and held.get("format") == FACTS_FORMAT
                and _as_of(held, at) == facts
            ):
                continue
            rows.append(
                tables.version(
                    radiologist_id=pk, reading_group_id=group_id, recorded_at=at, facts=facts
                )
            )
        versions.bulk_create(rows)
        written += len(rows)
    return written


def reader_versions_record(*, radiologist_ids: Iterable[int], at: dt.datetime) -> int:
    """Append a version of each reader's current facts recorded at ``at`` (one
    set-based read for all), skipping a reader whose facts equal their latest
    version's; the number written."""
    return versions_record(_tables(), radiologist_ids=radiologist_ids, at=at)


# --- Reading ---------------------------------------------------------------------
def _spans(rows: list[list[Any]], *, is_license: bool) -> dict[Any, tuple[CredentialSpan, ...]]:
    by_key: dict[Any, list[CredentialSpan]] = defaultdict(list)
    for row in rows:
        key, valid_from, valid_to, until, zone, status = row[:6]
        starts_at, ends_at = validity_window(
            dt.date.fromisoformat(valid_from),
            dt.date.fromisoformat(valid_to),
            None if until is None else dt.time.fromisoformat(until),
            zone,
        )
        by_key[key if is_license else int(key)].append(
            CredentialSpan(
                starts_at=starts_at,
                ends_at=ends_at,
                active=status == ACTIVE,
                final_scope=is_license and row[6] == FINAL,
            )
        )
    return {key: tuple(spans) for key, spans in by_key.items()}


def reader_state(
    radiologist_id: int, recorded_at: dt.datetime, facts: Mapping[str, Any]
) -> ReaderState:
    """A version's facts decoded (credentials as instants, as live routing reads them)."""
    if facts.get("format") != FACTS_FORMAT:
        raise ValueError(f"reader version facts of an unknown format: {facts.get('format')!r}")
    until = facts["paused_until"]
    return ReaderState(
        radiologist_id=radiologist_id,
        name=facts["name"],
        recorded_at=recorded_at,
        active=bool(facts["active"]),
        is_available=bool(facts["is_available"]),
        paused_until=None if until is None else dt.datetime.fromisoformat(until),
        workload_cap=int(facts["workload_cap"]),
        home_region_id=int(facts["home_region_id"]),
        country=facts["country"],
        subspecialties=frozenset(facts["subspecialties"]),
        licenses=_spans(facts["licenses"], is_license=True),
        privileges=_spans(facts["privileges"], is_license=False),
        shifts=tuple(
            sorted(
                (dt.datetime.fromisoformat(s), dt.datetime.fromisoformat(e))
                for s, e in facts["shifts"]
            )
        ),
    )


def reader_timelines(
    *, reading_group_id: int, since: dt.datetime, until: dt.datetime
) -> dict[int, ReaderTimeline]:
    """The timelines of the group's readers over [since, until): each reader's
    version in force at ``since`` (or their first, whenever it was recorded) and
    every later one recorded before ``until``, decoded once (bounded by the number
    of changes, not of studies).  One statement.  A reader who belonged to another group for a while
    reads as inactive then (a version records the reader's group at the time)."""
    from network.models import ReaderVersion

    versions = ReaderVersion.objects
    own = versions.filter(radiologist_id=OuterRef("radiologist_id"))
    in_force = own.filter(recorded_at__lte=since).order_by("-recorded_at", "-pk").values("pk")[:1]
    first = own.order_by("recorded_at", "pk").values("pk")[:1]
    rows = (
        versions.filter(
            radiologist_id__in=versions.filter(reading_group_id=reading_group_id)
            .order_by()
            .values("radiologist_id")
        )
        .filter(
            Q(recorded_at__gt=since, recorded_at__lt=until)
            | Q(pk=Subquery(in_force))
            # None in force at ``since``: the first stands for the earlier past.
            | Q(recorded_at__gt=since, pk=Subquery(first))
        )
        .order_by("radiologist_id", "recorded_at", "pk")
        .values_list("radiologist_id", "reading_group_id", "recorded_at", "facts")
    )
    states: dict[int, list[ReaderState]] = defaultdict(list)
    for pk, group_id, recorded_at, facts in rows:
        state = reader_state(pk, recorded_at, facts)
        if group_id != reading_group_id and state.active:
            state = replace(state, active=False)
        states[pk].append(state)
    return {pk: ReaderTimeline(found) for pk, found in states.items()}


def history_began(*, reading_group_id: int) -> dt.datetime | None:
    """When the group's first version was recorded (None: no history yet)."""
    from network.models import ReaderVersion

    began: dt.datetime | None = ReaderVersion.objects.filter(
        reading_group_id=reading_group_id
    ).aggregate(began=Min("recorded_at"))["began"]
    return began

"""Synthetic history for the simulator benchmark, shaped as the app leaves it.

One reading group (the one replayed) of ``readers`` readers (five US regions and
offshore readers in India with preliminary-only US licenses) and ``facilities``
facilities in six US states, the demo's routing rules (five subspecialty rules and
a default), shifts in three 8-hour UTC bands on a five-days-on, two-off pattern
over the whole period, and the readers' history (``network.ReaderVersion``): a
first version of everyone before the period, then changes during it, each written
by ``network.history.reader_versions_record`` at its instant with the live rows
as they were then (a license suspended for a few days, readers paused for an
afternoon, a privilege revoked, a subspecialty gained, a workload cap raised;
two licenses also run out mid-window, which needs no version).  All through the
ORM: a few thousand rows.

Then ``per_day`` finished studies a day over ``days`` (the replayed window) and
``days_before`` before it (history the replay must skip), in arrival order, with
``ready_at``, ``claimed_at``, ``finalized_at`` and the reader who read it, and
each study's first routing decision, through ``COPY``.  The decision is the one
live routing would have recorded: the rule ``routing.rules.first_match`` picks,
judged with ``routing.eligibility.ROUTE`` and ``widen`` over the readers as the
history says they were at that instant (``simulation.roster.HistoryRoster``, the
replay's own view of the history) with each reader's open claims in the
generated timeline; its verdicts are stored as live routing stores them.  The
study is claimed by one of the readers offered (fewest open claims first) after
a wait per priority (longer when it was offered beyond the nearest tier; an
unroutable one waits for the next band), and read in a time per modality and
reader (each reader has their own pace; about 9 minutes a study on average).

Deterministic for a given seed (relative to the generation time).
"""

# ruff: noqa: S311
from __future__ import annotations

import bisect
import datetime as dt
import itertools
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.pgcopy import Stamp, Table, copy_file, text_value
from bench.stats import zipf

UTC = dt.UTC
DAY = 86400.0
UID_ROOT = "1.2.826.0.1.3680043.10.4245"
GROUP = "Bench simulator group"
JURISDICTIONS = [
    ("US-TX", "Texas", "America/Chicago"),
    ("US-NY", "New York", "America/New_York"),
    ("US-CA", "California", "America/Los_Angeles"),
    ("US-FL", "Florida", "America/New_York"),
    ("US-IL", "Illinois", "America/Chicago"),
    ("US-WA", "Washington", "America/Los_Angeles"),
    ("IN-KA", "Karnataka", "Asia/Kolkata"),
]
REGIONS = [
    ("bsim-us-south", "US South", "US"),
    ("bsim-us-northeast", "US Northeast", "US"),
    ("bsim-us-west", "US West", "US"),
    ("bsim-us-southeast", "US Southeast", "US"),
    ("bsim-us-midwest", "US Midwest", "US"),
    ("bsim-in-south", "South India", "IN"),
]
# (jurisdiction, region, time zone) of the facilities, in turn.
FACILITY_PLACES = [
    ("US-TX", "bsim-us-south", "America/Chicago"),
    ("US-NY", "bsim-us-northeast", "America/New_York"),
    ("US-CA", "bsim-us-west", "America/Los_Angeles"),
    ("US-FL", "bsim-us-southeast", "America/New_York"),
    ("US-IL", "bsim-us-midwest", "America/Chicago"),
    ("US-TX", "bsim-us-south", "America/Chicago"),
    ("US-NY", "bsim-us-northeast", "America/New_York"),
    ("US-WA", "bsim-us-west", "America/Los_Angeles"),
    ("US-FL", "bsim-us-southeast", "America/New_York"),
    ("US-CA", "bsim-us-west", "America/Los_Angeles"),
    ("US-IL", "bsim-us-midwest", "America/Chicago"),
    ("US-TX", "bsim-us-south", "America/Chicago"),
]
REGION_STATES = {
    "bsim-us-south": ["US-TX"],
    "bsim-us-northeast": ["US-NY"],
    "bsim-us-west": ["US-CA", "US-WA"],
    "bsim-us-southeast": ["US-FL"],
    "bsim-us-midwest": ["US-IL"],
}
US_STATES = [code for code, _, _ in JURISDICTIONS if code.startswith("US")]
SUBSPECIALTY_WEIGHTS = {
    "neuro": 10,
    "body": 10,
    "msk": 7,
    "chest": 7,
    "emergency": 6,
    "breast": 4,
    "cardiac": 2,
    "pediatric": 2,
    "nuclear": 1,
    "interventional": 1,
}
# (modality, body part, description, weight): most match a subspecialty rule.
MODALITIES = [
    ("CT", "HEAD", "CT HEAD WO CONTRAST", 12),
    ("MR", "BRAIN", "MR BRAIN W WO CONTRAST", 6),
    ("CT", "CHEST", "CT CHEST PE PROTOCOL", 6),
    ("CR", "CHEST", "XR CHEST 2 VIEWS", 16),
    ("DX", "CHEST", "XR CHEST PORTABLE", 4),
    ("CT", "ABDOMEN", "CT ABD PELVIS W CONTRAST", 10),
    ("US", "ABDOMEN", "US ABDOMEN COMPLETE", 7),
    ("US", "PELVIS", "US PELVIS TRANSVAGINAL", 3),
    ("MR", "KNEE", "MR KNEE WO CONTRAST", 4),
    ("MR", "SPINE", "MR LUMBAR SPINE WO", 4),
    ("MG", "BREAST", "MG SCREENING BILATERAL", 5),
    ("DX", "HAND", "XR HAND 3 VIEWS", 5),
    ("NM", "WHOLEBODY", "NM BONE SCAN WHOLE BODY", 2),
]
PRIORITY_WEIGHTS = {1: 15.0, 2: 30.0, 3: 55.0}
# Median minutes from the offer to a claim (by priority), and from the claim to the
# report (by modality): about 9 minutes a study on average, so the readers on shift
# are busy about half the time (1,000 studies a day, 60 readers five days in seven).
CLAIM_WAIT = {1: 5.0, 2: 20.0, 3: 90.0}
READ_TIME = {"CR": 4.0, "DX": 4.0, "MG": 6.0, "US": 8.0, "CT": 12.0, "NM": 12.0, "MR": 18.0}
OUT_OF_STATE_SHARE = 0.04  # patients from another state than the facility's
BAND_HOURS = 8


@dataclass
class Shape:
    readers: int
    facilities: int
    days: int
    days_before: int
    per_day: int
    seed: int


@dataclass
class Network:
    group_id: int
    admin_id: int
    facility_ids: list[int]
    facility_tz: dict[int, str]
    facility_jurisdiction: dict[int, tuple[int, str]]  # id, code
    facility_tat: dict[int, dict[int, int]]
    reader_ids: list[int]
    jurisdictions: dict[str, int]
    changes: list[str] = field(default_factory=list)  # what the history holds, in words
    versions: int = 0


@dataclass
class Loaded:
    studies: int = 0
    window_studies: int = 0
    decisions: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    tiers: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _band_start(n: int) -> int:
    return BAND_HOURS * (n % 3)


def _works(n: int, day_index: int) -> bool:
    """Five days on, two off, staggered so every day has readers in every band."""
    return (day_index + n) % 7 < 5


# --- the network (ORM) and its history ---------------------------------------------


def build_network(
    shape: Shape, rng: random.Random, *, start: dt.datetime, end: dt.datetime
) -> Network:
    """The group, its facilities and readers with credentials and shifts over
    [start, end), the demo's rules, an admin, and the readers' history."""
    from django.contrib.auth.models import User

    from demo.rules import seed_demo_rules
    from network.models import (
        CredentialStatus,
        Facility,
        FacilityPrivilege,
        Jurisdiction,
        License,
        Radiologist,
        ReadingGroup,
        Region,
        Shift,
        Subspecialty,
    )
    from network.services import reading_group_admin_grant

    jurisdictions = {}
    for code, name, zone in JURISDICTIONS:
        jurisdictions[code] = Jurisdiction.objects.get_or_create(
            code=code, defaults={"country": code[:2], "name": name, "timezone": zone}
        )[0]
    regions = {
        code: Region.objects.get_or_create(code=code, defaults={"name": name, "country": country})[
            0
        ]
        for code, name, country in REGIONS
    }
    group = ReadingGroup.objects.create(name=GROUP)
    facilities = Facility.objects.bulk_create(
        [
            Facility(
                name=f"Bench Sim Facility {n + 1:02d}",
                reading_group=group,
                jurisdiction=jurisdictions[place[0]],
                region=regions[place[1]],
                timezone=place[2],
                tat_stat_minutes=rng.choice([30, 60]),
                tat_urgent_minutes=rng.choice([120, 240]),
                tat_routine_minutes=rng.choice([720, 1440]),
            )
            for n, place in enumerate(
                FACILITY_PLACES[n % len(FACILITY_PLACES)] for n in range(shape.facilities)
            )
        ]
    )
    subspecialties = {s.code: s for s in Subspecialty.objects.all()}
    users = User.objects.bulk_create(
        [
            User(username=f"bench.sim.reader{n + 1:03d}", password="!")  # noqa: S106 - unusable
            for n in range(shape.readers)
        ]
    )
    us_regions = [code for code, _, country in REGIONS if country == "US"]
    offshore = max(1, shape.readers // 6)
    homes = [
        "bsim-in-south" if n >= shape.readers - offshore else us_regions[n % len(us_regions)]
        for n in range(shape.readers)
    ]
    readers = Radiologist.objects.bulk_create(
        [
            Radiologist(
                user=user,
                reading_group=group,
                display_name=f"Dr Sim {n + 1:03d}",
                home_region=regions[homes[n]],
                timezone="Asia/Kolkata" if homes[n] == "bsim-in-south" else "America/Chicago",
                workload_cap=rng.randint(4, 8),
            )
            for n, user in enumerate(users)
        ]
    )
    through = Radiologist.subspecialties.through
    links = []
    reader_subs: dict[int, set[str]] = {}
    for reader in readers:
        codes = set(
            rng.choices(
                list(SUBSPECIALTY_WEIGHTS), weights=list(SUBSPECIALTY_WEIGHTS.values()), k=2
            )
        )
        if rng.random() < 0.45:
            codes.add("general")
        reader_subs[reader.pk] = codes
        links += [
            through(radiologist_id=reader.pk, subspecialty_id=subspecialties[c].pk) for c in codes
        ]
    through.objects.bulk_create(links)

    far_past = start.date() - dt.timedelta(days=700)
    far_future = end.date() + dt.timedelta(days=365)
    licenses: list[Any] = []
    licensed: dict[int, set[str]] = {}
    for n, reader in enumerate(readers):
        home = homes[n]
        if home == "bsim-in-south":
            held = [
                ("IN-KA", "final"),
                *((s, "preliminary") for s in ("US-TX", "US-NY", "US-CA", "US-FL")),
            ]
        else:
            own = REGION_STATES[home]
            others = rng.sample([s for s in US_STATES if s not in own], k=rng.randint(1, 3))
            held = [(s, "final") for s in [*own, *others]]
        licensed[reader.pk] = {code for code, _ in held}
        for k, (code, scope) in enumerate(held):
            licenses.append(
                License(
                    radiologist=reader,
                    jurisdiction=jurisdictions[code],
                    number=f"BSIM-{reader.pk}-{k}",
                    valid_from=far_past,
                    valid_to=far_future,
                    scope=scope,
                )
            )
    License.objects.bulk_create(licenses)
    privileges = []
    for reader in readers:
        for facility in facilities:
            if facility.jurisdiction.code not in licensed[reader.pk] or rng.random() > 0.85:
                continue
            privileges.append(
                FacilityPrivilege(
                    radiologist=reader,
                    facility=facility,
                    status=CredentialStatus.PENDING
                    if rng.random() < 0.04
                    else CredentialStatus.ACTIVE,
                    valid_from=far_past,
                    valid_to=far_future,
                )
            )
    FacilityPrivilege.objects.bulk_create(privileges)

    shifts = []
    first_day = start.date() - dt.timedelta(days=1)
    for n, reader in enumerate(readers):
        for d in range((end.date() - first_day).days + 2):
            if not _works(n, d):
                continue
            starts = dt.datetime.combine(
                first_day + dt.timedelta(days=d), dt.time(_band_start(n)), tzinfo=UTC
            )
            shifts.append(
                Shift(
                    radiologist=reader,
                    starts_at=starts,
                    ends_at=starts + dt.timedelta(hours=BAND_HOURS),
                )
            )
    Shift.objects.bulk_create(shifts, batch_size=5000)

    seed_demo_rules(group)
    admin = User.objects.create(username="bench.sim.admin", password="!")  # noqa: S106
    reading_group_admin_grant(actor=None, user=admin, group=group)
    net = Network(
        group_id=group.pk,
        admin_id=admin.pk,
        facility_ids=[f.pk for f in facilities],
        facility_tz={f.pk: f.timezone for f in facilities},
        facility_jurisdiction={f.pk: (f.jurisdiction_id, f.jurisdiction.code) for f in facilities},
        facility_tat={
            f.pk: {1: f.tat_stat_minutes, 2: f.tat_urgent_minutes, 3: f.tat_routine_minutes}
            for f in facilities
        },
        reader_ids=[r.pk for r in readers],
        jurisdictions={code: j.pk for code, j in jurisdictions.items()},
    )
    _history(net, rng, readers=readers, reader_subs=reader_subs, start=start, end=end)
    return net


def _history(
    net: Network,
    rng: random.Random,
    *,
    readers: list[Any],
    reader_subs: dict[int, set[str]],
    start: dt.datetime,
    end: dt.datetime,
) -> None:
    """A first version of every reader before ``start``, then the changes, in
    order, each recorded at its instant with the live rows as they were then; the
    live rows end as the last version says."""
    from network.history import reader_versions_record
    from network.models import (
        CredentialStatus,
        FacilityPrivilege,
        License,
        Radiologist,
        Subspecialty,
    )

    span = (end - start).total_seconds()

    def at(fraction: float, hour: int | None = None) -> dt.datetime:
        t = start + dt.timedelta(seconds=span * fraction)
        return t.replace(hour=hour, minute=0, second=0, microsecond=0) if hour is not None else t

    ids = [r.pk for r in readers]
    picks = rng.sample(ids, k=min(len(ids), 12))
    # Two licenses run out late in the window (the credential's own end: no version).
    for pk in picks[:2]:
        lic = License.objects.filter(radiologist_id=pk).order_by("pk").first()
        if lic is not None:
            lic.valid_to = at(0.8).date()
            lic.save(update_fields=["valid_to"])
            net.changes.append(f"a license of reader {pk} ends on {lic.valid_to}")
    # Permanent changes start from their earlier state.
    revoked = (
        FacilityPrivilege.objects.filter(radiologist_id=picks[2], status="active")
        .order_by("pk")
        .first()
    )
    gains = next(c for c in ("neuro", "body", "chest", "msk") if c not in reader_subs[picks[3]])
    net.versions += reader_versions_record(radiologist_ids=ids, at=start - dt.timedelta(minutes=1))

    events: list[tuple[dt.datetime, int, str, Any]] = []
    suspended = License.objects.filter(radiologist_id=picks[4]).order_by("pk").first()
    if suspended is not None:
        events += [
            (at(0.25, 14), picks[4], "suspend", suspended.pk),
            (at(0.25, 14) + dt.timedelta(days=5), picks[4], "reinstate", suspended.pk),
        ]
        net.changes.append(f"reader {picks[4]}'s {suspended.number} suspended for 5 days")
    for k, pk in enumerate(picks[5:11]):
        n = ids.index(pk)
        begins = at(0.1 + 0.14 * k, _band_start(n) + 3)
        if not _works(n, (begins.date() - start.date()).days + 1):
            begins += dt.timedelta(days=1)
        events += [
            (begins, pk, "pause", begins + dt.timedelta(hours=4)),
            (begins + dt.timedelta(hours=4), pk, "resume", None),
        ]
    net.changes.append("6 readers paused for 4 hours of a shift")
    if revoked is not None:
        events.append((at(0.6, 9), picks[2], "revoke", revoked.pk))
        net.changes.append(
            f"reader {picks[2]}'s privilege at facility {revoked.facility_id} revoked"
        )
    events.append((at(0.4, 12), picks[3], "gain", gains))
    net.changes.append(f"reader {picks[3]} gains subspecialty {gains}")
    events.append((at(0.5, 6), picks[11], "cap", 10))
    net.changes.append(f"reader {picks[11]}'s workload cap raised to 10")
    for when, pk, kind, value in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == "suspend":
            License.objects.filter(pk=value).update(status=CredentialStatus.SUSPENDED)
        elif kind == "reinstate":
            License.objects.filter(pk=value).update(status=CredentialStatus.ACTIVE)
        elif kind == "pause":
            Radiologist.objects.filter(pk=pk).update(
                is_available=False, paused_until=value, pause_reason="bench"
            )
        elif kind == "resume":
            Radiologist.objects.filter(pk=pk).update(
                is_available=True, paused_until=None, pause_reason=""
            )
        elif kind == "revoke":
            FacilityPrivilege.objects.filter(pk=value).update(status=CredentialStatus.REVOKED)
        elif kind == "gain":
            Radiologist.objects.get(pk=pk).subspecialties.add(Subspecialty.objects.get(code=value))
        elif kind == "cap":
            Radiologist.objects.filter(pk=pk).update(workload_cap=value)
        net.versions += reader_versions_record(radiologist_ids=[pk], at=when)


# --- studies and their first decisions (COPY) -------------------------------------------

STUDY_FIELDS = [
    "id",
    "study_instance_uid",
    "accession_number",
    "facility_id",
    "patient_id",
    "patient_name",
    "patient_sex",
    "patient_jurisdiction_id",
    "modality",
    "body_part",
    "study_description",
    "study_date",
    "priority",
    "status",
    "assigned_radiologist_id",
    "received_at",
    "last_instance_at",
    "ready_at",
    "offered_at",
    "claimed_at",
    "finalized_at",
    "sla_due_at",
    "claim_activity_at",
    "updated_at",
]
DECISION_FIELDS = [
    "id",
    "study_id",
    "rule_id",
    "rule_name",
    "tier",
    "outcome",
    "reason",
    "offered_to",
    "verdicts",
    "created_at",
]


def arrival_times(n: int, start: float, end: float, rng: random.Random) -> list[float]:
    """``n`` sorted arrival times with a daily rhythm (busier 12-24 UTC: US daytime)."""
    hours = [0.4 + (1.0 if 12 <= h < 24 else 0.0) for h in range(24)]
    cum = list(itertools.accumulate(hours))
    out = []
    for _ in range(n):
        base = rng.uniform(start, end)
        base -= base % DAY
        t = base + bisect.bisect_left(cum, rng.uniform(0, cum[-1])) * 3600 + rng.uniform(0, 3600)
        out.append(min(max(t, start), end - 1))
    out.sort()
    return out


class _Claims:
    """Each reader's claims in the generated timeline: how many are open at an
    instant (claimed, not yet reported), for the recorded decisions' load."""

    def __init__(self) -> None:
        self.spans: dict[int, list[tuple[float, float]]] = {}

    def open_at(self, reader: int, t: float) -> int:
        spans = self.spans.get(reader)
        if not spans:
            return 0
        spans[:] = [s for s in spans if s[1] > t]
        return sum(1 for claimed, _ in spans if claimed <= t)

    def add(self, reader: int, claimed: float, final: float) -> None:
        self.spans.setdefault(reader, []).append((claimed, final))


def load(
    conn: Any,
    net: Network,
    shape: Shape,
    *,
    start: dt.datetime,
    window_start: dt.datetime,
    end: dt.datetime,
    work: Path,
) -> Loaded:
    """Write the studies and decisions as COPY files (deciding each as live routing
    would have), then COPY them in and VACUUM (ANALYZE)."""
    from routing import eligibility
    from routing.models import RoutingDecision
    from routing.rules import StudyKey, first_match
    from simulation.roster import HistoryRoster
    from simulation.rulesets import sim_rules
    from simulation.selectors import live_rules_as_draft
    from studies.models import Study

    rng = random.Random(shape.seed + 1)
    loaded = Loaded()
    t0 = time.monotonic()
    live = sim_rules(live_rules_as_draft(reading_group_id=net.group_id))
    rule_by_id = {r.key.rule_id: r for r in live}
    keys = [r.key for r in live]
    roster = HistoryRoster(reading_group_id=net.group_id, since=start, until=end)
    loaded.seconds["roster"] = time.monotonic() - t0
    tables = {
        "study": Table(Study, STUDY_FIELDS),
        "decision": Table(RoutingDecision, DECISION_FIELDS),
    }
    paths = {name: work / f"{name}.copy" for name in tables}
    for name, table in tables.items():
        table.file = paths[name].open("w")
    stamp = Stamp()
    n_studies = shape.per_day * (shape.days + shape.days_before)
    times = arrival_times(n_studies, start.timestamp(), end.timestamp(), rng)
    facility_cum = list(itertools.accumulate(zipf(len(net.facility_ids), 0.5)))
    priorities = list(PRIORITY_WEIGHTS)
    priority_cum = list(itertools.accumulate(PRIORITY_WEIGHTS.values()))
    modality_cum = list(itertools.accumulate(m[3] for m in MODALITIES))
    pace = {pk: rng.uniform(0.7, 1.4) for pk in net.reader_ids}
    claims = _Claims()
    codes = list(net.jurisdictions)
    outcomes: dict[str, int] = {}
    tiers: dict[str, int] = {}
    window_from = window_start.timestamp()
    for n, received in enumerate(times, start=1):
        facility = net.facility_ids[
            bisect.bisect_left(facility_cum, rng.uniform(0, facility_cum[-1]))
        ]
        priority = priorities[bisect.bisect_left(priority_cum, rng.uniform(0, priority_cum[-1]))]
        modality, body, description, _ = MODALITIES[
            bisect.bisect_left(modality_cum, rng.uniform(0, modality_cum[-1]))
        ]
        jurisdiction_id, jurisdiction = net.facility_jurisdiction[facility]
        if rng.random() < OUT_OF_STATE_SHARE:
            jurisdiction = rng.choice(
                [c for c in codes if c.startswith("US") and c != jurisdiction]
            )
            jurisdiction_id = net.jurisdictions[jurisdiction]
        ready = received + rng.uniform(60, 240)
        decided = ready + rng.uniform(0.2, 3.0)
        at = dt.datetime.fromtimestamp(decided, UTC)
        key = StudyKey(
            facility_id=facility,
            modality=modality,
            body_part=body,
            description=description,
            procedure_code="",
            priority=priority,
            flags=frozenset(),
        )
        matched = first_match(keys, key)
        if matched is None:
            raise RuntimeError("the demo rules have a default rule")
        rule = rule_by_id[matched.rule_id]
        facts = eligibility.StudyFacts(
            study_id=n,
            facility_id=facility,
            jurisdiction=jurisdiction,
            priority=priority,
            read_at=at,
            subspecialties=rule.subspecialties,
            allow_general=rule.allow_general,
            allow_preliminary=rule.allow_preliminary,
            bypass_cap=rule.bypass_cap_for_stat and priority == 1,
        )
        candidates = [
            roster.facts(
                pk,
                facility_id=facility,
                jurisdiction=jurisdiction,
                at=at,
                open_claims=claims.open_at(pk, decided),
                recent_work=0.0,
            )
            for pk in roster.plausible(facility, jurisdiction, at)
        ]
        tier, verdicts, fresh = eligibility.widen(
            eligibility.ROUTE, facts, candidates, tier=0, last_tier=rule.widest_tier
        )
        if fresh:
            outcome = "offered"
            offered = [v.radiologist_id for v in fresh]
            reason = f"offered to {len(offered)} reader(s) at tier {tier}"
            wait = rng.lognormvariate(0, 0.7) * CLAIM_WAIT[priority] * 60 * (1 + tier)
            reader = min(
                fresh, key=lambda v: (claims.open_at(v.radiologist_id, decided), rng.random())
            ).radiologist_id
        else:
            outcome = "unroutable"
            offered = []
            reason = (
                eligibility.unroutable_summary(verdicts, jurisdiction=jurisdiction)
                if verdicts
                else f"no radiologist holding a license in {jurisdiction} is on shift"
            )
            wait = rng.uniform(2, 8) * 3600
            reader = rng.choice(net.reader_ids)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        tiers[str(tier)] = tiers.get(str(tier), 0) + 1
        claimed = decided + wait
        final = claimed + rng.lognormvariate(0, 0.5) * READ_TIME[modality] * 60 * pace[reader]
        claims.add(reader, claimed, final)
        due = received + net.facility_tat[facility][priority] * 60
        tables["study"].write(
            [
                str(n),
                f"{UID_ROOT}.{n}",
                f"S{n:09d}",
                str(facility),
                f"P{rng.randrange(10**7):07d}",
                "BENCH^PATIENT",
                rng.choice("MF"),
                str(jurisdiction_id),
                modality,
                body,
                description,
                dt.datetime.fromtimestamp(received, UTC).date().isoformat(),
                str(priority),
                "final",
                str(reader),
                stamp(received),
                stamp(ready),
                stamp(ready),
                stamp(decided),
                stamp(claimed),
                stamp(final),
                stamp(due),
                stamp(final),
                stamp(final),
            ]
        )
        tables["decision"].write(
            [
                str(n),
                str(n),
                str(rule.key.rule_id),
                text_value(rule.name),
                str(tier),
                outcome,
                text_value(reason[:500]),
                text_value(offered),
                text_value([v.as_dict() for v in verdicts]),
                dt.datetime.fromtimestamp(decided, UTC).isoformat(),
            ]
        )
        if ready >= window_from:
            loaded.window_studies += 1
    for table in tables.values():
        table.file.close()
    loaded.seconds["generate"] = time.monotonic() - t0
    for name in ("study", "decision"):
        t1 = time.monotonic()
        copy_file(conn, tables[name], paths[name])
        loaded.seconds[f"copy {name}"] = time.monotonic() - t1
        paths[name].unlink()
    for db_table in ("studies_study", "routing_routingdecision"):
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{db_table}', 'id'), "  # noqa: S608 - ours
            f"(SELECT MAX(id) FROM {db_table}))"
        )
    t1 = time.monotonic()
    conn.execute("VACUUM (ANALYZE)")
    loaded.seconds["vacuum analyze"] = time.monotonic() - t1
    loaded.studies = tables["study"].rows
    loaded.decisions = tables["decision"].rows
    loaded.outcomes = outcomes
    loaded.tiers = tiers
    return loaded

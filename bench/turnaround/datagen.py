"""Synthetic history for the turnaround benchmark, shaped as the app leaves it.

A reading network (groups, facilities, readers, shifts, rules, one admin per
group) goes in through the ORM; a year of studies, their routing rows, one
claim transition per claimed study, one routing decision per routed study and
the SLA breach alerts through PostgreSQL ``COPY``, in arrival order.

Each study lives the life the app would give it, from its arrival time: ready a
few minutes after receipt, claimed after a wait (lognormal around a median per
priority; some escalate to wider tiers first), final after a reading time.  What
has not happened by the generation time has not happened: recent studies are
still ready, offered (at the tier their wait has reached), claimed or
preliminary, and a few are unroutable.  A study finalised after its due time
(or still open past it) has a breach alert, as the SLA sweep would have raised.

Deterministic for a given seed (relative to the generation time).
"""

# ruff: noqa: S311
from __future__ import annotations

import bisect
import datetime as dt
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.pgcopy import Stamp, Table, copy_file
from bench.stats import zipf

UTC = dt.UTC
UID_ROOT = "1.2.826.0.1.3680043.10.4244"
MODALITIES = [
    ("CT", "HEAD", "CT HEAD WO CONTRAST", 12),
    ("CT", "CHEST", "CT CHEST PE PROTOCOL", 6),
    ("CT", "ABDOMEN", "CT ABD PELVIS W CONTRAST", 10),
    ("MR", "BRAIN", "MR BRAIN W WO CONTRAST", 6),
    ("MR", "SPINE", "MR LUMBAR SPINE WO", 5),
    ("CR", "CHEST", "XR CHEST 2 VIEWS", 18),
    ("DX", "HAND", "XR HAND 3 VIEWS", 6),
    ("US", "ABDOMEN", "US ABDOMEN COMPLETE", 9),
    ("MG", "BREAST", "MG SCREENING BILATERAL", 5),
    ("NM", "WHOLEBODY", "NM BONE SCAN WHOLE BODY", 2),
]
PRIORITY_WEIGHTS = {1: 15.0, 2: 30.0, 3: 55.0}
# Median minutes from ready to a claim, and from the claim to the final report.
CLAIM_WAIT = {1: 6.0, 2: 25.0, 3: 150.0}
READ_TIME = {1: 14.0, 2: 30.0, 3: 45.0}
# Seconds a tier is offered before escalating (the rules' waits).
TIER_WAIT = {1: 180.0, 2: 600.0, 3: 1800.0}
RULES = [("Neuro", "1.80"), ("Body", "1.20"), ("Plain film", "0.60"), ("Default", "1.00")]
CANCELLED_SHARE = 0.03
PRELIMINARY_SHARE = 0.15  # of claimed studies past half their reading time
UNROUTABLE_SHARE = 0.05  # of unclaimed studies
UNROUTABLE_REASONS = [
    "no radiologist licensed in US-TX is on shift",
    "no eligible radiologist on shift (12 considered: 7 no active privilege at the facility, "
    "5 not on shift)",
    "last tier expired with nobody claiming it",
]


@dataclass
class Shape:
    studies: int
    facilities: int
    groups: int
    readers_per_group: int
    days: float
    seed: int


@dataclass
class Network:
    group_ids: list[int]
    facility_ids: list[int]
    facility_group: dict[int, int]
    facility_tat: dict[int, dict[int, int]]
    facility_jurisdiction: dict[int, int]
    group_readers: dict[int, list[int]]
    group_rules: dict[int, list[tuple[int, str]]]
    admin_tokens: dict[int, str]  # group id -> DRF token of its admin
    admin_usernames: dict[int, str]
    metrics_token: str


@dataclass
class Loaded:
    studies: int = 0
    routing: int = 0
    transitions: int = 0
    decisions: int = 0
    alerts: int = 0
    status_counts: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)


# --- the network (ORM) -----------------------------------------------------------


def build_network(shape: Shape, rng: random.Random, *, now: dt.datetime) -> Network:
    """Groups with their facilities (Zipf-sized later by study volume), readers with
    shifts (three 8-hour UTC bands: a third of each group is on shift now), rules,
    and an admin with an API token per group."""
    from django.contrib.auth.models import User

    from accounts.models import ApiToken
    from network.models import Facility, Jurisdiction, Radiologist, ReadingGroup, Region, Shift
    from network.services import reading_group_admin_grant
    from routing.models import RoutingRule

    states = ["TX", "CA", "FL", "NY", "PA", "IL", "OH", "GA", "NC", "MI", "NJ", "VA"]
    Jurisdiction.objects.bulk_create(
        [Jurisdiction(code=f"US-{s}", country="US", name=f"US {s}") for s in states]
    )
    juris = list(Jurisdiction.objects.order_by("code").values_list("pk", flat=True))
    Region.objects.bulk_create(
        [Region(code=f"us-r{i + 1:02d}", name=f"US region {i + 1}", country="US") for i in range(8)]
    )
    regions = list(Region.objects.order_by("code").values_list("pk", flat=True))
    groups = ReadingGroup.objects.bulk_create(
        [ReadingGroup(name=f"Bench group {g + 1:02d}") for g in range(shape.groups)]
    )
    zones = ["America/Chicago", "America/New_York", "America/Los_Angeles", "America/Denver"]
    facilities = []
    for n in range(shape.facilities):
        j = n % len(juris)
        facilities.append(
            Facility(
                name=f"Bench Facility {n + 1:03d}",
                reading_group=groups[n % shape.groups],
                jurisdiction_id=juris[j],
                region_id=regions[j % len(regions)],
                timezone=zones[n % len(zones)],
                tat_stat_minutes=rng.choice([30, 60, 60, 90]),
                tat_urgent_minutes=rng.choice([120, 240, 240, 360]),
                tat_routine_minutes=rng.choice([720, 1440, 1440, 2880]),
            )
        )
    Facility.objects.bulk_create(facilities)

    users = [
        User(username=f"bench.tat.reader{n + 1:04d}", password="!")  # noqa: S106 - unusable
        for n in range(shape.groups * shape.readers_per_group)
    ]
    User.objects.bulk_create(users, batch_size=2000)
    readers = [
        Radiologist(
            user=user,
            reading_group=groups[n // shape.readers_per_group],
            display_name=f"Dr Bench {n + 1:04d}",
            home_region_id=rng.choice(regions),
            timezone="America/Chicago",
            workload_cap=rng.randint(3, 10),
        )
        for n, user in enumerate(users)
    ]
    Radiologist.objects.bulk_create(readers, batch_size=2000)
    shifts = []
    today = now.date()
    for n, reader in enumerate(readers):
        start_hour = 8 * (n % 3)
        for offset in (-1, 0):
            starts = dt.datetime.combine(today + dt.timedelta(days=offset), dt.time(start_hour))
            starts = starts.replace(tzinfo=UTC)
            shifts.append(
                Shift(radiologist=reader, starts_at=starts, ends_at=starts + dt.timedelta(hours=8))
            )
    Shift.objects.bulk_create(shifts, batch_size=5000)

    group_rules: dict[int, list[tuple[int, str]]] = {}
    admin_tokens: dict[int, str] = {}
    admin_usernames: dict[int, str] = {}
    for group in groups:
        rules = []
        for position, (name, value) in enumerate(RULES):
            rule = RoutingRule.objects.create(
                reading_group=group,
                name=name,
                position=(position + 1) * 10,
                is_default=name == "Default",
                relative_value=value,
            )
            rules.append((rule.pk, value))
        group_rules[group.pk] = rules
        admin = User.objects.create(username=f"bench.tat.admin{group.pk}", password="!")  # noqa: S106
        reading_group_admin_grant(actor=None, user=admin, group=group)
        admin_tokens[group.pk] = ApiToken.objects.create(user=admin)[1]
        admin_usernames[group.pk] = admin.username
    group_readers: dict[int, list[int]] = {g.pk: [] for g in groups}
    for reader in readers:
        group_readers[reader.reading_group_id].append(reader.pk)
    return Network(
        group_ids=[g.pk for g in groups],
        facility_ids=[f.pk for f in facilities],
        facility_group={f.pk: f.reading_group_id for f in facilities},
        facility_tat={
            f.pk: {1: f.tat_stat_minutes, 2: f.tat_urgent_minutes, 3: f.tat_routine_minutes}
            for f in facilities
        },
        facility_jurisdiction={f.pk: f.jurisdiction_id for f in facilities},
        group_readers=group_readers,
        group_rules=group_rules,
        admin_tokens=admin_tokens,
        admin_usernames=admin_usernames,
        metrics_token="bench-metrics-" + "".join(rng.choices("abcdef0123456789", k=32)),
    )


# --- the tables' columns -------------------------------------------------------------


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
    "priority",
    "status",
    "assigned_radiologist_id",
    "received_at",
    "last_instance_at",
    "ready_at",
    "offered_at",
    "claimed_at",
    "preliminary_at",
    "finalized_at",
    "cancelled_at",
    "sla_due_at",
    "claim_activity_at",
    "updated_at",
]
ROUTING_FIELDS = [
    "study_id",
    "rule_id",
    "tier",
    "relative_value",
    "next_escalation_at",
    "unroutable_at",
    "unroutable_reason",
    "decided_at",
]
TRANSITION_FIELDS = ["id", "study_id", "from_status", "to_status", "at", "reason"]
DECISION_FIELDS = ["id", "study_id", "rule_id", "rule_name", "tier", "outcome", "created_at"]
ALERT_FIELDS = ["id", "kind", "reading_group_id", "study_id", "message", "dedupe_key", "created_at"]


def arrival_times(n: int, start: float, end: float, rng: random.Random) -> list[float]:
    """``n`` sorted arrival times with a daily rhythm (busier 08-20 UTC)."""
    hours = [0.5 + (1.0 if 8 <= h < 20 else 0.0) for h in range(24)]
    cum = list(itertools.accumulate(hours))
    out = []
    for _ in range(n):
        day = rng.uniform(start, end)
        base = day - day % 86400
        hour = bisect.bisect_left(cum, rng.uniform(0, cum[-1]))
        t = base + hour * 3600 + rng.uniform(0, 3600)
        if t >= end:
            t = end - rng.uniform(0, 3600)
        if t < start:
            t = start + rng.uniform(0, 3600)
        out.append(t)
    out.sort()
    return out


def load(conn: Any, net: Network, shape: Shape, *, now: dt.datetime, work: Path) -> Loaded:
    """Write the five tables as COPY files, then COPY them in."""
    import time

    from alerts.models import Alert
    from routing.models import RoutingDecision, StudyRouting
    from studies.models import Study, StudyTransition

    rng = random.Random(shape.seed)
    loaded = Loaded()
    t0 = time.monotonic()
    tables = {
        "study": Table(Study, STUDY_FIELDS),
        "routing": Table(StudyRouting, ROUTING_FIELDS),
        "transition": Table(StudyTransition, TRANSITION_FIELDS),
        "decision": Table(RoutingDecision, DECISION_FIELDS),
        "alert": Table(Alert, ALERT_FIELDS),
    }
    paths = {name: work / f"{name}.copy" for name in tables}
    for name, table in tables.items():
        table.file = paths[name].open("w")

    end = now.timestamp()
    start = end - shape.days * 86400
    times = arrival_times(shape.studies, start, end, rng)
    stamp = Stamp()
    facility_weights = list(itertools.accumulate(zipf(len(net.facility_ids), 0.6)))
    priorities = list(PRIORITY_WEIGHTS)
    priority_cum = list(itertools.accumulate(PRIORITY_WEIGHTS.values()))
    modality_cum = list(itertools.accumulate(m[3] for m in MODALITIES))
    S_READY, S_OFFERED, S_CLAIMED = "ready", "offered", "claimed"
    S_PRELIM, S_FINAL, S_CANCELLED = "preliminary", "final", "cancelled"
    ids = {"transition": 0, "decision": 0, "alert": 0}
    for n, received in enumerate(times, start=1):
        facility = net.facility_ids[
            bisect.bisect_left(facility_weights, rng.uniform(0, facility_weights[-1]))
        ]
        group = net.facility_group[facility]
        priority = priorities[bisect.bisect_left(priority_cum, rng.uniform(0, priority_cum[-1]))]
        modality, body, description, _ = MODALITIES[
            bisect.bisect_left(modality_cum, rng.uniform(0, modality_cum[-1]))
        ]
        due = received + net.facility_tat[facility][priority] * 60
        ready = received + rng.uniform(60, 240)
        claim_at = ready + rng.lognormvariate(0, 0.7) * CLAIM_WAIT[priority] * 60
        claimed: float | None = claim_at
        final: float | None = claim_at + rng.lognormvariate(0, 0.5) * READ_TIME[priority] * 60
        prelim: float | None = None
        cancelled: float | None = None
        reader: int | None = rng.choice(net.group_readers[group])
        rule_id, rvu = rng.choice(net.group_rules[group])
        tier = 0
        unroutable = False
        status = S_FINAL
        if rng.random() < CANCELLED_SHARE and received < end - 86400:
            status, cancelled = S_CANCELLED, ready + rng.uniform(60, 3600)
            claimed = final = None
            reader = None
        elif ready > end:
            status, claimed, final, reader = "receiving", None, None, None
        elif claimed is not None and claimed > end:
            waited = end - ready
            tier = min(2, int(waited // TIER_WAIT[priority]))
            unroutable = rng.random() < UNROUTABLE_SHARE
            status = S_READY if unroutable else S_OFFERED
            claimed = final = None
            reader = None
        elif final is not None and claimed is not None and final > end:
            if end - claimed > (final - claimed) / 2 and rng.random() < PRELIMINARY_SHARE:
                status, prelim = S_PRELIM, claimed + (end - claimed) / 2
            else:
                status = S_CLAIMED
            final = None
        if claimed is not None and status != S_CANCELLED:
            tier = min(2, int((claimed - ready) // TIER_WAIT[priority]))
        loaded.status_counts[status] += 1
        last_activity = final or prelim or claimed
        tables["study"].write(
            [
                str(n),
                f"{UID_ROOT}.{n}",
                f"B{n:09d}",
                str(facility),
                f"P{rng.randrange(10**7):07d}",
                "BENCH^PATIENT",
                rng.choice("MF"),
                str(net.facility_jurisdiction[facility]),
                modality,
                body,
                description,
                str(priority),
                status,
                "\\N" if reader is None else str(reader),
                stamp(received),
                stamp(min(ready, end)),
                "\\N" if status == "receiving" else stamp(ready),
                stamp(ready) if status not in ("receiving", S_READY) and not cancelled else "\\N",
                stamp(claimed),
                stamp(prelim),
                stamp(final),
                stamp(cancelled),
                stamp(due),
                stamp(last_activity) if status in (S_CLAIMED, S_PRELIM) else "\\N",
                stamp(final or prelim or claimed or cancelled or ready),
            ]
        )
        if status in ("receiving", S_CANCELLED):
            continue
        routed_at = ready + 5
        tables["routing"].write(
            [
                str(n),
                str(rule_id),
                str(tier),
                rvu,
                stamp(end + 60) if status in (S_OFFERED, S_READY) else "\\N",
                stamp(ready + 30) if unroutable else "\\N",
                rng.choice(UNROUTABLE_REASONS) if unroutable else "",
                stamp(routed_at),
            ]
        )
        ids["decision"] += 1
        tables["decision"].write(
            [
                str(ids["decision"]),
                str(n),
                str(rule_id),
                "bench rule",
                "0",
                "unroutable" if unroutable else "offered",
                stamp(routed_at),
            ]
        )
        if claimed is not None:
            ids["transition"] += 1
            tables["transition"].write(
                [str(ids["transition"]), str(n), S_OFFERED, S_CLAIMED, stamp(claimed), ""]
            )
        late_at = None
        if (final is not None and final > due) or (final is None and due <= end):
            late_at = due
        if late_at is not None:
            ids["alert"] += 1
            tables["alert"].write(
                [
                    str(ids["alert"]),
                    "sla",
                    str(group),
                    str(n),
                    "missed its turnaround target",
                    f"sla:{n}:breach",
                    stamp(late_at + 30),
                ]
            )
    for table in tables.values():
        table.file.close()
    loaded.seconds["generate"] = time.monotonic() - t0
    for name in ("study", "routing", "transition", "decision", "alert"):
        t1 = time.monotonic()
        copy_file(conn, tables[name], paths[name])
        loaded.seconds[f"copy {name}"] = time.monotonic() - t1
        paths[name].unlink()
    for model, name in (
        ("studies_study", "study"),
        ("studies_studytransition", "transition"),
        ("routing_routingdecision", "decision"),
        ("alerts_alert", "alert"),
    ):
        if tables[name].rows:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{model}', 'id'), "  # noqa: S608
                f"(SELECT MAX(id) FROM {model}))"
            )
    t1 = time.monotonic()
    conn.execute("VACUUM (ANALYZE)")
    loaded.seconds["vacuum analyze"] = time.monotonic() - t1
    loaded.studies = tables["study"].rows
    loaded.routing = tables["routing"].rows
    loaded.transitions = tables["transition"].rows
    loaded.decisions = tables["decision"].rows
    loaded.alerts = tables["alert"].rows
    return loaded

"""Synthetic data for the worklist benchmark, shaped as the app leaves it.

A small reading network goes in through the ORM (``bulk_create``); the studies,
their routing rows and the offers through PostgreSQL ``COPY`` with explicit ids,
in arrival order (so the tables are laid out on disk as time would lay them out).

What the app does to offers, and so what the history looks like:

- an offer is open while ``withdrawn_at`` is NULL; routing withdraws offers when a
  reader is no longer eligible, an auto-assignment is not accepted in time, the
  study is re-routed, or the reader declines;
- a claim holds every open offer of the study (``held_at``: off the worklists)
  and a release puts them back; a final or a cancellation withdraws them: only
  offered studies have offers on a worklist (``--history-withdrawn`` is the
  share of offers withdrawn along the way before that, for the reasons above);
- escalation adds offers at the next tier and leaves the earlier ones open.
- every offer carries copies of its study's worklist sort keys (priority, SLA
  due time, arrival, and the aged-priority key ``rank_at`` of the group's aging
  step, as ``worklist.aging.rank_at`` computes it), its facility and the rule
  that made it.

Deterministic for a given seed (relative to the generation time).
"""

# ruff: noqa: S311
from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.pgcopy import Stamp, Table, copy_file
from bench.stats import zipf

UTC = dt.UTC
UID_ROOT = "1.2.826.0.1.3680043.10.4243"

# Routing rules: name, subspecialties, relative value.
RULES: list[tuple[str, list[str], str]] = [
    ("STAT CT: emergency", ["emergency", "neuro", "body"], "1.50"),
    ("Neuro CT/MR", ["neuro"], "1.80"),
    ("MSK and spine MR", ["msk"], "1.60"),
    ("Breast imaging", ["breast"], "1.10"),
    ("Pediatric", ["pediatric"], "0.90"),
    ("Cardiac CT", ["cardiac"], "2.50"),
    ("Nuclear medicine and PET", ["nuclear"], "2.20"),
    ("Chest imaging", ["chest", "body"], "1.00"),
    ("Default", ["body", "general"], "1.00"),
]
STAT_CT_RULE = "STAT CT: emergency"

# Study templates: modality, body part, description, weight, rule.
TEMPLATES: list[tuple[str, str, str, float, str]] = [
    ("CT", "HEAD", "CT HEAD WO CONTRAST", 12, "Neuro CT/MR"),
    ("CT", "CHEST", "CT CHEST PE PROTOCOL", 6, "Chest imaging"),
    ("CT", "ABDOMEN", "CT ABD PELVIS W CONTRAST", 10, "Default"),
    ("CT", "HEART", "CT CORONARY CTA", 2, "Cardiac CT"),
    ("MR", "BRAIN", "MR BRAIN W WO CONTRAST", 6, "Neuro CT/MR"),
    ("MR", "KNEE", "MR KNEE WO CONTRAST", 4, "MSK and spine MR"),
    ("MR", "SPINE", "MR LUMBAR SPINE WO", 4, "MSK and spine MR"),
    ("CR", "CHEST", "XR CHEST 2 VIEWS", 15, "Chest imaging"),
    ("DX", "CHEST", "XR CHEST PED 1 VIEW", 3, "Pediatric"),
    ("DX", "HAND", "XR HAND 3 VIEWS", 6, "Default"),
    ("US", "ABDOMEN", "US ABDOMEN COMPLETE", 8, "Default"),
    ("MG", "BREAST", "MG SCREENING BILATERAL", 5, "Breast imaging"),
    ("NM", "WHOLEBODY", "NM BONE SCAN WHOLE BODY", 2, "Nuclear medicine and PET"),
    ("PT", "WHOLEBODY", "PET CT SKULL BASE TO THIGH", 2, "Nuclear medicine and PET"),
]
# Priorities (1 STAT, 2 urgent, 3 routine): of all studies, and of the studies
# waiting on the worklist now (STAT ones are claimed within minutes).
HISTORY_PRIORITIES = {1: 15.0, 2: 30.0, 3: 55.0}
WAITING_PRIORITIES = {1: 4.0, 2: 21.0, 3: 75.0}
# How long a waiting study may have waited, by priority (seconds).
WAITING_AGE = {1: (120.0, 3600.0), 2: (300.0, 4 * 3600.0), 3: (600.0, 20 * 3600.0)}
# The routing rules' tier waits (seconds): a study waiting longer is at a wider tier.
TIER_WAIT = {1: 180.0, 2: 600.0, 3: 1800.0}
# Readers offered a study at each tier (tier 0 the facility's region, 1 the
# country, 2 anywhere): the worklist grows as a study escalates.
TIER_READERS = {0: (3, 8), 1: (8, 25), 2: (20, 60)}
WITHDRAW_REASONS = [
    "reader no longer eligible",
    "not accepted in time",
    "declined: busy with another case",
    "priority or flags changed",
]
CANCELLED_SHARE = 0.035


@dataclass
class Shape:
    """How much of what (see the benchmark's options)."""

    studies: int
    offers: int
    offered: int
    claimed: int
    preliminary: int
    ready: int
    receiving: int
    radiologists: int
    facilities: int
    busy_share: float
    busy_history_share: float
    busy_claims: int
    history_withdrawn: float
    days: float
    seed: int


@dataclass
class Network:
    """Ids of what the ORM created."""

    group_id: int
    facility_ids: list[int]
    facility_tat: dict[int, dict[int, int]]
    facility_jurisdiction: dict[int, int]
    reader_ids: list[int]
    busy_reader_id: int
    busy_user_id: int
    busy_username: str
    token: str
    rules: dict[str, tuple[int, str]]  # name -> (id, relative value)


@dataclass
class Loaded:
    """What was loaded, for the report."""

    studies: int = 0
    offers: int = 0
    routing: int = 0
    status_counts: Counter[str] = field(default_factory=Counter)
    offer_counts: Counter[str] = field(default_factory=Counter)
    busy: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)


def cumulative(weights: Sequence[float]) -> list[float]:
    return list(itertools.accumulate(weights))


# --- the network (ORM) -----------------------------------------------------------


def build_network(shape: Shape, rng: random.Random) -> Network:
    """One reading group, a few jurisdictions and regions, facilities, readers (with
    users and subspecialties), the routing rules, and an API token for the busy reader.
    No licenses, privileges or shifts: listing the worklist does not read them."""
    from django.contrib.auth.models import User

    from accounts.models import ApiToken
    from network.models import (
        Facility,
        Jurisdiction,
        Radiologist,
        ReadingGroup,
        Region,
        Subspecialty,
    )
    from routing.models import RoutingRule

    group = ReadingGroup.objects.create(name="Bench worklist group")
    states = ["TX", "CA", "FL", "NY", "PA", "IL", "OH", "GA", "NC", "MI", "NJ", "VA"]
    Jurisdiction.objects.bulk_create(
        [Jurisdiction(code=f"US-{s}", country="US", name=f"US {s}") for s in states]
    )
    juris = list(Jurisdiction.objects.order_by("code").values_list("pk", flat=True))
    Region.objects.bulk_create(
        [Region(code=f"us-r{i + 1:02d}", name=f"US region {i + 1}", country="US") for i in range(8)]
    )
    regions = list(Region.objects.order_by("code").values_list("pk", flat=True))

    facilities = []
    for n in range(shape.facilities):
        j = rng.choices(range(len(juris)), zipf(len(juris)))[0]
        facilities.append(
            Facility(
                name=f"Bench Facility {n + 1:03d}",
                reading_group=group,
                jurisdiction_id=juris[j],
                region_id=regions[j % len(regions)],
                timezone="America/Chicago",
                tat_stat_minutes=rng.choice([30, 60, 60, 90]),
                tat_urgent_minutes=rng.choice([120, 240, 240, 360]),
                tat_routine_minutes=rng.choice([720, 1440, 1440, 2880]),
            )
        )
    Facility.objects.bulk_create(facilities)

    users = [
        User(username=f"bench.reader{n + 1:04d}", password="!", email="")  # noqa: S106 - unusable
        for n in range(shape.radiologists)
    ]
    User.objects.bulk_create(users, batch_size=2000)
    readers = [
        Radiologist(
            user=user,
            reading_group=group,
            display_name=f"Dr Bench {n + 1:04d}",
            home_region_id=rng.choice(regions),
            timezone="America/Chicago",
            workload_cap=rng.randint(3, 10),
        )
        for n, user in enumerate(users)
    ]
    readers[0].display_name = "Dr Busy Reader"
    readers[0].workload_cap = 10
    Radiologist.objects.bulk_create(readers, batch_size=2000)

    subs = {s.code: s.pk for s in Subspecialty.objects.all()}
    codes = sorted(subs)
    through: Any = Radiologist.subspecialties.through
    links = [through(radiologist_id=readers[0].pk, subspecialty_id=subs["general"])]
    for reader in readers[1:]:
        for code in rng.sample(codes, rng.choice([1, 1, 2, 3])):
            links.append(through(radiologist_id=reader.pk, subspecialty_id=subs[code]))
    through.objects.bulk_create(links, batch_size=5000)

    rules: dict[str, tuple[int, str]] = {}
    for position, (name, rule_subs, value) in enumerate(RULES):
        rule = RoutingRule.objects.create(
            reading_group=group,
            name=name,
            position=(position + 1) * 10,
            is_default=name == "Default",
            relative_value=value,
            allow_general=True,
        )
        rule.subspecialties.set([subs[c] for c in rule_subs])
        rules[name] = (rule.pk, value)

    _, token_key = ApiToken.objects.create(user=users[0])
    return Network(
        group_id=group.pk,
        facility_ids=[f.pk for f in facilities],
        facility_tat={
            f.pk: {1: f.tat_stat_minutes, 2: f.tat_urgent_minutes, 3: f.tat_routine_minutes}
            for f in facilities
        },
        facility_jurisdiction={f.pk: f.jurisdiction_id for f in facilities},
        reader_ids=[r.pk for r in readers],
        busy_reader_id=readers[0].pk,
        busy_user_id=users[0].pk,
        busy_username=users[0].username,
        token=token_key,
        rules=rules,
    )


# --- studies, routing rows and offers --------------------------------------------


STUDY_FIELDS = [
    "id",
    "study_instance_uid",
    "accession_number",
    "facility_id",
    "patient_id",
    "patient_name",
    "patient_birth_date",
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
    "preliminary_at",
    "finalized_at",
    "cancelled_at",
    "sla_due_at",
    "claim_activity_at",
    "updated_at",
]
OFFER_FIELDS = [
    "id",
    "study_id",
    "radiologist_id",
    "tier",
    "offered_at",
    "priority",
    "sla_due_at",
    "received_at",
    "rank_at",
    "facility_id",
    "rule_id",
    "held_at",
    "withdrawn_at",
    "withdrawn_reason",
]
ROUTING_FIELDS = [
    "study_id",
    "rule_id",
    "tier",
    "relative_value",
    "next_escalation_at",
    "decided_at",
]


class Readers:
    """Draws distinct readers other than the busy one, Zipf-weighted (a few readers
    are offered much more than most)."""

    def __init__(self, ids: Sequence[int], rng: random.Random) -> None:
        self.ids = list(ids)
        rng.shuffle(self.ids)
        self.cw = cumulative(zipf(len(self.ids), 0.6))
        self.rng = rng

    def draw(self, k: int) -> list[int]:
        k = min(k, len(self.ids))
        chosen = dict.fromkeys(self.rng.choices(self.ids, cum_weights=self.cw, k=k))
        while len(chosen) < k:
            chosen[self.rng.choices(self.ids, cum_weights=self.cw)[0]] = None
        return list(chosen)


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def load(
    conn: Any,
    net: Network,
    shape: Shape,
    work: Path,
    *,
    now: dt.datetime,
    log: Callable[[str], None],
) -> Loaded:
    """Generate and COPY the studies, their routing rows and their offers."""
    import time

    from network.models import ReadingGroup
    from routing.models import StudyRouting
    from studies.models import Study
    from worklist import aging
    from worklist.models import Offer

    rng = random.Random(shape.seed + 1)
    stamp = Stamp()
    out = Loaded()
    now_ts = now.timestamp()
    busy = net.busy_reader_id
    others = Readers([r for r in net.reader_ids if r != busy], rng)
    fac_cw = cumulative(zipf(len(net.facility_ids)))
    fac_ids = list(net.facility_ids)
    rng.shuffle(fac_ids)
    tpl_cw = cumulative([t[3] for t in TEMPLATES])
    hist_p = list(HISTORY_PRIORITIES)
    hist_cw = cumulative(list(HISTORY_PRIORITIES.values()))
    wait_cw = cumulative(list(WAITING_PRIORITIES.values()))

    # 1. Who arrives when, and in which state: live studies are recent.
    live = {
        "offered": shape.offered,
        "claimed": shape.claimed,
        "preliminary": shape.preliminary,
        "ready": shape.ready,
        "receiving": shape.receiving,
    }
    n_hist = shape.studies - sum(live.values())
    if n_hist < 0:
        raise SystemExit("--studies is smaller than the live studies asked for")
    plan: list[tuple[float, str, int]] = []
    span = shape.days * 86400.0
    for _ in range(n_hist):
        status = "cancelled" if rng.random() < CANCELLED_SHARE else "final"
        age = rng.uniform(2 * 3600.0, span)
        plan.append((now_ts - age, status, rng.choices(hist_p, cum_weights=hist_cw)[0]))
    for status, n in live.items():
        for _ in range(n):
            if status == "offered":
                priority = rng.choices(hist_p, cum_weights=wait_cw)[0]
                age = rng.uniform(*WAITING_AGE[priority])
            elif status in ("claimed", "preliminary"):
                priority = rng.choices(hist_p, cum_weights=hist_cw)[0]
                age = rng.uniform(300.0, 3 * 3600.0)
            elif status == "ready":
                priority, age = rng.choices(hist_p, cum_weights=hist_cw)[0], rng.uniform(15, 60)
            else:
                priority, age = rng.choices(hist_p, cum_weights=hist_cw)[0], rng.uniform(1, 30)
            plan.append((now_ts - age, status, priority))
    plan.sort()

    # 2. How many offers each historical study gets, so that the total comes out.
    busy_claims_left = shape.busy_claims
    live_offers: dict[int, list[tuple[int, int, float, float | None, str]]] = {}
    live_tier: dict[int, int] = {}

    def tier_offers(
        first_offer: float, priority: int, top_tier: int
    ) -> list[tuple[int, int, float, float | None, str]]:
        rows: list[tuple[int, int, float, float | None, str]] = []
        wait = TIER_WAIT[priority]
        sizes = [rng.randint(*TIER_READERS[t]) for t in range(top_tier + 1)]
        drawn = others.draw(sum(sizes))
        pos = 0
        for t, size in enumerate(sizes):
            at = first_offer + t * wait
            for reader in drawn[pos : pos + size]:
                rows.append((reader, t, at, None, ""))
            pos += size
        if rng.random() < shape.busy_share:
            t = rng.choices(range(top_tier + 1), weights=sizes)[0]
            rows.append((busy, t, first_offer + t * wait, None, ""))
        # Readers who went off shift meanwhile: withdrawn, not on the worklist.
        for reader in others.draw(rng.randint(0, 2)):
            if all(r[0] != reader for r in rows):
                at = first_offer + rng.uniform(0, max(1.0, now_ts - first_offer) / 2)
                rows.append((reader, 0, first_offer, at, WITHDRAW_REASONS[0]))
        return rows

    times: dict[int, tuple[float, float, float]] = {}  # idx -> last instance, ready, offered
    for idx, (received, status, priority) in enumerate(plan):
        if status in ("final", "cancelled"):
            continue
        age = now_ts - received
        last = received + min(120.0, age * 0.05)
        ready = last + min(10.0, age * 0.02)
        offered = ready + min(1.0, age * 0.01)
        times[idx] = (last, ready, offered)
        if status == "offered":
            top = min(2, int((now_ts - offered) // TIER_WAIT[priority]))
            live_tier[idx] = top
            live_offers[idx] = tier_offers(offered, priority, top)
        elif status in ("claimed", "preliminary"):
            top = rng.choice([0, 0, 0, 1])
            live_tier[idx] = top
            rows = tier_offers(offered, priority, top)
            if busy_claims_left > 0 and status == "claimed":
                busy_claims_left -= 1
                if all(r[0] != busy for r in rows):
                    rows.append((busy, 0, offered, None, ""))
            live_offers[idx] = rows
    live_offer_guess = sum(len(v) for v in live_offers.values())

    hist_offered = [
        idx
        for idx, (_, status, _) in enumerate(plan)
        if status == "final" or (status == "cancelled" and rng.random() < 0.5)
    ]
    remaining = shape.offers - live_offer_guess
    if hist_offered and remaining < len(hist_offered):
        raise SystemExit(
            f"--offers too small: {live_offer_guess:,} live offers and {len(hist_offered):,} "
            "historical studies that need at least one each"
        )
    mean = remaining / max(1, len(hist_offered))
    counts = [1 + poisson(rng, mean - 1) for _ in hist_offered]
    diff = remaining - sum(counts)
    while diff:
        i = rng.randrange(len(counts))
        if diff > 0:
            counts[i] += 1
            diff -= 1
        elif counts[i] > 1:
            counts[i] -= 1
            diff += 1
    hist_k = dict(zip(hist_offered, counts, strict=True))
    busy_p = min(1.0, shape.busy_history_share * shape.offers / max(1, len(hist_offered)))

    # The offers' aged-priority key, as the app computes it (worklist.aging).
    step = dt.timedelta(minutes=ReadingGroup.objects.get(pk=net.group_id).worklist_aging_minutes)

    def rank_ts(received: float, priority: int) -> float:
        at = dt.datetime.fromtimestamp(received, UTC)
        return aging.rank_at(priority=priority, received_at=at, step=step).timestamp()

    # 3. One pass in arrival order: study rows to COPY, routing and offer rows to files.
    study_table = Table(Study, STUDY_FIELDS)
    offer_table = Table(Offer, OFFER_FIELDS)
    routing_table = Table(StudyRouting, ROUTING_FIELDS)
    offer_path, routing_path = work / "offers.copy", work / "routing.copy"
    t0 = time.monotonic()
    offer_id = 0
    with (
        conn.cursor() as cur,
        cur.copy(study_table.sql()) as copy,
        offer_path.open("w") as offers_out,
        routing_path.open("w") as routing_out,
    ):
        buf: list[str] = []
        for idx, (received, status, priority) in enumerate(plan):
            sid = idx + 1
            fac = fac_ids[min(len(fac_ids) - 1, _bisect(fac_cw, rng.random() * fac_cw[-1]))]
            tpl = TEMPLATES[min(len(TEMPLATES) - 1, _bisect(tpl_cw, rng.random() * tpl_cw[-1]))]
            modality, body_part, description, _, rule_name = tpl
            if priority == 1 and modality == "CT":
                rule_name = STAT_CT_RULE
            rule_id, rvu = net.rules[rule_name]
            sla = received + net.facility_tat[fac][priority] * 60.0
            assigned: int | None = None
            ready_at: float | None = None
            offered_at: float | None = None
            claimed: float | None = None
            prelim: float | None = None
            final: float | None = None
            cancelled: float | None = None
            activity: float | None = None
            offers: list[tuple[int, int, float, float | None, str]] = []
            top_tier = 0
            if status in ("final", "cancelled"):
                last = received + rng.uniform(5, 120)
                ready_at = last + rng.uniform(5, 30)
                if idx in hist_k:
                    offered_at = ready_at + rng.uniform(0.2, 3)
                    offers, top_tier = _history_offers(
                        rng, others, busy, busy_p, hist_k[idx], offered_at, shape
                    )
                if status == "final":
                    claimed = (offered_at or ready_at) + rng.uniform(60, 90 * 60) / priority
                    open_readers = [o[0] for o in offers if o[3] is None]
                    assigned = rng.choice(open_readers)
                    activity = claimed
                    final = claimed + rng.uniform(3 * 60, 60 * 60)
                    updated = final
                else:
                    cancelled = (offered_at or ready_at) + rng.uniform(60, 120 * 60)
                    updated = cancelled
            else:
                last, ready_v, offered_v = times[idx]
                updated = last
                if status != "receiving":
                    ready_at = ready_v
                    updated = ready_at
                if idx in live_offers:
                    offered_at = offered_v
                    offers = live_offers[idx]
                    top_tier = live_tier[idx]
                    updated = offered_at
                    if status in ("claimed", "preliminary"):
                        claimed = offered_at + (now_ts - offered_at) * rng.uniform(0.05, 0.5)
                        busy_here = any(o[0] == busy for o in offers) and (
                            out.busy["claimed_live"] < shape.busy_claims
                        )
                        if busy_here:
                            assigned = busy
                            out.busy["claimed_live"] += 1
                        else:  # the busy reader holds exactly --busy-claims cases
                            assigned = rng.choice(
                                [o[0] for o in offers if o[3] is None and o[0] != busy]
                            )
                        activity = claimed + (now_ts - claimed) * rng.uniform(0.1, 0.9)
                        updated = activity
                        if status == "preliminary":
                            prelim = claimed + (activity - claimed) * 0.9
                            updated = prelim
            out.status_counts[status] += 1
            birth = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(90 * 365))
            buf.append(
                study_table.line(
                    [
                        str(sid),
                        f"{UID_ROOT}.{sid}",
                        f"W{sid:09d}",
                        str(fac),
                        f"P{rng.randrange(10**9):09d}",
                        f"BENCH^PATIENT{sid}",
                        birth.isoformat(),
                        "F" if rng.random() < 0.5 else "M",
                        str(net.facility_jurisdiction[fac]),
                        modality,
                        body_part,
                        description,
                        dt.datetime.fromtimestamp(received, UTC).date().isoformat(),
                        str(priority),
                        status,
                        "\\N" if assigned is None else str(assigned),
                        stamp(received),
                        stamp(last),
                        stamp(ready_at),
                        stamp(offered_at),
                        stamp(claimed),
                        stamp(prelim),
                        stamp(final),
                        stamp(cancelled),
                        stamp(sla),
                        stamp(activity),
                        stamp(updated),
                    ]
                )
            )
            if len(buf) >= 5000:
                copy.write("".join(buf))
                buf.clear()
            if offers:
                next_at: float | None = None
                if status == "offered" and top_tier < 2:
                    next_at = (offered_at or now_ts) + (top_tier + 1) * TIER_WAIT[priority]
                routing_out.write(
                    routing_table.line(
                        [
                            str(sid),
                            str(rule_id),
                            str(top_tier),
                            rvu,
                            stamp(next_at),
                            stamp(offered_at or ready_at or received),
                        ]
                    )
                )
                out.routing += 1
            lines = []
            rank = stamp(rank_ts(received, priority)) if offers else ""
            # A claim holds the study's open offers (off the worklists until a
            # release); a final or a cancellation withdraws them.  So only offered
            # studies have offers on a worklist.
            for reader, tier, at, withdrawn, reason in offers:
                offer_id += 1
                held: float | None = None
                if withdrawn is None and status in ("claimed", "preliminary"):
                    held = max(at, claimed or at)
                elif withdrawn is None and status == "final":
                    withdrawn, reason = max(at, final or at), "study reported final"
                elif withdrawn is None and status == "cancelled":
                    withdrawn, reason = max(at, cancelled or at), "study cancelled"
                lines.append(
                    offer_table.line(
                        [
                            str(offer_id),
                            str(sid),
                            str(reader),
                            str(tier),
                            stamp(at),
                            str(priority),
                            stamp(sla),
                            stamp(received),
                            rank,
                            str(fac),
                            str(rule_id),
                            stamp(held),
                            stamp(withdrawn),
                            reason,
                        ]
                    )
                )
                state = "open" if withdrawn is None else "withdrawn"
                out.offer_counts[f"{state} on {status}"] += 1
                if reader == busy:
                    out.busy[f"{state} on {status}"] += 1
            offers_out.write("".join(lines))
        if buf:
            copy.write("".join(buf))
    out.studies = len(plan)
    out.offers = offer_id
    out.seconds["studies"] = time.monotonic() - t0
    log(f"  {out.studies:,} studies copied ({out.seconds['studies']:.0f} s); loading offers")

    t0 = time.monotonic()
    copy_file(conn, routing_table, routing_path)
    out.seconds["routing"] = time.monotonic() - t0
    t0 = time.monotonic()
    copy_file(conn, offer_table, offer_path)
    out.seconds["offers"] = time.monotonic() - t0
    log(
        f"  {out.routing:,} routing rows ({out.seconds['routing']:.0f} s), "
        f"{out.offers:,} offers ({out.seconds['offers']:.0f} s)"
    )
    offer_path.unlink()
    routing_path.unlink()
    for table, column in (("studies_study", "id"), ("worklist_offer", "id")):
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "  # noqa: S608
            f"(SELECT max({column}) FROM {table}))"
        )
    return out


def _bisect(cw: Sequence[float], x: float) -> int:
    return bisect.bisect_left(cw, x)


def _history_offers(
    rng: random.Random,
    others: Readers,
    busy: int,
    busy_p: float,
    k: int,
    offered_at: float,
    shape: Shape,
) -> tuple[list[tuple[int, int, float, float | None, str]], int]:
    """The offers of a study that is now final or cancelled: mostly tier 0; one of the
    open ones was claimed; the others were withdrawn along the way or left open."""
    with_busy = rng.random() < busy_p
    readers = others.draw(k - 1 if with_busy else k)
    if with_busy:
        readers.insert(rng.randrange(len(readers) + 1), busy)
    rows: list[tuple[int, int, float, float | None, str]] = []
    top = 0
    for n, reader in enumerate(readers):
        tier = 0 if n < 4 else (1 if n < 12 else 2)
        top = max(top, tier)
        at = offered_at + tier * 60.0
        if n > 0 and rng.random() < shape.history_withdrawn:
            gone = at + rng.uniform(30, 30 * 60)
            rows.append((reader, tier, at, gone, rng.choice(WITHDRAW_REASONS)))
        else:
            rows.append((reader, tier, at, None, ""))
    return rows, top

"""A synthetic reading network and study mix for the routing benchmark.

Deterministic for a given seed: the same network (relative to the generation
time), the same studies.  Network rows go through the ORM's ``bulk_create`` (no
per-row services); studies through PostgreSQL ``COPY`` (see ``copy_models``).
"""

# ruff: noqa: S106, S311, S608
from __future__ import annotations

import datetime as dt
import itertools
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.stats import zipf

# --- geography: 6 countries, 60 jurisdictions, 40 regions ----------------------

COUNTRIES: dict[str, dict[str, Any]] = {
    # jurisdictions (ISO 3166-2 suffixes, most populous first), region count, zone,
    # share of facilities, share of readers
    "US": {
        "subs": "CA TX FL NY PA IL OH GA NC MI NJ VA WA AZ MA TN IN MO MD WI CO MN SC AL "
        "LA KY OR OK CT UT",
        "regions": 16,
        "tz": "America/Chicago",
        "facilities": 0.55,
        "readers": 0.50,
    },
    "CA": {"subs": "ON QC BC AB MB SK NS NB", "regions": 6, "tz": "America/Toronto",
           "facilities": 0.10, "readers": 0.09},
    "GB": {"subs": "ENG SCT WLS NIR", "regions": 4, "tz": "Europe/London",
           "facilities": 0.10, "readers": 0.08},
    "AU": {"subs": "NSW VIC QLD WA SA TAS", "regions": 5, "tz": "Australia/Sydney",
           "facilities": 0.08, "readers": 0.10},
    "IN": {"subs": "MH KA TN DL GJ WB", "regions": 5, "tz": "Asia/Kolkata",
           "facilities": 0.09, "readers": 0.15},
    "DE": {"subs": "BY BW NW HE NI BE", "regions": 4, "tz": "Europe/Berlin",
           "facilities": 0.08, "readers": 0.08},
}  # fmt: skip

# Reader subspecialties (codes seeded by the network migration) and how common.
SUBSPECIALTY_WEIGHTS = {
    "general": 30, "body": 30, "neuro": 20, "chest": 20, "emergency": 20, "msk": 15,
    "breast": 8, "nuclear": 6, "pediatric": 6, "cardiac": 5, "interventional": 5,
}  # fmt: skip

# Study templates: modality, body part, description, weight.
STUDY_TEMPLATES = [
    ("CT", "HEAD", "CT HEAD WO CONTRAST", 12),
    ("CT", "CHEST", "CT CHEST PE PROTOCOL", 6),
    ("CT", "ABDOMEN", "CT ABD PELVIS W CONTRAST", 10),
    ("CT", "HEART", "CT CORONARY CTA", 2),
    ("MR", "BRAIN", "MR BRAIN W WO CONTRAST", 6),
    ("MR", "KNEE", "MR KNEE WO CONTRAST", 4),
    ("MR", "SPINE", "MR LUMBAR SPINE WO", 4),
    ("CR", "CHEST", "XR CHEST 2 VIEWS", 15),
    ("DX", "CHEST", "XR CHEST PED 1 VIEW", 3),
    ("DX", "HAND", "XR HAND 3 VIEWS", 6),
    ("US", "ABDOMEN", "US ABDOMEN COMPLETE", 8),
    ("MG", "BREAST", "MG SCREENING BILATERAL", 5),
    ("NM", "WHOLEBODY", "NM BONE SCAN WHOLE BODY", 2),
    ("PT", "WHOLEBODY", "PET CT SKULL BASE TO THIGH", 2),
]
PRIORITY_WEIGHTS = {1: 15, 2: 30, 3: 55}

# Routing rules of the group, in order; the last is the default.
RULES: list[dict[str, Any]] = [
    dict(name="STAT CT: emergency", position=10, priorities=[1], modalities=["CT"],
         subs=["emergency", "neuro", "body"], allow_general=True, allow_preliminary=True,
         bypass_cap_for_stat=True),
    dict(name="Neuro CT/MR", position=20, modalities=["CT", "MR"], body_parts=["HEAD", "BRAIN"],
         subs=["neuro"], allow_general=True),
    dict(name="MSK and spine MR", position=30, modalities=["MR"],
         body_parts=["KNEE", "SPINE", "SHOULDER"], subs=["msk"]),
    dict(name="Breast imaging", position=40, modalities=["MG"], subs=["breast"]),
    dict(name="Pediatric", position=50, description_pattern=r"\bPED\b", subs=["pediatric"],
         allow_general=True),
    dict(name="Cardiac CT", position=60, description_pattern="CORONARY|CARDIAC",
         subs=["cardiac"]),
    dict(name="Nuclear medicine and PET (auto-assign)", position=70, modalities=["NM", "PT"],
         subs=["nuclear"], delivery="auto_assign"),
    dict(name="Chest imaging", position=80, body_parts=["CHEST"], subs=["chest", "body"],
         allow_general=True),
    dict(name="Default", position=1000, is_default=True, subs=["body", "general"],
         allow_general=True),
]  # fmt: skip

UID_ROOT = "1.2.826.0.1.3680043.10.4242"


@dataclass
class Network:
    """Ids and attributes of what was generated (what the workload needs)."""

    generated_at: dt.datetime
    group_id: int
    default_rule_id: int
    jurisdictions: dict[str, int]  # code -> id
    jurisdiction_country: dict[int, str]
    facilities: list[dict[str, Any]]  # id, jurisdiction_id, country, tat_*
    facility_weights: list[float]
    radiologist_ids: list[int]
    counts: dict[str, int] = field(default_factory=dict)


def _weighted_sample(
    rng: random.Random, items: Sequence[Any], weights: Sequence[float], k: int
) -> list[Any]:
    """k distinct items, drawn by weight."""
    pool = list(zip(items, weights, strict=True))
    chosen = []
    for _ in range(min(k, len(pool))):
        total = sum(w for _, w in pool)
        x = rng.random() * total
        for i, (item, w) in enumerate(pool):
            x -= w
            if x <= 0 or i == len(pool) - 1:
                chosen.append(item)
                pool.pop(i)
                break
    return chosen


def generate_network(*, seed: int, radiologists: int, facilities: int, now: dt.datetime) -> Network:
    """Create the reading group, geography, facilities, readers, licenses, privileges,
    shifts, background claims and routing rules.  Returns what the workload needs."""
    from django.contrib.auth.models import User

    from network.models import (
        CredentialStatus,
        Facility,
        FacilityPrivilege,
        Jurisdiction,
        Radiologist,
        ReadingGroup,
        Region,
        Shift,
        Subspecialty,
    )
    from network.models import License as Lic
    from routing.models import RoutingRule

    rng = random.Random(seed)
    today = now.date()
    group = ReadingGroup.objects.create(name="Bench Teleradiology Group")

    # Geography.
    juris_rows, region_rows = [], []
    region_of_sub: dict[str, str] = {}
    for country, spec in COUNTRIES.items():
        subs = spec["subs"].split()
        for sub in subs:
            juris_rows.append(
                Jurisdiction(code=f"{country}-{sub}", country=country, name=f"{country} {sub}")
            )
        n_regions = spec["regions"]
        for r in range(n_regions):
            region_rows.append(
                Region(
                    code=f"{country.lower()}-r{r + 1:02d}",
                    name=f"{country} region {r + 1}",
                    country=country,
                )
            )
        for i, sub in enumerate(subs):
            region_of_sub[f"{country}-{sub}"] = f"{country.lower()}-r{(i % n_regions) + 1:02d}"
    Jurisdiction.objects.bulk_create(juris_rows)
    Region.objects.bulk_create(region_rows)
    juris = {j.code: j.pk for j in Jurisdiction.objects.all()}
    regions = {r.code: r.pk for r in Region.objects.all()}
    juris_country = {juris[code]: code[:2] for code in juris}
    country_juris = {c: [f"{c}-{s}" for s in spec["subs"].split()] for c, spec in COUNTRIES.items()}

    countries = list(COUNTRIES)

    # Facilities, spread over countries and (Zipf-weighted) jurisdictions.
    fac_rows = []
    fac_meta: list[dict[str, Any]] = []
    for n in range(facilities):
        country = rng.choices(countries, [COUNTRIES[c]["facilities"] for c in countries])[0]
        codes = country_juris[country]
        code = rng.choices(codes, zipf(len(codes)))[0]
        stat = rng.choice([30, 60, 60, 60, 90])
        urgent = rng.choice([120, 240, 240, 360])
        routine = rng.choice([720, 1440, 1440, 2880])
        fac_rows.append(
            Facility(
                name=f"{code} Facility {n + 1:03d}",
                reading_group=group,
                jurisdiction_id=juris[code],
                region_id=regions[region_of_sub[code]],
                timezone=COUNTRIES[country]["tz"],
                tat_stat_minutes=stat,
                tat_urgent_minutes=urgent,
                tat_routine_minutes=routine,
            )
        )
        fac_meta.append(
            {"code": code, "country": country, "stat": stat, "urgent": urgent, "routine": routine}
        )
    Facility.objects.bulk_create(fac_rows)
    facilities_out: list[dict[str, Any]] = []
    for row, meta in zip(fac_rows, fac_meta, strict=True):
        facilities_out.append(
            {
                "id": row.pk,
                "jurisdiction_id": juris[meta["code"]],
                "jurisdiction": meta["code"],
                "country": meta["country"],
                "tat": {1: meta["stat"], 2: meta["urgent"], 3: meta["routine"]},
            }
        )
    facilities_by_juris: dict[str, list[int]] = {}
    for fac in facilities_out:
        facilities_by_juris.setdefault(fac["jurisdiction"], []).append(fac["id"])
    all_facility_ids = [f["id"] for f in facilities_out]

    # Readers (and their users).
    users = [
        User(username=f"bench.rad{n + 1:04d}", password="!", email="") for n in range(radiologists)
    ]
    User.objects.bulk_create(users, batch_size=2000)
    subs_by_code = {s.code: s.pk for s in Subspecialty.objects.all()}
    sub_codes = [c for c in SUBSPECIALTY_WEIGHTS if c in subs_by_code]
    sub_weights = [SUBSPECIALTY_WEIGHTS[c] for c in sub_codes]

    rad_rows: list[Any] = []
    rad_meta: list[dict[str, Any]] = []
    for n, user in enumerate(users):
        country = rng.choices(countries, [COUNTRIES[c]["readers"] for c in countries])[0]
        codes = country_juris[country]
        home = rng.choices(codes, zipf(len(codes)))[0]
        rad_rows.append(
            Radiologist(
                user=user,
                reading_group=group,
                display_name=f"Dr Bench {n + 1:04d}",
                home_region_id=regions[region_of_sub[home]],
                timezone=COUNTRIES[country]["tz"],
                workload_cap=rng.randint(3, 10),
                is_active=rng.random() >= 0.02,
                is_available=rng.random() >= 0.05,
            )
        )
        rad_meta.append({"country": country, "home": home})
    Radiologist.objects.bulk_create(rad_rows, batch_size=2000)
    rad_ids = [r.pk for r in rad_rows]

    through = Radiologist.subspecialties.through
    m2m = []
    for rid in rad_ids:
        for code in _weighted_sample(rng, sub_codes, sub_weights, rng.choice([1, 1, 2, 2, 3])):
            m2m.append(through(radiologist_id=rid, subspecialty_id=subs_by_code[code]))
    through.objects.bulk_create(m2m, batch_size=5000)

    # Licenses: 1-8 jurisdictions, mostly at home; some readers abroad hold US
    # licenses (overnight coverage).  Some expired, not yet valid, suspended...;
    # some preliminary-only; some with an old expired license next to a renewal.
    lic_rows, privileged_targets = [], []
    lic_seq = 0

    def license_row(rid: int, code: str, *, historical: bool = False) -> Lic:
        nonlocal lic_seq
        lic_seq += 1
        x = rng.random()
        if historical or x < 0.08:  # expired
            start = today - dt.timedelta(days=rng.randint(800, 2500))
            end = today - dt.timedelta(days=rng.randint(1, 400))
        elif x < 0.11:  # not yet valid
            start = today + dt.timedelta(days=rng.randint(1, 90))
            end = start + dt.timedelta(days=730)
        else:
            start = today - dt.timedelta(days=rng.randint(30, 2000))
            end = today + dt.timedelta(days=rng.randint(20, 900))
        y = rng.random()
        status = (
            CredentialStatus.ACTIVE
            if y < 0.92
            else CredentialStatus.PENDING
            if y < 0.95
            else CredentialStatus.SUSPENDED
            if y < 0.98
            else CredentialStatus.REVOKED
        )
        if historical:
            status = CredentialStatus.ACTIVE
        scope = Lic.Scope.PRELIMINARY if rng.random() < 0.10 else Lic.Scope.FINAL
        return Lic(
            radiologist_id=rid,
            jurisdiction_id=juris[code],
            number=f"B{lic_seq:07d}",
            valid_from=start,
            valid_to=end,
            status=status,
            scope=scope,
        )

    for rid, meta in zip(rad_ids, rad_meta, strict=True):
        country, home = meta["country"], meta["home"]
        codes = country_juris[country]
        want = rng.randint(1, 8)
        others = [c for c in codes if c != home]
        held = [home, *_weighted_sample(rng, others, zipf(len(others)), want - 1)]
        if country in ("IN", "AU", "GB", "CA") and rng.random() < 0.25:
            us = country_juris["US"]
            held += _weighted_sample(rng, us, zipf(len(us)), rng.randint(1, 4))
        for code in held:
            lic_rows.append(license_row(rid, code))
            if rng.random() < 0.10:
                lic_rows.append(license_row(rid, code, historical=True))
        privileged_targets.append(held)
    Lic.objects.bulk_create(lic_rows, batch_size=5000)

    # Privileges: 20-60 facilities each, ~85% where licensed.
    priv_rows = []
    for rid, held in zip(rad_ids, privileged_targets, strict=True):
        want = rng.randint(20, 60)
        local = [fid for code in held for fid in facilities_by_juris.get(code, [])]
        n_local = min(len(local), round(want * 0.85))
        chosen = set(rng.sample(local, n_local))
        rest = [fid for fid in all_facility_ids if fid not in chosen]
        chosen.update(rng.sample(rest, min(len(rest), want - len(chosen))))
        for fid in sorted(chosen):
            x = rng.random()
            if x < 0.07:
                start, end = (
                    today - dt.timedelta(days=900),
                    today - dt.timedelta(days=rng.randint(1, 200)),
                )
            elif x < 0.10:
                start, end = (
                    today + dt.timedelta(days=rng.randint(1, 60)),
                    today + dt.timedelta(days=800),
                )
            else:
                start = today - dt.timedelta(days=rng.randint(10, 1500))
                end = today + dt.timedelta(days=rng.randint(20, 800))
            y = rng.random()
            status = (
                CredentialStatus.ACTIVE
                if y < 0.93
                else CredentialStatus.PENDING
                if y < 0.97
                else CredentialStatus.SUSPENDED
            )
            priv_rows.append(
                FacilityPrivilege(
                    radiologist_id=rid,
                    facility_id=fid,
                    status=status,
                    valid_from=start,
                    valid_to=end,
                )
            )
    FacilityPrivilege.objects.bulk_create(priv_rows, batch_size=5000)

    # Shifts: one a day for [-3, +3] days around generation time, each reader at a
    # phase of their own; 8 h (70%), 10 h (20%) or 12 h (10%); one day in seven off.
    # About 30% of readers are on shift at any time.
    shift_rows = []
    for rid in rad_ids:
        phase = rng.random() * 24
        hours = rng.choices([8, 10, 12], [70, 20, 10])[0]
        for day in range(-3, 4):
            if rng.random() < 1 / 7:
                continue
            start = now + dt.timedelta(hours=phase + 24 * day - 24)
            shift_rows.append(
                Shift(
                    radiologist_id=rid, starts_at=start, ends_at=start + dt.timedelta(hours=hours)
                )
            )
    Shift.objects.bulk_create(shift_rows, batch_size=5000)

    # Routing rules.
    rule_objs = []
    for spec in RULES:
        spec = dict(spec)
        subs = spec.pop("subs")
        rule = RoutingRule.objects.create(reading_group=group, **spec)
        rule.subspecialties.set([subs_by_code[c] for c in subs])
        rule_objs.append(rule)
    default_rule = next(r for r in rule_objs if r.is_default)

    return Network(
        generated_at=now,
        group_id=group.pk,
        default_rule_id=default_rule.pk,
        jurisdictions=juris,
        jurisdiction_country=juris_country,
        facilities=facilities_out,
        facility_weights=zipf(len(facilities_out)),
        radiologist_ids=rad_ids,
        counts={
            "jurisdictions": len(juris),
            "regions": len(regions),
            "facilities": len(facilities_out),
            "radiologists": len(rad_ids),
            "reader subspecialties": len(m2m),
            "licenses": len(lic_rows),
            "privileges": len(priv_rows),
            "shifts": len(shift_rows),
            "routing rules": len(rule_objs),
        },
    )


# --- studies -------------------------------------------------------------------


class StudyMaker:
    """Study rows (dicts keyed by column attname) with a realistic mix."""

    def __init__(self, net: Network, seed: int) -> None:
        self.net = net
        self.rng = random.Random(seed)
        self.seq = 0
        self.templates = STUDY_TEMPLATES
        self.template_cw = list(itertools.accumulate(t[3] for t in STUDY_TEMPLATES))
        self.facility_cw = list(itertools.accumulate(net.facility_weights))
        self.priorities = list(PRIORITY_WEIGHTS)
        self.priority_cw = list(itertools.accumulate(PRIORITY_WEIGHTS.values()))
        juris_by_country: dict[str, list[int]] = {}
        for jid, country in net.jurisdiction_country.items():
            juris_by_country.setdefault(country, []).append(jid)
        self.juris_by_country = juris_by_country

    def row(self, *, prefix: str, status: str, at: dt.datetime, **extra: Any) -> dict[str, Any]:
        rng = self.rng
        self.seq += 1
        fac = rng.choices(self.net.facilities, cum_weights=self.facility_cw)[0]
        modality, body_part, description, _ = rng.choices(
            self.templates, cum_weights=self.template_cw
        )[0]
        priority = rng.choices(self.priorities, cum_weights=self.priority_cw)[0]
        jurisdiction = fac["jurisdiction_id"]
        if rng.random() < 0.05:  # patient from elsewhere in the country
            jurisdiction = rng.choice(self.juris_by_country[fac["country"]])
        row = {
            "study_instance_uid": f"{UID_ROOT}.{prefix}.{self.seq}",
            "accession_number": f"B{prefix}{self.seq}"[:16],
            "facility_id": fac["id"],
            "patient_id": f"P{rng.randint(1, 10**8)}",
            "patient_name": "BENCH^PATIENT",
            "patient_jurisdiction_id": jurisdiction,
            "modality": modality,
            "body_part": body_part,
            "study_description": description,
            "priority": priority,
            "status": status,
            "received_at": at,
            "last_instance_at": at,
            "sla_due_at": at + dt.timedelta(minutes=fac["tat"][priority]),
            "updated_at": at,
        }
        row.update(extra)
        return row


class Columns:
    """A model's columns for raw INSERT/COPY, with the model's defaults for the
    columns a row does not give (so a column added to the app later gets its
    default); the id comes from the database."""

    def __init__(self, model: Any) -> None:
        from django.utils import timezone

        fields = [f for f in model._meta.concrete_fields if not (f.primary_key and f.auto_created)]
        self.table = model._meta.db_table
        self.columns = [f.column for f in fields]
        self.names = [f.attname for f in fields]
        self.json = {f.attname for f in fields if f.get_internal_type() == "JSONField"}
        self.defaults: dict[str, Any] = {}
        for f in fields:
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                default: Any = timezone.now()
            else:
                default = f.get_default()  # "" for a blank text column, None when nullable
            if f.attname in self.json and default is not None:
                default = json.dumps(default)
            self.defaults[f.attname] = default

    def values(self, row: dict[str, Any]) -> list[Any]:
        out = []
        for name in self.names:
            if name in row:
                v = row[name]
                if name in self.json and not isinstance(v, str):
                    v = json.dumps(v)
                out.append(v)
            else:
                out.append(self.defaults[name])
        return out

    def insert_sql(self) -> str:
        marks = ", ".join(["%s"] * len(self.columns))
        return (
            f'INSERT INTO "{self.table}" ({", ".join(self.columns)}) VALUES ({marks}) RETURNING id'
        )


def copy_models(conn: Any, model: Any, rows: Iterable[dict[str, Any]]) -> int:
    """COPY rows (dicts keyed by attname) into the model's table."""
    cols = Columns(model)
    n = 0
    with (
        conn.cursor() as cur,
        cur.copy(f'COPY "{cols.table}" ({", ".join(cols.columns)}) FROM STDIN') as copy,
    ):
        for row in rows:
            copy.write_row(cols.values(row))
            n += 1
    return n

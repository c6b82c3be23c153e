"""The claims benchmark's data: one group, one facility, a default "offer" rule,
one radiologist per client (with a DRF token) and N studies routed by the app's
own ``study_route``, so that every study is offered to every reader; and the
SQL of the bare loop and the naive control on the app's own tables."""

# ruff: noqa: S311, S608
from __future__ import annotations

import argparse
import datetime as dt
import random
import time
from collections import Counter
from typing import Any

from bench.harness import log


def build(
    args: argparse.Namespace, results: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """One group, one facility, a default rule, one reader per client (licensed,
    privileged, on shift, general subspecialty, home in the facility's region) and
    N studies routed by the app's own ``study_route``: each is offered to every reader.
    Returns the readers (radiologist id, username, token) and the loops' SQL."""
    from django.contrib.auth.models import User
    from django.db import transaction
    from django.utils import timezone
    from knox.models import get_digest_token
    from knox.settings import CONSTANTS

    from accounts.models import ApiToken
    from network.models import (
        Facility,
        FacilityPrivilege,
        Jurisdiction,
        License,
        Priority,
        Radiologist,
        ReadingGroup,
        Region,
        Shift,
        Subspecialty,
    )
    from routing.models import RoutingRule
    from routing.services import study_route
    from studies.models import Study
    from studies.sla import sla_due_at
    from studies.states import StudyStatus
    from worklist.models import Offer

    rng = random.Random(args.seed)
    now = timezone.now()
    started = time.monotonic()
    with transaction.atomic():
        group = ReadingGroup.objects.create(name="Claims bench group")
        jurisdiction, _ = Jurisdiction.objects.get_or_create(
            code="US-TX", defaults={"country": "US", "name": "Texas"}
        )
        region = Region.objects.create(code="bench-north-tx", name="North Texas", country="US")
        facility = Facility.objects.create(
            name="Claims Bench Hospital",
            reading_group=group,
            jurisdiction=jurisdiction,
            timezone="America/Chicago",
            region=region,
            tat_stat_minutes=60,
            tat_urgent_minutes=240,
            tat_routine_minutes=1440,
        )
        general = Subspecialty.objects.get(code="general")
        rule = RoutingRule.objects.create(
            reading_group=group,
            name="Everything (offer to the pool)",
            is_default=True,
            allow_general=True,
            delivery=RoutingRule.Delivery.OFFER,
        )
        rule.subspecialties.set([general])
        users = []
        for n in range(args.clients):
            user = User(username=f"bench-reader-{n:03d}", email=f"reader{n}@example.test")
            user.set_unusable_password()  # token authentication only
            users.append(user)
        User.objects.bulk_create(users)
        users = list(User.objects.filter(username__startswith="bench-reader-").order_by("username"))
        readers = Radiologist.objects.bulk_create(
            [
                Radiologist(
                    user=u,
                    reading_group=group,
                    display_name=f"Dr Bench {n:03d}",
                    home_region=region,
                    timezone="America/Chicago",
                    workload_cap=5,
                )
                for n, u in enumerate(users)
            ]
        )
        Radiologist.subspecialties.through.objects.bulk_create(
            [
                Radiologist.subspecialties.through(radiologist_id=r.pk, subspecialty_id=general.pk)
                for r in readers
            ]
        )
        today = now.date()
        License.objects.bulk_create(
            [
                License(
                    radiologist=r,
                    jurisdiction=jurisdiction,
                    number=f"TX-B{r.pk:06d}",
                    valid_from=today - dt.timedelta(days=365),
                    valid_to=today + dt.timedelta(days=365),
                )
                for r in readers
            ]
        )
        FacilityPrivilege.objects.bulk_create(
            [
                FacilityPrivilege(
                    radiologist=r,
                    facility=facility,
                    valid_from=today - dt.timedelta(days=365),
                    valid_to=today + dt.timedelta(days=365),
                )
                for r in readers
            ]
        )
        Shift.objects.bulk_create(
            [
                Shift(
                    radiologist=r,
                    starts_at=now - dt.timedelta(hours=12),
                    ends_at=now + dt.timedelta(hours=12),
                )
                for r in readers
            ]
        )
        keys = []
        rows = []
        for u in users:
            digest, key = get_digest_token()
            keys.append(key)
            rows.append(
                ApiToken(
                    user=u,
                    digest=digest,
                    token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH],
                    expiry=now + dt.timedelta(days=1),
                )
            )
        ApiToken.objects.bulk_create(rows)
        accounts = [
            {"radiologist": r.pk, "username": u.username, "token": key}
            for r, u, key in zip(readers, users, keys, strict=True)
        ]
        priorities = rng.choices(
            [Priority.STAT, Priority.URGENT, Priority.ROUTINE], weights=[10, 30, 60], k=args.studies
        )
        studies = []
        for n, priority in enumerate(priorities):
            received = now - dt.timedelta(seconds=rng.uniform(60, 7200))
            studies.append(
                Study(
                    study_instance_uid=f"1.2.826.0.1.3680043.10.999.{n + 1}",
                    accession_number=f"CB{n + 1:07d}",
                    facility=facility,
                    patient_id=f"P{rng.randrange(10**7):07d}",
                    patient_name=f"BENCH^PATIENT{n}",
                    patient_jurisdiction=jurisdiction,
                    modality=rng.choice(["CT", "MR", "CR", "US"]),
                    body_part="CHEST",
                    study_description="BENCH STUDY",
                    priority=priority,
                    status=StudyStatus.READY,
                    received_at=received,
                    last_instance_at=received,
                    ready_at=received + dt.timedelta(seconds=30),
                    sla_due_at=sla_due_at(
                        received_at=received, tat_minutes=facility.tat_minutes(priority)
                    ),
                )
            )
        Study.objects.bulk_create(studies, batch_size=1000)
    log(f"network and {args.studies} READY studies written; routing them with study_route")
    ids = list(Study.objects.filter(facility=facility).order_by("pk").values_list("pk", flat=True))
    route_started = time.monotonic()
    for study_id in ids:
        study_route(study_id=study_id)
    route_seconds = time.monotonic() - route_started
    offered = Study.objects.filter(facility=facility, status=StudyStatus.OFFERED).count()
    offers = Offer.objects.filter(study__facility=facility, withdrawn_at__isnull=True).count()
    expected = args.studies * args.clients
    if offered != args.studies or offers != expected:
        raise RuntimeError(
            f"routing offered {offered}/{args.studies} studies with {offers}/{expected} open "
            "offers: not every reader is eligible for every study"
        )
    results["data"] = {
        "studies": args.studies,
        "readers": args.clients,
        "offers": offers,
        "priorities": dict(Counter(Priority(p).label for p in priorities)),
        "route_seconds": route_seconds,
        "build_seconds": time.monotonic() - started,
    }
    log(
        f"{offered} studies offered to all {args.clients} readers ({offers} open offers), "
        f"routed in {route_seconds:.1f} s"
    )
    study_table, offer_table = Study._meta.db_table, Offer._meta.db_table
    offered_s, claimed_s = StudyStatus.OFFERED.value, StudyStatus.CLAIMED.value
    worklist = (
        f"SELECT s.id FROM {study_table} s WHERE s.status = '{offered_s}' AND EXISTS ("
        f"SELECT 1 FROM {offer_table} o WHERE o.study_id = s.id AND o.radiologist_id = %s::bigint "
        "AND o.withdrawn_at IS NULL) ORDER BY s.priority, s.sla_due_at, s.received_at, s.id "
        "LIMIT 1"
    )
    claim_set = (
        f"status = '{claimed_s}', assigned_radiologist_id = %s::bigint, claimed_at = now(), "
        "claim_activity_at = now(), updated_at = now()"
    )
    sql = {
        "claim_select": worklist + " FOR UPDATE OF s SKIP LOCKED",
        "claim_update": f"UPDATE {study_table} SET {claim_set} WHERE id = %s::bigint",
        "naive_select": worklist,
        "naive_update": f"UPDATE {study_table} SET {claim_set} WHERE id = %s::bigint",
        "release": (
            f"UPDATE {study_table} SET status = '{offered_s}', assigned_radiologist_id = NULL, "
            f"claim_activity_at = NULL, updated_at = now() WHERE id = %s::bigint "
            f"AND status = '{claimed_s}' AND assigned_radiologist_id = %s::bigint"
        ),
        "reset": (
            f"UPDATE {study_table} SET status = '{offered_s}', assigned_radiologist_id = NULL, "
            f"claim_activity_at = NULL WHERE status = '{claimed_s}'"
        ),
        "claimed_left": f"SELECT count(*) FROM {study_table} WHERE status = '{claimed_s}'",
    }
    return accounts, sql

"""Property-based: over random networks, routing never offers a study to an ineligible
reader, and every ready study ends offered or flagged unroutable."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from network.models import FacilityPrivilege, License, Radiologist, Shift
from routing.models import RoutingRule, StudyRouting
from routing.services import routing_sweep, study_route
from studies.models import Study
from studies.services import study_transition
from tests import factories as f
from worklist.models import Offer

NOW = dt.datetime(2026, 6, 1, 14, 0, tzinfo=dt.UTC)
TODAY = NOW.date()

reader_spec = st.fixed_dictionaries(
    {
        "region": st.sampled_from(["local", "regional", "global"]),
        "subs": st.sets(st.sampled_from(["neuro", "msk", "general"]), min_size=1),
        "license": st.sampled_from(["final", "prelim", "expired", "suspended", "other", None]),
        "privilege": st.sampled_from(["active", "expired", "pending", None]),
        "on_shift": st.booleans(),
        "active": st.booleans(),
        "available": st.booleans(),
        "cap": st.integers(1, 2),
        "busy": st.integers(0, 2),
    }
)
network = st.fixed_dictionaries(
    {
        "readers": st.lists(reader_spec, max_size=6),
        "rule_subs": st.sets(st.sampled_from(["neuro", "msk"]), min_size=1),
        "allow_general": st.booleans(),
        "allow_preliminary": st.booleans(),
        "priority": st.integers(1, 3),
        "escalations": st.integers(0, 4),
    }
)


def oracle_eligible(reader: Radiologist, study: Study, rule: RoutingRule) -> bool:
    """Eligibility recomputed independently from the database, rule by rule."""
    on_shift = Shift.objects.filter(
        radiologist=reader, starts_at__lte=NOW, ends_at__gt=NOW
    ).exists()
    licenses = License.objects.filter(
        radiologist=reader,
        jurisdiction=study.patient_jurisdiction,
        status="active",
        valid_from__lte=TODAY,
        valid_to__gte=TODAY,
    )
    final = licenses.filter(scope="final").exists()
    prelim = licenses.exists() and rule.allow_preliminary
    privileged = FacilityPrivilege.objects.filter(
        radiologist=reader,
        facility=study.facility,
        status="active",
        valid_from__lte=TODAY,
        valid_to__gte=TODAY,
    ).exists()
    subs = set(reader.subspecialties.values_list("code", flat=True))
    wanted = set(rule.subspecialties.values_list("code", flat=True))
    fits = bool(subs & wanted) or (rule.allow_general and "general" in subs)
    open_claims = Study.objects.filter(
        assigned_radiologist=reader, status__in=["claimed", "preliminary"]
    ).count()
    under_cap = open_claims < reader.workload_cap
    return (
        reader.is_active
        and reader.is_available
        and on_shift
        and (final or prelim)
        and privileged
        and fits
        and under_cap
    )


class RoutingProperties(TestCase):
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(spec=network)
    def test_offers_only_to_eligible_readers_and_never_silently(self, spec):
        group = f.ReadingGroupFactory(name="G")
        regions = {
            "local": f.RegionFactory(code="us-tx-north", country="US"),
            "regional": f.RegionFactory(code="us-northeast", name="NE", country="US"),
            "global": f.RegionFactory(code="in-south", name="IN", country="IN"),
        }
        facility = f.FacilityFactory(
            reading_group=group, region=regions["local"], ae_titles=["PROP"]
        )
        other = f.FacilityFactory(reading_group=group, region=regions["local"], ae_titles=["PROP2"])
        rule = RoutingRule.objects.create(
            reading_group=group,
            name="R",
            is_default=True,
            allow_general=spec["allow_general"],
            allow_preliminary=spec["allow_preliminary"],
            wait_stat_seconds=60,
            wait_urgent_seconds=60,
            wait_routine_seconds=60,
        )
        rule.subspecialties.set([f.subspecialty(c) for c in spec["rule_subs"]])
        for n, r in enumerate(spec["readers"]):
            reader = f.RadiologistFactory(
                user=f.UserFactory(username=f"r{n}"),
                reading_group=group,
                home_region=regions[r["region"]],
                subspecialties=sorted(r["subs"]),
                workload_cap=r["cap"],
                is_active=r["active"],
                is_available=r["available"],
            )
            if r["license"]:
                f.LicenseFactory(
                    radiologist=reader,
                    jurisdiction=facility.jurisdiction
                    if r["license"] != "other"
                    else f.JurisdictionFactory(code="US-NY"),
                    scope="preliminary" if r["license"] == "prelim" else "final",
                    status="suspended" if r["license"] == "suspended" else "active",
                    valid_from=dt.date(2025, 1, 1),
                    valid_to=dt.date(2025, 12, 31)
                    if r["license"] == "expired"
                    else dt.date(2027, 1, 1),
                )
            if r["privilege"]:
                f.PrivilegeFactory(
                    radiologist=reader,
                    facility=facility,
                    status="pending" if r["privilege"] == "pending" else "active",
                    valid_from=dt.date(2025, 1, 1),
                    valid_to=dt.date(2025, 12, 31)
                    if r["privilege"] == "expired"
                    else dt.date(2027, 1, 1),
                )
            if r["on_shift"]:
                f.ShiftFactory(
                    radiologist=reader,
                    starts_at=NOW - dt.timedelta(hours=1),
                    ends_at=NOW + dt.timedelta(hours=7),
                )
            for _ in range(r["busy"]):  # claimed cases elsewhere count against the cap
                busy = f.StudyFactory(facility=other)
                for status in ("ready", "offered"):
                    study_transition(study_id=busy.pk, to_status=status)
                study_transition(study_id=busy.pk, to_status="claimed", assigned_radiologist=reader)

        study = f.StudyFactory(
            facility=facility, priority=spec["priority"], received_at=NOW - dt.timedelta(minutes=1)
        )
        study_transition(study_id=study.pk, to_status="ready", at=NOW)
        study_route(study_id=study.pk, now=NOW)
        t = NOW
        for _ in range(spec["escalations"]):
            routing = StudyRouting.objects.get(study=study)
            t = max(t, routing.next_escalation_at)
            routing_sweep(now=t)

        study.refresh_from_db()
        offered = Radiologist.objects.filter(
            offers__study=study, offers__withdrawn_at__isnull=True
        ).distinct()
        for reader in offered:
            assert oracle_eligible(reader, study, rule), reader
        routing = StudyRouting.objects.get(study=study)
        if study.status == "offered":
            assert offered.exists()
        else:
            assert study.status == "ready"
            assert routing.unroutable_at is not None and routing.unroutable_reason
        assert Offer.objects.filter(study=study, withdrawn_at__isnull=True).count() == len(
            set(offered)
        )

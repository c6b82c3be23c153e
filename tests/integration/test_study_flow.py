"""A study's whole way through the running system, with real processes only:
dcmtk's storescu -> the DICOM listener -> beat's ready sweep -> a worker routes it ->
escalation tier by tier (timers from the SLA, capped for the test) -> the readers
go off shift -> unroutable alert to admins (never because the timers ran out)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.db import connection
from django.utils import timezone

from alerts.models import Alert
from ingest.synthetic import StudySpec, write_series
from network.models import Shift
from routing.models import RoutingDecision, RoutingRule
from studies.models import Study
from tests import factories as f
from tests.ingest.dcmtk import storescu
from tests.processes import _stop, isolated_broker_env, start_listener, start_worker, stop_listener
from worklist.models import Offer

pytestmark = pytest.mark.worker


def _reader(group, facility, name, region):
    reader = f.RadiologistFactory(
        user=f.UserFactory(username=name),
        reading_group=group,
        home_region=region,
        subspecialties=["neuro"],
    )
    f.LicenseFactory(radiologist=reader, jurisdiction=facility.jurisdiction)
    f.PrivilegeFactory(radiologist=reader, facility=facility)
    now = timezone.now()
    f.ShiftFactory(
        radiologist=reader,
        starts_at=now - dt.timedelta(hours=1),
        ends_at=now + dt.timedelta(hours=2),
    )
    return reader


def test_ingest_ready_route_escalate_unroutable(transactional_db, tmp_path):
    group = f.ReadingGroupFactory(name="Flow group")
    local = f.RegionFactory(code="us-tx-north", country="US")
    facility = f.FacilityFactory(reading_group=group, region=local, ae_titles=["FLOW_CT"])
    _reader(group, facility, "dr_local", local)
    _reader(group, facility, "dr_regional", f.RegionFactory(code="us-west", name="W", country="US"))
    _reader(group, facility, "dr_global", f.RegionFactory(code="gb-south", name="GB", country="GB"))
    rule = RoutingRule.objects.create(
        reading_group=group,
        name="Neuro STAT",
        is_default=True,
        wait_stat_seconds=2,
        wait_urgent_seconds=2,
        wait_routine_seconds=2,
        min_tier_wait_seconds=1,
    )
    rule.subspecialties.set([f.subspecialty("neuro")])

    env = {
        **isolated_broker_env(tmp_path),
        "STUDY_QUIET_SECONDS": "1",
        "STUDY_READY_SWEEP_SECONDS": "0.5",
        "ROUTING_SWEEP_SECONDS": "0.5",
    }
    worker = start_worker(tmp_path, beat=True, **env)
    listener = start_listener(tmp_path)
    try:
        spec = StudySpec(modality="CT", body_part="HEAD", priority="STAT", patient_id="FLOW-1")
        files = write_series(spec, tmp_path / "study", count=10)
        sent = storescu(listener.port, files, aet="FLOW_CT")
        assert sent.returncode == 0, sent.stdout + sent.stderr

        deadline = time.monotonic() + 90
        widest = False
        while time.monotonic() < deadline and not widest:
            widest = RoutingDecision.objects.filter(outcome="escalated", tier=2).exists()
            time.sleep(0.5)
        assert widest, worker.process.args
        # At the widest tier the timer judges the tier again and again; eligible
        # readers hold the study, so it is never unroutable...
        time.sleep(5)
        assert not Alert.objects.filter(kind="unroutable").exists()
        # ...until nobody is left on shift.
        Shift.objects.update(ends_at=timezone.now())
        alert = None
        while time.monotonic() < deadline and alert is None:
            alert = Alert.objects.filter(kind="unroutable").first()
            time.sleep(0.5)
        assert alert is not None, worker.process.args
    finally:
        stop_listener(listener)
        _stop(worker.process)
        connection.close()

    study = Study.objects.get(study_instance_uid=spec.study_uid)
    assert alert.study_id == study.pk
    assert study.priority == 1 and study.status == "ready"
    assert list(study.transitions.values_list("to_status", flat=True)) == [
        "ready",
        "offered",
        "ready",
    ]
    decisions = list(RoutingDecision.objects.filter(study=study).values_list("outcome", "tier"))
    assert decisions == [("offered", 0), ("escalated", 1), ("escalated", 2), ("unroutable", 2)]
    assert RoutingDecision.objects.filter(study=study).last().reason == (
        "no radiologist of Flow group is on shift"
    )
    offers = Offer.objects.filter(study=study)
    assert set(offers.values_list("radiologist__user__username", flat=True)) == {
        "dr_local",
        "dr_regional",
        "dr_global",
    }
    assert set(offers.values_list("withdrawn_reason", flat=True)) == {"reader no longer eligible"}
    assert Alert.objects.filter(kind="unroutable", study=study).count() == 1

"""Relevant priors fetched from Orthanc as the facility's PACS, for real: C-FIND by
patient then study, C-MOVE to our listener (a real process) on the priors AE
title, the study's hold released when they are in; a PACS that dies mid-retrieval
or is down from the start is retried with back-off and never holds the offer past
the bounded wait."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from ingest.services import studies_mark_ready
from ingest.synthetic import StudySpec
from network.models import Facility
from priors.models import PriorFetch, PriorStudy
from priors.services import prior_fetches_sweep, study_priors_fetch
from routing.models import RoutingRule, StudyRouting
from routing.services import routing_sweep
from studies.models import Instance, Study
from tests import factories as f
from tests.priors.conftest import write_prior
from tests.processes import free_port

TODAY = timezone.localdate()
PATIENT = "PRI-0001"


def years_ago(years: float) -> dt.date:
    return TODAY - dt.timedelta(days=int(365.25 * years))


@pytest.fixture
def routable(group_a: Any, licensed_reader: Any) -> Any:
    rule = RoutingRule.objects.create(
        reading_group=group_a, name="Default", is_default=True, allow_general=True
    )
    rule.subspecialties.set([f.subspecialty("neuro")])  # the reader's
    return licensed_reader


def _pacs_for(facility: Any, *, ae_title: str, port: int) -> Facility:
    Facility.objects.filter(pk=facility.pk).update(
        pacs_ae_title=ae_title, pacs_host="127.0.0.1", pacs_port=port
    )
    return Facility.objects.get(pk=facility.pk)


def _current(facility: Any, **fields: Any) -> Study:
    return f.StudyFactory(
        facility=facility,
        patient_id=PATIENT,
        modality="CT",
        body_part="CHEST",
        study_description="CT CHEST WO CONTRAST",
        study_date=TODAY,
        **fields,
    )


def _spec(modality: str, body_part: str, description: str, accession: str) -> StudySpec:
    return StudySpec(
        modality=modality,
        body_part=body_part,
        description=description,
        patient_id=PATIENT,
        patient_name="PRIOR^PATIENT",
        accession=accession,
    )


def test_relevant_priors_are_found_moved_stored_as_priors_and_the_hold_released(
    pacs, listener, facility_a, routable, settings, tmp_path, api, unlicensed_reader, staff_a
):
    settings.PRIORS_WAIT_SECONDS = 300.0  # released long before, by the fetch
    facility = _pacs_for(facility_a, ae_title=pacs.ae_title, port=pacs.dicom_port)
    pacs.modality_add(
        "telerad", ae_title=settings.DICOM_PRIORS_AE_TITLE, host="127.0.0.1", port=listener.port
    )
    ct_chest = _spec("CT", "CHEST", "CT CHEST W CONTRAST", "P1")
    cr_chest = _spec("CR", "CHEST", "XR CHEST PA", "P2")
    mr_knee = _spec("MR", "KNEE", "MRI KNEE", "P3")
    too_old = _spec("CT", "CHEST", "CT CHEST", "P4")
    stored = _spec("CT", "CHEST", "CT CHEST LOW DOSE", "P5")
    pacs.load(write_prior(ct_chest, tmp_path / "a", study_date=years_ago(2), count=12))
    pacs.load(write_prior(cr_chest, tmp_path / "b", study_date=years_ago(1), count=2))
    pacs.load(write_prior(mr_knee, tmp_path / "c", study_date=years_ago(1), count=2))
    pacs.load(write_prior(too_old, tmp_path / "d", study_date=years_ago(8), count=2))
    pacs.load(write_prior(stored, tmp_path / "e", study_date=years_ago(3), count=2))
    # The facility sent this one to us earlier: linked, not retrieved again.
    already = f.StudyFactory(
        facility=facility,
        study_instance_uid=stored.study_uid,
        patient_id=PATIENT,
        modality="CT",
        body_part="CHEST",
        study_date=years_ago(3),
    )
    current = _current(facility)

    studies_mark_ready(quiet_seconds=0)  # ready, held; the fetch runs (tasks run inline)

    fetch = PriorFetch.objects.get(study=current)
    assert (fetch.status, fetch.attempts, fetch.last_error) == ("done", 1, "")
    rows = {p.study_instance_uid: p for p in PriorStudy.objects.filter(current=current)}
    assert set(rows) == {ct_chest.study_uid, cr_chest.study_uid, stored.study_uid}
    assert rows[ct_chest.study_uid].relevance_code == "region_modality"
    assert rows[cr_chest.study_uid].relevance_code == "region"
    assert all(p.status == "retrieved" for p in rows.values()), rows
    assert rows[stored.study_uid].prior_id == already.pk
    assert rows[stored.study_uid].instances_retrieved == 0
    moved = rows[ct_chest.study_uid]
    assert moved.instances_retrieved == 12
    prior = Study.objects.get(pk=moved.prior_id)
    assert prior.is_prior and prior.facility_id == facility.pk
    assert prior.patient_record_id == Study.objects.get(pk=current.pk).patient_record_id
    assert Instance.objects.filter(series__study=prior).count() == 12

    # The hold was released at once and the study offered.
    current.refresh_from_db()
    assert current.priors_hold_until is None
    assert current.status == "offered", current.status

    # Quiet: the priors become stored priors, never routed.
    studies_mark_ready(quiet_seconds=0)
    prior.refresh_from_db()
    assert prior.status == "prior"
    assert not StudyRouting.objects.filter(study=prior).exists()
    assert not PriorFetch.objects.filter(study=prior).exists()

    # The reader of the current study sees its priors; a reader without it does not.
    reader = routable.user
    body = api(reader).get(f"/api/v1/studies/{current.pk}/priors/").json()
    assert [p["study_instance_uid"] for p in body["priors"]] == [
        cr_chest.study_uid,
        ct_chest.study_uid,
        stored.study_uid,
    ]
    assert {p["status"] for p in body["priors"]} == {"retrieved"}
    assert body["fetch"]["status"] == "done"
    assert api(reader).get(f"/api/v1/studies/{prior.pk}/").status_code == 200
    qido = api(reader).get("/dicomweb/studies", {"PatientID": PATIENT})
    assert qido.status_code == 200
    found = {s["0020000D"]["Value"][0] for s in qido.json()}
    assert {current.study_instance_uid, ct_chest.study_uid, cr_chest.study_uid} <= found
    # WADO-RS: the reader reads the prior's metadata (the viewer's first request).
    metadata = api(reader).get(f"/dicomweb/studies/{ct_chest.study_uid}/metadata")
    assert metadata.status_code == 200, metadata.content[:300]
    other = unlicensed_reader.user
    assert api(other).get(f"/dicomweb/studies/{ct_chest.study_uid}/metadata").status_code == 404
    assert api(other).get(f"/api/v1/studies/{current.pk}/priors/").status_code == 404
    assert api(other).get(f"/api/v1/studies/{prior.pk}/").status_code == 404
    assert api(staff_a).get(f"/api/v1/studies/{prior.pk}/").status_code == 200


def _stored_files(listener: Any) -> int:
    root: Path = listener.storage_root
    return sum(1 for p in root.rglob("*.dcm") if ".staging" not in p.parts) if root.exists() else 0


def test_a_pacs_stopped_mid_retrieval_fails_the_attempt_and_the_offer_waits_no_longer(
    pacs, listener, facility_a, routable, settings, tmp_path
):
    settings.PRIORS_WAIT_SECONDS = 3.0
    settings.PRIORS_RETRY_SECONDS = 0.0
    settings.PRIORS_FETCH_MAX_ATTEMPTS = 2
    settings.PRIORS_PACS_TIMEOUT_SECONDS = 3.0
    facility = _pacs_for(facility_a, ae_title=pacs.ae_title, port=pacs.dicom_port)
    pacs.modality_add(
        "telerad", ae_title=settings.DICOM_PRIORS_AE_TITLE, host="127.0.0.1", port=listener.port
    )
    large = _spec("CT", "CHEST", "CT CHEST", "BIG1")
    pacs.load(write_prior(large, tmp_path / "big", study_date=years_ago(1), count=300))
    current = _current(facility)

    # Kill Orthanc once part of the prior has arrived.
    def kill_midway() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _stored_files(listener) < 20:
            time.sleep(0.02)
        pacs.kill()

    killer = threading.Thread(target=kill_midway)
    killer.start()
    studies_mark_ready(quiet_seconds=0)
    killer.join()

    arrived = _stored_files(listener)
    assert 20 <= arrived < 300, arrived
    fetch = PriorFetch.objects.get(study=current)
    assert fetch.status == "retrieving" and fetch.attempts == 1
    assert "aborted" in fetch.last_error or "did not answer" in fetch.last_error, fetch.last_error
    row = PriorStudy.objects.get(current=current)
    assert row.status == "pending" and row.reason == fetch.last_error
    current.refresh_from_db()
    assert current.status == "ready" and current.priors_hold_until is not None

    # The retry (the sweep finds it due) meets a dead PACS and gives up: the last
    # attempt fails the prior with the reason.
    assert prior_fetches_sweep() == 1
    fetch.refresh_from_db()
    assert (fetch.status, fetch.attempts) == ("failed", 2)
    row.refresh_from_db()
    assert row.status == "failed" and "gave up after 2 attempts" in row.reason
    # Giving up released the hold: the study is offered without waiting further.
    current.refresh_from_db()
    assert current.priors_hold_until is None
    assert current.status == "offered"


def test_a_pacs_down_from_the_start_is_retried_with_back_off_and_the_wait_is_bounded(
    listener, facility_a, routable, settings
):
    settings.PRIORS_WAIT_SECONDS = 2.0
    settings.PRIORS_RETRY_SECONDS = 0.5
    settings.PRIORS_FETCH_MAX_ATTEMPTS = 4
    settings.PRIORS_PACS_TIMEOUT_SECONDS = 2.0
    facility = _pacs_for(facility_a, ae_title="DOWN_PACS", port=free_port())  # nobody listens
    current = _current(facility)

    studies_mark_ready(quiet_seconds=0)
    fetch = PriorFetch.objects.get(study=current)
    assert (fetch.status, fetch.attempts) == ("querying", 1)
    assert fetch.last_error
    first_retry = fetch.next_attempt_at
    assert first_retry is not None
    # A retry that is not due yet is left alone, however often it is asked.
    assert study_priors_fetch(study_id=current.pk) == ""
    fetch.refresh_from_db()
    assert fetch.attempts == 1

    # Back-off: each wait doubles (0.5 s, 1 s, ...).
    failed_at = timezone.now()
    gaps = []
    while fetch.attempts < 3:
        while timezone.now() < fetch.next_attempt_at:
            time.sleep(0.05)
        prior_fetches_sweep()
        fetch.refresh_from_db()
        gaps.append((fetch.next_attempt_at - timezone.now()).total_seconds())
    assert 0.5 < gaps[0] <= 1.0 + 0.1 and 1.0 < gaps[1] <= 2.0 + 0.1, gaps
    assert failed_at < fetch.next_attempt_at

    # The hold passes whatever the PACS does: the routing sweep offers the study.
    current.refresh_from_db()
    assert current.priors_hold_until is not None
    while timezone.now() <= current.priors_hold_until:
        time.sleep(0.05)
    routing_sweep()
    current.refresh_from_db()
    assert current.status == "offered"
    assert PriorFetch.objects.get(study=current).status == "querying"  # still trying

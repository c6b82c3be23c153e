"""Admission applies at once: an AE title added or removed through the API, or a
facility's PACS, is answered accordingly by the running listener on the next
association (no cache to wait for)."""

from __future__ import annotations

import time

import pytest
from pydicom import dcmread

from ingest.synthetic import StudySpec, write_series
from network.models import Facility
from studies.models import Study
from tests.ingest.dcmtk import echoscu, storescu

pytestmark = pytest.mark.worker


def _patch(api, user, facility, body):
    response = api(user).patch(f"/api/v1/facilities/{facility.pk}/", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_an_ae_title_added_through_the_api_is_admitted_on_the_next_association(
    dicom_listener, facility_a, group_admin, api
):
    assert echoscu(dicom_listener.port, aet="FAC_A").returncode == 0
    refused = echoscu(dicom_listener.port, aet="NEW_CT")
    assert refused.returncode != 0
    _patch(api, group_admin, facility_a, {"ae_titles": ["FAC_A", "NEW_CT"]})
    ok = echoscu(dicom_listener.port, aet="NEW_CT")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    _patch(api, group_admin, facility_a, {"ae_titles": ["FAC_A"]})
    assert echoscu(dicom_listener.port, aet="NEW_CT").returncode != 0


def test_a_facility_pacs_is_admitted_and_what_it_sends_to_the_priors_title_is_a_prior(
    dicom_listener, facility_a, facility_b, group_admin, api, tmp_path, settings
):
    assert echoscu(dicom_listener.port, aet="PACS_A").returncode != 0
    body = _patch(
        api,
        group_admin,
        facility_a,
        {"pacs": {"ae_title": "PACS_A", "host": "127.0.0.1", "port": 104}},
    )
    assert body["pacs"] == {"ae_title": "PACS_A", "host": "127.0.0.1", "port": 104}
    assert echoscu(dicom_listener.port, aet="PACS_A").returncode == 0
    # The priors AE title is answered (and only the known called titles are).
    assert echoscu(dicom_listener.port, aet="PACS_A", aec="TELERAD_PRIORS").returncode == 0
    assert echoscu(dicom_listener.port, aet="PACS_A", aec="SOMEONE_ELSE").returncode != 0

    prior = write_series(StudySpec(patient_id="ADM-1"), tmp_path / "prior", count=2)
    current = write_series(StudySpec(patient_id="ADM-1"), tmp_path / "current", count=1)
    sent = storescu(dicom_listener.port, prior, aet="PACS_A", aec="TELERAD_PRIORS")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    sent = storescu(dicom_listener.port, current, aet="PACS_A")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    uid = dcmread(prior[0], stop_before_pixels=True).StudyInstanceUID
    filed = Study.objects.get(study_instance_uid=uid)
    assert filed.is_prior and filed.facility == facility_a
    assert filed.patient_record is not None
    other = Study.objects.get(
        study_instance_uid=dcmread(current[0], stop_before_pixels=True).StudyInstanceUID
    )
    assert not other.is_prior and other.patient_record == filed.patient_record

    # Removed: refused at once.
    body = _patch(api, group_admin, facility_a, {"pacs": None})
    assert body["pacs"] is None
    assert Facility.objects.get(pk=facility_a.pk).pacs_port is None
    assert echoscu(dicom_listener.port, aet="PACS_A").returncode != 0


def test_pacs_validation(facility_a, facility_b, group_admin, api):
    def patch(pacs):
        return api(group_admin).patch(
            f"/api/v1/facilities/{facility_a.pk}/", {"pacs": pacs}, format="json"
        )

    bad = [
        {"ae_title": "", "host": "pacs.example.org", "port": 104},
        {"ae_title": "X" * 17, "host": "pacs.example.org", "port": 104},
        {"ae_title": "PACS", "host": "not a host!", "port": 104},
        {"ae_title": "PACS", "host": "pacs.example.org", "port": 0},
        {"ae_title": "PACS", "host": "pacs.example.org", "port": 65536},
        {"ae_title": "PACS", "host": "pacs.example.org"},
        # Another facility's own AE title: the gateway could not tell them apart.
        {"ae_title": "FAC_B", "host": "pacs.example.org", "port": 104},
    ]
    for pacs in bad:
        response = patch(pacs)
        assert response.status_code == 400, (pacs, response.content)
    for host in ("pacs.example.org", "10.1.2.3", "::1", "pacs"):
        response = patch({"ae_title": "PACS", "host": host, "port": 11112})
        assert response.status_code == 200, (host, response.content)
    assert patch({}).json()["pacs"] is None


def test_reading_admission_per_association_is_cheap(facility_a):
    """The price of reading admission from the database for every association
    (instead of a cache that made changes wait 15 s): one indexed query."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from ingest.listener import facility_admission

    with CaptureQueriesContext(connection) as queries:
        assert facility_admission(calling_ae="FAC_A", address="127.0.0.1") == facility_a
    assert len(queries) == 1
    start = time.perf_counter()
    for _ in range(200):
        facility_admission(calling_ae="FAC_A", address="127.0.0.1")
    per_association = (time.perf_counter() - start) / 200
    print(f"admission read: {per_association * 1e3:.3f} ms per association")
    assert per_association < 0.02

"""The DICOM gateway against a real sender: dcmtk's echoscu and storescu."""

from __future__ import annotations

import hashlib

import psycopg
import pytest
from django.db import connection
from psycopg import sql
from pydicom import dcmread
from pydicom.dataset import Dataset

from audit.models import AuditEvent
from ingest.models import QuarantinedObject
from ingest.synthetic import StudySpec, write_series
from network.models import Priority
from studies.models import Instance, Series, Study
from tests import factories as f
from tests.ingest.dcmtk import dataset_bytes, echoscu, storescu

pytestmark = pytest.mark.worker


@pytest.fixture
def facility(transactional_db):
    return f.FacilityFactory(name="Gateway Hospital", ae_titles=["GW_CT", "GW_MR"])


def _stored_path(listener, path):
    ds = dcmread(path, stop_before_pixels=True)
    key = Instance.objects.get(sop_instance_uid=ds.SOPInstanceUID).storage_key
    return listener.storage_root.joinpath(*key.split("/"))


def test_echo_from_a_facility_is_answered_and_a_stranger_is_rejected(dicom_listener, facility):
    ok = echoscu(dicom_listener.port, aet="GW_CT")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    refused = echoscu(dicom_listener.port, aet="STRANGER")
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stdout + refused.stderr
    assert "belongs to no facility" in dicom_listener.log()


def test_an_inactive_facility_is_rejected(dicom_listener, facility):
    type(facility).objects.filter(pk=facility.pk).update(is_active=False)
    assert echoscu(dicom_listener.port, aet="GW_CT").returncode != 0


def test_an_address_outside_the_allow_list_is_rejected(dicom_listener, facility):
    type(facility).objects.filter(pk=facility.pk).update(dicom_allowed_networks=["10.9.0.0/16"])
    assert echoscu(dicom_listener.port, aet="GW_CT").returncode != 0
    assert "allow-list" in dicom_listener.log()


def test_studies_arrive_complete_with_their_metadata(dicom_listener, facility, tmp_path):
    ct = StudySpec(
        modality="CT",
        body_part="HEAD",
        description="CT HEAD WO CONTRAST",
        procedure_code="70450",
        patient_id="GW-1",
        patient_name="DOE^JOHN",
        accession="GWACC1",
        priority="STAT",
    )
    mr = StudySpec(
        modality="MR",
        body_part="KNEE",
        description="MRI KNEE WO CONTRAST",
        procedure_code="73721",
        patient_id="GW-2",
        accession="GWACC2",
    )
    cr = StudySpec(
        modality="CR",
        body_part="CHEST",
        description="XR CHEST 1 VIEW",
        patient_id="GW-3",
        accession="GWACC3",
        priority="HIGH",
    )
    us = StudySpec(
        modality="US",
        body_part="ABDOMEN",
        description="US ABDOMEN",
        patient_id="GW-4",
        accession="GWACC4",
    )
    files = {
        "ct": write_series(ct, tmp_path / "ct", count=40),
        "mr": write_series(mr, tmp_path / "mr", count=20),
        "cr": write_series(cr, tmp_path / "cr", count=1),
        "us": write_series(us, tmp_path / "us", count=3),
    }
    for aet, key in (("GW_CT", "ct"), ("GW_MR", "mr"), ("GW_CT", "cr"), ("GW_CT", "us")):
        result = storescu(dicom_listener.port, files[key], aet=aet)
        assert result.returncode == 0, result.stdout + result.stderr

    study = Study.objects.get(study_instance_uid=ct.study_uid)
    assert study.facility == facility
    assert study.status == "receiving"
    assert (study.modality, study.body_part, study.procedure_code) == ("CT", "HEAD", "70450")
    assert (study.patient_id, study.patient_name, study.accession_number) == (
        "GW-1",
        "DOE^JOHN",
        "GWACC1",
    )
    assert study.priority == Priority.STAT
    assert study.patient_jurisdiction == facility.jurisdiction
    assert Study.objects.get(study_instance_uid=cr.study_uid).priority == Priority.URGENT
    # No priority in the object: the facility's default.
    assert Study.objects.get(study_instance_uid=mr.study_uid).priority == Priority.ROUTINE
    counts = {
        s.study_instance_uid: Instance.objects.filter(series__study=s).count()
        for s in Study.objects.filter(facility=facility)
    }
    assert counts == {ct.study_uid: 40, mr.study_uid: 20, cr.study_uid: 1, us.study_uid: 3}

    # Every object is stored as received: the dataset bytes are identical.
    for path in [p for group in files.values() for p in group]:
        stored = _stored_path(dicom_listener, path)
        assert dataset_bytes(stored) == dataset_bytes(path)
        row = Instance.objects.get(
            sop_instance_uid=dcmread(path, stop_before_pixels=True).SOPInstanceUID
        )
        assert row.sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
    staging = dicom_listener.storage_root / ".staging"  # a folder per listener process
    assert not [p for p in staging.rglob("*") if p.is_file()]


def test_a_resend_is_idempotent_and_a_changed_resend_is_a_new_version(
    dicom_listener, facility, tmp_path
):
    spec = StudySpec(patient_id="GW-9")
    paths = write_series(spec, tmp_path / "s", count=5)
    assert storescu(dicom_listener.port, paths, aet="GW_CT").returncode == 0
    assert storescu(dicom_listener.port, paths, aet="GW_CT").returncode == 0
    assert Instance.objects.count() == 5
    assert Series.objects.count() == 1
    stored_files = list((dicom_listener.storage_root / "studies").rglob("*.dcm"))
    assert len(stored_files) == 5
    assert set(Instance.objects.values_list("replaced_count", flat=True)) == {0}

    # Same SOP Instance UID, same facility and series, different pixels: the newest
    # is the current version, the first is kept beside it (never overwritten).
    first_file = _stored_path(dicom_listener, paths[0])
    first_bytes = first_file.read_bytes()
    ds = dcmread(paths[0])
    ds.PixelData = bytes(len(ds.PixelData))
    changed = tmp_path / "changed.dcm"
    ds.save_as(changed, enforce_file_format=True)
    assert storescu(dicom_listener.port, [changed], aet="GW_CT").returncode == 0
    row = Instance.objects.get(sop_instance_uid=ds.SOPInstanceUID)
    assert row.replaced_count == 1 and row.replaced_at is not None
    assert dataset_bytes(_stored_path(dicom_listener, changed)) == dataset_bytes(changed)
    assert first_file.read_bytes() == first_bytes
    (version,) = row.versions.all()
    assert version.storage_key != row.storage_key
    assert dicom_listener.storage_root.joinpath(*version.storage_key.split("/")) == first_file
    assert AuditEvent.objects.filter(
        object_type="studies.instance", object_id=str(row.pk), detail__has_key="new_version"
    ).exists()
    assert Instance.objects.count() == 5


def _send_raw(port: int, aet: str, sop_class: str, sop_instance: str, payload: bytes) -> int:
    """Send bytes as a C-STORE dataset without any parsing (a misbehaving peer)."""
    import tempfile

    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info
    from pynetdicom import AE, _config

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    with tempfile.NamedTemporaryFile(suffix=".dcm", delete=False) as fh:
        fh.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fh, meta)
        fh.write(payload)
        name = fh.name
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        ae = AE(ae_title=aet)
        ae.add_requested_context(sop_class, "1.2.840.10008.1.2.1")
        assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
        assert assoc.is_established
        status = assoc.send_c_store(name)
        assoc.release()
        return int(status.Status)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False


def test_garbage_and_uidless_objects_are_quarantined_and_the_listener_keeps_serving(
    dicom_listener, facility, tmp_path
):
    ct_class = "1.2.840.10008.5.1.4.1.1.2"
    garbage_status = _send_raw(
        dicom_listener.port, "GW_CT", ct_class, "1.2.3.4.5", b"\xde\xad\xbe\xef" * 1000
    )
    assert garbage_status == 0xC210

    # A well-formed object without a Study Instance UID.
    ds = Dataset()
    ds.SOPClassUID = ct_class
    ds.SOPInstanceUID = "1.2.3.4.6"
    ds.Modality = "CT"
    ds.PatientID = "NOUID"
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    uidless_status = _send_raw(
        dicom_listener.port, "GW_CT", ct_class, "1.2.3.4.6", buffer.getvalue()
    )
    assert uidless_status == 0xC220  # a value refused: the identifying UID is missing

    rows = {q.sop_instance_uid: q for q in QuarantinedObject.objects.all()}
    assert set(rows) == {"1.2.3.4.5", "1.2.3.4.6"}
    assert "missing StudyInstanceUID" in rows["1.2.3.4.6"].reason
    for row in rows.values():
        assert row.calling_ae == "GW_CT" and row.facility == facility
        kept = dicom_listener.storage_root.joinpath(*row.storage_key.split("/"))
        assert hashlib.sha256(kept.read_bytes()).hexdigest() == row.sha256
    assert not Study.objects.exists()

    # ...and the next association is served normally.
    paths = write_series(StudySpec(), tmp_path / "ok", count=2)
    assert storescu(dicom_listener.port, paths, aet="GW_CT").returncode == 0
    assert Instance.objects.count() == 2


@pytest.mark.postgres
def test_a_database_outage_answers_out_of_resources_and_the_retry_is_stored(
    dicom_listener, facility, tmp_path
):
    first, second = write_series(StudySpec(), tmp_path / "s", count=2)
    assert storescu(dicom_listener.port, [first], aet="GW_CT").returncode == 0
    s = connection.settings_dict
    # The outage is made from the server's side, on a maintenance connection: no
    # new connections to the test database, and the listener's own is cut.
    admin = psycopg.connect(
        host=s["HOST"],
        port=s["PORT"] or 5432,
        user=s["USER"],
        password=s["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )
    try:
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(s["NAME"]))
        )
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'teleradiology-dicom-listener'"
        )
        refused = storescu(dicom_listener.port, [second], aet="GW_CT")
        output = refused.stdout + refused.stderr
        assert "Received Store Response (Refused: OutOfResources)" in output, output
    finally:
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(s["NAME"]))
        )
        admin.close()
    assert not Instance.objects.filter(
        sop_instance_uid=dcmread(second, stop_before_pixels=True).SOPInstanceUID
    ).exists()
    retry = storescu(dicom_listener.port, [second], aet="GW_CT")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert Instance.objects.count() == 2


def test_an_oversized_pdu_is_cut_off_and_the_listener_keeps_serving(dicom_listener, facility):
    import socket
    import struct

    # An A-ASSOCIATE-RQ header announcing a 4 GB PDU, then a trickle of bytes: a
    # listener that buffered what was announced would try to hold 4 GB.
    with socket.create_connection(("127.0.0.1", dicom_listener.port), timeout=10) as sock:
        sock.sendall(struct.pack(">BBL", 0x01, 0x00, 0xFFFFFFF0) + b"\x00" * 4096)
        sock.settimeout(10)
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
    assert closed
    assert "announced a" in dicom_listener.log()
    assert echoscu(dicom_listener.port, aet="GW_CT").returncode == 0


def test_tls_when_configured(transactional_db, facility, tmp_path):
    import subprocess

    from tests.ingest.dcmtk import ECHOSCU, ENV
    from tests.processes import start_listener, stop_listener

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    from tests.tools import program

    subprocess.run(
        [
            program("/usr/bin/openssl"),
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    listener = start_listener(tmp_path, DICOM_TLS_CERT=str(cert), DICOM_TLS_KEY=str(key))
    try:

        def echo(*tls_args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    program(ECHOSCU),
                    *tls_args,
                    "-aet",
                    "GW_CT",
                    "-aec",
                    "TELERAD",
                    "127.0.0.1",
                    str(listener.port),
                ],
                env=ENV,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        secure = echo("+tla", "+cf", str(cert))
        assert secure.returncode == 0, secure.stdout + secure.stderr
        assert echo().returncode != 0  # plain TCP is not served on a TLS port
    finally:
        stop_listener(listener)

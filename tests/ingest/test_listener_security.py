"""The listener process as an operator meets it: whom it answers (called AE title),
where it listens, how its database connections are named, and what a killed
listener leaves behind."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from ingest.synthetic import StudySpec, make_instance
from tests import factories as f
from tests.ingest.dcmtk import echoscu
from tests.ingest.fuzz.sender import p_data, store_request
from tests.processes import ROOT, Listener, free_port, start_listener, stop_listener

pytestmark = pytest.mark.worker

CALLING_AE = "SEC_CT"
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


@pytest.fixture
def facility(transactional_db: Any) -> Any:
    return f.FacilityFactory(name="Secure Hospital", ae_titles=[CALLING_AE])  # type: ignore[no-untyped-call]


def test_a_wrong_called_ae_title_is_rejected_with_the_dicom_reason(
    facility: Any, tmp_path: Path
) -> None:
    listener = start_listener(tmp_path, DICOM_AE_TITLE_ALIASES="OLD_TELERAD,PACS2")
    try:
        assert echoscu(listener.port, aet=CALLING_AE).returncode == 0
        alias = echoscu(listener.port, aet=CALLING_AE, aec="OLD_TELERAD")
        assert alias.returncode == 0, alias.stdout + alias.stderr

        wrong = echoscu(listener.port, aet=CALLING_AE, aec="WRONG")
        assert wrong.returncode != 0
        assert "Called AE Title Not Recognized" in wrong.stdout + wrong.stderr

        # The A-ASSOCIATE-RJ as PS3.8 defines it: rejected-permanent (1), by the
        # service user (1), "called AE title not recognised" (7).
        ae = AE(ae_title=CALLING_AE)
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", listener.port, ae_title="ANY-SCP")
        assert assoc.is_rejected
        rejection = assoc.acceptor.primitive
        assert rejection is not None
        assert (rejection.result, rejection.result_source, rejection.diagnostic) == (1, 1, 7)
        # Even from a calling AE title no facility has.
        stranger = AE(ae_title="STRANGER")
        stranger.add_requested_context(Verification)
        assert stranger.associate("127.0.0.1", listener.port, ae_title="WRONG").is_rejected
        assert "called AE title 'WRONG' is not OLD_TELERAD or PACS2 or TELERAD" in listener.log()
    finally:
        stop_listener(listener)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses listening on ``port`` (Linux /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # LISTEN
                found.add(address)
    return found


def test_by_default_the_listener_binds_loopback_only(transactional_db: Any, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DICOM_LISTEN_HOST"}
    log = tmp_path / "listener.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "dicom_listener", "--port", str(port)],
            cwd=ROOT,
            env={**env, "DICOM_STORAGE_ROOT": str(tmp_path / "dicom")},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not _listening_addresses(port) and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing else
        assert f"on 127.0.0.1:{port}" in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_production_refuses_to_start_a_listener_on_an_unnamed_interface(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DICOM_LISTEN_HOST"}
    result = subprocess.run(
        [sys.executable, "manage.py", "dicom_listener", "--port", str(free_port())],
        cwd=ROOT,
        env={
            **env,
            "DJANGO_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(60),
            "ALLOWED_HOSTS": "telerad.example.org",
            "DATABASE_URL": "postgres://u@db/x",
            "REDIS_URL": "redis://cache:6379/0",
            "DICOM_STORAGE_ROOT": str(tmp_path / "dicom"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DICOM_LISTEN_HOST" in result.stderr, result.stderr


@pytest.mark.postgres
def test_the_listeners_database_connections_carry_its_application_name(
    dicom_listener: Listener, facility: Any
) -> None:
    ae = AE(ae_title=CALLING_AE)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", dicom_listener.port, ae_title="TELERAD")
    assert assoc.is_established  # admitted: the facility was read from the database
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s",
                ["teleradiology-dicom-listener"],
            )
            (named,) = cursor.fetchone()
        assert named >= 1
    finally:
        assoc.release()


def test_what_a_killed_listener_was_receiving_is_swept_when_a_listener_starts(
    facility: Any, tmp_path: Path
) -> None:
    listener = start_listener(tmp_path)
    staging = listener.storage_root / ".staging"
    ds = make_instance(StudySpec(), series_uid=str(generate_uid()), number=1)
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    data = buffer.getvalue()

    ae = AE(ae_title=CALLING_AE)
    ae.add_requested_context(CT, EXPLICIT)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="TELERAD")
    assert assoc.is_established
    # Killed with our data unread, the listener's end answers with a reset: pynetdicom's
    # close then fails at shutdown() and leaves the socket open (it would be closed,
    # with a ResourceWarning, whenever the garbage collector found it), so close it here.
    raw_socket = assoc.dul.socket.socket if assoc.dul.socket else None
    try:
        context_id = assoc.accepted_contexts[0].context_id
        max_pdu = int(assoc.acceptor.maximum_length or 0)
        command = store_request(message_id=1, sop_class=CT, sop_instance=str(ds.SOPInstanceUID))
        pdus = list(p_data(context_id, command, data, max_pdu))
        assert len(pdus) > 2  # the command, then the data set in pieces
        for primitive in pdus[:-1]:  # all but the last piece: a transfer in progress
            assoc.dul.send_pdu(primitive)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            partial = [p for p in staging.rglob("*") if p.is_file() and p.stat().st_size]
            if partial:
                break
            time.sleep(0.05)
        assert partial, "the listener never staged the incoming data set"
        listener.process.send_signal(signal.SIGKILL)
        listener.process.wait(timeout=20)
    finally:
        assoc.abort()
        if raw_socket is not None:
            raw_socket.close()
    assert all(p.exists() for p in partial)  # killed: nothing removed them

    restarted = start_listener(tmp_path)  # same storage root
    try:
        assert not [p for p in partial if p.exists()]
        assert not [p for p in staging.rglob("*") if p.is_file()]
        assert "removed 1 staged file(s) left by stopped listeners" in restarted.log()
    finally:
        stop_listener(restarted)

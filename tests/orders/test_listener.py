"""The HL7 listener as a real process, against outside senders: python-hl7's
``MLLPClient`` and ``mllp_send`` script, and plain sockets."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orders.models import Hl7Message
from studies.models import Order, Patient
from tests import factories as f
from tests.orders.listener import (
    CR,
    EB,
    SB,
    ack_code,
    parse_ack,
    read_frames,
    send,
    start_hl7_listener,
    stop_hl7_listener,
)
from tests.orders.samples import adt_a08, adt_a40, omi, orm

pytestmark = pytest.mark.worker


@pytest.fixture
def hl7_listener(transactional_db, tmp_path):
    listener = start_hl7_listener(tmp_path)
    try:
        yield listener
    finally:
        stop_hl7_listener(listener)


@pytest.fixture
def facility(transactional_db):
    return f.FacilityFactory(name="St Mary", hl7_sending_facility="STMARY")


def _wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_every_message_type_is_accepted_and_acknowledged(hl7_listener, facility):
    sent = {
        "orm-2.3": orm(control="C1", accession="ACC23", version="2.3"),
        "orm-2.5.1": orm(control="C2", accession="ACC251"),
        "orm-2.4": orm(control="C3", accession="ACC24", version="2.4", patient_id="PID101"),
        "omi": omi(control="C4", accession="ACCOMI"),
        "adt-a08": adt_a08(control="C5"),
        "adt-a40": adt_a40(control="C6", survivor="PID100", prior="PID101"),
    }
    for name, message in sent.items():
        ack = send(hl7_listener.port, message)
        assert ack_code(ack) == "AA", (name, str(ack))
        msa = ack.segment("MSA")
        assert str(msa[2]) == message.split("|", 10)[9]  # MSA-2 echoes MSH-10
        header = ack.segment("MSH")
        # Sender and receiver swapped: the ACK goes back to RIS at STMARY.
        assert (str(header[5]), str(header[6])) == ("RIS", "STMARY")
        assert str(header[9]).startswith("ACK")
    rows = {m.control_id: m for m in Hl7Message.objects.all()}
    assert set(rows) == {"C1", "C2", "C3", "C4", "C5", "C6"}
    assert {m.outcome for m in rows.values()} == {"AA"}
    assert all(m.facility_id == facility.pk and m.ack.startswith("MSH|") for m in rows.values())
    assert rows["C1"].version == "2.3" and rows["C4"].message_type == "OMI^O23"
    assert rows["C2"].raw == sent["orm-2.5.1"]
    assert set(Order.objects.values_list("accession_number", flat=True)) == {
        "ACC23",
        "ACC251",
        "ACC24",
        "ACCOMI",
    }
    # The merge made PID101 point at PID100.
    assert Patient.objects.get(patient_id="PID101").merged_into.patient_id == "PID100"
    assert hl7_listener.alive()


def test_a_repeated_control_id_is_acknowledged_again_and_applied_once(hl7_listener, facility):
    first = send(hl7_listener.port, orm(control="DUP1", accession="ACCD1"))
    # The same control id, sent again (a sender that missed our ACK), even changed.
    again = send(hl7_listener.port, orm(control="DUP1", accession="ACCD1"))
    changed = send(hl7_listener.port, orm(control="DUP1", accession="ACCD2"))
    assert [ack_code(a) for a in (first, again, changed)] == ["AA", "AA", "AA"]
    original, *repeats = Hl7Message.objects.order_by("id")
    assert original.duplicate_of is None and original.outcome == "AA"
    assert [r.duplicate_of_id for r in repeats] == [original.pk, original.pk]
    assert all("repeat of message" in r.summary for r in repeats)
    assert list(Order.objects.values_list("accession_number", flat=True)) == ["ACCD1"]


def test_the_same_control_id_from_another_facility_is_its_own(hl7_listener, facility):
    f.FacilityFactory(name="Other", hl7_sending_facility="OTHERH")
    assert ack_code(send(hl7_listener.port, orm(control="X1", accession="ACCX1"))) == "AA"
    other = orm(control="X1", accession="ACCX1", facility="OTHERH")
    assert ack_code(send(hl7_listener.port, other)) == "AA"
    assert Hl7Message.objects.filter(duplicate_of__isnull=True, outcome="AA").count() == 2
    assert Order.objects.count() == 2


@pytest.mark.postgres
def test_copies_sent_at_once_on_several_connections_are_applied_once(hl7_listener, facility):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers: PostgreSQL")
    message = orm(control="RACE1", accession="ACCR1")
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(lambda _: ack_code(send(hl7_listener.port, message)), range(6)))
    assert codes == ["AA"] * 6
    assert Hl7Message.objects.filter(control_id="RACE1", duplicate_of__isnull=True).count() == 1
    assert Hl7Message.objects.filter(control_id="RACE1").count() == 6
    assert Order.objects.filter(accession_number="ACCR1").count() == 1


def test_several_messages_on_one_connection_and_mllp_send(hl7_listener, facility, tmp_path):
    # python-hl7's command-line sender, as the README shows it: one file, two orders.
    path = tmp_path / "orders.hl7"
    text = orm(control="F1", accession="ACCF1") + "\n" + orm(control="F2", accession="ACCF2")
    path.write_text(text.replace("\r", "\n"))
    mllp_send = shutil.which("mllp_send", path=str(Path(sys.executable).parent))
    assert mllp_send is not None
    result = subprocess.run(
        [mllp_send, "--loose", "-f", str(path), "-p", str(hl7_listener.port), "127.0.0.1"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    acks = [parse_ack(line) for line in result.stdout.split(b"\n") if line.strip(b"\r\x0b\x1c")]
    assert [ack_code(a) for a in acks] == ["AA", "AA"]
    # A plain socket: two frames in one write, answered in order.
    with socket.create_connection(("127.0.0.1", hl7_listener.port)) as sock:
        wire = b"".join(
            SB + orm(control=c, accession=a).encode() + EB + CR
            for c, a in (("F3", "ACCF3"), ("F4", "ACCF4"))
        )
        sock.sendall(wire)
        answers = read_frames(sock, 2)
    assert [str(parse_ack(a).segment("MSA")[2]) for a in answers] == ["F3", "F4"]
    assert Order.objects.count() == 4


def test_admission_is_read_at_every_message(hl7_listener, facility):
    """A new HL7 id or allow-list applies to the next message (no cache)."""
    message = orm(control="N1", accession="ACCN1", facility="NEWID")
    assert ack_code(send(hl7_listener.port, message)) == "AR"
    type(facility).objects.filter(pk=facility.pk).update(hl7_sending_facility="NEWID")
    assert (
        ack_code(send(hl7_listener.port, orm(control="N2", accession="ACCN2", facility="NEWID")))
        == "AA"
    )
    type(facility).objects.filter(pk=facility.pk).update(hl7_allowed_networks=["10.0.0.0/8"])
    refused = send(hl7_listener.port, orm(control="N3", accession="ACCN3", facility="NEWID"))
    assert ack_code(refused) == "AR"
    assert "allow-list" in str(refused.segment("MSA")[3])
    type(facility).objects.filter(pk=facility.pk).update(hl7_allowed_networks=["127.0.0.0/8"])
    assert (
        ack_code(send(hl7_listener.port, orm(control="N4", accession="ACCN4", facility="NEWID")))
        == "AA"
    )
    type(facility).objects.filter(pk=facility.pk).update(is_active=False)
    assert (
        ack_code(send(hl7_listener.port, orm(control="N5", accession="ACCN5", facility="NEWID")))
        == "AR"
    )
    stored = dict(Hl7Message.objects.values_list("control_id", "outcome"))
    assert stored == {"N1": "AR", "N2": "AA", "N3": "AR", "N4": "AA", "N5": "AR"}
    # Refused for its address or state, the message is still filed under its facility.
    assert Hl7Message.objects.get(control_id="N3").facility_id == facility.pk
    assert Hl7Message.objects.get(control_id="N1").facility_id is None


def test_open_frames_timeouts_the_connection_cap_and_a_graceful_stop(
    transactional_db, facility, tmp_path
):
    listener = start_hl7_listener(tmp_path, HL7_READ_TIMEOUT_SECONDS="2", HL7_MAX_CONNECTIONS="3")
    try:
        port = listener.port
        # A frame that never ends is answered AR when the read timeout passes.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(SB + orm(control="T1", accession="ACCT1").encode()[:60])
            started = time.monotonic()
            answers = read_frames(sock, 1, timeout=15)
            assert 1.5 < time.monotonic() - started < 10
        assert ack_code(parse_ack(answers[0])) == "AR"
        row = Hl7Message.objects.get(control_id="")
        assert row.outcome == "AR" and "not ended" in row.error_text

        # A sender that hangs up mid-frame: the part is still kept, with the reason.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(SB + b"MSH|^~\\&|RIS|STMARY|TELERAD|TELERAD|2026")
        _wait_for(
            lambda: Hl7Message.objects.filter(error_text__contains="connection closed").exists()
        )

        # Three connections are served at once; a fourth is closed at once.
        # The server accepts connections in turn and counts each as it accepts it, so
        # the fourth is judged after the first three are counted.
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            with socket.create_connection(("127.0.0.1", port)) as extra:
                extra.settimeout(5)
                assert extra.recv(10) == b""
        finally:
            for sock in held:
                sock.close()
        _wait_for(lambda: _answers(port))

        # SIGTERM: a connection in the middle of nothing is closed, the process exits 0.
        idle = socket.create_connection(("127.0.0.1", port))
        try:
            listener.process.send_signal(signal.SIGTERM)
            assert listener.process.wait(timeout=15) == 0
        finally:
            idle.close()
        assert "HL7 listener stopped" in listener.log()
    finally:
        stop_hl7_listener(listener)


def test_several_listener_processes_share_the_port(transactional_db, facility, tmp_path):
    listener = start_hl7_listener(tmp_path, "--processes", "2")
    try:
        for n in range(4):
            ack = send(listener.port, orm(control=f"MP{n}", accession=f"ACCMP{n}"))
            assert ack_code(ack) == "AA"
        listener.process.send_signal(signal.SIGTERM)
        assert listener.process.wait(timeout=20) == 0
    finally:
        stop_hl7_listener(listener)
    assert Order.objects.filter(accession_number__startswith="ACCMP").count() == 4


def _answers(port: int) -> bool:
    try:
        return (
            ack_code(send(port, orm(control=f"P{time.monotonic_ns()}", accession="ACCP1"))) == "AA"
        )
    except OSError:
        return False


def test_tls_when_configured(transactional_db, facility, tmp_path):
    from tests.tools import program

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
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
    listener = start_hl7_listener(tmp_path, HL7_TLS_CERT=str(cert), HL7_TLS_KEY=str(key))
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        with (
            socket.create_connection(("127.0.0.1", listener.port)) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(SB + orm(control="TLS1", accession="ACCTLS").encode() + EB + CR)
            answers = read_frames(sock, 1)
        assert ack_code(parse_ack(answers[0])) == "AA"
        # Plain MLLP on the TLS port gets no HL7 answer.
        with socket.create_connection(("127.0.0.1", listener.port)) as sock:
            sock.sendall(SB + orm(control="PLAIN", accession="ACCPL").encode() + EB + CR)
            sock.settimeout(10)
            try:
                reply = sock.recv(100)
            except OSError:
                reply = b""
            assert b"MSA" not in reply
        assert not Hl7Message.objects.filter(control_id="PLAIN").exists()
        assert listener.alive()
    finally:
        stop_hl7_listener(listener)


def test_the_readme_order_is_accepted_by_mllp_send(hl7_listener, facility, tmp_path):
    """The README's "Sending an order" example, sent as it says."""
    from tests.processes import ROOT

    readme = (ROOT / "README.md").read_text()
    text = readme.split("cat > var/order.hl7 <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    path = tmp_path / "order.hl7"
    path.write_text(text + "\n")
    mllp_send = shutil.which("mllp_send", path=str(Path(sys.executable).parent))
    assert mllp_send is not None
    result = subprocess.run(
        [mllp_send, "--loose", "-f", str(path), "-p", str(hl7_listener.port), "127.0.0.1"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert b"MSA|AA|ORD0001" in result.stdout
    order = Order.objects.get(facility=facility, accession_number="DEMOACC2")
    assert order.reason_for_exam == "Headache after fall" and order.patient_class == "E"

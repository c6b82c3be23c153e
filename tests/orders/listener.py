"""The HL7 listener as a real process on the test database, and an outside sender.

The sender is python-hl7's ``MLLPClient`` (or a plain socket for broken framing):
it shares no code with the listener, and the ACKs are read with ``hl7.parse``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hl7
from hl7.client import MLLPClient

from tests.processes import ROOT, _stop, _wait_for_port, database_url, free_port

SB, EB, CR = b"\x0b", b"\x1c", b"\r"


@dataclass
class Hl7Listener:
    port: int
    process: subprocess.Popen[Any]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None


def start_hl7_listener(tmp_path: Path, *args: str, **env: str) -> Hl7Listener:
    """``manage.py hl7_listener`` on a free port, reading and writing the test database."""
    port = free_port()
    log_path = tmp_path / f"hl7-listener-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "hl7_listener",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": database_url(), "DB_CONN_MAX_AGE": "60", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, process, log_path)
    except Exception:
        _stop(process)
        raise
    return Hl7Listener(port, process, log_path)


def stop_hl7_listener(listener: Hl7Listener) -> None:
    from django.db import connection

    _stop(listener.process)
    connection.close()


def send(port: int, message: str | bytes, *, encoding: str = "utf-8") -> hl7.Message:
    """Send one message with python-hl7's MLLP client; its ACK, parsed by python-hl7."""
    with MLLPClient("127.0.0.1", port, encoding=encoding) as client:
        client.socket.settimeout(30)
        reply = client.send_message(message)
    return parse_ack(reply)


def parse_ack(reply: bytes) -> hl7.Message:
    text = reply.strip(SB + EB + CR + b"\n").decode("utf-8", errors="replace")
    assert text.startswith("MSH|"), reply
    return hl7.parse(text)


def ack_code(ack: hl7.Message) -> str:
    return str(ack.segment("MSA")[1])


def read_frames(sock: socket.socket, count: int, *, timeout: float = 30) -> list[bytes]:
    """Read ``count`` MLLP frames (the listener's answers) from a plain socket."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while data.count(EB + CR) < count and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return [part + EB + CR for part in data.split(EB + CR) if part.strip()]


def raw_exchange(port: int, wire: bytes, *, answers: int = 1, timeout: float = 30) -> list[bytes]:
    """Send bytes exactly as given on one connection; the framed answers read back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(wire)
        return read_frames(sock, answers, timeout=timeout)

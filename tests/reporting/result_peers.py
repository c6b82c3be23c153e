"""A facility's result receivers on the loopback, written from the standards alone (no
import of the app's framing, ACK builder or FHIR code), so the app's side is tested
against an independent peer:

- ``MllpPeer``: an HL7 v2 listener (MLLP: 0x0B ... 0x1C 0x0D) that answers each
  message with the next scripted MSA-1 (AA, AE, AR), hangs up ("close"), or waits
  for ``release`` before answering AR ("hold": for races);
- ``FhirPeer``: an HTTP server answering each POST with the next scripted status and
  a FHIR OperationOutcome.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from typing import Any

VT, FS_CR = b"\x0b", b"\x1c\x0d"


def _field(segment: str, index: int) -> str:
    fields = segment.split("|")
    return fields[index] if index < len(fields) else ""


def segments(message: str) -> dict[str, list[list[str]]]:
    """An ER7 message as {segment name: [fields of each occurrence]} (MSH-n is
    fields[n - 1], as MSH-1 is the separator itself; other segments' n is fields[n])."""
    found: dict[str, list[list[str]]] = {}
    for line in message.split("\r"):
        if line:
            found.setdefault(line[:3], []).append(line.split("|"))
    return found


class MllpPeer:
    """Bound at once (connections are refused until ``start``)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.received: list[str] = []
        self.answers: list[str] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.holding = threading.Semaphore(0)
        self.stopped = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            while FS_CR not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            text = data[data.index(VT) + 1 : data.index(FS_CR)].decode("utf-8")
            with self.lock:
                self.received.append(text)
                answer = self.answers.pop(0) if self.answers else "AA"
            if answer == "close":
                return
            if answer == "hold":
                self.holding.release()
                self.release.wait(timeout=30)
                answer = "AR"
            msh = text.split("\r", 1)[0]
            control_id = _field(msh, 9)
            note = {"AA": "", "AE": "Database busy", "AR": "Unknown patient"}[answer]
            ack = [
                f"MSH|^~\\&|RIS|FAC|{_field(msh, 2)}|{_field(msh, 3)}|20261207120000||"
                f"ACK^R01^ACK|A{control_id}|P|2.5.1",
                f"MSA|{answer}|{control_id}",
            ]
            if note:
                # MSA-3 left empty (deprecated in 2.5): the reason is in ERR-3 and ERR-8.
                ack.append(f"ERR|||207^Application internal error^HL70357|E||||{note}")
            conn.sendall(VT + ("\r".join(ack) + "\r").encode("utf-8") + FS_CR)

    def close(self) -> None:
        self.stopped.set()
        self.release.set()
        self.sock.close()
        for thread in self.threads:
            thread.join(timeout=10)


class FhirPeer:
    """Answers each POST with the next scripted (status, OperationOutcome text)."""

    def __init__(self, answers: list[tuple[int, str]]) -> None:
        self.answers = list(answers)
        self.received: list[dict[str, Any]] = []
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                peer.received.append(json.loads(body))
                status, text = peer.answers.pop(0) if peer.answers else (201, "")
                outcome = {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "information" if status < 300 else "error",
                            "code": "informational" if status < 300 else "processing",
                            "details": {"text": text or "Created"},
                        }
                    ],
                }
                payload = json.dumps(outcome).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                """No access log on stderr."""

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir/DiagnosticReport"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

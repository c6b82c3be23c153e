"""Smoke test of ``make demo`` itself, as a newcomer runs it (``make smoke``; CI runs it).

1. starts ``make demo`` exactly as the README says, in a session of its own;
2. waits for ``/healthz``;
3. runs the README's "Send a study" commands verbatim (read from the README, so the
   walk-through and this test cannot drift apart): writes a study with
   ``make_demo_dicom`` and sends it with dcmtk's storescu;
4. sees the study become ready, routed and offered, and finds it on an offered
   reader's worklist through the API (the way the README tells a reader to look);
5. runs the README's "Sending an order" commands (an HL7 order with python-hl7's
   ``mllp_send``, then its images), expects the ACK AA and the order on the study;
6. stops the demo with SIGINT, as Ctrl-C in a terminal does, and checks that no
   process of it is left and that its ports (8000, 11112, 2575) are free.

Exits non-zero, saying which step failed, and prints the demo's log tail.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASE = "http://127.0.0.1:8000"
PORTS = (8000, 11112, 2575, 4242, 8042)
PYTHON = str(ROOT / ".venv" / "bin" / "python")


class SmokeFailure(Exception):
    """A step of the smoke test failed; the message says which and why."""


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def session_processes(sid: int) -> list[str]:
    """Processes still in the demo's session (``ps``-like lines)."""
    left = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may contain spaces.
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[3]) == sid:
            pid = stat.parent.name
            try:
                cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                cmd = "?"
            left.append(f"{pid} {cmd.strip()}")
    return left


def get(path: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(BASE + path)  # noqa: S310 - our own loopback server
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None


def manage(*args: str) -> str:
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [PYTHON, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout


def token_for(username: str) -> str:
    # README: `manage.py api_token <user>` prints the token alone
    return manage("api_token", username).strip()


def readme_block(heading: str) -> str:
    """The first ```sh block after the paragraph that starts with ``heading``."""
    text = (ROOT / "README.md").read_text()
    start = text.index(heading)
    match = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    if match is None:
        raise SmokeFailure(f"README: no sh block after {heading!r}")
    return match.group(1)


def wait_for(what: str, seconds: float, probe: Any) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    raise SmokeFailure(f"timed out after {seconds:.0f} s waiting for {what}")


def step(text: str) -> None:
    print(f"smoke: {text}", flush=True)


def run(log_path: Path) -> None:
    for port in PORTS:
        if not port_free(port):
            raise SmokeFailure(f"port {port} is in use before the demo starts")

    step("make demo")
    log = log_path.open("w")
    demo = subprocess.Popen(
        ["make", "demo"],  # noqa: S607
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own session and process group, like a terminal's job
    )
    try:
        exercise(demo)
    finally:
        step("Ctrl-C (SIGINT to the demo's process group)")
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            left = session_processes(demo.pid)
            os.killpg(demo.pid, signal.SIGKILL)
            raise SmokeFailure(
                "make demo did not stop within 60 s of SIGINT: " + "; ".join(left)
            ) from None
        finally:
            log.close()
    # Children may take a moment after make itself has returned.
    deadline = time.monotonic() + 30
    while (left := session_processes(demo.pid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        for line in left:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        raise SmokeFailure("processes left after SIGINT: " + "; ".join(left))
    busy = [port for port in PORTS if not port_free(port)]
    if busy:
        raise SmokeFailure(f"ports still taken after SIGINT: {busy}")
    step(f"stopped cleanly: no process left, ports {', '.join(map(str, PORTS))} free")


def exercise(demo: subprocess.Popen[Any]) -> None:
    def healthy() -> bool:
        if demo.poll() is not None:
            raise SmokeFailure(f"make demo exited with {demo.returncode} before serving")
        return get("/healthz")[0] == 200

    wait_for("/healthz", 600, healthy)
    step("/healthz answers 200")

    # The DICOM listener is the last process to bind; the README sends right away.
    def dicom_up() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", 11112)) == 0

    wait_for("the DICOM listener on 11112", 60, dicom_up)

    step("the README's 'Send a study' commands")
    block = readme_block("**Send a study**")
    sent = subprocess.run(  # noqa: S603 - the README's own commands
        ["bash", "-euo", "pipefail", "-c", block],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if sent.returncode != 0:
        raise SmokeFailure(f"README's send commands failed:\n{sent.stdout}\n{sent.stderr}")
    accession = re.search(r"accession number: (\S+)", sent.stdout)
    if accession is None:
        raise SmokeFailure(f"make_demo_dicom printed no accession number:\n{sent.stdout}")
    step(f"sent study with accession {accession.group(1)}")

    admin = token_for("admin")

    def offered() -> dict[str, Any] | None:
        status, body = get(f"/api/v1/studies/?accession_number={accession.group(1)}", admin)
        if status != 200 or not body["results"]:
            return None
        study = body["results"][0]
        status, routing = get(f"/api/v1/studies/{study['id']}/routing/", admin)
        if status != 200 or study["status"] == "receiving":
            return None
        if routing["unroutable_reason"]:
            raise SmokeFailure(f"study {study['id']} unroutable: {routing['unroutable_reason']}")
        readers = [r for d in routing["decisions"] for r in d["offered_to"]]
        found = {"study": study["id"], "uid": study["study_instance_uid"], "readers": readers}
        return found if readers else None

    found = wait_for("the study to be offered", 120, offered)
    step(f"study {found['study']} offered to readers {found['readers']}")

    # St. Mary's PACS is the demo's Orthanc (Procfile `pacs`), holding a CT head of the
    # same patient from a year ago: it is retrieved before the offer (or, at worst,
    # while the study waits its bounded time for it).
    def prior_retrieved() -> list[dict[str, Any]] | None:
        status, body = get(f"/api/v1/studies/{found['study']}/priors/", admin)
        if status != 200:
            raise SmokeFailure(f"the study's priors answered {status}")
        retrieved = [p for p in body["priors"] if p["status"] == "retrieved"]
        return retrieved or None

    priors = wait_for("the demo patient's prior to be retrieved", 120, prior_retrieved)
    step(f"prior {priors[0]['study_instance_uid']} retrieved from the demo PACS")

    status, reader = get(f"/api/v1/radiologists/{found['readers'][0]}/", admin)
    if status != 200:
        raise SmokeFailure(f"cannot read radiologist {found['readers'][0]}: {status}")
    worklist_status, worklist = get("/api/v1/worklist/?page_size=200", token_for(reader["user"]))
    if worklist_status != 200:
        raise SmokeFailure(f"{reader['user']}'s worklist answered {worklist_status}")
    if found["study"] not in [row["id"] for row in worklist["results"]]:
        raise SmokeFailure(f"study {found['study']} is not on {reader['user']}'s worklist")
    step(f"study {found['study']} is on {reader['user']}'s worklist")

    # The reader can see its images over DICOMweb, as the viewer loads them.
    series_status, series = get(
        f"/dicomweb/studies/{found['uid']}/series", token_for(reader["user"])
    )
    if series_status != 200 or not series:
        raise SmokeFailure(f"DICOMweb series of study {found['uid']} answered {series_status}")
    first = series[0]["0020000E"]["Value"][0]
    meta_status, metadata = get(
        f"/dicomweb/studies/{found['uid']}/series/{first}/metadata", token_for(reader["user"])
    )
    if meta_status != 200 or not metadata or "00280010" not in metadata[0]:
        raise SmokeFailure(f"DICOMweb metadata of series {first} answered {meta_status}")
    step(f"{reader['user']} sees {len(metadata)} images of series {first} over DICOMweb")

    # The README's "Sending an order": an HL7 order sent with mllp_send before its
    # images is acknowledged AA, and the study sent after it carries its reason.
    def hl7_up() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", 2575)) == 0

    wait_for("the HL7 listener on 2575", 60, hl7_up)
    step("the README's 'Sending an order' commands")
    ordered = subprocess.run(  # noqa: S603 - the README's own commands
        ["bash", "-euo", "pipefail", "-c", readme_block("**Sending an order.**")],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if ordered.returncode != 0 or "MSA|AA|ORD0001" not in ordered.stdout:
        raise SmokeFailure(f"README's order commands failed:\n{ordered.stdout}\n{ordered.stderr}")
    step("order ORD0001 acknowledged AA")

    def with_order() -> dict[str, Any] | None:
        status, body = get("/api/v1/studies/?accession_number=DEMOACC2", admin)
        if status != 200 or not body["results"]:
            return None
        status, study = get(f"/api/v1/studies/{body['results'][0]['id']}/", admin)
        order = study.get("order") if status == 200 else None
        return study if order and order.get("reason_for_exam") else None

    study = wait_for("the ordered study with its order", 120, with_order)
    step(f"study {study['id']} carries its order: {study['order']['reason_for_exam']!r}")


def main() -> int:
    log_path = ROOT / "var" / "smoke-demo.log"
    log_path.parent.mkdir(exist_ok=True)
    try:
        run(log_path)
    except SmokeFailure as failure:
        print(f"smoke: FAILED: {failure}", file=sys.stderr)
        if log_path.exists():
            tail = log_path.read_text(errors="replace").splitlines()[-60:]
            print("--- make demo's log (last lines) ---", *tail, sep="\n", file=sys.stderr)
        return 1
    print("smoke: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The clients: what a viewer (OHIF) and a retrieving tool send to a DICOMweb
server, timed from the first byte sent to the last byte received, and the checks
that both servers answer the same bytes.

Every request carries the headers a browser adds to a viewer's requests
(``Accept-Encoding: gzip``), unless a measurement says otherwise."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import itertools
import json
import os
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import host
from bench.dicomweb.peers import Server
from bench.dicomweb.workload import Instance, Study
from bench.supervise import HOST

JSON = "application/dicom+json"
FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
BROWSER = {"Accept-Encoding": "gzip, deflate"}


class Client:
    """One keep-alive HTTP connection to a server (reopened when the server closes it)."""

    def __init__(self, server: Server, timeout: float = 120) -> None:
        self.server = server
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(HOST, server.port, timeout=timeout)
        self.reconnects = 0

    def request(self, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        try:
            self.conn.request(
                "GET", self.server.url(path), headers={**self.server.headers, **headers}
            )
            return self.conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # A keep-alive connection the server had closed (Orthanc keeps them 1 s).
            self.reopen()
            self.conn.request(
                "GET", self.server.url(path), headers={**self.server.headers, **headers}
            )
            return self.conn.getresponse()

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body as received)."""
        response = self.request(path, headers)
        body = response.read()
        self.after(response)
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body

    def after(self, response: http.client.HTTPResponse) -> None:
        if response.will_close:
            self.reopen()

    def reopen(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection(HOST, self.server.port, timeout=self.timeout)
        self.reconnects += 1

    def close(self) -> None:
        self.conn.close()


def decoded(headers: dict[str, str], body: bytes) -> bytes:
    encoding = headers.get("content-encoding", "").lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


def multipart_parts(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart/related body: (headers, content)."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise ValueError(f"no boundary in {content_type!r}")
    delimiter = b"--" + boundary.encode()
    parts = []
    for chunk in body.split(b"\r\n" + delimiter)[:-1]:
        if chunk.startswith(delimiter):
            chunk = chunk[len(delimiter) :]
        chunk = chunk.removeprefix(b"\r\n")
        head, _, content = chunk.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, content))
    return parts


class ServerError(RuntimeError):
    """A server answered something else than the request asked for."""


def _expect(status: int, what: str, server: Server, body: bytes) -> None:
    if status != 200:
        raise ServerError(f"{server.key}: {what} answered {status}: {body[:300]!r}")


# --- checks: both servers serve the same bytes ------------------------------------------


def pixel_data(path: Path) -> bytes:
    from pydicom import dcmread

    return bytes(dcmread(path).PixelData)


def check_study(server: Server, study: Study) -> dict[str, Any]:
    """The series the QIDO search finds, the metadata of the first series (one data
    set per instance, with the pixel data as a BulkDataURI), the first frame of three
    instances (the stored pixel bytes, exactly) and the whole study (every file
    byte-identical to the one sent)."""
    client = Client(server)
    facts: dict[str, Any] = {}
    try:
        status, headers, body = client.get(
            f"studies/{study.study_uid}/series", {"Accept": JSON, **BROWSER}
        )
        _expect(status, "QIDO series", server, body)
        series = json.loads(decoded(headers, body))
        found = {s["0020000E"]["Value"][0] for s in series}
        if found != {uid for uid, _ in study.series}:
            raise ServerError(f"{server.key}: QIDO found series {sorted(found)}")
        first_series = study.series[0][0]
        status, headers, body = client.get(
            f"studies/{study.study_uid}/series/{first_series}/metadata", {"Accept": JSON, **BROWSER}
        )
        _expect(status, "series metadata", server, body)
        data = json.loads(decoded(headers, body))
        if len(data) != study.per_series:
            raise ServerError(f"{server.key}: metadata of {len(data)} instances")
        pixel = data[0].get("7FE00010", {})
        if "BulkDataURI" not in pixel and "InlineBinary" not in pixel:
            raise ServerError(f"{server.key}: the metadata has no pixel data reference")
        facts["metadata"] = {
            "bytes": len(decoded(headers, body)),
            "wire_bytes": len(body),
            "content_encoding": headers.get("content-encoding", ""),
            "attributes_per_instance": len(data[0]),
        }
        picks = [
            study.instances[0],
            study.instances[len(study.instances) // 2],
            study.instances[-1],
        ]
        for inst in picks:
            status, headers, body = client.get(
                _frame_path(study, inst), {"Accept": FRAMES, **BROWSER}
            )
            _expect(status, "frames/1", server, body)
            parts = multipart_parts(headers.get("content-type", ""), decoded(headers, body))
            assert inst.path is not None  # noqa: S101 - kept for the check
            if len(parts) != 1 or parts[0][1] != pixel_data(inst.path):
                raise ServerError(f"{server.key}: frame 1 of {inst.sop_uid} differs from the file")
            facts["frame"] = {
                "content_type": headers.get("content-type", "").split(";")[0],
                "part_type": parts[0][0].get("content-type", ""),
                "content_encoding": headers.get("content-encoding", ""),
                "wire_bytes": len(body),
            }
        status, headers, body = client.get(
            f"studies/{study.study_uid}", {"Accept": DICOM, **BROWSER}
        )
        _expect(status, "retrieve study", server, body)
        parts = multipart_parts(headers.get("content-type", ""), decoded(headers, body))
        got = Counter(hashlib.sha256(content).hexdigest() for _, content in parts)
        want = Counter(i.sha256 for i in study.instances)
        if got != want:
            raise ServerError(
                f"{server.key}: the study retrieved ({len(parts)} parts) is not the "
                f"{len(study.instances)} files sent, byte for byte"
            )
        facts["retrieve"] = {
            "parts": len(parts),
            "content_encoding": headers.get("content-encoding", ""),
            "transfer_encoding": headers.get("transfer-encoding", ""),
        }
    finally:
        client.close()
    return facts


def _frame_path(study: Study, inst: Instance) -> str:
    return f"studies/{study.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}/frames/1"


# --- 1. time to first image ------------------------------------------------------------


def first_image(server: Server, study: Study) -> dict[str, float]:
    """What OHIF does to show a study's first image, in order, on one new keep-alive
    connection: QIDO the study's series, the WADO-RS metadata of the first series
    (by SeriesNumber), then frame 1 of its first instance (by InstanceNumber).  Each
    step's seconds (its response read whole and, for JSON, decoded and parsed, as the
    viewer must before the next step) and the total."""
    client = Client(server)
    try:
        t0 = time.perf_counter()
        status, headers, body = client.get(
            f"studies/{study.study_uid}/series", {"Accept": JSON, **BROWSER}
        )
        _expect(status, "QIDO series", server, body)
        series = json.loads(decoded(headers, body))
        first = min(series, key=lambda s: s.get("00200011", {}).get("Value", [0])[0])
        series_uid = first["0020000E"]["Value"][0]
        t1 = time.perf_counter()
        status, headers, body = client.get(
            f"studies/{study.study_uid}/series/{series_uid}/metadata", {"Accept": JSON, **BROWSER}
        )
        _expect(status, "series metadata", server, body)
        instances = json.loads(decoded(headers, body))
        inst = min(instances, key=lambda i: i.get("00200013", {}).get("Value", [0])[0])
        sop = inst["00080018"]["Value"][0]
        t2 = time.perf_counter()
        status, headers, body = client.get(
            f"studies/{study.study_uid}/series/{series_uid}/instances/{sop}/frames/1",
            {"Accept": FRAMES, **BROWSER},
        )
        _expect(status, "frames/1", server, body)
        t3 = time.perf_counter()
    finally:
        client.close()
    return {"qido": t1 - t0, "metadata": t2 - t1, "frame": t3 - t2, "total": t3 - t0}


# --- 2. retrieval throughput -------------------------------------------------------------


@dataclass
class Pass:
    seconds: float
    requests: int
    payload_bytes: int  # the frames' (or files') bytes the client asked for
    wire_bytes: int  # as received (compressed if the server compressed)
    server_cpu: float | None
    client_cpu: float | None
    reconnects: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "requests": self.requests,
            "payload_bytes": self.payload_bytes,
            "wire_bytes": self.wire_bytes,
            "server_cpu": self.server_cpu,
            "client_cpu": self.client_cpu,
            "reconnects": self.reconnects,
            "statuses": self.statuses,
            "per_second": self.requests / self.seconds,
            "mb_per_second": self.payload_bytes / self.seconds / 1e6,
        }


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def frames_pass(server: Server, study: Study, *, connections: int, gzip_ok: bool) -> Pass:
    """Every frame of the study (``frames/1`` of each instance), over ``connections``
    keep-alive connections taking the next instance as they finish one, as a viewer
    fills its image cache."""
    headers = {"Accept": FRAMES, **(BROWSER if gzip_ok else {})}
    paths = [_frame_path(study, inst) for inst in study.instances]
    counter = itertools.count()
    lock = threading.Lock()
    totals = {"wire": 0, "requests": 0, "reconnects": 0}
    statuses: Counter[str] = Counter()
    errors: list[BaseException] = []
    start = threading.Barrier(connections + 1)

    def worker() -> None:
        client = Client(server)
        wire = requests = 0
        seen: Counter[str] = Counter()
        try:
            start.wait()
            while True:
                with lock:
                    i = next(counter)
                if i >= len(paths):
                    break
                response = client.request(paths[i], headers)
                body = response.read()
                client.after(response)
                seen[str(response.status)] += 1
                wire += len(body)
                requests += 1
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
        finally:
            client.close()
            with lock:
                totals["wire"] += wire
                totals["requests"] += requests
                totals["reconnects"] += client.reconnects
                statuses.update(seen)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    cpu0, self0 = host.group_cpu_seconds(server.proc.pid), _self_cpu()
    start.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - t0
    cpu1, self1 = host.group_cpu_seconds(server.proc.pid), _self_cpu()
    if errors:
        raise ServerError(f"{server.key}: frames: {errors[0]!r}")
    return Pass(
        seconds=seconds,
        requests=totals["requests"],
        payload_bytes=study.frame_bytes,
        wire_bytes=totals["wire"],
        server_cpu=(cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
        client_cpu=self1 - self0,
        reconnects=totals["reconnects"],
        statuses=dict(statuses),
    )


def retrieve_pass(
    server: Server, study: Study, *, sampler: RssSampler | None = None, chunk: int = 1 << 20
) -> Pass:
    """``GET studies/{uid}`` (every instance, multipart/related application/dicom in
    the stored transfer syntax) on one connection, read as fast as it comes."""
    client = Client(server)
    wire = 0
    cpu0, self0 = host.group_cpu_seconds(server.proc.pid), _self_cpu()
    try:
        if sampler is not None:
            sampler.start()
        t0 = time.perf_counter()
        response = client.request(f"studies/{study.study_uid}", {"Accept": DICOM, **BROWSER})
        if response.status != 200:
            raise ServerError(f"{server.key}: retrieve answered {response.status}")
        while block := response.read(chunk):
            wire += len(block)
        seconds = time.perf_counter() - t0
    finally:
        if sampler is not None:
            sampler.stop()
        client.close()
    cpu1, self1 = host.group_cpu_seconds(server.proc.pid), _self_cpu()
    return Pass(
        seconds=seconds,
        requests=1,
        payload_bytes=study.bytes,
        wire_bytes=wire,
        server_cpu=(cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
        client_cpu=self1 - self0,
        statuses={"200": 1},
    )


# --- 3. QIDO ---------------------------------------------------------------------------


def qido_times(
    server: Server, patient_ids: list[str], *, n: int, warmup: int
) -> tuple[list[float], list[int]]:
    """``GET studies?PatientID=...`` on one keep-alive connection, rotating over the
    patients: seconds per request (to the last byte) and results per answer."""
    client = Client(server)
    times: list[float] = []
    found: list[int] = []
    try:
        for i in range(warmup + n):
            pid = patient_ids[i % len(patient_ids)]
            t0 = time.perf_counter()
            status, headers, body = client.get(
                f"studies?PatientID={pid}", {"Accept": JSON, **BROWSER}
            )
            elapsed = time.perf_counter() - t0
            _expect(status, "QIDO studies", server, body)
            if i >= warmup:
                times.append(elapsed)
                found.append(len(json.loads(decoded(headers, body))))
    finally:
        client.close()
    return times, found


# --- 4. memory ---------------------------------------------------------------------------


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class RssSampler:
    """The resident set size of some processes every ``interval`` seconds: before
    (when started) and the largest seen while running."""

    def __init__(self, pids: Iterable[int], interval: float = 0.005) -> None:
        self.pids = list(pids)
        self.interval = interval
        self.before: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> dict[int, int]:
        return {pid: kib for pid in self.pids if (kib := rss_kib(pid)) is not None}

    def start(self) -> None:
        self.before = self._read()
        self.peak = dict(self.before)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, kib in self._read().items():
                if kib > self.peak.get(pid, 0):
                    self.peak[pid] = kib
            self.samples += 1
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for pid, kib in self._read().items():
            self.peak[pid] = max(self.peak.get(pid, 0), kib)

    def growth(self) -> dict[str, Any]:
        """The largest growth of one process (KiB), with its before and peak."""
        rows = [(self.peak.get(pid, 0) - self.before.get(pid, 0), pid) for pid in self.before]
        grow, pid = max(rows) if rows else (0, 0)
        return {
            "growth_kib": grow,
            "before_kib": self.before.get(pid),
            "peak_kib": self.peak.get(pid),
            "processes": len(self.before),
            "samples": self.samples,
        }

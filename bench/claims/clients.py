"""The claims benchmark's clients (spawned processes; no Django in them) and the
double-assignment detector that reads their logs."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NS = 1_000_000_000


def sleep_until_ns(t: int) -> None:
    delay = (t - time.monotonic_ns()) / NS
    if delay > 0:
        time.sleep(delay)


# --- the double-assignment detector -------------------------------------------------


@dataclass(frozen=True)
class Hold:
    """One successful claim as a client logged it (monotonic ns, one clock for all
    processes on Linux)."""

    study: int
    reader: int
    claim_sent: int
    claim_received: int
    release_sent: int
    release_received: int
    release_status: str


def read_holds(folder: Path) -> list[Hold]:
    holds = []
    for path in sorted(folder.glob("client-*.log")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 7:
                continue
            study, reader, c0, c1, r0, r1 = (int(x) for x in parts[:6])
            holds.append(Hold(study, reader, c0, c1, r0, r1, release_status=parts[6]))
    return holds


def find_doubles(holds: Sequence[Hold]) -> dict[str, Any]:
    """Pairs of claims of one study by different readers that certainly overlapped.

    A reader certainly held a study from the moment the claim's answer arrived until
    it sent the release: the real grant happened somewhere between sending the claim
    and receiving the answer, the real release between sending the release and
    receiving its answer.  Two such certain intervals of one study that overlap
    cannot both be right, whatever the clocks' resolution or the scheduling delays;
    the converse (a double too short to show between a claim's answer and the next
    release) is what the naive control measures.
    """
    by_study: dict[int, list[Hold]] = defaultdict(list)
    for h in holds:
        by_study[h.study].append(h)
    pairs = 0
    studies = set()
    examples: list[str] = []
    for study, items in by_study.items():
        items.sort(key=lambda h: h.claim_received)
        active: list[Hold] = []
        for h in items:
            active = [a for a in active if a.release_sent > h.claim_received]
            for a in active:
                if a.reader != h.reader:
                    pairs += 1
                    studies.add(study)
                    if len(examples) < 3:
                        overlap = (min(a.release_sent, h.release_sent) - h.claim_received) / 1e6
                        examples.append(
                            f"study {study}: reader {a.reader} and reader {h.reader} "
                            f"both held it for {overlap:.2f} ms"
                        )
            active.append(h)
    return {"pairs": pairs, "studies": len(studies), "examples": examples}


# --- the clients ----------------------------------------------------------------------


def _api_client(spec: dict[str, Any]) -> Callable[[str, bytes | None], tuple[int, bytes]]:
    """A keep-alive HTTP/1.1 connection that reconnects when the server closed it."""
    headers = {
        "Authorization": f"Token {spec['token']}",
        "Content-Type": "application/json",
        # As a TLS-terminating proxy would say: production settings redirect plain HTTP.
        "X-Forwarded-Proto": "https",
    }
    state: dict[str, http.client.HTTPConnection] = {}

    def post(path: str, body: bytes | None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            conn = state.get("conn")
            if conn is None:
                conn = state["conn"] = http.client.HTTPConnection(
                    "127.0.0.1", spec["port"], timeout=120
                )
            try:
                conn.request("POST", path, body=body or b"", headers=headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                state.pop("conn", None)
                spec["reconnects"] = spec.get("reconnects", 0) + 1
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    return post


def client_main(spec: dict[str, Any], ready: Any, go: Any, start: Any) -> None:
    """One client: claim, (hold,) release, until the phase ends; write its own log."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    out = Path(spec["folder"])
    kind = spec["kind"]
    reader = spec["reader"]
    hold_s = spec["hold_ms"] / 1000
    counts: Counter[str] = Counter()
    claim_latency: list[int] = []
    release_latency: list[int] = []
    error_examples: list[str] = []
    result: dict[str, Any] = {"index": spec["index"], "reader": reader}

    conn: Any = None
    post: Callable[[str, bytes | None], tuple[int, bytes]] | None = None
    release_body = json.dumps({"reason": "benchmark: back to the worklist"}).encode()
    sql: dict[str, str] = spec["sql"]
    if kind == "api":
        post = _api_client(spec)
    else:
        import psycopg

        conn = psycopg.connect(spec["dsn"], autocommit=True)

    def claim() -> tuple[int | None, str]:
        """The study claimed (or None) and an outcome: claimed, nothing, or an error."""
        if post is not None:
            status, body = post("/api/v1/worklist/next/", None)
            if status == 200:
                return int(json.loads(body)["id"]), "claimed"
            if status == 404:
                return None, "nothing"
            if len(error_examples) < 3:
                error_examples.append(f"next: {status} {body[:200]!r}")
            return None, f"next {status}"
        if kind == "bare":
            with conn.transaction():
                row = conn.execute(sql["claim_select"], (reader,)).fetchone()
                if row is not None:
                    conn.execute(sql["claim_update"], (reader, row[0]))
        else:  # naive: read, then write what was read, no lock and no condition
            row = conn.execute(sql["naive_select"], (reader,)).fetchone()
            if row is not None:
                conn.execute(sql["naive_update"], (reader, row[0]))
        return (int(row[0]), "claimed") if row is not None else (None, "nothing")

    def release(study: int) -> str:
        if post is not None:
            status, body = post(f"/api/v1/studies/{study}/release/", release_body)
            if status != 200 and len(error_examples) < 3:
                error_examples.append(f"release: {status} {body[:200]!r}")
            return str(status) if status != 200 else "ok"
        cur = conn.execute(sql["release"], (study, reader))
        return "ok" if cur.rowcount == 1 else "lost"

    try:
        ready.put(spec["index"])
        go.wait()
        t_start = int(start.value)
        lo = t_start + int(spec["warmup"] * NS)
        hi = lo + int(spec["seconds"] * NS)
        sleep_until_ns(t_start)
        with (out / f"client-{spec['index']:03d}.log").open("w") as holds:
            while True:
                t0 = time.monotonic_ns()
                if t0 >= hi:
                    break
                try:
                    study, outcome = claim()
                except Exception as exc:
                    study, outcome = None, f"claim {type(exc).__name__}"
                    if len(error_examples) < 3:
                        error_examples.append(f"claim: {exc!r}"[:300])
                t1 = time.monotonic_ns()
                counted = lo <= t1 < hi
                counts[outcome] += 1
                if counted:
                    counts[f"window {outcome}"] += 1
                if study is None:
                    continue
                if counted:
                    claim_latency.append(t1 - t0)
                if hold_s:
                    time.sleep(hold_s)
                t2 = time.monotonic_ns()
                try:
                    released = release(study)
                except Exception as exc:
                    released = f"error-{type(exc).__name__}"
                    if len(error_examples) < 3:
                        error_examples.append(f"release: {exc!r}"[:300])
                t3 = time.monotonic_ns()
                counts[f"release {released}"] += 1
                if counted:
                    release_latency.append(t3 - t2)
                holds.write(f"{study} {reader} {t0} {t1} {t2} {t3} {released}\n")
    except Exception:
        result["error"] = traceback.format_exc()[-3000:]
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        result["counts"] = dict(counts)
        result["claim_latency_ns"] = claim_latency
        result["release_latency_ns"] = release_latency
        result["reconnects"] = spec.get("reconnects", 0)
        result["error_examples"] = error_examples
        (out / f"client-{spec['index']:03d}.json").write_text(json.dumps(result))

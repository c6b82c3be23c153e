"""The benchmark's senders: processes, each with python-hl7's ``MLLPClient`` on one
connection, sending its share of ORM^O01 NW orders one after another and waiting for
each ACK (as a RIS interface does).  They start together at an agreed instant."""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"


def order(*, control: str, accession: str, patient: str, facility: str) -> str:
    """One new order (ORM^O01, v2.5.1), its accession in OBR-18."""
    obr = ["OBR", "1", f"PL{accession}", f"FL{accession}", "70450^CT HEAD WO CONTRAST^CPT"]
    obr += ["", "", "20261207103000", "", "", "", "", "", "Fall from standing", "", ""]
    obr += ["1234^WELBY^MARCUS", "", accession, "", "", "", "", "", "", "", ""]
    obr += ["^^^^^S", "", "", "", "^Headache after fall"]
    return (
        "\r".join(
            [
                f"MSH|^~\\&|RIS|{facility}|TELERAD|TELERAD|20261207103000||ORM^O01|{control}|P|2.5.1",
                f"PID|1||{patient}^^^{facility}^MR||BENCH^PATIENT||19600101|M",
                "PV1|1|E|ED^01^A",
                f"ORC|NW|PL{accession}|FL{accession}||SC||^^^^^S||20261207103000|||1234^WELBY^MARCUS",
                "|".join(obr),
            ]
        )
        + "\r"
    )


@dataclass
class SenderResult:
    sent: int
    not_aa: int
    started: float  # time.time() of the first timed message
    finished: float
    latencies: list[float]


def _sender(
    port: int, prefix: str, index: int, count: int, warmup: int, start_at: float, facility: str
) -> SenderResult:
    from hl7.client import MLLPClient

    def message(n: int) -> str:
        tag = f"{prefix}{index}{n:06d}"
        return order(
            control=tag, accession=tag[:16], patient=f"P{index}{n % 50}", facility=facility
        )

    not_aa = 0
    latencies = []
    with MLLPClient(HOST, port) as client:
        client.socket.settimeout(60)
        for n in range(warmup):
            client.send_message(message(900000 + n))
        while time.time() < start_at:
            time.sleep(0.001)
        started = time.time()
        for n in range(count):
            t0 = time.perf_counter()
            reply = client.send_message(message(n))
            latencies.append(time.perf_counter() - t0)
            if b"MSA|AA|" not in reply:
                not_aa += 1
        finished = time.time()
    return SenderResult(count, not_aa, started, finished, latencies)


def send_all(
    *, port: int, senders: int, total: int, warmup: int, prefix: str, facility: str
) -> dict[str, Any]:
    """``total`` orders over ``senders`` connections at once: messages/s over the wall
    time from the first start to the last ACK, ACKs other than AA, latencies."""
    per = total // senders
    start_at = time.time() + 1.5 + 0.05 * warmup
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(senders) as pool:
        results = pool.starmap(
            _sender,
            [(port, prefix, i, per, warmup, start_at, facility) for i in range(senders)],
        )
    wall = max(r.finished for r in results) - min(r.started for r in results)
    latencies = sorted(x for r in results for x in r.latencies)
    return {
        "messages": sum(r.sent for r in results),
        "not_aa": sum(r.not_aa for r in results),
        "seconds": wall,
        "per_second": sum(r.sent for r in results) / wall if wall > 0 else 0.0,
        "latencies": latencies,
    }

"""HL7 benchmark: orders per second through the real MLLP listener
(``manage.py hl7_listener`` on PostgreSQL, production settings), each ACKed only after
the message and its order are committed, with 4 concurrent senders (python-hl7's
``MLLPClient``, one process and one connection each, every message waiting for its
ACK), against a bare MLLP echo server (same framing, an ACK made without work) in the
same run.  Targets: 500 messages/s and 0.3x the echo.

    .venv/bin/python -m bench.hl7            # about a minute and a half
    .venv/bin/python -m bench.hl7 --quick    # 400 messages: under a minute

The phases run in the order of ``PHASES``; a new measurement is a function of
``Hl7Bench`` added there (and a part of ``report.render``).  Exits 1 if a step failed
(BENCHMARKS.md left alone).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from bench import harness, host
from bench.database import Database
from bench.harness import Benchmark, Run, log
from bench.hl7 import report
from bench.hl7.senders import send_all
from bench.servers import app_env, production
from bench.stats import summary
from bench.supervise import HOST, PROCS, free_port, wait_for_port

FACILITY = "BENCHRIS"


@dataclass
class Hl7Bench:
    """What every phase needs."""

    run: Run
    db: Database
    env: dict[str, str]

    @property
    def args(self) -> argparse.Namespace:
        return self.run.args


def prepare(b: Hl7Bench) -> None:
    """A migrated database with one facility that sends as BENCHRIS."""
    log("creating and migrating the database")
    b.db.create_migrated(b.env)
    harness.setup_django(b.env)
    from network.models import Facility, Jurisdiction, ReadingGroup, Region

    group = ReadingGroup.objects.create(name="Bench HL7")
    jurisdiction, _ = Jurisdiction.objects.get_or_create(
        code="US-TX", defaults={"name": "Texas", "country": "US"}
    )
    region, _ = Region.objects.get_or_create(
        code="bench-hl7", defaults={"name": "Bench", "country": "US"}
    )
    Facility.objects.create(
        name="Bench Hospital",
        reading_group=group,
        jurisdiction=jurisdiction,
        region=region,
        timezone="America/Chicago",
        hl7_sending_facility=FACILITY,
    )
    from django.db import connection

    connection.close()
    with b.db.connect() as conn:
        b.run.results["versions"] = {
            **host.versions("django", "hl7apy", "hl7", "psycopg"),
            **host.postgres(conn, ["synchronous_commit", "shared_buffers", "fsync"]),
        }


def _measure(b: Hl7Bench, name: str, argv: list[str], env: dict[str, str], port: int) -> None:
    proc = PROCS.start(argv, env=env, log_path=b.run.work / f"{name}.log")
    # The listener's own processes (all of its process group) are charged below.
    wait_for_port(port, timeout=60, what=name, proc=proc)
    log(f"{name}: {b.args.messages} messages, {b.args.senders} senders")
    cpu_before = host.group_cpu_seconds(proc.pid)
    result = send_all(
        port=port,
        senders=b.args.senders,
        total=b.args.messages,
        warmup=b.args.warmup,
        prefix=f"{name[0].upper()}{uuid.uuid4().hex[:3]}",
        facility=FACILITY,
    )
    cpu_after = host.group_cpu_seconds(proc.pid)
    PROCS.stop(proc)
    latencies = result.pop("latencies")
    result["latency"] = summary(latencies)
    if cpu_before is not None and cpu_after is not None:
        result["server_cpu_seconds"] = cpu_after - cpu_before
        # The CPU covers the warm-up messages too.
        result["server_messages"] = result["messages"] + b.args.warmup * b.args.senders
    b.run.results["phases"][name] = result
    log(f"{name}: {result['per_second']:.0f} messages/s ({result['not_aa']} not AA)")


def echo(b: Hl7Bench) -> None:
    """The bare MLLP echo server: what the framing and the senders cost alone."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.hl7.echo", "--port", str(port)]
    _measure(b, "echo", argv, b.env, port)


def listener(b: Hl7Bench) -> None:
    """The real listener: every order stored, applied and committed before its ACK;
    once per number of listener processes asked (``--processes``)."""
    for processes in b.args.processes:
        name = f"listener-{processes}"
        port = free_port()
        argv = [sys.executable, "manage.py", "hl7_listener", "--host", HOST, "--port", str(port)]
        argv += ["--processes", str(processes)]
        _measure(b, name, argv, b.env, port)
        b.run.results["phases"][name]["processes"] = processes
    with b.db.connect() as conn:
        stored = conn.execute(
            "SELECT outcome, count(*) FROM orders_hl7message GROUP BY outcome"
        ).fetchall()
        orders = conn.execute("SELECT count(*) FROM studies_order").fetchone()[0]
    b.run.results["stored"] = {k: int(v) for k, v in stored}
    b.run.results["orders"] = int(orders)


def breakdown(b: Hl7Bench) -> None:
    """Where a message's time goes, in this process, one message at a time: reading it
    (decoding, header checks, hl7apy's parse) alone, then the whole receive (read,
    admit, apply, store, audit, commit) and the statements it sends."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bench.hl7.senders import order
    from orders import hl7
    from orders.services.messages import message_receive

    count = b.args.breakdown
    tag = f"K{uuid.uuid4().hex[:4]}"
    messages = [
        order(
            control=f"{tag}{n}", accession=f"{tag}{n}", patient=f"K{n % 50}", facility=FACILITY
        ).encode()
        for n in range(count + 1)
    ]
    started = time.perf_counter()
    for data in messages[1:]:
        hl7.read(data)
    read_seconds = (time.perf_counter() - started) / count
    with CaptureQueriesContext(connection) as queries:
        message_receive(data=messages[0], peer_address=HOST)
    started = time.perf_counter()
    for data in messages[1:]:
        message_receive(data=data, peer_address=HOST)
    receive_seconds = (time.perf_counter() - started) / count
    connection.close()
    b.run.results["breakdown"] = {
        "messages": count,
        "read_ms": 1000 * read_seconds,
        "receive_ms": 1000 * receive_seconds,
        "statements": len(queries.captured_queries),
    }
    log(f"breakdown: read {1000 * read_seconds:.1f} ms, receive {1000 * receive_seconds:.1f} ms")


PHASES: list[Callable[[Hl7Bench], None]] = [prepare, echo, listener, breakdown]


def run_measure(run: Run) -> None:
    args = run.args
    run.results["phases"] = {}
    run.results["other_work"] = host.other_work(exclude="bench.hl7", tests=True)
    db = Database(args.database_url, args.db_name)
    run.at_end(db.drop_all if not args.keep else lambda: None)
    env = production(
        app_env(
            database_url=db.url(),
            redis_url=args.redis_url,
            var_dir=str(run.work / "var"),
            HL7_LISTEN_HOST=HOST,
            LOG_LEVEL="WARNING",
        ),
        redis_url=args.redis_url,
    )
    b = Hl7Bench(run, db, env)
    started = time.monotonic()
    for phase in PHASES:
        phase(b)
    run.results["load_average"] = host.loadavg()
    log(f"measured in {time.monotonic() - started:.0f} s")


def add_options(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--messages", type=int, default=1200, help="orders sent to each server (timed)")
    a("--senders", type=int, default=4, help="concurrent senders (one connection each)")
    a("--warmup", type=int, default=20, help="untimed orders per sender first")
    a(
        "--processes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2],
        help="listener processes to measure with, comma-separated (default 1,2)",
    )
    a("--breakdown", type=int, default=200, help="messages timed in-process, one at a time")
    a("--database-url", default="postgres://postgres@127.0.0.1:5432")
    a("--db-name", default="bench_hl7")
    a("--redis-url", default="redis://127.0.0.1:6379/6", help="the broker production requires")


BENCHMARK = Benchmark(
    module="bench.hl7",
    doc=__doc__ or "",
    add_options=add_options,
    measure=run_measure,
    title=report.TITLE,
    render=report.render,
    quick={"messages": 400, "warmup": 5, "breakdown": 50},
    renderable=lambda results: any(
        name.startswith("listener") for name in results.get("phases", {})
    ),
)

if __name__ == "__main__":
    sys.exit(harness.main(BENCHMARK))

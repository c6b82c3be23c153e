"""Fuzz the DICOM gateway with many more cases than the test suite sends.

Run from the repository root:

    .venv/bin/python -m bench.ingest.fuzz --cases 10000 --seed 7
    .venv/bin/python -m bench.ingest.fuzz --quick    # 300 cases, under a minute

It migrates a database of its own (SQLite in a temporary folder, or a fresh
PostgreSQL database with ``--pg-url``), adds one facility with the calling AE
title, starts ``manage.py dicom_listener`` on a free port, and sends the seeded
cases of ``tests/ingest/fuzz/mutate.py`` byte for byte, judged by the
independent oracle of ``tests/ingest/fuzz/oracle.py``.  It prints the counts by
answer and oracle verdict, the counts by operator, and the violations of the
rules ``tests/ingest/fuzz/test_fuzz.py`` asserts; it exits 1 when there is any.
It writes no section of BENCHMARKS.md (that one is written by hand).

A case is rebuilt alone with ``mutate.make_case(seed, index)`` (the number at
the start of its name).  Everything it starts is stopped, and the temporary
folder (and database) removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench import harness
from bench.database import Database, manage
from bench.harness import Benchmark, Run, log
from bench.servers import dicom_listener_argv
from bench.supervise import HOST, PROCS, free_port, wait_for_port

if TYPE_CHECKING:
    from tests.ingest.fuzz.campaign import Result

CALLING_AE = "FUZZ_SCU"
CALLED_AE = "TELERAD"


def add_facility() -> None:
    """One facility that owns the calling AE title (admission is by database)."""
    from network.models import Facility, FacilityAETitle, Jurisdiction, ReadingGroup, Region

    jurisdiction, _ = Jurisdiction.objects.get_or_create(
        code="US-TX", defaults={"country": "US", "name": "Texas"}
    )
    region, _ = Region.objects.get_or_create(
        code="us-tx-north", defaults={"name": "North Texas", "country": "US"}
    )
    group, _ = ReadingGroup.objects.get_or_create(name="Fuzz readers")
    facility = Facility.objects.create(
        name="Fuzz Hospital",
        reading_group=group,
        jurisdiction=jurisdiction,
        region=region,
        timezone="America/Chicago",
    )
    FacilityAETitle.objects.create(facility=facility, ae_title=CALLING_AE)


def by_operator(results: Sequence[Result]) -> dict[str, dict[str, int]]:
    """Cases, defective ones, defective ones answered Success and lost ones, per operator."""
    rows: dict[str, Counter[str]] = {}
    for r in results:
        for name in r.case.operators or ("control",):
            row = rows.setdefault(name, Counter())
            row["cases"] += 1
            row["defective"] += r.defective
            row["accepted defective"] += r.defective and (r.success or r.warning)
            row["lost"] += not isinstance(r.outcome, int)
    return {name: dict(row) for name, row in sorted(rows.items())}


def operator_table(rows: dict[str, dict[str, int]]) -> str:
    lines = [f"{'operator':<18} {'cases':>7} {'defective':>10} {'accepted':>9} {'lost':>6}"]
    for name, row in rows.items():
        lines.append(
            f"{name:<18} {row.get('cases', 0):>7} {row.get('defective', 0):>10} "
            f"{row.get('accepted defective', 0):>9} {row.get('lost', 0):>6}"
        )
    return "\n".join(lines)


def measure(run: Run) -> None:
    args = run.args
    work = run.work
    database_url = f"sqlite:///{work / 'fuzz.sqlite3'}"
    if args.pg_url:
        db = Database(args.pg_url, args.db_name)
        database_url = db.url()
        db.drop()
        db.admin(f'CREATE DATABASE "{db.name}"')
        if not args.keep:
            run.at_end(db.drop)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "teleradiology.settings",
        "DATABASE_URL": database_url,
        "VAR_DIR": str(work / "var"),
        "DICOM_STORAGE_ROOT": str(work / "storage"),
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "VAR_DIR")})
    log(f"migrating {database_url}")
    manage(["migrate", "--noinput"], env)
    import django

    django.setup()
    # Our side logs each bad UID it sends; the report says what matters.
    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    from django.db import connections

    from ingest.models import QuarantinedObject
    from studies.models import Instance
    from tests.ingest.fuzz import campaign, mutate
    from tests.ingest.fuzz.sender import StoreSender

    add_facility()
    connections.close_all()
    port = free_port()
    log_path = work / "listener.log"
    listener = PROCS.start(dicom_listener_argv(port=port), env=env, log_path=log_path)
    wait_for_port(port, timeout=60, what="the listener", proc=listener, log_path=log_path)
    log(f"listener on port {port}; sending {args.cases} cases of seed {args.seed}")

    started = time.monotonic()
    count = 0

    def progress(result: campaign.Result) -> None:
        nonlocal count
        count += 1
        if count % 500 == 0:
            log(f"  {count}/{args.cases} cases ({count / (time.monotonic() - started):.0f}/s)")

    cases = (
        mutate.make_case(args.seed, i, max_private=args.max_private)
        for i in range(args.first, args.first + args.cases)
    )
    with StoreSender(
        host=HOST,
        port=port,
        calling_ae=CALLING_AE,
        called_ae=CALLED_AE,
        abstract_syntaxes=mutate.ABSTRACT_SYNTAXES,
        transfer_syntaxes=mutate.TRANSFER_SYNTAXES,
        patience=args.patience,
    ) as sender:
        results = campaign.run(cases, sender, progress=progress)
        sender.close()
        final_echo = sender.echo()
        associations = sender.associations
    elapsed = time.monotonic() - started
    found = campaign.violations(
        results,
        quarantined=[
            campaign.Quarantined(key, uid)
            for key, uid in QuarantinedObject.objects.values_list("storage_key", "sop_instance_uid")
        ],
        quarantined_before=0,
        stored_instances=set(Instance.objects.values_list("sop_instance_uid", flat=True)),
        storage_root=work / "storage",
        listener_alive=listener.poll() is None,
        final_echo=final_echo,
    )
    connections.close_all()
    sent = sum(len(r.case.dataset) for r in results)
    operators = by_operator(results)
    verdicts = campaign.report(found, results, limit=args.limit)
    summary = (
        f"seed {args.seed}, cases {args.first}..{args.first + args.cases - 1}: "
        f"{elapsed:.1f} s ({len(results) / elapsed:.0f} cases/s, {sent / 1e6:.1f} MB, "
        f"{associations} associations)"
    )
    print(f"\n{summary}\n{operator_table(operators)}\n{verdicts}", flush=True)
    run.results.update(
        {
            "cases": len(results),
            "seconds": elapsed,
            "cases_per_s": len(results) / elapsed,
            "megabytes_sent": sent / 1e6,
            "associations": associations,
            "by_operator": operators,
            "violations": len(found),
            "report": verdicts,
        }
    )


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cases", type=int, default=10000, help="cases to send (default 10000)")
    p.add_argument("--seed", type=int, default=20240611, help="the cases' seed")
    p.add_argument("--first", type=int, default=0, help="index of the first case (default 0)")
    p.add_argument(
        "--max-private",
        type=int,
        default=8 << 20,
        help="largest private element a case may carry, bytes (default 8 MiB)",
    )
    p.add_argument(
        "--pg-url",
        default="",
        help="e.g. postgres://postgres@127.0.0.1:5432: use a fresh PostgreSQL database "
        "(--db-name) instead of SQLite",
    )
    p.add_argument("--db-name", default="telerad_fuzz")
    p.add_argument(
        "--patience",
        type=float,
        default=0.5,
        help="seconds to wait for a C-STORE response before a C-ECHO asks whether one "
        "is coming (default 0.5)",
    )
    p.add_argument("--limit", type=int, default=40, help="violations printed in full")


def exit_code(results: dict[str, Any]) -> int:
    return 1 if results.get("violations") else 0


BENCHMARK = Benchmark(
    module="bench.ingest.fuzz",
    doc=__doc__ or "",
    add_options=add_options,
    measure=measure,
    quick={"cases": 300},
    exit_code=exit_code,
)

if __name__ == "__main__":
    sys.exit(harness.main(BENCHMARK))

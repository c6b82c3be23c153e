"""Fuzz the DICOM gateway with many more cases than the test suite sends.

Run from the repository root:

    .venv/bin/python bench/ingest/fuzz.py --cases 10000 --seed 7

It migrates a database of its own (SQLite in a temporary folder, or a fresh
PostgreSQL database with ``--pg-url``), adds one facility with the calling AE
title, starts ``manage.py dicom_listener`` on a free port, and sends the seeded
cases of ``tests/ingest/fuzz/mutate.py`` byte for byte, judged by the
independent oracle of ``tests/ingest/fuzz/oracle.py``.  It prints the counts by
answer and oracle verdict, the counts by operator, and the violations of the
rules ``tests/ingest/fuzz/test_fuzz.py`` asserts; it exits 1 when there is any.

A case is rebuilt alone with ``mutate.make_case(seed, index)`` (the number at
the start of its name).  Everything it starts is stopped, and the temporary
folder (and database) removed unless ``--keep``.
"""

# ruff: noqa: S603
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.ingest.fuzz.campaign import Result

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
CALLING_AE = "FUZZ_SCU"
CALLED_AE = "TELERAD"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def postgres_admin(base_url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(f"{base_url.rstrip('/')}/postgres", autocommit=True) as conn:
        conn.execute(statement)  # the database name is checked by the caller


def start_listener(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "dicom_listener", "--host", HOST, "--port", str(port)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"listener exited {process.returncode}: {log_path.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex((HOST, port)) == 0:
                return process
        time.sleep(0.1)
    stop(process)
    raise RuntimeError("listener did not open its port within 60 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
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
    p.add_argument("--keep", action="store_true", help="keep the folder (logs, files) and database")
    return p.parse_args(argv)


def by_operator(results: Sequence[Result]) -> str:
    """Cases, defective ones and defective ones answered Success, per operator."""
    rows: dict[str, Counter[str]] = {}
    for r in results:
        for name in r.case.operators or ("control",):
            row = rows.setdefault(name, Counter())
            row["cases"] += 1
            row["defective"] += r.defective
            row["accepted defective"] += r.defective and (r.success or r.warning)
            row["lost"] += not isinstance(r.outcome, int)
    lines = [f"{'operator':<18} {'cases':>7} {'defective':>10} {'accepted':>9} {'lost':>6}"]
    for name, row in sorted(rows.items()):
        lines.append(
            f"{name:<18} {row['cases']:>7} {row['defective']:>10} "
            f"{row['accepted defective']:>9} {row['lost']:>6}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.pg_url and not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", args.db_name):
        raise SystemExit(f"unsafe database name {args.db_name!r}")
    work = Path(tempfile.mkdtemp(prefix="bench-fuzz-"))
    database_url = f"sqlite:///{work / 'fuzz.sqlite3'}"
    if args.pg_url:
        database_url = f"{args.pg_url.rstrip('/')}/{args.db_name}"
        postgres_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
        postgres_admin(args.pg_url, f'CREATE DATABASE "{args.db_name}"')
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "teleradiology.settings",
        "DATABASE_URL": database_url,
        "VAR_DIR": str(work / "var"),
        "DICOM_STORAGE_ROOT": str(work / "storage"),
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "VAR_DIR")})
    sys.path.insert(0, str(REPO))
    listener: subprocess.Popen[bytes] | None = None
    exit_code = 0
    try:
        log(f"migrating {database_url}")
        migrated = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if migrated.returncode != 0:
            raise RuntimeError(f"migrate failed:\n{migrated.stderr[-2000:]}")
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
        listener = start_listener(env, port, work / "listener.log")
        log(f"listener on port {port}; sending {args.cases} cases of seed {args.seed}")

        started = time.monotonic()
        count = 0

        def progress(result: campaign.Result) -> None:
            nonlocal count
            count += 1
            if count % 500 == 0:
                rate = count / (time.monotonic() - started)
                log(f"  {count}/{args.cases} cases ({rate:.0f}/s)")

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
                for key, uid in QuarantinedObject.objects.values_list(
                    "storage_key", "sop_instance_uid"
                )
            ],
            quarantined_before=0,
            stored_instances=set(Instance.objects.values_list("sop_instance_uid", flat=True)),
            storage_root=work / "storage",
            listener_alive=listener.poll() is None,
            final_echo=final_echo,
        )
        connections.close_all()
        sent = sum(len(r.case.dataset) for r in results)
        print()
        print(
            f"seed {args.seed}, cases {args.first}..{args.first + args.cases - 1}: "
            f"{elapsed:.1f} s ({len(results) / elapsed:.0f} cases/s, {sent / 1e6:.1f} MB, "
            f"{associations} associations)"
        )
        print(by_operator(results))
        print(campaign.report(found, results, limit=args.limit))
        exit_code = 1 if found else 0
    finally:
        if listener is not None:
            stop(listener)
        if args.keep:
            log(f"kept {work}" + (f" and database {args.db_name}" if args.pg_url else ""))
        else:
            shutil.rmtree(work, ignore_errors=True)
            if args.pg_url:
                with contextlib.suppress(Exception):
                    postgres_admin(
                        args.pg_url, f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)'
                    )
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

"""Claims benchmark: HTTP clients claiming ("next case") and releasing through the real
API, served by gunicorn against PostgreSQL, next to the bare SQL loop
(``SELECT ... FOR UPDATE SKIP LOCKED`` + ``UPDATE``) at the same concurrency, with
double assignments counted from the clients' own logs and a naive read-then-write
control that shows the detector finds doubles when there are some.

Run from the repository root:

    .venv/bin/python bench/claims/run.py                               # about 5 minutes
    .venv/bin/python bench/claims/run.py --seconds 5 --clients 4 --no-write

See bench/claims/README.md.  Every process it starts is stopped (the server by its
process group, the clients one by one) even on failure; the benchmark database is
dropped unless ``--keep``.
"""

# ruff: noqa: S311, S603, S608
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import math
import multiprocessing
import os
import platform
import queue
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SECTION_TITLE = "## Claims (bench/claims)"
OTHER_BENCH_RX = r"bench/[a-z_]+/run\.py"
TARGET_RATIO = 3.0  # the issue: API p99 <= 3x the bare loop's p99 from the same run
UTC = dt.UTC
NS = 1_000_000_000


# --- small helpers ---------------------------------------------------------------


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")  # noqa: DTZ005 - a console timestamp
    print(f"[{stamp}] {message}", flush=True)


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p * len(ordered) / 100) - 1))
    return ordered[k]


def summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": max(values),
    }


def ms(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x * 1000:.{digits}f} ms"


def sleep_until_ns(t: int) -> None:
    delay = (t - time.monotonic_ns()) / NS
    if delay > 0:
        time.sleep(delay)


def other_benchmarks() -> list[str]:
    """Command lines of other benchmarks running now (they share the 2 cores)."""
    pgrep = shutil.which("pgrep")
    if pgrep is None:
        return []
    result = subprocess.run(
        [pgrep, "-af", OTHER_BENCH_RX], capture_output=True, text=True, check=False
    )
    mine = {os.getpid(), os.getppid()}
    return [
        line.split(" ", 1)[1]
        for line in result.stdout.splitlines()
        if line.strip() and int(line.split(" ", 1)[0]) not in mine and "bench/claims/" not in line
    ]


# --- CPU accounting ----------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    with contextlib.suppress(OSError):
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields) - idle, sum(fields)
    return 0, 0


def proc_stat(pid: int) -> tuple[str, int, float] | None:
    """(command name, process group, user + system CPU seconds) of a process."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        text = Path(f"/proc/{pid}/stat").read_text()
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        return name, int(fields[2]), (int(fields[11]) + int(fields[12])) / CLK_TCK
    return None


def cpu_snapshot(
    server_pgid: int | None, client_pids: Iterable[int], pg_pids: Iterable[int]
) -> dict[str, dict[int, float]]:
    """CPU seconds used so far by each process of the server (its process group), the
    clients, and PostgreSQL (our database's backends and the background processes)."""
    clients, postgres = set(client_pids), set(pg_pids)
    out: dict[str, dict[int, float]] = {"server": {}, "clients": {}, "postgres": {}}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        info = proc_stat(pid)
        if info is None:
            continue
        _, pgid, cpu = info
        if pid in clients:
            out["clients"][pid] = cpu
        elif server_pgid is not None and pgid == server_pgid:
            out["server"][pid] = cpu
        elif pid in postgres:
            out["postgres"][pid] = cpu
    return out


def cpu_used(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds per group between two snapshots (processes that ended are left out)."""
    return {
        group: sum(cpu - before[group].get(pid, 0.0) for pid, cpu in pids.items())
        for group, pids in after.items()
    }


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


# --- the clients (spawned processes; no Django in them) -------------------------------


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


# --- processes (the server) ------------------------------------------------------------


class Server:
    """gunicorn in a process group of its own."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def start(self, argv: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                list(argv),
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pgid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        self.proc = None


SERVER = Server()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def connections_per_process(port: int) -> list[int]:
    """How the clients' keep-alive connections are spread over the server's worker
    processes (each worker accepts connections for itself), largest first."""
    ss = shutil.which("ss")  # iproute2
    if ss is None:
        return []
    result = subprocess.run(
        [ss, "-Htnp", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=False,
    )
    pids = Counter(re.findall(r"pid=(\d+)", result.stdout))
    return sorted(pids.values(), reverse=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- environment -------------------------------------------------------------------------


class Ctx:
    """What every phase needs."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.base_url = args.database_url.rstrip("/")
        self.db_url = f"{self.base_url}/{args.db_name}"
        self.secret_key = secrets.token_urlsafe(64)
        self.results: dict[str, Any] = {"notes": [], "warnings": [], "phases": {}}
        self.conn: Any = None  # psycopg autocommit connection of the parent
        self.readers: list[dict[str, Any]] = []  # radiologist id, username, token
        self.sql: dict[str, str] = {}

    def env(self, **extra: str) -> dict[str, str]:
        """The process environment of a deployment: production settings, DEBUG off."""
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "teleradiology.settings",
            "DJANGO_ENV": "production",
            "SECRET_KEY": self.secret_key,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.db_url,
            "REDIS_URL": self.args.redis_url,  # required by production; claims send no task
            "VAR_DIR": str(self.work / "var"),
            "DEBUG": "false",
            "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def warn(self, message: str) -> None:
        log("WARNING: " + message)
        self.results["warnings"].append(message)


def admin_sql(ctx: Ctx, *statements: str) -> None:
    import psycopg

    with psycopg.connect(f"{ctx.base_url}/postgres", autocommit=True) as conn:
        for s in statements:
            conn.execute(s)


def prepare_database(ctx: Ctx) -> None:
    name = ctx.args.db_name
    log(f"creating database {name} and migrating")
    admin_sql(ctx, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=REPO,
        env=ctx.env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{result.stderr[-3000:]}")


def setup_django(ctx: Ctx) -> None:
    os.environ.update(ctx.env())
    import django

    django.setup()
    import psycopg

    ctx.conn = psycopg.connect(ctx.db_url, autocommit=True)


# --- data ----------------------------------------------------------------------------------


def build_data(ctx: Ctx) -> None:
    """One group, one facility, a default rule, one reader per client (licensed,
    privileged, on shift, general subspecialty, home in the facility's region) and
    N studies routed by the app's own ``study_route``: each is offered to every reader."""
    from django.contrib.auth.models import User
    from django.db import transaction
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from network.models import (
        Facility,
        FacilityPrivilege,
        Jurisdiction,
        License,
        Priority,
        Radiologist,
        ReadingGroup,
        Region,
        Shift,
        Subspecialty,
    )
    from routing.models import RoutingRule
    from routing.services import study_route
    from studies.models import Study
    from studies.sla import sla_due_at
    from studies.states import StudyStatus
    from worklist.models import Offer

    args = ctx.args
    rng = random.Random(args.seed)
    now = timezone.now()
    started = time.monotonic()
    with transaction.atomic():
        group = ReadingGroup.objects.create(name="Claims bench group")
        jurisdiction, _ = Jurisdiction.objects.get_or_create(
            code="US-TX", defaults={"country": "US", "name": "Texas"}
        )
        region = Region.objects.create(code="bench-north-tx", name="North Texas", country="US")
        facility = Facility.objects.create(
            name="Claims Bench Hospital",
            reading_group=group,
            jurisdiction=jurisdiction,
            timezone="America/Chicago",
            region=region,
            tat_stat_minutes=60,
            tat_urgent_minutes=240,
            tat_routine_minutes=1440,
        )
        general = Subspecialty.objects.get(code="general")
        rule = RoutingRule.objects.create(
            reading_group=group,
            name="Everything (offer to the pool)",
            is_default=True,
            allow_general=True,
            delivery=RoutingRule.Delivery.OFFER,
        )
        rule.subspecialties.set([general])
        users = []
        for n in range(args.clients):
            user = User(username=f"bench-reader-{n:03d}", email=f"reader{n}@example.test")
            user.set_unusable_password()  # token authentication only
            users.append(user)
        User.objects.bulk_create(users)
        users = list(User.objects.filter(username__startswith="bench-reader-").order_by("username"))
        readers = Radiologist.objects.bulk_create(
            [
                Radiologist(
                    user=u,
                    reading_group=group,
                    display_name=f"Dr Bench {n:03d}",
                    home_region=region,
                    timezone="America/Chicago",
                    workload_cap=5,
                )
                for n, u in enumerate(users)
            ]
        )
        Radiologist.subspecialties.through.objects.bulk_create(
            [
                Radiologist.subspecialties.through(radiologist_id=r.pk, subspecialty_id=general.pk)
                for r in readers
            ]
        )
        today = now.date()
        License.objects.bulk_create(
            [
                License(
                    radiologist=r,
                    jurisdiction=jurisdiction,
                    number=f"TX-B{r.pk:06d}",
                    valid_from=today - dt.timedelta(days=365),
                    valid_to=today + dt.timedelta(days=365),
                )
                for r in readers
            ]
        )
        FacilityPrivilege.objects.bulk_create(
            [
                FacilityPrivilege(
                    radiologist=r,
                    facility=facility,
                    valid_from=today - dt.timedelta(days=365),
                    valid_to=today + dt.timedelta(days=365),
                )
                for r in readers
            ]
        )
        Shift.objects.bulk_create(
            [
                Shift(
                    radiologist=r,
                    starts_at=now - dt.timedelta(hours=12),
                    ends_at=now + dt.timedelta(hours=12),
                )
                for r in readers
            ]
        )
        tokens = Token.objects.bulk_create([Token(user=u, key=Token.generate_key()) for u in users])
        ctx.readers = [
            {"radiologist": r.pk, "username": u.username, "token": t.key}
            for r, u, t in zip(readers, users, tokens, strict=True)
        ]
        priorities = rng.choices(
            [Priority.STAT, Priority.URGENT, Priority.ROUTINE], weights=[10, 30, 60], k=args.studies
        )
        studies = []
        for n, priority in enumerate(priorities):
            received = now - dt.timedelta(seconds=rng.uniform(60, 7200))
            studies.append(
                Study(
                    study_instance_uid=f"1.2.826.0.1.3680043.10.999.{n + 1}",
                    accession_number=f"CB{n + 1:07d}",
                    facility=facility,
                    patient_id=f"P{rng.randrange(10**7):07d}",
                    patient_name=f"BENCH^PATIENT{n}",
                    patient_jurisdiction=jurisdiction,
                    modality=rng.choice(["CT", "MR", "CR", "US"]),
                    body_part="CHEST",
                    study_description="BENCH STUDY",
                    priority=priority,
                    status=StudyStatus.READY,
                    received_at=received,
                    last_instance_at=received,
                    ready_at=received + dt.timedelta(seconds=30),
                    sla_due_at=sla_due_at(
                        received_at=received, tat_minutes=facility.tat_minutes(priority)
                    ),
                )
            )
        Study.objects.bulk_create(studies, batch_size=1000)
    log(f"network and {args.studies} READY studies written; routing them with study_route")
    ids = list(Study.objects.filter(facility=facility).order_by("pk").values_list("pk", flat=True))
    route_started = time.monotonic()
    for study_id in ids:
        study_route(study_id=study_id)
    route_seconds = time.monotonic() - route_started
    offered = Study.objects.filter(facility=facility, status=StudyStatus.OFFERED).count()
    offers = Offer.objects.filter(study__facility=facility, withdrawn_at__isnull=True).count()
    expected = args.studies * args.clients
    if offered != args.studies or offers != expected:
        raise RuntimeError(
            f"routing offered {offered}/{args.studies} studies with {offers}/{expected} open "
            "offers: not every reader is eligible for every study"
        )
    ctx.results["data"] = {
        "studies": args.studies,
        "readers": args.clients,
        "offers": offers,
        "priorities": dict(Counter(Priority(p).label for p in priorities)),
        "route_seconds": route_seconds,
        "build_seconds": time.monotonic() - started,
    }
    log(
        f"{offered} studies offered to all {args.clients} readers ({offers} open offers), "
        f"routed in {route_seconds:.1f} s"
    )
    study_table, offer_table = Study._meta.db_table, Offer._meta.db_table
    offered_s, claimed_s = StudyStatus.OFFERED.value, StudyStatus.CLAIMED.value
    worklist = (
        f"SELECT s.id FROM {study_table} s WHERE s.status = '{offered_s}' AND EXISTS ("
        f"SELECT 1 FROM {offer_table} o WHERE o.study_id = s.id AND o.radiologist_id = %s::bigint "
        "AND o.withdrawn_at IS NULL) ORDER BY s.priority, s.sla_due_at, s.received_at, s.id "
        "LIMIT 1"
    )
    claim_set = (
        f"status = '{claimed_s}', assigned_radiologist_id = %s::bigint, claimed_at = now(), "
        "claim_activity_at = now(), updated_at = now()"
    )
    ctx.sql = {
        "claim_select": worklist + " FOR UPDATE OF s SKIP LOCKED",
        "claim_update": f"UPDATE {study_table} SET {claim_set} WHERE id = %s::bigint",
        "naive_select": worklist,
        "naive_update": f"UPDATE {study_table} SET {claim_set} WHERE id = %s::bigint",
        "release": (
            f"UPDATE {study_table} SET status = '{offered_s}', assigned_radiologist_id = NULL, "
            f"claim_activity_at = NULL, updated_at = now() WHERE id = %s::bigint "
            f"AND status = '{claimed_s}' AND assigned_radiologist_id = %s::bigint"
        ),
        "reset": (
            f"UPDATE {study_table} SET status = '{offered_s}', assigned_radiologist_id = NULL, "
            f"claim_activity_at = NULL WHERE status = '{claimed_s}'"
        ),
        "claimed_left": f"SELECT count(*) FROM {study_table} WHERE status = '{claimed_s}'",
    }


def pg_pids(ctx: Ctx) -> list[int]:
    """PostgreSQL processes that work for this benchmark: our database's backends and
    the server's background processes (not other databases' backends)."""
    rows = ctx.conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR datname IS NULL"
    ).fetchall()
    return [int(r[0]) for r in rows]


def between_phases(ctx: Ctx, label: str) -> int:
    """Put every study back on offer (what a phase left claimed is reported) and
    VACUUM ANALYZE, so that each phase starts from the same tables."""
    left = int(ctx.conn.execute(ctx.sql["claimed_left"]).fetchone()[0])
    if left:
        ctx.conn.execute(ctx.sql["reset"])
    # The app's claims hold the study's offers (off the worklists) until release.
    ctx.conn.execute(
        "UPDATE worklist_offer SET held_at = NULL "
        "WHERE held_at IS NOT NULL AND withdrawn_at IS NULL"
    )
    ctx.conn.execute("VACUUM (ANALYZE)")
    log(f"{label}: VACUUM ANALYZE done" + (f"; {left} studies were left claimed" if left else ""))
    return left


# --- phases --------------------------------------------------------------------------------


def run_clients(
    ctx: Ctx,
    name: str,
    kind: str,
    *,
    seconds: float,
    warmup: float,
    hold_ms: float,
    port: int = 0,
) -> dict[str, Any]:
    """Start one process per client, start them together, measure, collect."""
    args = ctx.args
    folder = ctx.work / name
    folder.mkdir(parents=True, exist_ok=True)
    mp = multiprocessing.get_context("spawn")
    ready = mp.Queue()
    go = mp.Event()
    start = mp.Value("q", 0)
    specs = [
        {
            "index": n,
            "kind": kind,
            "folder": str(folder),
            "reader": r["radiologist"],
            "token": r["token"],
            "port": port,
            "dsn": ctx.db_url,
            "sql": ctx.sql,
            "seconds": seconds,
            "warmup": warmup,
            "hold_ms": hold_ms,
        }
        for n, r in enumerate(ctx.readers[: args.clients])
    ]
    procs = [mp.Process(target=client_main, args=(s, ready, go, start)) for s in specs]
    try:
        for p in procs:
            p.start()
        for _ in procs:
            try:
                ready.get(timeout=120)
            except queue.Empty:
                raise RuntimeError(f"{name}: a client did not start within 120 s") from None
        t_start = time.monotonic_ns() + NS // 5
        start.value = t_start
        go.set()
        lo = t_start + int(warmup * NS)
        hi = lo + int(seconds * NS)
        log(
            f"{name}: {len(procs)} clients running for {warmup:g} s warm-up + {seconds:g} s"
            + (f" (hold {hold_ms:g} ms)" if hold_ms else "")
        )
        pids = [p.pid for p in procs if p.pid is not None]
        sleep_until_ns(lo)
        cpu0, jiffies0 = cpu_snapshot(SERVER.pgid, pids, pg_pids(ctx)), cpu_jiffies()
        spread = connections_per_process(port) if port else []
        # Just before the end: at the end the clients close their database sessions.
        cpu_end = hi - int(min(0.1, seconds / 10) * NS)
        sleep_until_ns(cpu_end)
        cpu1, jiffies1 = cpu_snapshot(SERVER.pgid, pids, pg_pids(ctx)), cpu_jiffies()
        cpu_seconds = (time.monotonic_ns() - lo) / NS
        for p in procs:
            p.join(timeout=180)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
    others = other_benchmarks()
    if others:
        ctx.warn(f"other benchmarks were running during '{name}': {'; '.join(others)[:300]}")
    window = (hi - lo) / NS
    counts: Counter[str] = Counter()
    claim_lat: list[float] = []
    release_lat: list[float] = []
    errors: list[str] = []
    examples: list[str] = []
    reconnects = 0
    for s in specs:
        path = folder / f"client-{s['index']:03d}.json"
        if not path.exists():
            errors.append(f"client {s['index']} wrote no result")
            continue
        data = json.loads(path.read_text())
        if "error" in data:
            errors.append(f"client {s['index']}: {data['error'][-500:]}")
        counts.update(data["counts"])
        claim_lat += [x / NS for x in data["claim_latency_ns"]]
        release_lat += [x / NS for x in data["release_latency_ns"]]
        reconnects += int(data.get("reconnects", 0))
        examples += data.get("error_examples", [])
    if errors:
        raise RuntimeError(f"{name}: " + " | ".join(errors)[:3000])
    holds = read_holds(folder)
    doubles = find_doubles(holds)
    busy = jiffies1[0] - jiffies0[0]
    total = jiffies1[1] - jiffies0[1]
    claims = counts.get("window claimed", 0)
    result: dict[str, Any] = {
        "kind": kind,
        "clients": len(specs),
        "seconds": window,
        "warmup": warmup,
        "hold_ms": hold_ms,
        "claims": claims,
        "claims_per_s": claims / window if window else None,
        "claim_latency": summary(claim_lat),
        "release_latency": summary(release_lat),
        "nothing": counts.get("window nothing", 0),
        "nothing_total": counts.get("nothing", 0),
        "claims_total": counts.get("claimed", 0),
        "releases_ok": counts.get("release ok", 0),
        "release_problems": {
            k.removeprefix("release "): v
            for k, v in counts.items()
            if k.startswith("release ") and k != "release ok"
        },
        "claim_errors": {
            k: v
            for k, v in counts.items()
            if not k.startswith(("window ", "release ")) and k not in ("claimed", "nothing")
        },
        "reconnects": reconnects,
        "connections_per_worker": spread,
        "error_examples": examples[:5],
        "holds_logged": len(holds),
        "doubles": doubles,
        "cpu": {
            "machine_busy": busy / total if total else None,
            **{k: v / cpu_seconds for k, v in cpu_used(cpu0, cpu1).items()},
        },
    }
    c = result["claim_latency"]
    log(
        f"{name}: {claims} claims in {window:.0f} s = {result['claims_per_s']:.0f}/s; "
        f"claim p50 {ms(c.get('p50'))}, p99 {ms(c.get('p99'))}; nothing {result['nothing']}; "
        f"doubles {doubles['pairs']}; release problems {result['release_problems'] or 0}; "
        f"claim errors {result['claim_errors'] or 0}"
    )
    return result


def phase_bare(ctx: Ctx) -> None:
    a = ctx.args
    between_phases(ctx, "before the bare SQL loop")
    ctx.results["phases"]["bare"] = run_clients(
        ctx, "bare", "bare", seconds=a.seconds, warmup=a.warmup, hold_ms=a.hold_ms
    )
    ctx.results["phases"]["bare"]["left_claimed"] = between_phases(ctx, "after the bare SQL loop")


SERVER_CONFIG = "gunicorn.conf.py"  # the product's server configuration (repository root)


def server_config(ctx: Ctx) -> dict[str, Any]:
    """What the server runs with: the product's ``gunicorn.conf.py`` read with the
    server's environment, then the command line's ``--server-workers/-threads``."""
    import runpy

    saved = dict(os.environ)
    try:
        os.environ.update(ctx.env())
        conf = runpy.run_path(str(REPO / SERVER_CONFIG))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    a = ctx.args
    return {
        "worker_class": conf.get("worker_class", "sync"),
        "workers": a.server_workers if a.server_workers is not None else conf.get("workers", 1),
        "threads": a.server_threads if a.server_threads is not None else conf.get("threads", 1),
        "reuse_port": bool(conf.get("reuse_port", False)),
        "keepalive": conf.get("keepalive", 2),
    }


def server_argv(ctx: Ctx, port: int) -> list[str]:
    """gunicorn with the product's configuration; only the address (a free port) and
    what the command line asks for differ."""
    a = ctx.args
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        SERVER_CONFIG,
        "teleradiology.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--error-logfile",
        "-",
    ]
    if a.server_workers is not None:
        argv += ["--workers", str(a.server_workers)]
    if a.server_threads is not None:
        argv += ["--threads", str(a.server_threads)]
    return argv


def wait_for_server(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if SERVER.proc is not None and SERVER.proc.poll() is not None:
            break
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz", headers={"X-Forwarded-Proto": "https"})
            response = conn.getresponse()
            last = f"{response.status} {response.read()[:200]!r}"
            conn.close()
            if response.status == 200:
                return
        time.sleep(0.2)
    tail = SERVER.log_path.read_text()[-3000:] if SERVER.log_path else ""
    raise RuntimeError(f"the server did not answer /healthz ({last}):\n{tail}")


def server_log_problems(path: Path) -> dict[str, Any]:
    text = path.read_text(errors="replace") if path.exists() else ""
    lines = [
        line
        for line in text.splitlines()
        if re.search(r"\b(ERROR|CRITICAL)\b|Traceback|WORKER TIMEOUT", line)
    ]
    return {"count": len(lines), "examples": lines[:5]}


def db_claim_check(ctx: Ctx, after_id: int, readers: dict[int, int]) -> dict[str, Any]:
    """The database's own record of the API phase: one ``claimed`` transition per claim
    the clients logged, and no study claimed twice without a release in between."""
    from studies.models import StudyTransition

    rows = (
        StudyTransition.objects.filter(pk__gt=after_id)
        .order_by("study_id", "pk")
        .values_list("study_id", "to_status", "actor_id")
    )
    claims: Counter[tuple[int, int]] = Counter()
    back_to_back = 0
    last: dict[int, str] = {}
    for study_id, to_status, actor_id in rows:
        if to_status == "claimed":
            claims[(study_id, readers.get(actor_id or 0, -1))] += 1
            if last.get(study_id) == "claimed":
                back_to_back += 1
        last[study_id] = to_status
    return {"claims": sum(claims.values()), "by_study_reader": claims, "back_to_back": back_to_back}


def phase_api(ctx: Ctx) -> None:
    from django.contrib.auth.models import User

    from studies.models import StudyTransition

    a = ctx.args
    between_phases(ctx, "before the API")
    before = StudyTransition.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    port = free_port()
    log_path = ctx.work / "gunicorn.log"
    conf = ctx.results["server"] = server_config(ctx)
    log(
        f"starting gunicorn on 127.0.0.1:{port} with {SERVER_CONFIG} ({conf['workers']} "
        f"workers x {conf['threads']} threads, {conf['worker_class']}, reuse_port "
        f"{conf['reuse_port']}, DJANGO_ENV=production)"
    )
    SERVER.start(server_argv(ctx, port), ctx.env(), log_path)
    try:
        wait_for_server(port, timeout=60)
        result = run_clients(
            ctx, "api", "api", seconds=a.seconds, warmup=a.warmup, hold_ms=a.hold_ms, port=port
        )
    finally:
        SERVER.stop()
    result["server_log"] = server_log_problems(log_path)
    users = dict(
        User.objects.filter(username__startswith="bench-reader-")
        .select_related("radiologist")
        .values_list("pk", "radiologist__pk")
    )
    db = db_claim_check(ctx, before, users)
    logged: Counter[tuple[int, int]] = Counter(
        (h.study, h.reader) for h in read_holds(ctx.work / "api")
    )
    result["db_check"] = {
        "transitions_claimed": db["claims"],
        "claims_logged": sum(logged.values()),
        "same_claims": db["by_study_reader"] == logged,
        "claimed_back_to_back": db["back_to_back"],
    }
    result["left_claimed"] = between_phases(ctx, "after the API")
    ctx.results["phases"]["api"] = result


def phase_naive(ctx: Ctx) -> None:
    """The control: read then write with no lock, once per hold (0 ms: the same
    claim-then-release-at-once loop as the API and the bare loop)."""
    a = ctx.args
    for hold in a.naive_hold_ms:
        name = f"naive-{hold:g}ms"
        result = run_clients(ctx, name, "naive", seconds=a.naive_seconds, warmup=0, hold_ms=hold)
        result["left_claimed"] = between_phases(ctx, f"after the naive control ({hold:g} ms)")
        ctx.results["phases"][name] = result


def phase_profile(ctx: Ctx) -> None:
    """One reader claiming and releasing in-process, one at a time (no contention, no
    HTTP): what a claim costs the server by itself, and the plans of both claim queries."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from network.models import Radiologist
    from worklist.selectors import claim_candidates
    from worklist.services.claims import study_claim_next, study_release

    reader = Radiologist.objects.get(pk=ctx.readers[0]["radiologist"])
    cycles: dict[str, list[float]] = {"claim": [], "release": [], "claim_db": [], "release_db": []}
    queries: dict[str, int] = {}
    for _ in range(ctx.args.profile_cycles):
        with CaptureQueriesContext(connection) as captured:
            t0 = time.perf_counter()
            study = study_claim_next(radiologist=reader)
            t1 = time.perf_counter()
        if study is None:
            raise RuntimeError("profile: nothing to claim")
        cycles["claim"].append(t1 - t0)
        cycles["claim_db"].append(sum(float(q["time"]) for q in captured.captured_queries))
        queries["claim"] = len(captured.captured_queries)
        with CaptureQueriesContext(connection) as captured:
            t0 = time.perf_counter()
            study_release(study_id=study.pk, radiologist=reader, reason="benchmark profile")
            t1 = time.perf_counter()
        cycles["release"].append(t1 - t0)
        cycles["release_db"].append(sum(float(q["time"]) for q in captured.captured_queries))
        queries["release"] = len(captured.captured_queries)
    with transaction.atomic():
        # The statement study_claim_next runs (it reads the top study alone first).
        app_plan = (
            claim_candidates(radiologist=reader)
            .select_for_update(skip_locked=True, of=("self",))[:1]
            .explain(analyze=True)
        )
    bare_plan = "\n".join(
        str(r[0])
        for r in ctx.conn.execute(
            "EXPLAIN ANALYZE " + ctx.sql["claim_select"], (reader.pk,)
        ).fetchall()
    )
    ctx.results["profile"] = {
        "cycles": ctx.args.profile_cycles,
        "queries": queries,
        **{k: summary(v) for k, v in cycles.items()},
        "app_plan": app_plan,
        "bare_plan": bare_plan,
    }
    c = ctx.results["profile"]
    log(
        f"in-process, one at a time: claim p50 {ms(c['claim'].get('p50'))} "
        f"({queries['claim']} queries, database {ms(c['claim_db'].get('p50'))}), release p50 "
        f"{ms(c['release'].get('p50'))} ({queries['release']} queries)"
    )
    between_phases(ctx, "after the in-process profile")


# --- report --------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    return {"cpus": str(os.cpu_count() or "?"), "model": model, "memory": mem}


def versions(ctx: Ctx) -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for name in ("django", "djangorestframework", "gunicorn", "psycopg"):
        with contextlib.suppress(Exception):
            out[name] = version(name)
    with contextlib.suppress(Exception):
        out["postgresql"] = str(ctx.conn.execute("SHOW server_version").fetchone()[0]).split()[0]
        out["pg settings"] = ", ".join(
            f"{n}={s}"
            for n, s in ctx.conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                "('shared_buffers', 'synchronous_commit', 'max_connections', 'jit') "
                "ORDER BY name"
            )
        )
    return out


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def _p(phase: dict[str, Any], key: str) -> float | None:
    value = phase.get("claim_latency", {}).get(key)
    return float(value) if value is not None else None


def naive_phases(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [ph for name, ph in results["phases"].items() if name.startswith("naive-")]


def assess(results: dict[str, Any], hold_ms: float) -> dict[str, Any]:
    phases = results["phases"]
    api, bare = phases.get("api", {}), phases.get("bare", {})
    api_p99, bare_p99 = _p(api, "p99"), _p(bare, "p99")
    ratio = api_p99 / bare_p99 if api_p99 is not None and bare_p99 else None
    naive = {ph["hold_ms"]: ph["doubles"]["pairs"] for ph in naive_phases(results)}
    if not naive:
        detector = None
    elif naive.get(hold_ms, 0) > 0:
        detector = "proven"  # doubles seen in the very loop the API and bare loop run
    elif any(naive.values()):
        held = ", ".join(f"{h:g} ms" for h, n in naive.items() if n)
        detector = f"proven only with a hold ({held}): none seen at {hold_ms:g} ms"
    else:
        detector = "UNPROVEN: it found no double in the naive control"
    return {
        "ratio": ratio,
        "latency_ok": ratio <= TARGET_RATIO if ratio is not None else None,
        "api_doubles": api["doubles"]["pairs"] if api else None,
        "bare_doubles": bare["doubles"]["pairs"] if bare else None,
        "naive_doubles": naive,
        "detector": detector,
        "detector_proven": detector.startswith("proven") if detector else None,
    }


def _errors_text(phase: dict[str, Any]) -> str:
    parts = []
    if phase.get("claim_errors"):
        parts.append("claims: " + ", ".join(f"{k} x{v}" for k, v in phase["claim_errors"].items()))
    if phase.get("release_problems"):
        parts.append(
            "releases: " + ", ".join(f"{k} x{v}" for k, v in phase["release_problems"].items())
        )
    if phase.get("reconnects"):
        parts.append(f"reconnects x{phase['reconnects']}")
    return "; ".join(parts) or "0"


def shown_args(argv: Sequence[str]) -> list[str]:
    """The command's arguments less those that do not change what is measured."""
    out: list[str] = []
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
        elif arg == "--json":
            skip_next = True
        elif not (arg.startswith("--json=") or arg in ("--keep", "--no-write")):
            out.append(arg)
    return out


def build_report(ctx: Ctx, elapsed: float, argv: Sequence[str]) -> tuple[str, str]:
    r = ctx.results
    args = ctx.args
    m, v = machine(), versions(ctx)
    verdicts = assess(r, args.hold_ms)
    r["assessment"] = verdicts
    phases = r["phases"]
    api, bare = phases.get("api", {}), phases.get("bare", {})
    naive = naive_phases(r)
    data = r.get("data", {})
    command = " ".join([".venv/bin/python bench/claims/run.py", *shown_args(argv)])

    def row(label: str, ph: dict[str, Any]) -> str:
        if not ph:
            return f"| {label} | not run | | | | | | |"
        c, rl = ph["claim_latency"], ph["release_latency"]
        d = ph["doubles"]
        return (
            f"| {label} | {ph['claims_per_s']:,.0f} | {ms(c.get('p50'))} | {ms(c.get('p99'))} "
            f"| {ms(rl.get('p50'))} / {ms(rl.get('p99'))} | {ph['nothing']} "
            f"| {_errors_text(ph)} | {d['pairs']} ({d['studies']} studies) |"
        )

    table = [
        "| loop | claims/s | claim p50 | claim p99 | release p50 / p99 | nothing to claim "
        "| errors, non-2xx | doubles (clients' logs) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
        row("bare SQL (reference)", bare),
        row("API (`POST worklist/next/`)", api),
        *(row(f"naive read-then-write, {ph['hold_ms']:g} ms hold (control)", ph) for ph in naive),
    ]
    ratio = verdicts["ratio"]
    ratio_text = (
        f"{ms(_p(api, 'p99'))} / {ms(_p(bare, 'p99'))} = {ratio:.1f}x" if ratio is not None else "-"
    )
    naive_text = ", ".join(f"{n} at {h:g} ms" for h, n in verdicts["naive_doubles"].items())
    detector = verdicts["detector"]
    targets = [
        "| target | result | verdict |",
        "| --- | --- | --- |",
        f"| API claim p99 <= {TARGET_RATIO:g}x the bare loop's p99 (same run) | {ratio_text} "
        f"| {verdict(verdicts['latency_ok'])} |",
        f"| 0 doubles through the API | {verdicts['api_doubles']} "
        f"| {verdict(verdicts['api_doubles'] == 0 if api else None)} |",
        f"| 0 doubles in the bare loop | {verdicts['bare_doubles']} "
        f"| {verdict(verdicts['bare_doubles'] == 0 if bare else None)} |",
        f"| the detector sees the naive control's doubles | {naive_text or '-'} | "
        + (
            "n/a"
            if detector is None
            else (detector if detector.startswith("proven") else f"**{detector}**")
        )
        + " |",
    ]
    pg = v.get("postgresql", "?")
    priorities = ", ".join(f"{k} {n}" for k, n in data.get("priorities", {}).items())
    header = [
        SECTION_TITLE,
        "",
        f"Measured {utcnow():%Y-%m-%d %H:%M} UTC on {m['cpus']} CPU(s) ({m['model']}), "
        f"{m['memory']} RAM; PostgreSQL {pg} ({v.get('pg settings', '?')}), "
        f"Python {v.get('python')}, Django {v.get('django')}, DRF "
        f"{v.get('djangorestframework')}, gunicorn {v.get('gunicorn')}, psycopg "
        f"{v.get('psycopg')}. One run took {elapsed / 60:.1f} min.",
        "",
        "Command (from the repository root):",
        "",
        f"    {command}",
        "",
        f"{args.clients} clients, one process each, each signed in as its own radiologist "
        f"(a DRF token); {data.get('studies', 0):,} studies ({priorities}) routed by the "
        "app's `study_route` and so offered to every reader (all licensed, privileged, on "
        "shift, under their cap). Each loop runs "
        f"{args.warmup:g} s of warm-up, then {args.seconds:g} s measured (each naive control: "
        f"{args.naive_seconds:g} s, no warm-up); claims/s and latencies count the claims "
        "answered inside the measured window, errors and doubles the whole run. A claim's "
        "latency is what its client saw: the `next` request until its response was read, or "
        "the bare loop's BEGIN until its COMMIT returned. Every loop releases at once "
        f"({args.hold_ms:g} ms hold) unless said otherwise.",
        "",
        *table,
        "",
        *targets,
        "",
    ]
    conf = r.get("server") or {}
    server_text = (
        f"{conf['workers']} workers x {conf['threads']} threads, {conf['worker_class']}, "
        + (
            "`reuse_port`: a listening socket per worker, "
            if conf.get("reuse_port")
            else "one shared listening socket, "
        )
        + f"keep-alive {conf['keepalive']} s"
        if conf
        else "not started"
    )
    notes = [
        "### How it was measured",
        "",
        f"- **API**: gunicorn with the product's `{SERVER_CONFIG}` ({server_text}) "
        "serving `teleradiology.wsgi` with `DJANGO_ENV=production` (DEBUG off, "
        "a random SECRET_KEY, persistent database connections as configured) against "
        "PostgreSQL, with no proxy in front: clients send `X-Forwarded-Proto: https` as a "
        "TLS-terminating proxy would. Each client loops `POST /api/v1/worklist/next/` then "
        "`POST /api/v1/studies/{id}/release/` with a reason, on one keep-alive connection"
        + (
            " (connections per worker process: "
            + ", ".join(map(str, api["connections_per_worker"]))
            + ")"
            if api.get("connections_per_worker")
            else ""
        )
        + ".",
        "- **Bare SQL loop** (reference): the app's own tables (`studies_study`, "
        "`worklist_offer`), one psycopg connection per client: `BEGIN; SELECT s.id ... WHERE "
        "status = 'offered' AND EXISTS (an open offer to me) ORDER BY priority, sla_due_at, "
        "received_at, id LIMIT 1 FOR UPDATE OF s SKIP LOCKED; UPDATE ... SET status = "
        "'claimed', assigned_radiologist_id = me; COMMIT`, then the release `UPDATE ... "
        "WHERE id = ... AND status = 'claimed' AND assigned_radiologist_id = me` "
        "(autocommit). No eligibility re-check, transition or audit row: what the API "
        "adds on top is the difference.",
        "- **Naive control**: the same rows read, then written with no lock and no "
        "condition (`SELECT ... LIMIT 1`, then `UPDATE ... WHERE id = ...`, each "
        "autocommitted), with the same release; once releasing at once like the loops "
        "above, once holding each claim a little before releasing it.",
        "- **Doubles** come from the clients' own logs, not from the database: each client "
        "writes (study, reader, claim sent, claim answered, release sent, release answered) "
        "for every claim it won; a double is two claims of one study by different readers "
        "whose certain holding intervals (from the claim's answer to the sending of the "
        "release) overlap, so a double is never counted by mistake, but one shorter than "
        "the time between reading a claim's answer and sending its release is missed: the "
        "naive rows show how many it still sees. Releases refused because another reader "
        "held the study ('lost' in SQL, 409 through the API) are a second sign, under errors.",
        "- Before each loop every study is put back on offer and the tables are "
        "`VACUUM ANALYZE`d, so that each loop starts from the same rows and statistics.",
    ]
    if api.get("db_check"):
        dc = api["db_check"]
        same = "the same" if dc["same_claims"] else "**not the same**"
        notes.append(
            f"- **Cross-check with the database** (API): {dc['transitions_claimed']:,} "
            f"`claimed` transitions written during the run for {dc['claims_logged']:,} claims "
            f"in the clients' logs ({same} study/reader pairs); "
            f"{dc['claimed_back_to_back']} claims of a study with no release since the last."
        )
    prof = r.get("profile")
    if prof:
        notes.append(
            f"- **In-process, one claim at a time** (one reader, no HTTP, no contention, "
            f"{prof['cycles']} cycles): `study_claim_next` p50 {ms(prof['claim'].get('p50'))} "
            f"({prof['queries'].get('claim')} queries, of which database time p50 "
            f"{ms(prof['claim_db'].get('p50'))}); `study_release` p50 "
            f"{ms(prof['release'].get('p50'))} ({prof['queries'].get('release')} queries, "
            f"database {ms(prof['release_db'].get('p50'))})."
        )
    cpu_rows = []
    named = [("bare SQL", bare), ("API", api)] + [(f"naive {p['hold_ms']:g} ms", p) for p in naive]
    for label, ph in named:
        if ph:
            c = ph["cpu"]
            busy = c.get("machine_busy")
            cpu_rows.append(
                f"{label}: machine {busy * 100:.0f}% busy, clients {c['clients']:.2f}, "
                f"server {c['server']:.2f}, PostgreSQL {c['postgres']:.2f}"
                if busy is not None
                else f"{label}: -"
            )
    notes.append(
        f"- **CPU**: the {m['cpus']} cores are shared by the clients, the server and "
        "PostgreSQL; cores used, averaged over the measured window: " + "; ".join(cpu_rows) + "."
    )
    if api.get("server_log", {}).get("count"):
        notes.append(
            f"- Server log: {api['server_log']['count']} error lines, e.g. "
            + " / ".join(api["server_log"]["examples"][:2])
        )
    for label, ph in named:
        if ph.get("error_examples"):
            notes.append(f"- {label} error examples: " + " / ".join(ph["error_examples"][:3]))
        if ph.get("left_claimed"):
            notes.append(f"- {label}: {ph['left_claimed']} studies were left claimed")
    for ph in naive:
        if ph["doubles"]["examples"]:
            notes.append(
                f"- Naive control ({ph['hold_ms']:g} ms), e.g.: "
                + "; ".join(ph["doubles"]["examples"][:2])
            )
    notes += [f"- {n}" for n in r["notes"]]
    notes += [f"- **Warning**: {w}" for w in r["warnings"]]
    plans = []
    if prof:
        plans = [
            "",
            "Plans (EXPLAIN ANALYZE, after the run, no contention): the app's `next` "
            "query (`claim_candidates` ... `FOR UPDATE SKIP LOCKED`, the top study):",
            "",
            *("    " + line for line in prof["app_plan"].splitlines()),
            "",
            "the bare loop's claim query:",
            "",
            *("    " + line for line in prof["bare_plan"].splitlines()),
        ]
    section = "\n".join(header + notes + plans) + "\n"
    console = "\n".join([*table, "", *targets, "", *notes])
    return console, section


def update_benchmarks(section: str) -> Path:
    path = REPO / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"  # re-read right before writing
    pattern = re.compile(rf"^{re.escape(SECTION_TITLE)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")
    return path


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    a = p.add_argument
    a("--clients", type=int, default=32, help="concurrent clients (and readers)")
    a("--seconds", type=float, default=60.0, help="measured seconds of each loop")
    a("--warmup", type=float, default=5.0, help="seconds run before measuring (each loop)")
    a("--studies", type=int, default=2000, help="studies on offer to every reader")
    a("--hold-ms", type=float, default=0.0, help="API and bare loop: ms between claim and release")
    a("--naive-seconds", type=float, default=10.0, help="how long the naive control runs")
    a(
        "--naive-hold-ms",
        type=lambda text: [float(x) for x in text.split(",") if x],
        default=[0.0, 2.0],
        help="naive control: ms each claim is held before its release, one run each "
        "(comma-separated; default 0,2)",
    )
    a("--profile-cycles", type=int, default=50, help="in-process claim/release cycles timed")
    a(
        "--server-workers",
        type=int,
        default=None,
        help=f"gunicorn worker processes (default: the product's, {SERVER_CONFIG})",
    )
    a(
        "--server-threads",
        type=int,
        default=None,
        help=f"threads per worker (default: the product's, {SERVER_CONFIG})",
    )
    a(
        "--skip",
        default="",
        help="parts to leave out: bare, api, profile, naive (comma-separated)",
    )
    a("--seed", type=int, default=20260605)
    a("--database-url", default="postgres://postgres@127.0.0.1:5432")
    a("--db-name", default="telerad_bench_claims")
    a("--redis-url", default="redis://127.0.0.1:6379/0")
    a("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    a("--keep", action="store_true", help="keep the database and the work folder")
    a("--json", help="also write the raw results to this file")
    args = p.parse_args(argv)
    args.skip = {x for x in args.skip.split(",") if x}
    if args.skip - {"bare", "api", "profile", "naive"}:
        p.error(f"unknown loops in --skip: {sorted(args.skip)}")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", args.db_name):
        p.error(f"unsafe database name {args.db_name!r}")
    if args.clients < 1 or args.studies < args.clients:
        p.error("need at least one client and at least as many studies as clients")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-claims-"))
    ctx = Ctx(args, work)
    others = other_benchmarks()
    if others:
        ctx.warn(f"other benchmarks were running at the start: {'; '.join(others)[:300]}")
    log(f"work folder {work}; database {args.db_name}")
    failed = False
    try:
        prepare_database(ctx)
        setup_django(ctx)
        build_data(ctx)
        if "bare" not in args.skip:
            phase_bare(ctx)
        if "api" not in args.skip:
            phase_api(ctx)
        if "profile" not in args.skip:
            phase_profile(ctx)
        if "naive" not in args.skip:
            phase_naive(ctx)
        if args.skip:
            ctx.results["notes"].append(f"left out (--skip): {', '.join(sorted(args.skip))}")
    except BaseException as exc:
        failed = True
        ctx.results["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        SERVER.stop()
    elapsed = time.monotonic() - started
    verdicts: dict[str, Any] = {}
    try:
        if failed:
            ctx.results["warnings"].append(f"the run failed: {ctx.results.get('error')}")
        if ctx.results["phases"] or "profile" in ctx.results:
            console, section = build_report(ctx, elapsed, raw_argv)
            verdicts = ctx.results["assessment"]
            ctx.results["section"] = section
            print("\n" + console + "\n", flush=True)
            if not args.no_write and not failed:
                path = update_benchmarks(section)
                log(f"updated the '{SECTION_TITLE[3:]}' section of {path.name}")
            elif not args.no_write:
                (work / "section.md").write_text(section)
                log(f"run failed: BENCHMARKS.md not touched (section in {work}/section.md)")
        if args.json:
            Path(args.json).write_text(json.dumps(ctx.results, indent=2, default=str))
    finally:
        with contextlib.suppress(Exception):
            if ctx.conn is not None:
                ctx.conn.close()
        if not args.keep:
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
            with contextlib.suppress(Exception):
                admin_sql(ctx, f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
            if not failed:
                shutil.rmtree(work, ignore_errors=True)
        log(f"done in {(time.monotonic() - started) / 60:.1f} min")
    if failed:
        return 1
    # A double, or a detector that found nothing in the control, is a finding to fix.
    bad = verdicts.get("api_doubles") or verdicts.get("bare_doubles")
    return 3 if bad or verdicts.get("detector_proven") is False else 0


if __name__ == "__main__":
    sys.exit(main())

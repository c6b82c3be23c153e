"""The DICOMweb benchmark's phases: data (files, filing, the big history),
servers, checks, then the four measurements, each filling the results."""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench import host
from bench.database import Database, explain_analyze, manage
from bench.dicomweb import client, datagen, peers, workload
from bench.dicomweb.peers import Server
from bench.dicomweb.workload import Study
from bench.harness import Run, log
from bench.stats import median_range, summary


@dataclass
class Bench:
    """What every phase needs."""

    run: Run
    db: Database
    env: dict[str, str]  # the app's (development settings, DEBUG off): this process
    server_env: dict[str, str]  # the server's: production settings
    conn: Any = None
    token: str = ""
    user_id: int = 0
    studies: dict[str, Study] = field(default_factory=dict)
    servers: dict[str, Server] = field(default_factory=dict)
    patients: list[str] = field(default_factory=list)

    @property
    def args(self) -> Any:
        return self.run.args

    @property
    def results(self) -> dict[str, Any]:
        return self.run.results

    def others(self, key: str = "others") -> None:
        """Note the other benchmarks and test runs on the machine now (under
        ``others`` during the measurements, ``others_setup`` while loading data)."""
        seen: list[str] = self.results.setdefault(key, [])
        for item in host.other_work(exclude="bench.dicomweb", tests=True):
            if item not in seen:
                seen.append(item)

    def quiet(self, phase: str) -> None:
        """Before a measurement: wait (up to --wait-quiet seconds) until no other
        benchmark or test run is seen, since they share the 2 cores; then note
        whatever still runs."""
        deadline = time.monotonic() + self.args.wait_quiet
        waited = time.monotonic()
        while (busy := host.other_work(exclude="bench.dicomweb", tests=True)) and (
            time.monotonic() < deadline
        ):
            if time.monotonic() - waited < 1:
                log(f"waiting for other work to finish before {phase}: {busy[0]}")
            time.sleep(5)
        seconds = time.monotonic() - waited
        if seconds >= 1:
            self.results.setdefault("waited", {})[phase] = seconds
        self.others()

    def viewed(self) -> list[Study]:
        """The studies a viewer opens (both servers hold them)."""
        return [self.studies["ct"], self.studies["mr"]]


# --- data ----------------------------------------------------------------------------------


def prepare_database(b: Bench) -> None:
    log(f"creating database {b.db.name}, migrating, seed_demo")
    b.db.create_migrated(b.env)
    manage(["seed_demo"], b.env)
    from bench import harness

    harness.setup_django(b.env)
    b.conn = b.db.connect()
    b.results["versions"] = {
        **host.versions("django", "djangorestframework", "psycopg", "pydicom", "gunicorn"),
        **host.postgres(b.conn, ["shared_buffers", "work_mem", "jit"]),
        "orthanc": peers.orthanc_version(),
    }
    from django.contrib.auth.models import User

    from accounts.models import ApiToken

    admin = User.objects.get(username="admin")  # seed_demo's group admin (Meridian)
    b.token = ApiToken.objects.create(user=admin)[1]
    b.user_id = admin.pk


def make_studies(b: Bench) -> None:
    a = b.args
    b.studies = {
        "ct": workload.make_study(
            "ct", f"CT, 1 series x {a.ct_slices}, 512x512",
            modality="CT", series=1, per_series=a.ct_slices, rows=512, columns=512,
            patient_id="DWB-CT-0001", accession="DWBCT0001",
            description="CT CHEST ABD PELVIS W CONTRAST", body_part="CHEST",
        ),
        "mr": workload.make_study(
            "mr", f"MR, {a.mr_series} series x {a.mr_per_series}, 256x256",
            modality="MR", series=a.mr_series, per_series=a.mr_per_series, rows=256,
            columns=256, patient_id="DWB-MR-0001", accession="DWBMR0001",
            description="MR BRAIN W WO CONTRAST", body_part="BRAIN",
        ),
        "big": workload.make_study(
            "big", f"CT, 1 series x {a.big_instances}, 512x512",
            modality="CT", series=1, per_series=a.big_instances, rows=512, columns=512,
            patient_id="DWB-BIG-0001", accession="DWBBIG001",
            description="CT ANGIO RUNOFF", body_part="LEG",
        ),
    }  # fmt: skip
    t0 = time.monotonic()
    for study in b.viewed():
        log(f"writing {study.label}")
        workload.write_files(study, b.run.work / "files" / study.key)
    b.results["write_seconds"] = time.monotonic() - t0


def file_studies(b: Bench) -> None:
    """Our app: every instance through the gateway's filing service, then ready and
    its DICOM JSON built as production does."""
    filed: dict[str, workload.Filed] = {}
    for study in b.studies.values():
        log(f"filing {study.label} through ingest.services.instance_receive")
        filed[study.key] = workload.file_study(study, keep_files=study.key != "big")
        f = filed[study.key]
        log(f"  {f.instances} instances in {f.seconds:.1f} s ({f.instances / f.seconds:.0f}/s)")
    log("studies_mark_ready, then instances_dicom_json_build (the task's body)")
    workload.mark_ready_and_build(list(b.studies.values()), filed)
    mismatches = {s.key: workload.check_stored(s) for s in b.viewed()}
    if any(mismatches.values()):
        raise RuntimeError(f"stored files differ from the files sent: {mismatches}")
    b.results["filed"] = {
        key: {
            "instances": f.instances,
            "seconds": f.seconds,
            "json_seconds": f.json_seconds,
            "json_built": f.json_built,
            "outcomes": f.outcomes,
        }
        for key, f in filed.items()
    }
    b.results["studies"] = {key: s.facts() for key, s in b.studies.items()}


def load_history(b: Bench) -> None:
    log(f"loading {b.args.studies:,} studies with COPY")
    loaded = datagen.load(b.conn, studies=b.args.studies, work=b.run.work, seed=b.args.seed)
    t0 = time.monotonic()
    b.conn.execute("VACUUM (ANALYZE)")
    vacuum = time.monotonic() - t0
    b.patients = loaded.sample_patients
    total = b.conn.execute("SELECT count(*) FROM studies_study").fetchone()[0]
    facility_total = b.conn.execute(
        "SELECT count(*) FROM studies_study WHERE facility_id = %s", (loaded.facility_id,)
    ).fetchone()[0]
    b.results["history"] = {
        "studies": loaded.studies,
        "patients": loaded.patients,
        "copy_seconds": loaded.seconds,
        "vacuum_analyze_seconds": vacuum,
        "studies_in_database": total,
        "studies_of_the_facility": facility_total,
    }
    log(f"  {loaded.studies:,} studies of {loaded.patients:,} patients in {loaded.seconds:.0f} s")


# --- servers -------------------------------------------------------------------------------


def start_servers(b: Bench) -> None:
    log("starting Orthanc with its DICOMweb plugin")
    orthanc = peers.orthanc_start(b.run.work / "orthanc")
    b.servers["orthanc"] = orthanc
    loaded = {}
    for study in b.viewed():
        seconds = workload.orthanc_load(orthanc.port, study)
        loaded[study.key] = seconds
        log(f"  {study.label} into Orthanc (POST /instances) in {seconds:.1f} s")
    b.results["orthanc_load_seconds"] = loaded
    log("starting ours: gunicorn -c gunicorn.conf.py, production settings")
    b.servers["ours"] = peers.ours_start(b.run.work / "ours", b.server_env, b.token)
    b.results["servers"] = {
        key: {"label": s.label, "description": s.description} for key, s in b.servers.items()
    }


def stop_servers(b: Bench) -> None:
    for server in b.servers.values():
        server.stop()


PROBLEM = re.compile(r"Traceback|\bERROR\b|CRITICAL|WORKER TIMEOUT|\bE\d{4} ")


def scan_logs(b: Bench) -> None:
    """Problems the servers logged: counted by message (first 160 characters)."""
    found: dict[str, dict[str, int]] = {}
    for key, server in b.servers.items():
        counts: Counter[str] = Counter()
        if server.log_path.exists():
            for line in server.log_path.read_text(errors="replace").splitlines():
                if PROBLEM.search(line):
                    counts[re.sub(r"\d+", "N", line.strip())[:160]] += 1
        found[key] = dict(counts.most_common(10))
    b.results["server_log_problems"] = found


def check(b: Bench) -> None:
    """Both servers answer the same series, metadata and bytes for each study."""
    out: dict[str, dict[str, Any]] = {}
    for study in b.viewed():
        for key, server in b.servers.items():
            log(f"checking {key} on {study.key}: series, metadata, frames, whole study")
            out.setdefault(study.key, {})[key] = client.check_study(server, study)
    b.results["checks"] = out


# --- 1. time to first image -------------------------------------------------------------------


def time_to_first_image(b: Bench) -> None:
    a = b.args
    out: dict[str, Any] = {}
    for study in b.viewed():
        times: dict[str, list[dict[str, float]]] = {k: [] for k in b.servers}
        errors: dict[str, list[str]] = {k: [] for k in b.servers}
        log(f"time to first image, {study.key}: {a.warmup} warm-up + {a.iterations} rounds")
        for round_no in range(a.warmup + a.iterations):
            # Alternate which server goes first, so neither always follows the other.
            order = list(b.servers.values())
            if round_no % 2:
                order.reverse()
            for server in order:
                try:
                    steps = client.first_image(server, study)
                except client.ServerError as exc:
                    errors[server.key].append(str(exc)[:300])
                    continue
                if round_no >= a.warmup:
                    times[server.key].append(steps)
        out[study.key] = {
            key: {
                **{
                    step: summary([t[step] for t in runs])
                    for step in ("total", "qido", "metadata", "frame")
                },
                "errors": errors[key][:5],
                "error_count": len(errors[key]),
            }
            for key, runs in times.items()
        }
        for key in b.servers:
            s = out[study.key][key]["total"]
            if s.get("n"):
                log(f"  {key:8} p50 {s['p50'] * 1000:.1f} ms  p95 {s['p95'] * 1000:.1f} ms")
    b.results["first_image"] = out


# --- 2. retrieval ---------------------------------------------------------------------------


def retrieval(b: Bench) -> None:
    a = b.args
    out: dict[str, Any] = {}
    for study in b.viewed():
        out[study.key] = {}
        for variant, gzip_ok in (("browser", True), ("identity", False)):
            runs: dict[str, list[dict[str, Any]]] = {k: [] for k in b.servers}
            for server in b.servers.values():  # a warm-up pass each
                client.frames_pass(server, study, connections=a.connections, gzip_ok=gzip_ok)
            for _ in range(a.repeat):
                for server in b.servers.values():
                    p = client.frames_pass(
                        server, study, connections=a.connections, gzip_ok=gzip_ok
                    )
                    runs[server.key].append(p.as_dict())
            out[study.key][f"frames_{variant}"] = _runs(runs)
            _log_rates(f"frames {study.key} ({variant})", out[study.key][f"frames_{variant}"])
        runs = {k: [] for k in b.servers}
        for _ in range(a.repeat):
            for server in b.servers.values():
                sampler = client.RssSampler(server.worker_pids())
                p = client.retrieve_pass(server, study, sampler=sampler)
                runs[server.key].append({**p.as_dict(), **sampler.growth()})
        out[study.key]["retrieve"] = _runs(runs)
        _log_rates(f"retrieve {study.key}", out[study.key]["retrieve"])
    b.results["retrieval"] = out


def _runs(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each server's runs and the median (min-max) of its rates."""
    out = {}
    for key, items in runs.items():
        per_second = median_range([r["per_second"] for r in items])
        mb = median_range([r["mb_per_second"] for r in items])
        statuses: Counter[str] = Counter()
        for r in items:
            statuses.update(r["statuses"])
        out[key] = {
            "runs": items,
            "per_second": per_second,
            "mb_per_second": mb,
            "statuses": dict(statuses),
            "server_cpu_per_mb": _cpu_per_mb(items, "server_cpu"),
            "client_cpu_per_mb": _cpu_per_mb(items, "client_cpu"),
        }
    return out


def _cpu_per_mb(items: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] / (r["payload_bytes"] / 1e6) for r in items if r.get(key) is not None]
    return statistics.median(values) if values else None


def _log_rates(what: str, data: dict[str, Any]) -> None:
    text = "  ".join(
        f"{key} {v['mb_per_second'][0]:.0f} MB/s ({v['per_second'][0]:.0f}/s)"
        for key, v in data.items()
        if v.get("mb_per_second")
    )
    log(f"  {what}: {text}")


# --- 3. QIDO -----------------------------------------------------------------------------------


def qido(b: Bench) -> None:
    a = b.args
    ours, orthanc = b.servers["ours"], b.servers["orthanc"]
    log(f"QIDO studies?PatientID=: {a.qido_requests} requests per case")
    viewed_patients = [s.patient_id for s in b.viewed()]
    cases = [
        ("history", ours, b.patients, "ours, a patient of the history (1 of its patients)"),
        ("viewed_ours", ours, viewed_patients, "ours, the viewed studies' patients"),
        ("viewed_orthanc", orthanc, viewed_patients, "Orthanc, the viewed studies' patients"),
    ]
    out: dict[str, Any] = {}
    for key, server, patients, label in cases:
        times, found = client.qido_times(server, patients, n=a.qido_requests, warmup=10)
        out[key] = {
            "label": label,
            "server": server.key,
            **summary(times),
            "results": summary([float(n) for n in found]),
        }
        log(f"  {key:15} p50 {out[key]['p50'] * 1000:.1f} ms  p95 {out[key]['p95'] * 1000:.1f} ms")
    out["in_process"] = search_in_process(b)
    b.results["qido"] = out


def search_in_process(b: Bench, n: int = 50) -> dict[str, Any]:
    """The study search as the view runs it, in this process: the statements it sends
    (and their time), and the plan of the search query."""
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from dicomweb import selectors
    from dicomweb.query import Level, parse_query

    user = User.objects.get(pk=b.user_id)
    base = "https://bench.invalid/dicomweb"
    totals: list[float] = []
    db_times: list[float] = []
    statements: list[str] = []
    for i in range(n + 5):
        query = parse_query([("PatientID", b.patients[i % len(b.patients)])], level=Level.STUDY)
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            selectors.studies_search(user=user, query=query, base=base)
            elapsed = time.perf_counter() - t0
        if i >= 5:
            totals.append(elapsed)
            db_times.append(sum(float(q["time"]) for q in ctx.captured_queries))
            statements = [q["sql"] for q in ctx.captured_queries]
    search_sql = next((s for s in statements if '"patient_id" =' in s), statements[0])
    return {
        "selector": summary(totals),
        "database": summary(db_times),
        "statements": statements,
        "plan": explain_analyze(search_sql),
    }


# --- where the time goes ------------------------------------------------------------------------


def where_time_goes(b: Bench) -> None:
    from bench.dicomweb.profile import profile

    log("in process: each kind of request timed, then under cProfile")
    b.results["profile"] = profile(token=b.token, study=b.studies["ct"], patients=b.patients)
    for kind, d in b.results["profile"].items():
        log(f"  {kind:28} cpu {d['cpu_ms']:.1f} ms, {d['statements']:.0f} statements")


# --- 4. memory -----------------------------------------------------------------------------------


def memory(b: Bench) -> None:
    a = b.args
    ours, study = b.servers["ours"], b.studies["big"]
    log(f"memory: GET studies/{{big}} ({study.bytes / 1e9:.2f} GB), {a.memory_runs} run(s)")
    # Warm-up: every worker has served a retrieve (its code loaded, its pools made).
    inst = study.instances[0]
    for _ in range(6):
        c = client.Client(ours)
        try:
            status, _, body = c.get(
                f"studies/{study.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}",
                {"Accept": client.DICOM},
            )
            if status != 200:
                raise client.ServerError(f"retrieve instance answered {status}: {body[:200]!r}")
        finally:
            c.close()
    runs = []
    for _ in range(a.memory_runs):
        sampler = client.RssSampler(ours.worker_pids())
        p = client.retrieve_pass(ours, study, sampler=sampler)
        if p.wire_bytes < study.bytes:
            raise client.ServerError(f"the big study came back short: {p.wire_bytes} bytes")
        runs.append({**p.as_dict(), **sampler.growth()})
        g = runs[-1]
        log(
            f"  {p.wire_bytes / 1e9:.2f} GB in {p.seconds:.1f} s, worker RSS "
            f"{g['before_kib'] / 1024:.0f} -> {g['peak_kib'] / 1024:.0f} MiB "
            f"(+{g['growth_kib'] / 1024:.1f} MiB)"
        )
    b.results["memory"] = {"runs": runs, "bytes": study.bytes}

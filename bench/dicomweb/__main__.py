"""DICOMweb benchmark: our DICOMweb service (``/dicomweb/``, gunicorn, production
settings, PostgreSQL) against Orthanc with its DICOMweb plugin, measured in the
same run on the same bytes: a 300-slice CT and a 1,000-image MR filed through the
gateway's filing service (and POSTed to Orthanc), 1,000,000 studies in our
database for the QIDO search, and a study of over 1 GB for the memory test.

Measures: time to first image as OHIF loads a study (QIDO series -> series
metadata -> first frame); all frames of a study over 6 connections and the whole
study in one retrieve (MB/s); QIDO by PatientID; the gunicorn worker's memory
while streaming the big study.

Run from the repository root:

    .venv/bin/python -m bench.dicomweb            # full size, about 15 minutes
    .venv/bin/python -m bench.dicomweb --quick    # small studies, 10,000 studies: a few minutes

See bench/dicomweb/README.md.  The servers it starts are stopped (process groups)
even on failure; the database is dropped unless ``--keep``.
"""

from __future__ import annotations

import argparse
import sys

from bench import harness, host
from bench.database import Database
from bench.dicomweb import measure, report
from bench.harness import Benchmark, Run, log
from bench.servers import app_env, production


def run_measure(run: Run) -> None:
    args = run.args
    db = Database(args.database_url, args.db_name)
    env = app_env(
        database_url=db.url(),
        redis_url="",  # this process enqueues into a folder nobody reads (see README)
        var_dir=str(run.work / "var"),
        DJANGO_ENV="development",
        LOG_LEVEL="WARNING",
        DICOM_STORAGE_ROOT=str(run.work / "storage"),
        EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend",
    )
    b = measure.Bench(run, db, env, production(env, redis_url=args.redis_url))

    def close() -> None:
        measure.stop_servers(b)
        if b.conn is not None:
            b.conn.close()
        if not args.keep:
            from django.db import connections

            connections.close_all()
            db.drop()

    run.at_end(close)
    b.others("others_setup")
    measure.prepare_database(b)
    measure.make_studies(b)
    measure.file_studies(b)
    measure.load_history(b)
    b.others("others_setup")
    measure.start_servers(b)
    try:
        measure.check(b)
        phases = [
            ("time to first image", measure.time_to_first_image),
            ("retrieval", measure.retrieval),
            ("QIDO", measure.qido),
            ("the in-process profile", measure.where_time_goes),
            ("memory", measure.memory),
        ]
        for phase, step in phases:
            b.quiet(phase)
            step(b)
            b.others()
    finally:
        measure.stop_servers(b)
        measure.scan_logs(b)
    run.results["loadavg_end"] = host.loadavg()
    log("done measuring")


def add_options(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--ct-slices", type=int, default=300, help="instances of the CT (one series, 512x512)")
    a("--mr-series", type=int, default=4, help="series of the MR (256x256)")
    a("--mr-per-series", type=int, default=250, help="instances per MR series")
    a(
        "--big-instances",
        type=int,
        default=2000,
        help="instances (512x512, 16-bit: 0.5 MB each) of the memory test's study",
    )
    a("--studies", type=int, default=1_000_000, help="studies in our database for QIDO")
    a("--iterations", type=int, default=30, help="timed first-image loads per server and study")
    a("--warmup", type=int, default=2, help="untimed first-image loads first")
    a("--connections", type=int, default=6, help="parallel connections fetching frames")
    a("--repeat", type=int, default=3, help="timed retrieval runs per cell (median reported)")
    a("--qido-requests", type=int, default=200, help="timed QIDO requests per case")
    a("--memory-runs", type=int, default=3, help="big-study retrieves while sampling RSS")
    a(
        "--wait-quiet",
        type=float,
        default=900,
        help="before each measurement, wait up to this many seconds for other benchmarks "
        "and test runs to finish (0: do not wait)",
    )
    a("--seed", type=int, default=20261207)
    a("--database-url", default="postgres://postgres@127.0.0.1:5432")
    a("--db-name", default="bench_dicomweb")
    a(
        "--redis-url",
        default="redis://127.0.0.1:6379/5",
        help="the broker production settings require (nothing is expected to be sent)",
    )


BENCHMARK = Benchmark(
    module="bench.dicomweb",
    doc=__doc__ or "",
    add_options=add_options,
    measure=run_measure,
    title=report.TITLE,
    render=report.render,
    quick={
        "ct_slices": 60,
        "mr_series": 4,
        "mr_per_series": 50,
        "big_instances": 200,
        "studies": 10_000,
        "iterations": 10,
        "repeat": 1,
        "qido_requests": 50,
        "memory_runs": 1,
        "wait_quiet": 0,
    },
    renderable=lambda results: "memory" in results,
)

if __name__ == "__main__":
    sys.exit(harness.main(BENCHMARK))

"""Priors benchmark: the time from "ready" to "priors retrieved" for one relevant
prior of 300 instances on Orthanc as the facility's PACS, through the real DICOM
listener (a process of its own, on PostgreSQL) and the real fetch code (the
``priors.study_priors_fetch`` task run in this process: C-FIND patient then study
level, relevance, C-MOVE to the listener's priors AE title), p50/p95 over runs.

Run from the repository root:

    .venv/bin/python -m bench.priors            # 5 runs, about 2 minutes
    .venv/bin/python -m bench.priors --quick    # 2 runs of 100 instances

Orthanc and the listener are stopped (process groups) even on failure; the
benchmark database (``bench_priors``) is dropped unless ``--keep``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench import harness, host, report
from bench.database import Database
from bench.harness import Benchmark, Run, log
from bench.priors.pacs import OrthancPacs, pacs_start
from bench.servers import app_env, dicom_listener_argv
from bench.stats import ms, summary
from bench.supervise import PROCS, free_port, wait_for_port

TITLE = "## Priors (bench/priors)"


def _prior_files(folder: Path, *, patient_id: str, count: int, size: int) -> tuple[str, list[Path]]:
    """One CT chest study of ``count`` small instances, dated a year ago."""
    import datetime as dt

    from pydicom.uid import generate_uid

    from ingest.synthetic import StudySpec, make_instance

    spec = StudySpec(
        modality="CT",
        body_part="CHEST",
        description="CT CHEST W CONTRAST",
        patient_id=patient_id,
        accession=patient_id[-16:],
    )
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = str(generate_uid())
    day = (dt.date.today() - dt.timedelta(days=365)).strftime("%Y%m%d")  # noqa: DTZ011
    paths = []
    for number in range(1, count + 1):
        ds = make_instance(spec, series_uid=series_uid, number=number, rows=size, columns=size)
        ds.StudyDate = day
        path = folder / f"{number:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return spec.study_uid, paths


def measure(run: Run) -> None:
    args = run.args
    db = Database(args.database_url, args.db_name)
    env = app_env(
        database_url=db.url(),
        redis_url="",
        var_dir=str(run.work / "var"),
        DJANGO_ENV="development",
        LOG_LEVEL="WARNING",
        DICOM_STORAGE_ROOT=str(run.work / "dicom"),
    )

    def close() -> None:
        if not args.keep:
            from django.db import connections

            connections.close_all()
            db.drop()

    run.at_end(close)
    run.results["others"] = host.other_work(exclude="bench.priors", tests=True)
    log(f"creating database {db.name} and migrating")
    db.create_migrated(env)
    harness.setup_django(env)
    from teleradiology.celery import app

    # The fetch (and routing after it) run here, in this process, as a worker would.
    app.conf.task_always_eager = True
    run.results["versions"] = {**host.versions("pynetdicom", "pydicom", "django")}
    run.results["machine"] = host.machine()

    log("starting Orthanc (the facility's PACS) and the DICOM listener")
    pacs = pacs_start(run.work / "orthanc")
    port = free_port()
    log_path = run.work / "listener.log"
    listener = PROCS.start(dicom_listener_argv(port=port), env=env, log_path=log_path)
    wait_for_port(port, timeout=60, what="dicom_listener", proc=listener, log_path=log_path)
    from django.conf import settings

    pacs.modality_add(
        "telerad", ae_title=settings.DICOM_PRIORS_AE_TITLE, host="127.0.0.1", port=port
    )
    facility = _facility(pacs)
    samples: list[dict[str, Any]] = []
    for i in range(args.runs):
        samples.append(_one(run, pacs, facility, i))
        log(
            f"run {i + 1}/{args.runs}: {samples[-1]['seconds']:.2f} s for "
            f"{samples[-1]['instances']} instances"
        )
    run.results["runs"] = samples
    run.results["summary"] = summary([s["seconds"] for s in samples])
    run.results["config"] = {"instances": args.instances, "size": args.size, "runs": args.runs}


def _facility(pacs: OrthancPacs) -> Any:
    from network.models import Facility, Jurisdiction, ReadingGroup, Region

    group = ReadingGroup.objects.create(name="Bench priors")
    jurisdiction = Jurisdiction.objects.create(code="US-BP", country="US", name="Bench")
    region = Region.objects.create(code="bench-priors", name="Bench", country="US")
    return Facility.objects.create(
        name="Bench priors facility",
        reading_group=group,
        jurisdiction=jurisdiction,
        region=region,
        timezone="UTC",
        pacs_ae_title=pacs.ae_title,
        pacs_host="127.0.0.1",
        pacs_port=pacs.dicom_port,
    )


def _one(run: Run, pacs: OrthancPacs, facility: Any, i: int) -> dict[str, Any]:
    from django.utils import timezone

    from ingest.services import studies_mark_ready
    from priors.models import PriorFetch, PriorStudy
    from studies.models import Instance
    from studies.services import study_create

    patient = f"BENCH-PRIOR-{i:04d}"
    uid, files = _prior_files(
        run.work / f"prior-{i}", patient_id=patient, count=run.args.instances, size=run.args.size
    )
    pacs.load(files)
    current = study_create(
        facility=facility,
        study_instance_uid=f"2.25.{time.time_ns()}{i}",
        patient_id=patient,
        modality="CT",
        body_part="CHEST",
        study_description="CT CHEST WO CONTRAST",
        study_date=timezone.localdate(),
    )
    started = time.perf_counter()
    studies_mark_ready(quiet_seconds=0)  # ready, held; the fetch runs (eager)
    elapsed = time.perf_counter() - started
    fetch = PriorFetch.objects.get(study=current)
    prior = PriorStudy.objects.get(current=current, study_instance_uid=uid)
    if fetch.status != "done" or prior.status != "retrieved":
        raise RuntimeError(f"run {i}: fetch {fetch.status}, prior {prior.status}: {prior.reason}")
    stored = Instance.objects.filter(series__study_id=prior.prior_id or 0).count()
    if stored != run.args.instances:
        raise RuntimeError(f"run {i}: {stored} of {run.args.instances} instances stored")
    assert fetch.finished_at is not None and current.pk  # noqa: S101
    ready_at = type(current).objects.values_list("ready_at", flat=True).get(pk=current.pk)
    assert ready_at is not None  # noqa: S101
    return {
        "seconds": (fetch.finished_at - ready_at).total_seconds(),
        "wall_seconds": elapsed,
        "instances": stored,
    }


def render(results: dict[str, Any]) -> str:
    s = results["summary"]
    config = results["config"]
    rows = [
        (
            f"{config['instances']} instances ({config['size']}x{config['size']} CT, 16-bit)",
            s["n"],
            ms(s["p50"]),
            ms(s["p95"]),
            ms(s["max"]),
            f"{config['instances'] / s['p50']:.0f}" if s["p50"] else "n/a",
        )
    ]
    machine = host.machine_text(results.get("machine", {}))
    others = results.get("others") or []
    return (
        "\n\n".join(
            [
                TITLE,
                f"Measured {harness.utc_stamp()} UTC on {machine}; "
                + ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items())
                + ".",
                'Time from a study\'s "ready" (the ready sweep commits it, held for its priors) to '
                '"priors retrieved" (the fetch done, the hold released): a C-FIND at patient '
                "then study level on Orthanc as the facility's PACS, the relevance choice, and a "
                "C-MOVE of the one relevant prior to our DICOM listener (its own process, filing "
                "into PostgreSQL on the priors AE title); the fetch task's code runs in the "
                "benchmark's process as a worker would run it.",
                report.table(
                    "prior | runs | p50 | p95 | max | instances/s at p50",
                    "lrrrrr",
                    rows,
                ),
                "Other work on the machine meanwhile: "
                + ("; ".join(others) if others else "none")
                + ".",
                f"Command: `{results.get('command', 'python -m bench.priors')}`",
            ]
        )
        + "\n"
    )


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--instances", type=int, default=300, help="instances in the prior")
    p.add_argument("--size", type=int, default=64, help="rows and columns of each image")
    p.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432")
    p.add_argument("--db-name", default="bench_priors")


BENCHMARK = Benchmark(
    module="bench.priors",
    doc=__doc__ or "",
    add_options=add_options,
    measure=measure,
    title=TITLE,
    render=render,
    quick={"runs": 2, "instances": 100},
)

if __name__ == "__main__":
    sys.exit(harness.main(BENCHMARK))

"""Where a request's time goes, in this process: each kind of request the viewer
sends, through Django's test client (the whole middleware, DRF and view path,
development settings with DEBUG off, the same database and storage as the
server), timed (CPU and wall, statements and their time), then once more under
cProfile to see which of the project's functions take that time."""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import REPO
from bench.dicomweb.client import DICOM, FRAMES, JSON
from bench.dicomweb.workload import Study

# Project code is what sits in the repository outside the virtualenv and bench/.
OUTSIDE = (str(REPO / ".venv"), str(REPO / "bench"))


def _label(key: tuple[str, int, str]) -> str | None:
    filename, line, name = key
    if not filename.startswith(str(REPO)) or filename.startswith(OUTSIDE):
        return None
    return f"{filename.removeprefix(str(REPO) + '/')}:{line} {name}"


def kinds(study: Study, patients: list[str]) -> dict[str, tuple[str, Callable[[int], str]]]:
    """Request kind -> (Accept, the path of the i-th request)."""
    first_series = study.series[0][0]
    uid = study.study_uid

    def frame(i: int) -> str:
        inst = study.instances[i % len(study.instances)]
        return f"/dicomweb/studies/{uid}/series/{inst.series_uid}/instances/{inst.sop_uid}/frames/1"

    def instance(i: int) -> str:
        inst = study.instances[i % len(study.instances)]
        return f"/dicomweb/studies/{uid}/series/{inst.series_uid}/instances/{inst.sop_uid}"

    return {
        "QIDO studies?PatientID=": (
            JSON,
            lambda i: f"/dicomweb/studies?PatientID={patients[i % len(patients)]}",
        ),
        "QIDO studies/{uid}/series": (JSON, lambda i: f"/dicomweb/studies/{uid}/series"),
        "series metadata (gzip)": (
            JSON,
            lambda i: f"/dicomweb/studies/{uid}/series/{first_series}/metadata",
        ),
        "frames/1": (FRAMES, frame),
        "retrieve one instance": (DICOM, instance),
    }


def profile(
    *, token: str, study: Study, patients: list[str], n: int = 100
) -> dict[str, dict[str, Any]]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(
        HTTP_AUTHORIZATION=f"Token {token}",
        HTTP_ACCEPT_ENCODING="gzip, deflate",
        HTTP_X_FORWARDED_PROTO="https",
    )

    def get(accept: str, path: str) -> int:
        response = client.get(path, HTTP_ACCEPT=accept)
        if response.status_code != 200:
            raise RuntimeError(f"in process: {path} answered {response.status_code}")
        if not response.streaming:
            return len(response.content)
        # A StreamingHttpResponse (the test client's type omits it).
        return len(b"".join(response.streaming_content))  # type: ignore[attr-defined]

    out: dict[str, dict[str, Any]] = {}
    for kind, (accept, path_of) in kinds(study, patients).items():
        for i in range(10):
            get(accept, path_of(i))
        cpu: list[float] = []
        wall: list[float] = []
        statements: list[int] = []
        db: list[float] = []
        for i in range(n):
            with CaptureQueriesContext(connection) as queries:
                c0, w0 = time.process_time(), time.perf_counter()
                get(accept, path_of(i))
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - w0)
            statements.append(len(queries.captured_queries))
            db.append(sum(float(q["time"]) for q in queries.captured_queries))
        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(n):
            get(accept, path_of(i))
        profiler.disable()
        stats = pstats.Stats(profiler)
        raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
        total = max(float(stats.total_tt), 1e-9)  # type: ignore[attr-defined]
        functions = []
        for key, (_, _, _, cumulative, _) in raw.items():
            label = _label(key)
            if label is not None:
                functions.append((cumulative / total, label))
        database = sum(
            value[3]
            for key, value in raw.items()
            if key[0].endswith("django/db/backends/utils.py") and key[2] == "_execute"
        )
        out[kind] = {
            "cpu_ms": statistics.median(cpu) * 1000,
            "wall_ms": statistics.median(wall) * 1000,
            "statements": statistics.median(statements),
            "db_ms": statistics.median(db) * 1000,
            "database_share": database / total,
            "top": [(round(share, 3), label) for share, label in sorted(functions, reverse=True)][
                :12
            ],
        }
    return out

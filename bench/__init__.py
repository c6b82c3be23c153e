"""The benchmarks, one harness: run each from the repository root as
``python -m bench.<name>`` (see bench/README.md).

The shared modules live here, each helper once: ``stats`` (percentiles,
medians, min-max), ``host`` (machine facts, versions, load), ``database``
(PostgreSQL databases and templates), ``pgcopy`` (COPY files), ``supervise``
(process groups, ports, waiting), ``servers`` (the app's processes as the
benchmarks start them), ``report`` (the BENCHMARKS.md section writer and
markdown helpers) and ``harness`` (the common options and the run: measure ->
results JSON -> section).  Each benchmark's sub-package keeps only its phases
and its section.  Nothing here imports Django at import time: a benchmark sets
Django up once it has a database.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

"""The run every benchmark shares: common options, a work folder, the benchmark's
phases filling a results dict, the results JSON, the section rendered from it
and written to BENCHMARKS.md, and cleanup whatever happened.

A benchmark is a ``Benchmark``: its own options, its ``--quick`` sizes, a
``measure`` that fills ``run.results`` (JSON-able data only) and a ``render``
that turns those results, as read back from JSON, into its section.  The common
options:

    --quick        a small configuration, to check that the benchmark works
    --json FILE    write the results JSON
    --render FILE  render the section from a results JSON, measuring nothing
    --no-write     do not touch BENCHMARKS.md
    --keep         keep the work folder and the databases
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import host, report
from bench.database import safe_name
from bench.supervise import PROCS, handle_signals


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")  # noqa: DTZ005 - a console timestamp
    print(f"[{stamp}] {message}", flush=True)


def utc_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")


def setup_django(env: dict[str, str]) -> None:
    """This process as the app: ``env`` (a benchmark's app environment), then Django."""
    os.environ.update(env)
    import django

    django.setup()


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def to_json(results: Mapping[str, Any]) -> str:
    return json.dumps(results, indent=2, default=_json_default)


@dataclass
class Run:
    """One run of a benchmark: what its phases need besides their own state."""

    benchmark: Benchmark
    args: argparse.Namespace
    argv: list[str]
    work: Path
    results: dict[str, Any]
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.results["notes"].append(text)

    def warn(self, text: str) -> None:
        log("WARNING: " + text)
        if text not in self.results["warnings"]:
            self.results["warnings"].append(text)

    def at_end(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` at the end, after the processes are stopped (last first)."""
        self.cleanups.append(cleanup)


@dataclass
class Benchmark:
    """A benchmark: its options, phases and section (see the module's docstring)."""

    module: str  # "bench.claims": how it is run, ``python -m bench.claims``
    doc: str  # its --help
    add_options: Callable[[argparse.ArgumentParser], None]
    measure: Callable[[Run], None]
    # Its BENCHMARKS.md section: the heading and how results render to it.
    title: str | None = None
    render: Callable[[dict[str, Any]], str] | None = None
    # What is printed at the end (default: the section).
    console: Callable[[dict[str, Any]], str] | None = None
    # Option -> value for --quick, where the command line does not give the option.
    quick: Mapping[str, Any] = field(default_factory=dict)
    check_args: Callable[[argparse.Namespace], str | None] = lambda args: None
    # Whether results are complete enough to render (e.g. after a failed phase).
    renderable: Callable[[dict[str, Any]], bool] = lambda results: True
    # The exit status of a run that did not fail (e.g. 3: a double assignment).
    exit_code: Callable[[dict[str, Any]], int] = lambda results: 0

    @property
    def name(self) -> str:
        return self.module.removeprefix("bench.").replace(".", "-")


def parse_args(benchmark: Benchmark, argv: Sequence[str]) -> argparse.Namespace:
    """The benchmark's own options and the common ones; ``--quick`` sets its sizes
    for every option the command line does not give."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {benchmark.module}",
        description=benchmark.doc,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    benchmark.add_options(parser)
    common = parser.add_argument_group("common to every benchmark")
    common.add_argument(
        "--quick", action="store_true", help="a small configuration (checks that it works)"
    )
    common.add_argument("--json", type=Path, help="also write the results JSON here")
    common.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="render the section from a results JSON (--json) instead of measuring",
    )
    common.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    common.add_argument(
        "--keep", action="store_true", help="keep the work folder and the database(s)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in benchmark.quick.items():
            option = "--" + name.replace("_", "-")
            if not any(a == option or a.startswith(option + "=") for a in argv):
                setattr(args, name, value)
    problem = benchmark.check_args(args)
    if problem:
        parser.error(problem)
    if getattr(args, "db_name", None) and not safe_name(args.db_name):
        parser.error(f"unsafe database name {args.db_name!r}")
    return args


def main(benchmark: Benchmark, argv: Sequence[str] | None = None) -> int:
    """Run a benchmark: 1 if it failed (a phase raised; BENCHMARKS.md is then left
    alone), else its own exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(benchmark, argv)
    if args.render:
        return render_only(benchmark, args)
    handle_signals()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f"bench-{benchmark.name}-"))
    results: dict[str, Any] = {
        "benchmark": benchmark.module,
        "started_at": utc_stamp(),
        "command": report.command(benchmark.module, argv),
        "args": vars(args),
        "machine": host.machine(),
        "notes": [],
        "warnings": [],
    }
    run = Run(benchmark, args, argv, work, results)
    log(f"{benchmark.module}: work folder {work}")
    failed = False
    try:
        benchmark.measure(run)
    except BaseException as exc:  # Ctrl-C and SIGTERM too: report what we have, clean up
        failed = True
        results["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {results['error']}")
        traceback.print_exc()
    finally:
        PROCS.stop_all()
    results["seconds"] = time.monotonic() - started
    results["finished_at"] = utc_stamp()
    try:
        if failed:
            results["warnings"].append(f"the run failed: {results['error']}")
        if args.json:
            args.json.write_text(to_json(results))
            log(f"results in {args.json}")
        if benchmark.render is not None and benchmark.renderable(results):
            data = json.loads(to_json(results))  # render what the JSON holds, nothing else
            section = report.scrub(benchmark.render(data))
            console = benchmark.console(data) if benchmark.console else section
            print("\n" + console + "\n", flush=True)
            title = None if args.no_write else benchmark.title
            if title is not None and not failed:
                path = report.write_section(title, section)
                log(f"updated the '{title[3:]}' section of {path.name}")
            elif title is not None:
                (work / "section.md").write_text(section)
                log(f"run failed: BENCHMARKS.md not touched (section in {work}/section.md)")
    finally:
        for cleanup in reversed(run.cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        if args.keep or failed:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        log(f"done in {(time.monotonic() - started) / 60:.1f} min")
    return 1 if failed else benchmark.exit_code(results)


def render_only(benchmark: Benchmark, args: argparse.Namespace) -> int:
    """The section from a results JSON: printed, and written unless --no-write."""
    if benchmark.render is None or benchmark.title is None:
        raise SystemExit(f"{benchmark.module} writes no BENCHMARKS.md section")
    results = json.loads(args.render.read_text())
    section = report.scrub(benchmark.render(results))
    print(section, flush=True)
    if not args.no_write:
        path = report.write_section(benchmark.title, section)
        log(f"updated the '{benchmark.title[3:]}' section of {path.name}")
    return 0

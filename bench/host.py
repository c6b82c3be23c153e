"""Facts about the machine a benchmark ran on (CPU, memory, PostgreSQL and
package versions) and how loaded it was (CPU time, load average, other heavy
work running meanwhile: the machine has 2 cores, shared)."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")

# A benchmark's command line, as run now (``-m bench.x``) or before the harness
# (``bench/x/run.py``, still seen in other checkouts).
BENCHMARK_RX = r"-m bench\.[a-z_.]+|bench/[a-z_]+/[a-z_]+\.py"
# Test runs and busy PostgreSQL backends: they take the same cores.
TEST_RX = r"pytest|postgres: .* (SELECT|INSERT|UPDATE)"


# --- the machine and the software -----------------------------------------------


def machine() -> dict[str, str]:
    """CPU count and model, and memory, from /proc."""
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


def machine_text(facts: dict[str, str]) -> str:
    """'2 CPU(s) (model), 23.5 GiB RAM'."""
    return f"{facts['cpus']} CPU(s) ({facts['model']}), {facts['memory']} RAM"


def versions(*packages: str) -> dict[str, str]:
    """Python's version and the installed version of each distribution named."""
    out = {"python": platform.python_version()}
    for name in packages:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def postgres(conn: Any, settings: Sequence[str]) -> dict[str, str]:
    """The server's version and the named settings ('name=value, ...', by name)."""
    out: dict[str, str] = {}
    with contextlib.suppress(Exception):
        row = conn.execute("SHOW server_version").fetchone()
        out["postgresql"] = str(row[0]).split()[0]
        out["pg settings"] = ", ".join(
            f"{name}={value}"
            for name, value in conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) "
                "ORDER BY name",
                (list(settings),),
            )
        )
    return out


def postgres_text(facts: dict[str, str]) -> str:
    """'PostgreSQL 15.20 (jit=on, ...)'."""
    return f"PostgreSQL {facts.get('postgresql', '?')} ({facts.get('pg settings', '')})"


def tool_version(argv: Sequence[str], pattern: str) -> str:
    """The version a program prints (``pattern``'s first group), or '?'."""
    with contextlib.suppress(Exception):
        result = subprocess.run(  # noqa: S603 - a program of ours, by its full path
            list(argv), capture_output=True, text=True, timeout=10, check=False
        )
        found = re.search(pattern, result.stdout + result.stderr)
        if found:
            return found.group(1)
    return "?"


# --- load ------------------------------------------------------------------------


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    with contextlib.suppress(OSError):
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields) - idle, sum(fields)
    return 0, 0


def cpu_busy_since(start: tuple[int, int]) -> float | None:
    """Share of the machine's CPU busy since ``cpu_jiffies()`` returned ``start``."""
    busy, total = cpu_jiffies()
    return (busy - start[0]) / (total - start[1]) if total > start[1] else None


def proc_stat(pid: int) -> tuple[str, int, float] | None:
    """(command name, process group, user + system CPU seconds) of a process."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        text = Path(f"/proc/{pid}/stat").read_text()
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        return name, int(fields[2]), (int(fields[11]) + int(fields[12])) / CLK_TCK
    return None


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process."""
    stat = proc_stat(pid)
    return stat[2] if stat else None


def pids() -> Iterable[int]:
    return (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())


def group_cpu_seconds(pgid: int) -> float | None:
    """CPU seconds of every process in a process group (a server's master and workers)."""
    total, found = 0.0, False
    for pid in pids():
        stat = proc_stat(pid)
        if stat is not None and stat[1] == pgid:
            total += stat[2]
            found = True
    return total if found else None


def pg_sessions(conn: Any) -> int | None:
    """Sessions opened on the connection's database so far (PostgreSQL 14+)."""
    with contextlib.suppress(Exception):
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0
    return None


# --- other work on the machine ------------------------------------------------------


def processes_matching(pattern: str) -> list[tuple[int, str]]:
    """(pid, command line) of the other processes whose command line matches."""
    pgrep = shutil.which("pgrep")
    if pgrep is None:
        return []
    result = subprocess.run(  # noqa: S603 - pgrep by its full path
        [pgrep, "-af", "--", pattern], capture_output=True, text=True, check=False
    )
    mine = {os.getpid(), os.getppid()}
    found = []
    for line in result.stdout.splitlines():
        pid, _, cmd = line.partition(" ")
        if pid.isdigit() and int(pid) not in mine:
            found.append((int(pid), cmd.strip()))
    return found


def other_work(*, exclude: str, tests: bool = False) -> list[str]:
    """Command lines of other benchmarks running now (and of test runs and busy
    PostgreSQL backends with ``tests``), without ``exclude``'s own processes and
    without any absolute path (only a program's name)."""
    pattern = BENCHMARK_RX + (f"|{TEST_RX}" if tests else "")
    own = re.compile(rf"{re.escape(exclude)}(\b|$)|bench/{exclude.split('.')[-1]}/")
    return [
        re.sub(r"(?<!\S)(?:/[^\s/]+)+/([^\s/]+)", r"\1", cmd)[:120]
        for _, cmd in processes_matching(pattern)
        if not own.search(cmd)
    ]

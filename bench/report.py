"""BENCHMARKS.md, the record: each benchmark renders its own section from its
results (data -> markdown) and ``write_section`` replaces that one section, the
rest of the file kept.  Also the small markdown pieces the sections share."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench import REPO

BENCHMARKS = REPO / "BENCHMARKS.md"
# Options that change nothing measured: left out of the command a section shows.
QUIET_OPTIONS = {"--no-write", "--keep"}
OPTIONS_WITH_FILE = {"--json", "--render"}


def write_section(title: str, section: str, path: Path = BENCHMARKS) -> Path:
    """Replace the section headed ``title`` (e.g. '## Claims (bench/claims)'), up to
    the next '## ' heading, with ``section``; append it if there is none.  The file
    is read right before writing (other benchmarks may have written meanwhile)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    section = scrub(section)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip() + "\n\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")
    return path


def scrub(text: str) -> str:
    """No path of this machine in the record: the repository becomes relative, a
    benchmark's temporary folder '<tmp>'."""
    text = text.replace(str(REPO) + "/", "").replace(str(REPO), ".")
    tmp = re.escape(tempfile.gettempdir().rstrip("/"))
    return re.sub(rf"{tmp}/bench-[A-Za-z0-9_-]+", "<tmp>", text)


def command(module: str, argv: Sequence[str]) -> str:
    """The command line a section shows: ``.venv/bin/python -m <module>`` and the
    options that change what is measured (not --json FILE, --no-write, --keep)."""
    shown: list[str] = []
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
        elif arg in OPTIONS_WITH_FILE:
            skip_next = True
        elif arg not in QUIET_OPTIONS and arg.split("=", 1)[0] not in OPTIONS_WITH_FILE:
            shown.append(arg)
    return " ".join([".venv/bin/python -m", module, *shown])


def verdict(
    ok: bool | None, *, met: str = "**met**", not_met: str = "**not met**", unknown: str = "n/a"
) -> str:
    return unknown if ok is None else (met if ok else not_met)


def indent(text: str, prefix: str = "    ") -> str:
    """A code block (plans, SQL) inside markdown."""
    return "\n".join(prefix + line for line in text.splitlines())


def table(header: str, align: str, rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table: ``header`` is 'name | name | ...', ``align`` one letter per
    column, 'l' (---) or 'r' (---:)."""
    marks = {"l": "---", "r": "---:"}
    lines = [f"| {header} |", "| " + " | ".join(marks[a] for a in align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def bullets(items: Iterable[str]) -> str:
    return "\n".join(f"- {item}" for item in items)

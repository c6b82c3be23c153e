"""CI's dependency audit: ``pip-audit`` over requirements.txt, judged honestly.

    .venv/bin/python scripts/pip_audit_ci.py [requirements.txt] [.ci/pip-audit-ignore.txt]

- A known vulnerability fails the run unless the ignore file lists its id (or one of
  its aliases) with a reason: one ``ID  reason`` per line, ``#`` starts a comment.
- pip-audit reports a package it could not look up as skipped and still exits 0, so
  a machine with no route to the vulnerability service (PyPI's JSON API, OSV) would
  pass having audited nothing.  Here: every package skipped is said loudly (a warning
  line naming "0 of N packages audited") and passes, as CI machines may have no route
  out; some packages audited and others skipped fails, as does no JSON at all.

requirements.txt pins every transitive dependency (pip-compile), so the pins are
audited as written (``--no-deps``), with no virtual environment built.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Verdict:
    """The audit's outcome: the exit status and the lines to print."""

    ok: bool
    lines: list[str] = field(default_factory=list)


def parse_ignore_file(text: str) -> dict[str, str]:
    """``ID  reason`` lines to {id: reason}; an id with no reason is an error."""
    ignored: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        vuln_id, _, reason = line.partition(" ")
        if not reason.strip():
            raise ValueError(f"line {number}: {vuln_id} is ignored without a reason")
        ignored[vuln_id.strip()] = reason.strip()
    return ignored


def judge(report: dict[str, Any], ignored: dict[str, str]) -> Verdict:
    """The verdict on pip-audit's JSON report (``-f json``)."""
    dependencies = report.get("dependencies")
    if not isinstance(dependencies, list):
        return Verdict(False, ["pip-audit: no dependency list in its report"])
    audited = [d for d in dependencies if not d.get("skip_reason")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    lines: list[str] = []
    found: list[str] = []
    used: set[str] = set()
    for dep in audited:
        for vuln in dep.get("vulns") or []:
            names = {vuln.get("id", ""), *(vuln.get("aliases") or [])}
            match = sorted(names & ignored.keys())
            if match:
                used.update(match)
                lines.append(
                    f"pip-audit: ignored {vuln.get('id')} in {dep['name']} {dep.get('version')}: "
                    f"{ignored[match[0]]}"
                )
                continue
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version"
            found.append(f"{dep['name']} {dep.get('version')}: {vuln.get('id')} (fixed in {fixes})")
    for stale in sorted(ignored.keys() - used):
        if audited:
            lines.append(f"pip-audit: {stale} is ignored but no longer reported; remove it")
    total = len(dependencies)
    if total and not audited:
        lines.append(
            "WARNING pip-audit: vulnerability service unreachable from this machine; "
            f"0 of {total} packages audited"
        )
        return Verdict(True, lines)
    ok = True
    if skipped:
        ok = False
        lines.append(f"pip-audit: {len(skipped)} of {total} packages could not be audited:")
        lines += [f"  {d['name']}: {d['skip_reason']}" for d in skipped]
    if found:
        ok = False
        lines.append(f"pip-audit: {len(found)} known vulnerabilities:")
        lines += [f"  {item}" for item in found]
    if ok:
        lines.append(
            f"pip-audit: {len(audited)} of {total} packages audited, no known vulnerability"
        )
    return Verdict(ok, lines)


def main(argv: list[str]) -> int:
    requirements = Path(argv[1]) if len(argv) > 1 else ROOT / "requirements.txt"
    ignore_file = Path(argv[2]) if len(argv) > 2 else ROOT / ".ci" / "pip-audit-ignore.txt"
    ignored = parse_ignore_file(ignore_file.read_text()) if ignore_file.exists() else {}
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        str(requirements),
        "--format",
        "json",
        "--progress-spinner",
        "off",
        "--no-deps",
        "--disable-pip",
    ]
    for vuln_id in ignored:
        command += ["--ignore-vuln", vuln_id]
    # Exit 1 means "vulnerabilities found": the report says which, judged below.
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(result.stderr)
        print(f"pip-audit: failed (exit {result.returncode}) with no report")
        return 1
    verdict = judge(report, ignored)
    print("\n".join(verdict.lines))
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

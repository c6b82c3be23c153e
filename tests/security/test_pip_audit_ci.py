"""CI's dependency audit (scripts/pip_audit_ci.py) judges pip-audit's JSON report:
a known vulnerability fails unless ignored with a reason, and an audit that could
not look anything up says so instead of passing silently."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "scripts" / "pip_audit_ci.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pip_audit_ci", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


audit = _load()

UNREACHABLE = {
    "dependencies": [
        {
            "name": "django",
            "skip_reason": "Dependency not found on PyPI and could not be audited: django (5.2.9)",
        },
        {
            "name": "celery",
            "skip_reason": "Dependency not found on PyPI and could not be audited: celery (5.5.3)",
        },
    ],
    "fixes": [],
}
CLEAN = {
    "dependencies": [
        {"name": "django", "version": "5.2.9", "vulns": []},
        {"name": "celery", "version": "5.5.3", "vulns": []},
    ],
    "fixes": [],
}
VULNERABLE = {
    "dependencies": [
        {
            "name": "django",
            "version": "5.2.0",
            "vulns": [
                {
                    "id": "PYSEC-2025-1",
                    "fix_versions": ["5.2.1"],
                    "aliases": ["CVE-2025-0001", "GHSA-aaaa-bbbb-cccc"],
                    "description": "SQL injection in something",
                }
            ],
        },
        {"name": "celery", "version": "5.5.3", "vulns": []},
    ],
    "fixes": [],
}


def test_a_known_vulnerability_fails_the_run() -> None:
    verdict = audit.judge(VULNERABLE, {})
    assert not verdict.ok
    assert "  django 5.2.0: PYSEC-2025-1 (fixed in 5.2.1)" in verdict.lines


def test_a_vulnerability_ignored_with_a_reason_passes_under_any_of_its_names() -> None:
    for name in ("PYSEC-2025-1", "CVE-2025-0001", "GHSA-aaaa-bbbb-cccc"):
        verdict = audit.judge(VULNERABLE, {name: "we never call the affected function"})
        assert verdict.ok
        assert any("we never call the affected function" in line for line in verdict.lines)


def test_a_clean_audit_passes_and_counts_what_it_audited() -> None:
    verdict = audit.judge(CLEAN, {})
    assert verdict.ok
    assert verdict.lines == ["pip-audit: 2 of 2 packages audited, no known vulnerability"]


def test_no_route_to_the_service_warns_loudly_and_passes() -> None:
    verdict = audit.judge(UNREACHABLE, {})
    assert verdict.ok
    assert verdict.lines == [
        "WARNING pip-audit: vulnerability service unreachable from this machine; "
        "0 of 2 packages audited"
    ]


def test_some_packages_audited_and_others_skipped_fails() -> None:
    report = {"dependencies": [CLEAN["dependencies"][0], UNREACHABLE["dependencies"][1]]}
    verdict = audit.judge(report, {})
    assert not verdict.ok
    assert "pip-audit: 1 of 2 packages could not be audited:" in verdict.lines


def test_a_report_without_dependencies_fails() -> None:
    assert not audit.judge({"error": "boom"}, {}).ok


def test_stale_ignores_are_pointed_out() -> None:
    verdict = audit.judge(CLEAN, {"PYSEC-2020-9": "old"})
    assert verdict.ok
    assert "pip-audit: PYSEC-2020-9 is ignored but no longer reported; remove it" in verdict.lines


def test_the_ignore_file_needs_a_reason_for_each_id() -> None:
    text = "# comment\n\nPYSEC-2025-1  not reachable from our code  # trailing\nGHSA-x  why\n"
    assert audit.parse_ignore_file(text) == {
        "PYSEC-2025-1": "not reachable from our code",
        "GHSA-x": "why",
    }
    with pytest.raises(ValueError, match="line 1: CVE-1 is ignored without a reason"):
        audit.parse_ignore_file("CVE-1\n")


def test_the_repository_ignore_file_is_valid() -> None:
    audit.parse_ignore_file((ROOT / ".ci" / "pip-audit-ignore.txt").read_text())


def test_the_script_runs_pip_audit_over_a_requirements_file(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("six==1.17.0\n")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(requirements), str(tmp_path / "none.txt")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Audited (no known vulnerability) where the service answers; a loud warning
    # where it cannot be reached; never a silent pass.
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "1 of 1 packages audited" in result.stdout
        or "service unreachable from this machine; 0 of 1 packages audited" in result.stdout
    )

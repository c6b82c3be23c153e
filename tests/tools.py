"""Programs from Debian packages that tests drive: fail loudly when one is missing.

The list of packages lives in ``scripts/system-packages`` (which ``make install``
runs); a test that needs a program asks for it here and fails, naming the package
and the command that installs it, instead of skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PACKAGES = ROOT / "scripts" / "system-packages"


def packages_by_program() -> dict[str, str]:
    """program path -> Debian package, read from scripts/system-packages' list."""
    found: dict[str, str] = {}
    for line in SYSTEM_PACKAGES.read_text().splitlines():
        entry = line.strip().split("#", 1)[0].strip().strip('"')
        parts = entry.split()
        if len(parts) == 2 and parts[1].startswith("/"):
            found[parts[1]] = parts[0]
    return found


def program(path: str) -> str:
    """``path`` if it is installed; otherwise fail the test, naming its package."""
    if os.access(path, os.X_OK):
        return path
    package = packages_by_program().get(path)
    if package is None:
        pytest.fail(f"{path} is missing, and scripts/system-packages does not list it")
    pytest.fail(
        f"{path} is missing: install Debian package {package} "
        "(`make install` does, through scripts/system-packages)"
    )

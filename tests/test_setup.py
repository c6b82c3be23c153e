"""The project's setup promises: the README opens with the two commands, every app
is installable, and every Debian program the tests or benchmarks call is in the one
list ``make install`` installs from."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from django.apps import apps

from tests.tools import ROOT, packages_by_program


def test_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first_block is not None
    # Nothing but the title may stand before it.
    before = text[: first_block.start()].strip().splitlines()
    assert len(before) == 1 and before[0].startswith("# ")
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]


def test_every_app_of_ours_is_installable():
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    ours = {
        config.name.split(".")[0]
        for config in apps.get_app_configs()
        if Path(config.path).parent == ROOT
    }
    listed = {pattern.rstrip("*") for pattern in include}
    assert ours - listed == set()


def test_every_debian_program_called_is_in_the_install_list():
    listed = packages_by_program()
    called = set()
    for folder in ("tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            called |= set(re.findall(r"/usr/s?bin/[A-Za-z0-9_.+-]+", path.read_text()))
    assert called - set(listed) == set()

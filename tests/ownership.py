"""One owner per table, checked on every statement the test suite sends.

Each table belongs to the app whose ``models.py`` declares it (a many-to-many
table to the app of the model that declares the field).  An INSERT, UPDATE or
DELETE is charged to the innermost frame of our code that is not a model layer
(``<app>.models``, whose queryset methods such as ``Offer.objects.withdraw`` only
say *how* to write) and not shared infrastructure (``teleradiology``): that frame's
app must own the table.  So ``routing.services`` calling ``worklist.services`` to
open offers passes, and ``routing.services`` calling ``Offer.objects.open_many``
fails, whether the write is an ORM call or raw SQL.

Not charged: tests and their factories, and demo seeding (``demo``), which build
fixtures; rows Django deletes or nulls on its own because of a declared
``on_delete`` (the cascade is the owning model's declaration, not the caller's
write); and writes to tables that are not ours (auth, sessions, guardian).

A test that makes a charged write outside the owner fails at teardown, naming the
table, the writer and the statement.  ``tests/test_architecture.py`` adds a static
check of the same rule over code the suite might not reach.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import pytest

OUR_APPS = frozenset(
    {
        "accounts",
        "alerts",
        "audit",
        "health",
        "ingest",
        "network",
        "onboarding",
        "orders",
        "priors",
        "reporting",
        "review",
        "routing",
        "simulation",
        "studies",
        "turnaround",
        "worklist",
    }
)
# Frames of these are skipped: they build fixtures (tests, demo) or are shared
# plumbing that writes on a caller's behalf (teleradiology).
NOT_CHARGED = frozenset({"tests", "demo", "conftest"})
PLUMBING = frozenset({"teleradiology"})

WRITE = re.compile(
    r"""^\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+["`]?(\w+)["`]?""",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Violation:
    table: str
    owner: str
    writer: str
    where: str
    sql: str

    def __str__(self) -> str:
        return (
            f"{self.table} (owned by {self.owner}) written by {self.writer} at {self.where}: "
            f"{self.sql[:160]}"
        )


_OWNERS: dict[str, str] = {}


def table_owners() -> dict[str, str]:
    """Table name -> owning app label, for our apps' tables."""
    if not _OWNERS:
        from django.apps import apps

        for model in apps.get_models(include_auto_created=True):
            label = model._meta.app_label
            if label in OUR_APPS:
                _OWNERS[model._meta.db_table] = label
    return _OWNERS


def _frames(start: FrameType | None) -> Iterator[FrameType]:
    frame = start
    while frame is not None:
        yield frame
        frame = frame.f_back


def _cascade(frame: FrameType) -> bool:
    """Whether the statement is issued by Django's delete collector for a related
    row (on_delete CASCADE / SET_NULL), not the row the caller deleted."""
    for f in _frames(frame):
        if f.f_code.co_name == "delete" and f.f_globals.get("__name__") == (
            "django.db.models.deletion"
        ):
            collector = f.f_locals.get("self")
            data = getattr(collector, "data", None)
            fast = getattr(collector, "fast_deletes", None)
            # One model and nothing fast-deleted: a plain delete, charged as usual.
            return bool(data is not None and (len(data) > 1 or fast))
    return False


def charge(sql: str, frame: FrameType | None) -> Violation | None:
    """The violation a write statement makes, if any (None for reads and allowed writes)."""
    match = WRITE.match(sql)
    if match is None:
        return None
    table = match.group(1).lower()
    owner = table_owners().get(table)
    if owner is None:
        return None
    for f in _frames(frame):
        module = str(f.f_globals.get("__name__", ""))
        top = module.split(".")[0]
        if top in NOT_CHARGED:
            return None
        if top in PLUMBING or top not in OUR_APPS:
            continue
        if module == f"{top}.models" or ".migrations." in module:
            continue
        if top == owner:
            return None
        if _cascade(frame):
            return None
        return Violation(
            table=table,
            owner=owner,
            writer=module,
            where=f"{'/'.join(f.f_code.co_filename.split('/')[-2:])}:{f.f_lineno} "
            f"({f.f_code.co_name})",
            sql=" ".join(sql.split()),
        )
    return None


class Recorder:
    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        violation = charge(sql, sys._getframe(1))
        if violation is not None and violation not in self.violations:
            self.violations.append(violation)
        return execute(sql, params, many, context)


@pytest.fixture(autouse=True)
def _one_owner_per_table() -> Iterator[None]:
    """Fail the test if it made a write outside the table's owner app."""
    from django.db import connections

    recorder = Recorder()
    wrappers = []
    for alias in connections:
        connection = connections[alias]
        wrapper = connection.execute_wrapper(recorder)
        wrapper.__enter__()
        wrappers.append(wrapper)
    try:
        yield
    finally:
        for wrapper in reversed(wrappers):
            wrapper.__exit__(None, None, None)
    if recorder.violations:
        pytest.fail(
            "tables written outside their owner app (one owner per table):\n  "
            + "\n  ".join(str(v) for v in recorder.violations[:10]),
            pytrace=False,
        )

"""Drafts (create, save, delete, publish) and runs (request, execute, recover).

INTERFACE (laid by the lead; helpers implement the bodies)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth.models import User

from network.models import ReadingGroup
from simulation.models import RoutingDraft, SimulationRun


class DraftConflict(Exception):
    """The live rules changed since the draft was copied (publish with force)."""


def draft_create(
    *,
    actor: User | None,
    reading_group: ReadingGroup,
    name: str,
    source: RoutingDraft | None = None,
    ip_address: str | None = None,
) -> RoutingDraft:
    """A new draft: a copy of the group's live rules, or of ``source``; audited."""
    raise NotImplementedError


def draft_save(
    *,
    actor: User | None,
    draft: RoutingDraft,
    name: str | None = None,
    rules: list[dict[str, Any]] | None = None,
    ip_address: str | None = None,
) -> RoutingDraft:
    """Rename and/or replace the draft's rules (already validated by the API's
    serializer, the same validation as live rules); audited."""
    raise NotImplementedError


def draft_delete(*, actor: User | None, draft: RoutingDraft, ip_address: str | None = None) -> None:
    raise NotImplementedError


def draft_publish(
    *, actor: User | None, draft: RoutingDraft, force: bool = False, ip_address: str | None = None
) -> list[dict[str, Any]]:
    """Replace the group's live rules with the draft's in one transaction, audited
    with the diff (returned); ``DraftConflict`` if the live rules changed since the
    draft was copied and ``force`` is not set."""
    raise NotImplementedError


def run_request(
    *,
    actor: User | None,
    draft: RoutingDraft,
    window_start: dt.datetime,
    window_end: dt.datetime,
    ip_address: str | None = None,
) -> SimulationRun:
    """Queue a replay of the window (the task ``simulation.simulation_run``, sent
    after commit); audited."""
    raise NotImplementedError


def run_execute(*, run_id: int) -> None:
    """Run a queued replay (the task's body): stream the window's studies into
    ``engine.replay`` against the draft and the live rules, writing progress and a
    heartbeat every batch, then the result (or the error)."""
    raise NotImplementedError


def runs_recover(*, now: dt.datetime) -> int:
    """The sweep behind the task: re-queue runs queued but never started, and runs
    whose worker stopped beating; the number re-queued."""
    raise NotImplementedError

"""The report state machine: every status change of a report is checked here and only here.

draft -> preliminary -> final, or draft -> final.  A final report is locked: later
words go in addenda, never into the final.  A preliminary report may still be
revised by the reader holding the claim on its way to final; each save is kept.
"""

from __future__ import annotations

from django.db import models


class ReportStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PRELIMINARY = "preliminary", "Preliminary"
    FINAL = "final", "Final"


class SignAs(models.TextChoices):
    """What a signature makes of a report."""

    PRELIMINARY = "preliminary", "Preliminary"
    FINAL = "final", "Final"


R = ReportStatus

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    R.DRAFT: frozenset({R.PRELIMINARY, R.FINAL}),
    R.PRELIMINARY: frozenset({R.FINAL}),
    R.FINAL: frozenset(),
}

# Statuses whose fields the claiming reader may still change.
EDITABLE: frozenset[str] = frozenset({R.DRAFT, R.PRELIMINARY})


def can_transition(current: str, target: str) -> bool:
    return target in ALLOWED_TRANSITIONS.get(current, frozenset())


def transition_refusal(current: str, target: str) -> str | None:
    """Why a report cannot go ``current -> target``, or None when it may."""
    if target not in ALLOWED_TRANSITIONS:
        return f"'{target}' is not a report status."
    if can_transition(current, target):
        return None
    if current == R.FINAL:
        return "The report is final and locked; add an addendum instead."
    allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[current])) or "nothing"
    return f"A {current} report cannot become {target} (allowed: {allowed})."


def edit_refusal(current: str) -> str | None:
    """Why a report in ``current`` cannot be edited, or None when it can."""
    if current in EDITABLE:
        return None
    return "The report is final and locked; add an addendum instead."

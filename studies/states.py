"""The study state machine: every status change is checked here and only here.

receiving -> ready -> offered -> claimed -> preliminary -> final, plus cancelled;
a prior retrieved for comparison goes receiving -> prior and stays there.
Re-routing and releases move a study back (offered -> ready, claimed -> offered);
a preliminary read by a preliminary-only reader goes back on offer for the final.
"""

from __future__ import annotations

from django.db import models


class StudyStatus(models.TextChoices):
    RECEIVING = "receiving", "Receiving"
    READY = "ready", "Ready"
    OFFERED = "offered", "Offered"
    CLAIMED = "claimed", "Claimed"
    PRELIMINARY = "preliminary", "Preliminary"
    FINAL = "final", "Final"
    CANCELLED = "cancelled", "Cancelled"
    # A prior study retrieved from the facility's PACS for comparison: stored and
    # shown to the readers of the patient's current studies, never routed.
    PRIOR = "prior", "Prior"


S = StudyStatus

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.RECEIVING: frozenset({S.READY, S.PRIOR, S.CANCELLED}),
    S.READY: frozenset({S.OFFERED, S.CANCELLED}),
    S.OFFERED: frozenset({S.CLAIMED, S.READY, S.CANCELLED}),
    S.CLAIMED: frozenset({S.OFFERED, S.PRELIMINARY, S.FINAL, S.CANCELLED}),
    S.PRELIMINARY: frozenset({S.OFFERED, S.FINAL, S.CANCELLED}),
    S.FINAL: frozenset(),
    S.CANCELLED: frozenset(),
    S.PRIOR: frozenset(),
}

# The timestamp column each state stamps when entered (latest entry wins).
TIMESTAMP_FIELD: dict[str, str] = {
    S.READY: "ready_at",
    S.OFFERED: "offered_at",
    S.CLAIMED: "claimed_at",
    S.PRELIMINARY: "preliminary_at",
    S.FINAL: "finalized_at",
    S.CANCELLED: "cancelled_at",
}

# States in which a study waits for, or is held by, a reader.
LIVE_STATES: frozenset[str] = frozenset({S.READY, S.OFFERED, S.CLAIMED, S.PRELIMINARY})
TERMINAL_STATES: frozenset[str] = frozenset({S.FINAL, S.CANCELLED})


def can_transition(current: str, target: str) -> bool:
    return target in ALLOWED_TRANSITIONS.get(current, frozenset())


def transition_refusal(current: str, target: str) -> str | None:
    """Why ``current -> target`` is refused, or None when it is allowed."""
    if target not in ALLOWED_TRANSITIONS:
        return f"'{target}' is not a study status."
    if can_transition(current, target):
        return None
    if current in TERMINAL_STATES:
        return f"The study is {current}; it cannot change any more."
    allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[current])) or "nothing"
    return f"A {current} study cannot become {target} (allowed: {allowed})."

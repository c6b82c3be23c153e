"""Reads of studies' own data that other apps need (never permission-scoped: the
caller has already decided the user may see the study; see access.selectors)."""

from __future__ import annotations

from studies.models import Order


def study_order(*, study_id: int) -> Order | None:
    """The order matched to a study, or None while none was received (one query)."""
    return Order.objects.filter(study_id=study_id).first()

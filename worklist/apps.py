from __future__ import annotations

import datetime as dt
from typing import Any

from django.apps import AppConfig


def _rerank_on_aging_changed(
    sender: Any, *, reading_group_id: int, step: dt.timedelta, **kwargs: Any
) -> None:
    """network.signals.aging_changed: re-key the group's open offers for its new step,
    in the transaction of the change."""
    from worklist.services.offers import offers_rerank

    offers_rerank(reading_group_id=reading_group_id, step=step)


class WorklistConfig(AppConfig):
    name = "worklist"

    def ready(self) -> None:
        # The network may not import the worklist: it announces a new aging step with
        # a signal, and the worklist re-keys its offers.
        from network.signals import aging_changed

        aging_changed.connect(_rerank_on_aging_changed, dispatch_uid="worklist.offers_rerank")

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig


def _recheck_on_eligibility_changed(
    sender: Any, *, radiologist_ids: Sequence[int], at: dt.datetime, **kwargs: Any
) -> None:
    """network.signals.eligibility_changed: withdraw the offers the change makes
    ineligible and re-route what is left with nobody, in the transaction of the
    change (so its service, and the API that called it, answer after)."""
    from routing.services import readers_offers_recheck

    readers_offers_recheck(radiologist_ids=radiologist_ids, at=at)


class RoutingConfig(AppConfig):
    name = "routing"

    def ready(self) -> None:
        # The network may not import routing: it names the readers whose eligibility
        # may have changed, and routing judges their offers.
        from network.signals import eligibility_changed

        eligibility_changed.connect(
            _recheck_on_eligibility_changed, dispatch_uid="routing.readers_offers_recheck"
        )

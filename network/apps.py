from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _record_on_eligibility_changed(
    sender: Any, *, radiologist_ids: Sequence[int], at: dt.datetime, **kwargs: Any
) -> None:
    """network.signals.eligibility_changed: append a version of each named reader's
    facts to their history (``network.history``), in the transaction of the change."""
    from network.history import reader_versions_record

    reader_versions_record(radiologist_ids=radiologist_ids, at=at)


class NetworkConfig(AppConfig):
    name = "network"
    verbose_name = "Reading network"

    def ready(self) -> None:
        from network.roles import ensure_role_groups
        from network.signals import eligibility_changed

        # After the last app migrates, so every permission row exists.
        post_migrate.connect(ensure_role_groups, dispatch_uid="network.ensure_role_groups")
        eligibility_changed.connect(
            _record_on_eligibility_changed, dispatch_uid="network.reader_versions_record"
        )

"""The routing network fixtures, with the clock held at their moment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import time_machine

from tests.routing.conftest import (  # noqa: F401 - fixtures
    NOW,
    make_reader,
    neuro_rule,
    ready_study,
    regions,
    tiered,
)


@pytest.fixture(autouse=True)
def _at_now() -> Iterator[None]:
    with time_machine.travel(NOW, tick=True):
        yield

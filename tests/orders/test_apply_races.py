"""An order and its images at the same moment, with real threads and transactions on
PostgreSQL: they may miss each other, and the ready sweep links them; changes of
orders while their studies are declared ready neither deadlock nor lose the link."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from ingest.services import studies_mark_ready
from orders.services.apply import message_apply
from studies.models import Order
from studies.services import study_create
from tests import factories as f
from tests.orders import hl7text as t

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

COUNT = 8


def in_thread(work: Callable[[], Any], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            work()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    return threading.Thread(target=run)


def test_an_order_and_its_images_created_at_once_are_linked_when_the_study_is_ready():
    facility = f.FacilityFactory(order_hold_minutes=30)
    received = timezone.now() - dt.timedelta(minutes=5)
    errors: list[BaseException] = []
    for i in range(COUNT):
        # Both transactions insert, then wait for each other before committing: each
        # looked for the other before it existed.
        both_inserted = threading.Barrier(2, timeout=30)

        def order(i: int = i, barrier: threading.Barrier = both_inserted) -> None:
            raw = t.orm(accession=f"RACE{i}", msg=f"R{i}", priority="S")
            with transaction.atomic():
                message_apply(
                    facility=facility, message=t.parse(raw), raw=raw, received_at=timezone.now()
                )
                barrier.wait()

        def images(i: int = i, barrier: threading.Barrier = both_inserted) -> None:
            with transaction.atomic():
                study_create(
                    facility=facility,
                    study_instance_uid=f"1.2.826.0.1.3680043.8.498.9{i}",
                    accession_number=f"RACE{i}",
                    received_at=received,
                    priority=3,
                )
                barrier.wait()

        threads = [in_thread(order, errors), in_thread(images, errors)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors
    assert Order.objects.filter(study__isnull=True).count() == COUNT  # they missed each other

    studies_mark_ready(quiet_seconds=10)

    for order in Order.objects.select_related("study"):
        assert order.study is not None, order
        assert order.study.accession_number == order.accession_number
        assert order.study.status == "ready"
        assert order.study.order_hold_until is None  # it has its order: not held
        assert order.study.priority == 1  # the order's STAT


def test_order_changes_while_their_studies_are_declared_ready_do_not_deadlock():
    facility = f.FacilityFactory()
    received = timezone.now() - dt.timedelta(minutes=5)
    for i in range(COUNT):
        study_create(
            facility=facility,
            study_instance_uid=f"1.2.826.0.1.3680043.8.498.8{i}",
            accession_number=f"RX{i}",
            received_at=received,
            priority=3,
        )
        # Its order, as the race leaves it: committed, neither saw the other.
        f.OrderFactory(facility=facility, accession_number=f"RX{i}", priority=3)
    start = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def changes() -> None:
        start.wait()
        for i in reversed(range(COUNT)):
            raw = t.orm(accession=f"RX{i}", msg=f"X{i}", control="XO", priority="A")
            with transaction.atomic():
                message_apply(
                    facility=facility, message=t.parse(raw), raw=raw, received_at=timezone.now()
                )

    def sweep() -> None:
        start.wait()
        studies_mark_ready(quiet_seconds=10, batch_size=COUNT)

    threads = [in_thread(changes, errors), in_thread(sweep, errors)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    for order in Order.objects.select_related("study"):
        assert order.study is not None and order.study.accession_number == order.accession_number
        assert order.priority == 2 and order.study.priority == 2
        assert order.study.status == "ready"

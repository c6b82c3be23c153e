"""End to end: an order sent over MLLP by python-hl7's ``MLLPClient`` to the real
listener process finds its study, whichever came first."""

from __future__ import annotations

import pytest

from orders.models import Hl7Message
from studies.models import Order, Study
from tests import factories as f
from tests.orders import hl7text as t
from tests.orders.listener import ack_code, send, start_hl7_listener, stop_hl7_listener

pytestmark = pytest.mark.worker


@pytest.fixture
def listener(transactional_db, tmp_path):
    """``manage.py hl7_listener`` as a real process on the test database."""
    running = start_hl7_listener(tmp_path)
    try:
        yield running
    finally:
        stop_hl7_listener(running)


@pytest.fixture
def facility(transactional_db):
    return f.FacilityFactory(name="St Mary", hl7_sending_facility="STMARY")


def test_an_order_over_mllp_links_its_study_whichever_comes_first(listener, facility):
    # The images first: the order links the study and raises its priority.
    study = f.StudyFactory(facility=facility, accession_number="E2E1", priority=3)
    ack = send(listener.port, t.orm(accession="E2E1", msg="E2E-1", priority="S"))
    assert ack_code(ack) == "AA", str(ack)
    order = Order.objects.get(facility=facility, accession_number="E2E1")
    assert order.study_id == study.pk
    assert order.reason_for_exam == "Head trauma, rule out bleed"
    assert Study.objects.get(pk=study.pk).priority == 1
    stored = Hl7Message.objects.get(control_id="E2E-1")
    assert stored.summary.startswith(f"NW E2E1: order created, linked to study {study.pk}")

    # The order first (2.3): the study that arrives later takes it.
    ack = send(listener.port, t.orm(accession="E2E2", msg="E2E-2", version="2.3"))
    assert ack_code(ack) == "AA", str(ack)
    later = f.StudyFactory(facility=facility, accession_number="E2E2")
    assert Order.objects.get(accession_number="E2E2").study_id == later.pk

    # A cancel for an accession nobody knows is answered AE naming the field.
    ack = send(listener.port, t.orm(accession="E2E9", msg="E2E-3", control="CA"))
    assert ack_code(ack) == "AE"
    assert "OBR^1^18" in str(ack.segment("ERR"))  # ERR-2: segment, sequence, field

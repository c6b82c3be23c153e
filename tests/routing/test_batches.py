"""Routing in batches: a routing task takes other ready studies with its own, most
urgent first, and decides each exactly as it would alone."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from routing.models import RoutingDecision, StudyRouting
from routing.services import studies_route, study_reroute, study_route
from studies.models import Study, StudyTransition
from studies.services import studies_transition_locked, study_transition
from teleradiology.errors import InvalidTransition
from tests import factories as f
from tests.routing.conftest import NOW, make_reader
from worklist.models import Offer

pytestmark = pytest.mark.django_db


def ready(facility: Any, *, priority: int = 3, minutes: int = 1, body_part: str = "HEAD") -> Any:
    study = f.StudyFactory(
        facility=facility,
        modality="CT",
        body_part=body_part,
        priority=priority,
        received_at=NOW - dt.timedelta(minutes=minutes),
    )
    return study_transition(study_id=study.pk, to_status="ready", at=NOW)


def offered_to(study: Any) -> set[int]:
    return set(
        Offer.objects.filter(study=study, withdrawn_at__isnull=True).values_list(
            "radiologist_id", flat=True
        )
    )


def test_a_task_routes_every_study_it_names_even_beyond_the_batch_size(tiered, facility_a):
    named = [ready(facility_a) for _ in range(4)]
    other = ready(facility_a, priority=1)  # more urgent, but the batch is full
    decided = studies_route(study_ids=[s.pk for s in named], batch_size=2, now=NOW)
    assert set(decided) == {s.pk for s in named}
    assert Study.objects.get(pk=other.pk).status == "ready"
    # Redelivered: its studies are decided, nothing more is done.
    assert studies_route(study_ids=[s.pk for s in named], batch_size=2, now=NOW) == {}
    assert Study.objects.get(pk=other.pk).status == "ready"


def test_one_task_routes_its_study_and_the_waiting_ones(tiered, facility_a):
    studies = [ready(facility_a) for _ in range(5)]
    decided = studies_route(study_ids=[studies[2].pk], batch_size=10, now=NOW)
    assert set(decided) == {s.pk for s in studies}
    assert all(d is not None and d.outcome == "offered" for d in decided.values())
    assert set(Study.objects.values_list("status", flat=True)) == {"offered"}
    # Each study has its transition record and audit event, as when routed alone.
    for s in studies:
        assert StudyTransition.objects.filter(study=s, to_status="offered", at=NOW).count() == 1
        assert AuditEvent.objects.filter(
            object_type="studies.study",
            object_id=str(s.pk),
            action="transition",
            detail__to="offered",
        ).exists()
    # The other studies' own tasks find them done and change nothing.
    assert studies_route(study_ids=[studies[0].pk], batch_size=10, now=NOW) == {}
    assert RoutingDecision.objects.count() == 5
    assert Offer.objects.count() == 5


def test_a_batch_takes_the_most_urgent_waiting_studies_first(tiered, facility_a):
    own = ready(facility_a, priority=3)
    routine = ready(facility_a, priority=3, minutes=30)
    stat = ready(facility_a, priority=1)
    urgent = ready(facility_a, priority=2)
    decided = studies_route(study_ids=[own.pk], batch_size=3, now=NOW)
    assert set(decided) == {own.pk, stat.pk, urgent.pk}
    assert not StudyRouting.objects.filter(study=routine).exists()


def test_the_batch_decides_each_study_as_it_would_alone(
    group_a, facility_a, facility_b, regions, neuro_rule
):
    """Different facilities, jurisdictions and rules in one batch: re-routing each
    study on its own afterwards offers it to exactly the same readers."""
    readers = [
        make_reader(group_a, facility_a, name="a_neuro", region=regions["local"]),
        make_reader(group_a, facility_a, name="a_msk", region=regions["regional"], subs=("msk",)),
        make_reader(group_a, facility_b, name="b_neuro", region=regions["regional"]),
        make_reader(group_a, facility_b, name="b_general", region=regions["global"], subs=()),
    ]
    f.LicenseFactory(
        radiologist=readers[3],
        jurisdiction=facility_a.jurisdiction,
        valid_from=dt.date(2025, 1, 1),
        valid_to=dt.date(2099, 12, 31),
    )
    studies = [
        ready(facility_a),
        ready(facility_a, body_part="KNEE"),
        ready(facility_b),
        ready(facility_b, body_part="CHEST", priority=1),
    ]
    studies_route(study_ids=[studies[0].pk], batch_size=10, now=NOW)
    batch = {s.pk: offered_to(s) for s in studies}
    assert any(batch.values())
    for s in studies:
        study_reroute(study_id=s.pk, reason="compare", now=NOW + dt.timedelta(seconds=1))
    alone = {s.pk: offered_to(s) for s in studies}
    assert alone == batch


def test_a_batch_costs_a_few_statements_more_than_one_study(tiered, facility_a):
    first = ready(facility_a)
    with CaptureQueriesContext(connection) as one:
        study_route(study_id=first.pk, now=NOW)
    many = [ready(facility_a) for _ in range(10)]
    with CaptureQueriesContext(connection) as batch:
        decided = studies_route(study_ids=[many[0].pk], batch_size=20, now=NOW)
    assert len(decided) == 10
    # Ten studies cost two statements more than one: picking the others and locking
    # them; every read and write after that is one statement for the whole batch.
    assert len(batch.captured_queries) <= len(one.captured_queries) + 2


def test_a_batch_transition_refuses_all_or_nothing(facility_a):
    good = ready(facility_a)
    bad = f.StudyFactory(facility=facility_a)  # still receiving: cannot be offered
    with pytest.raises(InvalidTransition), transaction.atomic():
        studies_transition_locked(studies=[good, bad], to_status="offered", at=NOW, reasons={})
    assert Study.objects.get(pk=good.pk).status == "ready"
    assert not StudyTransition.objects.filter(to_status="offered").exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_study_held_by_another_worker_is_left_to_it_without_waiting(tiered, facility_a):
    own, held, other = ready(facility_a), ready(facility_a), ready(facility_a)
    locked, release = threading.Event(), threading.Event()

    def holder() -> None:
        try:
            with transaction.atomic():
                Study.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert locked.wait(10)
        decided = studies_route(study_ids=[own.pk], batch_size=10, now=NOW)
    finally:
        release.set()
        thread.join()
    assert set(decided) == {own.pk, other.pk}
    assert Study.objects.get(pk=held.pk).status == "ready"
    # Its own task routes it afterwards.
    assert studies_route(study_ids=[held.pk], batch_size=10, now=NOW)[held.pk] is not None

"""/metrics: Prometheus text computed from the database at scrape time, protected."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Permission
from prometheus_client.parser import text_string_to_metric_families

from alerts.models import Alert
from routing.models import RoutingDecision, StudyRouting
from studies.services import study_transition
from tests import factories as f
from tests.turnaround.conftest import DAY, scripted_study
from turnaround.metrics import TALLIES, metrics_registry

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_tallies() -> Any:
    # The counters' settled tallies belong to the process; each test has its own rows.
    TALLIES.reset()
    yield
    TALLIES.reset()


NOW = DAY + dt.timedelta(hours=2)
TOKEN = "scrape-token-for-tests-0123456789"


@pytest.fixture
def life(facility_a: Any, facility_c: Any, licensed_reader: Any) -> dict[str, Any]:
    """STAT offered at tier 1 (late), urgent offered at tier 0, one claimed, two final
    (20 and 50 minutes), one finalised long ago, one released and re-claimed."""
    late = scripted_study(facility_a, received_at=NOW - dt.timedelta(minutes=40), ready=1)
    StudyRouting.objects.create(study=late, tier=1, decided_at=NOW, relative_value=Decimal(1))
    urgent = scripted_study(
        facility_c, received_at=NOW - dt.timedelta(minutes=5), ready=1, priority=2
    )
    StudyRouting.objects.create(study=urgent, tier=0, decided_at=NOW, relative_value=Decimal(1))
    held = scripted_study(
        facility_a,
        reader=licensed_reader,
        received_at=NOW - dt.timedelta(minutes=9),
        ready=1,
        claimed=2,
    )
    study_transition(study_id=held.pk, to_status="offered", at=NOW - dt.timedelta(minutes=6))
    study_transition(
        study_id=held.pk,
        to_status="claimed",
        at=NOW - dt.timedelta(minutes=5),
        assigned_radiologist=licensed_reader,
    )
    quick = scripted_study(
        facility_a, reader=licensed_reader, received_at=DAY, ready=1, claimed=2, final=20
    )
    slow = scripted_study(
        facility_a,
        reader=licensed_reader,
        received_at=DAY,
        ready=1,
        claimed=2,
        final=50,
        priority=3,
    )
    scripted_study(  # finalised two days ago: outside the 24-hour histogram window
        facility_a,
        reader=licensed_reader,
        received_at=DAY - dt.timedelta(days=2),
        ready=1,
        claimed=2,
        final=10,
    )
    for outcome in ("offered", "offered", "escalated", "unroutable"):
        RoutingDecision.objects.create(study=late, tier=0, outcome=outcome, created_at=NOW)
    for key in (f"sla:{late.pk}:50", f"sla:{late.pk}:breach", f"sla:{slow.pk}:80"):
        Alert.objects.create(kind="sla", dedupe_key=key, message="m", study=late)
    return {"late": late, "urgent": urgent, "held": held, "quick": quick, "slow": slow}


def scrape(client: Any, **headers: Any) -> Any:
    with time_machine.travel(NOW, tick=False):
        return client.get("/metrics", **headers)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_figures_from_the_database(life: Any) -> None:
    from prometheus_client import generate_latest

    got = samples(generate_latest(metrics_registry(now=NOW)).decode())
    assert got[("telerad_queue_depth", (("priority", "stat"), ("tier", "regional")))] == 1
    assert got[("telerad_queue_depth", (("priority", "urgent"), ("tier", "hyperlocal")))] == 1
    assert got[("telerad_queue_depth", (("priority", "stat"), ("tier", "hyperlocal")))] == 0
    assert got[("telerad_studies_live", (("priority", "stat"), ("status", "claimed")))] == 1
    assert got[("telerad_studies_overdue", (("priority", "stat"),))] == 1
    assert got[("telerad_studies_ingested_total", ())] == 6
    assert got[("telerad_routing_decisions_total", (("outcome", "offered"),))] == 2
    assert got[("telerad_routing_decisions_total", (("outcome", "escalated"),))] == 1
    assert got[("telerad_claims_total", ())] == 5  # held twice, three others once
    assert got[("telerad_sla_breaches_total", ())] == 1
    stat = (("priority", "stat"),)
    # Finalised within 24 h: STAT 20 min; routine 50 min.  Buckets are cumulative.
    assert got[("telerad_turnaround_seconds_bucket", (("le", "900.0"), *stat))] == 0
    assert got[("telerad_turnaround_seconds_bucket", (("le", "1800.0"), *stat))] == 1
    assert got[("telerad_turnaround_seconds_bucket", (("le", "+Inf"), *stat))] == 1
    assert got[("telerad_turnaround_seconds_gcount", stat)] == 1
    assert got[("telerad_turnaround_seconds_gsum", stat)] == pytest.approx(1200)
    routine = (("priority", "routine"),)
    assert got[("telerad_turnaround_seconds_bucket", (("le", "1800.0"), *routine))] == 0
    assert got[("telerad_turnaround_seconds_bucket", (("le", "3600.0"), *routine))] == 1


def test_scrape_with_the_token(client: Any, settings: Any, life: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    response = scrape(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "telerad_queue_depth" in response.content.decode()


def test_refused_without_credentials_or_with_a_wrong_token(client: Any, settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    anonymous = scrape(client)
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert scrape(client, HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert scrape(client, HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401


def test_no_token_configured_means_no_token_works(client: Any, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert scrape(client, HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert scrape(client, HTTP_AUTHORIZATION="Bearer anything").status_code == 403


def test_signed_in_users_need_the_permission(client: Any, group_admin: Any, staff_a: Any) -> None:
    client.force_login(staff_a)
    assert scrape(client).status_code == 403
    client.force_login(group_admin)  # administers a group, not the whole site
    assert scrape(client).status_code == 403
    operator = f.UserFactory(username="operator")
    operator.user_permissions.add(Permission.objects.get(codename="view_metrics"))
    client.force_login(operator)
    assert scrape(client).status_code == 200
    client.force_login(f.UserFactory(username="root", is_superuser=True))
    assert scrape(client).status_code == 200


# --- Exact counters, counted incrementally (PostgreSQL) ----------------------
def _ingested() -> float:
    from prometheus_client import generate_latest

    got = samples(generate_latest(metrics_registry(now=NOW)).decode())
    return got[("telerad_studies_ingested_total", ())]


def settle(*, expected: int) -> None:
    """Scrape until the tally settles up to the newest study, exact at every scrape.
    (Settling waits for every older transaction of the cluster, other databases'
    included: on a shared machine that may take a few scrapes.)"""
    import time

    from studies.models import Study

    top = Study.objects.order_by("-pk").values_list("pk", flat=True).first()
    deadline = time.monotonic() + 30
    while True:
        assert _ingested() == expected
        if TALLIES._tallies["studies"].settled_id == top:
            return
        assert time.monotonic() < deadline, "the tally never settled"
        time.sleep(0.1)


@pytest.mark.postgres
def test_counters_settle_only_once_no_transaction_can_still_add_a_row(
    transactional_db: Any, facility_a: Any
) -> None:
    """A row inserted by a transaction still open when a higher id is already
    committed is counted once it commits: the tally never settles past it."""
    import threading

    from django.db import connection

    from studies.models import Study

    f.StudyFactory(facility=facility_a)
    f.StudyFactory(facility=facility_a)
    settle(expected=2)  # ids up to the second study are settled
    tally = TALLIES._tallies["studies"]
    assert tally.settled[""] == 2

    inserted, finish = threading.Event(), threading.Event()

    def slow_writer() -> None:
        from django.db import transaction

        try:
            with transaction.atomic():
                f.StudyFactory(facility=facility_a)  # takes the lower id, commits late
                inserted.set()
                finish.wait(10)
        finally:
            connection.close()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    try:
        assert inserted.wait(10)
        f.StudyFactory(facility=facility_a)  # a higher id, committed at once
        for _ in range(4):  # the open transaction holds the tally back
            assert _ingested() == 3
        assert tally.settled_id < Study.objects.order_by("-pk").first().pk
    finally:
        finish.set()
        writer.join(10)
    settle(expected=4)
    assert tally.settled[""] == 4

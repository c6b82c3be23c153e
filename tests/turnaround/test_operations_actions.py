"""The operations page acts: reassign (with the chooser of eligible readers), re-route,
raise priority, acknowledge an alert, pause and resume a reader.  Each action is for
an admin of the object's group only (a reader, facility staff and another group's
admin are refused, and nothing changes), goes through the owning service, is audited
and is answered with a message and the event that refreshes the panel."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_raise
from audit.models import AuditEvent
from network.models import Radiologist
from network.services import reader_pause
from routing.models import RoutingRule
from routing.services import study_route
from studies.models import Study
from studies.services import study_transition
from tests import factories as f
from tests.routing.conftest import make_reader
from worklist.models import Offer
from worklist.services.claims import study_claim

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def net(group_a: Any, facility_a: Any) -> dict[str, Any]:
    """Group A's default rule (neuro) and three readers on shift at facility A: Amy
    and Ben may read its studies, Cal holds no license in the patient's jurisdiction."""
    now = timezone.now()
    rule = RoutingRule.objects.create(reading_group=group_a, name="All", is_default=True)
    rule.subspecialties.set([f.subspecialty("neuro")])
    readers = {}
    for name, licensed in (("dr_amy", True), ("dr_ben", True), ("dr_cal", False)):
        reader = make_reader(
            group_a, facility_a, name=name, region=facility_a.region, licensed=licensed
        )
        reader.shifts.update(
            starts_at=now - dt.timedelta(hours=1), ends_at=now + dt.timedelta(hours=3)
        )
        readers[name] = reader
    return readers


def offered(facility: Any, *, priority: int = 1) -> Study:
    study = f.StudyFactory(facility=facility, priority=priority, modality="CT", body_part="HEAD")
    study_transition(study_id=study.pk, to_status="ready")
    study_route(study_id=study.pk)
    study = Study.objects.get(pk=study.pk)
    assert study.status == "offered"
    return study


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def events(*, actor: Any, **filters: Any) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(actor=actor, **filters).order_by("pk"))


# --- Reassign -------------------------------------------------------------------
def test_the_chooser_lists_eligible_readers_first_and_the_others_with_their_reasons(
    group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    study = offered(facility_a)
    amy, ben, cal = net["dr_amy"], net["dr_ben"], net["dr_cal"]
    claimed = offered(facility_a)
    study_claim(study_id=claimed.pk, radiologist=ben, actor=None)
    Radiologist.objects.filter(pk=ben.pk).update(workload_cap=1)  # Ben: at his cap now

    response = client_for(group_admin).get(f"/operations/studies/{study.pk}/reassign/", **HTMX)

    assert response.status_code == 200
    choices = response.context["choices"]
    assert [(c.radiologist_id, c.eligible) for c in choices] == [
        (amy.pk, True),
        (ben.pk, False),
        (cal.pk, False),
    ]
    assert choices[1].why_not == "at the workload cap"
    assert choices[2].why_not == "not licensed in the patient's jurisdiction"
    body = response.content.decode()
    assert f'"radiologist": "{amy.pk}"' in body  # Amy's button posts her id
    assert f'"radiologist": "{cal.pk}"' not in body  # Cal's is disabled, with the reason
    assert "not licensed in the patient&#x27;s jurisdiction" in body
    # The chooser names the study: a read, audited.
    read = events(actor=group_admin, action=AuditEvent.Action.READ, object_id=str(study.pk))
    assert [e.detail["view"] for e in read] == ["operations: reassign chooser"]


def test_the_holder_of_a_claimed_study_is_not_offered_it_again(
    group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    study = offered(facility_a)
    study_claim(study_id=study.pk, radiologist=net["dr_amy"], actor=None)
    response = client_for(group_admin).get(f"/operations/studies/{study.pk}/reassign/", **HTMX)
    by_id = {c.radiologist_id: c for c in response.context["choices"]}
    assert by_id[net["dr_amy"].pk].why_not == "holds this study now"
    assert not by_id[net["dr_amy"].pk].eligible and by_id[net["dr_ben"].pk].eligible


def test_reassigning_an_offered_study_claims_it_for_the_reader_audited(
    group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    study = offered(facility_a)
    ben = net["dr_ben"]
    assert (
        Offer.objects.filter(study=study, withdrawn_at__isnull=True, held_at__isnull=True).count()
        == 2
    )

    response = client_for(group_admin).post(
        f"/operations/studies/{study.pk}/reassign/", {"radiologist": ben.pk}, **HTMX
    )

    assert response.status_code == 200
    assert response["HX-Trigger"] == "operations-changed"
    body = response.content.decode()
    assert f"{study.accession_number} reassigned to {ben.display_name}." in body
    assert 'id="operations-action"' in body and "hx-swap-oob" in body  # the chooser closes
    study.refresh_from_db()
    assert (study.status, study.assigned_radiologist_id) == ("claimed", ben.pk)
    [moved] = events(actor=group_admin, action=AuditEvent.Action.TRANSITION)
    assert moved.object_id == str(study.pk)
    assert moved.detail["reason"] == f"reassigned to {ben.display_name}"


def test_reassigning_a_claimed_study_hands_it_over(
    group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    study = offered(facility_a)
    study_claim(study_id=study.pk, radiologist=net["dr_amy"], actor=None)
    response = client_for(group_admin).post(
        f"/operations/studies/{study.pk}/reassign/", {"radiologist": net["dr_ben"].pk}, **HTMX
    )
    assert "reassigned to" in response.content.decode()
    study.refresh_from_db()
    assert (study.status, study.assigned_radiologist_id) == ("claimed", net["dr_ben"].pk)
    [handed] = events(actor=group_admin, action=AuditEvent.Action.UPDATE)
    assert handed.object_id == str(study.pk)
    assert handed.detail["reassigned"] == [net["dr_amy"].pk, net["dr_ben"].pk]


def test_a_reassign_the_claim_policy_refuses_shows_its_reasons_and_changes_nothing(
    group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    study = offered(facility_a)
    response = client_for(group_admin).post(
        f"/operations/studies/{study.pk}/reassign/", {"radiologist": net["dr_cal"].pk}, **HTMX
    )
    assert response.status_code == 200
    assert "HX-Trigger" not in response
    body = response.content.decode()
    assert 'role="alert"' in body
    assert "You cannot read this study now: not licensed in the patient&#x27;s" in body
    study.refresh_from_db()
    assert study.status == "offered" and study.assigned_radiologist_id is None
    assert not events(actor=group_admin, action=AuditEvent.Action.TRANSITION)


def test_a_reader_of_another_group_is_no_such_radiologist(
    group_admin: Any, facility_a: Any, group_c: Any, net: dict[str, Any]
) -> None:
    study = offered(facility_a)
    elsewhere = f.RadiologistFactory(reading_group=group_c)
    response = client_for(group_admin).post(
        f"/operations/studies/{study.pk}/reassign/", {"radiologist": elsewhere.pk}, **HTMX
    )
    assert "No such radiologist in this study&#x27;s group." in response.content.decode()
    assert Study.objects.get(pk=study.pk).status == "offered"


def test_a_ready_study_cannot_be_reassigned_the_service_says_why(
    group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    study = f.StudyFactory(facility=facility_a, modality="CT", body_part="HEAD")
    study_transition(study_id=study.pk, to_status="ready")
    client = client_for(group_admin)
    chooser = client.get(f"/operations/studies/{study.pk}/reassign/", **HTMX)
    assert not chooser.context["reassignable"]
    assert "cannot be reassigned" in chooser.content.decode()
    response = client.post(
        f"/operations/studies/{study.pk}/reassign/", {"radiologist": net["dr_amy"].pk}, **HTMX
    )
    assert "A ready study cannot be reassigned." in response.content.decode()


def test_without_htmx_an_action_redirects_to_the_page_with_its_message(
    group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    study = offered(facility_a)
    client = client_for(group_admin)
    response = client.post(
        f"/operations/studies/{study.pk}/reassign/", {"radiologist": net["dr_amy"].pk}
    )
    assert response.status_code == 302 and response["Location"] == "/operations/"
    page = client.get("/operations/")
    assert f"{study.accession_number} reassigned to" in page.content.decode()


# --- Re-route and priority ------------------------------------------------------
def test_rerouting_a_waiting_study_withdraws_its_offers_and_routes_it_again_audited(
    group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    study = offered(facility_a)
    before = set(Offer.objects.filter(study=study).values_list("pk", flat=True))
    response = client_for(group_admin).post(f"/operations/studies/{study.pk}/reroute/", **HTMX)
    assert f"{study.accession_number} re-routed." in response.content.decode()
    assert response["HX-Trigger"] == "operations-changed"
    old = Offer.objects.filter(pk__in=before)
    assert all(o.withdrawn_at is not None for o in old)
    fresh = Offer.objects.filter(
        study=study, withdrawn_at__isnull=True, held_at__isnull=True
    ).exclude(pk__in=before)
    assert sorted(fresh.values_list("radiologist_id", flat=True)) == sorted(
        [net["dr_amy"].pk, net["dr_ben"].pk]
    )
    assert Study.objects.get(pk=study.pk).status == "offered"
    [event] = events(actor=group_admin, action=AuditEvent.Action.UPDATE)
    assert event.object_id == str(study.pk) and event.detail == {
        "rerouted": "from the operations page"
    }


def test_a_claimed_study_is_not_rerouted(
    group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    study = offered(facility_a)
    study_claim(study_id=study.pk, radiologist=net["dr_amy"], actor=None)
    response = client_for(group_admin).post(f"/operations/studies/{study.pk}/reroute/", **HTMX)
    assert "is no longer waiting for a reader" in response.content.decode()
    assert Study.objects.get(pk=study.pk).assigned_radiologist_id == net["dr_amy"].pk
    assert not events(actor=group_admin, action=AuditEvent.Action.UPDATE)


def test_raising_priority_recomputes_the_due_time_audited(
    group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    study = offered(facility_a, priority=3)
    response = client_for(group_admin).post(
        f"/operations/studies/{study.pk}/priority/", {"priority": "2"}, **HTMX
    )
    assert f"{study.accession_number} raised to Urgent." in response.content.decode()
    raised = Study.objects.get(pk=study.pk)
    assert raised.priority == 2
    assert raised.sla_due_at - raised.received_at == dt.timedelta(minutes=120)
    assert events(actor=group_admin, action=AuditEvent.Action.UPDATE, object_id=str(study.pk))


@pytest.mark.parametrize(
    ("priority", "message"),
    [("3", "is already Urgent"), ("2", "is already Urgent"), ("9", "Choose a priority")],
)
def test_a_priority_that_is_not_higher_is_refused(
    group_admin: Any, facility_a: Any, net: dict[str, Any], priority: str, message: str
) -> None:
    study = offered(facility_a, priority=2)
    response = client_for(group_admin).post(
        f"/operations/studies/{study.pk}/priority/", {"priority": priority}, **HTMX
    )
    assert message in response.content.decode()
    assert Study.objects.get(pk=study.pk).priority == 2
    assert not events(actor=group_admin, action=AuditEvent.Action.UPDATE)


# --- Alerts ---------------------------------------------------------------------
def test_acknowledging_an_alert_takes_it_off_the_page_audited(
    group_admin: Any, group_a: Any, facility_a: Any
) -> None:
    alert = alert_raise(
        kind=Alert.Kind.UNROUTABLE, dedupe_key="t:1", message="Nobody", reading_group=group_a
    )
    assert alert is not None
    client = client_for(group_admin)
    assert f'data-alert="{alert.pk}"' in client.get("/operations/panel/").content.decode()
    response = client.post(f"/operations/alerts/{alert.pk}/acknowledge/", **HTMX)
    assert "Alert acknowledged" in response.content.decode()
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None
    assert events(actor=group_admin, action=AuditEvent.Action.UPDATE, object_type="alerts.alert")
    assert f'data-alert="{alert.pk}"' not in client.get("/operations/panel/").content.decode()
    again = client.post(f"/operations/alerts/{alert.pk}/acknowledge/", **HTMX)
    assert "already acknowledged" in again.content.decode()


# --- Pause and resume -----------------------------------------------------------
def test_pausing_and_resuming_a_reader_audited_and_shown_on_the_panel(
    group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    amy = net["dr_amy"]
    client = client_for(group_admin)
    form = client.get(f"/operations/readers/{amy.pk}/pause/", **HTMX)
    assert form.status_code == 200 and 'name="reason"' in form.content.decode()
    assert f'max="{amy.reading_group.max_pause_minutes}"' in form.content.decode()

    response = client.post(
        f"/operations/readers/{amy.pk}/pause/", {"reason": "lunch", "minutes": "30"}, **HTMX
    )
    assert f"{amy.display_name} paused until" in response.content.decode()
    amy.refresh_from_db()
    assert not amy.is_available and amy.pause_reason == "lunch"
    assert amy.paused_until is not None
    assert dt.timedelta(minutes=29) < amy.paused_until - timezone.now() <= dt.timedelta(minutes=30)
    panel = client.get("/operations/panel/").content.decode()
    assert "paused until" in panel and f"/operations/readers/{amy.pk}/resume/" in panel

    response = client.post(f"/operations/readers/{amy.pk}/resume/", **HTMX)
    assert f"{amy.display_name} resumed." in response.content.decode()
    amy.refresh_from_db()
    assert amy.is_available and amy.paused_until is None
    changes = events(actor=group_admin, action=AuditEvent.Action.UPDATE, object_id=str(amy.pk))
    assert len(changes) == 2
    again = client.post(f"/operations/readers/{amy.pk}/resume/", **HTMX)
    assert "is not paused" in again.content.decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"reason": "lunch", "minutes": "100000"}, "A pause lasts 1 to"),
        ({"reason": " ", "minutes": "10"}, "Say why you pause."),
        ({"reason": "lunch", "minutes": "soon"}, "Say for how many minutes"),
    ],
)
def test_a_pause_the_service_refuses_shows_its_message(
    group_admin: Any, facility_a: Any, net: dict[str, Any], data: dict[str, str], message: str
) -> None:
    amy = net["dr_amy"]
    response = client_for(group_admin).post(f"/operations/readers/{amy.pk}/pause/", data, **HTMX)
    assert message in response.content.decode()
    amy.refresh_from_db()
    assert amy.is_available and amy.paused_until is None


def test_a_readers_cases_are_listed_with_their_actions_audited(
    group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    study = offered(facility_a, priority=2)
    study_claim(study_id=study.pk, radiologist=net["dr_amy"], actor=None)
    response = client_for(group_admin).get(f"/operations/readers/{net['dr_amy'].pk}/cases/", **HTMX)
    body = response.content.decode()
    assert f'data-study="{study.pk}"' in body
    assert f"/operations/studies/{study.pk}/reassign/" in body
    assert "Raise to STAT" in body
    assert f"/operations/studies/{study.pk}/reroute/" not in body  # claimed: not waiting
    [listed] = events(actor=group_admin, action=AuditEvent.Action.LIST, object_id=str(study.pk))
    assert listed.detail["view"] == "operations: a reader's cases"


def test_the_panel_offers_each_row_its_actions(
    group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    # A routine study on offer for most of its day: at risk.
    study = offered(facility_a, priority=3)
    received = timezone.now() - dt.timedelta(hours=20)
    Study.objects.filter(pk=study.pk).update(
        received_at=received, sla_due_at=received + dt.timedelta(hours=24)
    )
    study_claim(study_id=offered(facility_a).pk, radiologist=net["dr_ben"], actor=None)
    body = client_for(group_admin).get("/operations/panel/").content.decode()
    assert f"/operations/studies/{study.pk}/reassign/" in body
    assert f"/operations/studies/{study.pk}/reroute/" in body
    assert "Raise to Urgent" in body
    assert "operations-changed from:body" in body
    assert f"/operations/readers/{net['dr_ben'].pk}/cases/" in body
    assert f"/operations/readers/{net['dr_amy'].pk}/pause/" in body


# --- Who may act ----------------------------------------------------------------
ACTIONS = [
    ("get", "/operations/studies/{study}/reassign/", {}),
    ("post", "/operations/studies/{study}/reassign/", {"radiologist": "{ben}"}),
    ("post", "/operations/studies/{study}/reroute/", {}),
    ("post", "/operations/studies/{study}/priority/", {"priority": "1"}),
    ("post", "/operations/alerts/{alert}/acknowledge/", {}),
    ("get", "/operations/readers/{ben}/pause/", {}),
    ("post", "/operations/readers/{ben}/pause/", {"reason": "x", "minutes": "5"}),
    ("post", "/operations/readers/{paused}/resume/", {}),
    ("get", "/operations/readers/{ben}/cases/", {}),
]


@pytest.mark.parametrize(("method", "url", "data"), ACTIONS)
@pytest.mark.parametrize(
    ("who", "statuses"),
    [
        # The reader sees the study offered to them and themselves: 403; the alert and
        # another reader are not theirs to see: 404.
        ("reader", {403, 404}),
        ("facility staff", {403, 404}),
        ("another group's admin", {404}),
    ],
)
def test_only_an_admin_of_the_group_acts(
    who: str,
    statuses: set[int],
    method: str,
    url: str,
    data: dict[str, str],
    group_a: Any,
    facility_a: Any,
    net: dict[str, Any],
    staff_a: Any,
    other_admin: Any,
) -> None:
    study = offered(facility_a, priority=3)
    ben, amy = net["dr_ben"], net["dr_amy"]
    paused = net["dr_cal"]
    Radiologist.objects.filter(pk=paused.pk).update(
        is_available=False, paused_until=timezone.now() + dt.timedelta(minutes=5)
    )
    alert = alert_raise(
        kind=Alert.Kind.UNROUTABLE, dedupe_key="t:2", message="x", reading_group=group_a
    )
    assert alert is not None
    user = {"reader": amy.user, "facility staff": staff_a, "another group's admin": other_admin}[
        who
    ]
    values = {"study": study.pk, "ben": ben.pk, "alert": alert.pk, "paused": paused.pk}
    path = url.format(**values)
    body = {k: v.format(**values) for k, v in data.items()}
    audited = AuditEvent.objects.count()

    response = getattr(client_for(user), method)(path, body, **HTMX)

    assert response.status_code in statuses, (who, path, response.status_code)
    if who == "reader" and "/studies/" in path:
        assert response.status_code == 403  # offered to Amy: she sees it, may not act
    study.refresh_from_db()
    assert (study.status, study.priority, study.assigned_radiologist_id) == ("offered", 3, None)
    assert (
        Offer.objects.filter(study=study, withdrawn_at__isnull=True, held_at__isnull=True).count()
        == 2
    )
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    assert Radiologist.objects.get(pk=ben.pk).is_available
    assert not Radiologist.objects.get(pk=paused.pk).is_available
    assert AuditEvent.objects.count() == audited  # nothing read, nothing changed


def test_a_paused_reader_is_listed_off_shift_with_the_pause_in_the_api(
    api: Any, group_admin: Any, group_a: Any
) -> None:
    idle = f.RadiologistFactory(reading_group=group_a)  # off shift, no claims
    other = f.RadiologistFactory(reading_group=group_a)
    idle = reader_pause(radiologist=idle, actor=None, reason="school run", minutes=45)
    load = {r["radiologist"]: r for r in api(group_admin).get("/api/v1/operations/").json()["load"]}
    assert other.pk not in load
    assert load[idle.pk]["available"] is False
    assert load[idle.pk]["pause_reason"] == "school run"
    assert load[idle.pk]["paused_until"] == idle.paused_until.isoformat().replace("+00:00", "Z")


def test_a_pause_that_ran_out_is_over_on_the_page(
    api: Any, group_admin: Any, group_a: Any, net: dict[str, Any]
) -> None:
    amy = reader_pause(radiologist=net["dr_amy"], actor=None, reason="nap", minutes=5)
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=6), tick=False):
        load = {
            r["radiologist"]: r for r in api(group_admin).get("/api/v1/operations/").json()["load"]
        }
    assert load[amy.pk]["available"] is True
    assert (load[amy.pk]["paused_until"], load[amy.pk]["pause_reason"]) == (None, "")


# --- The same over the API ------------------------------------------------------
def test_the_api_lists_the_readers_a_study_may_be_reassigned_to(
    api: Any, group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    study = offered(facility_a)
    response = api(group_admin).get(f"/api/v1/operations/studies/{study.pk}/readers/")
    assert response.status_code == 200
    body = response.json()
    assert body["study"] == study.pk and body["reassignable"] is True
    assert [(r["radiologist"], r["eligible"], r["why_not"]) for r in body["readers"]] == [
        (net["dr_amy"].pk, True, ""),
        (net["dr_ben"].pk, True, ""),
        (net["dr_cal"].pk, False, "not licensed in the patient's jurisdiction"),
    ]
    assert events(actor=group_admin, action=AuditEvent.Action.READ, object_id=str(study.pk))


def test_the_api_reroutes_a_waiting_study_and_refuses_a_claimed_one(
    api: Any, group_admin: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    study = offered(facility_a)
    response = api(group_admin).post(f"/api/v1/operations/studies/{study.pk}/reroute/")
    assert response.status_code == 200
    assert response.json() == {"study": study.pk, "status": "offered"}
    assert events(actor=group_admin, action=AuditEvent.Action.UPDATE, object_id=str(study.pk))
    study_claim(study_id=study.pk, radiologist=net["dr_amy"], actor=None)
    refused = api(group_admin).post(f"/api/v1/operations/studies/{study.pk}/reroute/")
    assert refused.status_code == 409 and refused.json()["code"] == "not_waiting"


def test_the_api_acknowledges_an_alert_once(api: Any, group_admin: Any, group_a: Any) -> None:
    alert = alert_raise(
        kind=Alert.Kind.UNROUTABLE, dedupe_key="t:3", message="x", reading_group=group_a
    )
    assert alert is not None
    url = f"/api/v1/operations/alerts/{alert.pk}/acknowledge/"
    response = api(group_admin).post(url)
    assert response.status_code == 200 and response.json()["id"] == alert.pk
    assert Alert.objects.get(pk=alert.pk).acknowledged_at is not None
    assert api(group_admin).post(url).status_code == 400


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/v1/operations/studies/{study}/readers/"),
        ("post", "/api/v1/operations/studies/{study}/reroute/"),
        ("post", "/api/v1/operations/alerts/{alert}/acknowledge/"),
    ],
)
def test_the_api_actions_are_for_the_groups_admins_only(
    api: Any,
    method: str,
    url: str,
    group_a: Any,
    facility_a: Any,
    net: dict[str, Any],
    staff_a: Any,
    other_admin: Any,
) -> None:
    study = offered(facility_a)
    alert = alert_raise(
        kind=Alert.Kind.UNROUTABLE, dedupe_key="t:4", message="x", reading_group=group_a
    )
    assert alert is not None
    path = url.format(study=study.pk, alert=alert.pk)
    expected = {
        net["dr_amy"].user: 404 if "alerts" in url else 403,
        staff_a: 404 if "alerts" in url else 403,
        other_admin: 404,
    }
    audited = AuditEvent.objects.count()
    for user, status in expected.items():
        assert getattr(api(user), method)(path).status_code == status, (user, path)
    assert AuditEvent.objects.count() == audited
    assert Offer.objects.filter(study=study, withdrawn_at__isnull=True).count() == 2
    assert Alert.objects.get(pk=alert.pk).acknowledged_at is None


def test_the_choosers_queries_do_not_grow_with_the_readers(
    group_admin: Any, group_a: Any, facility_a: Any, net: dict[str, Any]
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    study = offered(facility_a)
    client = client_for(group_admin)
    url = f"/api/v1/operations/studies/{study.pk}/readers/"

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        return len(queries)

    count()  # the first request of the session reads more (the user, the session)
    three = count()
    for n in range(5):
        make_reader(group_a, facility_a, name=f"dr_more_{n}", region=facility_a.region)
    assert count() == three

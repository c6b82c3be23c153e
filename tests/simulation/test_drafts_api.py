"""Drafts of a group's routing rules through the API: copied from the live rules,
validated as live rules are, published in one audited transaction that the very
next study routed obeys; replays queued; only the group's admins see any of it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from audit.models import AuditEvent
from network.models import ReadingGroup
from routing.models import RoutingDecision, RoutingRule
from routing.services import study_route
from simulation import selectors, services
from simulation.models import RoutingDraft, SimulationRun
from studies.services import study_transition
from tests import factories as f
from tests.routing.conftest import NOW, make_reader

pytestmark = pytest.mark.django_db

DRAFTS = "/api/v1/routing-simulations/drafts/"
RUNS = "/api/v1/routing-simulations/runs/"


@pytest.fixture
def live_rules(group_a: Any) -> dict[str, RoutingRule]:
    """Group A's live rules: neuro readers read head CT/MR; the default, anyone general."""
    neuro = RoutingRule.objects.create(
        reading_group=group_a, name="Neuro", position=10, modalities=["CT", "MR"],
        body_parts=["HEAD"],
    )  # fmt: skip
    neuro.subspecialties.set([f.subspecialty("neuro")])
    default = RoutingRule.objects.create(
        reading_group=group_a, name="Default", is_default=True, allow_general=True
    )
    default.subspecialties.set([f.subspecialty("general")])
    return {"neuro": neuro, "default": default}


@pytest.fixture
def readers(group_a: Any, facility_a: Any) -> dict[str, Any]:
    """Two readers at facility A's own tier: a neuroradiologist and a generalist."""
    local = f.RegionFactory(code="us-tx-north", name="North Texas", country="US")
    return {
        "neuro": make_reader(group_a, facility_a, name="dr_neuro", region=local, subs=("neuro",)),
        "general": make_reader(
            group_a, facility_a, name="dr_general", region=local, subs=("general",)
        ),
    }


@pytest.fixture
def superuser(db: Any) -> Any:
    return f.UserFactory(username="root", is_superuser=True, is_staff=True)


def ready_head_ct(facility: Any, *, at: dt.datetime) -> Any:
    study = f.StudyFactory(
        facility=facility,
        modality="CT",
        body_part="HEAD",
        priority=1,
        received_at=at - dt.timedelta(minutes=1),
    )
    return study_transition(study_id=study.pk, to_status="ready", at=at)


def new_draft(client: Any, group: Any, name: str = "Try-out") -> dict[str, Any]:
    response = client.post(DRAFTS, {"reading_group": group.pk, "name": name}, format="json")
    assert response.status_code == 201, response.content
    body: dict[str, Any] = response.json()
    return body


def rule_payload(**overrides: Any) -> dict[str, Any]:
    return {"name": "MSK knees", "modalities": ["mr"], "body_parts": ["knee"],
            "subspecialties": ["msk"], **overrides}  # fmt: skip


# --- Creating and editing ------------------------------------------------------------


def test_a_new_draft_is_a_copy_of_the_live_rules(api, group_admin, group_a, live_rules):
    client = api(group_admin)
    body = new_draft(client, group_a)
    assert [r["name"] for r in body["rules"]] == ["Neuro", "Default"]
    assert body["rules"] == selectors.live_rules_as_draft(reading_group_id=group_a.pk)
    neuro = body["rules"][0]
    assert neuro["id"] == live_rules["neuro"].pk
    assert neuro["subspecialties"] == ["neuro"] and neuro["modalities"] == ["CT", "MR"]
    group_a.refresh_from_db()
    assert body["based_on_version"] == group_a.rules_version
    assert body["rules_changed_since"] is False
    assert AuditEvent.objects.filter(
        object_type="simulation.routingdraft", object_id=str(body["id"]), action="create"
    ).exists()
    # The draft is a copy: editing it leaves the live rules alone.
    rules = body["rules"]
    rules[0]["subspecialties"] = ["msk"]
    assert (
        client.patch(f"{DRAFTS}{body['id']}/", {"rules": rules}, format="json").status_code == 200
    )
    assert list(live_rules["neuro"].subspecialties.values_list("code", flat=True)) == ["neuro"]


def test_a_group_keeps_several_drafts_and_copies_one_from_another(
    api, group_admin, group_a, live_rules
):
    client = api(group_admin)
    first = new_draft(client, group_a, "First")
    rules = [*first["rules"], rule_payload()]
    assert (
        client.patch(f"{DRAFTS}{first['id']}/", {"rules": rules}, format="json").status_code == 200
    )
    copy = client.post(
        DRAFTS, {"reading_group": group_a.pk, "name": "Second", "copy_of": first["id"]},
        format="json",
    )  # fmt: skip
    assert copy.status_code == 201, copy.content
    assert [r["name"] for r in copy.json()["rules"]] == ["Neuro", "Default", "MSK knees"]
    new_draft(client, group_a, "Third")
    listed = client.get(DRAFTS).json()["results"]
    assert sorted(d["name"] for d in listed) == ["First", "Second", "Third"]
    # A name is the draft's within its group.
    again = client.post(DRAFTS, {"reading_group": group_a.pk, "name": "First"}, format="json")
    assert again.status_code == 400 and "name" in again.json()


def test_edited_rules_are_stored_normalized_with_the_live_rules_defaults(
    api, group_admin, group_a, facility_a, live_rules
):
    client = api(group_admin)
    draft = new_draft(client, group_a)
    added = rule_payload(facilities=[facility_a.pk], relative_value="2.5", flags=["b", "a", "a"])
    response = client.put(
        f"{DRAFTS}{draft['id']}/",
        {"name": "Renamed", "rules": [*draft["rules"], added]},
        format="json",
    )
    assert response.status_code == 200, response.content
    stored = RoutingDraft.objects.get(pk=draft["id"])
    assert stored.name == "Renamed"
    new = stored.rules[2]
    assert new["id"] is None
    assert new["modalities"] == ["MR"] and new["body_parts"] == ["KNEE"]
    assert new["flags"] == ["a", "b"] and new["relative_value"] == "2.50"
    assert new["facilities"] == [facility_a.pk] and new["subspecialties"] == ["msk"]
    # What a live rule created from the same input would hold.
    assert new["position"] == 100 and new["escalate_fractions"] == [0.25, 0.5]
    assert new["wait_stat_seconds"] == 180 and new["widest_tier"] == 2
    event = AuditEvent.objects.get(
        object_type="simulation.routingdraft", object_id=str(draft["id"]), action="update"
    )
    assert event.detail["changed"]["name"] == ["Try-out", "Renamed"]
    rules_before, rules_after = event.detail["changed"]["rules"]
    assert rules_before == draft["rules"] and rules_after == stored.rules


@pytest.mark.parametrize(
    ("override", "field", "message"),
    [
        ({"description_pattern": "KNEE(("}, "description_pattern", "regular expression"),
        ({"escalate_fractions": [0.6, 0.3]}, "escalate_fractions", "increasing"),
        ({"escalate_fractions": [0.5]}, "escalate_fractions", "at least 2"),
        ({"wait_stat_seconds": 0}, "wait_stat_seconds", "greater than or equal to 1"),
        ({"subspecialties": ["astrology"]}, "subspecialties", "does not exist"),
        ({"priorities": [9]}, "priorities", "1 = STAT"),
    ],
)
def test_an_invalid_rule_is_a_400_naming_its_index_and_field(
    api, group_admin, group_a, live_rules, override, field, message
):
    client = api(group_admin)
    draft = new_draft(client, group_a)
    rules = [*draft["rules"], rule_payload(**override)]
    response = client.patch(f"{DRAFTS}{draft['id']}/", {"rules": rules}, format="json")
    assert response.status_code == 400
    errors = response.json()["rules"]
    assert list(errors) == ["2"]
    assert message in str(errors["2"][field]), errors
    assert RoutingDraft.objects.get(pk=draft["id"]).rules == draft["rules"]


def test_a_facility_of_another_group_is_refused(
    api, group_admin, group_a, facility_a, facility_c, live_rules, superuser
):
    draft = new_draft(api(group_admin), group_a)
    for user in (group_admin, superuser):  # the superuser may name any facility live
        rules = [*draft["rules"], rule_payload(facilities=[facility_a.pk, facility_c.pk])]
        response = api(user).patch(f"{DRAFTS}{draft['id']}/", {"rules": rules}, format="json")
        assert response.status_code == 400
        assert "facilities" in response.json()["rules"]["2"], response.json()


def test_the_draft_as_a_whole_has_one_default_and_live_ids_once(
    api, group_admin, group_a, live_rules, other_admin, group_c
):
    other_rule = RoutingRule.objects.create(reading_group=group_c, name="Theirs")
    client = api(group_admin)
    draft = new_draft(client, group_a)
    neuro, default = draft["rules"]
    cases = [
        ([neuro, default, {**rule_payload(), "is_default": True}], "2", "is_default"),
        ([neuro, {**neuro, "name": "Neuro again"}, default], "1", "id"),
        ([neuro, default, {**rule_payload(), "id": other_rule.pk}], "2", "id"),
        ([neuro, default, {**rule_payload(), "id": 999999}], "2", "id"),
    ]
    for rules, index, field in cases:
        response = client.patch(f"{DRAFTS}{draft['id']}/", {"rules": rules}, format="json")
        assert response.status_code == 400, rules
        assert field in response.json()["rules"][index], response.json()
    # Moving the default from one rule to another is fine in a draft (the live
    # check against the current default does not apply).
    swapped = [{**neuro, "is_default": True}, {**default, "is_default": False}]
    assert (
        client.patch(f"{DRAFTS}{draft['id']}/", {"rules": swapped}, format="json").status_code
        == 200
    )


# --- Publishing ----------------------------------------------------------------------


def test_publishing_replaces_the_live_rules_and_the_next_study_obeys(
    api, group_admin, group_a, facility_a, live_rules, readers
):
    before = ready_head_ct(facility_a, at=NOW)
    first = study_route(study_id=before.pk, now=NOW)
    assert first is not None and first.rule_name == "Neuro"
    assert first.offered_to == [readers["neuro"].pk]

    client = api(group_admin)
    draft = new_draft(client, group_a)
    neuro, _default = draft["rules"]
    rules = [
        # Changed: head CT goes to the generalists.
        {**neuro, "name": "Head (general)", "subspecialties": ["general"], "widest_tier": 0},
        # Added.
        rule_payload(),
        # Removed: the default.
    ]
    assert (
        client.patch(f"{DRAFTS}{draft['id']}/", {"rules": rules}, format="json").status_code == 200
    )
    events_before = AuditEvent.objects.count()
    response = client.post(f"{DRAFTS}{draft['id']}/publish/", {}, format="json")
    assert response.status_code == 200, response.content
    diff = response.json()["diff"]
    assert [(c["change"], c["name"]) for c in diff] == [
        ("changed", "Head (general)"),
        ("added", "MSK knees"),
        ("removed", "Default"),
    ]
    assert diff[0]["fields"]["subspecialties"] == {"before": ["neuro"], "after": ["general"]}
    assert diff[0]["fields"]["widest_tier"] == {"before": 2, "after": 0}
    created = RoutingRule.objects.get(name="MSK knees")
    assert diff[1]["id"] == created.pk

    # The live rules are the draft's now, ids kept for the rules it edited.
    live = selectors.live_rules_as_draft(reading_group_id=group_a.pk)
    assert [(r["id"], r["name"]) for r in live] == [
        (live_rules["neuro"].pk, "Head (general)"),
        (created.pk, "MSK knees"),
    ]
    assert not RoutingRule.objects.filter(pk=live_rules["default"].pk).exists()
    # One event for the publish, with the whole diff, beside each rule's own.
    published = AuditEvent.objects.filter(
        object_type="simulation.routingdraft", detail__has_key="published"
    )
    assert published.count() == 1
    event = published.get()
    assert event.actor == group_admin and event.reading_group_id == group_a.pk
    assert event.detail["published"]["diff"] == diff
    assert event.detail["published"]["forced"] is False
    rule_events = AuditEvent.objects.filter(pk__gt=events_before, object_type="routing.routingrule")
    assert {e.action for e in rule_events} == {"create", "update", "delete"}
    # The draft is re-based: it equals the live rules and can be published again.
    stored = RoutingDraft.objects.get(pk=draft["id"])
    group_a.refresh_from_db()
    assert stored.rules == live and stored.based_on_version == group_a.rules_version
    assert response.json()["rules_version"] == group_a.rules_version
    assert stored.published_by == group_admin and stored.published_at is not None
    assert client.get(f"{DRAFTS}{draft['id']}/diff/").json() == []

    # The very next study routed uses the published rules.
    after = ready_head_ct(facility_a, at=NOW + dt.timedelta(minutes=1))
    second = study_route(study_id=after.pk, now=NOW + dt.timedelta(minutes=1))
    assert second is not None and second.rule_name == "Head (general)"
    assert second.offered_to == [readers["general"].pk]
    assert second.rule_id == live_rules["neuro"].pk


def test_publishing_is_one_transaction(group_admin, group_a, live_rules):
    draft = services.draft_create(actor=group_admin, reading_group=group_a, name="Broken")
    neuro, _default = draft.rules
    # A rule the model refuses (a draft saved past the API's validation), after a removal.
    RoutingDraft.objects.filter(pk=draft.pk).update(
        rules=[neuro, {**neuro, "id": None, "name": "Bad", "wait_stat_seconds": 0}]
    )
    draft.refresh_from_db()
    live_before = selectors.live_rules_as_draft(reading_group_id=group_a.pk)
    events_before = AuditEvent.objects.count()
    with pytest.raises(ValidationError):
        services.draft_publish(actor=group_admin, draft=draft)
    assert selectors.live_rules_as_draft(reading_group_id=group_a.pk) == live_before
    assert AuditEvent.objects.count() == events_before
    assert RoutingDraft.objects.get(pk=draft.pk).published_at is None


def test_publishing_over_live_rules_changed_since_needs_force(
    api, group_admin, group_a, live_rules
):
    client = api(group_admin)
    draft = new_draft(client, group_a)
    neuro, default = draft["rules"]
    rules = [{**neuro, "position": 5}, default]
    assert (
        client.patch(f"{DRAFTS}{draft['id']}/", {"rules": rules}, format="json").status_code == 200
    )
    # Meanwhile someone edits the live rules.
    edit = client.patch(
        f"/api/v1/routing-rules/{live_rules['neuro'].pk}/", {"name": "Neuro (edited)"},
        format="json",
    )  # fmt: skip
    assert edit.status_code == 200
    assert client.get(f"{DRAFTS}{draft['id']}/").json()["rules_changed_since"] is True

    refused = client.post(f"{DRAFTS}{draft['id']}/publish/", {}, format="json")
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "rules_changed"
    (change,) = body["diff"]
    assert change["fields"]["name"] == {"before": "Neuro (edited)", "after": "Neuro"}
    assert change["fields"]["position"] == {"before": 10, "after": 5}
    live_rules["neuro"].refresh_from_db()
    assert (live_rules["neuro"].name, live_rules["neuro"].position) == ("Neuro (edited)", 10)
    assert not AuditEvent.objects.filter(detail__has_key="published").exists()

    forced = client.post(f"{DRAFTS}{draft['id']}/publish/", {"force": True}, format="json")
    assert forced.status_code == 200, forced.content
    live_rules["neuro"].refresh_from_db()
    assert (live_rules["neuro"].name, live_rules["neuro"].position) == ("Neuro", 5)
    event = AuditEvent.objects.get(detail__has_key="published")
    assert event.detail["published"]["forced"] is True


# --- Runs ----------------------------------------------------------------------------


def test_a_run_is_accepted_and_queued(
    api, group_admin, group_a, live_rules, django_capture_on_commit_callbacks
):
    client = api(group_admin)
    draft = new_draft(client, group_a)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        response = client.post(RUNS, {"draft": draft["id"], "days": 7}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["draft"] == draft["id"]
    run = SimulationRun.objects.get(pk=body["id"])
    assert run.reading_group_id == group_a.pk and run.requested_by == group_admin
    assert run.window_end - run.window_start == dt.timedelta(days=7)
    assert abs((run.window_end - timezone.now()).total_seconds()) < 60
    # The task is sent once the run is committed (the worker must find it).
    assert len(sent) == 1
    assert AuditEvent.objects.filter(
        object_type="simulation.simulationrun", object_id=str(run.pk), action="create"
    ).exists()
    listed = client.get(RUNS, {"draft": draft["id"]}).json()["results"]
    assert [r["id"] for r in listed] == [run.pk]
    detail = client.get(f"{RUNS}{run.pk}/").json()
    assert detail["progress"] == 0.0 and detail["result"] == {}


def test_a_queued_run_is_replayed_by_its_task_and_read_back_done(
    api, group_admin, group_a, facility_a, live_rules, readers, django_capture_on_commit_callbacks
):
    study = ready_head_ct(facility_a, at=timezone.now() - dt.timedelta(hours=1))
    study_route(study_id=study.pk, now=timezone.now() - dt.timedelta(hours=1))
    client = api(group_admin)
    draft = new_draft(client, group_a)
    # Tasks run inline in tests: the run is replayed as its transaction commits.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(RUNS, {"draft": draft["id"], "days": 1}, format="json")
    assert response.status_code == 202, response.content
    body = client.get(f"{RUNS}{response.json()['id']}/").json()
    assert body["status"] == "done", body["error"]
    assert body["progress"] == 1.0 and body["studies_total"] == 1
    assert body["result"]["studies"] == 1
    assert set(body["result"]["arms"]) == {"live", "draft"}


@pytest.mark.parametrize(
    ("window", "field"),
    [
        ({"days": 0}, "days"),
        ({"days": 91}, "days"),
        ({}, "non_field_errors"),
        ({"days": 3, "window_end": "2026-01-02T00:00:00Z"}, "non_field_errors"),
        (
            {"window_start": "2026-01-01T00:00:00Z", "window_end": "2099-01-02T00:00:00Z"},
            "window_end",
        ),
        (
            {"window_start": "2026-01-02T00:00:00Z", "window_end": "2026-01-01T00:00:00Z"},
            "window_end",
        ),
        (
            {"window_start": "2025-01-01T00:00:00Z", "window_end": "2025-06-01T00:00:00Z"},
            "window_start",
        ),
    ],
)
def test_a_bad_window_is_a_400(api, group_admin, group_a, live_rules, window, field):
    client = api(group_admin)
    draft = new_draft(client, group_a)
    response = client.post(RUNS, {"draft": draft["id"], **window}, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not SimulationRun.objects.exists()


def test_an_explicit_window_is_kept(api, group_admin, group_a, live_rules):
    client = api(group_admin)
    draft = new_draft(client, group_a)
    response = client.post(
        RUNS,
        {
            "draft": draft["id"],
            "window_start": "2026-01-01T00:00:00Z",
            "window_end": "2026-03-31T00:00:00Z",
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    run = SimulationRun.objects.get()
    assert run.window_start == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert run.window_end == dt.datetime(2026, 3, 31, tzinfo=dt.UTC)


def test_the_draft_list_reads_a_fixed_number_of_queries(
    api, group_admin, group_a, live_rules, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = api(group_admin)
    services.draft_create(actor=group_admin, reading_group=group_a, name="d0")
    with CaptureQueriesContext(connection) as one:
        assert len(client.get(DRAFTS).json()["results"]) == 1
    for n in range(1, 6):
        services.draft_create(actor=group_admin, reading_group=group_a, name=f"d{n}")
    with django_assert_max_num_queries(len(one)):
        assert len(client.get(DRAFTS).json()["results"]) == 6


# --- Who may ---------------------------------------------------------------------------


def test_another_groups_admin_sees_runs_and_publishes_nothing(
    api, group_admin, other_admin, group_a, group_c, live_rules
):
    draft = services.draft_create(actor=group_admin, reading_group=group_a, name="Ours")
    run = services.run_request(
        actor=group_admin,
        draft=draft,
        window_start=timezone.now() - dt.timedelta(days=7),
        window_end=timezone.now(),
    )
    client = api(other_admin)
    assert client.get(DRAFTS).json()["results"] == []
    assert client.get(RUNS).json()["results"] == []
    for method, url in [
        ("get", f"{DRAFTS}{draft.pk}/"),
        ("get", f"{DRAFTS}{draft.pk}/diff/"),
        ("patch", f"{DRAFTS}{draft.pk}/"),
        ("delete", f"{DRAFTS}{draft.pk}/"),
        ("post", f"{DRAFTS}{draft.pk}/publish/"),
        ("get", f"{RUNS}{run.pk}/"),
    ]:
        assert getattr(client, method)(url, {}, format="json").status_code == 404, url
    assert client.post(RUNS, {"draft": draft.pk, "days": 7}, format="json").status_code == 404
    # Nor create a draft in our group, or copy ours into theirs.
    assert (
        client.post(DRAFTS, {"reading_group": group_a.pk, "name": "x"}, format="json").status_code
        == 400
    )
    copy = client.post(
        DRAFTS, {"reading_group": group_c.pk, "name": "x", "copy_of": draft.pk}, format="json"
    )
    assert copy.status_code == 400 and "copy_of" in copy.json()
    assert SimulationRun.objects.count() == 1
    assert list(RoutingDraft.objects.values_list("name", flat=True)) == ["Ours"]


def test_readers_and_facility_staff_are_refused(
    api, group_admin, group_a, live_rules, staff_a, licensed_reader
):
    draft = services.draft_create(actor=group_admin, reading_group=group_a, name="Ours")
    for user in (staff_a, licensed_reader.user):
        client = api(user)
        assert client.get(DRAFTS).status_code == 403
        assert client.get(f"{DRAFTS}{draft.pk}/").status_code == 403
        assert client.post(f"{DRAFTS}{draft.pk}/publish/", {}, format="json").status_code == 403
        assert client.post(RUNS, {"draft": draft.pk, "days": 7}, format="json").status_code == 403
        assert (
            client.post(
                DRAFTS, {"reading_group": group_a.pk, "name": "x"}, format="json"
            ).status_code
            == 403
        )
    assert api(None).get(DRAFTS).status_code in (401, 403)
    assert ReadingGroup.objects.get(pk=group_a.pk).routing_drafts.count() == 1


def test_deleting_a_draft_leaves_the_live_rules(api, group_admin, group_a, live_rules):
    client = api(group_admin)
    draft = new_draft(client, group_a)
    assert client.delete(f"{DRAFTS}{draft['id']}/").status_code == 204
    assert not RoutingDraft.objects.exists()
    assert RoutingRule.objects.filter(reading_group=group_a).count() == 2
    assert AuditEvent.objects.filter(
        object_type="simulation.routingdraft", object_id=str(draft["id"]), action="delete"
    ).exists()


def test_no_routing_decision_is_touched_by_publishing_a_removal(
    api, group_admin, group_a, facility_a, live_rules, readers
):
    """A rule that decided studies can be removed: the decisions keep its name."""
    study = ready_head_ct(facility_a, at=NOW)
    study_route(study_id=study.pk, now=NOW)
    client = api(group_admin)
    draft = new_draft(client, group_a)
    _neuro, default = draft["rules"]
    client.patch(f"{DRAFTS}{draft['id']}/", {"rules": [default]}, format="json")
    assert client.post(f"{DRAFTS}{draft['id']}/publish/", {}, format="json").status_code == 200
    decision = RoutingDecision.objects.get(study=study)
    assert decision.rule_id is None and decision.rule_name == "Neuro"

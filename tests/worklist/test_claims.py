"""Claiming through the API: who may claim, what they see, and the refusals."""

from __future__ import annotations

import datetime as dt

import pytest

from network.models import License
from routing.services import study_route
from studies.models import Study
from tests import factories as f
from tests.routing.conftest import NOW

pytestmark = pytest.mark.django_db


@pytest.fixture
def offered(tiered, ready_study):
    study_route(study_id=ready_study.pk, now=NOW)
    return Study.objects.get(pk=ready_study.pk)


def test_the_worklist_shows_offered_studies_most_urgent_first(api, tiered, facility_a, offered):
    from studies.services import study_transition

    routine = f.StudyFactory(
        facility=facility_a,
        modality="CT",
        body_part="HEAD",
        priority=3,
        received_at=NOW - dt.timedelta(minutes=30),
    )
    study_transition(study_id=routine.pk, to_status="ready", at=NOW)
    study_route(study_id=routine.pk, now=NOW)
    rows = api(tiered["local"].user).get("/api/v1/worklist/").json()["results"]
    assert [r["id"] for r in rows] == [offered.pk, routine.pk]
    assert rows[0]["priority_label"] == "STAT" and rows[0]["tier"] == 0
    assert rows[0]["rule_name"] == "Neuro" and rows[0]["relative_value"] == "1.00"
    assert 0 < rows[0]["seconds_to_due"] <= 30 * 60
    # Filters.
    assert [
        r["id"]
        for r in api(tiered["local"].user)
        .get("/api/v1/worklist/", {"priority": 3})
        .json()["results"]
    ] == [routine.pk]

    def listed(**query):
        rows = api(tiered["local"].user).get("/api/v1/worklist/", query).json()["results"]
        return [r["id"] for r in rows]

    both = [offered.pk, routine.pk]
    assert listed(facility=facility_a.pk) == both
    assert listed(facility=facility_a.pk + 1000) == []
    assert listed(subspecialty="neuro") == both  # the Neuro rule requires it
    assert listed(subspecialty="msk") == []
    assert listed(modality="ct", tier=0) == both
    assert listed(tier=1) == []
    # Not yet offered to the regional reader.
    assert api(tiered["regional"].user).get("/api/v1/worklist/").json()["results"] == []


def test_claim_then_the_second_claimer_gets_409(api, tiered, ready_study, group_a, facility_a):
    other = make_local(group_a, facility_a)
    study_route(study_id=ready_study.pk, now=NOW)
    offered = Study.objects.get(pk=ready_study.pk)
    assert api(tiered["local"].user).post(f"/api/v1/studies/{offered.pk}/claim/").status_code == 200
    late = api(other.user).post(f"/api/v1/studies/{offered.pk}/claim/")
    assert late.status_code == 409
    assert "already been claimed" in late.json()["detail"]
    study = Study.objects.get(pk=offered.pk)
    assert study.status == "claimed" and study.assigned_radiologist == tiered["local"]
    mine = api(tiered["local"].user).get("/api/v1/me/cases/").json()["results"]
    assert [r["id"] for r in mine] == [offered.pk]


def make_local(group_a, facility_a):
    from tests.routing.conftest import make_reader

    region = f.RegionFactory(code="us-tx-north")
    return make_reader(group_a, facility_a, name="dr_local2", region=region)


def test_a_study_not_offered_to_me_cannot_be_claimed(api, tiered, offered):
    response = api(tiered["regional"].user).post(f"/api/v1/studies/{offered.pk}/claim/")
    assert response.status_code == 404


def test_facility_staff_cannot_claim(api, staff_a, offered):
    assert api(staff_a).post(f"/api/v1/studies/{offered.pk}/claim/").status_code == 403
    assert api(staff_a).get("/api/v1/worklist/").status_code == 403


def test_eligibility_is_rechecked_at_claim_time(api, tiered, offered):
    License.objects.filter(radiologist=tiered["local"]).update(
        valid_to=NOW.date() - dt.timedelta(days=1)
    )
    response = api(tiered["local"].user).post(f"/api/v1/studies/{offered.pk}/claim/")
    assert response.status_code == 403
    assert "license" in response.json()["detail"]
    assert Study.objects.get(pk=offered.pk).status == "offered"


def test_claiming_beyond_the_workload_cap_is_refused(api, tiered, offered):
    type(tiered["local"]).objects.filter(pk=tiered["local"].pk).update(workload_cap=1)
    busy = f.StudyFactory(facility=offered.facility)
    from studies.services import study_transition

    for status in ("ready", "offered"):
        study_transition(study_id=busy.pk, to_status=status)
    study_transition(study_id=busy.pk, to_status="claimed", assigned_radiologist=tiered["local"])
    response = api(tiered["local"].user).post(f"/api/v1/studies/{offered.pk}/claim/")
    assert response.status_code == 403
    assert response.json()["code"] == "at_cap"
    assert "workload cap" in response.json()["detail"]


def test_next_case_claims_the_top_of_my_worklist(api, tiered, offered):
    response = api(tiered["local"].user).post("/api/v1/worklist/next/")
    assert response.status_code == 200
    assert response.json()["id"] == offered.pk
    nothing = api(tiered["local"].user).post("/api/v1/worklist/next/")
    assert nothing.status_code == 404


def test_release_puts_it_back_on_the_worklists(api, tiered, offered):
    client = api(tiered["local"].user)
    client.post(f"/api/v1/studies/{offered.pk}/claim/")
    assert (
        client.post(f"/api/v1/studies/{offered.pk}/release/", {}, format="json").status_code == 400
    )
    response = client.post(
        f"/api/v1/studies/{offered.pk}/release/", {"reason": "outside my expertise"}, format="json"
    )
    assert response.status_code == 200
    study = Study.objects.get(pk=offered.pk)
    assert study.status == "offered" and study.assigned_radiologist is None
    assert [r["id"] for r in client.get("/api/v1/worklist/").json()["results"]] == [offered.pk]
    assert study.transitions.last().reason == "released: outside my expertise"


def test_admin_reassigns_to_an_eligible_reader_only(
    api, group_admin, tiered, offered, unlicensed_reader
):
    client = api(group_admin)
    refused = client.post(
        f"/api/v1/studies/{offered.pk}/reassign/",
        {"radiologist": unlicensed_reader.pk},
        format="json",
    )
    assert refused.status_code == 403
    assert "not licensed" in refused.json()["detail"]
    ok = client.post(
        f"/api/v1/studies/{offered.pk}/reassign/",
        {"radiologist": tiered["regional"].pk},
        format="json",
    )
    assert ok.status_code == 200, ok.content
    assert Study.objects.get(pk=offered.pk).assigned_radiologist == tiered["regional"]


def test_radiologists_cannot_reassign(api, tiered, offered):
    response = api(tiered["local"].user).post(
        f"/api/v1/studies/{offered.pk}/reassign/",
        {"radiologist": tiered["local"].pk},
        format="json",
    )
    assert response.status_code == 403


def test_auto_assign_accept_and_decline(api, tiered, ready_study, neuro_rule):
    from routing.models import RoutingRule
    from worklist.models import Offer

    RoutingRule.objects.filter(pk=neuro_rule.pk).update(delivery="auto_assign")
    study_route(study_id=ready_study.pk, now=NOW)
    local, regional = tiered["local"], tiered["regional"]
    assert (
        api(regional.user).post(f"/api/v1/studies/{ready_study.pk}/accept/").status_code == 404
    )  # not assigned to them
    declined = api(local.user).post(
        f"/api/v1/studies/{ready_study.pk}/decline/",
        {"reason": "conflict of interest"},
        format="json",
    )
    assert declined.status_code == 204
    # Straight to the next candidate, who accepts.
    assert set(
        Offer.objects.filter(study=ready_study, withdrawn_at__isnull=True).values_list(
            "radiologist", flat=True
        )
    ) == {regional.pk}
    accepted = api(regional.user).post(f"/api/v1/studies/{ready_study.pk}/accept/")
    assert accepted.status_code == 200
    assert Study.objects.get(pk=ready_study.pk).assigned_radiologist == regional


def test_an_idle_claim_is_released_once_and_people_are_told(
    api, tiered, offered, group_admin, settings, django_capture_on_commit_callbacks, mailoutbox
):
    import time_machine

    from alerts.models import Alert
    from worklist.services.claims import claims_release_stale

    group_admin.email = "admin@example.test"
    group_admin.save()
    reader = tiered["local"]
    reader.user.email = "reader@example.test"
    reader.user.save()
    settings.STALE_CLAIM_MINUTES = {1: 20, 2: 60, 3: 240}
    api(reader.user).post(f"/api/v1/studies/{offered.pk}/claim/")
    assert claims_release_stale(now=NOW + dt.timedelta(minutes=19)) == []
    with (
        time_machine.travel(NOW + dt.timedelta(minutes=21), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert claims_release_stale() == [offered.pk]
        assert claims_release_stale() == []
    study = Study.objects.get(pk=offered.pk)
    assert study.status == "offered" and study.assigned_radiologist is None
    assert "no report activity for 20 minutes" in study.transitions.last().reason
    alert = Alert.objects.get(kind="stale_claim")
    assert alert.recipient == reader.user
    assert mailoutbox[0].to == ["admin@example.test", "reader@example.test"]


def test_worklist_pages_by_keyset_in_order_without_gaps(api, tiered, facility_a):
    from studies.services import study_transition

    ids = []
    for n in range(7):
        study = f.StudyFactory(
            facility=facility_a,
            modality="CT",
            body_part="HEAD",
            priority=1 + n % 3,
            received_at=NOW - dt.timedelta(minutes=n),
        )
        study_transition(study_id=study.pk, to_status="ready", at=NOW)
        study_route(study_id=study.pk, now=NOW)
        ids.append(study.pk)
    client = api(tiered["local"].user)
    seen, url = [], "/api/v1/worklist/?page_size=3"
    while url:
        body = client.get(url).json()
        seen += [r["id"] for r in body["results"]]
        url = body["next"]
    expected = list(
        Study.objects.filter(pk__in=ids)
        .order_by("priority", "sla_due_at", "received_at", "id")
        .values_list("pk", flat=True)
    )
    assert seen == expected
    assert client.get("/api/v1/worklist/?cursor=garbage").status_code == 400


def test_a_claim_takes_the_study_off_every_worklist_and_a_release_puts_it_back(
    api, group_a, facility_a, regions, tiered, ready_study
):
    from tests.routing.conftest import make_reader
    from worklist.models import Offer

    other = make_reader(group_a, facility_a, name="dr_other_local", region=regions["local"])
    study_route(study_id=ready_study.pk, now=NOW)
    mine, theirs = api(tiered["local"].user), api(other.user)
    assert [r["id"] for r in theirs.get("/api/v1/worklist/").json()["results"]] == [ready_study.pk]

    assert mine.post(f"/api/v1/studies/{ready_study.pk}/claim/").status_code == 200
    # Off the other reader's worklist at once; a late claim still hears why.
    assert theirs.get("/api/v1/worklist/").json()["results"] == []
    late = theirs.post(f"/api/v1/studies/{ready_study.pk}/claim/")
    assert late.status_code == 409 and "already been claimed" in late.json()["detail"]
    assert not Offer.objects.filter(
        study=ready_study, withdrawn_at__isnull=True, held_at__isnull=True
    ).exists()

    mine.post(f"/api/v1/studies/{ready_study.pk}/release/", {"reason": "busy"}, format="json")
    assert [r["id"] for r in theirs.get("/api/v1/worklist/").json()["results"]] == [ready_study.pk]
    reopened = Offer.objects.filter(
        study=ready_study, withdrawn_at__isnull=True, held_at__isnull=True
    )
    assert {(o.radiologist_id, o.tier) for o in reopened} == {
        (tiered["local"].pk, 0),
        (other.pk, 0),
    }
    # The copies of the sort keys match the study.
    assert {(o.priority, o.sla_due_at) for o in reopened} == {
        (ready_study.priority, ready_study.sla_due_at)
    }


def test_refusals_on_a_study_one_cannot_see_are_404_whatever_else_is_wrong(api, tiered, offered):
    """Claim, release and decline check visibility only when they refuse: a study
    the caller may not see is a 404 before any other answer (its existence does not
    leak), and one they may see gets the action's own refusal."""
    local, regional = api(tiered["local"].user), api(tiered["regional"].user)
    url = f"/api/v1/studies/{offered.pk}"
    reason = {"reason": "busy"}
    # Offered to the local reader (so visible), held by nobody: 409, or 400 without
    # a reason.
    not_held = local.post(f"{url}/release/", reason, format="json")
    assert not_held.status_code == 409 and not_held.json()["code"] == "not_claimed"
    assert local.post(f"{url}/release/", {}, format="json").status_code == 400
    assert local.post(f"{url}/release/", {"reason": "  "}, format="json").status_code == 400
    # Not offered to the regional reader: 404 whatever the body says.
    for body in (reason, {}, {"reason": "  "}):
        assert regional.post(f"{url}/release/", body, format="json").status_code == 404
        assert regional.post(f"{url}/decline/", body, format="json").status_code == 404
    assert regional.post(f"{url}/claim/").status_code == 404
    assert regional.post(f"{url}/accept/").status_code == 404
    # No such study at all: 404 too.
    assert local.post("/api/v1/studies/999999/release/", reason, format="json").status_code == 404
    assert local.post("/api/v1/studies/999999/claim/").status_code == 404
    # Claimed by the local reader: the regional reader still gets 404, not 409.
    assert local.post(f"{url}/claim/").status_code == 200
    assert regional.post(f"{url}/release/", reason, format="json").status_code == 404
    assert regional.post(f"{url}/claim/").status_code == 404
    assert local.post(f"{url}/release/", reason, format="json").status_code == 200
    assert Study.objects.get(pk=offered.pk).status == "offered"


def _statements(captured) -> list[str]:
    """The statements a request sent, without transaction control (which differs by
    backend: SQLite's BEGIN IMMEDIATE is a statement, PostgreSQL's BEGIN is not)."""
    control = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")
    return [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(control)]


def test_next_and_release_cost_a_fixed_number_of_statements(tiered, facility_a, offered):
    """Pinned: the claim/release loop is the hottest path of the API.  Next: the token
    (with its user and their radiologist profile), the top of the worklist locked
    with its routing rule, the reader's facts (two), then the claim's five writes
    (study, transition, audit, routing timer, offers held).  Release: the token,
    the study locked with its routing rule (and whether the releaser holds an
    offer), four writes (offers, study, transition, audit), the releaser's facts
    for the KEEP_OFFER re-check (two), then the routing timer."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    from accounts.models import ApiToken
    from studies.services import study_transition

    for n in range(3):  # more on the worklist than the one claimed
        more = f.StudyFactory(
            facility=facility_a, modality="CT", body_part="HEAD", priority=2 + n % 2
        )
        study_transition(study_id=more.pk, to_status="ready", at=NOW)
        study_route(study_id=more.pk, now=NOW)
    client = APIClient()
    _, key = ApiToken.objects.create(user=tiered["local"].user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    client.get("/api/v1/me/")  # the token's first use is recorded (once a minute), not measured
    with CaptureQueriesContext(connection) as claim:
        response = client.post("/api/v1/worklist/next/")
    assert response.status_code == 200 and response.json()["id"] == offered.pk
    with CaptureQueriesContext(connection) as release:
        response = client.post(
            f"/api/v1/studies/{offered.pk}/release/", {"reason": "busy"}, format="json"
        )
    assert response.status_code == 200 and response.json()["status"] == "offered"
    assert len(_statements(claim)) == 9, "\n".join(_statements(claim))
    assert len(_statements(release)) == 9, "\n".join(_statements(release))


def test_next_passes_over_a_study_the_reader_may_no_longer_read(tiered, facility_a, offered):
    from studies.services import study_transition
    from worklist.services.claims import study_claim_next

    later = f.StudyFactory(facility=facility_a, modality="CT", body_part="HEAD", priority=3)
    study_transition(study_id=later.pk, to_status="ready", at=NOW)
    study_route(study_id=later.pk, now=NOW)
    # The top study's patient is now in a jurisdiction the reader holds no license in.
    Study.objects.filter(pk=offered.pk).update(
        patient_jurisdiction=f.JurisdictionFactory(code="US-NY")
    )
    claimed = study_claim_next(radiologist=tiered["local"])
    assert claimed is not None and claimed.pk == later.pk
    assert Study.objects.get(pk=offered.pk).status == "offered"
    assert study_claim_next(radiologist=tiered["local"]) is None  # only the unreadable left


def test_next_at_the_workload_cap_is_refused_outright(api, tiered, offered):
    from studies.services import study_transition

    type(tiered["local"]).objects.filter(pk=tiered["local"].pk).update(workload_cap=1)
    busy = f.StudyFactory(facility=offered.facility)
    for status in ("ready", "offered"):
        study_transition(study_id=busy.pk, to_status=status)
    study_transition(study_id=busy.pk, to_status="claimed", assigned_radiologist=tiered["local"])
    response = api(tiered["local"].user).post("/api/v1/worklist/next/")
    assert response.status_code == 403 and response.json()["code"] == "at_cap"
    assert Study.objects.get(pk=offered.pk).status == "offered"

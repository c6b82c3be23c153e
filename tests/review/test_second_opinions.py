"""Second opinions: who may ask, who is offered the case (never the original reader),
the claim, the answer the requester reads, the 4xx answers, unroutable cases."""

from __future__ import annotations

import datetime as dt

import pytest

from alerts.models import Alert
from audit.models import AuditEvent
from network.models import Radiologist, Shift
from review import services
from review.models import ReviewCase, ReviewOffer
from tests.review.conftest import NOW, make_reader

pytestmark = pytest.mark.django_db


def ask(client, report, **body):
    return client.post(f"/api/v1/reports/{report.pk}/second-opinions/", body, format="json")


def offered_to(review_id):
    return set(
        ReviewOffer.objects.filter(review_id=review_id, withdrawn_at__isnull=True).values_list(
            "radiologist__user__username", flat=True
        )
    )


def test_facility_staff_ask_and_it_is_offered_to_eligible_readers_but_not_the_original(
    api, final, staff_a, tiered
):
    response = ask(api(staff_a), final, question="Is there a subtle SAH?")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "offered" and body["kind"] == "second_opinion"
    assert body["question"] == "Is there a subtle SAH?"
    assert body["study"]["patient_id"] == final.study.patient_id
    assert offered_to(body["id"]) == {"dr_regional", "dr_global"}  # not dr_local, who signed
    review = ReviewCase.objects.get(pk=body["id"])
    assert review.requested_by == staff_a and review.reviewed_radiologist == tiered["local"]
    assert AuditEvent.objects.filter(
        action="create", object_type="review.reviewcase", object_id=str(review.pk)
    ).exists()


def test_who_may_ask(api, final, group_admin, other_admin, staff_b, tiered, unlicensed_reader):
    # Outside the report's reach: 404, so its existence does not leak.
    assert ask(api(staff_b), final).status_code == 404
    assert ask(api(other_admin), final).status_code == 404
    assert ask(api(tiered["regional"].user), final).status_code == 404
    assert ask(api(None), final).status_code in (401, 403)
    # The reader who signed it sees the report but does not ask for a second opinion.
    refused = ask(api(tiered["local"].user), final)
    assert refused.status_code == 403
    assert "facility's staff or the reading group's admins" in refused.json()["detail"]
    assert not ReviewCase.objects.exists()
    # The group's admin may.
    assert ask(api(group_admin), final).status_code == 201


def test_requests_are_validated_with_clear_messages(api, final, staff_a, claimed, reader):
    unknown = ask(api(staff_a), final, subspecialty="astrology")
    assert unknown.status_code == 400
    assert unknown.json()["detail"].startswith("Unknown subspecialty 'astrology' (known: ")
    too_long = ask(api(staff_a), final, question="x" * 5001)
    assert too_long.status_code == 400 and "question" in too_long.json()
    assert ask(api(staff_a), final).status_code == 201
    again = ask(api(staff_a), final)
    assert again.status_code == 409
    assert again.json()["detail"].startswith("A second opinion on this report is already open")
    assert ReviewCase.objects.count() == 1


def test_only_a_final_report_gets_a_second_opinion(api, claimed, reader, ct_head, group_admin):
    from reporting.services.reports import report_save_draft

    draft = report_save_draft(
        study_id=claimed.pk, radiologist=reader, template_id=ct_head.pk, impression="x"
    )
    response = ask(api(group_admin), draft)
    assert response.status_code == 409
    assert response.json() == {
        "detail": "A second opinion is asked on a final report; this one is draft.",
        "code": "not_final",
    }


def test_claim_answer_and_the_requester_reads_the_answer(api, final, staff_a, staff_b, tiered):
    review_id = ask(api(staff_a), final).json()["id"]
    regional, glob = api(tiered["regional"].user), api(tiered["global"].user)

    # Readers find it on their review list, with the worklist's patient identifiers,
    # each row audited; neither the report's text nor its author before a claim.
    rows = regional.get("/api/v1/second-opinions/?role=offered").json()["results"]
    assert [r["id"] for r in rows] == [review_id]
    assert rows[0]["study"]["patient_name"] == "DOE^JANE"
    assert rows[0]["report_content"] is None and rows[0]["reviewed_radiologist"] is None
    assert AuditEvent.objects.filter(
        action="list", object_type="review.reviewcase", object_id=str(review_id)
    ).exists()
    assert api(tiered["local"].user).get("/api/v1/second-opinions/").json()["results"] == []

    claimed = regional.post(f"/api/v1/second-opinions/{review_id}/claim/")
    assert claimed.status_code == 200, claimed.json()
    body = claimed.json()
    assert body["status"] == "claimed" and body["assigned_radiologist"] == tiered["regional"].pk
    assert body["report_content"]["impression"] == "No acute intracranial finding."
    assert body["reviewed_radiologist"] is None  # blind to whose report it is
    # Off the other reader's list; they can no longer see it at all.
    assert glob.get("/api/v1/second-opinions/?role=offered").json()["results"] == []
    assert glob.post(f"/api/v1/second-opinions/{review_id}/claim/").status_code == 404
    assert offered_to(review_id) == set()
    mine = regional.get("/api/v1/second-opinions/?role=claimed").json()["results"]
    assert [r["id"] for r in mine] == [review_id]

    bad = regional.post(f"/api/v1/second-opinions/{review_id}/answer/", {"opinion": "maybe"})
    assert bad.status_code == 400 and "opinion" in bad.json()
    silent = regional.post(
        f"/api/v1/second-opinions/{review_id}/answer/", {"opinion": "major_discrepancy"}
    )
    assert silent.status_code == 400
    assert silent.json()["detail"] == "Say what the discrepancy is in 'comments'."
    answered = regional.post(
        f"/api/v1/second-opinions/{review_id}/answer/",
        {"opinion": "minor_discrepancy", "comments": "Small left frontal contusion."},
    )
    assert answered.status_code == 200, answered.json()
    assert answered.json()["status"] == "answered"
    again = regional.post(f"/api/v1/second-opinions/{review_id}/answer/", {"opinion": "agree"})
    assert again.status_code == 409

    # The requester reads the answer; another facility's staff cannot.
    seen = api(staff_a).get(f"/api/v1/reports/{final.pk}/second-opinions/").json()
    assert [(s["opinion"], s["comments"]) for s in seen] == [
        ("minor_discrepancy", "Small left frontal contusion.")
    ]
    assert seen[0]["assigned_radiologist_name"] == tiered["regional"].display_name
    assert seen[0]["reviewed_radiologist"] == tiered["local"].pk
    detail = api(staff_a).get(f"/api/v1/second-opinions/{review_id}/")
    assert detail.status_code == 200 and detail.json()["opinion"] == "minor_discrepancy"
    assert api(staff_b).get(f"/api/v1/second-opinions/{review_id}/").status_code == 404
    assert api(staff_b).get(f"/api/v1/reports/{final.pk}/second-opinions/").status_code == 404
    actions = list(
        AuditEvent.objects.filter(object_type="review.reviewcase", object_id=str(review_id))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions[0] == "create" and {"transition", "update", "read"} <= set(actions)
    # A second request may follow once the first is answered.
    assert ask(api(staff_a), final).status_code == 201


def test_the_requester_is_told_once_when_the_answer_comes(
    api, final, staff_a, tiered, mailoutbox, django_capture_on_commit_callbacks
):
    staff_a.email = "staff.a@example.org"
    staff_a.save()
    review_id = ask(api(staff_a), final).json()["id"]
    regional = api(tiered["regional"].user)
    assert regional.post(f"/api/v1/second-opinions/{review_id}/claim/").status_code == 200
    assert not Alert.objects.filter(kind="review_answered").exists()
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        answered = regional.post(
            f"/api/v1/second-opinions/{review_id}/answer/",
            {"opinion": "major_discrepancy", "comments": "Missed fracture."},
        )
    assert answered.status_code == 200
    alert = Alert.objects.get(kind="review_answered")
    assert alert.recipient == staff_a and alert.study_id == final.study_id
    assert "answered: major discrepancy" in alert.message
    assert "Missed fracture" not in alert.message  # the words are read through the API
    assert any("staff.a@example.org" in m.to for m in mailoutbox)
    assert (
        regional.post(
            f"/api/v1/second-opinions/{review_id}/answer/", {"opinion": "agree"}
        ).status_code
        == 409
    )
    assert Alert.objects.filter(kind="review_answered").count() == 1


def test_only_the_claimer_answers(api, final, staff_a, tiered, group_admin):
    review_id = ask(api(staff_a), final).json()["id"]
    services.review_claim(review_id=review_id, radiologist=tiered["regional"])
    response = api(group_admin).post(
        f"/api/v1/second-opinions/{review_id}/answer/", {"opinion": "agree"}
    )
    assert response.status_code == 403  # the admin sees it but is not a reader


def test_eligibility_is_checked_again_at_claim_time(api, final, staff_a, tiered):
    review_id = ask(api(staff_a), final).json()["id"]
    Shift.objects.filter(radiologist=tiered["regional"]).update(
        ends_at=NOW - dt.timedelta(minutes=1)
    )
    response = api(tiered["regional"].user).post(f"/api/v1/second-opinions/{review_id}/claim/")
    assert response.status_code == 403
    assert response.json()["detail"] == "You cannot take this case now: off shift."
    assert ReviewCase.objects.get(pk=review_id).status == "offered"


def test_a_required_subspecialty_nobody_holds_is_flagged_and_alerted_then_retried(
    api, final, staff_a, tiered, group_a, facility_a, regions
):
    response = ask(api(staff_a), final, subspecialty="msk", question="Any fracture?")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "unroutable"
    assert body["unroutable_reason"] == "no radiologist on shift reads Musculoskeletal"
    alert = Alert.objects.get(kind="unroutable", reading_group=group_a)
    assert "cannot be routed: no radiologist on shift reads Musculoskeletal" in alert.message
    assert offered_to(body["id"]) == set()

    # A musculoskeletal reader comes on; the sweep offers it to them only.
    make_reader(group_a, facility_a, name="dr_msk", region=regions["regional"], subs=("msk",))
    result = services.reviews_sweep(now=NOW + dt.timedelta(minutes=2))
    assert result["routed"] == 1
    assert offered_to(body["id"]) == {"dr_msk"}
    assert Alert.objects.filter(kind="unroutable").count() == 1


def test_when_only_the_reports_own_readers_are_eligible_it_says_so(api, final, staff_a, tiered):
    for name in ("regional", "global"):
        tiered[name].is_available = False
        tiered[name].save()
    body = ask(api(staff_a), final).json()
    assert body["status"] == "unroutable"
    assert body["unroutable_reason"] == (
        "the only eligible radiologists on shift are the report's own readers"
    )


def test_an_addendum_signer_is_excluded_too(api, final, staff_a, tiered):
    from reporting.models import Addendum

    Addendum.objects.create(
        report=final, number=1, text="Also note.", signed_by=tiered["regional"], signed_at=NOW
    )
    body = ask(api(staff_a), final).json()
    assert offered_to(body["id"]) == {"dr_global"}


def test_a_reader_at_the_workload_cap_is_not_offered_it(api, final, staff_a, tiered, ct_head):
    from tests.review.conftest import another_final

    glob = tiered["global"]
    glob.workload_cap = 1
    glob.save()
    # The global reader holds one review case already (claimed): at the cap.
    other = another_final(final.study.facility, tiered["local"], ct_head)
    held = services.second_opinion_request(report_id=other.pk, actor=None)
    services.review_claim(review_id=held.pk, radiologist=glob)
    body = ask(api(staff_a), final).json()
    assert offered_to(body["id"]) == {"dr_regional"}


def test_ids_and_kinds_do_not_mix(api, final, staff_a, tiered):
    review_id = ask(api(staff_a), final).json()["id"]
    client = api(tiered["regional"].user)
    assert client.get(f"/api/v1/peer-reviews/{review_id}/").status_code == 404
    assert client.get("/api/v1/second-opinions/?role=elsewhere").status_code == 400
    assert api(staff_a).get("/api/v1/second-opinions/?role=offered").status_code == 403


def test_offers_follow_the_readers_eligibility_and_an_emptied_case_alerts(
    api, final, staff_a, tiered, group_a, facility_a, regions
):
    review_id = ask(api(staff_a), final).json()["id"]
    assert offered_to(review_id) == {"dr_regional", "dr_global"}
    # The regional reader goes off shift, a new reader comes on: the sweep follows.
    Shift.objects.filter(radiologist=tiered["regional"]).update(ends_at=NOW)
    make_reader(group_a, facility_a, name="dr_new", region=regions["local"])
    services.reviews_sweep(now=NOW + dt.timedelta(minutes=6))
    assert offered_to(review_id) == {"dr_global", "dr_new"}
    assert api(tiered["regional"].user).get("/api/v1/second-opinions/").json()["results"] == []
    # Nobody left: flagged unroutable, the admins told (the case is never left silently).
    Radiologist.objects.filter(user__username__in=["dr_global", "dr_new"]).update(is_active=False)
    services.reviews_sweep(now=NOW + dt.timedelta(minutes=12))
    review = ReviewCase.objects.get(pk=review_id)
    assert review.status == "unroutable" and offered_to(review_id) == set()
    alert = Alert.objects.get(kind="unroutable")
    assert "cannot be routed" in alert.message and alert.study_id == final.study_id
    # Not yet due again: a second sweep in the same minute changes nothing.
    assert services.review_route(review_id=review_id, now=NOW + dt.timedelta(minutes=12)) is None


def test_a_claimer_releases_with_a_reason_and_the_case_is_offered_afresh(
    api, final, staff_a, tiered
):
    review_id = ask(api(staff_a), final).json()["id"]
    regional, glob = api(tiered["regional"].user), api(tiered["global"].user)
    assert regional.post(f"/api/v1/second-opinions/{review_id}/claim/").status_code == 200
    url = f"/api/v1/second-opinions/{review_id}/release/"
    assert regional.post(url, {}).status_code == 400
    released = regional.post(url, {"reason": "Out of my depth."})
    assert released.status_code == 200, released.json()
    assert released.json()["status"] == "offered"
    assert released.json()["assigned_radiologist"] is None
    assert offered_to(review_id) == {"dr_regional", "dr_global"}
    assert glob.post(url, {"reason": "Not mine."}).status_code == 409
    assert glob.post(f"/api/v1/second-opinions/{review_id}/claim/").status_code == 200
    assert AuditEvent.objects.filter(
        object_id=str(review_id), object_type="review.reviewcase", detail__to="released"
    ).exists()


def test_the_review_list_costs_the_same_queries_for_one_row_or_four(
    api, final, staff_a, tiered, ct_head
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.review.conftest import another_final

    client = api(tiered["regional"].user)
    services.second_opinion_request(report_id=final.pk, actor=None)
    with CaptureQueriesContext(connection) as one:
        assert len(client.get("/api/v1/second-opinions/").json()["results"]) == 1
    for _ in range(3):
        report = another_final(final.study.facility, tiered["local"], ct_head)
        services.second_opinion_request(report_id=report.pk, actor=None)
    with CaptureQueriesContext(connection) as four:
        assert len(client.get("/api/v1/second-opinions/").json()["results"]) == 4
    assert len(four.captured_queries) == len(one.captured_queries)


def test_the_requester_side_cancels_an_unanswered_case(api, final, staff_a, tiered, group_admin):
    review_id = ask(api(staff_a), final, subspecialty="msk").json()["id"]  # unroutable
    url = f"/api/v1/second-opinions/{review_id}/cancel/"
    # The readers it could be offered to have no say; a reason is required.
    refused = api(tiered["local"].user).post(url, {"reason": "x"})
    assert refused.status_code == 404
    assert api(staff_a).post(url, {}).status_code == 400
    cancelled = api(staff_a).post(url, {"reason": "Nobody reads MSK tonight; asked locally."})
    assert cancelled.status_code == 200, cancelled.json()
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["cancel_reason"].startswith("Nobody reads")
    review = ReviewCase.objects.get(pk=review_id)
    assert review.next_route_at is None  # the sweep leaves it alone
    again = api(group_admin).post(url, {"reason": "twice"})
    assert again.status_code == 409
    assert again.json()["detail"] == "This case is already cancelled."
    # The report may be asked about again.
    assert ask(api(staff_a), final).status_code == 201


def test_an_offered_case_cancelled_leaves_the_readers_lists(api, final, staff_a, tiered):
    review_id = ask(api(staff_a), final).json()["id"]
    assert offered_to(review_id) == {"dr_regional", "dr_global"}
    api(staff_a).post(f"/api/v1/second-opinions/{review_id}/cancel/", {"reason": "Resolved."})
    assert offered_to(review_id) == set()
    regional = api(tiered["regional"].user)
    assert regional.get("/api/v1/second-opinions/?role=offered").json()["results"] == []
    assert regional.post(f"/api/v1/second-opinions/{review_id}/claim/").status_code == 404


def test_a_claim_left_unanswered_for_a_day_is_released_and_the_reader_told(
    api, final, staff_a, tiered, settings
):
    settings.REVIEW_STALE_CLAIM_HOURS = 24
    Shift.objects.update(ends_at=NOW + dt.timedelta(days=3))
    review_id = ask(api(staff_a), final).json()["id"]
    services.review_claim(review_id=review_id, radiologist=tiered["regional"])
    assert services.reviews_sweep(now=NOW + dt.timedelta(hours=23))["released_stale"] == 0
    assert ReviewCase.objects.get(pk=review_id).status == "claimed"
    assert services.reviews_sweep(now=NOW + dt.timedelta(hours=25))["released_stale"] == 1
    review = ReviewCase.objects.get(pk=review_id)
    assert review.status == "offered" and review.assigned_radiologist is None
    assert offered_to(review_id) == {"dr_regional", "dr_global"}
    alert = Alert.objects.get(kind="stale_claim")
    assert alert.recipient == tiered["regional"].user
    assert "released after 24 hours without an answer" in alert.message
    assert services.reviews_sweep(now=NOW + dt.timedelta(hours=26))["released_stale"] == 0

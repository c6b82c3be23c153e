"""Peer review: the random sample (injected draws), routing to another reader, the
RADPEER score and its 4xx answers, the summary for group admins only, the rate."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from alerts.models import Alert
from audit.models import AuditEvent
from review import services
from review.models import PeerReviewDraw, PeerReviewPolicy, ReviewCase, ReviewOffer
from tests.review.conftest import another_final, sign_final

pytestmark = pytest.mark.django_db


def offered_to(review_id):
    return set(
        ReviewOffer.objects.filter(review_id=review_id, withdrawn_at__isnull=True).values_list(
            "radiologist__user__username", flat=True
        )
    )


def set_rate(group, percent):
    return services.peer_review_policy_set(reading_group=group, sample_percent=Decimal(percent))


def test_the_sample_rate_is_the_share_of_draws_selected():
    rng = random.Random(2026)  # noqa: S311 - a seeded source, for a reproducible test
    for percent, low, high in (("10", 0.09, 0.11), ("2.5", 0.02, 0.03), ("50", 0.49, 0.51)):
        picked = sum(
            services.is_sampled(draw=rng.random(), percent=Decimal(percent)) for _ in range(20_000)
        )
        assert low < picked / 20_000 < high, (percent, picked)
    assert not services.is_sampled(draw=0.0, percent=Decimal(0))
    assert services.is_sampled(draw=0.999999, percent=Decimal(100))
    with pytest.raises(ValueError, match="uniform"):
        services.is_sampled(draw=1.0, percent=Decimal(50))


def test_a_final_is_drawn_once_against_its_groups_rate(final, group_a, tiered, ct_head):
    set_rate(group_a, "25")
    # 0.2499 is below 25 %: selected, and routed to the other eligible readers.
    review = services.peer_review_consider(report_id=final.pk, draw=lambda: 0.2499)
    assert review is not None and review.kind == "peer_review" and review.status == "offered"
    assert offered_to(review.pk) == {"dr_regional", "dr_global"}
    assert review.reviewed_radiologist == tiered["local"]
    # Drawn once: a second call neither draws again nor adds a case.
    assert services.peer_review_consider(report_id=final.pk, draw=lambda: 0.0) is None
    assert PeerReviewDraw.objects.get(report=final).draw == 0.2499
    # 0.25 is not below 25 %.
    other = another_final(final.study.facility, tiered["local"], ct_head)
    assert services.peer_review_consider(report_id=other.pk, draw=lambda: 0.25) is None
    draw = PeerReviewDraw.objects.get(report=other)
    assert draw.selected is False and draw.sample_percent == Decimal("25.00")
    assert ReviewCase.objects.filter(kind="peer_review").count() == 1


def test_without_a_policy_nothing_is_sampled(final, tiered):
    assert services.peer_review_consider(report_id=final.pk, draw=lambda: 0.0) is None
    assert PeerReviewDraw.objects.get(report=final).selected is False


def test_signing_final_draws_after_commit(
    claimed, reader, ct_head, group_a, tiered, django_capture_on_commit_callbacks
):
    set_rate(group_a, "100")
    with django_capture_on_commit_callbacks(execute=True):
        report = sign_final(claimed, reader, ct_head)
    review = ReviewCase.objects.get(report=report, kind="peer_review")
    assert offered_to(review.pk) == {"dr_regional", "dr_global"}
    assert AuditEvent.objects.filter(
        object_type="review.reviewcase", object_id=str(review.pk), action="create"
    ).exists()


def test_the_sweep_draws_for_a_final_whose_task_was_lost(final, group_a, tiered):
    import datetime as dt

    set_rate(group_a, "100")
    assert not PeerReviewDraw.objects.exists()  # on_commit never ran in this test
    result = services.reviews_sweep(now=final.signed_at + dt.timedelta(minutes=1))
    assert result["drawn_late"] == 1
    assert ReviewCase.objects.filter(report=final, kind="peer_review").exists()


def test_unroutable_peer_review_alerts_admins(final, group_a, tiered):
    for name in ("regional", "global"):
        tiered[name].is_active = False
        tiered[name].save()
    set_rate(group_a, "100")
    review = services.peer_review_consider(report_id=final.pk, draw=lambda: 0.5)
    assert review is not None and review.status == "unroutable"
    assert review.unroutable_reason
    assert Alert.objects.filter(kind="unroutable", reading_group=group_a).count() == 1


@pytest.fixture
def peer_review(final, group_a, tiered):
    set_rate(group_a, "100")
    review = services.peer_review_consider(report_id=final.pk, draw=lambda: 0.5)
    assert review is not None
    return review


def score(client, review, **body):
    return client.post(f"/api/v1/peer-reviews/{review.pk}/score/", body, format="json")


def test_the_reviewer_claims_and_scores_with_clear_400s(api, peer_review, tiered):
    regional = api(tiered["regional"].user)
    rows = regional.get("/api/v1/peer-reviews/?role=offered").json()["results"]
    assert [r["id"] for r in rows] == [peer_review.pk]
    assert rows[0]["reviewed_radiologist_name"] is None  # blind review
    # The original reader cannot take it (not offered: not visible at all).
    local = api(tiered["local"].user)
    assert local.post(f"/api/v1/peer-reviews/{peer_review.pk}/claim/").status_code == 404
    assert local.get("/api/v1/peer-reviews/").json()["results"] == []
    assert regional.post(f"/api/v1/peer-reviews/{peer_review.pk}/claim/").status_code == 200
    # Scoring before claiming is refused for the other reader, who lost sight of it.
    assert score(api(tiered["global"].user), peer_review, score=1).status_code == 404

    cases = {
        "score 5": ({"score": 5}, "'score' must be 1, 2, 3 or 4 (RADPEER)."),
        "significant concur": (
            {"score": 1, "clinically_significant": True},
            "A score of 1 (concur) cannot be clinically significant.",
        ),
        "flag missing": (
            {"score": 3, "comments": "Missed rib fracture."},
            "Say whether the discrepancy of score 3 is clinically significant "
            "('clinically_significant': true or false).",
        ),
        "no comments": (
            {"score": 2, "clinically_significant": False},
            "Say what the discrepancy is in 'comments'.",
        ),
    }
    for name, (body, message) in cases.items():
        response = score(regional, peer_review, **body)
        assert response.status_code == 400, name
        assert response.json()["detail"] == message, name
    assert score(regional, peer_review, score="high").status_code == 400

    done = score(
        regional, peer_review, score=3, clinically_significant=True, comments="Missed SDH."
    )
    assert done.status_code == 200, done.json()
    assert (done.json()["score"], done.json()["clinically_significant"]) == (3, True)
    assert score(regional, peer_review, score=1).status_code == 409
    assert AuditEvent.objects.filter(
        object_type="review.reviewcase", object_id=str(peer_review.pk), action="update"
    ).exists()


def test_facilities_and_other_readers_never_see_peer_reviews(
    api, peer_review, final, staff_a, group_admin, other_admin, unlicensed_reader
):
    assert api(staff_a).get("/api/v1/peer-reviews/").json()["results"] == []
    assert api(staff_a).get(f"/api/v1/peer-reviews/{peer_review.pk}/").status_code == 404
    assert api(staff_a).get(f"/api/v1/reports/{final.pk}/peer-reviews/").status_code == 403
    assert (
        api(unlicensed_reader.user).get(f"/api/v1/peer-reviews/{peer_review.pk}/").status_code
        == 404
    )
    assert api(other_admin).get(f"/api/v1/peer-reviews/{peer_review.pk}/").status_code == 404
    # The group's admin sees it, and whose report it is.
    seen = api(group_admin).get(f"/api/v1/reports/{final.pk}/peer-reviews/").json()
    assert [r["id"] for r in seen] == [peer_review.pk]
    assert seen[0]["reviewed_radiologist"] == final.signed_by_id


def test_admins_send_a_report_to_peer_review_once(api, final, group_admin, staff_a, tiered):
    assert api(staff_a).post(f"/api/v1/reports/{final.pk}/peer-reviews/").status_code == 403
    created = api(group_admin).post(f"/api/v1/reports/{final.pk}/peer-reviews/")
    assert created.status_code == 201 and created.json()["status"] == "offered"
    again = api(group_admin).post(f"/api/v1/reports/{final.pk}/peer-reviews/")
    assert again.status_code == 409
    assert again.json()["detail"] == "This report already has a peer review."


def _scored(report, reviewer, value, significant, comments="Discrepancy."):
    review = services.peer_review_request(report_id=report.pk, actor=None)
    services.review_claim(review_id=review.pk, radiologist=reviewer)
    return services.peer_review_score(
        review_id=review.pk,
        radiologist=reviewer,
        score=value,
        clinically_significant=significant,
        comments=comments,
    )


def test_the_summary_per_radiologist_is_for_group_admins_only(
    api, final, tiered, ct_head, group_admin, other_admin, staff_a
):
    local = tiered["local"]
    _scored(final, tiered["regional"], 1, None)
    _scored(another_final(final.study.facility, local, ct_head), tiered["global"], 3, True)
    _scored(another_final(final.study.facility, local, ct_head), tiered["global"], 2, False)
    services.peer_review_request(
        report_id=another_final(final.study.facility, local, ct_head).pk, actor=None
    )  # still open
    response = api(group_admin).get("/api/v1/peer-reviews/summary/")
    assert response.status_code == 200, response.json()
    assert response.json() == [
        {
            "radiologist": local.pk,
            "radiologist_name": local.display_name,
            "reading_group": local.reading_group_id,
            "reviewed": 3,
            "scores": {"1": 1, "2": 1, "3": 1, "4": 0},
            "clinically_significant": 1,
            "open": 1,
        }
    ]
    assert AuditEvent.objects.filter(object_type="review.peer_review_summary").exists()
    # Date bounds on the answer time.
    assert (
        api(group_admin).get("/api/v1/peer-reviews/summary/?from=2026-06-02").json()[0]["reviewed"]
        == 0
    )
    assert api(group_admin).get("/api/v1/peer-reviews/summary/?from=June").status_code == 400
    # Another group's admin sees none of it and may not ask for this group.
    assert api(other_admin).get("/api/v1/peer-reviews/summary/").json() == []
    forbidden = api(other_admin).get(
        f"/api/v1/peer-reviews/summary/?reading_group={local.reading_group_id}"
    )
    assert forbidden.status_code == 403
    # Facilities and readers (even the reviewed one) never.
    for user in (staff_a, local.user, tiered["regional"].user):
        refused = api(user).get("/api/v1/peer-reviews/summary/")
        assert refused.status_code == 403
        assert refused.json()["detail"] == (
            "Peer review figures are for the reading group's admins only."
        )


def test_group_admins_set_the_rate(api, group_a, group_admin, other_admin, staff_a):
    url = f"/api/v1/peer-review-policies/{group_a.pk}/"
    assert api(group_admin).get(url).json()["sample_percent"] == "0.00"
    response = api(group_admin).put(url, {"sample_percent": "12.5"}, format="json")
    assert response.status_code == 200, response.json()
    assert PeerReviewPolicy.objects.get(reading_group=group_a).sample_percent == Decimal("12.5")
    too_much = api(group_admin).put(url, {"sample_percent": 150}, format="json")
    assert too_much.status_code == 400 and "sample_percent" in too_much.json()
    assert api(other_admin).put(url, {"sample_percent": 1}, format="json").status_code == 403
    assert api(staff_a).put(url, {"sample_percent": 1}, format="json").status_code == 403
    assert api(staff_a).get("/api/v1/peer-review-policies/").status_code == 403
    listed = api(group_admin).get("/api/v1/peer-review-policies/").json()
    assert listed == [
        {"reading_group": group_a.pk, "reading_group_name": "Group A", "sample_percent": "12.50"}
    ]
    assert AuditEvent.objects.filter(object_type="review.peerreviewpolicy").exists()


def test_group_admins_set_the_rate_in_the_admin_for_their_group_only(
    group_a, group_c, group_admin, staff_a
):
    from django.test import Client

    client = Client()
    client.force_login(group_admin)
    page = client.get("/admin/review/peerreviewpolicy/add/")
    assert page.status_code == 200
    choices = [c[0] for c in page.context["adminform"].form.fields["reading_group"].choices]
    assert group_c.pk not in [getattr(c, "value", c) for c in choices]
    response = client.post(
        "/admin/review/peerreviewpolicy/add/",
        {"reading_group": group_a.pk, "sample_percent": "7.5"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert PeerReviewPolicy.objects.get(reading_group=group_a).sample_percent == Decimal("7.5")
    assert AuditEvent.objects.filter(
        object_type="review.peerreviewpolicy", action="update"
    ).exists()
    refused = client.post(
        "/admin/review/peerreviewpolicy/add/",
        {"reading_group": group_c.pk, "sample_percent": "50"},
    )
    assert refused.status_code == 200  # the form refuses another group's
    assert not PeerReviewPolicy.objects.filter(reading_group=group_c).exists()
    staff = Client()
    staff.force_login(staff_a)
    assert staff.get("/admin/review/peerreviewpolicy/").status_code == 302


def test_only_the_groups_admins_cancel_a_peer_review(api, peer_review, group_admin, tiered):
    url = f"/api/v1/peer-reviews/{peer_review.pk}/cancel/"
    refused = api(tiered["regional"].user).post(url, {"reason": "Not my job."})
    assert refused.status_code == 403
    assert refused.json()["detail"] == "Only the reading group's admins cancel a peer review."
    done = api(group_admin).post(url, {"reason": "Duplicate of an external audit."})
    assert done.status_code == 200 and done.json()["status"] == "cancelled"
    assert offered_to(peer_review.pk) == set()


def test_a_report_an_admin_sent_to_peer_review_is_not_reviewed_twice_by_the_draw(
    final, group_a, tiered
):
    sent = services.peer_review_request(report_id=final.pk, actor=None)
    set_rate(group_a, "100")
    assert services.peer_review_consider(report_id=final.pk, draw=lambda: 0.1) is None
    assert PeerReviewDraw.objects.get(report=final).selected is True
    assert list(ReviewCase.objects.filter(report=final)) == [sent]

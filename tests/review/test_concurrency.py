"""Review claims under contention on PostgreSQL, with real threads and transactions."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from audit.models import AuditEvent
from review import services
from review.models import ReviewCase, ReviewOffer
from teleradiology.errors import Conflict, DomainError
from tests.review.conftest import make_reader

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _run(workers, target):
    barrier = threading.Barrier(len(workers))
    outcomes: list[tuple[int, str]] = []
    lock = threading.Lock()

    def go(worker):
        try:
            barrier.wait()
            target(worker)
            result = "won"
        except Conflict:
            result = "conflict"
        except DomainError as exc:
            result = f"refused: {exc.message}"
        finally:
            connection.close()
        with lock:
            outcomes.append((worker.pk, result))

    threads = [threading.Thread(target=go, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return outcomes


@pytest.mark.parametrize("kind", ["second_opinion", "peer_review"])
def test_twelve_readers_claim_one_review_exactly_once(
    kind, final, group_a, facility_a, regions, tiered
):
    readers = [
        make_reader(group_a, facility_a, name=f"rev{n}", region=regions["local"], cap=50)
        for n in range(10)
    ] + [tiered["regional"], tiered["global"]]
    request = (
        services.second_opinion_request
        if kind == "second_opinion"
        else services.peer_review_request
    )
    review = request(report_id=final.pk, actor=None)
    assert review.status == "offered"
    assert ReviewOffer.objects.filter(review=review, withdrawn_at__isnull=True).count() == 12

    outcomes = _run(
        readers, lambda reader: services.review_claim(review_id=review.pk, radiologist=reader)
    )
    assert sorted(r for _, r in outcomes) == ["conflict"] * 11 + ["won"]
    winner = next(pk for pk, r in outcomes if r == "won")
    review.refresh_from_db()
    assert review.status == "claimed" and review.assigned_radiologist_id == winner
    assert not ReviewOffer.objects.filter(review=review, withdrawn_at__isnull=True).exists()
    assert (
        AuditEvent.objects.filter(
            object_type="review.reviewcase", object_id=str(review.pk), action="transition"
        ).count()
        == 1
    )


def test_concurrent_answers_record_one_answer(final, tiered):
    review = services.second_opinion_request(report_id=final.pk, actor=None)
    reviewer = tiered["regional"]
    services.review_claim(review_id=review.pk, radiologist=reviewer)
    opinions = ["agree", "minor_discrepancy", "major_discrepancy"] * 2

    def answer(index):
        services.second_opinion_answer(
            review_id=review.pk,
            radiologist=reviewer,
            opinion=opinions[index],
            comments=f"Answer {index}.",
        )

    errors: list[Exception] = []
    barrier = threading.Barrier(len(opinions))

    def go(index):
        try:
            barrier.wait()
            answer(index)
        except Conflict as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(opinions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(errors) == len(opinions) - 1
    stored = ReviewCase.objects.get(pk=review.pk)
    index = int(stored.comments.split()[1].rstrip("."))
    assert stored.status == "answered" and stored.opinion == opinions[index]

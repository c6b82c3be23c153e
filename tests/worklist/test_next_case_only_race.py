"""Next-case-only under contention on PostgreSQL, with real threads and transactions:
readers race claims by id against "next case" over the same studies."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from routing.models import RoutingRule
from studies.models import Study, StudyTransition
from teleradiology.errors import DomainError
from tests.routing.conftest import make_reader
from tests.worklist.test_concurrency import _offered_studies, _run
from worklist.services.claims import study_claim, study_claim_next

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

READERS = 16
STUDIES = 30


def test_claims_by_id_racing_next_case_one_winner_each_every_by_id_refused(
    group_a, facility_a, regions, neuro_rule
):
    RoutingRule.objects.filter(pk=neuro_rule.pk).update(next_case_only=True)
    readers = [
        make_reader(group_a, facility_a, name=f"race{n}", region=regions["local"], cap=STUDIES)
        for n in range(READERS)
    ]
    studies = _offered_studies(facility_a, STUDIES)
    lock = threading.Lock()
    by_next: list[tuple[int, int]] = []  # (study, reader)
    by_id_won: list[tuple[int, int]] = []
    by_id_refused: Counter[tuple[int, str]] = Counter()  # (HTTP status, code)

    def race(reader):
        # Half the readers try to pick by id first, the other half take "next case"
        # first; then each alternates until nothing is left for it.
        picker = reader.pk % 2 == 0
        order = studies if picker else list(reversed(studies))
        while True:
            if picker:
                for study_id in order:
                    try:
                        study_claim(study_id=study_id, radiologist=reader)
                        with lock:
                            by_id_won.append((study_id, reader.pk))
                    except DomainError as refusal:
                        with lock:
                            by_id_refused[refusal.status_code, refusal.code] += 1
            study = study_claim_next(radiologist=reader)
            if study is None:
                return
            with lock:
                by_next.append((study.pk, reader.pk))

    _run(readers, race)

    # No claim by id ever succeeded; every one was refused with 409 next_case_only.
    assert by_id_won == []
    assert set(by_id_refused) == {(409, "next_case_only")}
    assert sum(by_id_refused.values()) >= READERS // 2 * STUDIES
    # Every study was taken by "next case" exactly once.
    taken = [study_id for study_id, _ in by_next]
    assert sorted(taken) == sorted(studies)
    for study_id, reader_id in by_next:
        study = Study.objects.get(pk=study_id)
        assert study.status == "claimed" and study.assigned_radiologist_id == reader_id
    assert (
        StudyTransition.objects.filter(study_id__in=studies, to_status="claimed").count() == STUDIES
    )

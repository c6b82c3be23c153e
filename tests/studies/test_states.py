"""The study state machine: allowed moves succeed and are recorded; others are refused."""

import datetime as dt
import threading

import pytest
from django.db import IntegrityError, connection, transaction

from audit.models import AuditEvent
from network.models import Priority
from studies import states
from studies.models import Study, StudyTransition
from studies.services import study_transition
from studies.states import StudyStatus as S
from teleradiology.errors import InvalidTransition
from tests import factories as f

ALL = list(S)

ALLOWED = {
    (S.RECEIVING, S.READY),
    (S.RECEIVING, S.PRIOR),
    (S.RECEIVING, S.CANCELLED),
    (S.READY, S.OFFERED),
    (S.READY, S.CANCELLED),
    (S.OFFERED, S.CLAIMED),
    (S.OFFERED, S.READY),
    (S.OFFERED, S.CANCELLED),
    (S.CLAIMED, S.OFFERED),
    (S.CLAIMED, S.PRELIMINARY),
    (S.CLAIMED, S.FINAL),
    (S.CLAIMED, S.CANCELLED),
    (S.PRELIMINARY, S.OFFERED),
    (S.PRELIMINARY, S.FINAL),
    (S.PRELIMINARY, S.CANCELLED),
}


@pytest.mark.parametrize("current", ALL)
@pytest.mark.parametrize("target", ALL)
def test_transition_table(current, target):
    assert states.can_transition(current, target) == ((current, target) in ALLOWED)
    refusal = states.transition_refusal(current, target)
    assert (refusal is None) == ((current, target) in ALLOWED)


def test_terminal_states_say_so():
    assert "cannot change any more" in states.transition_refusal(S.FINAL, S.CLAIMED)
    assert "cannot change any more" in states.transition_refusal(S.CANCELLED, S.READY)


def _walk(study, *path, **changes):
    for target in path:
        study = study_transition(study_id=study.pk, to_status=target, **changes)
    return study


@pytest.mark.django_db
def test_a_study_walks_its_life_and_every_step_is_stamped_and_recorded():
    reader = f.RadiologistFactory()
    study = f.StudyFactory()
    assert study.status == S.RECEIVING
    t0 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
    times = {}
    for i, target in enumerate([S.READY, S.OFFERED, S.CLAIMED, S.PRELIMINARY, S.FINAL]):
        times[target] = t0 + dt.timedelta(minutes=i)
        extra = {"assigned_radiologist": reader} if target == S.CLAIMED else {}
        study = study_transition(study_id=study.pk, to_status=target, at=times[target], **extra)
    study.refresh_from_db()
    assert study.status == S.FINAL
    assert study.ready_at == times[S.READY]
    assert study.offered_at == times[S.OFFERED]
    assert study.claimed_at == times[S.CLAIMED]
    assert study.preliminary_at == times[S.PRELIMINARY]
    assert study.finalized_at == times[S.FINAL]
    assert list(study.transitions.values_list("from_status", "to_status")) == [
        (S.RECEIVING, S.READY),
        (S.READY, S.OFFERED),
        (S.OFFERED, S.CLAIMED),
        (S.CLAIMED, S.PRELIMINARY),
        (S.PRELIMINARY, S.FINAL),
    ]
    assert (
        AuditEvent.objects.filter(
            action="transition", object_id=str(study.pk), patient_id=study.patient_id
        ).count()
        == 5
    )


@pytest.mark.django_db
def test_a_refused_transition_changes_nothing():
    study = f.StudyFactory()
    with pytest.raises(InvalidTransition, match="cannot become final"):
        study_transition(study_id=study.pk, to_status=S.FINAL)
    study.refresh_from_db()
    assert study.status == S.RECEIVING
    assert study.finalized_at is None
    assert not StudyTransition.objects.filter(study=study).exists()


@pytest.mark.django_db
def test_final_is_final():
    reader = f.RadiologistFactory()
    study = _walk(f.StudyFactory(), S.READY, S.OFFERED)
    study = study_transition(study_id=study.pk, to_status=S.CLAIMED, assigned_radiologist=reader)
    study = study_transition(study_id=study.pk, to_status=S.FINAL)
    for target in ALL:
        with pytest.raises(InvalidTransition):
            study_transition(study_id=study.pk, to_status=target)


@pytest.mark.django_db
def test_claimed_without_a_reader_is_refused_by_the_database():
    study = _walk(f.StudyFactory(), S.READY, S.OFFERED)
    with pytest.raises(IntegrityError), transaction.atomic():
        Study.objects.filter(pk=study.pk).update(status=S.CLAIMED)


@pytest.mark.django_db
def test_unknown_status_is_refused_by_the_database():
    study = f.StudyFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Study.objects.filter(pk=study.pk).update(status="lost")


@pytest.mark.django_db
def test_study_instance_uid_is_unique():
    f.StudyFactory(study_instance_uid="1.2.3.4")
    with pytest.raises(Exception, match=r"already exists|UNIQUE|unique"):
        f.StudyFactory(study_instance_uid="1.2.3.4")


@pytest.mark.django_db
@pytest.mark.parametrize("uid", ["1.2.abc", "1..2", "01.2", "../../etc/passwd", "1." * 40])
def test_malformed_uids_are_refused_at_creation(uid):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        f.StudyFactory(study_instance_uid=uid)


@pytest.mark.django_db
def test_sla_due_time_comes_from_the_facility_target_for_the_priority():
    facility = f.FacilityFactory(
        tat_stat_minutes=30, tat_urgent_minutes=120, tat_routine_minutes=1440
    )
    received = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
    stat = f.StudyFactory(facility=facility, priority=Priority.STAT, received_at=received)
    routine = f.StudyFactory(facility=facility, received_at=received)
    assert stat.sla_due_at == received + dt.timedelta(minutes=30)
    # No priority on the object: the facility's default (routine) applies.
    assert routine.priority == Priority.ROUTINE
    assert routine.sla_due_at == received + dt.timedelta(minutes=1440)
    # The patient's jurisdiction defaults to the facility's.
    assert stat.patient_jurisdiction == facility.jurisdiction


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_claims_of_one_study_cannot_both_succeed():
    reader_1, reader_2 = f.RadiologistFactory(), f.RadiologistFactory()
    study = _walk(f.StudyFactory(), S.READY, S.OFFERED)
    barrier = threading.Barrier(2)
    outcomes = []

    def claim(reader):
        try:
            barrier.wait()
            study_transition(study_id=study.pk, to_status=S.CLAIMED, assigned_radiologist=reader)
            outcomes.append(("won", reader.pk))
        except InvalidTransition:
            outcomes.append(("lost", reader.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(r,)) for r in (reader_1, reader_2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o[0] for o in outcomes) == ["lost", "won"]
    winner = next(pk for kind, pk in outcomes if kind == "won")
    study.refresh_from_db()
    assert study.assigned_radiologist_id == winner
    assert study.transitions.filter(to_status=S.CLAIMED).count() == 1

"""Which studies a user may see: the one place study visibility is decided.

- superuser: all;
- group admin: studies of the facilities their reading groups serve;
- facility staff: their facilities' studies;
- radiologist: studies currently offered to them or claimed by them;
- priors (studies retrieved from a facility's PACS, ``Study.is_prior``): seen also
  by a radiologist who sees a current study of the same patient record at the same
  facility (staff and admins see them with their facility's studies).

Orders (the facility's HL7 orders) are seen by the facility's staff and the group's
admins; a reader sees an order only with its study.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import (
    BooleanField,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Value,
)
from rest_framework.exceptions import NotFound

from network.selectors import (
    AnyUser,
    facilities_staffed,
    radiologist_for_user,
    reading_groups_administered,
    user_reaches_facility,
)
from studies.models import Order, Study
from worklist.selectors import offered_study_ids, study_is_offered_to


def study_visibility_filter(*, user: AnyUser) -> Q | None:
    """A filter for the studies ``user`` may see; None means everything."""
    if not user.is_authenticated or not user.is_active:
        return Q(pk__in=[])
    if getattr(user, "is_superuser", False):
        return None
    reach = Q(facility__reading_group__in=reading_groups_administered(user=user)) | Q(
        facility__in=facilities_staffed(user=user).values("pk")
    )
    reader = radiologist_for_user(user=user)
    if reader is not None:
        # Offered to me, including offers a claim holds (so a late claimer hears
        # "already claimed", not "no such study").
        offered = offered_study_ids(radiologist=reader)
        mine = Q(assigned_radiologist=reader) | Q(pk__in=offered)
        reach |= mine
        # A prior, when one of my current studies is of its patient at its facility:
        # the priors of my studies' patients, found once (a subquery of its own, as
        # ``offered``), not a correlated test of every study.
        current_of_patient = Study.objects.filter(
            mine,
            is_prior=False,
            patient_record=OuterRef("patient_record"),
            facility_id=OuterRef("facility_id"),
        )
        priors_of_mine = Study.objects.filter(
            Exists(current_of_patient),
            is_prior=True,
            patient_record__in=Study.objects.filter(mine, patient_record__isnull=False).values(
                "patient_record"
            ),
        ).values("pk")
        reach |= Q(pk__in=priors_of_mine)
    return reach


def study_is_visible(*, user: AnyUser, study: Study) -> bool:
    """Whether ``user`` may see ``study``: the same answer as
    ``study_visibility_filter`` for one study already read, by the cheapest checks
    first (a reader's own claim or offer, then staff, then admin) instead of one
    query with every reach in it.  For requests that name one study many times
    over (a viewer's frames)."""
    if not user.is_authenticated or not user.is_active:
        return False
    if getattr(user, "is_superuser", False):
        return True
    reader = radiologist_for_user(user=user)
    if reader is not None and (
        study.assigned_radiologist_id == reader.pk
        or study_is_offered_to(study_id=study.pk, radiologist_id=reader.pk)
    ):
        return True
    if user_reaches_facility(user=user, facility=study.facility):
        return True
    return (
        reader is not None
        and study.is_prior
        and study.patient_record_id is not None
        and Study.objects.filter(
            Q(assigned_radiologist=reader) | Q(pk__in=offered_study_ids(radiologist=reader)),
            is_prior=False,
            patient_record_id=study.patient_record_id,
            facility_id=study.facility_id,
        ).exists()
    )


def study_list_visible(*, user: AnyUser) -> QuerySet[Study]:
    """Studies ``user`` may see, with what the list needs joined in."""
    qs = Study.objects.select_related("facility", "patient_jurisdiction", "assigned_radiologist")
    reach = study_visibility_filter(user=user)
    return qs if reach is None else qs.filter(reach)


def study_get_visible(*, user: AnyUser, study_id: int) -> Study:
    """One study if ``user`` may see it; otherwise 404, so its existence does not leak."""
    study = study_list_visible(user=user).filter(pk=study_id).first()
    if study is None:
        raise NotFound("No such study.")
    return study


def study_is_administered_by(*, user: AnyUser, study: Study) -> bool:
    """True when ``user`` administers the reading group that reads ``study``'s facility."""
    if getattr(user, "is_superuser", False) and user.is_active:
        return True
    return (
        reading_groups_administered(user=user).filter(pk=study.facility.reading_group_id).exists()
    )


def patient_other_studies_visible(*, user: AnyUser, study: Study) -> QuerySet[Study]:
    """The other studies of ``study``'s patient record that ``user`` may see, newest
    first.  Scoped twice: to the study's reading group (a patient record is one
    group's; a study elsewhere never shows) and to the user's own visibility, so the
    list never names a study the user could not open.  Priors retrieved from the
    PACS are not "studies with us" (the priors section lists them)."""
    if study.patient_record_id is None:
        return Study.objects.none()
    qs = (
        Study.objects.filter(
            patient_record_id=study.patient_record_id,
            facility__reading_group_id=study.facility.reading_group_id,
            is_prior=False,
        )
        .exclude(pk=study.pk)
        .select_related("facility")
        .order_by(F("study_date").desc(nulls_last=True), "-received_at", "-id")
    )
    reach = study_visibility_filter(user=user)
    return qs if reach is None else qs.filter(reach)


def order_visibility_filter(*, user: AnyUser) -> Q | None:
    """A filter for the orders ``user`` may list; None means every order.  Facility
    staff see their facilities' orders, group admins their groups'; readers see no
    order list (an order reaches them with its study)."""
    if not user.is_authenticated or not user.is_active:
        return Q(pk__in=[])
    if getattr(user, "is_superuser", False):
        return None
    return Q(facility__reading_group__in=reading_groups_administered(user=user)) | Q(
        facility__in=facilities_staffed(user=user).values("pk")
    )


# When an order without images stops being listed as expected: received_at plus
# its facility's order_expected_hours, computed in the database per row.
ORDER_EXPECTED_UNTIL = ExpressionWrapper(
    F("received_at")
    + ExpressionWrapper(
        # Typed as a plain integer: SQLite's duration arithmetic refuses a
        # PositiveIntegerField operand.
        ExpressionWrapper(F("facility__order_expected_hours"), output_field=IntegerField())
        * Value(dt.timedelta(hours=1)),
        output_field=DurationField(),
    ),
    output_field=DateTimeField(),
)


def order_list_visible(*, user: AnyUser, now: dt.datetime) -> QuerySet[Order]:
    """Orders ``user`` may list, newest first, with their facility and patient joined
    in (one query per page), annotated with ``expected_until`` and ``is_expected``
    (at ``now``: no study yet, not cancelled, received within the facility's
    order_expected_hours — "an order without images is listed as expected")."""
    qs = (
        Order.objects.select_related("facility", "patient")
        .annotate(expected_until=ORDER_EXPECTED_UNTIL)
        .annotate(
            is_expected=ExpressionWrapper(
                Q(study__isnull=True, expected_until__gt=now) & ~Q(status=Order.Status.CANCELLED),
                output_field=BooleanField(),
            )
        )
        .order_by("-received_at", "-id")
    )
    reach = order_visibility_filter(user=user)
    return qs if reach is None else qs.filter(reach)

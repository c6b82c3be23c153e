"""Which studies a user may see: the one place study visibility is decided.

- superuser: all;
- group admin: studies of the facilities their reading groups serve;
- facility staff: their facilities' studies;
- radiologist: studies currently offered to them or claimed by them.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from rest_framework.exceptions import NotFound

from network.selectors import (
    AnyUser,
    facilities_staffed,
    radiologist_for_user,
    reading_groups_administered,
    user_reaches_facility,
)
from studies.models import Study
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
        reach |= Q(assigned_radiologist=reader) | Q(pk__in=offered)
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
    return user_reaches_facility(user=user, facility=study.facility)


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

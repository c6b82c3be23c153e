"""API permissions for the reading network."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from network.models import FacilityPrivilege, Leave, License, Rota, Shift
from network.selectors import is_group_admin, reading_groups_administered


def reading_group_id_of(obj: Any) -> int | None:
    """The reading group an object of the network (or its configuration) belongs to."""
    if hasattr(obj, "reading_group_id"):
        return int(obj.reading_group_id)
    if isinstance(obj, License | FacilityPrivilege | Shift | Rota | Leave):
        return obj.radiologist.reading_group_id
    return None


class ReadScopedWriteGroupAdmin(BasePermission):
    """Anyone signed in reads what their selector scope shows; only the admins of
    the object's reading group write it."""

    message = "Only an admin of this reading group may change it."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or is_group_admin(user=request.user)

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        group_id = reading_group_id_of(obj)
        return (
            group_id is not None
            and reading_groups_administered(user=request.user).filter(pk=group_id).exists()
        )


class ReferenceDataPermission(BasePermission):
    """Reference data (jurisdictions, subspecialties, regions): read by all, written by
    superusers only, since every reading group shares it."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or bool(request.user.is_superuser)

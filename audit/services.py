"""Writing the audit trail: the one way any feature records an access.

Every event names the reading group whose data or people it concerns
(``AuditEvent.reading_group_id``), so that a group admin's view of the trail is one
indexed filter.  The audit app is the lowest layer and imports none of the apps
whose objects it records, so the group is found from the object's own relations:

- a caller that knows the group passes ``reading_group_id`` (sign-in events, grants
  of a user);
- otherwise it is derived from the object (``obj``, or ``object_type`` and the ids):
  a path of foreign keys ending at ``network.ReadingGroup`` is found once per model
  by name, in the order of ``GROUP_PATH_PREFERENCE`` (a Study -> its facility's
  group; a Report -> its study's; a License -> its radiologist's; a ReadingGroup ->
  itself);
- an owner app whose model has no such path, or a different answer, declares it at
  app ready with ``register_group_path(label, "field__field__reading_group_id")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import apps
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from audit.models import AuditEvent

READING_GROUP = "network.readinggroup"
# The relations followed, in this order, to reach an object's reading group.  The
# facility (whose patients the data are) comes before the reader.
GROUP_PATH_PREFERENCE = (
    "reading_group",
    "facility",
    "study",
    "report",
    "review",
    "message",
    "series",
    "instance",
    "radiologist",
)
_MAX_DEPTH = 6
_PATHS: dict[str, str | None] = {}
_DECLARED: dict[str, str | None] = {}


def register_group_path(label: str, path: str | None) -> None:
    """Declare how events of the model ``label`` ("app.model") find their reading
    group: an ORM path ending at the group's id ("pk" for the group itself), or None
    for a model whose events are site-wide."""
    _DECLARED[label] = path
    _PATHS.pop(label, None)


def _path_for(model: type[models.Model], depth: int = 0) -> str | None:
    label = model._meta.label_lower
    if label in _DECLARED:
        return _DECLARED[label]
    if label == READING_GROUP:
        return "pk"
    if depth >= _MAX_DEPTH:
        return None
    for name in GROUP_PATH_PREFERENCE:
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        if not (field.concrete and (field.many_to_one or field.one_to_one)):
            continue
        related = field.related_model
        if not isinstance(related, type):
            continue
        if related._meta.label_lower == READING_GROUP:
            return str(field.attname)
        rest = _path_for(related, depth + 1)
        if rest is not None:
            return f"{name}__{rest}"
    return None


def group_path(model: type[models.Model]) -> str | None:
    """The ORM path from ``model`` to its reading group's id (None: site-wide)."""
    label = model._meta.label_lower
    if label not in _PATHS:
        _PATHS[label] = _path_for(model)
    return _PATHS[label]


def reading_group_of(obj: models.Model) -> int | None:
    """The reading group an object belongs to, following its foreign keys (loaded
    ones are reused; the group row itself is never read)."""
    path = group_path(type(obj))
    if path is None:
        return None
    value: Any = obj
    for hop in path.split("__"):
        value = getattr(value, hop, None)
        if value is None:
            return None
    return int(value)


def _groups_of(object_type: str, object_ids: Sequence[str]) -> dict[str, int | None]:
    """The reading group of each id of one model, in one query."""
    if not object_ids:
        return {}
    try:
        model = apps.get_model(object_type)
    except (LookupError, ValueError):
        return {}
    path = group_path(model)
    if path is None:
        return {}
    pk_field = model._meta.pk
    ids: list[Any] = []
    for raw in object_ids:
        try:
            ids.append(pk_field.to_python(raw) if pk_field is not None else raw)
        except Exception:  # noqa: S112 -- an id that is not one of this model's names nothing
            continue
    rows = model._default_manager.filter(pk__in=ids).values_list("pk", path)
    return {str(pk): (int(group) if group is not None else None) for pk, group in rows}


def audit_record(
    *,
    actor: User | AnonymousUser | None,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    patient_id: str = "",
    ip_address: str | None = None,
    detail: dict[str, Any] | None = None,
    reading_group_id: int | None = None,
) -> AuditEvent:
    """Append one audit event, naming its reading group (given, or derived from the
    object); call inside the transaction of the change it records."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        if reading_group_id is None:
            reading_group_id = reading_group_of(obj)
    elif reading_group_id is None and object_type and object_id:
        reading_group_id = _groups_of(object_type, [object_id]).get(object_id)
    user = actor if isinstance(actor, User) else None
    return AuditEvent.objects.create(
        actor=user,
        actor_username=user.get_username() if user is not None else "",
        action=action,
        object_type=object_type,
        object_id=object_id,
        patient_id=patient_id or "",
        ip_address=ip_address,
        detail=detail or {},
        reading_group_id=reading_group_id,
    )


def audit_record_many(
    *,
    actor: User | AnonymousUser | None,
    action: str,
    object_type: str,
    items: list[tuple[str, str]],
    ip_address: str | None = None,
    detail: dict[str, Any] | None = None,
    reading_group_id: int | None = None,
) -> None:
    """Append one event per (object id, patient id) in a single INSERT (list pages);
    each names its object's reading group."""
    audit_record_each(
        actor=actor,
        action=action,
        object_type=object_type,
        items=[(object_id, patient_id, detail or {}) for object_id, patient_id in items],
        ip_address=ip_address,
        reading_group_id=reading_group_id,
    )


def audit_record_each(
    *,
    actor: User | AnonymousUser | None,
    action: str,
    object_type: str,
    items: list[tuple[str, str, dict[str, Any]]],
    ip_address: str | None = None,
    reading_group_id: int | None = None,
) -> None:
    """Append one event per (object id, patient id, detail) in a single INSERT (a
    batch of changes, each with its own detail); each names its object's reading
    group (``reading_group_id`` for all, else derived in one query)."""
    if not items:
        return
    user = actor if isinstance(actor, User) else None
    groups = (
        {}
        if reading_group_id is not None
        else _groups_of(object_type, [object_id for object_id, _, _ in items])
    )
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                actor=user,
                actor_username=user.get_username() if user is not None else "",
                action=action,
                object_type=object_type,
                object_id=object_id,
                patient_id=patient_id or "",
                ip_address=ip_address,
                detail=detail,
                reading_group_id=(
                    reading_group_id if reading_group_id is not None else groups.get(object_id)
                ),
            )
            for object_id, patient_id, detail in items
        ]
    )


def audit_trail_read_record(
    *,
    actor: User | AnonymousUser | None,
    rows: Sequence[AuditEvent],
    ip_address: str | None,
    reading_group_id: int | None,
) -> None:
    """Audit a read of the trail itself (it shows patient ids): one LIST event per
    patient shown, naming the events read, or one for a page without patients."""
    by_patient: dict[str, list[int]] = {}
    for event in rows:
        by_patient.setdefault(event.patient_id, []).append(event.pk)
    audit_record_each(
        actor=actor,
        action=AuditEvent.Action.LIST,
        object_type=AuditEvent._meta.label_lower,
        items=[("", patient, {"events": ids[:200]}) for patient, ids in by_patient.items()]
        or [("", "", {"events": []})],
        ip_address=ip_address,
        reading_group_id=reading_group_id,
    )

"""Report templates: a template document checked and normalised, stored as the next
version of its code (the active one retired), imported, and the starter library seeded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from audit.models import AuditEvent
from audit.services import audit_record
from network.models import ReadingGroup
from reporting import templates_schema as ts
from reporting.models import ReportTemplate
from teleradiology.errors import DomainError, NotPermitted

LIBRARY_DIR = Path(__file__).resolve().parent.parent / "template_library"
_TEMPLATE_KEYS = {
    "code",
    "name",
    "version",
    "modality",
    "body_parts",
    "procedure_codes",
    "allow_any_study",
    "schema",
}


def report_template_clean(document: Any) -> dict[str, Any]:
    """Check a template document (API body, admin form or imported JSON) and normalise it;
    DomainError lists every problem."""
    if not isinstance(document, dict):
        raise DomainError("A template must be a JSON object.", code="invalid_template")
    errors = []
    unknown = set(document) - _TEMPLATE_KEYS
    if unknown:
        errors.append(f"Unknown template properties: {', '.join(sorted(unknown))}.")
    code, name = document.get("code"), document.get("name")
    if not isinstance(code, str) or not code.strip() or len(code) > 64:
        errors.append("'code' must be a non-empty string of at most 64 characters.")
    elif not all(c.isalnum() or c in "-_" for c in code):
        errors.append("'code' may hold only letters, digits, '-' and '_'.")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors.append("'name' must be a non-empty string of at most 200 characters.")
    modality = document.get("modality", "")
    if not isinstance(modality, str) or len(modality) > 16:
        errors.append("'modality' must be a string of at most 16 characters.")
    lists = {}
    for key in ("body_parts", "procedure_codes"):
        value = document.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            errors.append(f"'{key}' must be a list of non-empty strings.")
        else:
            lists[key] = value
    allow_any_study = document.get("allow_any_study", False)
    if not isinstance(allow_any_study, bool):
        errors.append("'allow_any_study' must be true or false.")
    errors.extend(ts.validate_schema(document.get("schema")))
    if errors:
        raise DomainError(" ".join(errors), code="invalid_template")
    return {
        "code": str(code).strip(),
        "name": str(name).strip(),
        "modality": str(modality).strip().upper(),
        "body_parts": sorted({v.strip().upper() for v in lists["body_parts"]}),
        "procedure_codes": sorted({v.strip() for v in lists["procedure_codes"]}),
        "allow_any_study": allow_any_study,
        "schema": document["schema"],
    }


def _template_write(
    *, fields: dict[str, Any], reading_group: ReadingGroup | None, actor: User | None
) -> ReportTemplate:
    """Insert ``fields`` as the next version of its code, retiring the active one."""
    code = fields["code"]
    existing = list(ReportTemplate.objects.select_for_update().filter(code=code))
    if existing and any(t.reading_group_id != getattr(reading_group, "pk", None) for t in existing):
        raise NotPermitted(
            f"Template code '{code}' belongs to another owner; choose another code.",
            code="template_owner",
        )
    version = max((t.version for t in existing), default=0) + 1
    ReportTemplate.objects.filter(code=code, is_active=True).update(is_active=False)
    template = ReportTemplate.objects.create(
        reading_group=reading_group, version=version, created_by=actor, **fields
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        obj=template,
        detail={"code": code, "version": version},
    )
    return template


def report_template_create(
    *, actor: User | None, reading_group: ReadingGroup | None, document: Any
) -> ReportTemplate:
    """Create a template (or, if its code exists, its next version) from a JSON document."""
    fields = report_template_clean(document)
    with transaction.atomic():
        return _template_write(fields=fields, reading_group=reading_group, actor=actor)


def report_template_new_version(
    *, template_id: int, actor: User | None, changes: dict[str, Any]
) -> ReportTemplate:
    """The next version of a template with ``changes`` applied; reports keep their version."""
    with transaction.atomic():
        current = ReportTemplate.objects.select_for_update().get(pk=template_id)
        document = {
            "code": current.code,
            "name": current.name,
            "modality": current.modality,
            "body_parts": current.body_parts,
            "procedure_codes": current.procedure_codes,
            "allow_any_study": current.allow_any_study,
            "schema": current.schema,
        }
        if "code" in changes and changes["code"] != current.code:
            raise DomainError("A new version keeps the template's code.", code="invalid_template")
        document.update({k: v for k, v in changes.items() if k != "version"})
        fields = report_template_clean(document)
        return _template_write(fields=fields, reading_group=current.reading_group, actor=actor)


def report_template_import(
    *, actor: User | None, reading_group: ReadingGroup | None, document: Any
) -> ReportTemplate:
    """Import an exported template: a new code starts at version 1, a known one adds a version."""
    if isinstance(document, dict):
        document = {k: v for k, v in document.items() if k != "version"}
    return report_template_create(actor=actor, reading_group=reading_group, document=document)


def report_templates_seed() -> int:
    """Load the starter library (shared templates) once; returns how many were created."""
    created = 0
    for path in sorted(LIBRARY_DIR.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        if ReportTemplate.objects.filter(code=document["code"]).exists():
            continue
        report_template_import(actor=None, reading_group=None, document=document)
        created += 1
    return created

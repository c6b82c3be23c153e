"""Structured report templates: the shape of a template and of a report's values.

Pure Python, no Django: a template's ``schema`` is a dict of sections, each with
typed fields; a report's ``values`` map field keys to values.  Both validators
return every problem at once, as sentences a radiologist or an admin can act on.

Schema::

    {"sections": [
        {"key": "findings", "title": "Findings", "fields": [
            {"key": "brain", "label": "Brain", "type": "text", "required": true,
             "default": "No acute intracranial abnormality."},
            {"key": "shift", "label": "Midline shift", "type": "number", "unit": "mm",
             "min": 0, "max": 40},
            {"key": "birads", "label": "BI-RADS", "type": "choice", "choices": ["0", "1"]},
            {"key": "signs", "label": "Signs", "type": "multi_choice", "choices": ["a", "b"]},
            {"key": "bleed", "label": "Haemorrhage", "type": "yes_no"},
            {"key": "mass", "label": "Mass", "type": "measurement", "unit": "mm",
             "dimensions": 3}
        ]}
    ]}

Field keys are unique across the whole template, so values are a flat dict.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

FIELD_TYPES = ("text", "number", "choice", "multi_choice", "yes_no", "measurement")
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TEXT_MAX = 20_000
UNITS = ("mm", "cm", "ml", "cm3", "HU", "mm/s", "cm/s", "%", "g", "kg", "years", "degrees")
_FIELD_KEYS = {"key", "label", "type", "required", "default", "unit", "min", "max"}
_FIELD_KEYS_BY_TYPE = {
    "text": {"max_length"},
    "number": set(),
    "choice": {"choices"},
    "multi_choice": {"choices"},
    "yes_no": set(),
    "measurement": {"dimensions"},
}


class SchemaInvalid(ValueError):
    """A template schema or a report's values that do not fit; ``errors`` lists why."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _check_field(field: Any, where: str) -> list[str]:
    if not isinstance(field, dict):
        return [f"{where} must be an object."]
    errors: list[str] = []
    key = field.get("key")
    name = f"{where} ('{key}')" if isinstance(key, str) else where
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        errors.append(
            f"{where} needs a 'key' of lower-case letters, digits and underscores "
            "starting with a letter."
        )
    if not isinstance(field.get("label"), str) or not field["label"].strip():
        errors.append(f"{name} needs a non-empty 'label'.")
    kind = field.get("type")
    if kind not in FIELD_TYPES:
        errors.append(f"{name} has type {kind!r}; use one of {', '.join(FIELD_TYPES)}.")
        return errors
    unknown = set(field) - _FIELD_KEYS - _FIELD_KEYS_BY_TYPE[kind]
    if unknown:
        errors.append(f"{name} has unknown properties: {', '.join(sorted(unknown))}.")
    if "required" in field and not isinstance(field["required"], bool):
        errors.append(f"{name}: 'required' must be true or false.")
    if kind in ("number", "measurement"):
        if field.get("unit") not in UNITS:
            errors.append(f"{name} needs a 'unit', one of {', '.join(UNITS)}.")
        for bound in ("min", "max"):
            if bound in field and not _is_number(field[bound]):
                errors.append(f"{name}: '{bound}' must be a number.")
        low: Any = field.get("min")
        high: Any = field.get("max")
        if _is_number(low) and _is_number(high) and low > high:
            errors.append(f"{name}: 'min' is greater than 'max'.")
    elif "unit" in field or "min" in field or "max" in field:
        errors.append(f"{name}: only number and measurement fields take a unit or bounds.")
    if kind in ("choice", "multi_choice"):
        choices = field.get("choices")
        if (
            not isinstance(choices, list)
            or not choices
            or not all(isinstance(c, str) and c.strip() for c in choices)
        ):
            errors.append(f"{name} needs 'choices', a non-empty list of non-empty strings.")
        elif len(set(choices)) != len(choices):
            errors.append(f"{name} lists a choice twice.")
    if kind == "measurement":
        dims = field.get("dimensions", 1)
        if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= 3:
            errors.append(f"{name}: 'dimensions' must be 1, 2 or 3.")
    if kind == "text" and "max_length" in field:
        limit = field["max_length"]
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= TEXT_MAX:
            errors.append(f"{name}: 'max_length' must be between 1 and {TEXT_MAX}.")
    if "default" in field and not errors:
        # The "normal" text a field starts with must itself be a valid value.
        errors.extend(_check_value(field, field["default"], name=f"{name} default"))
    return errors


def validate_schema(schema: Any) -> list[str]:
    """Every problem with a template schema; an empty list means it is valid."""
    if not isinstance(schema, dict):
        return ["The schema must be an object with a 'sections' list."]
    errors: list[str] = []
    extra = set(schema) - {"sections"}
    if extra:
        errors.append(f"The schema has unknown properties: {', '.join(sorted(extra))}.")
    sections = schema.get("sections")
    if not isinstance(sections, list) or not sections:
        return [*errors, "The schema needs a non-empty 'sections' list."]
    section_keys: set[str] = set()
    field_keys: set[str] = set()
    for s_index, section in enumerate(sections, start=1):
        where = f"Section {s_index}"
        if not isinstance(section, dict):
            errors.append(f"{where} must be an object.")
            continue
        key = section.get("key")
        if not isinstance(key, str) or not KEY_PATTERN.match(key):
            errors.append(f"{where} needs a 'key' of lower-case letters, digits and underscores.")
        elif key in section_keys:
            errors.append(f"Section key '{key}' is used twice.")
        else:
            section_keys.add(key)
            where = f"Section '{key}'"
        if not isinstance(section.get("title"), str) or not section["title"].strip():
            errors.append(f"{where} needs a non-empty 'title'.")
        unknown = set(section) - {"key", "title", "fields"}
        if unknown:
            errors.append(f"{where} has unknown properties: {', '.join(sorted(unknown))}.")
        fields = section.get("fields")
        if not isinstance(fields, list) or not fields:
            errors.append(f"{where} needs a non-empty 'fields' list.")
            continue
        for f_index, field in enumerate(fields, start=1):
            errors.extend(_check_field(field, f"{where}, field {f_index}"))
            f_key = field.get("key") if isinstance(field, dict) else None
            if isinstance(f_key, str):
                if f_key in field_keys:
                    errors.append(f"Field key '{f_key}' is used twice in the template.")
                field_keys.add(f_key)
    return errors


def iter_fields(schema: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The fields of a valid schema, in order."""
    for section in schema["sections"]:
        yield from section["fields"]


def defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The starting values of a new report: each field's default "normal" text."""
    return {f["key"]: f["default"] for f in iter_fields(schema) if "default" in f}


def _is_empty(value: Any) -> bool:
    return value is None or value == [] or (isinstance(value, str) and not value.strip())


def _check_value(field: Mapping[str, Any], value: Any, *, name: str) -> list[str]:
    if value is None:
        return []
    kind = field["type"]
    if kind == "text":
        if not isinstance(value, str):
            return [f"{name} must be text."]
        limit = field.get("max_length", TEXT_MAX)
        if len(value) > limit:
            return [f"{name} is longer than {limit} characters."]
        return []
    if kind == "yes_no":
        return [] if isinstance(value, bool) else [f"{name} must be yes (true) or no (false)."]
    if kind == "choice":
        if value not in field["choices"]:
            return [f"{name} must be one of: {', '.join(field['choices'])}."]
        return []
    if kind == "multi_choice":
        if not isinstance(value, list) or any(v not in field["choices"] for v in value):
            return [f"{name} must be a list drawn from: {', '.join(field['choices'])}."]
        if len(set(value)) != len(value):
            return [f"{name} lists a choice twice."]
        return []
    numbers = value if kind == "measurement" else [value]
    unit = field.get("unit", "")
    if kind == "measurement":
        dims = field.get("dimensions", 1)
        if (
            not isinstance(value, list)
            or not 1 <= len(value) <= dims
            or not all(_is_number(v) for v in value)
        ):
            return [f"{name} must be a list of 1 to {dims} numbers in {unit}."]
        if any(v <= 0 for v in value):
            return [f"{name}: every dimension must be greater than 0 {unit}."]
    elif not _is_number(value):
        return [f"{name} must be a number in {unit}."]
    errors = []
    low, high = field.get("min"), field.get("max")
    for number in numbers:
        if low is not None and number < low:
            errors.append(f"{name} must be at least {low} {unit}.")
        if high is not None and number > high:
            errors.append(f"{name} must be at most {high} {unit}.")
    return errors


def validate_values(
    schema: Mapping[str, Any],
    values: Any,
    *,
    impression: str = "",
    for_sign: bool = False,
) -> list[str]:
    """Every problem with a report's values against a valid schema.

    A draft may be incomplete; ``for_sign`` also demands every required field
    and a non-empty impression.
    """
    if not isinstance(values, dict):
        return ["The report's values must be an object of field key to value."]
    fields = {f["key"]: f for f in iter_fields(schema)}
    errors: list[str] = []
    unknown = sorted(set(values) - set(fields))
    if unknown:
        errors.append(f"The template has no fields named: {', '.join(unknown)}.")
    for key, field in fields.items():
        name = f"'{field['label']}'"
        value = values.get(key)
        errors.extend(_check_value(field, value, name=name))
        if for_sign and field.get("required") and _is_empty(value):
            errors.append(f"{name} is required before signing.")
    if for_sign and not (impression or "").strip():
        errors.append("The impression cannot be empty.")
    return errors


def ensure_schema(schema: Any) -> None:
    """Raise SchemaInvalid unless the template schema is valid."""
    errors = validate_schema(schema)
    if errors:
        raise SchemaInvalid(errors)


def ensure_values(
    schema: Mapping[str, Any], values: Any, *, impression: str = "", for_sign: bool = False
) -> None:
    """Raise SchemaInvalid unless the report's values fit the schema."""
    errors = validate_values(schema, values, impression=impression, for_sign=for_sign)
    if errors:
        raise SchemaInvalid(errors)

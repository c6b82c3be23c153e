"""The report editor's form: a template's fields as form controls and back.

Pure Python, no Django: the page names each control ``v.<field key>``; this module
turns a template and a report's values into rows the page renders, and the posted
form back into the values dict the services take.  It does not judge the values:
what does not parse is passed on as typed, so the service's own validation answers
with its sentence (``'Midline shift' must be a number in mm.``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reporting import templates_schema as ts

PREFIX = "v."


@dataclasses.dataclass(frozen=True)
class EditorField:
    """One field as the page shows it: its definition, current value and display text."""

    key: str
    label: str
    type: str
    required: bool
    unit: str
    choices: tuple[str, ...]
    dimensions: int
    value: Any
    display: str

    @property
    def name(self) -> str:
        return PREFIX + self.key

    @property
    def parts(self) -> list[Any]:
        """A measurement's dimension values, padded to its number of dimensions."""
        given = list(self.value) if isinstance(self.value, list) else []
        return [*given, *[""] * (self.dimensions - len(given))][: self.dimensions]

    @property
    def selected(self) -> tuple[str, ...]:
        if isinstance(self.value, list):
            return tuple(str(v) for v in self.value)
        return () if self.value is None else (str(self.value),)


@dataclasses.dataclass(frozen=True)
class EditorSection:
    key: str
    title: str
    fields: tuple[EditorField, ...]


def _number_text(number: Any) -> str:
    if isinstance(number, float) and number.is_integer():
        return str(int(number))
    return str(number)


def display_value(field: Mapping[str, Any], value: Any) -> str:
    """A value as words for a reader of the report ("" when not given)."""
    if value is None or value == [] or value == "":
        return ""
    kind = field["type"]
    unit = field.get("unit", "")
    if kind == "yes_no":
        return "Yes" if value is True else "No" if value is False else str(value)
    if kind == "multi_choice" and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if kind == "measurement" and isinstance(value, list):
        return " \u00d7 ".join(_number_text(v) for v in value) + f" {unit}"
    if kind == "number":
        return f"{_number_text(value)} {unit}"
    return str(value)


def editor_sections(schema: Mapping[str, Any], values: Mapping[str, Any]) -> list[EditorSection]:
    """The template's sections with each field's control facts and current value."""
    sections = []
    for section in schema["sections"]:
        fields = []
        for field in section["fields"]:
            value = values.get(field["key"])
            fields.append(
                EditorField(
                    key=field["key"],
                    label=field["label"],
                    type=field["type"],
                    required=bool(field.get("required", False)),
                    unit=field.get("unit", ""),
                    choices=tuple(field.get("choices", ())),
                    dimensions=int(field.get("dimensions", 1)),
                    value=value,
                    display=display_value(field, value),
                )
            )
        sections.append(
            EditorSection(key=section["key"], title=section["title"], fields=tuple(fields))
        )
    return sections


def _number(text: str) -> Any:
    """A number from a form control; what is not one stays text for the validator."""
    text = text.strip().replace(",", ".")
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text else number


def values_from_form(
    schema: Mapping[str, Any], get_list: Callable[[str], Sequence[str]]
) -> dict[str, Any]:
    """The report's values from a posted editor form (``get_list`` is QueryDict.getlist).

    Every field of the template is read, so a save replaces the whole state, as
    autosave expects; empty controls leave their field out.
    """
    values: dict[str, Any] = {}
    for field in ts.iter_fields(schema):
        key, kind = field["key"], field["type"]
        posted = [p for p in get_list(PREFIX + key) if p.strip()]
        if kind == "multi_choice":
            if posted:
                values[key] = posted
            continue
        if kind == "measurement":
            if posted:
                values[key] = [_number(p) for p in posted]
            continue
        if not posted:
            continue
        text = posted[0]
        if kind == "text":
            values[key] = text
        elif kind == "number":
            values[key] = _number(text)
        elif kind == "yes_no":
            values[key] = {"yes": True, "no": False}.get(text, text)
        else:
            values[key] = text
    return values


# The indication from the order.  A template's indication field is the first text
# field whose key is one of these (every template of the shared library names it
# "indication").  When a report starts from its template's defaults (a new report,
# or a draft switched to another template), that field, if still empty, is filled
# with the order's reason for exam and, on the next line, its clinical history; a
# value the reader or the template gave is never replaced, and a report started
# before its order arrived is left as it is (the order shows beside the editor).
INDICATION_KEYS = (
    "indication",
    "clinical_information",
    "clinical_indication",
    "clinical_history",
    "history",
)


def indication_text(*, reason_for_exam: str, clinical_history: str) -> str:
    """The order's indication: its reason for exam, then its clinical history on
    the next line (either may be missing; the history is left out when it only
    repeats the reason)."""
    reason, history = reason_for_exam.strip(), clinical_history.strip()
    if history.casefold() == reason.casefold():
        history = ""
    return "\n".join(part for part in (reason, history) if part)


def indication_field(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The template's indication field (see INDICATION_KEYS), or None."""
    for key in INDICATION_KEYS:
        for field in ts.iter_fields(schema):
            if field["key"] == key and field["type"] == "text":
                return field
    return None


def indication_prefill(
    schema: Mapping[str, Any], values: Mapping[str, Any], text: str
) -> dict[str, Any]:
    """``values`` with the template's indication field set to ``text`` when the
    field is empty; the same values when the template has no such field, the field
    has a value already, or ``text`` is empty."""
    field = indication_field(schema)
    filled = dict(values)
    if field is None or not text or str(values.get(field["key"]) or "").strip():
        return filled
    limit = int(field.get("max_length") or ts.TEXT_MAX)
    filled[field["key"]] = text[:limit]
    return filled

"""The pure template and value validators: table-driven, no database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reporting import templates_schema as ts

LIBRARY = Path(ts.__file__).resolve().parent / "template_library"

SCHEMA = {
    "sections": [
        {
            "key": "findings",
            "title": "Findings",
            "fields": [
                {"key": "brain", "label": "Brain", "type": "text", "required": True,
                 "default": "Normal."},
                {"key": "shift", "label": "Midline shift", "type": "number", "unit": "mm",
                 "min": 0, "max": 40},
                {"key": "birads", "label": "BI-RADS", "type": "choice",
                 "choices": ["1", "2", "3"], "required": True},
                {"key": "signs", "label": "Signs", "type": "multi_choice",
                 "choices": ["a", "b"]},
                {"key": "bleed", "label": "Haemorrhage", "type": "yes_no", "required": True},
                {"key": "mass", "label": "Mass", "type": "measurement", "unit": "mm",
                 "dimensions": 2},
            ],
        }
    ]
}  # fmt: skip


def test_the_example_schema_is_valid():
    assert ts.validate_schema(SCHEMA) == []


@pytest.mark.parametrize("path", sorted(LIBRARY.glob("*.json")), ids=lambda p: p.stem)
def test_every_starter_template_is_valid(path):
    document = json.loads(path.read_text())
    assert ts.validate_schema(document["schema"]) == []
    assert ts.validate_values(document["schema"], ts.defaults(document["schema"])) == []


def test_the_starter_library_is_complete():
    codes = {json.loads(p.read_text())["code"] for p in LIBRARY.glob("*.json")}
    assert codes == {
        "ct-head-noncontrast",
        "xr-chest",
        "ct-chest",
        "ct-abdomen-pelvis",
        "mr-brain",
        "mr-knee",
        "us-abdomen",
        "mg-screening",
    }
    mammo = json.loads((LIBRARY / "mg-screening.json").read_text())
    birads = next(f for f in ts.iter_fields(mammo["schema"]) if f["key"] == "birads")
    assert birads["type"] == "choice" and birads["required"] is True


def _field(**changes):
    field = {"key": "x", "label": "X", "type": "text"}
    field.update(changes)
    return {"sections": [{"key": "s", "title": "S", "fields": [field]}]}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (None, "must be an object"),
        ({}, "non-empty 'sections'"),
        ({"sections": [], "extra": 1}, "unknown properties: extra"),
        ({"sections": [{"key": "s", "title": "S", "fields": []}]}, "non-empty 'fields'"),
        ({"sections": [{"key": "S!", "title": "S", "fields": [{}]}]}, "needs a 'key'"),
        ({"sections": [{"key": "s", "fields": [{}]}]}, "non-empty 'title'"),
        (_field(key="Bad Key"), "lower-case letters"),
        (_field(label=""), "non-empty 'label'"),
        (_field(type="colour"), "use one of text, number"),
        (_field(type="number"), "needs a 'unit'"),
        (_field(type="number", unit="furlong"), "needs a 'unit'"),
        (_field(type="number", unit="mm", min=5, max=1), "'min' is greater than 'max'"),
        (_field(type="number", unit="mm", min="1"), "'min' must be a number"),
        (_field(unit="mm"), "only number and measurement fields"),
        (_field(type="choice"), "needs 'choices'"),
        (_field(type="choice", choices=["a", "a"]), "lists a choice twice"),
        (_field(type="multi_choice", choices=[""]), "needs 'choices'"),
        (_field(type="measurement", unit="mm", dimensions=4), "'dimensions' must be 1, 2 or 3"),
        (_field(required="yes"), "'required' must be true or false"),
        (_field(colour="red"), "unknown properties: colour"),
        (_field(default=3), "default must be text"),
        (_field(type="choice", choices=["a"], default="b"), "default must be one of: a"),
        (_field(max_length=0), "'max_length' must be between"),
    ],
)
def test_invalid_schemas_say_why(schema, message):
    errors = ts.validate_schema(schema)
    assert errors and any(message in e for e in errors), errors


def test_field_keys_are_unique_across_sections():
    schema = {
        "sections": [
            {"key": "a", "title": "A", "fields": [{"key": "x", "label": "X", "type": "text"}]},
            {"key": "b", "title": "B", "fields": [{"key": "x", "label": "X", "type": "text"}]},
        ]
    }
    assert ts.validate_schema(schema) == ["Field key 'x' is used twice in the template."]


COMPLETE = {"brain": "Normal.", "birads": "1", "bleed": False}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "must be an object"),
        ({"nope": 1}, "no fields named: nope"),
        ({"brain": 3}, "'Brain' must be text"),
        ({"shift": "3"}, "'Midline shift' must be a number in mm"),
        ({"shift": True}, "'Midline shift' must be a number in mm"),
        ({"shift": -1}, "at least 0 mm"),
        ({"shift": 41}, "at most 40 mm"),
        ({"birads": "7"}, "must be one of: 1, 2, 3"),
        ({"signs": "a"}, "must be a list drawn from: a, b"),
        ({"signs": ["a", "a"]}, "lists a choice twice"),
        ({"bleed": "no"}, "yes (true) or no (false)"),
        ({"mass": 12}, "list of 1 to 2 numbers in mm"),
        ({"mass": [1, 2, 3]}, "list of 1 to 2 numbers in mm"),
        ({"mass": [0]}, "greater than 0 mm"),
    ],
)
def test_invalid_values_say_why(values, message):
    errors = ts.validate_values(SCHEMA, values)
    assert errors and any(message in e for e in errors), errors


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"shift": 3.5, "signs": [], "mass": [12, 8.5], "bleed": None},
        {"shift": 0, "signs": ["a", "b"], "bleed": True},
    ],
)
def test_a_draft_may_be_incomplete(values):
    assert ts.validate_values(SCHEMA, values) == []


@pytest.mark.parametrize(
    ("values", "impression", "message"),
    [
        ({**COMPLETE, "brain": "  "}, "Fine.", "'Brain' is required before signing."),
        ({**COMPLETE, "birads": None}, "Fine.", "'BI-RADS' is required before signing."),
        ({k: v for k, v in COMPLETE.items() if k != "bleed"}, "Fine.", "'Haemorrhage' is required"),
        (COMPLETE, "", "The impression cannot be empty."),
        (COMPLETE, " \n ", "The impression cannot be empty."),
    ],
)
def test_signing_needs_required_fields_and_an_impression(values, impression, message):
    errors = ts.validate_values(SCHEMA, values, impression=impression, for_sign=True)
    assert any(message in e for e in errors), errors


def test_a_complete_report_may_be_signed_and_false_counts_as_an_answer():
    assert ts.validate_values(SCHEMA, COMPLETE, impression="No acute finding.", for_sign=True) == []


def test_ensure_raises_with_every_error():
    with pytest.raises(ts.SchemaInvalid) as caught:
        ts.ensure_values(SCHEMA, {"shift": 99, "birads": "9"})
    assert len(caught.value.errors) == 2
    with pytest.raises(ts.SchemaInvalid):
        ts.ensure_schema({})
    ts.ensure_schema(SCHEMA)


def test_defaults_are_the_normal_text():
    assert ts.defaults(SCHEMA) == {"brain": "Normal."}

"""How much free text the reporting surfaces accept, in one place.

Every text written through the API is bounded, so that no request stores (and no
report, PDF or HL7 message later carries) megabytes of text by accident or on
purpose.  A report's own fields are bounded by its template (``TEXT_MAX`` in
``reporting.templates_schema``)."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

MACRO_TEXT_MAX = 20_000  # characters: a snippet, not a report
TEMPLATE_SCHEMA_MAX = 200_000  # characters of the template's schema as JSON
TEMPLATE_LIST_MAX = 200  # body parts or procedure codes a template lists
CRITICAL_NOTES_MAX = 5_000  # characters of a critical communication's notes
REPORT_VALUES_MAX = 400_000  # characters of a report's values as JSON (each text: its template's)


def json_size_at_most(limit: int, what: str) -> Any:
    """A serializer validator: the value, as JSON, is at most ``limit`` characters."""

    def validate(value: Any) -> None:
        if len(json.dumps(value, ensure_ascii=False)) > limit:
            raise serializers.ValidationError(
                f"The {what} is too large (at most {limit:,} characters as JSON)."
            )

    return validate

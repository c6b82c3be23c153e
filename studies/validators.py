"""DICOM identifiers, validated before they are stored or used in a path."""

import re

from django.core.exceptions import ValidationError

# PS3.5 9.1: components of digits separated by dots, no leading zero in a
# multi-digit component, at most 64 characters.
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def is_valid_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and UID_RE.match(value) is not None


def validate_uid(value: str) -> None:
    if not is_valid_uid(value):
        raise ValidationError("A DICOM UID is digits and dots, at most 64 characters.", code="uid")

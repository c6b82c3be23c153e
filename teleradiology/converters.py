"""Ids taken from URLs and query strings, held to the range of the columns they name.

Every primary key in the project is a 64-bit integer (BigAutoField).  A larger
number can name nothing, so it must answer "not found" (in a path) or "bad
request" (in a query string), never reach the database: PostgreSQL refuses it
with an error and SQLite's driver with OverflowError, both a 500.
"""

from __future__ import annotations

from typing import Any

from django.urls import register_converter
from rest_framework.exceptions import ValidationError
from rest_framework.routers import DefaultRouter

MAX_ID = 2**63 - 1  # PostgreSQL bigint, SQLite integer


class IdConverter:
    """``<id:name>``: a positive whole number that fits a 64-bit primary key.

    Raising ValueError in ``to_python`` tells Django the pattern does not match,
    so a number past the range is a 404 like any other unknown id."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= MAX_ID:
            raise ValueError(value)
        return number

    def to_url(self, value: Any) -> str:
        return str(int(value))


register_converter(IdConverter, "id")


def parse_id(raw: str) -> int | None:
    """The id a query-string value names, or None when it cannot name a row.

    ``str.isdigit`` is not enough: it accepts digits such as "²" that ``int``
    refuses, and numbers of any length."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    number = int(raw)
    return number if 1 <= number <= MAX_ID else None


def query_id(raw: str, *, field: str, message: str = "An id (a positive whole number).") -> int:
    """``parse_id`` for a query parameter, as a 400 naming the parameter."""
    number = parse_id(raw)
    if number is None:
        raise ValidationError({field: [message]})
    return number


class IdRouter(DefaultRouter):
    """DRF's router with ``<id:pk>`` (or the viewset's own converter) for detail routes:
    a huge primary key answers 404 instead of reaching the database.  No ``.json``
    suffix routes: nothing uses them, and extra actions do not take their ``format``
    argument (a TypeError, 500)."""

    include_format_suffixes = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("use_regex_path", False)
        super().__init__(*args, **kwargs)
        self._default_value_pattern = "id"

"""The API's filter backend: django-filter, with numbers held to the 64-bit range.

A ``NumberFilter`` takes any decimal; one past the range of the column it filters
can match nothing and, depending on the lookup and the database, reaches it as an
error.  It is refused as a 400 naming the parameter instead, like any bad value.

A date-time filter's value is turned to UTC: an offset such as ``-21:02`` is valid
ISO 8601 (and Python) but beyond what PostgreSQL accepts in a ``timestamptz``
(found by schemathesis: a 500), and one that would leave the years 1-9999 in UTC
is a 400.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django_filters.rest_framework import DjangoFilterBackend

from teleradiology.converters import MAX_ID


class BoundedFilterBackend(DjangoFilterBackend):
    """``DjangoFilterBackend`` whose number filters refuse values past a bigint."""

    def get_filterset(self, request: Any, queryset: Any, view: Any) -> Any:
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            for field in filterset.form.fields.values():
                if isinstance(field, forms.DecimalField | forms.IntegerField):
                    field.validators.append(MaxValueValidator(MAX_ID))
                    field.validators.append(MinValueValidator(-MAX_ID - 1))
                elif isinstance(field, forms.DateTimeField):
                    field.to_python = _in_utc(field.to_python)  # type: ignore[method-assign,assignment]
        return filterset


def _in_utc(to_python: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        parsed = to_python(value)
        if not isinstance(parsed, dt.datetime) or parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(dt.UTC)
        except OverflowError:
            raise ValidationError(
                "Enter a date and time between the years 1 and 9999 in UTC.", code="invalid"
            ) from None

    return parse

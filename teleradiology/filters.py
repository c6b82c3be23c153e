"""The API's filter backend: django-filter, with numbers held to the 64-bit range.

A ``NumberFilter`` takes any decimal; one past the range of the column it filters
can match nothing and, depending on the lookup and the database, reaches it as an
error.  It is refused as a 400 naming the parameter instead, like any bad value.
"""

from __future__ import annotations

from typing import Any

from django import forms
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
        return filterset

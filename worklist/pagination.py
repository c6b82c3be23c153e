"""Keyset paging for the worklist: the next page starts after the last row seen,
so a page costs the same at any depth (no OFFSET) and rows do not shift under a
reader while studies are claimed."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from studies.models import Study
from teleradiology.converters import MAX_ID
from teleradiology.parsers import json_loads_bounded
from worklist.selectors import WORKLIST_ORDER

# The worklist order: the offer's aged-priority key (rank_at), priority, study id
# (unique on a worklist: a total order), as annotated by
# worklist.selectors.worklist_for_reader.
KEYS = WORKLIST_ORDER


def encode_cursor(study: Study) -> str:
    values = [
        study.wl_rank.isoformat(),  # type: ignore[attr-defined]
        study.wl_priority,  # type: ignore[attr-defined]
        study.pk,
    ]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        # Bounded: a cursor is the client's input, and deep JSON would recurse.
        rank, priority, pk = json_loads_bounded(base64.urlsafe_b64decode(padded))
        decoded = (dt.datetime.fromisoformat(rank), int(priority), int(pk))
        if decoded[0].tzinfo is None:
            raise ValueError("no time zone")  # the API gives out aware times only
        if not (abs(decoded[1]) <= MAX_ID and 1 <= decoded[2] <= MAX_ID):
            raise ValueError("out of range")  # would reach the database as an overflow
        return decoded
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise ValidationError({"cursor": "Not a cursor this API gave out."}) from exc


def after(cursor: str) -> RawSQL:
    """Rows strictly after the cursor in the worklist order, as one row-value
    comparison on the offer's sort keys: the database walks the worklist index
    from the cursor on instead of from its top.
    (The worklist query joins worklist_offer once, under its table name.)"""
    rank, priority, pk = decode_cursor(cursor)
    ops = connection.ops
    return RawSQL(
        '("worklist_offer"."rank_at", "worklist_offer"."priority", '
        '"worklist_offer"."study_id") > (%s, %s, %s)',
        (ops.adapt_datetimefield_value(rank), priority, pk),
        output_field=BooleanField(),
    )


class WorklistKeysetPagination(BasePagination):
    page_size = 50
    max_page_size = 200

    def paginate_queryset(  # type: ignore[override]
        self, queryset: QuerySet[Study], request: Request, view: Any = None
    ) -> list[Study]:
        self.request = request
        try:
            size = int(request.query_params.get("page_size", self.page_size))
        except ValueError as exc:
            raise ValidationError({"page_size": "A whole number."}) from exc
        self.size = max(1, min(size, self.max_page_size))
        cursor = request.query_params.get("cursor")
        if cursor:
            queryset = queryset.filter(after(cursor))
        rows = list(queryset.order_by(*KEYS)[: self.size + 1])
        self.has_next = len(rows) > self.size
        self.rows = rows[: self.size]
        return self.rows

    def get_paginated_response(self, data: Any) -> Response:
        next_url = None
        if self.has_next and self.rows:
            next_url = replace_query_param(
                self.request.build_absolute_uri(), "cursor", encode_cursor(self.rows[-1])
            )
        return Response({"next": next_url, "results": data})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

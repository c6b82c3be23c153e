"""Parameters for hand-written SQL that carries lists (ids, pairs of ids).

On PostgreSQL a list travels as one array parameter, so a statement's text, and
psycopg's parsing of it, do not grow with the list and the server can reuse its
plan; elsewhere (SQLite, the embedded default) as a list of placeholders."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection


def array_param(values: Iterable[Any], sql_type: str) -> Any:
    """A PostgreSQL array parameter for ``%s::<sql_type>[]``.  Integers (and NULL)
    go as one ``{1,2,NULL}`` literal: the driver would otherwise check every element
    for characters to quote."""
    if sql_type == "bigint":
        return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"
    return list(values)


def in_ids(column: str, ids: list[int]) -> tuple[str, list[Any]]:
    """``column IN (ids)`` and its parameters (``= ANY`` of one array on PostgreSQL)."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s::bigint[])", [array_param(ids, "bigint")]
    return f"{column} IN ({', '.join(['%s'] * len(ids))})", list(ids)


def literal_rows(types: tuple[str, ...], rows: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    """A relation of literal rows, one column per type, and its parameters: on
    PostgreSQL ``unnest`` of one array per column, elsewhere a VALUES list."""
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%s::{t}[]" for t in types)
        columns = [
            array_param(col, t) for col, t in zip(zip(*rows, strict=True), types, strict=True)
        ]
        return f"SELECT * FROM unnest({arrays})", columns  # noqa: S608 - type names only
    row = "(" + ", ".join(["%s"] * len(types)) + ")"
    return f"VALUES {', '.join([row] * len(rows))}", [v for r in rows for v in r]

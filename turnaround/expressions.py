"""SQL pieces the turnaround queries share, written once for PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

from django.db.models import Expression, FloatField, Func


class SecondsBetween(Func):
    """Seconds from ``start`` to ``end`` as a float; NULL when either is NULL.

    PostgreSQL: ``EXTRACT(EPOCH FROM end - start)``.  SQLite has no interval
    type, so it takes the difference of Julian days (a double, precise to
    about 20 microseconds at today's dates).
    """

    arity = 2
    output_field = FloatField()

    def __init__(self, start: Any, end: Any, **extra: Any) -> None:
        super().__init__(start, end, **extra)

    def _compiled(self, compiler: Any) -> tuple[str, str, tuple[Any, ...]]:
        start: Expression
        end: Expression
        start, end = self.get_source_expressions()
        start_sql, start_params = compiler.compile(start)
        end_sql, end_params = compiler.compile(end)
        return start_sql, end_sql, (*end_params, *start_params)

    def as_sql(  # type: ignore[override]
        self, compiler: Any, connection: Any, **extra_context: Any
    ) -> tuple[str, tuple[Any, ...]]:
        start_sql, end_sql, params = self._compiled(compiler)
        return f"CAST(EXTRACT(EPOCH FROM ({end_sql} - {start_sql})) AS DOUBLE PRECISION)", params

    def as_sqlite(
        self, compiler: Any, connection: Any, **extra_context: Any
    ) -> tuple[str, tuple[Any, ...]]:
        start_sql, end_sql, params = self._compiled(compiler)
        return f"((julianday({end_sql}) - julianday({start_sql})) * 86400.0)", params

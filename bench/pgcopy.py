"""Bulk loading with PostgreSQL ``COPY`` (text format) for the data generators:
rows are written to files first, then copied, so a million studies load in
seconds and a column the app adds later still gets its default."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def text_value(value: Any) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        value = json.dumps(value)
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class Table:
    """COPY into a model's table: the columns we give, in that order, then every other
    column with the model's default (so a column added to the app later still loads)."""

    def __init__(self, model: Any, given: Sequence[str]) -> None:
        from django.utils import timezone

        fields = {f.attname: f for f in model._meta.concrete_fields}
        missing = [name for name in given if name not in fields]
        if missing:
            raise RuntimeError(f"{model.__name__} has no field(s) {missing}")
        self.table = model._meta.db_table
        rest = [f for name, f in fields.items() if name not in given]
        self.columns = [fields[name].column for name in given] + [f.column for f in rest]
        defaults = []
        for f in rest:
            if f.primary_key:
                raise RuntimeError(f"give {model.__name__}'s primary key explicitly")
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                defaults.append(text_value(timezone.now()))
            else:
                defaults.append(text_value(f.get_default()))
        self.tail = "".join("\t" + d for d in defaults) + "\n"
        self.file: Any = None  # an open text file: where ``write`` puts rows
        self.rows = 0

    def sql(self) -> str:
        return f'COPY "{self.table}" ({", ".join(self.columns)}) FROM STDIN'

    def line(self, values: Sequence[str]) -> str:
        """One row (values in COPY text, the given columns' order) with its newline."""
        return "\t".join(values) + self.tail

    def write(self, values: Sequence[str]) -> None:
        """Append one row to ``file``."""
        self.file.write(self.line(values))
        self.rows += 1


def copy_file(conn: Any, table: Table, path: Path, chunk: int = 1 << 20) -> None:
    """COPY a file of ``table``'s rows into it."""
    with conn.cursor() as cur, cur.copy(table.sql()) as copy, path.open() as fh:
        while block := fh.read(chunk):
            copy.write(block)


class Stamp:
    """Epoch seconds -> timestamptz text, None -> NULL (cached: many rows share a second)."""

    def __init__(self) -> None:
        self.cache: dict[int, str] = {}

    def __call__(self, x: float | None) -> str:
        if x is None:
            return "\\N"
        key = int(x)
        hit = self.cache.get(key)
        if hit is None:
            if len(self.cache) > 200_000:
                self.cache.clear()
            hit = dt.datetime.fromtimestamp(key, dt.UTC).isoformat()
            self.cache[key] = hit
        return hit

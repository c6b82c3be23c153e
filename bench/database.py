"""The benchmarks' PostgreSQL databases: a fresh migrated database per run, or a
template migrated and seeded once and copied for every measurement; dropped at
the end unless ``--keep``.  Names are checked (they are spliced into SQL)."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from bench import REPO

SAFE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,40}")


def safe_name(name: str) -> bool:
    return SAFE_NAME.fullmatch(name) is not None


def manage(argv: Sequence[str], env: dict[str, str], *, timeout: float = 600) -> None:
    """Run ``manage.py`` with ``argv`` in the repository; its stderr's tail on failure."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(argv)} failed:\n{result.stderr[-3000:]}")


class Database:
    """One benchmark database (and its template) on a PostgreSQL server."""

    def __init__(self, base_url: str, name: str) -> None:
        if not safe_name(name):
            raise ValueError(f"unsafe database name {name!r}")
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.template = f"{name}_template"

    def url(self, name: str | None = None) -> str:
        return f"{self.base_url}/{name or self.name}"

    def admin(self, *statements: str) -> None:
        """Statements run on the server's ``postgres`` database (autocommit)."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # names checked in __init__

    def drop(self, name: str | None = None) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name or self.name}" WITH (FORCE)')

    def create_migrated(self, env: dict[str, str]) -> None:
        """Drop, create and migrate the database (``env`` names it as DATABASE_URL)."""
        self.drop()
        self.admin(f'CREATE DATABASE "{self.name}"')
        manage(["migrate", "--noinput"], env)

    def prepare_template(self, env: dict[str, str], commands: Sequence[Sequence[str]]) -> None:
        """Create the template and run each ``manage.py`` command against it once
        (migrate, seed, ...); measurements then copy it (``copy_template``)."""
        self.drop()
        self.drop(self.template)
        self.admin(f'CREATE DATABASE "{self.template}"')
        for argv in commands:
            manage(argv, {**env, "DATABASE_URL": self.url(self.template)})

    def copy_template(self) -> None:
        """A fresh database, copied from the template."""
        self.drop()
        self.admin(f'CREATE DATABASE "{self.name}" TEMPLATE "{self.template}"')

    def drop_all(self) -> None:
        """Drop the database and its template, whatever happened before."""
        for name in (self.name, self.template):
            with contextlib.suppress(Exception):
                self.drop(name)

    def connect(self, name: str | None = None, **options: Any) -> Any:
        """A psycopg connection to the database (or to ``name``), autocommit unless told."""
        import psycopg

        return psycopg.connect(self.url(name), **{"autocommit": True, **options})


def explain_analyze(query: Any, params: Sequence[Any] = ()) -> str:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of a queryset, or of SQL with its parameters, on
    this process's Django connection (so with the app's session settings)."""
    from django.db import connection

    if isinstance(query, str):
        sql = query
    else:
        sql, params = query.query.sql_with_params()
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return "\n".join(row[0] for row in cur.fetchall())

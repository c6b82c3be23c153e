"""Personas shared by every test: who is asking decides what they may see.

- group_admin administers reading group A (facilities A and B);
- other_admin administers reading group C (facility C);
- staff_a / staff_b are facility staff of facility A / B;
- licensed_reader is licensed in A's jurisdiction, privileged at A, on shift;
- unlicensed_reader is in group A with no license and no privilege.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from network.services import facility_staff_grant, reading_group_admin_grant
from tests import factories as f

pytest_plugins = ["tests.processes", "tests.ownership"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # Real hashing costs ~0.25 s a user; what is tested here is access, not hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _api_throttles_out_of_the_way(settings: Any) -> None:
    # Tests send many requests a second as one user and one address, and the counts
    # would carry over from test to test; tests/security/test_throttling.py sets
    # low rates of its own to prove the 429s.
    rest = dict(settings.REST_FRAMEWORK)
    rest["DEFAULT_THROTTLE_RATES"] = dict.fromkeys(rest["DEFAULT_THROTTLE_RATES"], "1000000/s")
    settings.REST_FRAMEWORK = rest


@pytest.fixture(autouse=True)
def _idle_logoff_off(settings: Any) -> None:
    # Tests travel in time (a session used at a fixed past instant, then again at the
    # real time would be months idle); tests/security/test_idle_logoff.py and the
    # browser test turn it on.
    settings.SESSION_IDLE_TIMEOUT = 0


@pytest.fixture(autouse=True)
def _celery_eager_unless_real_worker(request: Any) -> Any:
    """Tasks enqueued by services run inline, except in tests that run a real worker
    (there, tasks must travel through the broker)."""
    from teleradiology.celery import app

    eager = "worker" not in request.keywords
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = eager
    yield
    app.conf.task_always_eager = previous


@pytest.fixture(scope="session", autouse=True)
def _no_session_left_on_the_test_database(django_db_setup: Any, django_db_blocker: Any) -> Any:
    """At the end of the run, before the test database is dropped: end the sessions
    that live-server request threads left open (each thread keeps its connection for
    DB_CONN_MAX_AGE, and nothing closes another thread's), which PostgreSQL would
    otherwise name in "database is being accessed by other users"."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(autouse=True)
def _filing_caches_cleared() -> Any:
    """The gateway caches study and series rows by UID, trusting that rows are never
    deleted; a test's rollback deletes them, so each test starts with empty caches."""
    from ingest.services import filing_caches_clear

    filing_caches_clear()
    yield
    filing_caches_clear()


@pytest.fixture
def group_a(db: Any) -> Any:
    return f.ReadingGroupFactory(name="Group A")


@pytest.fixture
def group_c(db: Any) -> Any:
    return f.ReadingGroupFactory(name="Group C")


@pytest.fixture
def facility_a(group_a: Any) -> Any:
    return f.FacilityFactory(name="Facility A", reading_group=group_a, ae_titles=["FAC_A"])


@pytest.fixture
def facility_b(group_a: Any) -> Any:
    return f.FacilityFactory(
        name="Facility B",
        reading_group=group_a,
        ae_titles=["FAC_B"],
        jurisdiction=f.JurisdictionFactory(code="US-NY"),
    )


@pytest.fixture
def facility_c(group_c: Any) -> Any:
    return f.FacilityFactory(name="Facility C", reading_group=group_c, ae_titles=["FAC_C"])


@pytest.fixture
def group_admin(group_a: Any) -> Any:
    user = f.UserFactory(username="admin_a")
    reading_group_admin_grant(actor=None, user=user, group=group_a)
    return user


@pytest.fixture
def other_admin(group_c: Any) -> Any:
    user = f.UserFactory(username="admin_c")
    reading_group_admin_grant(actor=None, user=user, group=group_c)
    return user


@pytest.fixture
def staff_a(facility_a: Any) -> Any:
    user = f.UserFactory(username="staff_a")
    facility_staff_grant(actor=None, user=user, facility=facility_a)
    return user


@pytest.fixture
def staff_b(facility_b: Any) -> Any:
    user = f.UserFactory(username="staff_b")
    facility_staff_grant(actor=None, user=user, facility=facility_b)
    return user


@pytest.fixture
def licensed_reader(group_a: Any, facility_a: Any) -> Any:
    reader = f.RadiologistFactory(
        user=f.UserFactory(username="dr_licensed"), reading_group=group_a, subspecialties=["neuro"]
    )
    f.LicenseFactory(radiologist=reader, jurisdiction=facility_a.jurisdiction)
    f.PrivilegeFactory(radiologist=reader, facility=facility_a)
    f.ShiftFactory(radiologist=reader)
    return reader


@pytest.fixture
def unlicensed_reader(group_a: Any) -> Any:
    return f.RadiologistFactory(user=f.UserFactory(username="dr_unlicensed"), reading_group=group_a)


@pytest.fixture
def api() -> Callable[[Any], APIClient]:
    """An API client signed in as the given user (None: anonymous)."""

    def make(user: Any) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user=user)
        return client

    return make


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Tests marked ``flushes_database`` run last, after pytest-django's own order
    (which puts transactional tests after the others): they empty the database,
    data migrations' rows included, which a later test in a transaction would miss.

    Row-lock races and database triggers are PostgreSQL behaviour: CI runs them
    against PostgreSQL; the embedded SQLite profile reports them as skipped."""
    import os

    items.sort(key=lambda item: "flushes_database" in item.keywords)  # stable

    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    if os.environ.get("EXPECT_POSTGRES"):
        # CI's PostgreSQL run must never quietly fall back to SQLite.
        raise pytest.UsageError("EXPECT_POSTGRES is set but the database is not PostgreSQL")
    skip = pytest.mark.skip(reason="needs PostgreSQL (DATABASE_URL=postgres://...)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)

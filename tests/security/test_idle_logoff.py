"""Idle logoff of page sessions: ended after SESSION_IDLE_TIMEOUT seconds without a
request of the user's own; the pages' polling does not count, "stay signed in" does;
an htmx request of an ended session sends its page to the sign-in page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

START = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
MINUTE = 60.0
BACKGROUND: dict[str, Any] = {"HTTP_X_BACKGROUND": "1", "HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _idle_logoff_as_configured(settings: Any) -> None:
    """The configured defaults (the suite turns idle logoff off elsewhere)."""
    from teleradiology import settings as configured

    settings.SESSION_IDLE_TIMEOUT = configured.SESSION_IDLE_TIMEOUT
    settings.SESSION_IDLE_WARNING = configured.SESSION_IDLE_WARNING


@pytest.fixture
def clock() -> Any:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def reader_page(licensed_reader: Any, clock: Any) -> Client:
    """A reader signed in at START, with the worklist page open."""
    client = Client()
    client.force_login(licensed_reader.user)
    assert client.get("/worklist/").status_code == 200
    return client


def signed_out(response: Any) -> bool:
    return bool(response.status_code == 302 and response["Location"].startswith("/login/"))


def test_the_default_is_fifteen_minutes() -> None:
    from teleradiology import settings as configured

    assert configured.SESSION_IDLE_TIMEOUT == 15 * 60
    assert configured.SESSION_IDLE_WARNING == 2 * 60


def test_an_idle_session_ends(reader_page: Client, clock: Any) -> None:
    clock.shift(14 * MINUTE)
    assert reader_page.get("/worklist/").status_code == 200  # activity: clock restarts
    clock.shift(15 * MINUTE + 1)
    response = reader_page.get("/worklist/")
    assert signed_out(response)
    assert "_auth_user_id" not in reader_page.session
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert messages == ["You were signed out after 15 min without activity."]
    # Signed out for good: the next page asks for a sign-in too.
    assert signed_out(reader_page.get("/cases/"))


def test_polling_does_not_keep_a_session_alive(reader_page: Client, clock: Any) -> None:
    for _ in range(14):
        clock.shift(MINUTE)
        poll = reader_page.get("/worklist/rows/", **BACKGROUND)
        assert poll.status_code == 200
        assert b"<tbody" in poll.content
    clock.shift(MINUTE + 1)
    poll = reader_page.get(
        "/worklist/rows/", HTTP_HX_CURRENT_URL="http://testserver/worklist/?x=1", **BACKGROUND
    )
    # The page goes to the sign-in page, rather than the form being swapped into its table.
    assert poll.status_code == 200
    assert poll["HX-Redirect"] == "/login/?next=%2Fworklist%2F%3Fx%3D1"
    assert poll.content == b""
    assert "_auth_user_id" not in reader_page.session


def test_a_request_of_the_users_own_via_htmx_counts(reader_page: Client, clock: Any) -> None:
    clock.shift(10 * MINUTE)
    assert reader_page.get("/worklist/rows/", HTTP_HX_REQUEST="true").status_code == 200
    clock.shift(10 * MINUTE)
    assert reader_page.get("/worklist/").status_code == 200


def test_stay_signed_in_restarts_the_clock(reader_page: Client, clock: Any) -> None:
    clock.shift(13 * MINUTE)
    status = reader_page.get("/session/keep-alive/", HTTP_X_BACKGROUND="1").json()
    assert status == {"signed_in": True, "remaining": 120.0, "login_url": "/login/"}
    stay = reader_page.post("/session/keep-alive/").json()
    assert stay["signed_in"] is True
    assert stay["remaining"] == 15 * MINUTE
    clock.shift(14 * MINUTE)
    assert reader_page.get("/worklist/").status_code == 200


def test_the_clock_reports_an_ended_session(reader_page: Client, clock: Any) -> None:
    clock.shift(16 * MINUTE)
    status = reader_page.get("/session/keep-alive/", HTTP_X_BACKGROUND="1").json()
    assert status == {"signed_in": False, "remaining": 0, "login_url": "/login/"}


def test_the_page_carries_the_clock_for_its_script(reader_page: Client, settings: Any) -> None:
    settings.SESSION_IDLE_WARNING = 90
    html = reader_page.get("/worklist/").content.decode()
    assert (
        '<meta name="idle-logoff" content="900" data-warning="90" '
        'data-keepalive="/session/keep-alive/" data-login="/login/">'
    ) in html
    assert "idle-logoff.js" in html
    assert "data-background" in html  # the polling table is marked


def test_zero_turns_idle_logoff_off(reader_page: Client, clock: Any, settings: Any) -> None:
    settings.SESSION_IDLE_TIMEOUT = 0
    clock.shift(60 * MINUTE)
    response = reader_page.get("/worklist/")
    assert response.status_code == 200
    assert 'name="idle-logoff"' not in response.content.decode()


def test_api_calls_without_a_session_are_not_affected(licensed_reader: Any, clock: Any) -> None:
    client = APIClient()
    client.force_authenticate(user=licensed_reader.user)
    assert client.get("/api/v1/worklist/").status_code == 200
    clock.shift(60 * MINUTE)
    assert client.get("/api/v1/worklist/").status_code == 200


def test_the_absolute_lifetime_stays(settings: Any) -> None:
    # Idle logoff comes on top of the session's absolute lifetime, not instead of it.
    assert settings.SESSION_COOKIE_AGE >= settings.SESSION_IDLE_TIMEOUT

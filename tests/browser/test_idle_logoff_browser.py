"""Idle logoff in a real browser: the warning before the end, "Stay signed in", and
the move to the sign-in page when the time is up, while the worklist keeps polling."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests import factories as f
from tests.routing.conftest import make_reader

pytestmark = pytest.mark.browser

PASSWORD = "pw-for-tests-1"


@pytest.fixture
def reader(transactional_db: Any, settings: Any) -> Any:
    # Short clocks: signed out after 8 s without activity, warned 4 s before.
    settings.SESSION_IDLE_TIMEOUT = 8
    settings.SESSION_IDLE_WARNING = 4
    group = f.ReadingGroupFactory(name="Idle group")
    region = f.RegionFactory(code="us-tx-north")
    facility = f.FacilityFactory(reading_group=group, region=region, ae_titles=["IDLE"])
    return make_reader(group, facility, name="dr_idle", region=region)


def test_the_warning_stay_signed_in_and_the_logoff(browser: Any, live_server: Any, reader: Any):
    base = live_server.url
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "dr_idle")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/worklist/")
    polls: list[str] = []
    page.on(
        "request",
        lambda r: (
            polls.append(r.headers.get("x-background", "")) if "/worklist/rows/" in r.url else None
        ),
    )

    warning = page.locator("dialog#idle-warning")
    warning.wait_for(state="visible", timeout=10_000)
    assert "signed out in" in warning.inner_text()
    page.get_by_role("button", name="Stay signed in").click()
    warning.wait_for(state="hidden", timeout=3_000)
    assert page.url == f"{base}/worklist/"

    # No more activity: warned again, then sent to the sign-in page (the worklist's
    # polling, every 3 s, does not keep the session alive).
    warning.wait_for(state="visible", timeout=10_000)
    page.wait_for_url(re.compile(r"/login/\?next="), timeout=15_000)
    assert page.url.endswith("/login/?next=%2Fworklist%2F")
    assert polls and set(polls) == {"1"}
    # The server ended the session: the worklist asks for a sign-in.
    page.goto(f"{base}/worklist/")
    assert "/login/" in page.url
    context.close()

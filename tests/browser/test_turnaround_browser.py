"""The facility portal and the operations page in a real browser: a filter swaps the
charts and the table; a study that becomes at risk appears without a reload."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from network.services import facility_staff_grant, reading_group_admin_grant
from routing.models import StudyRouting
from tests import factories as f
from tests.turnaround.conftest import scripted_study

pytestmark = pytest.mark.browser

PASSWORD = "pw-for-tests-1"


def _sign_in(context, base, username, lands_on):
    page = context.new_page()
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{lands_on}")
    return page


@pytest.fixture
def site(transactional_db):
    group = f.ReadingGroupFactory(name="Browser group")
    facility = f.FacilityFactory(name="Browser Imaging", reading_group=group, ae_titles=["BRT"])
    reader = f.RadiologistFactory(user=f.UserFactory(username="dr_browser"), reading_group=group)
    staff = f.UserFactory(username="staff_browser")
    staff.set_password(PASSWORD)
    staff.save()
    facility_staff_grant(actor=None, user=staff, facility=facility)
    admin = f.UserFactory(username="admin_browser")
    admin.set_password(PASSWORD)
    admin.save()
    reading_group_admin_grant(actor=None, user=admin, group=group)
    return {"facility": facility, "reader": reader, "staff": staff, "admin": admin}


def test_portal_priority_filter_changes_chart_and_table(browser, live_server, site):
    facility, reader = site["facility"], site["reader"]
    yesterday = timezone.now() - dt.timedelta(days=1)
    # Two STAT (one late: target 30 min) and one routine, finalised yesterday.
    for final, priority in ((20, 1), (50, 1), (90, 3)):
        scripted_study(
            facility,
            reader=reader,
            received_at=yesterday,
            ready=1,
            claimed=3,
            final=final,
            priority=priority,
        )
    context = browser.new_context()
    try:
        page = _sign_in(context, live_server.url, "staff_browser", "/portal/")
        table = "#turnaround-table"
        assert page.locator(f'{table} tr[data-key="1"]').count() == 1
        assert page.locator(f'{table} tr[data-key="3"]').count() == 1
        bars = page.locator("#chart-compliance svg")
        assert bars.get_attribute("data-bars") == "2"
        assert "50%" in page.inner_text(f'{table} tr[data-key="1"]')

        page.select_option("select[name=priority]", "3")
        # htmx swaps the panel: STAT leaves the table and its bar leaves the chart.
        page.wait_for_selector(f'{table} tr[data-key="1"]', state="detached")
        assert page.locator(f'{table} tr[data-key="3"]').count() == 1
        assert page.locator("#chart-compliance svg").get_attribute("data-bars") == "1"
        assert "priority=3" in page.url
        assert "priority=3" in page.get_attribute("#csv-export", "href")

        page.select_option("select[name=group_by]", "day")
        page.wait_for_selector("h2:has-text('Turnaround by day')")
        day = page.locator(f"{table} tbody tr[data-key]")
        assert day.count() == 1 and day.first.get_attribute("data-key").startswith("20")
    finally:
        context.close()


def test_operations_page_shows_a_study_becoming_at_risk(browser, live_server, site, settings):
    settings.OPERATIONS_REFRESH_SECONDS = 1
    facility = site["facility"]
    context = browser.new_context()
    try:
        page = _sign_in(context, live_server.url, "admin_browser", "/operations/")
        assert "No unclaimed study has used" in page.inner_text("#at-risk")
        # A STAT study on offer for 20 of its 30 minutes: at risk (past 50%).
        study = scripted_study(
            facility, received_at=timezone.now() - dt.timedelta(minutes=20), ready=1
        )
        StudyRouting.objects.create(study=study, tier=1, decided_at=timezone.now())
        row = f'#at-risk tr[data-study="{study.pk}"]'
        page.wait_for_selector(row, timeout=10_000)
        assert "STAT" in page.inner_text(row)
        assert "67%" in page.inner_text(row)
        # The queue counts it at the regional tier, and the page was never reloaded.
        regional = page.inner_text('table.queue tr[data-tier="1"]')
        assert regional.split()[1] == "1"
    finally:
        context.close()

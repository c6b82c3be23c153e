"""The operations page acts, in real browsers: an admin reassigns a study on offer to
one reader while another reader, to whom it was offered, watches it leave their
worklist without a reload; the target finds it in their cases."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from network.services import reading_group_admin_grant
from routing.models import RoutingRule
from routing.services import study_route
from studies.models import Study
from studies.services import study_transition
from tests import factories as f
from tests.routing.conftest import make_reader

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


def _click_between_refreshes(page, selector):
    """Click an element of the polled panel, which is replaced every few seconds: on a
    loaded machine one try can meet a row being swapped, so try again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(5):
        try:
            page.click(selector, timeout=4000)
            return
        except PlaywrightTimeout:
            continue
    page.click(selector, timeout=4000)


@pytest.fixture
def network(transactional_db):
    group = f.ReadingGroupFactory(name="Browser group")
    region = f.RegionFactory(code="us-tx-north")
    facility = f.FacilityFactory(
        name="Browser Imaging", reading_group=group, region=region, ae_titles=["BRO"]
    )
    now = timezone.now()
    readers = {}
    for name in ("dr_amy", "dr_ben"):
        reader = make_reader(group, facility, name=name, region=region)
        reader.shifts.update(
            starts_at=now - dt.timedelta(hours=1), ends_at=now + dt.timedelta(hours=3)
        )
        readers[name] = reader
    rule = RoutingRule.objects.create(reading_group=group, name="All", is_default=True)
    rule.subspecialties.set([f.subspecialty("neuro")])
    admin = f.UserFactory(username="admin_ops")
    reading_group_admin_grant(actor=None, user=admin, group=group)
    # A STAT study 20 of its 30 minutes old, offered to both readers: at risk.
    study = f.StudyFactory(
        facility=facility,
        priority=1,
        modality="CT",
        body_part="HEAD",
        study_description="CT HEAD STROKE",
        received_at=now - dt.timedelta(minutes=20),
    )
    study_transition(study_id=study.pk, to_status="ready")
    study_route(study_id=study.pk)
    study = Study.objects.get(pk=study.pk)
    assert study.status == "offered"
    return {"readers": readers, "admin": admin, "study": study}


def test_admin_reassigns_from_the_operations_page_and_the_worklists_follow(
    browser, live_server, network
):
    study, amy, ben = network["study"], network["readers"]["dr_amy"], network["readers"]["dr_ben"]
    base = live_server.url
    admin_context, amy_context, ben_context = (browser.new_context() for _ in range(3))
    try:
        amy_page = _sign_in(amy_context, base, amy.user.username, "/worklist/")
        amy_row = f'tr[data-study="{study.pk}"]'
        amy_page.wait_for_selector(amy_row)
        ops = _sign_in(admin_context, base, "admin_ops", "/operations/")
        at_risk = f'#at-risk tr[data-study="{study.pk}"]'
        ops.wait_for_selector(at_risk)

        # The chooser: both readers may take it (on shift, licensed, privileged).
        _click_between_refreshes(ops, f"{at_risk} button.reassign")
        chooser = f'#reassign-chooser[data-study="{study.pk}"]'
        ops.wait_for_selector(chooser)
        target = f'#reassign-readers tr[data-reader="{ben.pk}"] button.reassign-to'
        assert ops.is_enabled(target)
        assert ops.locator(f'#reassign-readers tr[data-reader="{amy.pk}"].eligible').count() == 1

        clicked = time.monotonic()
        ops.click(target)
        ops.wait_for_selector("#operations-result[role=status]")
        assert f"reassigned to {ben.display_name}" in ops.inner_text("#operations-result")
        # Amy's worklist (polled every 3 s) loses the row without a reload.
        amy_page.wait_for_selector(amy_row, state="detached", timeout=10_000)
        seconds = time.monotonic() - clicked
        # The admin's own panel refreshed at once (the operations-changed event): the
        # study, claimed now, is no longer at risk, and the chooser closed.
        ops.wait_for_selector(at_risk, state="detached", timeout=3_000)
        assert ops.locator(chooser).count() == 0

        study.refresh_from_db()
        assert (study.status, study.assigned_radiologist_id) == ("claimed", ben.pk)
        ben_page = _sign_in(ben_context, base, ben.user.username, "/worklist/")
        ben_page.goto(f"{base}/cases/")
        assert "CT HEAD" in ben_page.inner_text("main table")
        print(f"reassign -> former offeree's worklist updated in {seconds:.1f} s")
        assert seconds < 10
    finally:
        for context in (admin_context, amy_context, ben_context):
            context.close()


def test_admin_sees_why_a_reader_cannot_take_it_and_pauses_a_reader(browser, live_server, network):
    study, amy = network["study"], network["readers"]["dr_amy"]
    # Amy's license lapses: she stays in the chooser, disabled, with the reason.
    amy.licenses.update(valid_to=dt.date(2020, 1, 1), valid_from=dt.date(2019, 1, 1))
    base = live_server.url
    context = browser.new_context()
    try:
        ops = _sign_in(context, base, "admin_ops", "/operations/")
        at_risk = f'#at-risk tr[data-study="{study.pk}"]'
        ops.wait_for_selector(at_risk)
        _click_between_refreshes(ops, f"{at_risk} button.reassign")
        amy_row = f'#reassign-readers tr[data-reader="{amy.pk}"]'
        ops.wait_for_selector(amy_row)
        assert not ops.is_enabled(f"{amy_row} button")
        assert "license in the jurisdiction expired" in ops.inner_text(f"{amy_row} .why-not")

        # Pause her from the readers' table: the form loads beside the panel.
        _click_between_refreshes(ops, f'#load tr[data-reader="{amy.pk}"] button.pause')
        ops.wait_for_selector(f'#pause-reader[data-reader="{amy.pk}"]')
        ops.fill("#pause-reader input[name=reason]", "meeting")
        ops.fill("#pause-reader input[name=minutes]", "20")
        ops.click("#pause-reader button[type=submit]")
        ops.wait_for_selector("#operations-result[role=status]")
        ops.wait_for_selector(f'#load tr[data-reader="{amy.pk}"] button.resume', timeout=3_000)
        assert "meeting" in ops.inner_text(f'#load tr[data-reader="{amy.pk}"]')
        amy.refresh_from_db()
        assert not amy.is_available and amy.pause_reason == "meeting"
    finally:
        context.close()

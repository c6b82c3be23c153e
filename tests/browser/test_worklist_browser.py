"""Two radiologists in two browsers race for the same STAT case."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from routing.models import RoutingRule
from routing.services import study_route
from studies.models import Study
from studies.services import study_transition
from tests import factories as f
from tests.routing.conftest import make_reader

pytestmark = pytest.mark.browser

PASSWORD = "pw-for-tests-1"


def _sign_in(context, base, username):
    page = context.new_page()
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/worklist/")
    return page


@pytest.fixture
def network(transactional_db):
    group = f.ReadingGroupFactory(name="Browser group")
    region = f.RegionFactory(code="us-tx-north")
    facility = f.FacilityFactory(reading_group=group, region=region, ae_titles=["BRW"])
    now = timezone.now()
    readers = []
    for name in ("dr_amy", "dr_ben"):
        reader = make_reader(group, facility, name=name, region=region)
        reader.shifts.update(
            starts_at=now - dt.timedelta(hours=1), ends_at=now + dt.timedelta(hours=3)
        )
        readers.append(reader)
    rule = RoutingRule.objects.create(reading_group=group, name="All", is_default=True)
    rule.subspecialties.set([f.subspecialty("neuro")])

    def offered_study(priority=1):
        study = f.StudyFactory(
            facility=facility,
            priority=priority,
            modality="CT",
            body_part="HEAD",
            study_description="CT HEAD STROKE",
        )
        study_transition(study_id=study.pk, to_status="ready")
        study_route(study_id=study.pk)
        return Study.objects.get(pk=study.pk)

    return readers, offered_study


def test_both_click_claim_one_wins_the_other_sees_it_vanish(browser, live_server, network):
    readers, offered_study = network
    study = offered_study()
    assert study.status == "offered"
    contexts = [browser.new_context(), browser.new_context()]
    try:
        pages = [
            _sign_in(c, live_server.url, r.user.username)
            for c, r in zip(contexts, readers, strict=True)
        ]
        row = f'tr[data-study="{study.pk}"]'
        for page in pages:
            page.wait_for_selector(row)
            assert "STAT" in page.inner_text(row)

        # Both click (Playwright's sync pages belong to this thread: back to back,
        # without waiting, so both requests are in flight together).
        for page in pages:
            page.click(f"{row} button.claim", no_wait_after=True)
        results = []
        for page in pages:
            try:
                page.wait_for_url(f"{live_server.url}/studies/{study.pk}/", timeout=5000)
                results.append("won")
            except Exception:
                results.append("lost")
        assert sorted(results) == ["lost", "won"]
        loser = pages[results.index("lost")]
        loser.wait_for_selector("[role=alert]")
        assert "already been claimed" in loser.inner_text("[role=alert]")
        assert loser.locator(row).count() == 0
        winner = pages[results.index("won")]
        assert "CT HEAD" in winner.inner_text("#study-title")
        holder = Study.objects.get(pk=study.pk).assigned_radiologist
        assert holder == readers[results.index("won")]
    finally:
        for c in contexts:
            c.close()


def test_next_case_opens_the_study_page(browser, live_server, network):
    readers, offered_study = network
    urgent = offered_study(priority=2)
    stat = offered_study(priority=1)
    context = browser.new_context()
    try:
        page = _sign_in(context, live_server.url, readers[0].user.username)
        page.wait_for_selector(f'tr[data-study="{urgent.pk}"]')
        page.keyboard.press("n")  # the keyboard shortcut for "Next case"
        page.wait_for_url(f"{live_server.url}/studies/{stat.pk}/")
        assert Study.objects.get(pk=stat.pk).assigned_radiologist == readers[0]
    finally:
        context.close()


def _click_between_refreshes(page, selector):
    """Click an element of the worklist's rows, which are replaced every 3 s: on a
    loaded machine one try can keep meeting a fresh row, so try again in the next
    window between two refreshes."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(5):
        try:
            page.click(selector, timeout=4000)
            return
        except PlaywrightTimeout:
            continue
    page.click(selector, timeout=4000)


def test_open_images_from_the_worklist_in_one_viewer_window(browser, live_server, network):
    readers, offered_study = network
    stat = offered_study(priority=1)
    urgent = offered_study(priority=2)

    def viewer(study):
        return f"{live_server.url}/viewer/?StudyInstanceUIDs={study.study_instance_uid}"

    context = browser.new_context()
    try:
        page = _sign_in(context, live_server.url, readers[0].user.username)
        page.wait_for_selector(f'tr[data-study="{urgent.pk}"]')
        link = f"#open-images-{stat.pk}"
        assert page.get_attribute(link, "target") == "telerad-viewer"
        assert page.get_attribute(link, "href") == viewer(stat).removeprefix(live_server.url)
        assert "(i)" in page.get_attribute(link, "title")

        # i with no row focused: the top row's images, in the named viewer window.
        with page.expect_popup() as opened:
            page.keyboard.press("i")
        popup = opened.value
        popup.wait_for_load_state()
        assert popup.url.startswith(f"{live_server.url}/viewer/")
        assert popup.url.endswith(f"?StudyInstanceUIDs={stat.study_instance_uid}")
        assert popup.evaluate("window.name") == "telerad-viewer"

        # The focused row's images replace them in the same window, by key or by click.
        page.focus(f"#open-images-{urgent.pk}")
        with popup.expect_request(viewer(urgent)):
            page.keyboard.press("i")
        with popup.expect_request(viewer(stat)):
            _click_between_refreshes(page, link)
        assert len(context.pages) == 2
        # Opening images claims nothing.
        assert Study.objects.get(pk=stat.pk).status == "offered"
    finally:
        context.close()

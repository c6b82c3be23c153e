"""The rule simulator in a real browser, under the site's Content-Security-Policy: an
admin signs in with a second factor, copies the live rules into a draft, keeps the
default rule within the hyperlocal tier, replays the last 7 days, reads the
comparison (more studies unroutable than live), and publishes the draft; a replay
still under way shows its progress and turns into the comparison by itself."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from network.history import reader_versions_record
from network.services import reading_group_admin_grant
from routing.models import RoutingRule
from routing.services import study_route
from simulation.models import RoutingDraft, SimulationRun
from simulation.selectors import live_rules_as_draft
from simulation.services import run_execute
from studies.services import study_transition
from studies.states import StudyStatus
from tests import factories as f
from tests.accounts.conftest import code_for
from tests.routing.conftest import make_reader

pytestmark = pytest.mark.browser

PASSWORD = "pw-for-tests-1"
STUDIES = 12


@pytest.fixture
def site(transactional_db):
    """A group whose local reader works the first half of the last week only, and a
    reader abroad (the global tier) all week; 12 CT heads over the week, each routed
    live at its arrival.  The admin has an authenticator app."""
    now = timezone.now()
    start = now - dt.timedelta(days=6)
    group = f.ReadingGroupFactory(name="Simulated group")
    local = f.RegionFactory(code="us-tx-north", name="North Texas", country="US")
    abroad = f.RegionFactory(code="in-south", name="South India", country="IN")
    facility = f.FacilityFactory(
        name="Sim Imaging", reading_group=group, region=local, ae_titles=["SIM"]
    )
    near = make_reader(group, facility, name="dr_near", region=local, on_shift=False)
    far = make_reader(group, facility, name="dr_far", region=abroad, on_shift=False)
    f.ShiftFactory(
        radiologist=near,
        starts_at=start - dt.timedelta(days=1),
        ends_at=start + dt.timedelta(days=3),
    )
    f.ShiftFactory(
        radiologist=far, starts_at=start - dt.timedelta(days=1), ends_at=now + dt.timedelta(days=1)
    )
    rule = RoutingRule.objects.create(reading_group=group, name="Every study", is_default=True)
    rule.subspecialties.set([f.subspecialty("neuro")])
    reader_versions_record(radiologist_ids=[near.pk, far.pk], at=start - dt.timedelta(days=1))
    for n in range(STUDIES):
        at = start + dt.timedelta(hours=11 * n + 1)
        with time_machine.travel(at, tick=False):
            study = f.StudyFactory(
                facility=facility,
                modality="CT",
                body_part="HEAD",
                priority=2,
                received_at=at - dt.timedelta(minutes=2),
            )
            study_transition(study_id=study.pk, to_status=StudyStatus.READY, at=at)
            study_route(study_id=study.pk, now=at)
    admin = f.UserFactory(username="admin_sim")
    reading_group_admin_grant(actor=None, user=admin, group=group)
    device = TOTPDevice.objects.create(user=admin, name="phone", confirmed=True)
    return {"group": group, "rule": rule, "admin": admin, "device": device}


def _sign_in_with_second_factor(context, base, site):
    page = context.new_page()
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "admin_sim")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/account/verify/.*"))
    page.fill("input[name=otp_token]", code_for(site["device"]))
    page.click("button[type=submit]:has-text('Verify')")
    page.wait_for_url(lambda url: "/account/verify/" not in url and "/login/" not in url)
    return page


def test_an_admin_drafts_replays_reads_and_publishes(browser, live_server, site):
    base = live_server.url
    context = browser.new_context()
    try:
        page = _sign_in_with_second_factor(context, base, site)
        page.click("header nav a:has-text('Rule simulator')")
        page.wait_for_url(f"{base}/routing/simulations/")

        page.fill("#new-draft input[name=name]", "Keep it local")
        page.click("#new-draft button[type=submit]")
        page.wait_for_url(re.compile(r".*/routing/simulations/drafts/\d+/$"))
        draft = RoutingDraft.objects.get(name="Keep it local")
        assert page.inner_text("#rules td.widest-tier") == "Global"
        assert page.locator("#diff-none").count() == 1

        # Keep the default rule within the hyperlocal tier.
        page.click("#rule-0 summary")
        page.select_option("#rule-0 select[name=widest_tier]", label="Hyperlocal")
        page.click("#rule-0 button:has-text('Save this rule')")
        page.wait_for_selector("#diff-list")
        assert page.inner_text("#rules td.widest-tier") == "Hyperlocal"
        change = page.locator('#diff-list tr[data-field="widest_tier"]')
        assert change.locator("td.before").inner_text() == "Global"
        assert change.locator("td.after").inner_text() == "Hyperlocal"

        # Replay the last 7 days (the task runs inline, as Celery work does in the
        # browser tests): the page follows the run to its comparison.
        page.click("#replay-days button[value='7']")
        page.wait_for_url(re.compile(r".*/routing/simulations/runs/\d+/$"))
        page.wait_for_selector('#run-body[data-status="done"]', timeout=30_000)
        run = SimulationRun.objects.get(draft=draft)
        assert run.status == "done" and run.result["studies"] == STUDIES
        assert f"Done: {STUDIES} studies replayed" in page.inner_text("#run-summary")
        for chart in ("first-offer", "time-to-offer", "sla-missed", "reader-work"):
            assert page.locator(f'[data-chart="{chart}"] svg').count() == 1, chart
        # Nobody near in the second half of the week: the draft leaves those
        # studies unroutable where the live rules went abroad.
        unroutable = page.locator('#figures tr[data-figure="unroutable-count"] td')
        live_count, draft_count = (int(unroutable.nth(i).inner_text()) for i in (0, 1))
        assert draft_count > live_count
        arms = run.result["arms"]
        assert (live_count, draft_count) == (
            arms["live"]["unroutable"]["count"],
            arms["draft"]["unroutable"]["count"],
        )
        assert int(page.inner_text("#elsewhere-count")) == run.result["elsewhere"]["count"] > 0
        assert page.locator("#elsewhere article.sample").count() >= 1
        assert "offered to" in page.inner_text("#elsewhere article.sample >> nth=0")

        # Publish: the confirmation shows the change, then the live rule has it.
        page.click("a:has-text('Publish the draft')")
        page.wait_for_url(f"{base}/routing/simulations/drafts/{draft.pk}/publish/")
        assert "Hyperlocal" in page.inner_text("#diff-list")
        page.click("#publish-form button[type=submit]")
        page.wait_for_url(f"{base}/routing/simulations/")
        assert "Keep it local published" in page.inner_text("#messages")
        site["rule"].refresh_from_db()
        assert site["rule"].widest_tier == 0
    finally:
        context.close()


def test_a_replay_under_way_shows_its_progress_until_done(browser, live_server, site):
    now = timezone.now()
    draft = RoutingDraft.objects.create(
        reading_group=site["group"],
        name="Same",
        rules=live_rules_as_draft(reading_group_id=site["group"].pk),
    )
    run = SimulationRun.objects.create(
        draft=draft,
        reading_group=site["group"],
        window_start=now - dt.timedelta(days=7),
        window_end=now,
    )
    context = browser.new_context()
    try:
        page = _sign_in_with_second_factor(context, live_server.url, site)
        page.goto(f"{live_server.url}/routing/simulations/runs/{run.pk}/")
        page.wait_for_selector('#run-body[data-status="queued"] progress#run-progress-bar')
        # The worker's part, here: the page polls every 2 s and turns into the result.
        run_execute(run_id=run.pk)
        page.wait_for_selector('#run-body[data-status="done"]', timeout=10_000)
        assert page.locator("progress").count() == 0
        assert f"{STUDIES} studies replayed" in page.inner_text("#run-summary")
    finally:
        context.close()

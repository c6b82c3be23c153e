"""A reader's worklist in a real browser shows the order of each study: the reason for
exam (truncated, whole on hover) and an ED badge; the study page shows the order.
The order is made as a fixture (the HL7 path that files it is tested in tests/orders)."""

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
REASON = (
    "Fall from a ladder with head strike and brief loss of consciousness; on warfarin, "
    "exclude intracranial haemorrhage"
)


@pytest.fixture
def world(transactional_db):
    group = f.ReadingGroupFactory(name="Orders browser group")
    region = f.RegionFactory(code="us-tx-north")
    facility = f.FacilityFactory(reading_group=group, region=region, ae_titles=["ORDB"])
    now = timezone.now()
    reader = make_reader(group, facility, name="dr_orders", region=region)
    reader.shifts.update(starts_at=now - dt.timedelta(hours=1), ends_at=now + dt.timedelta(hours=3))
    rule = RoutingRule.objects.create(reading_group=group, name="All", is_default=True)
    rule.subspecialties.set([f.subspecialty("neuro")])

    def offered(description, order=None):
        study = f.StudyFactory(
            facility=facility, modality="CT", body_part="HEAD", study_description=description
        )
        if order is not None:
            f.OrderFactory(
                facility=facility, accession_number=study.accession_number, study=study, **order
            )
        study_transition(study_id=study.pk, to_status="ready")
        study_route(study_id=study.pk)
        return Study.objects.get(pk=study.pk)

    ed = offered("CT HEAD TRAUMA", {"patient_class": "E", "reason_for_exam": REASON})
    outpatient = offered("CT HEAD FOLLOW-UP", {"patient_class": "O", "reason_for_exam": "Review"})
    return reader, ed, outpatient


def test_the_worklist_shows_the_reason_for_exam_and_an_ed_badge(browser, live_server, world):
    reader, ed, outpatient = world
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/login/")
        page.fill("input[name=username]", reader.user.username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/worklist/")

        row = page.locator(f'tr[data-study="{ed.pk}"]')
        row.wait_for()
        badge = row.locator(".pclass")
        assert badge.inner_text() == "ED"
        assert badge.is_visible()
        reason = row.locator("small.reason")
        assert reason.get_attribute("title") == REASON
        shown = reason.inner_text()
        assert shown.endswith("…") and REASON.startswith(shown[:-1])

        other = page.locator(f'tr[data-study="{outpatient.pk}"]')
        assert other.locator(".pclass").count() == 0
        assert other.locator("small.reason").inner_text() == "Review"

        # The rows are refreshed by htmx every few seconds: still there after a refresh.
        page.wait_for_event("response", lambda r: "/worklist/rows/" in r.url)
        assert page.locator(f'tr[data-study="{ed.pk}"] .pclass').inner_text() == "ED"

        # The study page's order section.
        page.goto(f"{live_server.url}/studies/{ed.pk}/")
        assert page.locator("#order-reason").inner_text() == REASON
        assert page.locator("#order-class").inner_text().startswith("Emergency")
    finally:
        context.close()

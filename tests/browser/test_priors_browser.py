"""The study page's Priors section in a real browser: each relevant prior with why it
was chosen and its status (a failure with its reason), and a link that opens a
retrieved prior in the viewer window.  The rows are fixtures (the fetch from a PACS
is tested against Orthanc in tests/priors)."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlparse

import pytest
from django.utils import timezone

from priors.models import PriorFetch, PriorStudy
from routing.models import RoutingRule
from routing.services import study_route
from studies.models import Study
from studies.services import study_transition
from tests import factories as f
from tests.routing.conftest import make_reader

pytestmark = pytest.mark.browser

PASSWORD = "pw-for-tests-1"


@pytest.fixture
def world(transactional_db):
    group = f.ReadingGroupFactory(name="Priors browser group")
    region = f.RegionFactory(code="us-tx-north")
    facility = f.FacilityFactory(reading_group=group, region=region, ae_titles=["PRIB"])
    now = timezone.now()
    reader = make_reader(group, facility, name="dr_priors", region=region)
    reader.shifts.update(starts_at=now - dt.timedelta(hours=1), ends_at=now + dt.timedelta(hours=3))
    rule = RoutingRule.objects.create(reading_group=group, name="All", is_default=True)
    rule.subspecialties.set([f.subspecialty("neuro")])
    current = f.StudyFactory(facility=facility, patient_id="BRP-1", modality="CT", body_part="HEAD")
    study_transition(study_id=current.pk, to_status="ready")
    study_route(study_id=current.pk)
    stored = f.StudyFactory(
        facility=facility, patient_id="BRP-1", modality="CT", body_part="HEAD", is_prior=True
    )
    PriorFetch.objects.create(
        study=current, status="done", attempts=2, started_at=now, finished_at=now
    )
    today = timezone.localdate()
    rows = {
        "retrieved": PriorStudy.objects.create(
            current=current,
            study_instance_uid=stored.study_instance_uid,
            study_date=today - dt.timedelta(days=400),
            modality="CT",
            description="CT HEAD WO CONTRAST",
            status="retrieved",
            relevance_code="region_modality",
            relevance="same body region (head) and modality (CT)",
            prior=stored,
            instances_retrieved=40,
        ),
        "failed": PriorStudy.objects.create(
            current=current,
            study_instance_uid="1.2.3.4.5.1",
            study_date=today - dt.timedelta(days=800),
            modality="MR",
            description="MRI BRAIN",
            status="failed",
            reason="C-MOVE refused with status 0xC000",
            relevance_code="region",
            relevance="same body region (head)",
        ),
        "pending": PriorStudy.objects.create(
            current=current,
            study_instance_uid="1.2.3.4.5.2",
            study_date=today - dt.timedelta(days=30),
            modality="CT",
            description="CT CHEST",
            status="pending",
            relevance_code="modality",
            relevance="same modality (CT)",
        ),
    }
    return reader, Study.objects.get(pk=current.pk), rows


def test_the_study_page_lists_the_priors_and_opens_a_retrieved_one(browser, live_server, world):
    reader, current, rows = world
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/login/")
        page.fill("input[name=username]", reader.user.username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/worklist/")

        page.goto(f"{live_server.url}/studies/{current.pk}/")
        section = page.locator("#priors")
        section.wait_for()
        assert section.locator("h2").inner_text() == "Priors"
        listed = section.locator("tr[data-prior]")
        # Most recent first.
        assert [listed.nth(i).get_attribute("data-prior") for i in range(listed.count())] == [
            rows["pending"].study_instance_uid,
            rows["retrieved"].study_instance_uid,
            rows["failed"].study_instance_uid,
        ]
        retrieved = section.locator(f'tr[data-prior="{rows["retrieved"].study_instance_uid}"]')
        assert retrieved.locator(".prior-status").inner_text() == "Retrieved"
        assert "same body region (head) and modality (CT)" in retrieved.inner_text()
        link = retrieved.locator("a.open-prior")
        assert link.inner_text() == "CT HEAD WO CONTRAST"
        assert link.get_attribute("target") == "telerad-viewer"
        href = urlparse(link.get_attribute("href") or "")
        assert href.path == "/viewer/"
        assert parse_qs(href.query)["StudyInstanceUIDs"] == [rows["retrieved"].study_instance_uid]

        failed = section.locator(f'tr[data-prior="{rows["failed"].study_instance_uid}"]')
        assert failed.locator(".prior-status").inner_text() == "Failed"
        assert failed.locator(".prior-reason").inner_text() == "C-MOVE refused with status 0xC000"
        assert failed.locator("a.open-prior").count() == 0
        pending = section.locator(f'tr[data-prior="{rows["pending"].study_instance_uid}"]')
        assert pending.locator(".prior-status").inner_text() == "Pending"
        assert "done" in section.locator("#priors-fetch").inner_text()

        # The reader may open the prior's own study (same patient, same facility).
        response = page.request.get(
            f"{live_server.url}/dicomweb/studies?PatientID=BRP-1",
            headers={"Accept": "application/dicom+json"},
        )
        assert response.status == 200
        uids = {s["0020000D"]["Value"][0] for s in response.json()}
        assert rows["retrieved"].study_instance_uid in uids
    finally:
        context.close()

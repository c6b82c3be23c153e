"""A next-case-only study at the top of the worklist, in a real browser: its row has
no claim button, "c" claims no other row in its place, "n" takes it."""

from __future__ import annotations

import time

import pytest

from routing.models import RoutingRule
from routing.services import study_reroute
from studies.models import Study
from tests import factories as f
from tests.browser.test_worklist_browser import _sign_in, network  # noqa: F401 - fixture

pytestmark = pytest.mark.browser


def test_c_claims_no_other_row_and_n_takes_the_top(browser, live_server, network):  # noqa: F811
    readers, offered_study = network
    reader = readers[0]
    # MR studies go by "next case" only (a rule before the group's default).
    rule = RoutingRule.objects.create(
        reading_group=reader.reading_group,
        name="MR next only",
        position=1,
        modalities=["MR"],
        next_case_only=True,
    )
    rule.subspecialties.set([f.subspecialty("neuro")])
    plain = offered_study(priority=2)  # CT: claimed by id
    top = offered_study(priority=1)
    Study.objects.filter(pk=top.pk).update(modality="MR")
    # Route it again as MR (the rule is chosen when it is routed).
    study_reroute(study_id=top.pk, reason="modality corrected")
    assert Study.objects.get(pk=top.pk).routing.rule == rule

    context = browser.new_context()
    try:
        page = _sign_in(context, live_server.url, reader.user.username)
        top_row = f'tr[data-study="{top.pk}"]'
        page.wait_for_selector(top_row)
        assert "Next case only" in page.inner_text(top_row)
        assert page.locator(f"{top_row} button.claim").count() == 0
        assert page.locator(f'tr[data-study="{plain.pk}"] button.claim').count() == 1

        page.keyboard.press("c")  # the top row has no claim button: nothing happens
        time.sleep(1.5)
        assert page.url == f"{live_server.url}/worklist/"
        assert set(
            Study.objects.filter(pk__in=[top.pk, plain.pk]).values_list("status", flat=True)
        ) == {"offered"}

        page.keyboard.press("n")
        page.wait_for_url(f"{live_server.url}/studies/{top.pk}/")
        assert Study.objects.get(pk=top.pk).assigned_radiologist == reader
    finally:
        context.close()

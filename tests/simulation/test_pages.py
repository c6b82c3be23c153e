"""The rule simulator's pages: a group's admins (only they) list drafts, copy the live
rules into one, edit its rules with the API's validation (a refusal shown beside its
field, nothing saved), read the diff, replay a window, follow the run's progress,
read the comparison of a done run, and publish."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from routing.models import RoutingRule
from simulation.models import RoutingDraft, SimulationRun
from simulation.selectors import live_rules_as_draft
from tests import factories as f

pytestmark = pytest.mark.django_db


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def live(group_a: Any, facility_a: Any) -> dict[str, RoutingRule]:
    """Group A's live rules: CT heads to neuro (regional at most), and the default."""
    ct = RoutingRule.objects.create(
        reading_group=group_a, name="CT heads", position=10, modalities=["CT"], widest_tier=1
    )
    ct.subspecialties.set([f.subspecialty("neuro")])
    ct.facilities.set([facility_a])
    default = RoutingRule.objects.create(
        reading_group=group_a, name="Everything else", is_default=True, allow_general=True
    )
    default.subspecialties.set([f.subspecialty("neuro")])
    return {"ct": ct, "default": default}


@pytest.fixture
def draft(group_a: Any, live: dict[str, RoutingRule]) -> RoutingDraft:
    group_a.refresh_from_db()
    return RoutingDraft.objects.create(
        reading_group=group_a,
        name="Tighter CT",
        rules=live_rules_as_draft(reading_group_id=group_a.pk),
        based_on_version=group_a.rules_version,
    )


def index_of(draft: RoutingDraft, name: str) -> int:
    return next(i for i, r in enumerate(draft.rules) if r["name"] == name)


def rule_form_html(page: str, index: int) -> str:
    """The edit form of the rule stored at ``index``, from the page."""
    start = page.index(f'id="rule-{index}"')
    return page[start : page.index("</details>", start)]


def rule_form(rule: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The rule's form as the page fills it in, with ``changes``."""
    data: dict[str, Any] = {
        "name": rule["name"],
        "position": rule["position"],
        "modalities": ", ".join(rule["modalities"]),
        "body_parts": ", ".join(rule["body_parts"]),
        "description_pattern": rule["description_pattern"],
        "priorities": rule["priorities"],
        "facilities": rule["facilities"],
        "subspecialties": rule["subspecialties"],
        "relative_value": rule["relative_value"],
        "widest_tier": rule["widest_tier"],
        "escalate_regional": rule["escalate_fractions"][0],
        "escalate_global": rule["escalate_fractions"][1],
        "min_tier_wait_seconds": rule["min_tier_wait_seconds"],
        "wait_stat_seconds": rule["wait_stat_seconds"],
        "wait_urgent_seconds": rule["wait_urgent_seconds"],
        "wait_routine_seconds": rule["wait_routine_seconds"],
        "delivery": rule["delivery"],
        "accept_timeout_seconds": rule["accept_timeout_seconds"],
    }
    for flag in (
        "is_active",
        "allow_general",
        "allow_preliminary",
        "bypass_cap_for_stat",
        "next_case_only",
    ):
        if rule[flag]:
            data[flag] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


# --- Who may ---------------------------------------------------------------
def test_only_the_groups_admins_reach_its_drafts_and_runs(
    draft: RoutingDraft,
    group_admin: Any,
    other_admin: Any,
    licensed_reader: Any,
    staff_a: Any,
) -> None:
    now = timezone.now()
    run = SimulationRun.objects.create(
        draft=draft,
        reading_group=draft.reading_group,
        window_start=now - dt.timedelta(days=7),
        window_end=now,
    )
    pages = [
        f"/routing/simulations/drafts/{draft.pk}/",
        f"/routing/simulations/drafts/{draft.pk}/publish/",
        f"/routing/simulations/runs/{run.pk}/",
        f"/routing/simulations/runs/{run.pk}/progress/",
    ]
    admin = client_for(group_admin)
    listing = admin.get("/routing/simulations/")
    assert listing.status_code == 200 and "Tighter CT" in listing.content.decode()
    assert 'href="/routing/simulations/"' in listing.content.decode()  # the nav link
    for url in pages:
        assert admin.get(url).status_code == 200, url

    # Another group's admin: the simulator, without group A's draft; its pages 404.
    other = client_for(other_admin)
    listing = other.get("/routing/simulations/")
    assert listing.status_code == 200 and "Tighter CT" not in listing.content.decode()
    for url in pages:
        assert other.get(url).status_code == 404, url
    # ... and cannot act on it: nothing changes.
    before = list(draft.rules)
    index = index_of(draft, "CT heads")
    posts = [
        (f"/routing/simulations/drafts/{draft.pk}/rules/{index}/", rule_form(before[index])),
        (f"/routing/simulations/drafts/{draft.pk}/rules/{index}/delete/", {}),
        (f"/routing/simulations/drafts/{draft.pk}/rules/new/", {}),
        (f"/routing/simulations/drafts/{draft.pk}/replay/", {"days": "7"}),
        (f"/routing/simulations/drafts/{draft.pk}/publish/", {"force": "1"}),
        (f"/routing/simulations/drafts/{draft.pk}/delete/", {}),
    ]
    for url, data in posts:
        assert other.post(url, data).status_code == 404, url
    draft.refresh_from_db()
    assert draft.rules == before and draft.published_at is None
    assert SimulationRun.objects.count() == 1

    # A radiologist and facility staff administer no group: 403 everywhere.
    for user in (licensed_reader.user, staff_a):
        client = client_for(user)
        assert client.get("/routing/simulations/").status_code == 403
        for url in pages:
            assert client.get(url).status_code == 403, url
        assert client.post("/routing/simulations/drafts/new/", {"name": "x"}).status_code == 403
        assert (
            'href="/routing/simulations/"' not in client.get("/account/security/").content.decode()
        )
    assert Client().get("/routing/simulations/").status_code == 302  # to sign in


# --- Drafts ----------------------------------------------------------------
def test_a_new_draft_is_a_copy_of_the_live_rules(
    live: dict[str, RoutingRule], group_admin: Any
) -> None:
    client = client_for(group_admin)
    response = client.post("/routing/simulations/drafts/new/", {"name": "Try"})
    draft = RoutingDraft.objects.get(name="Try")
    assert response.status_code == 302
    assert response["Location"] == f"/routing/simulations/drafts/{draft.pk}/"
    assert draft.rules == live_rules_as_draft(reading_group_id=draft.reading_group_id)
    page = client.get(response["Location"]).content.decode()
    assert "CT heads" in page and "Everything else" in page
    assert 'id="diff-none"' in page  # the same as the live rules
    # The rules table, in the order routing tries them: the default last.
    rows = re.findall(r'<tr data-rule="(\d+)"', page)
    assert [draft.rules[int(i)]["name"] for i in rows] == ["CT heads", "Everything else"]
    # A second draft of the same name is refused with the API's message.
    again = client.post("/routing/simulations/drafts/new/", {"name": "Try"}, follow=True)
    assert "The group has a draft of this name." in again.content.decode()
    assert RoutingDraft.objects.filter(name="Try").count() == 1


def test_a_bad_value_is_shown_beside_its_field_and_nothing_is_saved(
    draft: RoutingDraft, group_admin: Any
) -> None:
    client = client_for(group_admin)
    index = index_of(draft, "CT heads")
    before = list(draft.rules)
    updated = draft.updated_at
    form = rule_form(
        before[index],
        widest_tier=0,  # a good change, not saved either
        wait_stat_seconds="abc",
        subspecialties=[],
    )
    response = client.post(f"/routing/simulations/drafts/{draft.pk}/rules/{index}/", form)
    assert response.status_code == 400
    # The form of that rule is open, with each error beside its field.
    form_html = rule_form_html(response.content.decode(), index)
    assert form_html.startswith(f'id="rule-{index}" open')
    assert re.search(
        r'name="wait_stat_seconds" value="abc"><span class="field-error" role="alert">'
        r"A valid integer is required.</span>",
        form_html,
    )  # what was typed is kept, and the error follows the field
    assert "This list may not be empty." in form_html

    # The rule's settings taken together (checked once each field is valid).
    form = rule_form(before[index], escalate_regional="0.6", escalate_global="0.3")
    response = client.post(f"/routing/simulations/drafts/{draft.pk}/rules/{index}/", form)
    assert response.status_code == 400
    form_html = rule_form_html(response.content.decode(), index)
    assert 'value="0.6"' in form_html
    assert re.search(
        r'name="escalate_global" value="0.3"></label>\s*<span class="field-error" role="alert">'
        r"Two increasing fractions of the turnaround target",
        form_html,
    )
    draft.refresh_from_db()
    assert draft.rules == before and draft.updated_at == updated
    assert not AuditEvent.objects.filter(object_type="simulation.routingdraft").exists()

    # The same values through the API are refused alike (one validation).
    api_rules = [dict(r) for r in before]
    api_rules[index]["escalate_fractions"] = [0.6, 0.3]
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(group_admin)
    refused = api.patch(
        f"/api/v1/routing-simulations/drafts/{draft.pk}/", {"rules": api_rules}, format="json"
    )
    assert refused.status_code == 400
    assert "Two increasing fractions" in str(refused.json())


def test_a_rule_edited_through_the_page_is_saved_and_shows_in_the_diff(
    draft: RoutingDraft, group_admin: Any
) -> None:
    client = client_for(group_admin)
    index = index_of(draft, "CT heads")
    form = rule_form(draft.rules[index], widest_tier=0, modalities="ct, mr", position=5)
    response = client.post(f"/routing/simulations/drafts/{draft.pk}/rules/{index}/", form)
    assert response.status_code == 302
    draft.refresh_from_db()
    rule = draft.rules[index]
    assert (rule["widest_tier"], rule["modalities"], rule["position"]) == (0, ["CT", "MR"], 5)
    assert AuditEvent.objects.filter(
        object_type="simulation.routingdraft", object_id=str(draft.pk)
    ).exists()
    page = client.get(response["Location"]).content.decode()
    diff = page[page.index('id="diff-list"') :]
    assert re.search(
        r'data-field="widest_tier"><th>widest tier</th><td class="before">Regional</td>'
        r'<td class="after">Hyperlocal</td>',
        diff,
    )
    assert 'data-field="modalities"' in diff and 'data-field="position"' in diff
    # The live rule itself is untouched.
    assert RoutingRule.objects.get(name="CT heads").widest_tier == 1


def test_rules_are_added_and_deleted(draft: RoutingDraft, group_admin: Any) -> None:
    client = client_for(group_admin)
    assert client.post(f"/routing/simulations/drafts/{draft.pk}/rules/new/").status_code == 302
    draft.refresh_from_db()
    assert len(draft.rules) == 3
    added = draft.rules[2]
    assert added["id"] is None and added["name"] == "New rule" and not added["is_active"]
    page = client.get(f"/routing/simulations/drafts/{draft.pk}/").content.decode()
    assert "<strong>Added</strong> rule New rule" in page

    index = index_of(draft, "CT heads")
    url = f"/routing/simulations/drafts/{draft.pk}/rules/{index}/delete/"
    assert client.post(url).status_code == 302
    draft.refresh_from_db()
    assert [r["name"] for r in draft.rules] == ["Everything else", "New rule"]
    page = client.get(f"/routing/simulations/drafts/{draft.pk}/").content.decode()
    assert "<strong>Removed</strong> rule CT heads" in page
    # No such rule: 404.
    assert client.post(f"/routing/simulations/drafts/{draft.pk}/rules/9/delete/").status_code == 404


# --- Publishing -------------------------------------------------------------
def test_publishing_confirms_with_the_diff_then_replaces_the_live_rules(
    draft: RoutingDraft, group_admin: Any
) -> None:
    client = client_for(group_admin)
    index = index_of(draft, "CT heads")
    client.post(
        f"/routing/simulations/drafts/{draft.pk}/rules/{index}/",
        rule_form(draft.rules[index], widest_tier=0),
    )
    confirm = client.get(f"/routing/simulations/drafts/{draft.pk}/publish/")
    page = confirm.content.decode()
    assert confirm.status_code == 200
    assert 'id="publish-form"' in page and 'name="force"' not in page
    assert re.search(r'<td class="before">Regional</td><td class="after">Hyperlocal</td>', page)
    assert RoutingRule.objects.get(name="CT heads").widest_tier == 1  # not yet

    done = client.post(f"/routing/simulations/drafts/{draft.pk}/publish/", follow=True)
    assert done.redirect_chain[-1][0] == "/routing/simulations/"
    assert "published: 1 change" in done.content.decode()
    assert RoutingRule.objects.get(name="CT heads").widest_tier == 0
    draft.refresh_from_db()
    assert draft.published_at is not None


def test_publishing_over_changed_live_rules_needs_force(
    draft: RoutingDraft, live: dict[str, RoutingRule], group_admin: Any
) -> None:
    client = client_for(group_admin)
    # Someone edits the live rules after the draft was copied.
    live["default"].allow_general = False
    live["default"].save()
    confirm = client.get(f"/routing/simulations/drafts/{draft.pk}/publish/").content.decode()
    assert 'id="live-changed"' in confirm and 'name="force"' in confirm
    # The draft (copied before) would set it back: that is in the diff.
    assert 'data-field="allow_general"' in confirm

    refused = client.post(f"/routing/simulations/drafts/{draft.pk}/publish/")
    assert refused.status_code == 409
    assert "The live rules changed since this draft was copied" in refused.content.decode()
    assert 'id="publish-conflict"' in refused.content.decode()
    assert RoutingRule.objects.get(pk=live["default"].pk).allow_general is False

    forced = client.post(f"/routing/simulations/drafts/{draft.pk}/publish/", {"force": "1"})
    assert forced.status_code == 302
    assert RoutingRule.objects.get(pk=live["default"].pk).allow_general is True


# --- Runs ------------------------------------------------------------------
def test_a_replay_is_requested_for_the_last_days_or_dates(
    draft: RoutingDraft, group_admin: Any
) -> None:
    client = client_for(group_admin)
    response = client.post(f"/routing/simulations/drafts/{draft.pk}/replay/", {"days": "7"})
    run = SimulationRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/routing/simulations/runs/{run.pk}/"
    assert run.window_end - run.window_start == dt.timedelta(days=7)
    assert run.requested_by == group_admin

    today = timezone.now().date()
    client.post(
        f"/routing/simulations/drafts/{draft.pk}/replay/",
        {
            "from": (today - dt.timedelta(days=3)).isoformat(),
            "to": (today - dt.timedelta(days=1)).isoformat(),
        },
    )
    by_dates = SimulationRun.objects.order_by("-id").first()
    assert by_dates is not None and by_dates.pk != run.pk
    assert by_dates.window_end - by_dates.window_start == dt.timedelta(days=3)
    assert by_dates.window_start.date() == today - dt.timedelta(days=3)

    # Dates the API refuses: the message, no run.
    bad = client.post(
        f"/routing/simulations/drafts/{draft.pk}/replay/",
        {"from": "2020-01-01", "to": "2020-12-31"},
        follow=True,
    )
    assert "at most 90 days" in bad.content.decode()
    assert SimulationRun.objects.count() == 2


def test_a_running_replay_shows_its_progress_polled_and_when_it_stalls(
    draft: RoutingDraft, group_admin: Any
) -> None:
    client = client_for(group_admin)
    now = timezone.now()
    run = SimulationRun.objects.create(
        draft=draft,
        reading_group=draft.reading_group,
        window_start=now - dt.timedelta(days=7),
        window_end=now,
        status=SimulationRun.Status.RUNNING,
        studies_total=400,
        studies_done=100,
        started_at=now - dt.timedelta(seconds=30),
        heartbeat_at=now - dt.timedelta(seconds=5),
    )
    page = client.get(f"/routing/simulations/runs/{run.pk}/").content.decode()
    assert '<progress id="run-progress-bar" max="400" value="100">25%</progress>' in page
    assert f'hx-get="/routing/simulations/runs/{run.pk}/progress/" hx-trigger="every 2s"' in page
    assert "run-interrupted" not in page

    SimulationRun.objects.filter(pk=run.pk).update(
        studies_done=300, heartbeat_at=now - dt.timedelta(minutes=3)
    )
    body = client.get(f"/routing/simulations/runs/{run.pk}/progress/").content.decode()
    assert body.startswith('<div id="run-body"') and 'value="300"' in body
    assert 'id="run-interrupted"' in body and "every 2s" in body

    SimulationRun.objects.filter(pk=run.pk).update(
        status=SimulationRun.Status.FAILED, error="Replay failed: the database went away."
    )
    body = client.get(f"/routing/simulations/runs/{run.pk}/progress/").content.decode()
    assert "the database went away" in body and "hx-trigger" not in body


def _explanation(rule: str | None, tier: int, names: list[str]) -> dict[str, Any]:
    return {
        "rule": rule,
        "tier": tier,
        "outcome": "offered" if names else "unroutable",
        "offered_to": [{"radiologist_id": i + 1, "name": n} for i, n in enumerate(names)],
        "reason": f"offered to {len(names)} readers" if names else "no reader on shift at tier 0",
        "excluded": [{"name": "Dr Cal", "explanation": "no license in US-TX"}],
    }


def _arm(
    first: dict[str, int], unroutable: int, work: list[tuple[int, str, float]]
) -> dict[str, Any]:
    times = {"p50": 120.0, "p90": 900.0, "max": 1800.0}
    readers = [
        {"radiologist_id": i, "name": n, "claimed": int(w), "work": w, "busy_hours": w / 3}
        for i, n, w in work
    ]
    works = [w for _, _, w in work]
    mean = sum(works) / len(works)
    return {
        "first_offer_by_tier": first,
        "final_tier": first,
        "escalations": 4,
        "unroutable": {
            "count": unroutable,
            "never_offered": unroutable // 2,
            "reasons": [["no reader on shift at tier 0", unroutable]] if unroutable else [],
        },
        "claimed": sum(first.values()),
        "unclaimed_at_end": 1,
        "by_priority": {
            str(p): {
                "studies": 10,
                "time_to_offer": times,
                "time_to_claim": {"p50": 1200.0, "p90": 5400.0, "max": 7200.0},
                "sla_met": 8,
                "sla_missed": 2,
                "sla_missed_share": 0.2,
                "at_risk": 3,
            }
            for p in (1, 2, 3)
        },
        "readers": readers,
        "fairness": {
            "readers": len(work),
            "mean_work": mean,
            "max_work": max(works),
            "coefficient_of_variation": 0.31,
            "max_over_mean": max(works) / mean,
        },
    }


RESULT: dict[str, Any] = {
    "window": {"start": "2026-11-30T00:00:00Z", "end": "2026-12-07T00:00:00Z"},
    "studies": 30,
    "history_began": "2026-10-01T00:00:00Z",
    "reading_model": {"default_minutes": 18.5, "readers": {"1": 15.0}},
    "arms": {
        "live": _arm({"0": 20, "1": 6, "2": 4}, 0, [(1, "Dr Amy", 12.0), (2, "Dr Ben", 8.0)]),
        "draft": _arm({"0": 26, "1": 0, "2": 0}, 4, [(1, "Dr Amy", 16.0), (3, "Dr Dee", 4.0)]),
    },
    "elsewhere": {
        "count": 7,
        "share": 7 / 30,
        "sample": [
            {
                "study_id": 501,
                "label": "ACC-501 CT HEAD",
                "arrived_at": "2026-12-01T03:12:00Z",
                "priority": 1,
                "live": _explanation("CT heads", 1, ["Dr Ben"]),
                "draft": _explanation("CT heads", 0, []),
            }
        ],
    },
    "recorded": {
        "compared": 30,
        "same": 27,
        "differences": [
            {
                "study_id": 502,
                "label": "ACC-502 MR KNEE",
                "recorded": {"tier": 1, "outcome": "offered", "offered_to": [1, 2]},
                "replayed": _explanation("Everything else", 0, ["Dr Amy"]),
            }
        ],
    },
}


def test_a_done_replay_shows_the_comparison_with_its_charts_and_sample(
    draft: RoutingDraft, group_admin: Any
) -> None:
    now = timezone.now()
    run = SimulationRun.objects.create(
        draft=draft,
        reading_group=draft.reading_group,
        window_start=now - dt.timedelta(days=7),
        window_end=now,
        status=SimulationRun.Status.DONE,
        studies_total=30,
        studies_done=30,
        result=RESULT,
        finished_at=now,
    )
    page = client_for(group_admin).get(f"/routing/simulations/runs/{run.pk}/").content.decode()
    assert "hx-trigger" not in page  # done: no more polling
    # Every chart drawn, both arms in each.
    for chart in (
        "first-offer",
        "final-tier",
        "time-to-offer",
        "time-to-claim",
        "sla-missed",
        "reader-work",
    ):
        figure = page[page.index(f'data-chart="{chart}"') :]
        svg = figure[figure.index("<svg") : figure.index("</svg>")]
        assert "Live rules" in svg and "Draft" in svg, chart
    # First offers: live 20 / 6 / 4 and draft 26 / 0 / 0: five bars.
    first = page[page.index('data-chart="first-offer"') :]
    assert 'data-bars="6"' in first[: first.index("</svg>")]
    assert (
        "Live rules, Hyperlocal: 20 studies" in first and "Draft, Hyperlocal: 26 studies" in first
    )
    # Readers of both arms (Ben only live, Dee only draft); fairness figures.
    readers = page[page.index('data-chart="reader-work"') :]
    for name in ("Dr Amy", "Dr Ben", "Dr Dee"):
        assert name in readers[: readers.index("</svg>")]
    assert re.search(r'data-figure="fairness-coefficient_of_variation">.*?0.31', page)
    assert re.search(
        r'data-figure="unroutable-count"><th>[^<]*</th>'
        r'<td class="num">0</td><td class="num">4</td>',
        page,
    )
    assert "no reader on shift at tier 0" in page
    # Time to first offer's 90th percentile, in minutes: 15 for both arms.
    assert "Live rules, STAT: 15 minutes" in page
    # The sample with both explanations, and the agreement with what was recorded.
    sample = page[page.index('data-study="501"') :]
    assert 'id="elsewhere-count">7</span>' in page and "23.3%" in page
    assert 'data-side="live"' in sample and "offered to Dr Ben" in sample
    assert 'data-side="draft"' in sample and "unroutable</strong>: no reader on shift" in sample
    assert "Dr Cal: no license in US-TX" in sample
    assert 'id="recorded-same">27</strong> of 30' in page and "90.0%" in page
    assert "ACC-502 MR KNEE" in page
    assert "history-short" not in page  # the history began before the window

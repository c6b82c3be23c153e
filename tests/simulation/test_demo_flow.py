"""The issue's "done when", on the seeded demo: the group admin drafts a change,
replays the seeded 60 days against it, reads the comparison, and publishes it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client

from demo.seed import HISTORY_DAYS, MERIDIAN, seed_demo
from network.models import ReadingGroup
from routing.models import RoutingRule
from simulation.models import SimulationRun

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)


def test_an_admin_drafts_replays_the_seeded_history_reads_it_and_publishes(
    api: Any, django_capture_on_commit_callbacks: Any
) -> None:
    seed_demo(now=NOW)
    admin = User.objects.get(username="admin")
    group = ReadingGroup.objects.get(name=MERIDIAN)
    client = api(admin)
    with time_machine.travel(NOW + dt.timedelta(minutes=5), tick=False):
        made = client.post(
            "/api/v1/routing-simulations/drafts/",
            {"reading_group": group.pk, "name": "Regional default"},
            format="json",
        )
        assert made.status_code == 201, made.content
        draft = made.json()
        rules = draft["rules"]
        default = next(r for r in rules if r["is_default"])
        assert default["name"] == "Everything else" and default["widest_tier"] == 2
        default["widest_tier"] = 1
        edited = client.patch(
            f"/api/v1/routing-simulations/drafts/{draft['id']}/", {"rules": rules}, format="json"
        )
        assert edited.status_code == 200, edited.content
        # The live rules are untouched by the draft.
        assert RoutingRule.objects.get(pk=default["id"]).widest_tier == 2

        # The task is sent after commit and runs inline here (as a worker would).
        with django_capture_on_commit_callbacks(execute=True):
            queued = client.post(
                "/api/v1/routing-simulations/runs/",
                {"draft": draft["id"], "days": HISTORY_DAYS},
                format="json",
            )
        assert queued.status_code == 202, queued.content
        run = client.get(f"/api/v1/routing-simulations/runs/{queued.json()['id']}/").json()

    assert run["status"] == SimulationRun.Status.DONE, run.get("error")
    result = run["result"]
    # Every finished history study of the group, decided against both rule sets.
    assert result["studies"] > 1000
    live, drafted = result["arms"]["live"], result["arms"]["draft"]
    # The seeded readers were on shift and their history replayed: most studies are
    # offered at once and claimed, under either rule set.
    for arm in (live, drafted):
        assert arm["claimed"] > 0.8 * result["studies"]
        assert sum(arm["first_offer_by_tier"].values()) > 0.8 * result["studies"]
    # Keeping the default rule regional can only leave more studies unroutable.
    assert drafted["unroutable"]["count"] >= live["unroutable"]["count"]
    assert drafted["first_offer_by_tier"]["2"] <= live["first_offer_by_tier"]["2"]
    assert result["history_began"] is not None

    # The comparison on the run's page.
    page = Client()
    page.force_login(admin)
    with time_machine.travel(NOW + dt.timedelta(minutes=6), tick=False):
        shown = page.get(f"/routing/simulations/runs/{run['id']}/")
    assert shown.status_code == 200
    assert "Regional default" in shown.content.decode()

    with time_machine.travel(NOW + dt.timedelta(minutes=7), tick=False):
        published = client.post(
            f"/api/v1/routing-simulations/drafts/{draft['id']}/publish/", {}, format="json"
        )
    assert published.status_code == 200, published.content
    assert RoutingRule.objects.get(pk=default["id"]).widest_tier == 1

"""The facility portal: scoped like the API (another facility's figures are never
visible), filters, charts, CSV export, and a seeded demo with history to show."""

from __future__ import annotations

import csv
import datetime as dt
import io
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User

from audit.models import AuditEvent
from tests.turnaround.conftest import DAY, scripted_study
from turnaround import selectors

pytestmark = pytest.mark.django_db

NOW = DAY + dt.timedelta(hours=6)
RANGE = {"from": "2026-06-01", "to": "2026-06-01"}


@pytest.fixture
def studies(facility_a: Any, facility_b: Any, licensed_reader: Any) -> dict[str, Any]:
    """Facility A: two STAT (one on time, one late), one routine still waiting;
    facility B: one urgent on time."""
    return {
        "a_on_time": scripted_study(
            facility_a, reader=licensed_reader, received_at=DAY, ready=1, claimed=3, final=20
        ),
        "a_late": scripted_study(
            facility_a,
            reader=licensed_reader,
            received_at=DAY + dt.timedelta(hours=1),
            ready=1,
            claimed=5,
            final=50,
            modality="MR",
        ),
        "a_waiting": scripted_study(
            facility_a, received_at=DAY + dt.timedelta(hours=2), ready=1, priority=3
        ),
        "b_on_time": scripted_study(
            facility_b,
            reader=licensed_reader,
            received_at=DAY,
            ready=1,
            claimed=2,
            final=30,
            priority=2,
        ),
    }


def page(client: Any, user: Any, path: str = "/portal/", **params: Any) -> Any:
    client.force_login(user)
    with time_machine.travel(NOW, tick=False):
        return client.get(path, {**RANGE, **params})


def svg(html: str, chart: str) -> ET.Element:
    start = html.index(f'id="chart-{chart}"')
    begin = html.index("<svg", start)
    end = html.index("</svg>", begin) + len("</svg>")
    return ET.fromstring(html[begin:end])  # noqa: S314 - our own output


def bar_count(html: str, chart: str) -> int:
    return int(svg(html, chart).get("data-bars"))


def test_staff_see_their_facility_only(client: Any, staff_a: Any, studies: Any) -> None:
    response = page(client, staff_a)
    assert response.status_code == 200
    html = response.content.decode()
    for key in ("a_on_time", "a_late", "a_waiting"):
        assert f'data-study="{studies[key].pk}"' in html
    assert f'data-study="{studies["b_on_time"].pk}"' not in html
    assert "Facility B" not in html  # not even in the facility menu
    # Wait of the open study: received 14:00 + 2 h, now 20:00 -> 4 h.
    assert "waiting 4 h 00 min" in html
    # STAT row: 2 studies, 1 within target of 2 due.
    assert "50% <small>(1/2)</small>" in html
    for chart in ("over-time", "compliance", "hourly"):
        assert svg(html, chart).get("role") == "img"
    assert bar_count(html, "compliance") == 1  # STAT 50%; urgent none, routine not yet due


def test_another_facility_is_a_404_on_page_panel_and_csv(
    client: Any, staff_a: Any, facility_b: Any, studies: Any
) -> None:
    assert page(client, staff_a, facility=facility_b.pk).status_code == 404
    assert page(client, staff_a, "/portal/panel/", facility=facility_b.pk).status_code == 404
    with time_machine.travel(NOW, tick=False):
        csv_response = client.get(
            "/api/v1/turnaround/", {**RANGE, "facility": facility_b.pk, "format": "csv"}
        )
    assert csv_response.status_code == 404


def test_group_admin_chooses_among_the_groups_facilities(
    client: Any, group_admin: Any, facility_a: Any, facility_b: Any, studies: Any
) -> None:
    html = page(client, group_admin).content.decode()
    assert "All my facilities" in html
    assert f'data-study="{studies["b_on_time"].pk}"' in html
    only_b = page(client, group_admin, facility=facility_b.pk).content.decode()
    assert f'data-study="{studies["a_on_time"].pk}"' not in only_b


def test_other_users_are_refused(
    client: Any, licensed_reader: Any, other_admin: Any, facility_c: Any, studies: Any
) -> None:
    assert page(client, licensed_reader.user).status_code == 403
    # An admin of another group sees their own group's facility, never A's studies.
    theirs = page(client, other_admin)
    assert theirs.status_code == 200
    assert "Facility C" in theirs.content.decode()
    assert 'data-study="' not in theirs.content.decode()


def test_priority_filter_changes_charts_and_table(client: Any, staff_a: Any, studies: Any) -> None:
    everything = page(client, staff_a, "/portal/panel/").content.decode()
    routine = page(client, staff_a, "/portal/panel/", priority=3)
    html = routine.content.decode()
    assert routine.status_code == 200
    assert "<html" not in html  # a fragment for htmx to swap
    assert routine["HX-Push-Url"].startswith("/portal/?")
    assert "priority=3" in routine["HX-Push-Url"]
    assert f'data-study="{studies["a_waiting"].pk}"' in html
    assert f'data-study="{studies["a_on_time"].pk}"' not in html
    assert 'data-key="1"' in everything and 'data-key="1"' not in html
    assert (
        bar_count(everything, "hourly") == 24
        and svg(everything, "over-time").get("data-points") == "2"
    )
    assert svg(html, "over-time").get("data-points") == "0"  # nothing routine finalised
    assert bar_count(html, "compliance") == 0


def test_group_by_modality_and_day(client: Any, staff_a: Any, studies: Any) -> None:
    by_modality = page(client, staff_a, group_by="modality").content.decode()
    assert 'data-key="MR"' in by_modality and 'data-key="CT"' in by_modality
    by_day = page(client, staff_a, group_by="day").content.decode()
    assert 'data-key="2026-06-01"' in by_day


def test_csv_export_link_downloads_the_same_figures(
    client: Any, staff_a: Any, facility_a: Any, studies: Any
) -> None:
    html = page(client, staff_a, priority=1).content.decode()
    start = html.index('id="csv-export" href="') + len('id="csv-export" href="')
    link = html[start : html.index('"', start)].replace("&amp;", "&")
    assert f"facility={facility_a.pk}" in link and "priority=1" in link and "format=csv" in link
    with time_machine.travel(NOW, tick=False):
        response = client.get(link)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["name"], r["studies"], r["within_target_share"]) for r in rows] == [
        ("STAT", "2", "0.5")
    ]


def test_bad_filters_say_why(client: Any, staff_a: Any) -> None:
    response = page(client, staff_a, "/portal/panel/", **{"from": "2026-06-02", "to": "2026-06-01"})
    assert response.status_code == 400
    assert "to must be on or after from" in response.content.decode()


def test_listed_studies_are_audited(client: Any, staff_a: Any, studies: Any) -> None:
    page(client, staff_a)
    listed = AuditEvent.objects.filter(actor=staff_a, detail__view="turnaround portal")
    assert {e.object_id for e in listed} == {
        str(studies[k].pk) for k in ("a_on_time", "a_late", "a_waiting")
    }


def test_volume_by_hour_in_the_facility_zone(staff_a: Any, facility_a: Any, studies: Any) -> None:
    scope = selectors.scoped_studies(
        user=staff_a,
        facility_id=facility_a.pk,
        date_from=dt.date(2026, 6, 1),
        date_to=dt.date(2026, 6, 1),
    )
    # Received 14:00, 15:00, 16:00 UTC = 09:00, 10:00, 11:00 in Chicago.
    volume = selectors.volume_by_hour(scope=scope)
    assert volume[9] == volume[10] == volume[11] == 1 and sum(volume) == 3


def test_the_seeded_demo_facility_has_history_to_chart(client: Any) -> None:
    from demo.seed import seed_demo

    now = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)
    seed_demo(now=now)
    staff = User.objects.get(username="staff.stmary")
    summary = selectors.turnaround_summary(
        user=staff,
        date_from=dt.date(2026, 10, 24),
        date_to=dt.date(2026, 11, 22),
        now=now,
        group_by="day",
    )
    assert len(summary.rows) >= 28
    assert sum(r["finalized"] for r in summary.rows) >= 100
    by_priority = selectors.turnaround_summary(
        user=staff, date_from=dt.date(2026, 10, 24), date_to=dt.date(2026, 11, 22), now=now
    )
    shares = [r["within_target_share"] for r in by_priority.rows]
    assert len(shares) == 3 and min(shares) < 1  # some late: a chart worth looking at

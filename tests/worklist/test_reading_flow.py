"""The reading flow on the worklist and the study page: one click to the images in the
viewer window, the series' thumbnails, the SLA clock's words, the wait and the
patient's age."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.template import Context, Template
from django.test import Client
from django.utils import timezone

from routing.services import study_route
from studies.models import Instance, Series, Study
from studies.services import study_transition
from tests.routing.conftest import NOW
from worklist.templatetags.reading_flow import (
    age_text,
    clock_text,
    sla_text,
    span_text,
    thumbnail_url,
    viewer_url,
)

pytestmark = pytest.mark.django_db


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def offered(tiered, ready_study):
    study_route(study_id=ready_study.pk, now=NOW)
    return Study.objects.get(pk=ready_study.pk)


def _viewer_link(study):
    return f'href="/viewer/?StudyInstanceUIDs={study.study_instance_uid}" target="telerad-viewer"'


# --- what the words are --------------------------------------------------------------


@pytest.mark.parametrize(
    ("born", "on", "expected"),
    [
        (dt.date(1971, 6, 2), dt.date(2026, 6, 1), "54 y"),
        (dt.date(1971, 6, 1), dt.date(2026, 6, 1), "55 y"),  # the birthday itself
        (dt.date(2024, 6, 2), dt.date(2026, 6, 1), "23 mo"),  # months until two years
        (dt.date(2024, 6, 1), dt.date(2026, 6, 1), "2 y"),
        (dt.date(2025, 9, 20), dt.date(2026, 6, 1), "8 mo"),
        (dt.date(2026, 4, 30), dt.date(2026, 6, 1), "1 mo"),
        (dt.date(2026, 5, 2), dt.date(2026, 6, 1), "30 d"),  # not yet a month
        (dt.date(2026, 5, 20), dt.date(2026, 6, 1), "12 d"),
        (dt.date(2026, 6, 1), dt.date(2026, 6, 1), "0 d"),
        (dt.date(2024, 2, 29), dt.date(2025, 2, 28), "11 mo"),  # a leap-day birthday
        (None, dt.date(2026, 6, 1), ""),
        (dt.date(2026, 6, 2), dt.date(2026, 6, 1), ""),  # born after the study: unknown
    ],
)
def test_the_age_as_radiology_systems_show_it(born, on, expected):
    assert age_text(born, on) == expected


@pytest.mark.parametrize(
    ("seconds", "span", "clock"),
    [
        (0, "<1m", "00m 00s"),
        (59.9, "<1m", "01m 00s"),
        (60, "1m", "01m 00s"),
        (600, "10m", "10m 00s"),
        (1653, "27m", "27m 33s"),
        (3900, "1h 05m", "1h 05m 00s"),
        (86400 + 4 * 3600 + 59, "1d 04h", "28h 00m 59s"),
    ],
)
def test_spans_and_clocks(seconds, span, clock):
    assert span_text(seconds) == span
    assert clock_text(seconds) == clock


def test_the_sla_clock_counts_down_then_says_how_long_overdue():
    due = NOW + dt.timedelta(minutes=27, seconds=33)
    assert sla_text(due, NOW) == "27m 33s"
    assert sla_text(due, NOW, phrase=True) == "due in 27m 33s"
    late = NOW - dt.timedelta(minutes=10)
    assert sla_text(late, NOW) == "overdue by 10m"
    assert sla_text(late, NOW, phrase=True) == "overdue by 10m"
    assert sla_text(NOW - dt.timedelta(hours=1, minutes=5, seconds=40), NOW) == "overdue by 1h 05m"


def test_the_viewer_and_thumbnail_urls_are_built_in_one_place():
    study = Study(pk=7, study_instance_uid="1.2.840.1.7")
    assert viewer_url(study) == "/viewer/?StudyInstanceUIDs=1.2.840.1.7"
    assert thumbnail_url("1.2.3", "1.2.3.4") == "/dicomweb/studies/1.2.3/series/1.2.3.4/thumbnail"


def _render(source, **context):
    return Template("{% load reading_flow %}" + source).render(Context(context))


@pytest.mark.parametrize(
    ("status", "due_in", "expected"),
    [
        ("claimed", dt.timedelta(minutes=27, seconds=33), "due in 27m 33s"),
        ("offered", -dt.timedelta(minutes=10), "overdue by 10m"),
        ("final", dt.timedelta(minutes=27, seconds=33), ""),  # the clock has stopped
        ("final", -dt.timedelta(minutes=10), ""),
        ("cancelled", -dt.timedelta(minutes=10), ""),
    ],
)
def test_the_sla_clock_element(status, due_in, expected):
    with time_machine.travel(NOW, tick=False):
        study = Study(status=status, sla_due_at=NOW + due_in)
        html = _render("{% sla_clock study phrase=True %}", study=study)
    if not expected:
        assert html == ""
        return
    assert f">{expected}</span>" in html
    assert f'data-due="{(NOW + due_in).isoformat()}"' in html
    assert ('class="sla overdue"' in html) is expected.startswith("overdue")


# --- the worklist ---------------------------------------------------------------------


def test_the_worklist_shows_the_wait_the_age_and_an_open_images_link(tiered, offered):
    Study.objects.filter(pk=offered.pk).update(
        received_at=NOW - dt.timedelta(hours=1, minutes=12),
        sla_due_at=NOW - dt.timedelta(minutes=10, seconds=30),
        patient_birth_date=dt.date(1971, 6, 2),
        study_date=dt.date(2026, 6, 1),
        patient_sex="F",
    )
    with time_machine.travel(NOW, tick=False):
        page = signed_in(tiered["local"].user).get("/worklist/").content.decode()
    assert '<th title="Time since the study arrived">Waiting</th>' in page
    assert '<td class="waited"' in page and ">1h 12m</td>" in page
    assert '<td class="age">54 y <small>F</small></td>' in page
    assert '<span class="sla overdue"' in page and ">overdue by 10m</span>" in page
    assert "-10m" not in page
    row = page.split(f'data-study="{offered.pk}"', 1)[1].split("</tr>", 1)[0]
    assert _viewer_link(offered) in row
    assert 'title="Open the images in the viewer window (i)"' in row
    # The rows htmx polls carry the same.
    rows = signed_in(tiered["local"].user).get("/worklist/rows/").content.decode()
    assert _viewer_link(offered) in rows and '<td class="age">54 y' in rows


def test_the_age_is_taken_today_when_the_study_date_is_unknown(tiered, offered):
    Study.objects.filter(pk=offered.pk).update(patient_birth_date=dt.date(2025, 9, 20))
    with time_machine.travel(NOW, tick=False):
        page = signed_in(tiered["local"].user).get("/worklist/").content.decode()
    assert '<td class="age">8 mo</td>' in page


def test_a_worklist_without_the_study_has_no_link_to_its_images(tiered, offered):
    # The regional reader was not offered it; facility staff have no worklist.
    page = signed_in(tiered["regional"].user).get("/worklist/").content.decode()
    assert offered.study_instance_uid not in page and "open-images" not in page


# --- the study page -------------------------------------------------------------------


def _series(study, number, images, description="AX T2"):
    series = Series.objects.create(
        study=study,
        series_instance_uid=f"{study.study_instance_uid}.{number}",
        modality="CT",
        series_number=number,
        series_description=description,
    )
    for i in range(images):
        Instance.objects.create(
            series=series,
            sop_instance_uid=f"{series.series_instance_uid}.{i}",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            size_bytes=1,
            sha256="0" * 64,
            storage_key="k",
            received_at=timezone.now(),
        )
    return series


def test_the_study_page_shows_a_thumbnail_of_each_series(tiered, offered):
    second = _series(offered, 2, 3, "Bone window")
    first = _series(offered, 1, 1, "Soft tissue")
    page = signed_in(tiered["local"].user).get(f"/studies/{offered.pk}/").content.decode()
    thumbs = re.findall(r'<img class="thumb" loading="lazy" src="([^"]+)"', page)
    uid = offered.study_instance_uid
    assert thumbs == [  # in series-number order
        f"/dicomweb/studies/{uid}/series/{first.series_instance_uid}/thumbnail",
        f"/dicomweb/studies/{uid}/series/{second.series_instance_uid}/thumbnail",
    ]
    assert 'alt="Series 1: Soft tissue (CT)"' in page
    assert "#2 Bone window</strong>" in page and "CT · 3 images" in page
    assert "CT · 1 image<" in page
    assert 'class="no-preview"' in page  # the fallback when the thumbnail fails


def test_the_study_page_reads_the_series_in_one_query(tiered, offered, django_assert_num_queries):
    client = signed_in(tiered["local"].user)
    _series(offered, 1, 2)
    client.get(f"/studies/{offered.pk}/")  # warm the session and content types
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        client.get(f"/studies/{offered.pk}/")
    for n in range(2, 6):
        _series(offered, n, n)
    with django_assert_num_queries(len(one.captured_queries)):
        page = client.get(f"/studies/{offered.pk}/").content.decode()
    assert page.count('<img class="thumb"') == 5


def test_the_study_page_links_to_the_images(tiered, offered):
    page = signed_in(tiered["local"].user).get(f"/studies/{offered.pk}/").content.decode()
    assert _viewer_link(offered) in page
    assert 'aria-keyshortcuts="i"' in page


def test_the_study_page_of_a_study_out_of_reach_is_a_404_with_no_link(
    tiered, offered, staff_a, staff_b
):
    for user in (tiered["regional"].user, staff_b):
        response = Client(raise_request_exception=False)
        response.force_login(user)
        page = response.get(f"/studies/{offered.pk}/")
        assert page.status_code == 404
        assert b"/viewer/" not in page.content
    # Facility staff of the study's facility see the study, so its images too.
    assert (
        _viewer_link(offered).encode() in signed_in(staff_a).get(f"/studies/{offered.pk}/").content
    )


def test_the_study_page_clock(tiered, offered):
    client = signed_in(tiered["local"].user)
    Study.objects.filter(pk=offered.pk).update(
        sla_due_at=NOW + dt.timedelta(minutes=27, seconds=33)
    )
    with time_machine.travel(NOW, tick=False):
        page = client.get(f"/studies/{offered.pk}/").content.decode()
    assert " · Offered · <span" in page and ">due in 27m 33s</span>" in page
    Study.objects.filter(pk=offered.pk).update(
        received_at=NOW - dt.timedelta(hours=1), sla_due_at=NOW - dt.timedelta(minutes=10)
    )
    with time_machine.travel(NOW, tick=False):
        page = client.get(f"/studies/{offered.pk}/").content.decode()
    assert ">overdue by 10m</span>" in page and "due in" not in page


def test_a_cancelled_study_shows_no_clock(tiered, offered, group_admin):
    study_transition(study_id=offered.pk, to_status="cancelled")
    page = signed_in(group_admin).get(f"/studies/{offered.pk}/").content.decode()
    assert "Cancelled</p>" in page
    assert "data-due" not in page and "due in" not in page and "overdue" not in page

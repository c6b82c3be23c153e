"""What the reading pages (worklist, study page, report editor) show of a study: the
link to its images, its series' thumbnails, its SLA clock, its wait and the patient's
age.  Each is computed here once, in Python; teleradiology.js only keeps the SLA
clock ticking between page loads, in the same words.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any
from urllib.parse import quote, urlencode

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from network.models import Priority
from studies.models import Study
from studies.states import TERMINAL_STATES
from worklist import aging

register = template.Library()

# The bundled viewer (OHIF, viewer/) and the DICOMweb server (dicomweb/) by path: same
# origin, so the session that shows the page authorises the images.
VIEWER_PATH = "/viewer/"
DICOMWEB_PATH = "/dicomweb/"
# One named window for every study: the editor stays beside it and the next case
# reuses it instead of opening one more tab.
VIEWER_WINDOW = "telerad-viewer"


def viewer_url(study: Study) -> str:
    """The viewer showing ``study``'s images."""
    return f"{VIEWER_PATH}?{urlencode({'StudyInstanceUIDs': study.study_instance_uid})}"


def thumbnail_url(study_instance_uid: str, series_instance_uid: str) -> str:
    """The DICOMweb server's rendered JPEG of one series."""
    return (
        f"{DICOMWEB_PATH}studies/{quote(study_instance_uid, safe='')}"
        f"/series/{quote(series_instance_uid, safe='')}/thumbnail"
    )


@register.simple_tag
def open_images(study: Study, shortcut: str = "i") -> SafeString:
    """The "Open images" link: the viewer in the one named viewer window.

    Shown wherever the study is: a page that renders it has already decided that
    the user may see the study, and the images are the study's.
    """
    return format_html(
        '<a class="open-images button" id="open-images-{}" href="{}" target="{}" '
        'title="Open the images in the viewer window ({})" aria-keyshortcuts="{}">'
        "Open images <kbd>{}</kbd></a>",
        study.pk,
        viewer_url(study),
        VIEWER_WINDOW,
        shortcut,
        shortcut,
        shortcut,
    )


@register.simple_tag
def series_thumbnail(study: Study, series: Any) -> str:
    """The URL of a series' thumbnail (``series`` is a studies.Series)."""
    return thumbnail_url(study.study_instance_uid, series.series_instance_uid)


def _rounded(seconds: float) -> int:
    return math.floor(seconds + 0.5)  # as JavaScript's Math.round


def clock_text(seconds: float) -> str:
    """A time left to the second, as the worklist has always shown it: 1h 05m 33s."""
    s = max(_rounded(seconds), 0)
    h, m, r = s // 3600, (s % 3600) // 60, s % 60
    return (f"{h}h " if h else "") + f"{m:02d}m {r:02d}s"


def span_text(seconds: float) -> str:
    """A span to the minute, for waits and overdue times: <1m, 10m, 2h 05m, 3d 04h."""
    s = max(math.floor(seconds), 0)
    if s < 60:
        return "<1m"
    minutes = s // 60
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m"


def sla_text(due: dt.datetime, now: dt.datetime, *, phrase: bool = False) -> str:
    """The SLA clock: "27m 33s" left (with ``phrase``, "due in 27m 33s"), or
    "overdue by 10m" once the due time has passed."""
    left = (due - now).total_seconds()
    if left < 0:
        return f"overdue by {span_text(-left)}"
    return ("due in " if phrase else "") + clock_text(left)


@register.simple_tag
def sla_clock(study: Study, phrase: bool = False) -> SafeString | str:
    """The study's SLA clock as a live element (teleradiology.js ticks it), or nothing
    once the study is final or cancelled: its clock has stopped."""
    if study.status in TERMINAL_STATES:
        return ""
    now = timezone.now()
    overdue = study.sla_due_at < now
    return format_html(
        '<span class="{}" data-due="{}" data-due-phrase="{}">{}</span>',
        "sla overdue" if overdue else "sla",
        study.sla_due_at.isoformat(),
        "yes" if phrase else "no",
        sla_text(study.sla_due_at, now, phrase=phrase),
    )


@register.filter
def waited(since: dt.datetime | None) -> str:
    """How long ago ``since`` was, to the minute (a study's wait since it arrived)."""
    if since is None:
        return ""
    return span_text((timezone.now() - since).total_seconds())


@register.filter
def ranked_as(study: Study) -> str:
    """On a worklist row, the priority the study now ranks with after waiting (aging,
    worklist.aging), when that is more urgent than its own: "ranked as STAT".  From
    the row's key alone: its aging step is the key's offset over the levels below
    STAT (a STAT study never ranks higher than its own)."""
    key: dt.datetime | None = getattr(study, "wl_rank", None)
    if key is None or study.priority <= aging.STAT:
        return ""
    step = (key - study.received_at) / (study.priority - aging.STAT)
    if step <= dt.timedelta(0):
        return ""
    aged = aging.aged_priority(
        priority=study.priority, waited=timezone.now() - study.received_at, step=step
    )
    level = max(aging.STAT, math.ceil(aged))
    if level >= study.priority:
        return ""
    return f"ranked as {Priority(level).label}"


def age_text(born: dt.date | None, on: dt.date) -> str:
    """An age as radiology systems show it: "54 y" from two years on, "8 mo" from a
    month, "12 d" before that; "" when the birth date is unknown or after ``on``."""
    if born is None or born > on:
        return ""
    months = (on.year - born.year) * 12 + on.month - born.month - (on.day < born.day)
    if months >= 24:
        return f"{months // 12} y"
    if months >= 1:
        return f"{months} mo"
    return f"{(on - born).days} d"


@register.filter
def patient_age(study: Study) -> str:
    """The patient's age on the day of the study (today if the study date is unknown)."""
    return age_text(study.patient_birth_date, study.study_date or timezone.localdate())

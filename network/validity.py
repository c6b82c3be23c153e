"""When a license or privilege is valid, as instants: pure (the standard library only).

A credential's dates are civil dates where it was granted: a license's in its
jurisdiction's time zone, a privilege's in its facility's.  It is valid from the
start of its first day there to the end of its last day there, or, when it ends at a
time of day, to that time on its last day.  Judged on the UTC date instead, an
Australian license that ends on 6 December would stay valid until 11:00 on the 7th in
Sydney.  The selectors turn rows into these instants and routing's pure policy
compares them with the time of the read.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The time zone named (cached: a batch of decisions reads thousands of rows)."""
    return ZoneInfo(name)


@lru_cache(maxsize=65536)
def validity_window(
    valid_from: dt.date, valid_to: dt.date, until: dt.time | None, zone_name: str
) -> tuple[dt.datetime, dt.datetime]:
    """``(starts_at, ends_at)`` in UTC, the end exclusive: from local midnight starting
    ``valid_from`` to local midnight ending ``valid_to`` (a day of 23 or 25 hours when
    the clocks change), or to ``until`` on ``valid_to`` when given.  A local time the
    clocks skip is read with the offset before the change (``fold=0``)."""
    tz = zone(zone_name)
    starts = dt.datetime.combine(valid_from, dt.time(0), tzinfo=tz)
    if until is None and valid_to >= dt.date.max - dt.timedelta(days=1):
        return starts.astimezone(dt.UTC), dt.datetime.max.replace(tzinfo=dt.UTC)  # open-ended
    if until is None:
        ends = dt.datetime.combine(valid_to + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
    else:
        ends = dt.datetime.combine(valid_to, until.replace(tzinfo=None), tzinfo=tz)
    return starts.astimezone(dt.UTC), ends.astimezone(dt.UTC)

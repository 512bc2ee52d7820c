"""The clock, and `rebuild_every`'s periods: a freshness rule, not a part of the content key.

An image of a bake with `rebuild_every` is fresh while it was created at or after the start of
the current period, in UTC: the day from 00:00, the ISO week from Monday 00:00, the month from
the 1st. A stale image is rebaked even though its inputs are the same; changing the schedule
rebakes only an image that is too old under the new one.

The clock is UTC. BAKEHOUSE_NOW (ISO 8601) overrides it, to check a schedule ahead of time;
it must fall from 1970 to 9998 in UTC (EARLIEST, LATEST), so that every date computed from it
(a period's start, an age, a time in an image id) is a date.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from .errors import BakehouseError


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # the epoch: SOURCE_DATE_EPOCH and file times start there
LATEST = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)  # a year short of datetime's end: a week's start, a date


def now_utc() -> datetime:
    override = os.environ.get("BAKEHOUSE_NOW")
    if not override:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(override)
        moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except ValueError:
        raise BakehouseError(f"BAKEHOUSE_NOW={override!r} is not an ISO 8601 time such as 2026-11-30T00:00:00Z") from None
    except OverflowError:
        moment = None
    if moment is None or not EARLIEST <= moment <= LATEST:
        raise BakehouseError(f"BAKEHOUSE_NOW={override!r} is out of range: give a time from "
                             f"{EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d} (UTC)")
    return moment


def epoch(period: str | None, now: datetime) -> str | None:
    """The label of the period `now` falls in: 2026-11-22, 2026-W47 or 2026-11."""
    if period is None:
        return None
    now = now.astimezone(UTC)
    if period == "day":
        return now.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = now.isocalendar()
        return f"{year}-W{week:02d}"
    return now.strftime("%Y-%m")


def period_start(period: str, now: datetime) -> datetime:
    """When the period `now` falls in began (UTC midnight of its first day)."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return midnight
    if period == "week":
        return midnight - timedelta(days=midnight.weekday())
    return midnight.replace(day=1)


def staleness(period: str | None, now: datetime, created: datetime) -> str | None:
    """Why an image created at `created` is too old under `rebuild_every = period`, or None
    while it is fresh: `older than this week (2026-W48 began 2026-11-23)`."""
    if period is None:
        return None
    start = period_start(period, now)
    if created >= start:
        return None
    this = {"day": "today", "week": "this week", "month": "this month"}[period]
    return f"older than {this} ({epoch(period, now)} began {start:%Y-%m-%d})"

"""Rebuild epochs: `rebuild_every = "week"` puts the ISO week into the content key.

The clock is UTC. BAKEHOUSE_NOW (ISO 8601) overrides it, to check a schedule ahead of time.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from .errors import BakehouseError


def now_utc() -> datetime:
    override = os.environ.get("BAKEHOUSE_NOW")
    if not override:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(override)
    except ValueError:
        raise BakehouseError(f"BAKEHOUSE_NOW={override!r} is not an ISO 8601 time such as 2026-11-30T00:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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

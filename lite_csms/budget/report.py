"""One station's report record, shared by `lite-csms budget report` and the admin API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.budget import counters, usage
from lite_csms.config import Settings
from lite_csms.db.models import Station

TOP_ACTIONS = 3
_READ = object()


def station_record(found: usage.StationUsage, now: datetime, by: str | None = None,
                   with_days: bool = False, flushed_at: Any = _READ) -> dict[str, Any]:
    """Usage and status, the top actions, the breakdown `by` (if any) and the per-day totals.

    `flushed_at` is when the server last wrote its counts (None: never): the figures are as
    of then, up to one traffic_flush_interval behind live traffic. Read from the store unless
    the caller, reporting many stations, passes it.
    """
    actions = usage.breakdown("action", found, now)
    if flushed_at is _READ:
        mark = counters.last_flush()
        flushed_at = None if mark is None else mark.flushed_at
    record: dict[str, Any] = {**found.as_dict(), "flushed_at": flushed_at,
                              "top_actions": actions[:TOP_ACTIONS]}
    if by is not None:
        record["by"] = by
        record["breakdown"] = actions if by == "action" else usage.breakdown(by, found, now)
    if with_days:
        record["days"] = record["breakdown"] if by == "day" else usage.breakdown("day", found,
                                                                                 now)
    return record


def station_report(station_id: str, settings: Settings, now: datetime,
                   month: tuple[int, int] | None, by: str | None) -> dict[str, Any] | None:
    """GET /stations/{id}/budget: station_record for the current cycle (or `month`) with its
    effective budget settings; None for an unknown station (a store job)."""
    if Station.get_or_none(Station.id == station_id) is None:
        return None
    found = usage.station_usage(station_id, settings, now, month)
    return {**station_record(found, now, by),
            "budget": usage.effective_budget(station_id, settings).as_dict()}

"""One station's report record, shared by `lite-csms budget report` and the admin API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.budget import usage

TOP_ACTIONS = 3


def station_record(found: usage.StationUsage, now: datetime, by: str | None = None,
                   with_days: bool = False) -> dict[str, Any]:
    """Usage and status, the top actions, the breakdown `by` (if any) and the per-day totals."""
    actions = usage.breakdown("action", found, now)
    record: dict[str, Any] = {**found.as_dict(), "top_actions": actions[:TOP_ACTIONS]}
    if by is not None:
        record["by"] = by
        record["breakdown"] = actions if by == "action" else usage.breakdown(by, found, now)
    if with_days:
        record["days"] = record["breakdown"] if by == "day" else usage.breakdown("day", found,
                                                                                 now)
    return record

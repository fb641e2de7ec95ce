"""Deviations lenient mode accepted from a station, counted per message type and field."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from lite_csms.db.models import StationDeviation
from lite_csms.ocppj.lenient import Deviation


def record(station_id: str, action: str, deviations: Iterable[Deviation], at: datetime) -> None:
    """Count one message's deviations: one row per (action, kind, path), its count + 1."""
    for deviation in deviations:
        StationDeviation.insert(
            station=station_id, action=action, kind=deviation.kind, path=deviation.path,
            count=1, first_at=at, last_at=at, example=deviation.example,
        ).on_conflict(
            conflict_target=[StationDeviation.station, StationDeviation.action,
                             StationDeviation.kind, StationDeviation.path],
            update={StationDeviation.count: StationDeviation.count + 1,
                    StationDeviation.last_at: at, StationDeviation.example: deviation.example},
        ).execute()


def rows(station_id: str) -> list[dict[str, Any]]:
    """A station's deviations, most frequent first: action, kind, field, count, times, example."""
    query = (StationDeviation.select()
             .where(StationDeviation.station == station_id)
             .order_by(StationDeviation.count.desc(), StationDeviation.action,
                       StationDeviation.path))
    return [{"action": d.action, "kind": d.kind, "field": d.path, "count": d.count,
             "first_at": d.first_at, "last_at": d.last_at, "example": d.example}
            for d in query]

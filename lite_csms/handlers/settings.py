"""Station configuration as the charger reports it, kept per key."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from lite_csms.db.models import StationSetting


def store(
    station_id: str, values: Iterable[tuple[str, str | None, bool]], at: datetime
) -> int:
    rows = [{"station": station_id, "key": key, "value": value, "readonly": readonly,
             "updated_at": at} for key, value, readonly in values]
    if not rows:
        return 0
    return (StationSetting.insert_many(rows)
            .on_conflict(conflict_target=[StationSetting.station, StationSetting.key],
                         preserve=[StationSetting.value, StationSetting.readonly,
                                   StationSetting.updated_at])
            .as_rowcount().execute())


def read(station_id: str) -> dict[str, str | None]:
    query = StationSetting.select().where(StationSetting.station == station_id)
    return {row.key: row.value for row in query.order_by(StationSetting.key)}

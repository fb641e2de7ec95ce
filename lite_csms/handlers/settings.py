"""Station configuration as the charger reports it, kept per key."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from lite_csms.db import statements
from lite_csms.db.models import StationSetting, UtcDateTimeField

_STORED = UtcDateTimeField()
_UPSERT = ('INSERT INTO "station_setting" ("station_id", "key", "value", "readonly", '
           '"updated_at") VALUES (?, ?, ?, ?, ?) ON CONFLICT ("station_id", "key") DO UPDATE '
           'SET "value" = excluded."value", "readonly" = excluded."readonly", '
           '"updated_at" = excluded."updated_at"')


def store(
    station_id: str, values: Iterable[tuple[str, str | None, bool]], at: datetime
) -> int:
    stored_at = _STORED.db_value(at)
    rows = [(station_id, key, value, readonly, stored_at) for key, value, readonly in values]
    if not rows:
        return 0
    # Each accepted setting passes here (the policy's at a first boot): one prepared upsert.
    return max(statements.connection(StationSetting).executemany(_UPSERT, rows).rowcount, 0)


def read(station_id: str) -> dict[str, str | None]:
    query = StationSetting.select().where(StationSetting.station == station_id)
    return {row.key: row.value for row in query.order_by(StationSetting.key)}

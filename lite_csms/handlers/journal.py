"""Notifications kept as received, for the operator to read back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from lite_csms.db.models import StationEvent


def record(station_id: str, action: str, payload: dict[str, Any], at: datetime | None) -> None:
    StationEvent.create(
        station=station_id, action=action, timestamp=at, payload=orjson.dumps(payload).decode()
    )

"""Firmware management: status reports from the station, kept and linked to their request."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.handlers import journal, maintenance


def record_firmware_status(
    station_id: str, payload: dict[str, Any], at: datetime | None
) -> None:
    journal.record(station_id, "FirmwareStatusNotification", payload, at)
    if at is not None:
        maintenance.progress(station_id, maintenance.FIRMWARE, payload.get("requestId"),
                             payload["status"], at)

"""Firmware management: status reports from the station."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.handlers import journal


def record_firmware_status(
    station_id: str, payload: dict[str, Any], at: datetime | None
) -> None:
    journal.record(station_id, "FirmwareStatusNotification", payload, at)

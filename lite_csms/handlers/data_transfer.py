"""Data transfer: vendor-specific messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.handlers import journal

# No vendor extensions are installed, so every vendor is unknown (both 1.6 and 2.x spell it so).
KNOWN_VENDORS: frozenset[str] = frozenset()


def receive(station_id: str, payload: dict[str, Any], at: datetime) -> str:
    journal.record(station_id, "DataTransfer", payload, at)
    return "Accepted" if payload.get("vendorId") in KNOWN_VENDORS else "UnknownVendorId"

"""Diagnostics: log/diagnostics uploads, security events, monitoring events, device reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.handlers import journal


def record_notification(
    station_id: str, action: str, payload: dict[str, Any], at: datetime | None
) -> None:
    journal.record(station_id, action, payload, at)

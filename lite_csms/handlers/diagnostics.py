"""Diagnostics: log/diagnostics uploads, security events, monitoring events, device reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.handlers import journal, maintenance

# Upload progress reports: 1.6 DiagnosticsStatusNotification, 2.x LogStatusNotification.
UPLOAD_STATUS_ACTIONS = frozenset({"DiagnosticsStatusNotification", "LogStatusNotification"})


def record_notification(
    station_id: str, action: str, payload: dict[str, Any], at: datetime | None
) -> None:
    journal.record(station_id, action, payload, at)
    if action in UPLOAD_STATUS_ACTIONS and at is not None:
        maintenance.progress(station_id, maintenance.DIAGNOSTICS, payload.get("requestId"),
                             payload["status"], at)

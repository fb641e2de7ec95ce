"""Availability: connector status and its history."""

from __future__ import annotations

from datetime import datetime

from lite_csms.db.models import Connector, ConnectorStatusChange


def record_status(
    station_id: str, evse_id: int, connector_id: int, status: str, at: datetime,
    error_code: str | None = None, info: str | None = None,
) -> bool:
    """Store a status report; return False for a retransmitted one."""
    connector, created = Connector.get_or_create(
        station=station_id, evse_id=evse_id, connector_id=connector_id,
        defaults={"status": status, "error_code": error_code, "info": info, "status_at": at},
    )
    if not created:
        repeat = ConnectorStatusChange.select().where(
            ConnectorStatusChange.connector == connector,
            ConnectorStatusChange.timestamp == at,
            ConnectorStatusChange.status == status,
        ).exists()
        if repeat:
            return False
        # Reports sent while offline may arrive late; the newest one decides the current status.
        if at >= connector.status_at:
            connector.status = status
            connector.error_code = error_code
            connector.info = info
            connector.status_at = at
            connector.save()
    ConnectorStatusChange.create(
        connector=connector, status=status, error_code=error_code, info=info, timestamp=at
    )
    return True

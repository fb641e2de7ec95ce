"""The command log: every CSMS-initiated CALL, its queue state and its outcome."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson

from lite_csms.db import statements
from lite_csms.db.models import Command, UtcDateTimeField

_STORED = UtcDateTimeField()
_EXPIRE = ('UPDATE "command" SET "status" = \'expired\', "finished_at" = ? '
           'WHERE "station_id" = ? AND "status" = \'queued\' AND "expires_at" <= ?')
_DUE = ('SELECT "id", "action", "payload" FROM "command" '
        'WHERE "station_id" = ? AND "status" = \'queued\' ORDER BY "created_at", "id"')


def create(
    station_id: str, action: str, payload: dict[str, Any], requested_by: str, status: str,
    at: datetime, ttl: timedelta | None = None,
) -> int:
    command = Command.create(
        station=station_id, action=action, payload=orjson.dumps(payload).decode(),
        requested_by=requested_by, status=status, created_at=at,
        expires_at=at + ttl if ttl is not None else None,
        sent_at=at if status == "sent" else None,
        finished_at=at if status == "offline" else None,
    )
    return command.id


def mark_sent(command_id: int, at: datetime) -> None:
    Command.update(status="sent", sent_at=at).where(Command.id == command_id).execute()


def finish(
    command_id: int, status: str, at: datetime, result: dict[str, Any] | None = None,
    error_code: str | None = None, error_description: str | None = None,
) -> None:
    Command.update(
        status=status, finished_at=at,
        result=None if result is None else orjson.dumps(result).decode(),
        error_code=error_code, error_description=error_description,
    ).where(Command.id == command_id).execute()


def take_due(station_id: str, at: datetime) -> list[tuple[int, str, dict[str, Any]]]:
    """Queued commands still valid, oldest first; the stale ones are marked expired."""
    # Run at every connection: prepared statements rather than built queries.
    conn = statements.connection(Command)
    stored_at = _STORED.db_value(at)
    conn.execute(_EXPIRE, (stored_at, station_id, stored_at))
    return [(command_id, action, orjson.loads(payload))
            for command_id, action, payload in conn.execute(_DUE, (station_id,))]

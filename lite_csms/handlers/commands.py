"""The command log: every CSMS-initiated CALL, its queue state and its outcome."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

from lite_csms.db import statements
from lite_csms.db.models import Command, UtcDateTimeField

_STORED = UtcDateTimeField()
_NEW_FIELDS = ("station", "action", "payload", "requested_by", "status", "created_at",
               "expires_at", "sent_at", "finished_at")
_FINISH = ('UPDATE "command" SET "status" = ?, "finished_at" = ?, "result" = ?, '
           '"error_code" = ?, "error_description" = ? WHERE "id" = ?')
_EXPIRE = ('UPDATE "command" SET "status" = \'expired\', "finished_at" = ? '
           'WHERE "station_id" = ? AND "status" = \'queued\' AND "expires_at" <= ?')
_ANY_QUEUED = ('SELECT 1 FROM "command" WHERE "station_id" = ? AND "status" = \'queued\' '
               'LIMIT 1')
_DUE = ('SELECT "id", "action", "payload" FROM "command" '
        'WHERE "station_id" = ? AND "status" = \'queued\' ORDER BY "created_at", "id"')


def create(
    station_id: str, action: str, payload: dict[str, Any], requested_by: str, status: str,
    at: datetime, ttl: timedelta | None = None,
) -> int:
    # Every CSMS-initiated CALL passes here (six at a 1.6 station's first boot): a
    # prepared statement, not a built query.
    stored = _STORED.db_value
    return statements.insert_one(Command, _NEW_FIELDS, (
        station_id, action, orjson.dumps(payload).decode(), requested_by, status, stored(at),
        stored(at + ttl) if ttl is not None else None, stored(at) if status == "sent" else None,
        stored(at) if status == "offline" else None))


def mark_sent(command_id: int, at: datetime) -> None:
    statements.connection(Command).execute(
        'UPDATE "command" SET "status" = \'sent\', "sent_at" = ? WHERE "id" = ?',
        (_STORED.db_value(at), command_id))


def finish(
    command_id: int, status: str, at: datetime, result: dict[str, Any] | None = None,
    error_code: str | None = None, error_description: str | None = None,
) -> None:
    statements.connection(Command).execute(_FINISH, (
        status, _STORED.db_value(at), None if result is None else orjson.dumps(result).decode(),
        error_code, error_description, command_id))


def forget(command_ids: Sequence[int]) -> None:
    """Drop rows logged for commands that were never sent (net/commands.py send_each_on)."""
    statements.connection(Command).executemany('DELETE FROM "command" WHERE "id" = ?',
                                               [(command_id,) for command_id in command_ids])


def redact(command_id: int, payload: dict[str, Any]) -> None:
    """Replace the logged payload (a password's, once it is sent: operations/secret.py)."""
    Command.update(payload=orjson.dumps(payload).decode()).where(
        Command.id == command_id).execute()


def has_queued(station_id: str) -> bool:
    """Whether any command waits for the station (take_due has something to do)."""
    return statements.connection(Command).execute(_ANY_QUEUED, (station_id,)).fetchone() \
        is not None


def take_due(station_id: str, at: datetime) -> list[tuple[int, str, dict[str, Any]]]:
    """Queued commands still valid, oldest first; the stale ones are marked expired."""
    # Run at every connection: prepared statements rather than built queries.
    conn = statements.connection(Command)
    stored_at = _STORED.db_value(at)
    conn.execute(_EXPIRE, (stored_at, station_id, stored_at))
    return [(command_id, action, orjson.loads(payload))
            for command_id, action, payload in conn.execute(_DUE, (station_id,))]

"""The command log: every CSMS-initiated CALL, its queue state and its outcome."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson

from lite_csms.db.models import Command


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


def redact(command_id: int, payload: dict[str, Any]) -> None:
    """Replace the logged payload (a password's, once it is sent: operations/secret.py)."""
    Command.update(payload=orjson.dumps(payload).decode()).where(
        Command.id == command_id).execute()


def take_due(station_id: str, at: datetime) -> list[tuple[int, str, dict[str, Any]]]:
    """Queued commands still valid, oldest first; the stale ones are marked expired."""
    Command.update(status="expired", finished_at=at).where(
        Command.station == station_id, Command.status == "queued", Command.expires_at <= at
    ).execute()
    due = (Command.select().where(Command.station == station_id, Command.status == "queued")
           .order_by(Command.created_at, Command.id))
    return [(c.id, c.action, orjson.loads(c.payload)) for c in due]

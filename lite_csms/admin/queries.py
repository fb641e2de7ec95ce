"""Reads and small writes for the admin API; each runs inside the store writer."""

from __future__ import annotations

from typing import Any

import peewee as pw

from lite_csms.db.models import Command, IdToken, Reservation, Station, Transaction
from lite_csms.handlers import deviations, device_model, maintenance, settings, smart_charging
from lite_csms.handlers.authorization import TOKEN_STATUSES, check_token, find_token
from lite_csms.ocppj import timestamps
from lite_csms.views import (
    command_row,
    connector_rows,
    reservation_row,
    sample_rows,
    station_row,
    token_row,
    transaction_row,
)


def stations() -> list[dict[str, Any]]:
    return [station_row(s) for s in Station.select().order_by(Station.id)]


def station(station_id: str) -> dict[str, Any] | None:
    found = Station.get_or_none(Station.id == station_id)
    if found is None:
        return None
    return {**station_row(found), "connectors": connector_rows(found),
            "settings": settings.read(station_id),
            "reservations": [reservation_row(r) for r in found.reservations.where(
                Reservation.status.in_(("requested", "accepted"))).order_by(Reservation.id)],
            "charging_profiles": smart_charging.profile_rows(station_id),
            "composite_schedules": smart_charging.schedule_rows(station_id),
            "firmware_update": maintenance.latest(station_id, maintenance.FIRMWARE),
            "diagnostics": maintenance.latest(station_id, maintenance.DIAGNOSTICS),
            "device_reports": device_model.reports(station_id),
            "deviations": deviations.rows(station_id)}


def device_model_of(station_id: str) -> dict[str, Any] | None:
    if Station.get_or_none(Station.id == station_id) is None:
        return None
    return {"reports": device_model.reports(station_id),
            "variables": device_model.variables(station_id)}


def station_protocol(station_id: str) -> str | None:
    """The last protocol the station spoke, '' if it never connected, None if unknown."""
    found = Station.get_or_none(Station.id == station_id)
    return None if found is None else (found.protocol or "")


def tokens() -> list[dict[str, Any]]:
    return [token_row(t) for t in IdToken.select().order_by(IdToken.token)]


def add_token(data: dict[str, Any]) -> dict[str, Any]:
    value = check_token(data.get("token") if isinstance(data.get("token"), str) else "")
    status = data.get("status", "Accepted")
    if status not in TOKEN_STATUSES:
        raise ValueError(f"status must be one of {', '.join(TOKEN_STATUSES)}")
    expires = data.get("expires_at")
    try:
        expires_at = timestamps.parse(expires) if isinstance(expires, str) else None
    except ValueError:
        raise ValueError("expires_at must be an ISO 8601 date-time") from None
    existing = find_token(value)
    if existing is not None:
        raise ValueError(f"token {value!r} is already registered as {existing.token!r} "
                         "(id tokens are case-insensitive)")
    try:
        token = IdToken.create(token=value, token_type=str(data.get("type", "ISO14443")),
                               status=status, expires_at=expires_at,
                               group_token=data.get("group"))
    except pw.IntegrityError:
        raise ValueError(f"token {value!r} is already registered") from None
    return token_row(token)


def token(value: str) -> dict[str, Any] | None:
    found = find_token(value)
    return None if found is None else token_row(found)


def set_token_status(value: str, status: Any) -> dict[str, Any] | None:
    """Block or unblock (any status) the token `value` names in any letter case."""
    if status not in TOKEN_STATUSES:
        raise ValueError(f"status must be one of {', '.join(TOKEN_STATUSES)}")
    found = find_token(value)
    if found is None:
        return None
    found.status = status
    found.save()
    return token_row(found)


def transactions(station_id: str | None, active: bool, limit: int) -> list[dict[str, Any]]:
    query = Transaction.select().order_by(Transaction.started_at.desc(), Transaction.id.desc())
    if station_id:
        query = query.where(Transaction.station == station_id)
    if active:
        query = query.where(Transaction.stopped_at.is_null())
    return [transaction_row(t) for t in query.limit(limit)]


def transaction(tx_id: int) -> dict[str, Any] | None:
    tx = Transaction.get_or_none(Transaction.id == tx_id)
    return None if tx is None else {**transaction_row(tx), "samples": sample_rows(tx)}


def station_tx_id(station_id: str, tx_id: int) -> tuple[bool, str | None]:
    tx = Transaction.get_or_none(Transaction.id == tx_id, Transaction.station == station_id)
    return (False, None) if tx is None else (True, tx.station_tx_id)


def next_request_id() -> int:
    # remoteStartId, requestId, a new profile id: any positive integer unique per request will
    # do, and the command log's next id is one (the station echoes it back).
    return (Command.select(pw.fn.MAX(Command.id)).scalar() or 0) + 1


def commands(station_id: str, limit: int = 100) -> list[dict[str, Any]]:
    query = (Command.select().where(Command.station == station_id)
             .order_by(Command.id.desc()).limit(limit))
    return [command_row(c) for c in query]


def command(command_id: int) -> dict[str, Any] | None:
    found = Command.get_or_none(Command.id == command_id)
    return None if found is None else command_row(found)

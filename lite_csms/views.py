"""Records as the operator sees them, shared by the CLI listings and the admin API."""

from __future__ import annotations

from typing import Any

import orjson

from lite_csms.db.models import (
    Command,
    Connector,
    IdToken,
    MeterSample,
    Reservation,
    Station,
    Transaction,
)
from lite_csms.passwords import is_fast
from lite_csms.sharing.money import format_amount


def station_row(station: Station) -> dict[str, Any]:
    return {
        "id": station.id, "registration": station.registration, "online": station.online,
        "protocol": station.protocol, "vendor": station.vendor, "model": station.model,
        "serial_number": station.serial_number, "firmware_version": station.firmware_version,
        "password": station.password_hash is not None,
        # generated, chosen (scrypt: a KDF run per login after a restart), or None.
        "password_kind": password_kind(station),
        "last_boot_at": station.last_boot_at, "last_seen_at": station.last_seen_at,
        # None: the server's security_profile_default applies.
        "security_profile": station.security_profile,
    }


def password_kind(station: Station) -> str | None:
    """generated or chosen, and what a password rotation waits for (net/rotation.py):
    "generated (chosen kept)" until the station first logs in with the new one, "(N sent)"
    while N new ones are unconfirmed."""
    if station.password_hash is None:
        return None
    kind = "generated" if is_fast(station.password_hash) else "chosen"
    if station.previous_password_hash is not None:
        kind += " (chosen kept)"
    elif station.pending_password_hash:
        kind += f" ({len(station.pending_password_hash.split())} sent)"
    return kind


def connector_rows(station: Station) -> list[dict[str, Any]]:
    return [
        {"evse": c.evse_id, "connector": c.connector_id, "status": c.status,
         "error": c.error_code, "since": c.status_at}
        for c in station.connectors.order_by(Connector.evse_id, Connector.connector_id)
    ]


def token_row(token: IdToken) -> dict[str, Any]:
    return {"token": token.token, "type": token.token_type, "status": token.status,
            "expires_at": token.expires_at, "group": token.group_token}


def transaction_row(tx: Transaction) -> dict[str, Any]:
    energy = tx.energy_wh
    return {
        "id": tx.id, "station": tx.station_id, "station_tx_id": tx.station_tx_id,
        "evse": tx.evse_id, "connector": tx.connector_id, "token": tx.id_token,
        "auth_status": tx.auth_status, "started_at": tx.started_at, "stopped_at": tx.stopped_at,
        "meter_start_wh": tx.meter_start_wh, "meter_stop_wh": tx.meter_stop_wh,
        "energy_wh": energy, "energy_kwh": None if energy is None else energy / 1000,
        "reason": tx.stop_reason, "offline": tx.offline, "seq_no_gaps": tx.seq_no_gaps,
        "flag": f"REVIEW: {tx.review}" if tx.review else None,
        "reconstructed": tx.reconstructed, "review_reason": tx.review_reason,
        # The price the session was taken at and its cost (minor units; sharing/pricing.py).
        "currency": tx.price_currency, "cost": tx.cost,
        "cost_text": (None if tx.cost is None or tx.price_currency is None
                      else format_amount(tx.cost, tx.price_currency)),
    }


def sample_rows(tx: Transaction) -> list[dict[str, Any]]:
    return [
        {"timestamp": s.timestamp, "measurand": s.measurand, "value": s.value, "unit": s.unit,
         "phase": s.phase or None, "context": s.context or None}
        for s in tx.samples.order_by(MeterSample.timestamp, MeterSample.id)
    ]


def reservation_row(reservation: Reservation) -> dict[str, Any]:
    return {"id": reservation.id, "evse": reservation.evse_id, "token": reservation.id_token,
            "expires_at": reservation.expires_at, "status": reservation.status,
            "transaction": reservation.transaction_id}


def command_row(command: Command) -> dict[str, Any]:
    return {
        "id": command.id, "station": command.station_id, "action": command.action,
        "payload": orjson.loads(command.payload), "requested_by": command.requested_by,
        "status": command.status, "created_at": command.created_at,
        "expires_at": command.expires_at, "sent_at": command.sent_at,
        "finished_at": command.finished_at,
        "result": None if command.result is None else orjson.loads(command.result),
        "error_code": command.error_code, "error_description": command.error_description,
    }

"""Provisioning: registration, boot, presence.

A station's registration is what its BootNotification is answered (1.6 4.2, 2.0.1 B01-B03):
accepted, pending (the CSMS may read and set its configuration; it may send only what it is
asked for) or rejected (it may send nothing but BootNotification, and the CSMS sends it
nothing). The operator sets it; it takes effect at the station's next BootNotification.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection
from datetime import datetime
from typing import Any

from lite_csms.db import bulk, statements
from lite_csms.db.models import Station, UtcDateTimeField, database_proxy
from lite_csms.domain import BootInfo

log = logging.getLogger("lite_csms.boot")

REGISTRATION_TO_BOOT_STATUS = {"accepted": "Accepted", "pending": "Pending", "rejected": "Rejected"}
REGISTRATIONS = tuple(REGISTRATION_TO_BOOT_STATUS)
# What a Pending station's requests may be, besides BootNotification: what a CSMS request asked
# for (2.0.1 B02.FR.09, TC_B_30_CSMS). NotifyReport answers GetBaseReport and GetReport.
_SOLICITED = {"GetBaseReport": "NotifyReport", "GetReport": "NotifyReport"}
# 1.6 4.2: RemoteStart and RemoteStop are not allowed while Pending; applied to 2.x as well.
_NOT_WHILE_PENDING = ("remote-start", "remote-stop")


_BOOT_READ = ('SELECT "registration", "firmware_version", "last_boot_at" FROM "station" '
              'WHERE "id" = ?')
_BOOT = ('UPDATE "station" SET "vendor" = ?, "model" = ?, "serial_number" = ?, '
         '"firmware_version" = ?, "iccid" = ?, "imsi" = ?, "protocol" = ?, "last_boot_at" = ?, '
         '"last_seen_at" = ? WHERE "id" = ?')
_FIRMWARE_CHANGED = ('UPDATE "station" SET "previous_firmware_version" = ?, '
                     '"firmware_changed_at" = ? WHERE "id" = ?')
_STORED = UtcDateTimeField()


def record_boot(station_id: str, protocol: str, info: BootInfo, at: datetime) -> str:
    """Store what the station says of itself; return its BootNotification status.

    Prepared statements on the writer's connection (a boot storm is the hot path at
    connect time); Station.DoesNotExist for an unknown station."""
    conn = statements.connection(Station)
    found = conn.execute(_BOOT_READ, (station_id,)).fetchone()
    if found is None:
        raise Station.DoesNotExist(f"no station {station_id!r}")
    registration, firmware_version, last_boot_at = found
    stored_at = _STORED.db_value(at)
    if last_boot_at is not None and firmware_version != info.firmware_version:
        # A firmware update may have reset the configuration, or may accept what was refused.
        conn.execute(_FIRMWARE_CHANGED, (firmware_version, stored_at, station_id))
        log.info("%s: firmware changed from %s to %s", station_id,
                 firmware_version or "-", info.firmware_version or "-")
    conn.execute(_BOOT, (info.vendor, info.model, info.serial_number, info.firmware_version,
                         info.iccid, info.imsi, protocol, stored_at, stored_at, station_id))
    status = REGISTRATION_TO_BOOT_STATUS.get(registration, "Rejected")
    log.info("%s: BootNotification from %s %s, firmware %s, serial %s: %s", station_id,
             info.vendor, info.model, info.firmware_version or "-", info.serial_number or "-",
             status)
    return status


def registration(station_id: str) -> str | None:
    station = Station.get_or_none(Station.id == station_id)
    return None if station is None else station.registration


def set_registration(station_id: str, registration: str) -> str | None:
    """Set what the station's next BootNotification is answered; None if no such station."""
    if registration not in REGISTRATIONS:
        raise ValueError(f"registration must be one of {', '.join(REGISTRATIONS)}")
    updated = Station.update(registration=registration).where(
        Station.id == station_id).execute()
    return registration if updated else None


def may_send(registration: str, action: str, solicited: Collection[str]) -> bool:
    """Whether a station in this registration state may send this request (2.0.1 B02.FR.09,
    B03.FR.07): anything once accepted; BootNotification always; while pending also what a
    CSMS request solicited. Anything else gets the CALLERROR SecurityError."""
    if registration == "accepted" or action == "BootNotification":
        return True
    return registration == "pending" and action in solicited


def solicited_by(action: str, payload: dict[str, Any]) -> str | None:
    """The station request a CSMS request asks for: TriggerMessage's requestedMessage (2.x
    Sign*Certificate triggers a SignCertificate), NotifyReport for a report request."""
    if action == "TriggerMessage":
        wanted = str(payload.get("requestedMessage", ""))
        return "SignCertificate" if wanted.startswith("Sign") else wanted
    return _SOLICITED.get(action)


def refuse_operation(registration: str | None, operation: str) -> str | None:
    """Why the CSMS must not send this operation to a station in this state, or None."""
    if registration == "rejected":
        return ("the station is rejected: the CSMS sends it nothing (OCPP 1.6 4.2, 2.0.1 B03); "
                "accept it or hold it as pending first")
    if registration == "pending" and operation in _NOT_WHILE_PENDING:
        return (f"the station is pending: {operation} is not allowed until it is accepted "
                "(OCPP 1.6 4.2)")
    return None


def auto_register(station_id: str, password_hash: str | None) -> None:
    """Keep an unknown station as pending, trusting the password it first presented."""
    Station.insert(id=station_id, registration="pending", password_hash=password_hash).on_conflict(
        "ignore"
    ).execute()


_CONNECTED = ('UPDATE "station" SET "online" = 1, "protocol" = ?, "last_seen_at" = ? '
              'WHERE "id" = ?')


def mark_connected(station_id: str, protocol: str, at: datetime) -> None:
    # At every connection (a reconnect storm's hot path): a prepared statement.
    statements.connection(Station).execute(_CONNECTED, (protocol, _STORED.db_value(at),
                                                        station_id))


def mark_disconnected(station_id: str, last_seen: datetime) -> None:
    Station.update(online=False, last_seen_at=last_seen).where(Station.id == station_id).execute()


def mark_all_disconnected(seen: dict[str, datetime], *, exiting: bool = False) -> None:
    """At shutdown: every station that was connected is offline, last seen at its time, in
    one statement run for all (10,000 stations: one store job, not 10,000). `exiting`: the
    process ends after this write (db/bulk.py)."""
    last_seen = Station.last_seen_at.db_value
    rows = [(last_seen(at), station_id) for station_id, at in seen.items()]
    if len(rows) >= _BULK_ROWS and _UPDATE_FROM:
        # Many: one statement (a few when exiting), walked by SQLite in one step with the
        # GIL released (row by row, the writer's thread took the GIL back at every row,
        # beside a trio thread busy with a stop's 10,000 connections): db/bulk.py.
        bulk.execute(database_proxy.obj.connection(), rows, json=_OFFLINE_JSON,
                     values=_OFFLINE_VALUES if exiting else None)
        return
    # executemany: one prepared UPDATE, no query building per station.
    database_proxy.obj.cursor().executemany(
        'UPDATE "station" SET "online" = 0, "last_seen_at" = ? WHERE "id" = ?', rows)


# mark_all_disconnected for this many stations or more in bulk statements (UPDATE ... FROM:
# SQLite 3.33). bulk's padding rows of NULLs match no station.
_BULK_ROWS = 64
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)
_OFFLINE_JSON = (
    'UPDATE "station" SET "online" = 0, "last_seen_at" = json_extract(j.value, \'$[0]\') '
    'FROM json_each(?) AS j WHERE "station"."id" = json_extract(j.value, \'$[1]\')')
_OFFLINE_VALUES = (
    'UPDATE "station" SET "online" = 0, "last_seen_at" = j.column1 '
    'FROM ({values}) AS j WHERE "station"."id" = j.column2')


def record_last_seen(seen: dict[str, datetime]) -> None:
    # One prepared UPDATE for all: 10,000 ORM-built ones took seconds each minute.
    last_seen = Station.last_seen_at.db_value
    database_proxy.obj.cursor().executemany(
        'UPDATE "station" SET "last_seen_at" = ? WHERE "id" = ?',
        [(last_seen(at), station_id) for station_id, at in seen.items()])


def mark_all_offline() -> int:
    """At start-up no station can be connected yet, whatever the last run left behind."""
    return Station.update(online=False).where(Station.online == True).execute()  # noqa: E712

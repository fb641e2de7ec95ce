#!/usr/bin/env python3
"""A typical Python CSMS, the peer lite-csms is measured against (docs/PERFORMANCE.md).

Built the way most Python CSMS projects start: the `ocpp` package's ChargePoint, server
side, on asyncio with `websockets`, one ChargePoint per connection, each handler writing to
SQLite with the standard library's blocking sqlite3 and committing before it answers (WAL,
synchronous=FULL, as lite-csms opens its database). `websockets` keeps its defaults (pings
every 20 s, permessage-deflate when offered). No authentication: every station id is
accepted, as lite-csms accepts a station registered without a password.

Answers OCPP 1.6 BootNotification (Accepted), Heartbeat, StatusNotification, Authorize
(Accepted), StartTransaction, StopTransaction and MeterValues; and 2.0.1 BootNotification,
Heartbeat, StatusNotification, Authorize, TransactionEvent and MeterValues.

    python tools/peer_csms.py --database peer.sqlite3 --ports-file ports.json

It listens on a port the kernel picks (port 0 unless --port says otherwise) and writes
`{"ocpp": [port], "admin": null}` to --ports-file, as `lite-csms serve --ports-file` does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import AuthorizationStatus, RegistrationStatus
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201

HEARTBEAT_INTERVAL = 300

SCHEMA = """
CREATE TABLE IF NOT EXISTS station (id TEXT PRIMARY KEY, protocol TEXT, vendor TEXT,
    model TEXT, booted_at TEXT, last_seen TEXT);
CREATE TABLE IF NOT EXISTS status (id INTEGER PRIMARY KEY, station TEXT, evse INTEGER,
    connector INTEGER, status TEXT, error_code TEXT, at TEXT);
CREATE TABLE IF NOT EXISTS authorization (id INTEGER PRIMARY KEY, station TEXT, id_tag TEXT,
    at TEXT);
CREATE TABLE IF NOT EXISTS txn (id INTEGER PRIMARY KEY, station TEXT, connector INTEGER,
    remote_id TEXT, id_tag TEXT, meter_start INTEGER, started_at TEXT, meter_stop INTEGER,
    stopped_at TEXT, reason TEXT, UNIQUE (station, remote_id));
CREATE TABLE IF NOT EXISTS meter_value (id INTEGER PRIMARY KEY, station TEXT,
    connector INTEGER, txn_id TEXT, at TEXT, sampled TEXT);
"""


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Store:
    """One sqlite3 connection; every write is committed (and fsynced) before it returns."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def write(self, sql: str, args: tuple[Any, ...]) -> int:
        cursor = self.db.execute(sql, args)
        self.db.commit()
        return cursor.lastrowid or 0


class Station16(ChargePoint16):
    store: Store

    @on("BootNotification")
    def on_boot(self, charge_point_vendor: str, charge_point_model: str,
                **_: Any) -> result16.BootNotification:
        self.store.write(
            "INSERT INTO station (id, protocol, vendor, model, booted_at, last_seen) "
            "VALUES (?, 'ocpp1.6', ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "vendor = excluded.vendor, model = excluded.model, booted_at = excluded.booted_at",
            (self.id, charge_point_vendor, charge_point_model, now_text(), now_text()))
        return result16.BootNotification(current_time=now_text(), interval=HEARTBEAT_INTERVAL,
                                         status=RegistrationStatus.accepted)

    @on("Heartbeat")
    def on_heartbeat(self) -> result16.Heartbeat:
        self.store.write("UPDATE station SET last_seen = ? WHERE id = ?", (now_text(), self.id))
        return result16.Heartbeat(current_time=now_text())

    @on("StatusNotification")
    def on_status(self, connector_id: int, error_code: str, status: str,
                  timestamp: str | None = None, **_: Any) -> result16.StatusNotification:
        self.store.write(
            "INSERT INTO status (station, connector, status, error_code, at) "
            "VALUES (?, ?, ?, ?, ?)",
            (self.id, connector_id, status, error_code, timestamp or now_text()))
        return result16.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_tag: str) -> result16.Authorize:
        self.store.write("INSERT INTO authorization (station, id_tag, at) VALUES (?, ?, ?)",
                         (self.id, id_tag, now_text()))
        return result16.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on("StartTransaction")
    def on_start(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str,
                 **_: Any) -> result16.StartTransaction:
        txn = self.store.write(
            "INSERT INTO txn (station, connector, id_tag, meter_start, started_at) "
            "VALUES (?, ?, ?, ?, ?)", (self.id, connector_id, id_tag, meter_start, timestamp))
        return result16.StartTransaction(
            transaction_id=txn, id_tag_info={"status": AuthorizationStatus.accepted})

    @on("StopTransaction")
    def on_stop(self, meter_stop: int, timestamp: str, transaction_id: int,
                reason: str | None = None, **_: Any) -> result16.StopTransaction:
        self.store.write(
            "UPDATE txn SET meter_stop = ?, stopped_at = ?, reason = ? "
            "WHERE id = ? AND station = ?",
            (meter_stop, timestamp, reason, transaction_id, self.id))
        return result16.StopTransaction()

    @on("MeterValues")
    def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]],
                        transaction_id: int | None = None, **_: Any) -> result16.MeterValues:
        for sample in meter_value:
            self.store.db.execute(
                "INSERT INTO meter_value (station, connector, txn_id, at, sampled) "
                "VALUES (?, ?, ?, ?, ?)", (self.id, connector_id, transaction_id,
                                           sample["timestamp"], json.dumps(sample)))
        self.store.db.commit()
        return result16.MeterValues()


class Station201(ChargePoint201):
    store: Store

    @on("BootNotification")
    def on_boot(self, charging_station: dict[str, Any], reason: str,
                **_: Any) -> result201.BootNotification:
        self.store.write(
            "INSERT INTO station (id, protocol, vendor, model, booted_at, last_seen) "
            "VALUES (?, 'ocpp2.0.1', ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "vendor = excluded.vendor, model = excluded.model, booted_at = excluded.booted_at",
            (self.id, charging_station.get("vendor_name"), charging_station.get("model"),
             now_text(), now_text()))
        return result201.BootNotification(current_time=now_text(), interval=HEARTBEAT_INTERVAL,
                                          status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self) -> result201.Heartbeat:
        self.store.write("UPDATE station SET last_seen = ? WHERE id = ?", (now_text(), self.id))
        return result201.Heartbeat(current_time=now_text())

    @on("StatusNotification")
    def on_status(self, timestamp: str, connector_status: str, evse_id: int, connector_id: int,
                  **_: Any) -> result201.StatusNotification:
        self.store.write(
            "INSERT INTO status (station, evse, connector, status, at) VALUES (?, ?, ?, ?, ?)",
            (self.id, evse_id, connector_id, connector_status, timestamp))
        return result201.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_token: dict[str, Any], **_: Any) -> result201.Authorize:
        self.store.write("INSERT INTO authorization (station, id_tag, at) VALUES (?, ?, ?)",
                         (self.id, id_token.get("id_token"), now_text()))
        return result201.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    def on_transaction_event(self, event_type: str, timestamp: str,
                             transaction_info: dict[str, Any], evse: dict | None = None,
                             meter_value: list | None = None,
                             **_: Any) -> result201.TransactionEvent:
        remote_id = transaction_info["transaction_id"]
        connector = (evse or {}).get("connector_id")
        if event_type == "Started":
            self.store.db.execute(
                "INSERT OR IGNORE INTO txn (station, connector, remote_id, started_at) "
                "VALUES (?, ?, ?, ?)", (self.id, connector, remote_id, timestamp))
        elif event_type == "Ended":
            self.store.db.execute(
                "UPDATE txn SET stopped_at = ?, reason = ? WHERE station = ? AND remote_id = ?",
                (timestamp, transaction_info.get("stopped_reason"), self.id, remote_id))
        for sample in meter_value or []:
            self.store.db.execute(
                "INSERT INTO meter_value (station, connector, txn_id, at, sampled) "
                "VALUES (?, ?, ?, ?, ?)",
                (self.id, connector, remote_id, sample["timestamp"], json.dumps(sample)))
        self.store.db.commit()
        return result201.TransactionEvent()

    @on("MeterValues")
    def on_meter_values(self, evse_id: int, meter_value: list[dict[str, Any]],
                        **_: Any) -> result201.MeterValues:
        for sample in meter_value:
            self.store.db.execute(
                "INSERT INTO meter_value (station, connector, at, sampled) VALUES (?, ?, ?, ?)",
                (self.id, evse_id, sample["timestamp"], json.dumps(sample)))
        self.store.db.commit()
        return result201.MeterValues()


CHARGE_POINTS = {"ocpp1.6": Station16, "ocpp2.0.1": Station201}


async def serve(args: argparse.Namespace) -> None:
    store = Store(args.database)

    async def connection(ws: websockets.ServerConnection) -> None:
        station_id = ws.request.path.rstrip("/").rsplit("/", 1)[-1]
        charge_point = CHARGE_POINTS[ws.subprotocol](station_id, ws)
        charge_point.store = store
        try:
            await charge_point.start()
        except websockets.ConnectionClosed:
            pass

    async with websockets.serve(connection, args.host, args.port,
                                subprotocols=list(CHARGE_POINTS)) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        if args.ports_file:
            partial = args.ports_file.with_name(args.ports_file.name + ".partial")
            partial.write_text(json.dumps({"ocpp": [port], "admin": None}))
            os.replace(partial, args.ports_file)
        print(f"peer CSMS serving OCPP-J on {args.host} port {port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ports-file", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()

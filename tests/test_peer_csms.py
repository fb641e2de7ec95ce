"""tools/peer_csms.py, the typical CSMS of the side-by-side benchmark: the `ocpp` package's
own ChargePoint (the station side) gets every answer the peer claims to give, and each one
is a committed row in its SQLite file before the answer arrives."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys

import websockets
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201

from lite_csms.net.ports import read_ports_file
from tests.conftest import REPO

T = "2026-11-29T{}:00Z"


def rows(database, sql: str) -> list[tuple]:
    with sqlite3.connect(database) as db:
        return db.execute(sql).fetchall()


async def session16(port: int, database) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ocpp/PEER-16",
                                  subprotocols=["ocpp1.6"]) as ws:
        cp = ChargePoint16("PEER-16", ws)
        listener = asyncio.create_task(cp.start())
        boot = await cp.call(call16.BootNotification(charge_point_model="M",
                                                     charge_point_vendor="V"))
        assert boot.status == "Accepted" and boot.interval > 0
        assert rows(database, "SELECT vendor, model FROM station WHERE id = 'PEER-16'") == [
            ("V", "M")]
        assert (await cp.call(call16.Heartbeat())).current_time
        await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError",
                                                status="Preparing", timestamp=T.format("08:00")))
        assert rows(database, "SELECT status FROM status") == [("Preparing",)]
        auth = await cp.call(call16.Authorize(id_tag="TAG-1"))
        assert auth.id_tag_info["status"] == "Accepted"
        start = await cp.call(call16.StartTransaction(
            connector_id=1, id_tag="TAG-1", meter_start=1000, timestamp=T.format("08:01")))
        await cp.call(call16.MeterValues(connector_id=1, transaction_id=start.transaction_id,
                                         meter_value=[{"timestamp": T.format("08:02"),
                                                       "sampled_value": [{"value": "1500"}]}]))
        assert rows(database, "SELECT txn_id FROM meter_value") == [(str(start.transaction_id),)]
        await cp.call(call16.StopTransaction(meter_stop=2000, timestamp=T.format("08:03"),
                                             transaction_id=start.transaction_id))
        assert rows(database, "SELECT meter_start, meter_stop FROM txn") == [(1000, 2000)]
        listener.cancel()


async def session201(port: int, database) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ocpp/PEER-201",
                                  subprotocols=["ocpp2.0.1"]) as ws:
        cp = ChargePoint201("PEER-201", ws)
        listener = asyncio.create_task(cp.start())
        boot = await cp.call(call201.BootNotification(
            charging_station={"vendor_name": "V2", "model": "M2"}, reason="PowerUp"))
        assert boot.status == "Accepted"
        await cp.call(call201.Heartbeat())
        await cp.call(call201.StatusNotification(timestamp=T.format("09:00"),
                                                 connector_status="Occupied", evse_id=1,
                                                 connector_id=1))
        auth = await cp.call(call201.Authorize(id_token={"id_token": "T2", "type": "ISO14443"}))
        assert auth.id_token_info["status"] == "Accepted"
        for event, seq in (("Started", 0), ("Ended", 1)):
            await cp.call(call201.TransactionEvent(
                event_type=event, timestamp=T.format(f"09:0{seq + 1}"), trigger_reason="Authorized",
                seq_no=seq, transaction_info={"transaction_id": "TX-1"}, evse={"id": 1,
                                                                               "connector_id": 1},
                meter_value=[{"timestamp": T.format("09:01"), "sampled_value": [{"value": 5}]}]))
        await cp.call(call201.MeterValues(evse_id=1, meter_value=[
            {"timestamp": T.format("09:02"), "sampled_value": [{"value": 7}]}]))
        listener.cancel()
    assert rows(database, "SELECT remote_id, stopped_at FROM txn WHERE station = 'PEER-201'") == [
        ("TX-1", T.format("09:02"))]
    assert rows(database, "SELECT COUNT(*) FROM meter_value WHERE station = 'PEER-201'") == [(3,)]


def test_peer_answers_and_commits_each_message(tmp_path) -> None:
    database, ports_file = tmp_path / "peer.sqlite3", tmp_path / "ports.json"
    peer = subprocess.Popen([sys.executable, str(REPO / "tools" / "peer_csms.py"),
                             "--database", str(database), "--ports-file", str(ports_file)],
                            stdout=subprocess.DEVNULL)
    try:
        port = read_ports_file(ports_file, alive=lambda: peer.poll() is None)["ocpp"][0]
        assert port > 0
        asyncio.run(session16(port, database))
        asyncio.run(session201(port, database))
        assert rows(database, "PRAGMA journal_mode") == [("wal",)]
    finally:
        peer.terminate()
        assert peer.wait(timeout=10) == 0

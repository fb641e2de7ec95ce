"""Interop: the third-party `ocpp` package's ChargePoint, over `websockets`, against our server.

The server runs as `lite-csms serve` in a child process; the charger side is asyncio, as it is
in that package. After each session the test reads the SQLite file directly.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3

import websockets
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201

from tests.conftest import CsmsProcess

T = "2026-11-21T{}:00Z"


def register(csms: CsmsProcess, station_id: str, token: str) -> str:
    added = csms.cli("station", "add", station_id)
    assert added.returncode == 0, added.stderr
    password = next(line.split(": ", 1)[1] for line in added.stdout.splitlines()
                    if line.startswith("password: "))
    assert csms.cli("token", "add", token).returncode == 0
    return password


async def connect(csms: CsmsProcess, station_id: str, password: str, protocol: str):
    auth = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    return await websockets.connect(
        csms.url(station_id), subprotocols=[protocol],
        additional_headers={"Authorization": f"Basic {auth}"})


async def run_v16(csms: CsmsProcess, password: str) -> int:
    ws = await connect(csms, "IOP-16", password, "ocpp1.6")
    cp = ChargePoint16("IOP-16", ws)
    listener = asyncio.create_task(cp.start())
    try:
        boot = await cp.call(call16.BootNotification(
            charge_point_model="Wallbox-1", charge_point_vendor="Interop", firmware_version="1.2"))
        assert boot.status == "Accepted"
        await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError",
                                                status="Preparing", timestamp=T.format("07:59")))
        auth = await cp.call(call16.Authorize(id_tag="RFID-16"))
        assert auth.id_tag_info["status"] == "Accepted"
        start = await cp.call(call16.StartTransaction(
            connector_id=1, id_tag="RFID-16", meter_start=100_000, timestamp=T.format("08:00")))
        assert start.id_tag_info["status"] == "Accepted"
        tx_id = start.transaction_id
        for minute, wh in (("08:15", 102_500), ("08:30", 105_000)):
            await cp.call(call16.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[
                {"timestamp": T.format(minute), "sampled_value": [
                    {"value": str(wh), "measurand": "Energy.Active.Import.Register",
                     "unit": "Wh", "context": "Sample.Periodic"}]}]))
        await cp.call(call16.StopTransaction(
            meter_stop=107_400, timestamp=T.format("08:45"), transaction_id=tx_id,
            reason="EVDisconnected"))
        return tx_id
    finally:
        listener.cancel()
        await ws.close()


async def run_v201(csms: CsmsProcess, password: str) -> None:
    ws = await connect(csms, "IOP-201", password, "ocpp2.0.1")
    cp = ChargePoint201("IOP-201", ws)
    listener = asyncio.create_task(cp.start())
    token = {"id_token": "RFID-201", "type": "ISO14443"}

    def meter(minute: str, wh: float, context: str) -> list:
        return [{"timestamp": T.format(minute), "sampled_value": [
            {"value": wh, "context": context, "measurand": "Energy.Active.Import.Register"}]}]

    try:
        boot = await cp.call(call201.BootNotification(
            charging_station={"model": "Wallbox-2", "vendor_name": "Interop"}, reason="PowerUp"))
        assert boot.status == "Accepted"
        await cp.call(call201.StatusNotification(
            timestamp=T.format("09:59"), connector_status="Occupied", evse_id=1, connector_id=1))
        auth = await cp.call(call201.Authorize(id_token=token))
        assert auth.id_token_info["status"] == "Accepted"
        events = [
            ("Started", "Authorized", "10:00", 50_000, "Transaction.Begin"),
            ("Updated", "MeterValuePeriodic", "10:15", 53_000, "Sample.Periodic"),
            ("Ended", "EVCommunicationLost", "10:30", 61_000, "Transaction.End"),
        ]
        for seq, (kind, trigger, minute, wh, context) in enumerate(events):
            info = {"transaction_id": "TX-201-A"}
            if kind == "Ended":
                info["stopped_reason"] = "EVDisconnected"
            result = await cp.call(call201.TransactionEvent(
                event_type=kind, timestamp=T.format(minute), trigger_reason=trigger,
                seq_no=seq, transaction_info=info, meter_value=meter(minute, wh, context),
                id_token=token if kind == "Started" else None,
                evse={"id": 1, "connector_id": 1} if kind == "Started" else None))
            if kind == "Started":
                assert result.id_token_info["status"] == "Accepted"
    finally:
        listener.cancel()
        await ws.close()


def test_ocpp16_charge_point_full_session(csms_process: CsmsProcess) -> None:
    password = register(csms_process, "IOP-16", "RFID-16")
    tx_id = asyncio.run(run_v16(csms_process, password))
    db = sqlite3.connect(csms_process.database)
    row = db.execute('SELECT station_id, id_token, meter_stop_wh - meter_start_wh, stop_reason, '
                     'stopped_at IS NOT NULL FROM "transaction" WHERE id = ?', (tx_id,)).fetchone()
    assert row == ("IOP-16", "RFID-16", 7400.0, "EVDisconnected", 1)
    assert db.execute("SELECT count(*) FROM meter_sample WHERE transaction_id = ?",
                      (tx_id,)).fetchone()[0] == 2
    assert db.execute("SELECT vendor, model, firmware_version, protocol FROM station").fetchone(
        ) == ("Interop", "Wallbox-1", "1.2", "ocpp1.6")
    listing = csms_process.cli("tx", "list")
    assert "IOP-16" in listing.stdout and "7.4" in listing.stdout


def test_ocpp201_charge_point_full_session(csms_process: CsmsProcess) -> None:
    password = register(csms_process, "IOP-201", "RFID-201")
    asyncio.run(run_v201(csms_process, password))
    db = sqlite3.connect(csms_process.database)
    row = db.execute('SELECT station_tx_id, evse_id, id_token, auth_status, '
                     'meter_stop_wh - meter_start_wh, stop_reason FROM "transaction"').fetchone()
    assert row == ("TX-201-A", 1, "RFID-201", "Accepted", 11_000.0, "EVDisconnected")
    assert db.execute("SELECT count(*) FROM transaction_event_record").fetchone()[0] == 3
    assert db.execute("SELECT status FROM connector").fetchone() == ("Occupied",)

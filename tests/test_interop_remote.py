"""Interop for remote operation and 2.1: the `ocpp` package's ChargePoint against our server.

The operator side goes through the admin HTTP API, as an app would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sqlite3
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import websockets
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call as call21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from tests.conftest import start_csms_process, stop_csms_process


class Operator:
    def __init__(self, tmp_path: Path) -> None:
        self.csms = start_csms_process(tmp_path)
        self.admin_port = self.csms.admin_port
        self.key = self.csms.cli("apikey", "add", "app").stdout.split(": ", 1)[1].split()[0]

    def add_station(self, station_id: str, token: str) -> str:
        added = self.csms.cli("station", "add", station_id).stdout
        assert self.csms.cli("token", "add", token).returncode == 0
        return added.split("password: ")[1].split()[0]

    def command(self, station_id: str, operation: str, **args: object) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.admin_port}/stations/{station_id}/commands",
            data=json.dumps({"operation": operation, "args": args}).encode(), method="POST",
            headers={"Authorization": f"Bearer {self.key}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.csms.database)


async def connect(operator: Operator, station_id: str, password: str, protocol: str):
    auth = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    return await websockets.connect(operator.csms.url(station_id), subprotocols=[protocol],
                                    additional_headers={"Authorization": f"Basic {auth}"})


@contextlib.asynccontextmanager
async def running(operator: Operator, charger_class: type, station_id: str, password: str,
                  protocol: str) -> AsyncIterator:
    """A ChargePoint connected and listening for the CSMS's calls, closed afterwards."""
    ws = await connect(operator, station_id, password, protocol)
    async with listening(charger_class, station_id, ws) as charger:
        yield charger


@contextlib.asynccontextmanager
async def listening(charger_class: type, station_id: str, ws: Any) -> AsyncIterator:
    """A ChargePoint on the connection `ws`, listening for the CSMS's calls; the connection
    is closed afterwards."""
    charger = charger_class(station_id, ws)
    listener = asyncio.create_task(charger.start())
    try:
        yield charger
    finally:
        listener.cancel()
        await ws.close()


class Charger16(ChargePoint16):
    heartbeat_interval = "300"

    @on("RemoteStartTransaction")
    def remote_start(self, id_tag: str, connector_id: int | None = None, **_: object):
        return result16.RemoteStartTransaction(status="Accepted")

    @after("RemoteStartTransaction")
    async def begin(self, id_tag: str, connector_id: int | None = None, **_: object):
        await self.call(call16.StartTransaction(connector_id=connector_id or 1, id_tag=id_tag,
                                                meter_start=0,
                                                timestamp="2026-11-21T12:00:00Z"))

    @on("ChangeConfiguration")
    def change(self, key: str, value: str):
        if key != "HeartbeatInterval":
            return result16.ChangeConfiguration(status="NotSupported")
        self.heartbeat_interval = value
        return result16.ChangeConfiguration(status="Accepted")


def test_ocpp16_remote_start_and_change_configuration(tmp_path: Path) -> None:
    operator = Operator(tmp_path)
    try:
        password = operator.add_station("IOP-R16", "GUEST-42")

        async def scenario() -> Charger16:
            async with running(operator, Charger16, "IOP-R16", password, "ocpp1.6") as charger:
                await charger.call(call16.BootNotification(charge_point_model="M",
                                                           charge_point_vendor="V"))
                started = await asyncio.to_thread(operator.command, "IOP-R16", "remote-start",
                                                  connector=1, token="GUEST-42")
                assert started["result"] == {"status": "Accepted"}
                changed = await asyncio.to_thread(operator.command, "IOP-R16", "set-config",
                                                  key="HeartbeatInterval", value="900")
                assert changed["result"] == {"status": "Accepted"}
                await asyncio.sleep(0.2)  # the StartTransaction that follows the answer
                return charger

        charger = asyncio.run(scenario())
        assert charger.heartbeat_interval == "900"
        db = operator.db()
        assert db.execute('SELECT id_token, evse_id FROM "transaction"').fetchall() == [
            ("GUEST-42", 1)]
        assert db.execute("SELECT key, value FROM station_setting").fetchall() == [
            ("HeartbeatInterval", "900")]
    finally:
        stop_csms_process(operator.csms)


class Charger201(ChargePoint201):
    variables: dict[str, str] = {}

    @on("SetVariables")
    def set_variables(self, set_variable_data: list, **_: object):
        results = []
        for item in set_variable_data:
            name = f"{item['component']['name']}.{item['variable']['name']}"
            self.variables[name] = item["attribute_value"]
            results.append({"attribute_status": "Accepted", "component": item["component"],
                            "variable": item["variable"]})
        return result201.SetVariables(set_variable_result=results)


def test_ocpp201_set_variables(tmp_path: Path) -> None:
    operator = Operator(tmp_path)
    try:
        password = operator.add_station("IOP-R201", "GUEST-7")

        async def scenario() -> Charger201:
            async with running(operator, Charger201, "IOP-R201", password, "ocpp2.0.1") as charger:
                await charger.call(call201.BootNotification(
                    charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"))
                answer = await asyncio.to_thread(
                    operator.command, "IOP-R201", "set-config",
                    key="OCPPCommCtrlr.HeartbeatInterval", value="1200")
                assert answer["status"] == "answered"
                return charger

        charger = asyncio.run(scenario())
        assert charger.variables == {"OCPPCommCtrlr.HeartbeatInterval": "1200"}
        assert operator.db().execute("SELECT key, value FROM station_setting").fetchall() == [
            ("OCPPCommCtrlr.HeartbeatInterval", "1200")]
    finally:
        stop_csms_process(operator.csms)


def test_ocpp21_charge_point_full_session(tmp_path: Path) -> None:
    operator = Operator(tmp_path)
    try:
        password = operator.add_station("IOP-21", "RFID-21")

        async def scenario() -> None:
            ws = await connect(operator, "IOP-21", password, "ocpp2.1")
            assert ws.subprotocol == "ocpp2.1"
            charger = ChargePoint21("IOP-21", ws)
            listener = asyncio.create_task(charger.start())
            token = {"id_token": "RFID-21", "type": "ISO14443"}
            try:
                boot = await charger.call(call21.BootNotification(
                    charging_station={"model": "M21", "vendor_name": "V21"},
                    reason="PowerUp"))
                assert boot.status == "Accepted"
                auth = await charger.call(call21.Authorize(id_token=token))
                assert auth.id_token_info["status"] == "Accepted"
                for seq, (kind, minute, wh, context) in enumerate([
                        ("Started", "00", 2_000, "Transaction.Begin"),
                        ("Updated", "20", 4_000, "Sample.Periodic"),
                        ("Ended", "40", 9_500, "Transaction.End")]):
                    at = f"2026-11-21T13:{minute}:00Z"
                    await charger.call(call21.TransactionEvent(
                        event_type=kind, seq_no=seq, timestamp=at,
                        trigger_reason="MeterValuePeriodic",
                        transaction_info={"transaction_id": "TX-21"},
                        meter_value=[{"timestamp": at, "sampled_value": [
                            {"value": wh, "context": context}]}],
                        id_token=token if kind == "Started" else None,
                        evse={"id": 1, "connector_id": 1} if kind == "Started" else None))
            finally:
                listener.cancel()
                await ws.close()

        asyncio.run(scenario())
        row = operator.db().execute(
            'SELECT station_tx_id, id_token, meter_stop_wh - meter_start_wh FROM "transaction"'
        ).fetchone()
        assert row == ("TX-21", "RFID-21", 7_500.0)
        assert operator.db().execute("SELECT protocol FROM station").fetchone() == ("ocpp2.1",)
    finally:
        stop_csms_process(operator.csms)


def test_queued_command_survives_a_server_restart(tmp_path: Path) -> None:
    operator = Operator(tmp_path)
    password = operator.add_station("IOP-Q", "T")

    async def visit(expect_command: bool) -> list:
        ws = await connect(operator, "IOP-Q", password, "ocpp1.6")
        try:
            await ws.send(json.dumps([2, "b", "BootNotification",
                                      {"chargePointVendor": "V", "chargePointModel": "M"}]))
            assert json.loads(await ws.recv())[0] == 3
            if not expect_command:
                return []
            request = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(json.dumps([3, request[1], {"status": "Accepted"}]))
            await asyncio.sleep(0.3)
            return request
        finally:
            await ws.close()

    try:
        asyncio.run(visit(expect_command=False))  # the server learns the station's version
        request = urllib.request.Request(
            f"http://127.0.0.1:{operator.admin_port}/stations/IOP-Q/commands",
            data=json.dumps({"operation": "reset", "args": {"hard": True},
                             "queue": True}).encode(), method="POST",
            headers={"Authorization": f"Bearer {operator.key}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
        stop_csms_process(operator.csms)
        operator.csms = start_csms_process(tmp_path, "--admin-port", str(operator.admin_port))
        delivered = asyncio.run(visit(expect_command=True))
        assert delivered[2:] == ["Reset", {"type": "Hard"}]
        assert operator.db().execute("SELECT action, status FROM command").fetchall() == [
            ("Reset", "answered")]
    finally:
        stop_csms_process(operator.csms)

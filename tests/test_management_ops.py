"""Smart charging, firmware, diagnostics and device-model operations through the admin API,
against the station simulator over real sockets, with their effects read from SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from trio_websocket import open_websocket_url

from lite_csms.db.models import ChargingProfile, IdToken
from tests.conftest import REPO, CsmsInProcess, start_in_process
from tests.test_admin_api import http, new_key
from tests.test_operations import until, wait_connected
from tests.test_server import query, register, rpc

STATION = "SIM-MGMT"


@asynccontextmanager
async def simulated(csms: CsmsInProcess, protocol: str) -> AsyncIterator[None]:
    """The simulator as a child process, booted and idle, for the length of the block."""
    simulator = [sys.executable, str(REPO / "tools" / "station_sim.py"),
                 "--url", f"ws://127.0.0.1:{csms.port}/ocpp", "--id", STATION,
                 "--protocol", protocol, "--scenario", "boot", "--linger", "inf",
                 "--time-scale", "50"]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: trio.run_process(
            simulator, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False))
        await wait_connected(csms, STATION)
        await until(csms, "SELECT count(*) FROM connector", [(1,)])
        yield
        nursery.cancel_scope.cancel()


async def started(nursery: trio.Nursery, tmp_path) -> tuple[CsmsInProcess, str]:
    csms = await start_in_process(nursery, tmp_path)
    await register(csms, STATION)
    return csms, await new_key(csms)


def command(key: str, csms: CsmsInProcess):
    async def send(operation: str, **args: object) -> dict:
        status, body = await http(csms, "POST", f"/stations/{STATION}/commands", key,
                                  {"operation": operation, "args": args})
        assert status == 200 and body["status"] == "answered", body
        return body["result"]

    return send


def profiles(csms: CsmsInProcess) -> list[tuple]:
    return query(csms, "SELECT evse_id, purpose, stack_level, profile FROM charging_profile "
                       "ORDER BY profile_id")


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"])
async def test_charging_limits(nursery, tmp_path, protocol: str) -> None:
    csms, key = await started(nursery, tmp_path)
    send = command(key, csms)
    async with simulated(csms, protocol):
        assert (await send("set-limit", connector=1, limit=16, unit="A"))["status"] == "Accepted"
        [(evse, purpose, level, _)] = profiles(csms)
        assert (evse, purpose, level) == (1, "TxDefaultProfile", 0)
        # Same purpose and stack level on the same connector: the station replaced it.
        assert (await send("set-limit", connector=1, limit=11040, unit="W"))[
            "status"] == "Accepted"
        [(_, _, _, kept)] = profiles(csms)
        assert '"W"' in kept and "11040" in kept
        # Unknown connector: refused, and nothing is stored for it.
        assert (await send("set-limit", connector=9, limit=10))["status"] == "Rejected"
        assert len(profiles(csms)) == 1
        # The station combines its profiles: 11040 W on three phases of 230 V is 16 A.
        answer = await send("composite-schedule", connector=1, duration=600, unit="A")
        assert answer["status"] == "Accepted"
        [(status, schedule)] = query(csms, "SELECT status, schedule FROM composite_schedule "
                                           "WHERE evse_id = 1")
        stored = json.loads(schedule)
        assert status == "Accepted" and stored["chargingRateUnit"] == "A"
        assert stored["chargingSchedulePeriod"][0]["limit"] == 16
        if protocol != "ocpp1.6":
            # What the station reports it holds replaces what the CSMS remembered.
            await csms.server.store.run(lambda: ChargingProfile.delete().execute())
            assert (await send("get-charging-profiles"))["status"] == "Accepted"
            await until(csms, "SELECT count(*) FROM charging_profile WHERE evse_id = 1", [(1,)])
        assert (await send("clear-limit", connector=1))["status"] == "Accepted"
        assert profiles(csms) == []
        assert (await send("clear-limit", connector=1))["status"] == "Unknown"
        if protocol != "ocpp1.6":
            assert (await send("get-charging-profiles"))["status"] == "NoProfiles"
    _, station = await http(csms, "GET", f"/stations/{STATION}", key)
    assert station["charging_profiles"] == []
    assert station["composite_schedules"][0]["schedule"]["chargingSchedulePeriod"]


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_limit_for_one_transaction(nursery, tmp_path, protocol: str) -> None:
    csms, key = await started(nursery, tmp_path)
    send = command(key, csms)
    await csms.server.store.run(lambda: IdToken.create(token="GUEST-42"))
    async with simulated(csms, protocol):
        assert (await send("remote-start", connector=1, token="GUEST-42"))[
            "status"] == "Accepted"
        await until(csms, 'SELECT count(*) FROM "transaction" WHERE stopped_at IS NULL', [(1,)])
        [(tx_id, station_tx_id)] = query(csms, 'SELECT id, station_tx_id FROM "transaction"')
        answer = await send("set-limit", connector=1, limit=10, transaction=tx_id)
        assert answer["status"] == "Accepted"
        assert query(csms, "SELECT purpose, transaction_id FROM charging_profile") == [
            ("TxProfile", station_tx_id or str(tx_id))]
        if protocol != "ocpp1.6":
            status = await send("transaction-status", transaction=tx_id)
            assert status == {"messagesInQueue": False, "ongoingIndicator": True}
        await send("remote-stop", transaction=tx_id)
        await until(csms, 'SELECT count(*) FROM "transaction" WHERE stopped_at IS NULL', [(0,)])
        # A transaction the station no longer runs: refused, nothing more kept.
        # The TxProfile ended with its transaction, at the station and here.
        assert profiles(csms) == []
        refused = await send("set-limit", connector=1, limit=8, transaction=tx_id)
        assert refused["status"] == "Rejected"
        assert profiles(csms) == []
        if protocol != "ocpp1.6":
            status = await send("transaction-status", transaction=tx_id)
            assert status == {"messagesInQueue": False, "ongoingIndicator": False}
            # The answers are kept in the command log, where GET /commands/{id} shows them.
            results = query(csms, "SELECT result FROM command WHERE action = "
                                  "'GetTransactionStatus' ORDER BY id")
            assert [json.loads(r)["ongoingIndicator"] for (r,) in results] == [True, False]


def history(csms: CsmsInProcess, kind: str) -> list[str]:
    return [s for (s,) in query(
        csms, "SELECT s.status FROM maintenance_status s JOIN maintenance_request r "
              "ON s.request_id = r.id WHERE r.kind = ? ORDER BY s.id", kind)]


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"])
async def test_firmware_update_and_log_upload(nursery, tmp_path, protocol: str) -> None:
    csms, key = await started(nursery, tmp_path)
    send = command(key, csms)
    async with simulated(csms, protocol):
        await send("update-firmware", location="https://fw.example/2.0.bin")
        await until(csms, "SELECT status, open FROM maintenance_request WHERE kind = "
                          "'firmware'", [("Installed", 0)])
        assert history(csms, "firmware") == ["Downloading", "Downloaded", "Installing",
                                             "Installed"]
        answer = await send("get-diagnostics", location="ftp://logs.example/up")
        assert answer.get("fileName", answer.get("filename")), answer
        await until(csms, "SELECT status, open FROM maintenance_request WHERE kind = "
                          "'diagnostics'", [("Uploaded", 0)])
        assert history(csms, "diagnostics") == ["Uploading", "Uploaded"]
    _, station = await http(csms, "GET", f"/stations/{STATION}", key)
    assert station["firmware_update"]["location"] == "https://fw.example/2.0.bin"
    assert station["firmware_update"]["status"] == "Installed"
    assert station["diagnostics"]["file_name"]
    assert [h["status"] for h in station["diagnostics"]["history"]] == ["Uploading", "Uploaded"]


@pytest.mark.parametrize("protocol", ["ocpp2.0.1", "ocpp2.1"])
async def test_device_model_from_reports(nursery, tmp_path, protocol: str) -> None:
    csms, key = await started(nursery, tmp_path)
    send = command(key, csms)
    async with simulated(csms, protocol):
        assert (await send("base-report"))["status"] == "Accepted"
        await until(csms, "SELECT kind, status FROM device_report",
                    [("FullInventory", "complete")])
        [(parts,)] = query(csms, "SELECT parts_received FROM device_report")
        assert parts >= 2
        rows = query(csms, "SELECT value, mutability, data_type FROM device_variable WHERE "
                           "component = 'OCPPCommCtrlr' AND variable = 'HeartbeatInterval' "
                           "AND attribute_type = 'Actual'")
        assert rows == [("300", "ReadWrite", "integer")]
        assert query(csms, "SELECT evse_id, value FROM device_variable WHERE component = "
                           "'EVSE'") == [(1, "Available")]
        # Actual values reach the settings `config get` reads; read-only ones are marked.
        assert query(csms, "SELECT value, readonly FROM station_setting WHERE key = ?",
                     "SecurityCtrlr.Identity") == [(STATION, 1)]
        assert (await send("set-config", key="OCPPCommCtrlr.HeartbeatInterval",
                           value="900"))
        assert (await send("get-report", variables=["OCPPCommCtrlr"]))["status"] == "Accepted"
        await until(csms, "SELECT count(*) FROM device_report WHERE status = 'complete'",
                    [(2,)])
        await until(csms, "SELECT value FROM device_variable WHERE variable = "
                          "'HeartbeatInterval'", [("900",)])
        assert (await send("get-report", variables=["NoSuchCtrlr"]))[
            "status"] == "EmptyResultSet"
    _, model = await http(csms, "GET", f"/stations/{STATION}/variables", key)
    assert [r["status"] for r in model["reports"]] == ["EmptyResultSet", "complete",
                                                       "complete"]
    assert any(v["variable"] == "AvailabilityState" and v["evse"] == 1
               for v in model["variables"])


async def test_report_parts_are_taken_once(csms: CsmsInProcess) -> None:
    await register(csms, "CS-REP")
    at = "2026-11-21T10:00:00Z"

    def part(seq_no: int, tbc: bool, value: str) -> dict:
        return {"requestId": 7, "generatedAt": at, "seqNo": seq_no, "tbc": tbc,
                "reportData": [{"component": {"name": "OCPPCommCtrlr"},
                                "variable": {"name": "HeartbeatInterval"},
                                "variableAttribute": [{"value": value}]}]}

    async with open_websocket_url(csms.url("CS-REP"), subprotocols=["ocpp2.0.1"]) as ws:
        for n, message in enumerate([part(0, True, "60"), part(0, True, "60"),
                                     part(1, False, "120"), part(1, False, "999")]):
            assert (await rpc(ws, [2, str(n), "NotifyReport", message]))[0] == 3
    # An unrequested report is kept too; the retransmitted parts changed nothing.
    assert query(csms, "SELECT kind, status, parts_received FROM device_report") == [
        ("unrequested", "complete", 2)]
    assert query(csms, "SELECT value FROM device_variable") == [("120",)]
    assert query(csms, "SELECT value FROM station_setting") == [("120",)]


async def test_v2_only_operations_are_refused_for_16(nursery, tmp_path) -> None:
    csms, key = await started(nursery, tmp_path)
    async with simulated(csms, "ocpp1.6"):
        for operation in ("base-report", "get-charging-profiles", "transaction-status"):
            status, body = await http(csms, "POST", f"/stations/{STATION}/commands", key,
                                      {"operation": operation, "args": {}})
            assert status == 422, body
            assert "2.x" in body["error"] or "1.6" in body["error"], body


async def test_charging_notifications_are_recorded(csms: CsmsInProcess) -> None:
    await register(csms, "CS-SC")
    at = "2026-11-21T10:00:00Z"
    profile = {"id": 40, "stackLevel": 1, "chargingProfilePurpose": "ChargingStationMaxProfile",
               "chargingProfileKind": "Absolute", "chargingSchedule": [{
                   "id": 1, "chargingRateUnit": "W", "startSchedule": at,
                   "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 22000}]}]}
    messages = [
        ("NotifyChargingLimit", {"chargingLimit": {"chargingLimitSource": "EMS"}}),
        ("NotifyEVChargingSchedule", {"timeBase": at, "evseId": 1, "chargingSchedule": {
            "id": 1, "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7000}]}}),
        # Unrequested: a station may report profiles another party (an EMS) set.
        ("ReportChargingProfiles", {"requestId": 99, "chargingLimitSource": "EMS",
                                    "evseId": 0, "chargingProfile": [profile]}),
    ]
    async with open_websocket_url(csms.url("CS-SC"), subprotocols=["ocpp2.0.1"]) as ws:
        answers = [await rpc(ws, [2, str(n), action, payload])
                   for n, (action, payload) in enumerate(messages)]
    assert [a[0] for a in answers] == [3, 3, 3]
    assert answers[1][2] == {"status": "Accepted"}
    assert query(csms, "SELECT action FROM station_event ORDER BY id") == [
        ("NotifyChargingLimit",), ("NotifyEVChargingSchedule",)]
    assert query(csms, "SELECT evse_id, profile_id, purpose, stack_level FROM "
                       "charging_profile") == [(0, 40, "ChargingStationMaxProfile", 1)]

"""tools/station_sim.py: against a real `lite-csms serve`, over a real socket, and on its own."""

from __future__ import annotations

import importlib.util
import json
import math
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from lite_csms.ocppj import schemas
from lite_csms.ocppj.session import CallAnswered, CallFailed, InboundCall, RpcSession
from lite_csms.ocppj.versions import ErrorKind, Version
from tests.conftest import CsmsProcess, start_csms_process, stop_csms_process

SIM_PATH = Path(__file__).resolve().parent.parent / "tools" / "station_sim.py"
NOW = "2025-01-01T00:00:00Z"


def load_simulator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("station_sim", SIM_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve the module's annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


sim = load_simulator()


# ---- helpers -----------------------------------------------------------------------------------
def run_sim(csms: CsmsProcess, station_id: str, *args: str) -> tuple[int, dict[str, Any], str]:
    result = subprocess.run(
        [sys.executable, str(SIM_PATH), "--url", f"ws://127.0.0.1:{csms.port}/ocpp",
         "--id", station_id, "--time-scale", "1000", "--json", *args],
        capture_output=True, text=True, timeout=30,
    )
    return result.returncode, json.loads(result.stdout), result.stderr


def query(database: Path, sql: str, *params: Any) -> list[sqlite3.Row]:
    with closing(sqlite3.connect(database)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()


def make_station(version: Version, **options: Any) -> Any:
    return sim.make_station(sim.StationOptions(url="ws://unused", station_id="CS-T",
                                               protocol=version, **options))


def answer(station: Any, action: str, payload: dict[str, Any]) -> Any:
    """Drive the simulator's answering function; both sides must be schema-valid."""
    assert schemas.validate(station.version, action, payload, response=False) is None
    result = station.handle_call(action, payload)
    if result.error is None:
        assert schemas.validate(station.version, action, result.payload, response=True) is None
    return result


def canned_answer(version: Version, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What a CSMS answers a station's CALL with."""
    if action == "BootNotification":
        return {"status": "Accepted", "currentTime": NOW, "interval": 300}
    if action == "Heartbeat":
        return {"currentTime": NOW}
    if action == "StartTransaction":
        return {"transactionId": 77, "idTagInfo": {"status": "Accepted"}}
    if action == "Authorize":
        key = "idTagInfo" if version is Version.OCPP16 else "idTokenInfo"
        return {key: {"status": "Accepted"}}
    if action == "TransactionEvent" and "idToken" in payload:
        return {"idTokenInfo": {"status": "Accepted"}}
    return {}


class FakeLink:
    """Stands in for the WebSocket: checks each CALL against its schema and answers it."""

    def __init__(self, version: Version) -> None:
        self.version = version
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, action: str, payload: dict[str, Any]) -> CallAnswered:
        assert schemas.validate(self.version, action, payload, response=False) is None
        self.calls.append((action, payload))
        await trio.sleep(0)
        reply = canned_answer(self.version, action, payload)
        return CallAnswered(str(len(self.calls)), action, reply)

    def actions(self) -> list[str]:
        return [action for action, _ in self.calls]

    def last(self, action: str) -> dict[str, Any]:
        return [payload for name, payload in self.calls if name == action][-1]


# ---- against `lite-csms serve` -----------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
def test_charge_scenario_records_exactly_the_energy_delivered(
    csms_process: CsmsProcess, protocol: str
) -> None:
    for command in (("station", "add", "CS-1", "--no-password"), ("token", "add", "TAG1")):
        assert csms_process.cli(*command).returncode == 0
    code, summary, log = run_sim(csms_process, "CS-1", "--protocol", protocol,
                                 "--scenario", "charge", "--id-tag", "TAG1",
                                 "--energy-wh", "7400", "--meter-values", "3")
    assert code == 0, log
    assert summary["ok"] and summary["scenario_completed"]
    assert summary["boot_status"] == "Accepted"
    assert summary["energy_wh"] == 7400

    [tx] = query(csms_process.database, 'SELECT * FROM "transaction" WHERE station_id = ?', "CS-1")
    assert tx["meter_start_wh"] == summary["meter_start_wh"] == 1000
    assert tx["meter_stop_wh"] - tx["meter_start_wh"] == 7400
    assert tx["stopped_at"] is not None
    assert tx["stop_reason"] == "Local"
    periodic = [row["value"] for row in query(
        csms_process.database, "SELECT value FROM meter_sample WHERE transaction_id = ? "
        "AND context = 'Sample.Periodic' ORDER BY timestamp", tx["id"])]
    assert len(periodic) == 3
    assert tx["meter_start_wh"] < periodic[0] < periodic[1] < periodic[2] < tx["meter_stop_wh"]

    [station] = query(csms_process.database, "SELECT * FROM station WHERE id = 'CS-1'")
    assert (station["vendor"], station["model"], station["protocol"]) == (
        "LiteCSMS-Sim", "StationSim", protocol)
    actions = [step["action"] for step in summary["steps"]]
    if protocol == "ocpp1.6":
        assert tx["id"] == summary["transaction_id"] and tx["station_tx_id"] is None
        assert actions == ["BootNotification", "StatusNotification", "StatusNotification",
                           "Authorize", "StartTransaction", "StatusNotification",
                           "MeterValues", "MeterValues", "MeterValues", "StopTransaction",
                           "StatusNotification", "StatusNotification"]
        assert [s for _, s in summary["status_history"]] == [
            "Available", "Preparing", "Charging", "Finishing", "Available"]
    else:
        assert tx["station_tx_id"] == summary["transaction_id"]
        # Started, three Updated, Ended: seqNo 0..4 with nothing missing.
        assert (tx["last_seq_no"], tx["seq_no_gaps"]) == (4, 0)
        assert actions.count("TransactionEvent") == 5
        assert [s for _, s in summary["status_history"]] == ["Available", "Occupied", "Available"]


def test_password_is_checked_and_heartbeats_follow_the_boot_interval(
    csms_process: CsmsProcess,
) -> None:
    code, summary, _ = run_sim(csms_process, "UNKNOWN")
    # An unknown id is refused as a wrong password is, so ids cannot be enumerated.
    assert code == 3 and "401" in summary["error"]

    added = csms_process.cli("station", "add", "CS-PW")
    assert added.returncode == 0, added.stderr
    [password] = [line.split(": ", 1)[1] for line in added.stdout.splitlines()
                  if line.startswith("password: ")]
    code, summary, _ = run_sim(csms_process, "CS-PW", "--password", "wrong-password-here")
    assert code == 3 and "401" in summary["error"]
    assert summary["steps"] == []

    code, summary, log = run_sim(csms_process, "CS-PW", "--password", password,
                                 "--protocol", "ocpp2.1", "--scenario", "heartbeat",
                                 "--heartbeats", "2")
    assert code == 0, log
    assert summary["heartbeat_interval"] == 300  # the server default, from BootNotification
    assert summary["heartbeats"] == 2
    [station] = query(csms_process.database, "SELECT protocol FROM station WHERE id = 'CS-PW'")
    assert station["protocol"] == "ocpp2.1"


def test_a_pending_boot_is_retried_until_the_operator_accepts(tmp_path: Path) -> None:
    csms = start_csms_process(tmp_path, "--auto-register", "--heartbeat-interval", "60")
    try:
        code, summary, _ = run_sim(csms, "NEW-1", "--max-boot-attempts", "2")
        assert code == 1
        assert (summary["boot_status"], summary["boot_attempts"]) == ("Pending", 2)
        # A pending station sends nothing but BootNotification.
        assert {step["action"] for step in summary["steps"]} == {"BootNotification"}

        assert csms.cli("station", "accept", "NEW-1").returncode == 0
        code, summary, log = run_sim(csms, "NEW-1", "--protocol", "ocpp2.0.1")
        assert code == 0, log
        assert summary["boot_status"] == "Accepted" and summary["heartbeat_interval"] == 60
    finally:
        stop_csms_process(csms)


# ---- over a real socket, against a scripted CSMS -----------------------------------------------
class ScriptedCsms:
    """Just enough CSMS to call the station while it idles: it answers the station's CALLs with
    canned payloads and lets the test send its own."""

    def __init__(self, version: Version) -> None:
        self.version = version
        self.inbound_in, self.inbound = trio.open_memory_channel[InboundCall](math.inf)
        self.connections = 0
        self._ws: Any = None
        self._session: RpcSession | None = None
        self._result: CallAnswered | CallFailed | None = None
        self._answered = trio.Event()

    async def handle(self, request: WebSocketRequest) -> None:
        ws = await request.accept(subprotocol=self.version.value)
        session = RpcSession(self.version)
        self._ws, self._session = ws, session
        self.connections += 1
        try:
            while True:
                for event in session.receive(await ws.get_message(), trio.current_time()):
                    await self._on_event(ws, session, event)
        except ConnectionClosed:
            pass

    async def _on_event(self, ws: Any, session: RpcSession, event: Any) -> None:
        if isinstance(event, InboundCall):
            reply = canned_answer(self.version, event.action, event.payload)
            await ws.send_message(session.answer(event, reply))
            await self.inbound_in.send(event)
        elif isinstance(event, CallAnswered | CallFailed):
            self._result = event
            self._answered.set()

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert self._session is not None
        self._answered = trio.Event()
        _, text = self._session.start_call(action, payload, trio.current_time())
        await self._ws.send_message(text)
        await self._answered.wait()
        assert isinstance(self._result, CallAnswered), self._result
        return self._result.payload

    async def expect(self, action: str) -> dict[str, Any]:
        async for call in self.inbound:
            if call.action == action:
                return call.payload
        raise AssertionError(f"no {action}")


async def test_a_lingering_station_answers_and_obeys_the_csms(nursery: trio.Nursery) -> None:
    csms = ScriptedCsms(Version.OCPP201)
    server = await nursery.start(serve_websocket, csms.handle, "127.0.0.1", 0, None)
    station = sim.make_station(sim.StationOptions(
        url=f"ws://127.0.0.1:{server.port}/ocpp", station_id="CS-W",
        protocol=Version.OCPP201, linger=math.inf, time_scale=1000))
    nursery.start_soon(station.run)
    with trio.fail_after(10):
        assert (await csms.expect("BootNotification"))["reason"] == "PowerUp"
        await csms.expect("StatusNotification")
        got = await csms.call("GetVariables", {"getVariableData": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
        assert got["getVariableResult"][0]["attributeValue"] == "300"

        started = await csms.call("RequestStartTransaction",
                                  {"idToken": {"idToken": "TAG9", "type": "ISO14443"},
                                   "remoteStartId": 7})
        assert started["status"] == "Accepted"
        event = await csms.expect("TransactionEvent")
        assert (event["eventType"], event["triggerReason"]) == ("Started", "RemoteStart")
        assert event["transactionInfo"]["remoteStartId"] == 7
        tx_id = event["transactionInfo"]["transactionId"]

        assert (await csms.call("RequestStopTransaction", {"transactionId": tx_id})
                )["status"] == "Accepted"
        while (event := await csms.expect("TransactionEvent"))["eventType"] != "Ended":
            pass
        assert event["transactionInfo"]["stoppedReason"] == "Remote"

        assert (await csms.call("Reset", {"type": "Immediate"}))["status"] == "Accepted"
        assert (await csms.expect("BootNotification"))["reason"] == "RemoteReset"
    assert csms.connections == 2
    assert station.report.reboots == 1 and station.report.ok
    assert [c["action"] for c in station.report.calls_received] == [
        "GetVariables", "RequestStartTransaction", "RequestStopTransaction", "Reset"]


# ---- answers on their own ----------------------------------------------------------------------
def test_change_configuration_sets_the_heartbeat_interval_and_refuses_the_rest() -> None:
    station = make_station(Version.OCPP16)

    def change(key: str, value: str) -> str:
        return answer(station, "ChangeConfiguration", {"key": key, "value": value}
                      ).payload["status"]

    assert change("HeartbeatInterval", "42") == "Accepted"
    assert station.config.seconds("HeartbeatInterval") == 42
    assert change("HeartbeatInterval", "soon") == "Rejected"
    assert change("NumberOfConnectors", "4") == "Rejected"
    assert change("NoSuchKey", "1") == "NotSupported"
    assert change("MeterValuesSampledData", "Energy.Active.Import.Register,Voltage") == "Accepted"
    assert change("MeterValuesSampledData", "Temperature") == "Rejected"
    assert station.config.seconds("HeartbeatInterval") == 42

    got = answer(station, "GetConfiguration", {"key": ["HeartbeatInterval", "NoSuchKey"]}).payload
    assert got == {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False,
                                         "value": "42"}], "unknownKey": ["NoSuchKey"]}
    everything = answer(station, "GetConfiguration", {}).payload["configurationKey"]
    assert {"key": "NumberOfConnectors", "readonly": True, "value": "1"} in everything


def test_set_variables_answers_each_variable_on_its_own() -> None:
    station = make_station(Version.OCPP201)

    def item(component: str, variable: str, value: str, **extra: str) -> dict[str, Any]:
        return {"component": {"name": component}, "variable": {"name": variable},
                "attributeValue": value, **extra}

    got = answer(station, "SetVariables", {"setVariableData": [
        item("OCPPCommCtrlr", "HeartbeatInterval", "42"),
        item("SampledDataCtrlr", "TxUpdatedInterval", "5"),
        item("AlignedDataCtrlr", "Interval", "900"),
        item("SecurityCtrlr", "Identity", "someone-else"),
        item("OCPPCommCtrlr", "HeartbeatInterval", "7", attributeType="Target"),
        item("OCPPCommCtrlr", "HeartbeatInterval", "-5"),
        item("NoSuchCtrlr", "HeartbeatInterval", "1"),
        item("OCPPCommCtrlr", "NoSuchVariable", "1"),
    ]}).payload
    assert [r["attributeStatus"] for r in got["setVariableResult"]] == [
        "Accepted", "Accepted", "Accepted", "Rejected", "NotSupportedAttributeType", "Rejected",
        "UnknownComponent", "UnknownVariable"]
    assert station.config.seconds("HeartbeatInterval") == 42
    assert station.config.seconds("MeterValueSampleInterval") == 5
    assert station.config.seconds("ClockAlignedDataInterval") == 900

    got = answer(station, "GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "Identity"}}]}).payload
    assert [(r["attributeStatus"], r["attributeValue"]) for r in got["getVariableResult"]] == [
        ("Accepted", "42"), ("Accepted", "CS-T")]


@pytest.mark.parametrize("version", [Version.OCPP16, Version.OCPP201, Version.OCPP21])
def test_calls_the_station_does_not_handle_are_refused_as_the_spec_says(version: Version) -> None:
    station = make_station(version)
    known_but_unhandled = "ReserveNow"
    assert station.handle_call(known_but_unhandled, {}).error is ErrorKind.NOT_SUPPORTED
    assert station.handle_call("FlyToTheMoon", {}).error is ErrorKind.NOT_IMPLEMENTED
    data = {"vendorId": "com.example"}
    assert answer(station, "DataTransfer", data).payload["status"] == "UnknownVendorId"
    assert answer(station, "ClearCache", {}).payload == {"status": "Accepted"}


def test_v2_refuses_triggers_and_unlocks_it_cannot_honour() -> None:
    station = make_station(Version.OCPP201)
    station.registration = "Accepted"
    status = {name: answer(station, "TriggerMessage", {"requestedMessage": name}
                           ).payload["status"]
              for name in ("BootNotification", "TransactionEvent", "SignV2GCertificate",
                           "Heartbeat")}
    assert status == {"BootNotification": "Rejected", "TransactionEvent": "Rejected",
                      "SignV2GCertificate": "NotImplemented", "Heartbeat": "Accepted"}
    unlock = answer(station, "UnlockConnector", {"evseId": 9, "connectorId": 1}).payload
    assert unlock == {"status": "UnknownConnector"}


async def test_heartbeat_task_follows_an_interval_the_csms_sets(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    station = make_station(Version.OCPP201)
    link = FakeLink(Version.OCPP201)
    station.attach(link, nursery)
    await station.boot("PowerUp")
    assert station.config.seconds("HeartbeatInterval") == 300  # from the BootNotification answer
    nursery.start_soon(station.heartbeat_loop)
    await trio.sleep(100)
    assert link.actions().count("Heartbeat") == 0

    answer(station, "SetVariables", {"setVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"},
         "attributeValue": "10"}]})
    await trio.sleep(35)
    # Idle for 100 s already, so one at once, then at 110, 120 and 130: not at 300.
    assert link.actions().count("Heartbeat") == 4


async def test_v16_remote_start_and_stop_drive_a_real_session(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    station = make_station(Version.OCPP16, power_w=7200)
    link = FakeLink(Version.OCPP16)
    station.attach(link, nursery)
    start = answer(station, "RemoteStartTransaction", {"idTag": "TAG9", "connectorId": 1})
    assert start.payload == {"status": "Accepted"}
    # The first start claimed the connector before any message went out.
    again = answer(station, "RemoteStartTransaction", {"idTag": "TAG9", "connectorId": 1})
    assert again.payload == {"status": "Rejected"}
    nursery.start_soon(start.then)
    await trio.sleep(150)  # two 60 s sample intervals and a half
    assert link.actions() == ["StatusNotification", "StartTransaction", "StatusNotification",
                              "MeterValues", "MeterValues"]
    assert link.last("MeterValues")["transactionId"] == 77

    busy = answer(station, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert busy.payload == {"status": "Scheduled"}
    assert answer(station, "RemoteStopTransaction", {"transactionId": 5}).payload == {
        "status": "Rejected"}
    stop = answer(station, "RemoteStopTransaction", {"transactionId": 77})
    assert stop.payload == {"status": "Accepted"}
    assert stop.then is not None
    await stop.then()
    await trio.sleep(1)
    stopped = link.last("StopTransaction")
    assert stopped["reason"] == "Remote"
    # 7200 W for 150 s is 300 Wh.
    assert stopped["meterStop"] - link.last("StartTransaction")["meterStart"] == 300
    # The scheduled ChangeAvailability applies once the session is over.
    assert [p["status"] for a, p in link.calls if a == "StatusNotification"] == [
        "Preparing", "Charging", "Finishing", "Unavailable"]


async def test_clock_aligned_meter_values_follow_the_configured_interval(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    clock = sim.Clock(start=datetime(2025, 1, 1, 0, 0, 10, tzinfo=UTC))
    station = sim.make_station(sim.StationOptions(url="ws://unused", station_id="CS-T"),
                               clock=clock)
    link = FakeLink(Version.OCPP16)
    station.attach(link, nursery)
    nursery.start_soon(station.aligned_data_loop)
    await trio.sleep(3600)
    assert "MeterValues" not in link.actions()  # ClockAlignedDataInterval is 0: off

    for key, value in (("ClockAlignedDataInterval", "900"),
                       ("MeterValuesAlignedData", "Energy.Active.Import.Register,Voltage")):
        assert answer(station, "ChangeConfiguration", {"key": key, "value": value}
                      ).payload == {"status": "Accepted"}
    await trio.sleep(3600)  # 01:00:10 to 02:00:10
    sent = [p["meterValue"][0] for a, p in link.calls if a == "MeterValues"]
    assert [m["timestamp"] for m in sent] == [
        "2025-01-01T01:15:00.000Z", "2025-01-01T01:30:00.000Z", "2025-01-01T01:45:00.000Z",
        "2025-01-01T02:00:00.000Z"]
    assert [(v["measurand"], v["context"]) for v in sent[0]["sampledValue"]] == [
        ("Energy.Active.Import.Register", "Sample.Clock"), ("Voltage", "Sample.Clock")]


async def test_minimum_status_duration_drops_statuses_that_do_not_last(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    station = make_station(Version.OCPP16)
    link = FakeLink(Version.OCPP16)
    station.attach(link, nursery)
    answer(station, "ChangeConfiguration", {"key": "MinimumStatusDuration", "value": "30"})
    connector = station.connectors[1]
    await station.set_status(connector, "Preparing")
    await trio.sleep(5)
    await station.set_status(connector, "Charging")
    await trio.sleep(60)
    assert [p["status"] for _, p in link.calls] == ["Charging"]


# ---- samples delivered with the stop, readings on demand ---------------------------------------
async def test_v201_tx_ended_samples_come_with_ended_and_no_live_updates(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    station = make_station(Version.OCPP201, power_w=7200)
    link = FakeLink(Version.OCPP201)
    station.attach(link, nursery)

    def item(variable: str, value: str) -> dict[str, Any]:
        return {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": variable},
                "attributeValue": value}

    got = answer(station, "SetVariables", {"setVariableData": [
        item("TxUpdatedInterval", "0"), item("TxEndedInterval", "300"),
        item("TxEndedMeasurands", "Energy.Active.Import.Register,Power.Active.Import")]})
    assert {r["attributeStatus"] for r in got.payload["setVariableResult"]} == {"Accepted"}
    start = answer(station, "RequestStartTransaction",
                   {"idToken": {"idToken": "TAG9", "type": "ISO14443"}, "remoteStartId": 3})
    nursery.start_soon(start.then)
    await trio.sleep(1000)
    # A triggered MeterValues is a MeterValues (F06), with the register, during the session.
    trigger = answer(station, "TriggerMessage", {"requestedMessage": "MeterValues",
                                                 "evse": {"id": 1}})
    assert trigger.payload == {"status": "Accepted"}
    await trigger.then()
    reading = link.last("MeterValues")
    assert reading["evseId"] == 1
    [triggered] = reading["meterValue"][0]["sampledValue"]
    # 7200 W for 1000 s is 2000 Wh on a register that started at 1000.
    assert (triggered["measurand"], triggered["context"], triggered["value"]) == (
        "Energy.Active.Import.Register", "Trigger", 3000)
    tx_id = link.last("TransactionEvent")["transactionInfo"]["transactionId"]
    stop = answer(station, "RequestStopTransaction", {"transactionId": tx_id})
    await stop.then()
    await trio.sleep(1)
    events = [p for a, p in link.calls if a == "TransactionEvent"]
    assert [e["eventType"] for e in events] == ["Started", "Ended"]
    ended = events[-1]["meterValue"]
    periodic = ended[:-1]
    assert [v["context"] for m in periodic for v in m["sampledValue"]] == ["Sample.Periodic"] * 6
    registers = [m["sampledValue"][0]["value"] for m in periodic]
    # Taken at 300, 600 and 900 s: 600, 1200 and 1800 Wh on top of 1000.
    assert registers == [1600, 2200, 2800]
    assert [m["sampledValue"][1]["measurand"] for m in periodic] == ["Power.Active.Import"] * 3
    assert ended[-1]["sampledValue"][0]["context"] == "Transaction.End"
    assert ended[-1]["sampledValue"][0]["value"] == 3000
    assert [m["timestamp"] for m in ended] == sorted(m["timestamp"] for m in ended)


async def test_v16_stop_txn_sampled_data_every_sample_interval_without_live_meter_values(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    station = make_station(Version.OCPP16, power_w=3600)
    link = FakeLink(Version.OCPP16)
    station.attach(link, nursery)
    for key, value in (("MeterValuesSampledData", ""), ("MeterValueSampleInterval", "600"),
                       ("StopTxnSampledData", "Energy.Active.Import.Register")):
        assert answer(station, "ChangeConfiguration", {"key": key, "value": value}
                      ).payload == {"status": "Accepted"}
    start = answer(station, "RemoteStartTransaction", {"idTag": "TAG9", "connectorId": 1})
    nursery.start_soon(start.then)
    await trio.sleep(2500)
    assert "MeterValues" not in link.actions()
    trigger = answer(station, "TriggerMessage", {"requestedMessage": "MeterValues",
                                                 "connectorId": 1})
    await trigger.then()
    reading = link.last("MeterValues")
    assert reading["transactionId"] == 77
    assert reading["meterValue"][0]["sampledValue"][0]["value"] == "3500"
    await answer(station, "RemoteStopTransaction", {"transactionId": 77}).then()
    await trio.sleep(1)
    data = link.last("StopTransaction")["transactionData"]
    assert [(m["sampledValue"][0]["context"], m["sampledValue"][0]["value"]) for m in data] == [
        ("Sample.Periodic", "1600"), ("Sample.Periodic", "2200"), ("Sample.Periodic", "2800"),
        ("Sample.Periodic", "3400"), ("Transaction.End", "3500")]
    assert link.actions().count("MeterValues") == 1


def test_samples_kept_for_the_stop_are_thinned_and_keep_the_newest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim.state, "MAX_ENDED_SAMPLES", 4)
    tx = sim.SimTransaction(1, "TAG", 0, sim.ChargePlan(1000), 0.0)
    for n in range(9):
        tx.keep_ended_sample({"n": n})
    assert len(tx.ended_samples) <= 4 and tx.ended_samples[-1] == {"n": 8}
    assert [s["n"] for s in tx.ended_samples] == sorted(s["n"] for s in tx.ended_samples)

"""Item 6: a budget policy that learns what a charger refuses and yields to the operator.

Raw stations over real sockets against the in-process server on a real SQLite file: they
answer each setting as a stock charger would (some accepted, some refused), reconnect, and
boot again with new firmware. Settings going out only after an Accepted BootNotification is
tests/test_before_boot.py's subject; here the first CALL of each connection also follows the
boot answer.
"""

from __future__ import annotations

import json
import socket
from functools import partial
from typing import Any

import pytest
import trio

from lite_csms import config
from lite_csms.budget import explain, levels, memory
from lite_csms.cli import budget_text
from lite_csms.ocppj import timestamps
from tests.conftest import CsmsInProcess, run_cli, start_in_process
from tests.test_admin_api import http, new_key
from tests.test_before_boot import SILENCE, RawStation, connect
from tests.test_server import BOOT_16, BOOT_201, register

V16_REFUSED = {("MinimumStatusDuration", "60"): "NotSupported",
               ("MinimumStatusDuration", "0"): "NotSupported",
               ("WebSocketPingInterval", "0"): "Rejected",
               ("MeterValuesSampledData", ""): "Rejected"}


class PickyStation(RawStation):
    """Refuses the (key, value) pairs given; accepts everything else."""

    def __init__(self, stream: trio.SocketStream, refused: dict[tuple[str, str], str]) -> None:
        super().__init__(stream)
        self.refused = refused

    async def answer(self, call: list[Any]) -> None:
        action, payload = call[2], call[3]
        if action == "SetVariables":
            results = []
            for item in payload["setVariableData"]:
                key = f"{item['component']['name']}.{item['variable']['name']}"
                status = self.refused.get((key, item["attributeValue"]), "Accepted")
                results.append({"attributeStatus": status, "component": item["component"],
                                "variable": item["variable"]})
            result: dict[str, Any] = {"setVariableResult": results}
        else:
            result = {"status": self.refused.get((payload.get("key"), payload.get("value")),
                                                 "Accepted")}
        await self.send([3, call[1], result])


async def session(csms: CsmsInProcess, station_id: str, protocol: str,
                  refused: dict[tuple[str, str], str], first: list[Any]
                  ) -> tuple[PickyStation, dict[str, Any], list[list[Any]]]:
    """Connect, send `first` (a boot or a heartbeat), answer every CALL until quiet."""
    raw = await connect(csms, station_id, protocol)
    station = PickyStation(raw.stream, refused)
    await station.send(first)
    answer = await station.next_message()
    assert answer[:2] == [3, first[1]], answer  # our answer comes before any CALL
    calls: list[list[Any]] = []
    while True:
        with trio.move_on_after(SILENCE):
            call = await station.next_message()
            assert call[0] == 2, call
            calls.append(call)
            await station.answer(call)
            continue
        return station, answer[2], calls


def v16_sent(calls: list[list[Any]]) -> list[tuple[str, str]]:
    return [(c[3]["key"], c[3]["value"]) for c in calls if c[2] == "ChangeConfiguration"]


def v2_sent(calls: list[list[Any]]) -> list[tuple[str, str]]:
    return [(f"{i['component']['name']}.{i['variable']['name']}", i["attributeValue"])
            for c in calls if c[2] == "SetVariables" for i in c[3]["setVariableData"]]


async def gone(csms: CsmsInProcess, station: RawStation, station_id: str) -> None:
    await station.stream.aclose()
    with trio.fail_after(5):
        while station_id in csms.server.connections:
            await trio.sleep(0.02)


def keepidle(csms: CsmsInProcess, station_id: str) -> int:
    sock = csms.server.connections[station_id].meter.sock
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)


async def test_v16_refusals_are_remembered_until_the_firmware_changes(nursery, tmp_path
                                                                      ) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    await register(csms, "LRN-16")
    boot = [2, "b1", "BootNotification", {**BOOT_16, "firmwareVersion": "1.0"}]
    station, _, calls = await session(csms, "LRN-16", "ocpp1.6", V16_REFUSED, boot)
    sent = v16_sent(calls)
    wanted = levels.choices_for(levels.NORMAL, levels.Version.OCPP16, 600)
    # Every setting went out once; the ping off was refused, so its fallback followed, and
    # the register replaced the refused empty list of live measurands.
    assert sent[:len(wanted)] == [(k, v[0]) for k, v in wanted.items()]
    assert sent[len(wanted):] == [("WebSocketPingInterval", "540"),
                                  ("MeterValuesSampledData", levels.ENERGY)]
    # The charger pings at 540 s itself: the server's probes wait for a NAT timeout of silence.
    assert keepidle(csms, "LRN-16") == 600
    await gone(csms, station, "LRN-16")

    # A reconnect without a boot, and one with a boot on the same firmware: nothing again.
    for first in ([2, "h", "Heartbeat", {}], boot):
        station, _, calls = await session(csms, "LRN-16", "ocpp1.6", V16_REFUSED, first)
        assert calls == []
        await gone(csms, station, "LRN-16")

    # The new firmware may accept what the old refused, and may have reset what the old
    # held: every setting of the level is sent once more.
    upgraded = [2, "b2", "BootNotification", {**BOOT_16, "firmwareVersion": "1.1"}]
    station, _, calls = await session(csms, "LRN-16", "ocpp1.6", {}, upgraded)
    assert sorted(v16_sent(calls)) == sorted((k, v[0]) for k, v in wanted.items())
    # Its ping is off now: the server's TCP keepalive holds the NAT, at 0.9 x 600 s.
    assert keepidle(csms, "LRN-16") == 540
    refusals = await csms.server.store.run(partial(memory.refusals, "LRN-16"))
    assert refusals == {}
    await gone(csms, station, "LRN-16")


async def test_v201_refused_variables_are_not_sent_again(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    await register(csms, "LRN-2")
    refused = {("SampledDataCtrlr.TxEndedInterval", "900"): "UnknownVariable",
               ("AlignedDataCtrlr.Interval", "0"): "UnknownComponent",
               ("OCPPCommCtrlr.WebSocketPingInterval", "0"): "Rejected",
               ("OCPPCommCtrlr.WebSocketPingInterval", "540"): "Rejected"}
    boot = [2, "b", "BootNotification", {**BOOT_201, "chargingStation": {
        **BOOT_201["chargingStation"], "firmwareVersion": "2.0"}}]
    station, _, calls = await session(csms, "LRN-2", "ocpp2.0.1", refused, boot)
    assert ("OCPPCommCtrlr.WebSocketPingInterval", "540") in v2_sent(calls)
    # It refuses to ping at all: the server's probes hold the NAT at 0.9 x nat_timeout.
    assert keepidle(csms, "LRN-2") == 540
    await gone(csms, station, "LRN-2")
    station, _, calls = await session(csms, "LRN-2", "ocpp2.0.1", refused, boot)
    assert calls == []  # one SetVariables of 342 B per reconnect, no more
    state = await csms.server.store.run(partial(explain.explanation, "LRN-2", csms.server.settings,
                                                timestamps.now_utc()))
    skipped = {s["key"]: s["reason"] for s in state["policy"]["settings"]
               if s["outcome"] == "skipped"}
    # UnknownVariable: the key itself is unknown, so no value of it is sent again.
    assert skipped["SampledDataCtrlr.TxEndedInterval"].startswith(
        "key unknown to the charger (UnknownVariable under firmware 2.0)")
    assert skipped["SampledDataCtrlr.TxUpdatedInterval"].startswith("already held")
    await gone(csms, station, "LRN-2")


async def test_operator_setting_wins_until_released(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    await register(csms, "OPR-1")
    boot = [2, "b", "BootNotification", BOOT_16]
    station, answer, calls = await session(csms, "OPR-1", "ocpp1.6", {}, boot)
    assert answer["interval"] == 21600 and ("HeartbeatInterval", "21600") in v16_sent(calls)
    # `config set OPR-1 HeartbeatInterval 900`: the CLI posts it to the admin API.
    key = await new_key(csms)
    async with trio.open_nursery() as inner:
        inner.start_soon(partial(http, csms, "POST", "/stations/OPR-1/commands", key, {
            "operation": "set-config", "args": {"key": "HeartbeatInterval", "value": "900"}}))
        call = await station.next_message()
        assert call[2:] == ["ChangeConfiguration", {"key": "HeartbeatInterval", "value": "900"}]
        await station.answer(call)
    await gone(csms, station, "OPR-1")

    station, answer, calls = await session(csms, "OPR-1", "ocpp1.6", {}, boot)
    assert answer["interval"] == 900  # the boot answer carries the operator's value
    assert calls == []  # and the policy does not set it back
    state = await csms.server.store.run(partial(explain.explanation, "OPR-1",
                                                csms.server.settings, timestamps.now_utc()))
    yielded = {s["key"]: s for s in state["policy"]["settings"] if s["outcome"] == "yielded"}
    assert yielded["HeartbeatInterval"]["value"] == "900"
    assert "operator-owned" in yielded["HeartbeatInterval"]["reason"]
    assert "api:ops" in yielded["HeartbeatInterval"]["reason"]
    text = "\n".join(budget_text.plan_lines(state["policy"]))
    assert "yielded: HeartbeatInterval=900" in text and "BootNotification interval 900" in text
    await gone(csms, station, "OPR-1")

    # Handed back with the CLI: the next connection restores the level's heartbeat.
    released = run_cli("budget", "set", "OPR-1", "--release", "HeartbeatInterval",
                       "--database", str(csms.database))
    assert released.returncode == 0, released.stderr
    assert "released to the policy: HeartbeatInterval" in released.stderr
    station, answer, calls = await session(csms, "OPR-1", "ocpp1.6", {}, boot)
    assert answer["interval"] == 21600 and v16_sent(calls) == [("HeartbeatInterval", "21600")]
    await gone(csms, station, "OPR-1")
    changes = await csms.server.store.run(partial(explain.changes, "OPR-1"))
    outcomes = [(s["key"], s["outcome"]) for c in changes for s in c["settings"]]
    assert ("HeartbeatInterval", "sent") in outcomes

    # The admin API hands keys back the same way (PUT .../budget {"release": ...}).
    await csms.server.store.run(partial(memory.claim, "OPR-1", {"MinimumStatusDuration": "5"},
                                        "api:ops", timestamps.now_utc()))
    status, body = await http(csms, "PUT", "/stations/OPR-1/budget", key, {"release": "all"})
    assert status == 200 and body["released"] == ["MinimumStatusDuration"]
    assert body["cap_bytes"] == csms.server.settings.budget_cap  # nothing else changed
    status, body = await http(csms, "PUT", "/stations/OPR-1/budget", key, {"release": 5})
    assert status == 422 and "release must be" in body["error"]


@pytest.mark.parametrize(("protocol", "boot", "key"), [
    ("ocpp1.6", BOOT_16, "HeartbeatInterval"),
    ("ocpp2.0.1", BOOT_201, "OCPPCommCtrlr.HeartbeatInterval")])
async def test_configured_heartbeat_interval_wins(nursery, tmp_path, protocol, boot, key
                                                  ) -> None:
    # As `serve --heartbeat-interval 60` loads it.
    csms = await start_in_process(nursery, tmp_path, budget_policy=True, heartbeat_interval=60)
    await register(csms, "HB-1")
    station, answer, calls = await session(csms, "HB-1", protocol, {},
                                           [2, "b", "BootNotification", boot])
    assert answer["interval"] == 60
    sent = dict(v16_sent(calls) if protocol == "ocpp1.6" else v2_sent(calls))
    assert key not in sent and sent  # the rest of the level still goes out
    changes = await csms.server.store.run(partial(explain.changes, "HB-1"))
    decided = {s["key"]: s for s in changes[-1]["settings"]}
    assert decided[key]["outcome"] == "yielded"
    assert "heartbeat_interval 60 is set in the server's configuration" in decided[key][
        "reason"]
    await gone(csms, station, "HB-1")


def test_explicit_settings_come_from_file_environment_and_flags(tmp_path) -> None:
    assert "heartbeat_interval" not in config.load(environ={}).explicit
    env = config.load(environ={"LITE_CSMS_HEARTBEAT_INTERVAL": "60"})
    assert "heartbeat_interval" in env.explicit and env.heartbeat_interval == 60
    path = tmp_path / "csms.toml"
    path.write_text("heartbeat_interval = 120\n")
    assert "heartbeat_interval" in config.load(path, environ={}).explicit
    flag = config.load(environ={}, overrides={"heartbeat_interval": 30, "port": None})
    assert "heartbeat_interval" in flag.explicit and "port" not in flag.explicit


def test_refusal_statuses_per_version() -> None:
    set_vars = {"setVariableData": [
        {"component": {"name": "A"}, "variable": {"name": "B"}, "attributeValue": "1"},
        {"component": {"name": "A"}, "variable": {"name": "C"}, "attributeValue": "2"}]}
    answer = {"setVariableResult": [
        {"attributeStatus": "RebootRequired", "component": {"name": "A"},
         "variable": {"name": "B"}},
        {"attributeStatus": "NotSupportedAttributeType", "component": {"name": "A"},
         "variable": {"name": "C"}}]}
    assert memory.refused_in("SetVariables", set_vars, answer, None) == {
        "A.C": "NotSupportedAttributeType"}
    change = {"key": "K", "value": "1"}
    assert memory.refused_in("ChangeConfiguration", change, {"status": "NotSupported"},
                             None) == {"K": "NotSupported"}
    assert memory.refused_in("ChangeConfiguration", change, {"status": "RebootRequired"},
                             None) == {}
    # A timeout says nothing about the value; a charger without the operation refuses it.
    assert memory.refused_in("ChangeConfiguration", change, None, "Timeout") == {}
    assert memory.refused_in("ChangeConfiguration", change, None, "NotImplemented") == {
        "K": "NotImplemented"}
    assert json.dumps(memory.requested_values("SetVariables", set_vars)) == (
        '{"A.B": "1", "A.C": "2"}')

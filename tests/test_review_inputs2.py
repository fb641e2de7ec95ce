"""A second review's findings on input handling: deep JSON, integral floats, rounded limits,
unparseable answers, long error texts, CLI range messages and the policy log line.

Server findings run over real sockets against a real server; the CLI runs as a real process.
"""

from __future__ import annotations

import json
import logging
import sqlite3

import trio
from trio_websocket import open_websocket_url

from lite_csms.ocppj import framing, lenient
from lite_csms.ocppj.session import CallFailed, InboundCall, RpcSession
from lite_csms.ocppj.versions import Version
from tests.conftest import CsmsInProcess
from tests.test_admin_api import http, new_key
from tests.test_review_inputs import BOOT_201, cli, one_line_error, station
from tests.test_server import BOOT_16, register, rpc


def deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def query(csms: CsmsInProcess, sql: str, *args: object) -> list[tuple]:
    conn = sqlite3.connect(csms.database)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# ---- 1. deeply nested JSON ----------------------------------------------------------------
async def test_deep_nesting_gets_the_format_error_and_one_line(csms: CsmsInProcess,
                                                                caplog) -> None:
    for station_id, protocol, boot, code, frame in (
            ("DEEP-201", "ocpp2.0.1", BOOT_201, "FormatViolation",
             '[2,"l","DataTransfer",{"vendorId":"v","data":' + deep(500) + "}]"),
            ("DEEP-16", "ocpp1.6", BOOT_16, "FormationViolation",
             '[2,"l","Heartbeat",{"x":' + deep(300) + "}]")):
        await register(csms, station_id)
        async with open_websocket_url(csms.url(station_id), subprotocols=[protocol]) as ws:
            assert (await rpc(ws, [2, "b", "BootNotification", boot]))[0] == 3
            caplog.clear()
            await ws.send_message(frame)
            answer = json.loads(await ws.get_message())
            assert answer[:3] == [4, "l", code], answer
            assert "nested deeper than 32" in answer[3]
            # The connection stays up and serves the next message.
            assert (await rpc(ws, [2, "h", "Heartbeat", {}]))[0] == 3
        assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]
        assert len([r for r in caplog.records if "nested deeper" in r.getMessage()]) == 1
    # Deep but within the limit, and the deepest real payload, still pass the core.
    session = RpcSession(Version.OCPP201, lenient=True)
    ok = '[2,"1","DataTransfer",{"vendorId":"v","data":' + deep(29) + "}]"
    assert isinstance(session.receive(ok, 0.0)[0], InboundCall)
    assert framing.MAX_NESTING == 32


def test_many_items_are_bounded_by_the_frame_size_only() -> None:
    session = RpcSession(Version.OCPP201, lenient=True)
    text = '[2,"1","DataTransfer",{"vendorId":"v","data":[' + ",".join(["1"] * 30000) + "]}]"
    assert isinstance(session.receive(text, 0.0)[0], InboundCall)


# ---- 2. an integral float where an integer is wanted --------------------------------------
async def test_integral_float_stop_is_not_lost_on_16(csms: CsmsInProcess) -> None:
    await register(csms, "INTF-16")
    async with open_websocket_url(csms.url("INTF-16"), subprotocols=["ocpp1.6"]) as ws:
        assert (await rpc(ws, [2, "b", "BootNotification", BOOT_16]))[0] == 3
        started = await rpc(ws, [2, "s", "StartTransaction", {
            "connectorId": 1.0, "idTag": "T1", "meterStart": 1000.0,
            "timestamp": "2026-11-21T08:00:00Z"}])
        assert started[0] == 3, started
        tx_id = started[2]["transactionId"]
        stopped = await rpc(ws, [2, "t", "StopTransaction", {
            "transactionId": tx_id, "meterStop": 5000.0, "timestamp": "2026-11-21T09:00:00Z"}])
        assert stopped[0] == 3, stopped
    assert query(csms, 'SELECT meter_start_wh, meter_stop_wh FROM "transaction" WHERE id=?',
                 tx_id) == [(1000.0, 5000.0)]
    kinds = query(csms, "SELECT kind FROM station_deviation WHERE station_id='INTF-16'")
    assert ("integral float",) in kinds


def test_integral_float_rules_per_version_and_mode() -> None:
    payload = {"transactionId": 7, "meterStop": 5000.0, "timestamp": "2026-11-21T09:00:00Z"}
    fixed, deviations, violation = lenient.validate(Version.OCPP16, "StopTransaction",
                                                    dict(payload))
    assert violation is None and fixed["meterStop"] == 5000
    assert type(fixed["meterStop"]) is int
    assert [(d.kind, d.path) for d in deviations] == [("integral float", "meterStop")]
    # Not integral, or too big to store: still refused.
    for bad in (5000.5, 1e300):
        session = RpcSession(Version.OCPP16, lenient=True)
        text = json.dumps([2, "1", "StopTransaction", {**payload, "meterStop": bad}])
        assert json.loads(session.receive(text, 0.0)[0].text)[0] == 4
    # Strict 1.6 keeps the schema's verdict; 2.x takes it as the integer in both modes.
    strict = RpcSession(Version.OCPP16, lenient=False)
    answer = strict.receive(json.dumps([2, "1", "StopTransaction", payload]), 0.0)[0]
    assert json.loads(answer.text)[2] == "TypeConstraintViolation"
    status = json.dumps([2, "1", "StatusNotification", {
        "timestamp": "2026-11-21T09:00:00Z", "connectorStatus": "Available", "evseId": 1.0,
        "connectorId": 2.0}])
    for mode, recorded in ((True, ["connectorId", "evseId"]), (False, [])):
        session = RpcSession(Version.OCPP201, lenient=mode)
        call = session.receive(status, 0.0)[0]
        assert isinstance(call, InboundCall), call
        assert call.payload["evseId"] == 1 and type(call.payload["evseId"]) is int
        assert type(call.payload["connectorId"]) is int
        assert sorted(d.path for d in call.deviations
                      if d.kind == "integral float") == recorded
    # In answers too: listVersion 5.0 is the list version 5.
    session = RpcSession(Version.OCPP16, lenient=True)
    message_id, _ = session.start_call("GetLocalListVersion", {}, 0.0)
    answered = session.receive(f'[3,"{message_id}",{{"listVersion":5.0}}]', 0.0)[0]
    assert not isinstance(answered, CallFailed), answered
    assert answered.payload == {"listVersion": 5} and type(answered.payload["listVersion"]) is int
    assert [d.kind for d in answered.deviations] == ["integral float"]


# ---- 4. an answer that cannot be parsed fails the command at once -------------------------
async def answering_raw(ws, frames: dict[str, str], received: list[list]) -> None:
    """A station that answers each CALL with the raw frame set for its action ({id} filled)."""
    while True:
        message = json.loads(await ws.get_message())
        received.append(message)
        if message[0] == 2:
            frame = frames.get(message[2], '[3,"{id}",{{"status":"Accepted"}}]')
            await ws.send_message(frame.format(id=message[1]))


async def test_unparseable_answer_fails_the_command_at_once(csms: CsmsInProcess,
                                                             caplog) -> None:
    key = await new_key(csms)
    await register(csms, "NAN-16")
    received: list[list] = []
    frames = {"GetLocalListVersion": '[3,"{id}",{{"listVersion":NaN}}]'}
    async with open_websocket_url(csms.url("NAN-16"), subprotocols=["ocpp1.6"]) as ws:
        assert (await rpc(ws, [2, "b", "BootNotification", BOOT_16]))[0] == 3
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answering_raw, ws, frames, received)
            started = trio.current_time()
            with trio.fail_after(10):
                status, body = await http(csms, "POST", "/stations/NAN-16/commands", key,
                                          {"operation": "get-local-list-version"})
            assert trio.current_time() - started < 10
            assert status == 502, body
            assert "could not be read" in body["error_description"], body
            # Never answered with a CALLERROR: Part 4 forbids answering an answer.
            assert [m for m in received if m[0] == 4] == []
            # The connection stays up: the next answer lands.
            frames["GetLocalListVersion"] = '[3,"{id}",{{"listVersion":3}}]'
            status, body = await http(csms, "POST", "/stations/NAN-16/commands", key,
                                      {"operation": "get-local-list-version"})
            assert status == 200, body
            nursery.cancel_scope.cancel()
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]


def test_unparseable_frame_of_another_id_keeps_todays_path() -> None:
    session = RpcSession(Version.OCPP16, lenient=True)
    message_id, _ = session.start_call("GetLocalListVersion", {}, 0.0)
    events = session.receive('[3,"other",{"listVersion":NaN}]', 0.0)
    assert not isinstance(events[0], CallFailed)
    assert session.outstanding_call == (message_id, "GetLocalListVersion")
    # A deep answer under our id fails the call at once too.
    events = session.receive(f'[3,"{message_id}",{{"x":{deep(40)}}}]', 0.0)
    assert isinstance(events[0], CallFailed) and "nested deeper" in events[0].description
    assert session.outstanding_call is None


# ---- 5. a station's error text is bounded -------------------------------------------------
async def test_long_error_text_is_bounded(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    await register(csms, "LONG-16")
    long_text = "x" * 5000
    frames = {"GetLocalListVersion": '[4,"{id}","InternalError","' + long_text + '",{{}}]'}
    async with open_websocket_url(csms.url("LONG-16"), subprotocols=["ocpp1.6"]) as ws:
        assert (await rpc(ws, [2, "b", "BootNotification", BOOT_16]))[0] == 3
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answering_raw, ws, frames, [])
            _, body = await http(csms, "POST", "/stations/LONG-16/commands", key,
                                      {"operation": "get-local-list-version"})
            assert body["status"] == "error" and body["error_code"] == "InternalError", body
            assert len(body["error_description"]) < 600
            assert body["error_description"].endswith("(truncated from 5000 characters)")
            _, logged = await http(csms, "GET", f"/commands/{body['command_id']}", key)
            assert len(logged["error_description"]) < 600
            result = await cli(csms, key, "remote", "local-list-version", "LONG-16")
            assert result.returncode != 0
            assert "x" * 513 not in result.stdout + result.stderr
            assert "truncated" in result.stdout + result.stderr
            nursery.cancel_scope.cancel()


# ---- 3. a 1.6 limit that rounds to 0 is refused, not sent as 0 ----------------------------
async def test_limit_that_rounds_to_zero_is_refused_on_16(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    path = "/stations/LIM-16/commands"
    async with station(csms, "LIM-16") as fake:
        for limit, unit in ((0.0000001, "W"), (0.04, "A")):
            status, body = await http(csms, "POST", path, key, {
                "operation": "set-limit", "args": {"connector": 1, "limit": limit,
                                                   "unit": unit}})
            assert status == 422 and "limit" in body["error"], body
            assert "rounds to 0" in body["error"]
        line = one_line_error(await cli(csms, key, "remote", "set-limit", "LIM-16",
                                        "--connector", "1", "--limit", "0.04"))
        assert "--limit" in line and "rounds to 0" in line
        assert fake.sent("SetChargingProfile") == []
        # Others are rounded to 0.1; the value sent is what the command log keeps.
        status, body = await http(csms, "POST", path, key, {
            "operation": "set-limit", "args": {"connector": 1, "limit": 0.06, "unit": "A"}})
        assert status == 200, body
        sent = fake.sent("SetChargingProfile")[0]
        assert sent["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0][
            "limit"] == 0.1
        # 0 is an explicit pause and still goes out as 0.
        status, body = await http(csms, "POST", path, key, {
            "operation": "set-limit", "args": {"connector": 1, "limit": 0, "unit": "A"}})
        assert status == 200, body


# ---- 6. range messages --------------------------------------------------------------------
async def test_cli_range_messages_name_the_range(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    line = one_line_error(await cli(csms, key, "remote", "stop", "D16", "--transaction",
                                    "99999999999999999999"))
    assert "--transaction must be an integer from 0 to 9223372036854775807" in line
    line = one_line_error(await cli(csms, key, "remote", "reserve", "D16", "--connector", "-1",
                                    "--token", "T"))
    assert "--connector must be an integer from 0 to" in line
    line = one_line_error(await cli(csms, key, "remote", "set-limit", "D16", "--limit",
                                    "-inf"))
    assert "--limit=" in line
    line = one_line_error(await cli(csms, key, "remote", "set-limit", "D16", "--limit=-inf"))
    assert "--limit must be a finite number" in line
    # The API names the range as well, also for a number too big to be read as an integer.
    async with station(csms, "RNG-16") as fake:
        for bad in (1e20, 5.5, -1, "7"):
            status, body = await http(csms, "POST", "/stations/RNG-16/commands", key, {
                "operation": "remote-stop", "args": {"transaction": bad}})
            assert status == 422, body
            assert f"transaction must be an integer from 0 to {2**63 - 1}" in body["error"]
        assert fake.received == []


# ---- 7. the policy log line says what the station accepted --------------------------------
async def test_policy_log_counts_refusals(nursery, tmp_path, caplog) -> None:
    from tests.conftest import start_in_process

    caplog.set_level(logging.INFO)
    csms = await start_in_process(nursery, tmp_path, budget_policy=True, budget_cap=500_000)
    await register(csms, "POL-16")
    frames = {"ChangeConfiguration": '[3,"{id}",{{"status":"Rejected"}}]',
              "GetConfiguration": '[3,"{id}",{{"configurationKey":[]}}]'}
    async with open_websocket_url(csms.url("POL-16"), subprotocols=["ocpp1.6"]) as ws:
        assert (await rpc(ws, [2, "b", "BootNotification", BOOT_16]))[0] == 3
        async with trio.open_nursery() as inner:
            inner.start_soon(answering_raw, ws, frames, [])
            with trio.fail_after(15):
                while not [r for r in caplog.records if "policy level" in r.getMessage()]:
                    await trio.sleep(0.05)
            inner.cancel_scope.cancel()
    line = next(r.getMessage() for r in caplog.records if "policy level" in r.getMessage())
    assert "applied" not in line
    assert ", 0 accepted," in line and "refused or unanswered" in line, line

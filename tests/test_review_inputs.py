"""A review's findings on input handling: charger answers, operator arguments, CLI wording,
message direction, lenient answers, exact numbers, log lines, URL paths and the version.

Everything runs over real sockets against a real server; the CLI runs as a real process.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from lite_csms import __version__
from tests.conftest import REPO, CsmsInProcess, run_cli, start_in_process
from tests.test_admin_api import http, new_key
from tests.test_server import BOOT_16, register, rpc

BOOT_201 = {"reason": "PowerUp", "chargingStation": {"vendorName": "Acme", "model": "Home-7"}}
INT64_OVER = 2**63


@dataclass
class FakeStation:
    """A booted station that answers each CALL with the raw JSON text set for its action."""

    ws: WebSocketConnection
    answers: dict[str, str] = field(default_factory=dict)
    received: list[list[Any]] = field(default_factory=list)

    async def serve(self) -> None:
        while True:
            message = json.loads(await self.ws.get_message())
            self.received.append(message)
            if message[0] == 2:
                answer = self.answers.get(message[2], '{"status":"Accepted"}')
                await self.ws.send_message(f'[3,"{message[1]}",{answer}]')

    def sent(self, action: str) -> list[dict[str, Any]]:
        return [m[3] for m in self.received if m[0] == 2 and m[2] == action]


@asynccontextmanager
async def station(csms: CsmsInProcess, station_id: str, protocol: str = "ocpp1.6"
                  ) -> AsyncIterator[FakeStation]:
    await register(csms, station_id)
    async with open_websocket_url(csms.url(station_id), subprotocols=[protocol]) as ws:
        boot = BOOT_16 if protocol == "ocpp1.6" else BOOT_201
        answer = await rpc(ws, [2, "boot", "BootNotification", boot])
        assert answer[2]["status"] == "Accepted"
        fake = FakeStation(ws)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fake.serve)
            yield fake
            nursery.cancel_scope.cancel()


async def cli(csms: CsmsInProcess, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITE_CSMS_API_KEY": key,
           "LITE_CSMS_ADMIN_PORT": str(csms.server.admin_port)}
    return await trio.to_thread.run_sync(lambda: run_cli(*args, env=env))


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The CLI's bad-input contract: exit 2, nothing on stdout, one meaningful line on stderr."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lite-csms: error: ")
    assert len(lines[0]) > len("lite-csms: error: ") + 5, lines[0]
    return lines[0]


# ---- 4. `remote call` only sends CSMS-initiated messages -----------------------------------
async def test_call_refuses_station_to_csms_messages(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    async with station(csms, "DIR-16") as fake, station(csms, "DIR-21", "ocpp2.1") as fake21:
        for station_id, action in (("DIR-16", "Heartbeat"), ("DIR-16", "StartTransaction"),
                                   ("DIR-21", "TransactionEvent"),
                                   ("DIR-21", "NotifyPeriodicEventStream")):
            status, body = await http(csms, "POST", f"/stations/{station_id}/commands", key, {
                "operation": "call", "args": {"action": action, "payload": {}}})
            assert status == 422 and action in body["error"], body
            assert "station" in body["error"]
        line = one_line_error(await cli(csms, key, "remote", "call", "DIR-16", "Heartbeat"))
        assert "Heartbeat" in line and "CSMS-initiated" in line
        # DataTransfer goes both ways: the CSMS may send it.
        fake.answers["DataTransfer"] = '{"status":"Accepted"}'
        status, body = await http(csms, "POST", "/stations/DIR-16/commands", key, {
            "operation": "call", "args": {"action": "DataTransfer",
                                          "payload": {"vendorId": "acme"}}})
        assert status == 200 and body["status"] == "answered"
        assert fake.sent("Heartbeat") == [] and fake.sent("DataTransfer") == [
            {"vendorId": "acme"}]
        assert fake21.received == []


# ---- 9. the version -----------------------------------------------------------------------
def test_version_is_the_release_after_the_one_it_upgrades() -> None:
    # tests/data/release-0.1.0.sqlite3 is the schema-2 database this release upgrades.
    assert (REPO / "tests" / "data" / "release-0.1.0.sqlite3").is_file()
    assert tuple(int(p) for p in __version__.split(".")) > (0, 1, 0)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["version"] == __version__
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout == f"lite-csms {__version__}\n"


# ---- 1. numbers in a station's answers are checked like those in its CALLs ----------------
COMPOSITE_16 = ('{{"status":"Accepted","connectorId":{connector},'
                '"scheduleStart":"2026-11-21T10:00:00Z","chargingSchedule":{{"duration":'
                '{duration},"chargingRateUnit":"A","chargingSchedulePeriod":[{{"startPeriod":0,'
                '"limit":{limit}}}]}}}}')


async def test_unstorable_numbers_in_answers_fail_the_command(csms: CsmsInProcess,
                                                              caplog) -> None:
    key = await new_key(csms)
    path = "/stations/ANS-16/commands"
    async with station(csms, "ANS-16") as fake:
        bad = [("limit", COMPOSITE_16.format(connector=1, duration=100, limit="1e400")),
               ("connectorId", COMPOSITE_16.format(connector=INT64_OVER, duration=100,
                                                   limit=16)),
               ("duration", COMPOSITE_16.format(connector=1, duration=INT64_OVER, limit=16))]
        for field_name, answer in bad:
            fake.answers["GetCompositeSchedule"] = answer
            caplog.clear()
            status, body = await http(csms, "POST", path, key, {
                "operation": "composite-schedule", "args": {"connector": 1}})
            assert status == 502, body
            assert body["status"] == "error"
            assert body["error_code"] == "PropertyConstraintViolation"
            assert field_name in body["error_description"]
            assert field_name in body["error"]
            status, logged = await http(csms, "GET", f"/commands/{body['command_id']}", key)
            assert logged["status"] == "error" and field_name in logged["error_description"]
            lines = [r for r in caplog.records if "GetCompositeSchedule" in r.getMessage()]
            assert len(lines) == 1 and field_name in lines[0].getMessage()
        fake.answers["GetLocalListVersion"] = f'{{"listVersion":{INT64_OVER}}}'
        status, body = await http(csms, "POST", path, key,
                                  {"operation": "get-local-list-version"})
        assert status == 502 and "listVersion" in body["error"]
        line = one_line_error(await cli(csms, key, "remote", "local-list-version", "ANS-16"))
        assert "listVersion" in line and "signed 64-bit" in line
        line = one_line_error(await cli(csms, key, "remote", "composite-schedule", "ANS-16"))
        # The connection stayed up through all of it: a good answer still lands and is kept.
        fake.answers["GetCompositeSchedule"] = COMPOSITE_16.format(connector=1, duration=100,
                                                                   limit=16)
        status, body = await http(csms, "POST", path, key, {
            "operation": "composite-schedule", "args": {"connector": 1}})
        assert status == 200 and body["status"] == "answered"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    status, shown = await http(csms, "GET", "/stations/ANS-16", key)
    assert status == 200
    assert "Infinity" not in json.dumps(shown) and str(INT64_OVER) not in json.dumps(shown)


# ---- 2. operator input is range-checked before anything is sent ---------------------------
async def test_operator_integers_are_checked_before_sending(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    path = "/stations/OPS-16/commands"
    async with station(csms, "OPS-16") as fake:
        for args, field_name in (
                ({"connector": 1, "limit": 16, "stack_level": INT64_OVER}, "stack_level"),
                ({"connector": 1, "limit": 16, "stack_level": -1}, "stack_level"),
                ({"connector": 1, "limit": 16, "duration": -5}, "duration"),
                ({"connector": -1, "limit": 16}, "connector"),
                ({"connector": 1, "periods": [{"start": INT64_OVER, "limit": 16}]}, "start")):
            status, body = await http(csms, "POST", path, key,
                                      {"operation": "set-limit", "args": args})
            assert status == 422 and field_name in body["error"], (args, body)
        status, body = await http(csms, "POST", path, key, {
            "operation": "reserve", "args": {"connector": INT64_OVER, "token": "T-1"}})
        assert status == 422 and "connector" in body["error"]
        status, body = await http(csms, "POST", path, key, {
            "operation": "remote-stop", "args": {"transaction": INT64_OVER}})
        assert status == 422 and "transaction" in body["error"]
        # A payload of `call` passes the numeric rules too: the schema sets no maximum.
        status, body = await http(csms, "POST", path, key, {
            "operation": "call", "args": {"action": "GetCompositeSchedule", "payload": {
                "connectorId": 1, "duration": INT64_OVER}}})
        assert status == 422 and "duration" in body["error"]
        line = one_line_error(await cli(
            csms, key, "remote", "set-limit", "OPS-16", "--connector", "1", "--limit", "16",
            "--stack-level", str(INT64_OVER)))
        assert "--stack-level must be an integer from 0 to" in line
        line = one_line_error(await cli(csms, key, "remote", "reserve", "OPS-16",
                                        "--connector", str(INT64_OVER), "--token", "T-1"))
        assert "--connector must be" in line
        # Nothing of it reached the station, nor the command log.
        assert fake.sent("SetChargingProfile") == [] and fake.sent("ReserveNow") == []
        assert fake.sent("GetCompositeSchedule") == []
        status, logged = await http(csms, "GET", path, key)
        assert status == 200 and logged == []
        # A good one still goes out.
        status, body = await http(csms, "POST", path, key, {
            "operation": "set-limit", "args": {"connector": 1, "limit": 16, "stack_level": 2}})
        assert status == 200 and fake.sent("SetChargingProfile")[0][
            "csChargingProfiles"]["stackLevel"] == 2
    for resource in ("transactions", "commands"):
        for raw in (str(INT64_OVER), str(-INT64_OVER - 1), "99" * 40):
            status, body = await http(csms, "GET", f"/{resource}/{raw}", key)
            assert (status, body) == (404, {"error": "not found"}), (resource, raw)
    status, body = await http(csms, "GET", f"/transactions/{INT64_OVER}/progress", key)
    assert status == 404


# ---- 3. the CLI's words ---------------------------------------------------------------------
async def test_cli_says_what_is_wrong_in_one_line(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    for value in ("nan", "1e400", "inf"):
        line = one_line_error(await cli(csms, key, "remote", "set-limit", "R16", "--connector",
                                        "1", "--limit", value))
        assert "--limit" in line and "finite" in line and "JSON" not in line
    line = one_line_error(await cli(csms, key, "remote", "set-limit", "R16", "--connector",
                                    "1", "--periods", "0:16,60:nan"))
    assert "--periods" in line and "finite" in line
    line = one_line_error(await cli(csms, key, "remote", "call", "R16", "DataTransfer",
                                    '{"vendorId": "a", "data": NaN}'))
    assert "payload" in line and "NaN" in line
    async with station(csms, "S21", "ocpp2.1") as fake:
        line = one_line_error(await cli(csms, key, "remote", "call", "S21", "Reset",
                                        '{"type":"Bogus"}'))
        assert "Reset" in line and "type" in line
        assert fake.sent("Reset") == []


async def test_cli_names_an_api_failure_that_has_no_text(nursery, tmp_path) -> None:
    # An admin API that fails without a body, as a crash inside it did: the CLI still says
    # something useful, on one line.
    async def blank_500(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 500 \r\ncontent-length: 0\r\n\r\n")
        await stream.aclose()

    listeners = await nursery.start(trio.serve_tcp, blank_500, 0)
    port = listeners[0].socket.getsockname()[1]
    env = {**os.environ, "LITE_CSMS_API_KEY": "lcs_x", "LITE_CSMS_ADMIN_PORT": str(port)}
    result = await trio.to_thread.run_sync(lambda: run_cli("remote", "reset", "R16", env=env))
    line = one_line_error(result)
    assert "HTTP 500" in line and "log" in line


# ---- 5. lenient mode covers the station's answers, strict mode stays strict ----------------
async def test_lenient_answers_are_repaired_and_recorded(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    path = "/stations/LEN-16/commands"
    async with station(csms, "LEN-16") as fake:
        fake.answers["ChangeConfiguration"] = '{"status":"Accepted","x":1}'
        fake.answers["GetConfiguration"] = (
            '{"configurationKey":[{"key":"HeartbeatInterval","readonly":false,'
            '"value":900}],"unknownKey":null}')
        for _ in range(2):
            status, body = await http(csms, "POST", path, key, {
                "operation": "set-config", "args": {"key": "MeterValueSampleInterval",
                                                    "value": "60"}})
            assert status == 200 and body["status"] == "answered", body
        status, body = await http(csms, "POST", path, key, {
            "operation": "get-config", "args": {"keys": ["HeartbeatInterval"]}})
        assert status == 200 and body["status"] == "answered", body
    status, shown = await http(csms, "GET", "/stations/LEN-16", key)
    # What the answers taught is kept as a schema-valid answer would have been.
    assert shown["settings"]["MeterValueSampleInterval"] == "60"
    assert shown["settings"]["HeartbeatInterval"] == "900"
    found = {(d["action"], d["kind"], d["field"]): d["count"] for d in shown["deviations"]}
    assert found == {
        ("ChangeConfiguration (answer)", "unknown property", "x"): 2,
        ("GetConfiguration (answer)", "number as string", "configurationKey[].value"): 1,
        ("GetConfiguration (answer)", "null for optional field", "unknownKey"): 1,
    }


async def test_strict_mode_refuses_the_same_answers(nursery, tmp_path) -> None:
    (tmp_path / "strict").mkdir()
    csms = await start_in_process(nursery, tmp_path / "strict", inbound_mode="strict")
    key = await new_key(csms)
    async with station(csms, "STR-16") as fake:
        fake.answers["ChangeConfiguration"] = '{"status":"Accepted","x":1}'
        status, body = await http(csms, "POST", "/stations/STR-16/commands", key, {
            "operation": "set-config", "args": {"key": "MeterValueSampleInterval",
                                                "value": "60"}})
        assert status == 502 and body["error_code"] == "FormationViolation"
        assert "x" in body["error_description"]
    status, shown = await http(csms, "GET", "/stations/STR-16", key)
    assert shown["deviations"] == [] and "MeterValueSampleInterval" not in shown["settings"]


# ---- 6. a number where a string is wanted is kept exactly as written -----------------------
async def test_number_as_string_keeps_the_frames_text(csms: CsmsInProcess) -> None:
    from tests.test_server import query

    await register(csms, "EX-16")
    async with open_websocket_url(csms.url("EX-16"), subprotocols=["ocpp1.6"]) as ws:
        await ws.send_message(
            '[2,"b1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M",'
            '"chargePointSerialNumber":91234567890123456789,"firmwareVersion":3.40}]')
        answer = json.loads(await ws.get_message())
        assert answer[0] == 3 and answer[2]["status"] == "Accepted"
    assert query(csms, "SELECT serial_number, firmware_version FROM station WHERE id = ?",
                 "EX-16") == [("91234567890123456789", "3.40")]
    await register(csms, "EX-201")
    async with open_websocket_url(csms.url("EX-201"), subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send_message(
            '[2,"b1","BootNotification",{"reason":"PowerUp","chargingStation":{'
            '"vendorName":"V","model":"M","serialNumber":1.2e3,"firmwareVersion":2.10}}]')
        answer = json.loads(await ws.get_message())
        assert answer[0] == 3 and answer[2]["status"] == "Accepted"
    assert query(csms, "SELECT serial_number, firmware_version FROM station WHERE id = ?",
                 "EX-201") == [("1.2e3", "2.10")]
    key = await new_key(csms)
    async with station(csms, "EX-ANS") as fake:
        fake.answers["GetConfiguration"] = (
            '{"configurationKey":[{"key":"HeartbeatInterval","readonly":false,'
            '"value":900.0}]}')
        status, body = await http(csms, "POST", "/stations/EX-ANS/commands", key, {
            "operation": "get-config", "args": {"keys": ["HeartbeatInterval"]}})
        assert status == 200 and body["result"]["configurationKey"][0]["value"] == "900.0"
    status, shown = await http(csms, "GET", "/stations/EX-ANS", key)
    assert shown["settings"]["HeartbeatInterval"] == "900.0"


# ---- 7. log lines for what goes wrong, naming the peer and the true close ------------------
def net_lines(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("lite_csms") and text in r.getMessage()]


async def test_a_send_of_a_call_action_gets_one_line(csms: CsmsInProcess, caplog) -> None:
    from tests.test_server import query

    await register(csms, "SEND-21")
    async with open_websocket_url(csms.url("SEND-21"), subprotocols=["ocpp2.1"]) as ws:
        await rpc(ws, [2, "b", "BootNotification", BOOT_201])
        stream = {"id": 1, "pending": 0, "basetime": "2026-11-21T10:00:00Z",
                  "data": [{"t": 0, "v": "1"}]}
        caplog.clear()
        await ws.send_message(json.dumps([6, "s1", "NotifyPeriodicEventStream", stream]))
        await ws.send_message('[6,"s3","Heartbeat",{}]')
        assert (await rpc(ws, [2, "h", "Heartbeat", {}]))[:2] == [3, "h"]
    assert net_lines(caplog, "NotifyPeriodicEventStream") == []
    lines = net_lines(caplog, "SEND of Heartbeat")
    assert len(lines) == 1 and "SEND-21" in lines[0] and "CALL" in lines[0]
    assert query(csms, "SELECT action FROM station_event WHERE station_id = ?", "SEND-21") == [
        ("NotifyPeriodicEventStream",)]


async def test_refused_handshakes_name_the_peer(csms: CsmsInProcess, caplog) -> None:
    from tests import rawws

    for path, station_id in (("/ocpp/NOPE", "NOPE"), ("/ocpp/a%3Ab", None)):
        caplog.clear()
        stream, response = await rawws.connect(csms.port, path)
        peer = f"127.0.0.1:{stream.socket.getsockname()[1]}"
        assert response.split(b" ", 2)[1] in (b"401", b"400")
        await stream.aclose()
        with trio.fail_after(5):
            while not net_lines(caplog, "refused"):
                await trio.sleep(0.01)
        [line] = net_lines(caplog, "refused")
        assert peer in line, line
        if station_id is not None:
            assert line.startswith(f"{station_id}: refused {peer} with 401")


async def test_disconnects_log_the_true_close(csms: CsmsInProcess, caplog, monkeypatch
                                              ) -> None:
    from tests import rawws

    await register(csms, "DROP-16")
    stream, _ = await rawws.connect(csms.port, "/ocpp/DROP-16")
    await stream.send_all(rawws.frame(1, json.dumps(
        [2, "b", "BootNotification", BOOT_16]).encode()))
    assert (await rawws.read_frame(stream, bytearray()))[0] == 1
    caplog.clear()
    # The TCP connection ends without a close frame: abnormal closure, 1006.
    await stream.aclose()
    with trio.fail_after(5):
        while not net_lines(caplog, "DROP-16: disconnected"):
            await trio.sleep(0.01)
    [line] = net_lines(caplog, "DROP-16: disconnected")
    assert "1006" in line, line

    # A fault of ours while reading: the station hears 1011 Internal Error, not 1000.
    from lite_csms.ocppj.session import RpcSession

    real = RpcSession.receive

    def failing(self, text, now):
        if "boom" in str(text):
            raise RuntimeError("injected fault")
        return real(self, text, now)

    monkeypatch.setattr(RpcSession, "receive", failing)
    caplog.clear()
    stream, _ = await rawws.connect(csms.port, "/ocpp/DROP-16")
    await stream.send_all(rawws.frame(1, b'[2,"boom","Heartbeat",{}]'))
    assert await rawws.close_code(stream) == 1011
    await stream.aclose()
    with trio.fail_after(5):
        while not net_lines(caplog, "DROP-16: disconnected"):
            await trio.sleep(0.01)
    [line] = net_lines(caplog, "DROP-16: disconnected")
    assert "1011" in line and "internal error" in line, line


# ---- 8. a lone segment with a trailing slash names a registered station --------------------
async def test_root_path_with_trailing_slash_names_a_registered_station(nursery, tmp_path
                                                                        ) -> None:
    from tests import rawws
    from tests.test_server import query

    csms = await start_in_process(nursery, tmp_path, auto_register=True)
    await register(csms, "S16")
    async with open_websocket_url(f"ws://127.0.0.1:{csms.port}/S16/",
                                  subprotocols=["ocpp1.6"]) as ws:
        assert (await rpc(ws, [2, "b", "BootNotification", BOOT_16]))[2]["status"] == "Accepted"
    # Even with auto-registration on, a bare base URL never makes up a station "ocpp".
    stream, response = await rawws.connect(csms.port, "/ocpp/")
    assert response.startswith(b"HTTP/1.1 400"), response
    while chunk := await stream.receive_some(4096):
        response += chunk
    assert b"no station 'ocpp' is registered" in response
    await stream.aclose()
    assert query(csms, "SELECT id FROM station ORDER BY id") == [("S16",)]
    assert query(csms, "SELECT protocol FROM station WHERE id = 'S16'") == [("ocpp1.6",)]

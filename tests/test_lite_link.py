"""The lite link on a live server (issue 10, item 4): negotiation and fallback, billing data
stored exactly as over OCPP-J, the server's own CALLs as lite frames, every hostile frame of
the published vectors answered as codecs/SPEC.md says, and memory bounded under a burst.

Real server (tests/conftest.py), real sockets, real SQLite file; the station side is the
simulator's own lite transport (tools/stationsim/transport.py) or raw lite frames.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trio
import zstandard
from trio_websocket import ConnectionClosed, open_websocket_url

from lite_csms import config
from lite_csms.cli.main import _settings, build_parser
from lite_csms.db.models import Station, TrafficConnection
from lite_csms.lite import LiteDictionary, cbor, decode_frame, encode_frame
from lite_csms.lite.frame import zstd_header
from lite_csms.net import server as server_module
from lite_csms.net.commands import StationNotReady
from lite_csms.net.lite_link import LiteCodec
from lite_csms.ocppj.versions import Version
from tests.conftest import CsmsInProcess, run_cli, start_in_process
from tests.test_admin_api import http, new_key
from tests.test_server import BOOT_16, BOOT_201
from tests.test_simulator import sim

VECTORS = Path(__file__).resolve().parent.parent / "codecs" / "vectors"
VERSIONS = [Version.OCPP16, Version.OCPP201, Version.OCPP21]
SCALE = 20000


def lite(version: Version) -> str:
    return f"{version.value}.lite1"


def boot_payload(version: Version) -> dict[str, Any]:
    return BOOT_16 if version is Version.OCPP16 else BOOT_201


def query(database: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(database)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql, params)]


async def accepted(csms: CsmsInProcess, station_id: str) -> None:
    await csms.server.store.run(lambda: Station.create(id=station_id, registration="accepted"))


class Recording(sim.LiteTransport):
    """The simulator's lite transport, keeping what the station sent and received."""

    sent: list[list[Any]]
    received: list[Any]

    async def send(self, messages: Any) -> None:
        self.sent.extend(messages)
        await super().send(messages)

    async def receive(self) -> list[Any]:
        got = await super().receive()
        self.received.extend(got)
        return got


class RecordingJson(sim.WebSocketTransport):
    sent: list[list[Any]]

    async def send(self, messages: Any) -> None:
        self.sent.extend(messages)
        await super().send(messages)


def station(csms: CsmsInProcess, station_id: str, version: Version, *, lite_link: bool,
            **options: Any) -> Any:
    """A simulated station whose transport records its messages (`.sent`, `.transport`)."""
    made = sim.make_station(sim.StationOptions(
        url=f"ws://127.0.0.1:{csms.port}/ocpp", station_id=station_id, protocol=version,
        time_scale=SCALE, lite=lite_link, **options))
    made.sent, made.transports = [], []
    plain_dial = made.dial

    def dial(url: str, offer: Any, headers: Any) -> Any:
        opened = plain_dial(url, offer, headers)

        class Wrapped:
            async def __aenter__(self) -> Any:
                transport = await opened.__aenter__()
                if isinstance(transport, sim.LiteTransport):
                    transport.__class__ = Recording
                    transport.received = []
                else:
                    transport.__class__ = RecordingJson
                transport.sent = made.sent
                made.transports.append(transport)
                return transport

            async def __aexit__(self, *exc: Any) -> Any:
                return await opened.__aexit__(*exc)

        return Wrapped()

    made.dial = dial
    return made


def stored_session(database: Path, station_id: str) -> dict[str, Any]:
    """The transaction and its samples as billing sees them, without ids and row times."""
    [tx] = query(database, 'SELECT * FROM "transaction" WHERE station_id = ?', station_id)
    samples = query(database, "SELECT timestamp, measurand, unit, phase, location, context, "
                    "value FROM meter_sample WHERE transaction_id = ? ORDER BY timestamp, "
                    "measurand, context", tx["id"])
    keep = ("evse_id", "connector_id", "auth_status", "meter_start_wh",
            "meter_stop_wh", "meter_last_wh", "energy_wh", "stop_reason", "offline",
            "last_seq_no", "seq_no_gaps", "reconstructed", "review")
    return {"tx": {k: tx[k] for k in keep}, "started_at": tx["started_at"],
            "stopped_at": tx["stopped_at"], "samples": samples}


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def sent_times(sent: list[list[Any]], version: Version) -> tuple[str, str]:
    """The start and stop timestamps the station put on the wire."""
    calls = [(m[2], m[3]) for m in sent if m[0] == 2]
    if version is Version.OCPP16:
        start = next(p for a, p in calls if a == "StartTransaction")["timestamp"]
        stop = next(p for a, p in calls if a == "StopTransaction")["timestamp"]
        return start, stop
    events = [p for a, p in calls if a == "TransactionEvent"]
    return events[0]["timestamp"], events[-1]["timestamp"]


# ---- billing data over the lite link ---------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.value)
async def test_a_lite_charge_is_stored_exactly_as_over_ocppj(
    nursery: trio.Nursery, tmp_path: Path, version: Version
) -> None:
    csms = await start_in_process(nursery, tmp_path, free_charging=True)
    runs = {}
    async with trio.open_nursery() as both:
        for name, lite_link in (("J-1", False), ("L-1", True)):
            await accepted(csms, name)
            # One tag each: the same tag on two stations at once would be ConcurrentTx.
            runs[name] = station(csms, name, version, lite_link=lite_link, scenario="charge",
                                 energy_wh=7400, meter_values=3, id_tag=f"TAG{name}")
            both.start_soon(runs[name].run)
    for name, run in runs.items():
        assert run.report.ok and run.report.scenario_completed, (name, run.report.error)
    assert runs["L-1"].report.subprotocol == lite(version)
    assert runs["J-1"].report.subprotocol == version.value
    assert all(isinstance(t, Recording) for t in runs["L-1"].transports)

    lite_row = stored_session(csms.database, "L-1")
    json_row = stored_session(csms.database, "J-1")
    # Same plan, same station behaviour: every billing column and sample agrees.
    assert lite_row["tx"] == json_row["tx"]
    assert lite_row["tx"]["energy_wh"] == 7400 and lite_row["tx"]["stop_reason"] is not None
    assert [r["id_token"] for r in query(csms.database, 'SELECT id_token FROM "transaction" '
                                         "ORDER BY station_id")] == ["TAGJ-1", "TAGL-1"]
    values = [(s["measurand"], s["context"], s["value"]) for s in lite_row["samples"]]
    assert values == [(s["measurand"], s["context"], s["value"]) for s in json_row["samples"]]
    assert len(values) >= 3
    # Timestamps: each side stores exactly the instant its station sent.
    for name, row in (("L-1", lite_row), ("J-1", json_row)):
        start, stop = sent_times(runs[name].sent, version)
        assert instant(row["started_at"]) == instant(start)
        assert instant(row["stopped_at"]) == instant(stop)


async def test_the_servers_own_calls_reach_a_lite_station_as_lite_frames(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    csms = await start_in_process(nursery, tmp_path, free_charging=True)
    key = await new_key(csms)
    for version in (Version.OCPP16, Version.OCPP201):
        name = f"R-{version.value}"
        await accepted(csms, name)
        lingering = station(csms, name, version, lite_link=True, linger=math.inf)
        nursery.start_soon(lingering.run)
        with trio.fail_after(5):
            while name not in csms.server.connections or not (
                    csms.server.connections[name].accepted.is_set()):
                await trio.sleep(0.01)
        status, answer = await http(csms, "POST", f"/stations/{name}/commands", key,
                                    {"operation": "remote-start",
                                     "args": {"token": "TAG-R", "connector": 1}})
        assert status == 200 and answer["status"] == "answered", answer
        assert answer["result"]["status"] == "Accepted"
        with trio.fail_after(5):
            while not query(csms.database, 'SELECT id FROM "transaction" WHERE station_id = ?',
                            name):
                await trio.sleep(0.02)
        [tx] = query(csms.database, 'SELECT * FROM "transaction" WHERE station_id = ?', name)
        assert tx["id_token"] == "TAG-R"
        status, answer = await http(csms, "POST", f"/stations/{name}/commands", key,
                                    {"operation": "remote-stop",
                                     "args": {"transaction": tx["id"]}})
        assert status == 200 and answer["result"]["status"] == "Accepted", answer
        [transport] = lingering.transports
        remote = [m for m in transport.received if m[0] == 2]
        assert [m[2] for m in remote][:2] == (
            ["RemoteStartTransaction", "RemoteStopTransaction"] if version is Version.OCPP16
            else ["RequestStartTransaction", "RequestStopTransaction"])
        # Our CALLs use decimal ids, which the lite link carries as integers.
        assert all(m[1].isdigit() for m in remote)
        lingering.shut_down()


# ---- negotiation --------------------------------------------------------------------------------
async def test_plain_offers_get_ocppj_and_lite_off_answers_with_the_plain_subprotocol(
    csms: CsmsInProcess,
) -> None:
    await accepted(csms, "N-1")
    boot = json.dumps([2, "1", "BootNotification", BOOT_16])
    async with open_websocket_url(csms.url("N-1"), subprotocols=["ocpp1.6"]) as ws:
        assert ws.subprotocol == "ocpp1.6"
        await ws.send_message(boot)
        assert json.loads(await ws.get_message())[2]["status"] == "Accepted"
    async with open_websocket_url(csms.url("N-1"),
                                  subprotocols=["ocpp2.0.1.lite1", "ocpp1.6"]) as ws:
        assert ws.subprotocol == "ocpp2.0.1.lite1"

    # `lite = false`: each handshake reads the setting, so the running server changes course.
    csms.server.settings = dataclasses.replace(csms.server.settings, lite=False)
    async with open_websocket_url(csms.url("N-1"),
                                  subprotocols=["ocpp1.6.lite1", "ocpp1.6"]) as ws:
        assert ws.subprotocol == "ocpp1.6"
        await ws.send_message(boot)
        assert json.loads(await ws.get_message())[0] == 3
    with pytest.raises(ConnectionClosed) as closed:
        async with open_websocket_url(csms.url("N-1"), subprotocols=["ocpp1.6.lite1"]) as ws:
            await ws.get_message()
    assert closed.value.reason.code == 1002
    # The simulator's --lite station takes the plain subprotocol it offered second.
    options = sim.parse_args(["--url", f"ws://127.0.0.1:{csms.port}/ocpp", "--id", "N-1",
                              "--lite", "--time-scale", str(SCALE)])
    assert options.lite
    falling_back = sim.make_station(options)
    report = await falling_back.run()
    assert report.ok and report.subprotocol == "ocpp1.6", report.error
    assert report.boot_status == "Accepted"


def test_the_lite_setting_comes_from_toml_env_and_flag(tmp_path: Path) -> None:
    assert config.load(environ={}).lite is True
    toml = tmp_path / "c.toml"
    toml.write_text("lite = false\n")
    assert config.load(toml, environ={}).lite is False
    assert config.load(environ={"LITE_CSMS_LITE": "off"}).lite is False
    database = ["--database", str(tmp_path / "db.sqlite3")]
    flagged = build_parser().parse_args(["serve", "--no-lite", *database])
    assert _settings(flagged).lite is False
    assert _settings(build_parser().parse_args(["serve", *database])).lite is True


# ---- hostile frames ----------------------------------------------------------------------
def vectors(version: Version) -> list[dict[str, Any]]:
    return json.loads((VECTORS / f"{version.value}.json").read_text())["invalid"]


async def probe(ws: Any, version: Version, n: int) -> list[Any]:
    """A valid CALL after a frame: its answer is the next message, so the connection lives
    and the frame before it got no answer of its own that is still to come."""
    await ws.send_message(encode_frame([2, str(n), "Heartbeat", {}], protocol=version.value))
    return decode_frame(await ws.get_message(), protocol=version.value)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.value)
async def test_every_invalid_vector_gets_the_answer_the_spec_gives(
    nursery: trio.Nursery, tmp_path: Path, version: Version, caplog: pytest.LogCaptureFixture
) -> None:
    csms = await start_in_process(nursery, tmp_path)
    await accepted(csms, "H-1")
    text_frame = {"name": "text frame", "text": '[2,"1","Heartbeat",{}]',
                  "answer": {"close": 1003}}
    cases = [*vectors(version), text_frame]
    n = 1000
    for case in cases:
        async with open_websocket_url(csms.url("H-1"), subprotocols=[lite(version)]) as ws:
            assert ws.subprotocol == lite(version)
            await ws.send_message(case["text"] if "text" in case else bytes.fromhex(case["hex"]))
            answer = case["answer"]
            with trio.fail_after(3):
                if "close" in answer:
                    with pytest.raises(ConnectionClosed) as closed:
                        await ws.get_message()
                    assert closed.value.reason.code == answer["close"], case["name"]
                    continue
                if "callerror" in answer:
                    got = decode_frame(await ws.get_message(), protocol=version.value)
                    assert got[:3] == [4, answer["callerror"]["id"],
                                       answer["callerror"]["code"]], case["name"]
                n += 1
                assert (await probe(ws, version, n))[:2] == [3, str(n)], case["name"]
    dropped = [r for r in caplog.records if "dropped bad lite frame" in r.getMessage()]
    assert len(dropped) == sum("drop" in c["answer"] for c in cases) > 0


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_burst_of_bad_frames_keeps_memory_bounded_and_others_served(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    csms = await start_in_process(nursery, tmp_path)
    for name in ("B-1", "B-2"):
        await accepted(csms, name)
    bad = [bytes.fromhex(c["hex"]) for c in vectors(Version.OCPP16)
           if "callerror" in c["answer"]]
    # A zstd frame whose header claims 64 KiB of body that is not there: closes at once.
    before = rss_kb()
    answers = 0
    async with open_websocket_url(csms.url("B-1"), subprotocols=["ocpp1.6.lite1"]) as ws, \
            open_websocket_url(csms.url("B-2"), subprotocols=["ocpp1.6.lite1"]) as other:

        async def read_all() -> None:
            nonlocal answers
            while answers < 1000:
                message = decode_frame(await ws.get_message(), protocol="ocpp1.6")
                assert message[0] == 4
                answers += 1

        with trio.fail_after(10):
            async with trio.open_nursery() as burst:
                burst.start_soon(read_all)
                for i in range(1000):
                    await ws.send_message(bad[i % len(bad)])
                    if i % 250 == 0:
                        assert (await probe(other, Version.OCPP16, i + 1))[0] == 3
        assert (await probe(other, Version.OCPP16, 5000))[:2] == [3, "5000"]
    assert answers == 1000
    assert rss_kb() - before < 30_000


# ---- accounting --------------------------------------------------------------------------
async def test_lite_frames_are_the_payload_layer_and_the_report_names_the_subprotocol(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    csms = await start_in_process(nursery, tmp_path)
    await accepted(csms, "A-1")
    sent = received = 0
    async with open_websocket_url(csms.url("A-1"), subprotocols=["ocpp2.0.1.lite1"]) as ws:
        for n, (action, payload) in enumerate((("BootNotification", BOOT_201),
                                              ("Heartbeat", {}))):
            frame = encode_frame([2, str(n), action, payload], protocol="ocpp2.0.1")
            await ws.send_message(frame)
            answer = await ws.get_message()
            assert isinstance(answer, bytes) and decode_frame(answer, protocol="ocpp2.0.1")[0] == 3
            sent += len(frame)
            received += len(answer)
    with trio.fail_after(5):
        while True:
            await csms.server.traffic.flush()
            rows = await csms.server.store.run(lambda: list(TrafficConnection.select().dicts()))
            if rows:
                break
            await trio.sleep(0.05)
    [row] = rows
    assert row["protocol"] == "ocpp2.0.1.lite1"
    assert (row["payload_bytes_in"], row["payload_bytes_out"]) == (sent, received)
    report = await trio.to_thread.run_sync(lambda: run_cli(
        "budget", "report", "--by", "connection", "--json", "--database", str(csms.database)))
    assert report.returncode == 0, report.stderr
    assert "ocpp2.0.1.lite1" in report.stdout


# ---- dictionaries ------------------------------------------------------------------------
def trained(dict_id: int) -> LiteDictionary:
    """A small 1.6 dictionary trained on the published vectors' bodies."""
    bodies = [bytes.fromhex(c["hex"])[1:] for c in
              json.loads((VECTORS / "ocpp1.6.json").read_text())["valid"]
              if c["hex"].startswith("00")]
    data = zstandard.train_dictionary(2048, bodies * 4, dict_id=dict_id).as_bytes()
    return LiteDictionary("ocpp1.6", data)


async def test_zstd_frames_with_a_shared_dictionary_and_ours_use_the_stations_newest(
    csms: CsmsInProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, old, new = trained(1), trained(3), trained(7)
    shared = LiteCodec(Version.OCPP16, {1: first, 3: old, 7: new})
    big = json.dumps([2, "9", "MeterValues", {"connectorId": 1, "meterValue": [
        {"timestamp": f"2026-11-21T08:0{m}:00Z", "sampledValue": [
            {"value": f"{1000 + 100 * m}", "measurand": "Energy.Active.Import.Register",
             "unit": "Wh"}]} for m in range(8)]}])
    # SPEC 4.3: dictionary 1 until the station has used another; never one it has not used.
    assert zstd_header(shared.encode(big)[1:])[0] == 1
    assert zstd_header(shared.encode(big, 7)[1:])[0] == 7
    assert zstd_header(shared.encode(big, 99)[1:])[0] == 1
    monkeypatch.setattr(server_module, "codec_for", lambda version: shared)
    await accepted(csms, "Z-1")
    # Eight readings a minute apart: repetitive enough that zstd pays.
    samples = [{"timestamp": f"2026-11-21T08:0{m}:00Z", "sampledValue": [
        {"value": f"{1000 + 100 * m}", "measurand": "Energy.Active.Import.Register",
         "unit": "Wh", "context": "Sample.Periodic", "location": "Outlet"}]} for m in range(8)]
    async with open_websocket_url(csms.url("Z-1"), subprotocols=["ocpp1.6.lite1"]) as ws:
        for n, dictionary in enumerate((old, new), start=1):
            frame = encode_frame([2, str(n), "MeterValues", {"connectorId": 1,
                                                            "meterValue": samples}],
                                 protocol="ocpp1.6", dictionary=dictionary)
            assert frame[0] == 0x01  # zstd, naming its dictionary
            await ws.send_message(frame)
            answer = await ws.get_message()
            assert decode_frame(answer, protocol="ocpp1.6", dictionaries={7: new}) == [
                3, str(n), {}]
            assert csms.server.connections["Z-1"].lite_dictionary == dictionary.dict_id
        # An older dictionary afterwards does not move ours back.
        again = encode_frame([2, "3", "MeterValues", {"connectorId": 1, "meterValue": samples}],
                             protocol="ocpp1.6", dictionary=old)
        assert zstd_header(again[1:])[0] == 3
        await ws.send_message(again)
        await ws.get_message()
        assert csms.server.connections["Z-1"].lite_dictionary == 7
    stored = query(csms.database, "SELECT value FROM meter_sample WHERE station_id = 'Z-1'")
    # Sent twice (another id, another dictionary): the same eight readings, stored once.
    assert sorted(r["value"] for r in stored) == [1000.0 + 100 * m for m in range(8)]


async def test_an_unreadable_answer_to_our_call_fails_it_at_once(csms: CsmsInProcess) -> None:
    await accepted(csms, "Q-1")
    async with open_websocket_url(csms.url("Q-1"), subprotocols=["ocpp1.6.lite1"]) as ws:
        await ws.send_message(encode_frame([2, "1", "BootNotification", BOOT_16],
                                           protocol="ocpp1.6"))
        assert decode_frame(await ws.get_message(), protocol="ocpp1.6")[0] == 3
        outcome: list[Any] = []

        async def ask() -> None:
            outcome.append(await csms.server.connections["Q-1"].call("ClearCache", {}))

        with trio.fail_after(3):  # the CALL's own timeout is 30 s
            async with trio.open_nursery() as asking:
                asking.start_soon(ask)
                frame = await ws.get_message()
                assert isinstance(frame, bytes)
                call = decode_frame(frame, protocol="ocpp1.6")
                assert call[0] == 2 and call[2] == "ClearCache" and call[1].isdigit()
                # A CALLRESULT under its id (an integer on the wire) with key number 9999.
                await ws.send_message(b"\x00" + cbor.dumps([3, int(call[1]), {9999: 1}]))
        [failed] = outcome
        assert failed.invalid_answer and failed.code == "FormationViolation"
        assert "9999" in failed.description
        # The connection lives on.
        assert (await probe(ws, Version.OCPP16, 2))[:2] == [3, "2"]


async def test_a_lite_station_reconnects_without_booting_and_is_reachable_at_once(
    csms: CsmsInProcess,
) -> None:
    """SPEC 11.1: a lite station accepted before reconnects without a word; the CSMS's CALL
    reaches it at once. On OCPP-J the CSMS still waits for the station's first message."""
    await accepted(csms, "R-1")
    async with open_websocket_url(csms.url("R-1"), subprotocols=["ocpp1.6.lite1"]) as ws:
        await ws.send_message(encode_frame([2, "1", "BootNotification", BOOT_16],
                                           protocol="ocpp1.6"))
        assert decode_frame(await ws.get_message(), protocol="ocpp1.6")[2]["status"] == (
            "Accepted")
    start = {"connectorId": 1, "idTag": "04A2B3C4"}

    async def connected(before: object) -> None:
        with trio.fail_after(5):
            while csms.server.connections.get("R-1") in (None, before):
                await trio.sleep(0.01)

    first = csms.server.connections.get("R-1")
    async with open_websocket_url(csms.url("R-1"), subprotocols=["ocpp1.6.lite1"]) as ws:
        await connected(first)
        second = csms.server.connections["R-1"]
        outcome: list[Any] = []

        async def remote_start() -> None:
            outcome.append(await csms.server.commands.send(
                "R-1", "RemoteStartTransaction", start, requested_by="test"))

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(remote_start)
                call = decode_frame(await ws.get_message(), protocol="ocpp1.6")
                assert call[0] == 2 and call[2] == "RemoteStartTransaction"
                await ws.send_message(encode_frame([3, call[1], {"status": "Accepted"}],
                                                   protocol="ocpp1.6"))
        assert outcome and outcome[0].status != "queued"
    async with open_websocket_url(csms.url("R-1"), subprotocols=["ocpp1.6"]) as ws:
        await connected(second)
        with pytest.raises(StationNotReady):
            await csms.server.commands.send("R-1", "RemoteStartTransaction", start,
                                            requested_by="test")

"""The server over real sockets, with a real SQLite file, inside the test's trio run."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from lite_csms import passwords
from lite_csms.db.models import IdToken, Station
from tests import rawws
from tests.conftest import CsmsInProcess, start_in_process

BOOT_16 = {"chargePointVendor": "Acme", "chargePointModel": "Home-7"}
BOOT_201 = {"reason": "PowerUp", "chargingStation": {"vendorName": "Acme", "model": "Home-7"}}


async def register(csms: CsmsInProcess, station_id: str, password: str | None = None,
                   registration: str = "accepted") -> None:
    hashed = passwords.hash_password(password) if password else None
    await csms.server.store.run(lambda: Station.create(
        id=station_id, password_hash=hashed, registration=registration))


def basic(user: str, password: str) -> tuple[bytes, bytes]:
    return (b"Authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode()))


async def rpc(ws, message: list) -> list:
    await ws.send_message(json.dumps(message))
    return json.loads(await ws.get_message())


def query(csms: CsmsInProcess, sql: str, *args: object) -> list[tuple]:
    """Read through an independent connection: what it sees is committed."""
    conn = sqlite3.connect(csms.database)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def test_v16_session_end_to_end_with_password(csms: CsmsInProcess) -> None:
    await register(csms, "CS-001", "correct horse battery")
    await csms.server.store.run(lambda: IdToken.create(token="04A2B3C4"))
    async with open_websocket_url(csms.url("CS-001"), subprotocols=["ocpp1.6"],
                                  extra_headers=[basic("CS-001", "correct horse battery")]) as ws:
        assert ws.subprotocol == "ocpp1.6"
        boot = await rpc(ws, [2, "1", "BootNotification", BOOT_16])
        assert boot[2]["status"] == "Accepted" and boot[2]["interval"] == 300
        assert (await rpc(ws, [2, "2", "Authorize", {"idTag": "04A2B3C4"}]))[2] == {
            "idTagInfo": {"status": "Accepted"}}
        assert (await rpc(ws, [2, "3", "Authorize", {"idTag": "UNKNOWN"}]))[2][
            "idTagInfo"]["status"] == "Invalid"
        start = {"connectorId": 1, "idTag": "04A2B3C4", "meterStart": 12000,
                 "timestamp": "2026-11-21T08:00:00Z"}
        started = await rpc(ws, [2, "4", "StartTransaction", start])
        tx_id = started[2]["transactionId"]
        # Acknowledged means committed: an independent reader sees it right now.
        assert query(csms, 'SELECT meter_start_wh FROM "transaction" WHERE id=?', tx_id) == [
            (12000.0,)]
        again = await rpc(ws, [2, "5", "StartTransaction", start])
        assert again[2]["transactionId"] == tx_id
        await rpc(ws, [2, "6", "MeterValues", {"connectorId": 1, "transactionId": tx_id,
                   "meterValue": [{"timestamp": "2026-11-21T08:30:00Z", "sampledValue": [
                       {"value": "3.5", "unit": "kWh", "measurand":
                        "Energy.Active.Import.Register"},
                       {"value": "7200", "measurand": "Power.Active.Import", "unit": "W"}]}]}])
        stop = {"transactionId": tx_id, "meterStop": 19400, "timestamp": "2026-11-21T09:00:00Z",
                "reason": "EVDisconnected"}
        assert (await rpc(ws, [2, "7", "StopTransaction", stop]))[0] == 3
        assert (await rpc(ws, [2, "8", "StopTransaction", stop]))[0] == 3
    rows = query(csms, 'SELECT meter_stop_wh - meter_start_wh, stop_reason FROM "transaction"')
    assert rows == [(7400.0, "EVDisconnected")]
    samples = query(csms, "SELECT measurand, value, unit FROM meter_sample ORDER BY measurand")
    assert samples == [("Energy.Active.Import.Register", 3500.0, "Wh"),
                       ("Power.Active.Import", 7200.0, "W")]
    assert query(csms, "SELECT vendor, model, protocol FROM station") == [
        ("Acme", "Home-7", "ocpp1.6")]


async def test_v201_transaction_event_flow(csms: CsmsInProcess) -> None:
    await register(csms, "CS-2")
    await csms.server.store.run(lambda: IdToken.create(token="TAG-2", token_type="ISO14443"))
    token = {"idToken": "TAG-2", "type": "ISO14443"}

    def event(kind: str, seq: int, minute: int, wh: float, context: str, **extra) -> list:
        at = f"2026-11-21T10:{minute:02d}:00Z"
        return [2, f"m{seq}-{minute}", "TransactionEvent", {
            "eventType": kind, "timestamp": at, "triggerReason": "MeterValuePeriodic",
            "seqNo": seq, "transactionInfo": {"transactionId": "T-77"},
            "meterValue": [{"timestamp": at, "sampledValue": [
                {"value": wh, "context": context}]}], **extra}]

    async with open_websocket_url(csms.url("CS-2"), subprotocols=["ocpp2.0.1"]) as ws:
        assert (await rpc(ws, [2, "b", "BootNotification", BOOT_201]))[2]["status"] == "Accepted"
        await rpc(ws, [2, "s", "StatusNotification", {"timestamp": "2026-11-21T10:00:00Z",
                  "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1}])
        started = await rpc(ws, event("Started", 0, 0, 1000, "Transaction.Begin", idToken=token,
                                      evse={"id": 1, "connectorId": 1}))
        assert started[2] == {"idTokenInfo": {"status": "Accepted"}}
        await rpc(ws, event("Updated", 1, 10, 2000, "Sample.Periodic"))
        await rpc(ws, event("Updated", 1, 10, 2000, "Sample.Periodic"))  # retransmit
        await rpc(ws, event("Updated", 3, 20, 3000, "Sample.Periodic", offline=True))
        ended = event("Ended", 4, 30, 4000, "Transaction.End")
        ended[3]["transactionInfo"]["stoppedReason"] = "EVDisconnected"
        await rpc(ws, ended)
        unknown = await rpc(ws, [2, "a", "Authorize", {"idToken": {"idToken": "NOPE",
                                                                   "type": "ISO14443"}}])
        assert unknown[2]["idTokenInfo"]["status"] == "Unknown"
    rows = query(csms, 'SELECT station_tx_id, evse_id, id_token, meter_stop_wh - meter_start_wh,'
                       ' offline, seq_no_gaps, stop_reason FROM "transaction"')
    assert rows == [("T-77", 1, "TAG-2", 3000.0, 1, 1, "EVDisconnected")]
    assert query(csms, "SELECT count(*) FROM meter_sample")[0][0] == 4
    assert query(csms, "SELECT status FROM connector") == [("Occupied",)]


async def test_malformed_frames_get_the_specs_answers(csms: CsmsInProcess) -> None:
    await register(csms, "CS-3")
    cases = [
        ("garbage", [4, "-1", "RpcFrameworkError"]),
        ("{}", [4, "-1", "RpcFrameworkError"]),
        ('[2, 99, "Heartbeat", {}]', [4, "-1", "RpcFrameworkError"]),
        ('[7, "x1", {}]', [4, "x1", "MessageTypeNotSupported"]),
        ('[2, "x2", "Heartbeat", []]', [4, "x2", "FormatViolation"]),
        ('[2, "x3", "Teleport", {}]', [4, "x3", "NotImplemented"]),
        ('[2, "x4", "Reset", {"type": "Immediate"}]', [4, "x4", "NotSupported"]),
        ('[2, "x5", "Authorize", {}]', [4, "x5", "OccurrenceConstraintViolation"]),
        ('[2, "x6", "Authorize", {"idToken": 5}]', [4, "x6", "TypeConstraintViolation"]),
        ("[" * 5000 + "]" * 5000, [4, "-1", "RpcFrameworkError"]),
    ]
    async with open_websocket_url(csms.url("CS-3"), subprotocols=["ocpp2.0.1"]) as ws:
        for text, expected in cases:
            await ws.send_message(text)
            answer = json.loads(await ws.get_message())
            assert answer[:3] == expected, text[:40]
            assert len(answer) == 5 and isinstance(answer[3], str) and answer[4] == {}
        # A broken CALLRESULT must never be answered: the next answer is the heartbeat's.
        await ws.send_message('[3, "nobody-asked", "not an object"]')
        assert (await rpc(ws, [2, "h", "Heartbeat", {}]))[:2] == [3, "h"]


async def test_wrong_or_missing_password_gets_401_and_the_socket_closes(
        csms: CsmsInProcess) -> None:
    await register(csms, "CS-4", "the right password!")
    for headers in [(), ("Authorization: Basic " + base64.b64encode(
            b"CS-4:the wrong password").decode(),), ("Authorization: Basic " + base64.b64encode(
            b"CS-9:the right password!").decode(),)]:
        stream, response = await rawws.connect(csms.port, "/ocpp/CS-4", headers=headers)
        assert response.startswith(b"HTTP/1.1 401"), response
        assert b"WWW-Authenticate: Basic" in response
        assert await rawws.closed_by_server(stream)
        await stream.aclose()
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(csms.url("CS-4"), subprotocols=["ocpp1.6"],
                                      extra_headers=[basic("CS-4", "nope, not it")]):
            pass
    assert info.value.status_code == 401


def _without_date(response: bytes) -> bytes:
    return b"\r\n".join(line for line in response.split(b"\r\n")
                         if not line.lower().startswith(b"date:"))


async def test_unknown_and_known_station_ids_get_the_same_401(csms: CsmsInProcess) -> None:
    """Ids cannot be enumerated: status, headers and body are the same for a wrong password
    and an unknown id, with or without credentials (only the Date header may differ)."""
    await register(csms, "CS-KNOWN", "the right password")
    responses = []
    for station_id in ("CS-KNOWN", "NOBODY"):
        for headers in ((), ("Authorization: Basic " + base64.b64encode(
                f"{station_id}:a guess".encode()).decode(),)):
            stream, response = await rawws.connect(csms.port, f"/ocpp/{station_id}",
                                                   headers=headers)
            assert await rawws.closed_by_server(stream)
            assert response.startswith(b"HTTP/1.1 401"), response
            responses.append(_without_date(response))
    assert len(set(responses)) == 1, responses
    stream, response = await rawws.connect(csms.port, "/ocpp/")
    assert response.startswith(b"HTTP/1.1 400")


async def test_reveal_unknown_stations_gives_404_for_debugging(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, reveal_unknown_stations=True)
    stream, response = await rawws.connect(csms.port, "/ocpp/NOBODY")
    assert response.startswith(b"HTTP/1.1 404")
    assert await rawws.closed_by_server(stream)


async def test_auto_register_keeps_station_pending(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, auto_register=True)
    async with open_websocket_url(csms.url("NEW-1"), subprotocols=["ocpp1.6"],
                                  extra_headers=[basic("NEW-1", "first-use-password")]) as ws:
        assert (await rpc(ws, [2, "1", "BootNotification", BOOT_16]))[2]["status"] == "Pending"
        refused = await rpc(ws, [2, "2", "Authorize", {"idTag": "X"}])
        assert refused[:3] == [4, "2", "SecurityError"]
    assert query(csms, "SELECT registration FROM station") == [("pending",)]
    # Its first password is now its password.
    with pytest.raises(ConnectionRejected):
        async with open_websocket_url(csms.url("NEW-1"), subprotocols=["ocpp1.6"],
                                      extra_headers=[basic("NEW-1", "another-password")]):
            pass


async def test_subprotocol_is_the_clients_first_supported(csms: CsmsInProcess) -> None:
    await register(csms, "CS-5")
    async with open_websocket_url(csms.url("CS-5"),
                                  subprotocols=["ocpp1.5", "ocpp1.6", "ocpp2.0.1"]) as ws:
        assert ws.subprotocol == "ocpp1.6"
    async with open_websocket_url(csms.url("CS-5", "/base/url/"),
                                  subprotocols=["ocpp2.1", "ocpp1.6"]) as ws:
        assert ws.subprotocol == "ocpp2.1"
    # No match: the handshake completes without a subprotocol and the server closes at once.
    stream, response = await rawws.connect(csms.port, "/ocpp/CS-5", protocols="ocpp1.2, wamp")
    assert response.startswith(b"HTTP/1.1 101")
    assert b"sec-websocket-protocol" not in response.lower()
    assert await rawws.close_code(stream) == 1002


async def test_reconnect_replaces_the_old_connection(csms: CsmsInProcess) -> None:
    await register(csms, "CS-6")
    async with open_websocket_url(csms.url("CS-6"), subprotocols=["ocpp1.6"]) as old:
        await rpc(old, [2, "1", "Heartbeat", {}])
        async with open_websocket_url(csms.url("CS-6"), subprotocols=["ocpp1.6"]) as new:
            with pytest.raises(ConnectionClosed) as info:
                with trio.fail_after(5):
                    await old.get_message()
            assert info.value.reason.code == 1001
            assert (await rpc(new, [2, "2", "Heartbeat", {}]))[0] == 3
            await trio.sleep(0.1)
            assert query(csms, "SELECT online FROM station") == [(1,)]
            assert csms.server.connections["CS-6"].ws is not None
    with trio.fail_after(5):
        while query(csms, "SELECT online FROM station") != [(0,)]:
            await trio.sleep(0.02)


async def test_a_silent_old_peer_does_not_hold_up_its_replacement(csms: CsmsInProcess) -> None:
    # After a cell outage the old connection is a dead radio: it never answers the close.
    await register(csms, "CS-6b")
    old, response = await rawws.connect(csms.port, "/ocpp/CS-6b")
    assert b" 101 " in response
    async with open_websocket_url(csms.url("CS-6b"), subprotocols=["ocpp1.6"]) as new:
        started = trio.current_time()
        assert (await rpc(new, [2, "1", "Heartbeat", {}]))[0] == 3
        assert trio.current_time() - started < 1.0
    with trio.fail_after(5):  # the old one is closed after its 2 s of grace, not held open
        assert await rawws.closed_by_server(old, timeout=4)
    await old.aclose()


@pytest.mark.parametrize(("opcode", "payload", "code"), [
    (1, b'[2,"1","Heartbeat",{"x":"' + b"a" * 70_000 + b'"}]', 1009),
    (1, b'[2,"1","Heartbeat",{"x":"\xff\xfe"}]', 1007),
    (2, b'[2,"1","Heartbeat",{}]', 1003),
])
async def test_bad_frames_close_with_the_right_code(csms, opcode, payload, code) -> None:
    await register(csms, "CS-7")
    stream, response = await rawws.connect(csms.port, "/ocpp/CS-7")
    assert response.startswith(b"HTTP/1.1 101")
    await stream.send_all(rawws.frame(opcode, payload))
    assert await rawws.close_code(stream) == code
    await stream.aclose()
    # The server is unharmed and still serves the same station.
    async with open_websocket_url(csms.url("CS-7"), subprotocols=["ocpp1.6"]) as ws:
        assert (await rpc(ws, [2, "ok", "Heartbeat", {}]))[0] == 3


async def test_handshake_garbage_and_silence_are_dropped(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, handshake_timeout=0.5)
    stream = await trio.open_tcp_stream("127.0.0.1", csms.port)
    await stream.send_all(b"\x16\x03\x01 definitely not HTTP\r\n\r\n")
    assert await rawws.closed_by_server(stream, timeout=2)
    silent = await trio.open_tcp_stream("127.0.0.1", csms.port)
    assert await rawws.closed_by_server(silent, timeout=3)


async def test_a_crashing_handler_answers_internal_error(csms, monkeypatch) -> None:
    from lite_csms.versions import v16

    async def broken(ctx, payload):
        raise RuntimeError("boom")

    monkeypatch.setitem(v16.ROUTES, "Heartbeat", broken)
    await register(csms, "CS-8")
    async with open_websocket_url(csms.url("CS-8"), subprotocols=["ocpp1.6"]) as ws:
        assert (await rpc(ws, [2, "1", "Heartbeat", {}]))[:3] == [4, "1", "InternalError"]
        assert (await rpc(ws, [2, "2", "BootNotification", BOOT_16]))[0] == 3


async def test_outbound_call_round_trip_and_timeout(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, call_timeout=0.3)
    await register(csms, "CS-9")
    async with open_websocket_url(csms.url("CS-9"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "1", "Heartbeat", {}])
        connection = csms.server.connections["CS-9"]
        outcome = {}

        async def ask() -> None:
            outcome["first"] = await connection.call("Reset", {"type": "Soft"})
            outcome["second"] = await connection.call("ClearCache", {})

        async with trio.open_nursery() as inner:
            inner.start_soon(ask)
            request = json.loads(await ws.get_message())
            assert request[2:] == ["Reset", {"type": "Soft"}]
            await ws.send_message(json.dumps([3, request[1], {"status": "Accepted"}]))
            ignored = json.loads(await ws.get_message())  # ClearCache: left unanswered
            assert ignored[2] == "ClearCache"
        assert outcome["first"].payload == {"status": "Accepted"}
        assert outcome["second"].timed_out


async def test_dead_peers_are_found_by_tcp_keepalive(nursery, tmp_path) -> None:
    import socket

    csms = await start_in_process(nursery, tmp_path, tcp_keepalive_idle=45,
                                  tcp_keepalive_interval=7, tcp_keepalive_count=3,
                                  tcp_user_timeout=33)
    await register(csms, "CS-K")
    async with open_websocket_url(csms.url("CS-K"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "1", "Heartbeat", {}])
        sock = csms.server.connections["CS-K"].meter.sock
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 45
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 7
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 33_000


async def test_ocpp21_boot_and_send_frames(csms: CsmsInProcess) -> None:
    await register(csms, "CS-21")
    async with open_websocket_url(csms.url("CS-21"), subprotocols=["ocpp2.1"]) as ws:
        boot = await rpc(ws, [2, "b", "BootNotification", BOOT_201])
        assert boot[2]["status"] == "Accepted"
        # SEND is never answered; the next frame we get is the heartbeat's answer.
        await ws.send_message('[6, "s1", "Heartbeat", {}]')
        assert (await rpc(ws, [2, "h", "Heartbeat", {}]))[:2] == [3, "h"]
    assert query(csms, "SELECT protocol FROM station") == [("ocpp2.1",)]


async def test_last_seen_is_flushed_in_batches(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, last_seen_flush_interval=0.2)
    await register(csms, "CS-L")
    async with open_websocket_url(csms.url("CS-L"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "1", "Heartbeat", {}])
        before = query(csms, "SELECT last_seen_at FROM station")[0][0]
        await trio.sleep(0.3)
        await rpc(ws, [2, "2", "Heartbeat", {}])
        with trio.fail_after(3):
            while query(csms, "SELECT last_seen_at FROM station")[0][0] == before:
                await trio.sleep(0.05)


async def test_notifications_are_recorded(csms: CsmsInProcess) -> None:
    await register(csms, "CS-N16")
    await register(csms, "CS-N2")
    async with open_websocket_url(csms.url("CS-N16"), subprotocols=["ocpp1.6"]) as ws:
        assert (await rpc(ws, [2, "1", "FirmwareStatusNotification", {"status": "Installed"}]))[
            0] == 3
        await rpc(ws, [2, "2", "DiagnosticsStatusNotification", {"status": "Uploaded"}])
        assert (await rpc(ws, [2, "3", "DataTransfer", {"vendorId": "com.acme"}]))[2] == {
            "status": "UnknownVendorId"}
    at = "2026-11-21T10:00:00Z"
    async with open_websocket_url(csms.url("CS-N2"), subprotocols=["ocpp2.0.1"]) as ws:
        messages = [
            ("FirmwareStatusNotification", {"status": "Installed"}),
            ("LogStatusNotification", {"status": "Uploaded"}),
            ("SecurityEventNotification", {"type": "StartupOfTheDevice", "timestamp": at}),
            ("NotifyEvent", {"generatedAt": at, "seqNo": 0, "eventData": [{
                "eventId": 1, "timestamp": at, "trigger": "Alerting", "actualValue": "1",
                "eventNotificationType": "HardWiredNotification",
                "component": {"name": "EVSE"}, "variable": {"name": "Problem"}}]}),
            ("NotifyReport", {"requestId": 1, "generatedAt": at, "seqNo": 0, "reportData": [{
                "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"},
                "variableAttribute": [{"value": "300"}]}]}),
        ]
        for n, (action, payload) in enumerate(messages):
            assert (await rpc(ws, [2, str(n), action, payload]))[0] == 3, action
    rows = query(csms, "SELECT station_id, action FROM station_event ORDER BY id")
    assert rows == [("CS-N16", "FirmwareStatusNotification"),
                    ("CS-N16", "DiagnosticsStatusNotification"), ("CS-N16", "DataTransfer")] + [
        ("CS-N2", action) for action, _ in messages]


async def test_optional_pings_close_a_silent_peer(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, ws_ping_interval=0.2)
    await register(csms, "CS-P")
    stream, response = await rawws.connect(csms.port, "/ocpp/CS-P")
    assert response.startswith(b"HTTP/1.1 101")
    # This peer never reads, so it never answers a ping: the server must give up on it.
    with trio.fail_after(5):
        while "CS-P" not in csms.server.connections:
            await trio.sleep(0.02)
        while "CS-P" in csms.server.connections:
            await trio.sleep(0.05)
    await stream.aclose()


async def test_shutdown_lets_connections_record_that_they_went_offline(tmp_path) -> None:
    with trio.fail_after(10):  # the failure this guards against was a hang at shutdown
        await _serve_then_cancel(tmp_path)
    assert query(_serve_then_cancel.csms, "SELECT online FROM station") == [(0,)]


async def _serve_then_cancel(tmp_path) -> None:
    async with trio.open_nursery() as server_nursery:
        csms = await start_in_process(server_nursery, tmp_path)
        await register(csms, "CS-S")
        async with open_websocket_url(csms.url("CS-S"), subprotocols=["ocpp1.6"]) as ws:
            await rpc(ws, [2, "1", "Heartbeat", {}])
            assert query(csms, "SELECT online FROM station") == [(1,)]
            _serve_then_cancel.csms = csms
            server_nursery.cancel_scope.cancel()

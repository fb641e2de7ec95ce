"""The admin HTTP API over real HTTP: keys, error shapes, resources and commands."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import trio
from trio_websocket import open_websocket_url

from lite_csms.admin import keys
from lite_csms.db.models import IdToken
from tests.conftest import CsmsInProcess, run_cli
from tests.test_server import BOOT_16, register, rpc


def _http(method: str, url: str, key: str | None, body: Any) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def http(csms: CsmsInProcess, method: str, path: str, key: str | None = None,
               body: Any = None) -> tuple[int, Any]:
    # The server runs in this trio loop: a blocking client must run in a thread.
    url = f"http://127.0.0.1:{csms.server.admin_port}{path}"
    return await trio.to_thread.run_sync(_http, method, url, key, body)


async def new_key(csms: CsmsInProcess, name: str = "ops") -> str:
    return await csms.server.store.run(lambda: keys.create(name))


async def test_no_anonymous_access_and_json_errors(csms: CsmsInProcess) -> None:
    for key in (None, "lcs_not-a-real-key"):
        status, body = await http(csms, "GET", "/stations", key)
        assert status == 401 and "error" in body
    key = await new_key(csms)
    assert (await http(csms, "GET", "/stations", key)) == (200, [])
    status, body = await http(csms, "GET", "/stations/NOPE", key)
    assert status == 404 and body == {"error": "not found"}
    status, body = await http(csms, "POST", "/tokens", key, ["not", "an", "object"])
    assert status == 400 and "object" in body["error"]
    from lite_csms.ocppj import timestamps

    await csms.server.store.run(lambda: keys.revoke("ops", timestamps.now_utc()))
    assert (await http(csms, "GET", "/stations", key))[0] == 401


async def test_openapi_document(csms: CsmsInProcess) -> None:
    status, doc = await http(csms, "GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    assert "/stations/{id}/commands" in doc["paths"]
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


async def test_tokens_and_transactions(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    status, token = await http(csms, "POST", "/tokens", key, {"token": "GUEST-42"})
    assert status == 201 and token["status"] == "Accepted"
    assert (await http(csms, "POST", "/tokens", key, {"token": "GUEST-42"}))[0] == 422
    await register(csms, "API-1")
    async with open_websocket_url(csms.url("API-1"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "1", "BootNotification", BOOT_16])
        started = await rpc(ws, [2, "2", "StartTransaction", {
            "connectorId": 1, "idTag": "GUEST-42", "meterStart": 0,
            "timestamp": "2026-11-21T10:00:00Z"}])
        tx_id = started[2]["transactionId"]
    status, listing = await http(csms, "GET", "/transactions?active=true", key)
    assert status == 200 and [t["id"] for t in listing] == [tx_id]
    status, tx = await http(csms, "GET", f"/transactions/{tx_id}", key)
    assert tx["token"] == "GUEST-42" and tx["samples"] == []
    status, station = await http(csms, "GET", "/stations/API-1", key)
    assert station["vendor"] == "Acme" and station["online"] is False


async def answer_calls(ws, answers: dict[str, dict]) -> None:
    while True:
        request = json.loads(await ws.get_message())
        await ws.send_message(json.dumps([3, request[1], answers[request[2]]]))


async def test_commands_live_offline_and_queued(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    await register(csms, "API-2")
    await csms.server.store.run(lambda: IdToken.create(token="GUEST-42"))
    path = "/stations/API-2/commands"
    status, body = await http(csms, "POST", path, key, {"operation": "reset"})
    assert status == 409 and "never connected" in body["error"]
    async with open_websocket_url(csms.url("API-2"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "1", "BootNotification", BOOT_16])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_calls, ws, {
                "RemoteStartTransaction": {"status": "Accepted"},
                "ChangeConfiguration": {"status": "Accepted"}})
            status, body = await http(csms, "POST", path, key, {
                "operation": "remote-start", "args": {"connector": 1, "token": "GUEST-42"}})
            assert status == 200 and body["status"] == "answered"
            assert body["action"] == "RemoteStartTransaction"
            assert body["result"] == {"status": "Accepted"}
            status, body = await http(csms, "POST", path, key, {
                "operation": "set-config", "args": {"key": "HeartbeatInterval",
                                                    "value": "900"}})
            assert status == 200 and body["result"] == {"status": "Accepted"}
            assert (await http(csms, "POST", path, key, {"operation": "teleport"}))[0] == 422
            assert (await http(csms, "POST", path, key, {
                "operation": "remote-stop", "args": {"transaction": 999}}))[0] == 404
            nursery.cancel_scope.cancel()
    status, station = await http(csms, "GET", "/stations/API-2", key)
    assert station["settings"] == {"HeartbeatInterval": "900"}
    status, body = await http(csms, "POST", path, key, {"operation": "clear-cache"})
    assert status == 409 and "queue" in body["error"]
    status, queued = await http(csms, "POST", path, key, {"operation": "clear-cache",
                                                          "queue": True, "ttl": 600})
    assert status == 202 and queued["status"] == "queued"
    async with open_websocket_url(csms.url("API-2"), subprotocols=["ocpp1.6"]) as ws:
        # Reconnected without a boot: the queue goes out after its first message.
        assert (await rpc(ws, [2, "h", "Heartbeat", {}]))[:2] == [3, "h"]
        with trio.fail_after(5):
            request = json.loads(await ws.get_message())
        assert request[2] == "ClearCache"
        await ws.send_message(json.dumps([3, request[1], {"status": "Accepted"}]))
        with trio.fail_after(5):
            while (await http(csms, "GET", f"/commands/{queued['command_id']}", key))[1][
                    "status"] != "answered":
                await trio.sleep(0.05)
    status, history = await http(csms, "GET", path, key)
    assert [c["action"] for c in history][:2] == ["ClearCache", "ClearCache"]
    assert {c["requested_by"] for c in history} == {"api:ops"}


async def test_any_csms_initiated_message_can_be_sent_raw(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    await register(csms, "API-3")
    path = "/stations/API-3/commands"
    async with open_websocket_url(csms.url("API-3"), subprotocols=["ocpp2.0.1"]) as ws:
        await rpc(ws, [2, "1", "Heartbeat", {}])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_calls, ws, {"GetLocalListVersion": {"versionNumber": 4}})
            status, body = await http(csms, "POST", path, key, {
                "operation": "call", "args": {"action": "GetLocalListVersion"}})
            assert status == 200 and body["result"] == {"versionNumber": 4}
            status, body = await http(csms, "POST", path, key, {
                "operation": "call", "args": {"action": "GetLog", "payload": {"x": 1}}})
            # Refused before it is logged or sent: the operator's payload, not the station.
            assert status == 422 and body["error"].startswith("GetLog:")
            nursery.cancel_scope.cancel()


async def test_reservations_are_stored_consumed_cancelled_and_expire(csms: CsmsInProcess
                                                                     ) -> None:
    from datetime import timedelta

    from lite_csms.handlers import reservation
    from lite_csms.ocppj import timestamps
    from tests.test_server import query

    key = await new_key(csms)
    await register(csms, "API-R")
    await csms.server.store.run(lambda: IdToken.create(token="GUEST-42"))
    path = "/stations/API-R/commands"
    async with open_websocket_url(csms.url("API-R"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "1", "BootNotification", BOOT_16])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_calls, ws, {"ReserveNow": {"status": "Accepted"},
                                                  "CancelReservation": {"status": "Accepted"}})
            status, first = await http(csms, "POST", path, key, {
                "operation": "reserve", "args": {"connector": 1, "token": "GUEST-42",
                                                 "expires_in": 900}})
            assert status == 200 and first["result"] == {"status": "Accepted"}
            status, second = await http(csms, "POST", path, key, {
                "operation": "reserve", "args": {"connector": 2, "token": "GUEST-42"}})
            assert status == 200 and second["status"] == "answered"
            nursery.cancel_scope.cancel()
        sent = query(csms, "SELECT payload FROM command WHERE action = 'ReserveNow'")
        first_id = json.loads(sent[0][0])["reservationId"]
        second_id = json.loads(sent[1][0])["reservationId"]
        status, station = await http(csms, "GET", "/stations/API-R", key)
        assert [r["status"] for r in station["reservations"]] == ["accepted", "accepted"]
        started = await rpc(ws, [2, "2", "StartTransaction", {
            "connectorId": 1, "idTag": "GUEST-42", "meterStart": 0, "reservationId": first_id,
            "timestamp": "2026-11-21T10:00:00Z"}])
        tx_id = started[2]["transactionId"]
    assert query(csms, "SELECT status, transaction_id FROM reservation WHERE id = ?",
                 first_id) == [("used", tx_id)]
    later = timestamps.now_utc() + timedelta(hours=2)
    assert await csms.server.store.run(lambda: reservation.expire_due(later)) == 1
    assert query(csms, "SELECT status FROM reservation WHERE id = ?", second_id) == [
        ("expired",)]


async def test_v201_reservation_cancelled_and_station_updates(csms: CsmsInProcess) -> None:
    from tests.test_server import query

    key = await new_key(csms)
    await register(csms, "API-R2")
    path = "/stations/API-R2/commands"
    async with open_websocket_url(csms.url("API-R2"), subprotocols=["ocpp2.0.1"]) as ws:
        await rpc(ws, [2, "1", "Heartbeat", {}])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_calls, ws, {"ReserveNow": {"status": "Accepted"},
                                                  "CancelReservation": {"status": "Accepted"}})
            ids = []
            for _ in range(2):
                await http(csms, "POST", path, key, {
                    "operation": "reserve", "args": {"connector": 1, "token": "ANY"}})
            for (payload,) in query(csms, "SELECT payload FROM command"):
                ids.append(json.loads(payload)["id"])
            _, body = await http(csms, "POST", path, key, {
                "operation": "cancel-reservation", "args": {"reservation": ids[0]}})
            assert body["result"] == {"status": "Accepted"}
            nursery.cancel_scope.cancel()
        await rpc(ws, [2, "2", "ReservationStatusUpdate", {
            "reservationId": ids[1], "reservationUpdateStatus": "Expired"}])
    assert query(csms, "SELECT status FROM reservation ORDER BY id") == [
        ("cancelled",), ("expired",)]
    sent = json.loads(query(csms, "SELECT payload FROM command")[0][0])
    assert sent["idToken"] == {"idToken": "ANY", "type": "Central"}


async def test_local_list_full_then_differential(csms: CsmsInProcess) -> None:
    from tests.test_server import query

    key = await new_key(csms)
    await register(csms, "API-L")
    for token in ("TAG-A", "TAG-B", "A-TOKEN-LONGER-THAN-20-CHARS"):
        await http(csms, "POST", "/tokens", key, {"token": token})
    path = "/stations/API-L/commands"
    async with open_websocket_url(csms.url("API-L"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "1", "BootNotification", BOOT_16])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_calls, ws, {"SendLocalList": {"status": "Accepted"},
                                                  "GetLocalListVersion": {"listVersion": 1}})
            status, body = await http(csms, "POST", path, key, {"operation": "send-local-list"})
            assert status == 200 and body["result"] == {"status": "Accepted"}
            await trio.sleep(0.01)  # the next change must be later than the list's send time
            block = await trio.to_thread.run_sync(lambda: run_cli(
                "token", "block", "TAG-B", "--database", str(csms.database)))
            assert block.returncode == 0
            await http(csms, "POST", path, key, {"operation": "send-local-list",
                                                 "args": {"full": False}})
            status, body = await http(csms, "POST", path, key,
                                      {"operation": "get-local-list-version"})
            assert body["result"] == {"listVersion": 1}
            nursery.cancel_scope.cancel()
    sent = [json.loads(p) for (p,) in query(
        csms, "SELECT payload FROM command WHERE action = 'SendLocalList' ORDER BY id")]
    assert sent[0]["updateType"] == "Full" and sent[0]["listVersion"] == 1
    assert [e["idTag"] for e in sent[0]["localAuthorizationList"]] == ["TAG-A", "TAG-B"]
    assert sent[1]["updateType"] == "Differential" and sent[1]["listVersion"] == 2
    assert sent[1]["localAuthorizationList"] == [
        {"idTag": "TAG-B", "idTagInfo": {"status": "Blocked"}}]
    # The station said it holds version 1 (the second list was answered but not kept).
    assert query(csms, "SELECT version FROM local_list_state") == [(1,)]


async def test_operator_sets_the_boot_answer_pending_and_rejected(csms: CsmsInProcess) -> None:
    """PATCH /stations/{id} (and `station hold|reject|accept`) set what the next
    BootNotification is answered; a Pending station may send only what it was asked for,
    a Rejected one nothing but BootNotification (2.0.1 B02.FR.09, B03.FR.07)."""
    from tests.test_server import BOOT_201, query

    key = await new_key(csms)
    await register(csms, "BOOT-201")
    await register(csms, "BOOT-16")
    assert (await http(csms, "PATCH", "/stations/NOPE", key, {"registration": "pending"}))[
        0] == 404
    status, body = await http(csms, "PATCH", "/stations/BOOT-201", key,
                              {"registration": "retired"})
    assert status == 422 and "accepted, pending, rejected" in body["error"]
    assert (await http(csms, "PATCH", "/stations/BOOT-201", key, {"online": True}))[0] == 422
    status, body = await http(csms, "PATCH", "/stations/BOOT-201", key,
                              {"registration": "pending"})
    assert status == 200 and body["registration"] == "pending"
    path = "/stations/BOOT-201/commands"
    async with open_websocket_url(csms.url("BOOT-201"), subprotocols=["ocpp2.0.1"]) as ws:
        boot = await rpc(ws, [2, "1", "BootNotification", BOOT_201])
        assert (boot[2]["status"], boot[2]["interval"]) == ("Pending", 900)  # boot_retry_interval
        status_report = {"timestamp": "2026-11-21T10:00:00Z", "connectorStatus": "Available",
                         "evseId": 1, "connectorId": 1}
        refused = await rpc(ws, [2, "2", "StatusNotification", status_report])
        assert refused[:3] == [4, "2", "SecurityError"]
        # The CSMS may configure a pending station, but not start charging on it.
        status, body = await http(csms, "POST", path, key, {
            "operation": "remote-start", "args": {"token": "X", "allow_unknown_token": True}})
        assert status == 409 and "pending" in body["error"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_calls, ws, {"TriggerMessage": {"status": "Accepted"},
                                                  "GetBaseReport": {"status": "Accepted"}})
            for operation, args in (("trigger", {"message": "StatusNotification"}),
                                    ("base-report", {})):
                status, body = await http(csms, "POST", path, key,
                                          {"operation": operation, "args": args})
                assert status == 200 and body["result"] == {"status": "Accepted"}
            nursery.cancel_scope.cancel()
        # What was asked for is taken; what was not still is not.
        assert (await rpc(ws, [2, "3", "StatusNotification", status_report]))[0] == 3
        report = {"requestId": 1, "generatedAt": "2026-11-21T10:00:00Z", "seqNo": 0}
        assert (await rpc(ws, [2, "4", "NotifyReport", report]))[0] == 3
        assert (await rpc(ws, [2, "5", "Heartbeat", {}]))[2] == "SecurityError"
    assert query(csms, "SELECT status FROM connector") == [("Available",)]
    database = str(csms.database)

    def station_cli(*args: str):
        return run_cli("station", *args, "--database", database)

    rejected = await trio.to_thread.run_sync(station_cli, "reject", "BOOT-16")
    assert rejected.returncode == 0 and "answered Rejected" in rejected.stdout
    async with open_websocket_url(csms.url("BOOT-16"), subprotocols=["ocpp1.6"]) as ws:
        assert (await rpc(ws, [2, "1", "BootNotification", BOOT_16]))[2]["status"] == "Rejected"
        assert (await rpc(ws, [2, "2", "Heartbeat", {}]))[2] == "SecurityError"
        status, body = await http(csms, "POST", "/stations/BOOT-16/commands", key,
                                  {"operation": "clear-cache"})
        assert status == 409 and "rejected" in body["error"]
        held = await trio.to_thread.run_sync(station_cli, "hold", "BOOT-16")
        assert held.returncode == 0
        assert (await rpc(ws, [2, "3", "BootNotification", BOOT_16]))[2]["status"] == "Pending"
        accepted = await trio.to_thread.run_sync(station_cli, "accept", "BOOT-16")
        assert accepted.returncode == 0
        assert (await rpc(ws, [2, "4", "BootNotification", BOOT_16]))[2]["status"] == (
            "Accepted")
        assert (await rpc(ws, [2, "5", "Heartbeat", {}]))[0] == 3
    assert query(csms, "SELECT registration FROM station WHERE id = 'BOOT-16'") == [
        ("accepted",)]

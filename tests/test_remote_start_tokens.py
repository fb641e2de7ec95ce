"""A remote start names a token the CSMS would accept, unless the operator says otherwise.

Otherwise the station starts, the CSMS answers its StartTransaction (or TransactionEvent)
Invalid, and a 0 kWh de-authorized session is all that is left.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import trio
from trio_websocket import open_websocket_url

from lite_csms import config
from lite_csms.cli.main import build_parser
from lite_csms.db.models import IdToken
from tests.conftest import CsmsInProcess, run_cli, start_in_process
from tests.test_admin_api import answer_calls, http, new_key
from tests.test_server import BOOT_16, BOOT_201, query, register, rpc

STARTS = "SELECT payload FROM command WHERE action = 'RemoteStartTransaction' ORDER BY id"


async def add_tokens(csms: CsmsInProcess) -> None:
    def work() -> None:
        IdToken.create(token="GUEST-42")
        IdToken.create(token="LOST-CARD", status="Blocked")
        IdToken.create(token="OLD-CARD", expires_at=datetime(2020, 1, 1, tzinfo=UTC))

    await csms.server.store.run(work)


async def test_unknown_blocked_and_expired_tokens_are_refused(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    await add_tokens(csms)
    await register(csms, "RS-16")
    path = "/stations/RS-16/commands"

    async def start(token: str, **extra: object) -> tuple[int, dict]:
        return await http(csms, "POST", path, key, {
            "operation": "remote-start", "args": {"connector": 1, "token": token, **extra}})

    async with open_websocket_url(csms.url("RS-16"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "1", "BootNotification", BOOT_16])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_calls, ws, {"RemoteStartTransaction": {
                "status": "Accepted"}})
            status, body = await start("UNKNOWN")
            assert status == 422 and "'UNKNOWN' is not registered" in body["error"]
            for token, word in (("LOST-CARD", "blocked"), ("old-card", "expired")):
                status, body = await start(token)
                assert status == 422 and f"is {word}" in body["error"], body
            assert (await start("UNKNOWN", allow_unknown_token="yes"))[0] == 422
            # Nothing was sent for any of them.
            assert query(csms, STARTS) == []
            # A registered token in another case is sent as registered.
            status, body = await start("guest-42")
            assert status == 200 and body["result"] == {"status": "Accepted"}
            # The operator's explicit override sends an unknown token as typed.
            status, body = await start("VISITOR", allow_unknown_token=True)
            assert status == 200 and body["status"] == "answered"
            nursery.cancel_scope.cancel()
    assert [json.loads(p)["idTag"] for (p,) in query(csms, STARTS)] == ["GUEST-42", "VISITOR"]


async def test_free_charging_accepts_unknown_tokens_but_not_blocked_ones(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    csms = await start_in_process(nursery, tmp_path, free_charging=True)
    key = await new_key(csms)
    await add_tokens(csms)
    await register(csms, "RS-FREE")
    await register(csms, "RS-FREE2")
    path = "/stations/RS-FREE/commands"
    async with open_websocket_url(csms.url("RS-FREE"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "1", "BootNotification", BOOT_16])
        async with trio.open_nursery() as answers:
            answers.start_soon(answer_calls, ws, {"RemoteStartTransaction": {
                "status": "Accepted"}})
            status, _ = await http(csms, "POST", path, key, {
                "operation": "remote-start", "args": {"token": "VISITOR"}})
            assert status == 200
            status, body = await http(csms, "POST", path, key, {
                "operation": "remote-start", "args": {"token": "LOST-CARD"}})
            assert status == 422 and "blocked" in body["error"]
            answers.cancel_scope.cancel()
        # The start that follows is accepted, so the session bills instead of ending at 0 kWh.
        started = await rpc(ws, [2, "2", "StartTransaction", {
            "connectorId": 1, "idTag": "VISITOR", "meterStart": 0,
            "timestamp": "2026-11-21T08:00:00Z"}])
        assert started[2]["idTagInfo"]["status"] == "Accepted"
        blocked = await rpc(ws, [2, "3", "Authorize", {"idTag": "LOST-CARD"}])
        assert blocked[2]["idTagInfo"]["status"] == "Blocked"
    async with open_websocket_url(csms.url("RS-FREE2"), subprotocols=["ocpp2.0.1"]) as ws:
        await rpc(ws, [2, "1", "BootNotification", BOOT_201])
        answer = await rpc(ws, [2, "2", "Authorize", {
            "idToken": {"idToken": "VISITOR", "type": "ISO14443"}}])
        assert answer[2]["idTokenInfo"]["status"] == "Accepted"


async def test_without_free_charging_unknown_tokens_stay_invalid(csms: CsmsInProcess) -> None:
    await register(csms, "RS-STRICT")
    async with open_websocket_url(csms.url("RS-STRICT"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "1", "BootNotification", BOOT_16])
        answer = await rpc(ws, [2, "2", "Authorize", {"idTag": "VISITOR"}])
    assert answer[2]["idTagInfo"]["status"] == "Invalid"


async def test_cli_refuses_in_one_line_and_exits_2(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    await add_tokens(csms)
    await register(csms, "RS-CLI")
    env = {**os.environ, "LITE_CSMS_API_KEY": key,
           "LITE_CSMS_ADMIN_PORT": str(csms.server.admin_port)}

    def remote_start(*extra: str):
        return run_cli("remote", "start", "RS-CLI", "--token", "UNKNOWN", *extra, env=env)

    async with open_websocket_url(csms.url("RS-CLI"), subprotocols=["ocpp2.0.1"]) as ws:
        await rpc(ws, [2, "1", "BootNotification", BOOT_201])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_calls, ws, {"RequestStartTransaction": {
                "status": "Accepted"}})
            refused = await trio.to_thread.run_sync(remote_start)
            assert refused.returncode == 2 and refused.stdout == ""
            assert len(refused.stderr.splitlines()) == 1
            assert "'UNKNOWN' is not registered" in refused.stderr
            allowed = await trio.to_thread.run_sync(remote_start, "--allow-unknown-token")
            assert allowed.returncode == 0, allowed.stderr
            assert '"status": "Accepted"' in allowed.stdout
            nursery.cancel_scope.cancel()
    sent = [json.loads(p) for (p,) in query(
        csms, "SELECT payload FROM command WHERE action = 'RequestStartTransaction'")]
    assert [s["idToken"]["idToken"] for s in sent] == ["UNKNOWN"]


def test_free_charging_from_toml_environment_and_flag(tmp_path: Path) -> None:
    assert config.load(environ={}).free_charging is False
    toml = tmp_path / "c.toml"
    toml.write_text("free_charging = true\n")
    assert config.load(toml, environ={}).free_charging is True
    assert config.load(environ={"LITE_CSMS_FREE_CHARGING": "no"}).free_charging is False
    assert config.load(environ={"LITE_CSMS_FREE_CHARGING": "1"}).free_charging is True
    args = build_parser().parse_args(["serve", "--free-charging"])
    assert args.free_charging is True
    assert build_parser().parse_args(["serve"]).free_charging is None

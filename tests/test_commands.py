"""CSMS-initiated commands: sent now, refused when offline, or queued for the next connection."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import trio
from trio_websocket import open_websocket_url

from lite_csms.db.models import Station
from lite_csms.net.commands import StationOffline
from tests.conftest import CsmsInProcess
from tests.test_server import query, register, rpc


async def booted_before(csms: CsmsInProcess, station_id: str) -> None:
    """As a station accepted by an earlier BootNotification: it may reconnect without one."""
    await csms.server.store.run(lambda: Station.update(last_boot_at=datetime.now(UTC)).where(
        Station.id == station_id).execute())


async def answer_next_call(ws, payload: dict) -> list:
    request = json.loads(await ws.get_message())
    await ws.send_message(json.dumps([3, request[1], payload]))
    return request


async def test_offline_station_fails_clearly_unless_queued(csms: CsmsInProcess) -> None:
    await register(csms, "CMD-1")
    await booted_before(csms, "CMD-1")
    commands = csms.server.commands
    with pytest.raises(StationOffline):
        await commands.send("CMD-1", "Reset", {"type": "Soft"}, requested_by="test")
    queued = await commands.send("CMD-1", "Reset", {"type": "Hard"}, requested_by="test",
                                 queue=True)
    assert queued.status == "queued"
    stale = await commands.send("CMD-1", "ClearCache", {}, requested_by="test", queue=True,
                                ttl=timedelta(seconds=-1))
    async with open_websocket_url(csms.url("CMD-1"), subprotocols=["ocpp1.6"]) as ws:
        # An accepted station reconnecting without a boot: the queue waits for its first word.
        assert (await rpc(ws, [2, "h0", "Heartbeat", {}]))[:2] == [3, "h0"]
        with trio.fail_after(5):
            request = await answer_next_call(ws, {"status": "Accepted"})
        assert request[2:] == ["Reset", {"type": "Hard"}]
        # The stale one is never sent: the next frame is our own heartbeat's answer.
        assert (await rpc(ws, [2, "h", "Heartbeat", {}]))[:2] == [3, "h"]
    sql = "SELECT status FROM command WHERE id = ?"
    with trio.fail_after(5):  # the outcome is logged just after the answer arrives
        while query(csms, sql, queued.command_id) != [("answered",)]:
            await trio.sleep(0.02)
    rows = query(csms, "SELECT id, action, status, requested_by, result FROM command ORDER BY id")
    assert rows == [
        (1, "Reset", "offline", "test", None),
        (queued.command_id, "Reset", "answered", "test", '{"status":"Accepted"}'),
        (stale.command_id, "ClearCache", "expired", "test", None),
    ]


async def test_queued_commands_wait_for_the_station_to_be_accepted(nursery, tmp_path) -> None:
    from tests.conftest import start_in_process
    from tests.test_server import BOOT_16

    csms = await start_in_process(nursery, tmp_path)
    await register(csms, "CMD-2", registration="pending")
    await csms.server.commands.send("CMD-2", "ClearCache", {}, requested_by="t", queue=True)
    async with open_websocket_url(csms.url("CMD-2"), subprotocols=["ocpp1.6"]) as ws:
        with trio.move_on_after(0.3):
            early = await ws.get_message()
            pytest.fail(f"sent to a pending station: {early}")
        from lite_csms.db.models import Station

        await csms.server.store.run(lambda: Station.update(registration="accepted").execute())
        boot = await rpc(ws, [2, "b", "BootNotification", BOOT_16])
        assert boot[2]["status"] == "Accepted"
        with trio.fail_after(5):
            request = await answer_next_call(ws, {"status": "Accepted"})
        assert request[2] == "ClearCache"


async def test_live_command_records_errors_and_invalid_requests(csms: CsmsInProcess) -> None:
    await register(csms, "CMD-3")
    async with open_websocket_url(csms.url("CMD-3"), subprotocols=["ocpp2.0.1"]) as ws:
        await rpc(ws, [2, "h", "Heartbeat", {}])
        commands = csms.server.commands
        invalid = await commands.send("CMD-3", "Reset", {"type": "Sideways"}, requested_by="t")
        assert invalid.status == "error" and invalid.error_code == "InvalidRequest"
        async with trio.open_nursery() as inner:
            outcome = {}

            async def send() -> None:
                outcome["x"] = await commands.send("CMD-3", "ClearCache", {}, requested_by="t")

            inner.start_soon(send)
            request = json.loads(await ws.get_message())
            await ws.send_message(json.dumps([4, request[1], "NotSupported", "no cache", {}]))
        assert outcome["x"].status == "error" and outcome["x"].error_code == "NotSupported"
    statuses = query(csms, "SELECT status, error_code FROM command ORDER BY id")
    assert statuses == [("error", "InvalidRequest"), ("error", "NotSupported")]


async def test_connection_lost_mid_command_is_logged(csms: CsmsInProcess) -> None:
    await register(csms, "CMD-4")
    await booted_before(csms, "CMD-4")
    await csms.server.commands.send("CMD-4", "ClearCache", {}, requested_by="t", queue=True)
    async with open_websocket_url(csms.url("CMD-4"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "h0", "Heartbeat", {}])
        with trio.fail_after(5):
            await ws.get_message()  # the queued CALL arrives; we hang up without answering
    with trio.fail_after(5):
        while query(csms, "SELECT status, error_code FROM command") != [
                ("error", "ConnectionClosed")]:
            await trio.sleep(0.02)

"""Kind 7: nothing goes to a station before it has spoken on its connection.

A raw client connects and stays silent: it must receive no CALL, neither the budget policy's
settings nor a queued command. After its BootNotification is Accepted (or, for a station
accepted before, after its first message) they arrive, and only after our answer.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
import trio

from lite_csms.db.models import TrafficCounter
from lite_csms.net.commands import StationNotReady
from tests import rawws
from tests.conftest import CsmsInProcess, start_in_process
from tests.test_server import BOOT_16, BOOT_201, query, register

SILENCE = 0.6
VERSIONS = [("ocpp1.6", BOOT_16), ("ocpp2.0.1", BOOT_201)]


class RawStation:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def send(self, message: list[Any]) -> None:
        await self.stream.send_all(rawws.frame(1, json.dumps(message).encode()))

    async def next_message(self, timeout: float = 5.0) -> list[Any]:
        with trio.fail_after(timeout):
            while True:
                received = await rawws.read_frame(self.stream, self.buffer)
                assert received is not None, "the server closed the connection"
                opcode, payload = received
                if opcode == 1:
                    return json.loads(payload)

    async def silent_for(self, seconds: float) -> list[list[Any]]:
        """Whatever the server sends while we say nothing."""
        got: list[list[Any]] = []
        with trio.move_on_after(seconds):
            while True:
                got.append(await self.next_message(timeout=seconds + 1))
        return got

    async def answer(self, call: list[Any]) -> None:
        action, payload = call[2], call[3]
        if action == "SetVariables":
            result = {"setVariableResult": [
                {"attributeStatus": "Accepted", "component": item["component"],
                 "variable": item["variable"]} for item in payload["setVariableData"]]}
        else:
            result = {"status": "Accepted"}
        await self.send([3, call[1], result])


async def connect(csms: CsmsInProcess, station_id: str, protocol: str) -> RawStation:
    stream, response = await rawws.connect(csms.port, f"/ocpp/{station_id}", protocols=protocol)
    assert response.startswith(b"HTTP/1.1 101"), response
    return RawStation(stream)


async def calls_until_quiet(station: RawStation) -> list[list[Any]]:
    """Answer every CALL the server sends until it has been quiet for a while."""
    calls: list[list[Any]] = []
    while True:
        with trio.move_on_after(SILENCE):
            call = await station.next_message()
            assert call[0] == 2, call
            calls.append(call)
            await station.answer(call)
            continue
        return calls


@pytest.mark.parametrize(("protocol", "boot"), VERSIONS)
async def test_silent_station_gets_nothing_until_its_boot_is_accepted(
        nursery, tmp_path, protocol, boot) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    await register(csms, "PRE-1")  # as `station add PRE-1` leaves it: accepted
    commands = csms.server.commands
    queued = await commands.send("PRE-1", "Reset", {"type": "Hard" if protocol == "ocpp1.6"
                                                    else "Immediate"},
                                 requested_by="test", queue=True)
    station = await connect(csms, "PRE-1", protocol)
    assert await station.silent_for(SILENCE) == []
    # An operator's command meanwhile: refused unless queued, like an offline station's.
    with pytest.raises(StationNotReady, match="has not sent its first message"):
        await commands.send("PRE-1", "ClearCache", {}, requested_by="test")
    later = await commands.send("PRE-1", "ClearCache", {}, requested_by="test", queue=True)
    assert later.status == "queued"
    assert await station.silent_for(0.2) == []

    await station.send([2, "boot", "BootNotification", boot])
    answer = await station.next_message()
    assert answer[:2] == [3, "boot"] and answer[2]["status"] == "Accepted"
    calls = await calls_until_quiet(station)
    actions = [call[2] for call in calls]
    # The queue first, oldest first, then the budget policy's settings.
    assert actions[:2] == ["Reset", "ClearCache"]
    setting = "ChangeConfiguration" if protocol == "ocpp1.6" else "SetVariables"
    assert actions[2:] and set(actions[2:]) == {setting}
    rows = query(csms, "SELECT id, status FROM command WHERE id IN (?, ?) ORDER BY id",
                 queued.command_id, later.command_id)
    assert rows == [(queued.command_id, "answered"), (later.command_id, "answered")]
    await station.stream.aclose()


@pytest.mark.parametrize(("protocol", "boot"), VERSIONS)
async def test_accepted_station_reconnecting_without_boot_gets_them_after_its_first_message(
        nursery, tmp_path, protocol, boot) -> None:
    csms = await start_in_process(nursery, tmp_path)
    await register(csms, "PRE-2")
    first = await connect(csms, "PRE-2", protocol)
    await first.send([2, "boot", "BootNotification", boot])
    assert (await first.next_message())[2]["status"] == "Accepted"
    await first.stream.aclose()
    with trio.fail_after(5):
        while "PRE-2" in csms.server.connections:
            await trio.sleep(0.02)

    await csms.server.commands.send("PRE-2", "ClearCache", {}, requested_by="test",
                                    queue=True)
    again = await connect(csms, "PRE-2", protocol)
    assert await again.silent_for(SILENCE) == []
    await again.send([2, "hb", "Heartbeat", {}])
    answer = await again.next_message()
    assert answer[:2] == [3, "hb"]
    call = await again.next_message()
    assert call[0] == 2 and call[2] == "ClearCache"
    await again.answer(call)
    # Now that it has spoken, an operator's command goes straight out.
    async with trio.open_nursery() as inner:
        inner.start_soon(partial(csms.server.commands.send, "PRE-2", "ClearCache", {},
                                 requested_by="test"))
        direct = await again.next_message()
        assert direct[2] == "ClearCache"
        await again.answer(direct)
    await again.stream.aclose()


@pytest.mark.parametrize(("protocol", "boot"), VERSIONS)
async def test_pending_station_gets_nothing_automatic(nursery, tmp_path, protocol, boot
                                                      ) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    await register(csms, "PRE-3", registration="pending")
    queued = await csms.server.commands.send("PRE-3", "ClearCache", {}, requested_by="test",
                                             queue=True)
    station = await connect(csms, "PRE-3", protocol)
    await station.send([2, "boot", "BootNotification", boot])
    assert (await station.next_message())[2]["status"] == "Pending"
    assert await station.silent_for(SILENCE) == []
    assert query(csms, "SELECT status FROM command WHERE id = ?",
                 queued.command_id) == [("queued",)]
    await station.stream.aclose()


async def test_policy_move_waits_for_a_station_that_has_not_spoken(nursery, tmp_path
                                                                  ) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True, budget_cap=500_000)
    await register(csms, "PRE-4")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # 450 kB this hour: past the warning line of a 500 kB cap, so the policy moves it.
    await csms.server.store.run(partial(
        TrafficCounter.create, station="PRE-4", period="hour", period_start=hour,
        action="MeterValues", direction="in", layer="ip", bytes=450_000))
    station = await connect(csms, "PRE-4", "ocpp1.6")
    with trio.fail_after(5):
        while "PRE-4" not in csms.server.connections:
            await trio.sleep(0.02)
    async with trio.open_nursery() as inner:
        inner.start_soon(csms.server.policy.run, csms.server.connections, 0.05)
        assert await station.silent_for(SILENCE) == []
        inner.cancel_scope.cancel()
    # The move is recorded, and its settings wait for the station.
    assert query(csms, "SELECT to_level FROM policy_change WHERE station_id = 'PRE-4'") == [
        ("minimal",)]
    await station.send([2, "boot", "BootNotification", BOOT_16])
    assert (await station.next_message())[:2] == [3, "boot"]
    calls = await calls_until_quiet(station)
    sent = {call[3]["key"]: call[3]["value"] for call in calls}
    assert sent.get("MeterValueSampleInterval") == "0"
    await station.stream.aclose()


@pytest.mark.parametrize(("protocol", "boot"), VERSIONS)
async def test_station_that_never_booted_gets_nothing_after_a_heartbeat(
        nursery, tmp_path, protocol, boot) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    await register(csms, "PRE-5")  # `station add`: accepted, but never booted
    queued = await csms.server.commands.send("PRE-5", "ClearCache", {}, requested_by="test",
                                             queue=True)
    station = await connect(csms, "PRE-5", protocol)
    await station.send([2, "hb", "Heartbeat", {}])
    assert (await station.next_message())[:2] == [3, "hb"]
    assert await station.silent_for(SILENCE) == []
    assert query(csms, "SELECT status FROM command WHERE id = ?",
                 queued.command_id) == [("queued",)]
    await station.send([2, "boot", "BootNotification", boot])
    assert (await station.next_message())[2]["status"] == "Accepted"
    actions = [call[2] for call in await calls_until_quiet(station)]
    setting = "ChangeConfiguration" if protocol == "ocpp1.6" else "SetVariables"
    assert actions[0] == "ClearCache" and set(actions[1:]) == {setting}
    await station.stream.aclose()

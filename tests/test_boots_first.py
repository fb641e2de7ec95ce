"""A first boot's settings: boots go first under a burst, and the command log of a batch.

The budget policy's settings wait while other stations' handshakes run (budget/precedence.py),
at most `budget_policy_boots_first` seconds. They are logged in one store job and their
answers recorded in one (net/commands.py send_each_on): a connection that ends halfway keeps
every answer it gave, the CALL in flight is recorded as ended, and nothing unsent is logged.
"""

from __future__ import annotations

import json

import trio

from lite_csms.budget import policy
from lite_csms.budget.precedence import BootsFirst
from tests import rawws
from tests.conftest import start_in_process
from tests.test_before_boot import RawStation, calls_until_quiet, connect
from tests.test_server import BOOT_16, query, register


async def test_waiters_go_when_the_handshakes_are_over() -> None:
    busy = True
    gate = BootsFirst(lambda: busy, max_wait=5.0, poll=0.01)
    released: list[float] = []

    async def waiter() -> None:
        assert await gate.wait()
        released.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(waiter)
        await trio.sleep(0.2)
        assert released == []
        busy = False
        cleared = trio.current_time()
    assert len(released) == 3
    assert all(at - cleared < 0.5 for at in released)
    assert gate.waited == 3
    # Nothing running: no wait at all.
    assert not await gate.wait()


async def test_a_waiter_never_waits_longer_than_its_bound() -> None:
    gate = BootsFirst(lambda: True, max_wait=0.2, poll=0.01)
    started = trio.current_time()
    with trio.fail_after(2):
        assert await gate.wait()
    assert 0.15 < trio.current_time() - started < 1.0
    assert not await BootsFirst(lambda: True, max_wait=0).wait()


async def _booted(csms, station_id: str) -> RawStation:
    station = await connect(csms, station_id, "ocpp1.6")
    await station.send([2, "boot", "BootNotification", BOOT_16])
    answer = await station.next_message()
    assert answer[:2] == [3, "boot"] and answer[2]["status"] == "Accepted"
    return station


async def test_settings_wait_while_another_handshake_runs(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True,
                                  budget_policy_boots_first=5.0)
    await register(csms, "FIRST-1")
    # A connection that has not finished its handshake: counted as one running.
    pending = await trio.open_tcp_stream("127.0.0.1", csms.port)
    with trio.fail_after(2):
        while csms.server.listener.limits.handshaking == 0:
            await trio.sleep(0.01)
    station = await _booted(csms, "FIRST-1")
    assert await station.silent_for(0.4) == []
    await pending.aclose()
    with trio.fail_after(2):
        calls = await calls_until_quiet(station)
    assert calls and {call[2] for call in calls} == {"ChangeConfiguration"}
    assert csms.server.boots_first.waited == 1
    rows = query(csms, "SELECT status FROM command WHERE station_id = 'FIRST-1'")
    assert [status for (status,) in rows] == ["answered"] * len(calls)
    await station.stream.aclose()


async def test_a_batch_cut_short_keeps_every_answer_given(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    await register(csms, "CUT-1")
    station = await _booted(csms, "CUT-1")
    answered = []
    for _ in range(2):
        call = await station.next_message()
        assert call[0] == 2 and call[2] == "ChangeConfiguration"
        await station.answer(call)
        answered.append(call[3]["key"])
    third = await station.next_message()
    assert third[2] == "ChangeConfiguration"
    await station.stream.aclose()
    with trio.fail_after(5):
        while "CUT-1" in csms.server.connections:
            await trio.sleep(0.02)
    await csms.server.store.run(lambda: None)  # the outcomes' job has been committed
    rows = query(csms, "SELECT status, error_code, payload FROM command "
                       "WHERE station_id = 'CUT-1' ORDER BY id")
    # Two answered, the third ended with the connection; the rest were never logged.
    assert [(status, code) for status, code, _ in rows] == [
        ("answered", None), ("answered", None), ("error", "ConnectionClosed")]
    assert third[3]["key"] in rows[2][2]
    held = query(csms, "SELECT key FROM station_setting WHERE station_id = 'CUT-1'")
    assert sorted(key for (key,) in held) == sorted(answered)


async def test_a_frame_sent_before_the_101_is_answered_without_a_watcher(csms) -> None:
    # A station without a password is decided at once, with no task reading ahead of the
    # 101: its first frame, sent without waiting, waits in TCP and is still answered.
    await register(csms, "EAGER-1")
    stream = await rawws.send_upgrade(csms.port, "/ocpp/EAGER-1")
    await stream.send_all(rawws.frame(1, json.dumps(
        [2, "boot", "BootNotification", BOOT_16]).encode()))
    buffer = bytearray()
    with trio.fail_after(5):
        while b"\r\n\r\n" not in buffer:
            buffer += await stream.receive_some(4096)
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        buffer = bytearray(rest)
        opcode, payload = await rawws.read_frame(stream, buffer)
    answer = json.loads(payload)
    assert opcode == 1 and answer[:2] == [3, "boot"] and answer[2]["status"] == "Accepted"
    await stream.aclose()


async def test_settings_go_to_a_bounded_number_of_stations_at_once(nursery, tmp_path,
                                                                   monkeypatch) -> None:
    # policy.SETTINGS_AT_ONCE bounds the stations whose round trips are in flight together
    # (after a burst, a thousand at once left their memory behind); here one at a time.
    monkeypatch.setattr(policy, "SETTINGS_AT_ONCE", 1)
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    await register(csms, "ONCE-1")
    await register(csms, "ONCE-2")
    first = await _booted(csms, "ONCE-1")
    call = await first.next_message()
    assert call[0] == 2 and call[2] == "ChangeConfiguration"
    second = await _booted(csms, "ONCE-2")
    # The first station's settings hold the one place while its CALL waits for an answer.
    assert await second.silent_for(0.4) == []
    await first.answer(call)
    with trio.fail_after(5):
        rest = await calls_until_quiet(first)
        calls = await calls_until_quiet(second)
    assert {c[2] for c in rest} <= {"ChangeConfiguration"}
    assert calls and {c[2] for c in calls} == {"ChangeConfiguration"}
    await first.stream.aclose()
    await second.stream.aclose()


async def test_a_silent_station_holds_its_settings_place_for_one_call_timeout(
        nursery, tmp_path, monkeypatch) -> None:
    # Its seven calls would each wait call_timeout in turn; the others wait for one.
    monkeypatch.setattr(policy, "SETTINGS_AT_ONCE", 1)
    csms = await start_in_process(nursery, tmp_path, budget_policy=True, call_timeout=0.5)
    await register(csms, "MUTE-1")
    await register(csms, "TALK-1")
    mute = await _booted(csms, "MUTE-1")
    first = await mute.next_message()
    assert first[2] == "ChangeConfiguration"  # never answered
    started = trio.current_time()
    talker = await _booted(csms, "TALK-1")
    call = await talker.next_message(timeout=2.0)
    assert call[2] == "ChangeConfiguration"
    assert trio.current_time() - started < 1.5
    await mute.stream.aclose()
    await talker.stream.aclose()


async def test_a_station_waiting_its_turn_holds_no_task_and_may_leave(
        nursery, tmp_path, monkeypatch) -> None:
    # Stations waiting for their settings are queue entries, not tasks (a waiting task is
    # about 5 KiB that a burst left as holes in the heap); one that leaves before its turn
    # gets nothing and takes no place, and the station after it is served.
    monkeypatch.setattr(policy, "SETTINGS_AT_ONCE", 1)
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    for station_id in ("TURN-1", "TURN-2", "TURN-3"):
        await register(csms, station_id)
    first = await _booted(csms, "TURN-1")
    call = await first.next_message()
    assert call[2] == "ChangeConfiguration"
    leaving = await _booted(csms, "TURN-2")
    last = await _booted(csms, "TURN-3")
    assert await last.silent_for(0.3) == []
    side = csms.server.listener.side_nursery

    def beside() -> list[str]:
        # The connections themselves and the accept loop run there too.
        return sorted(t.name.rpartition(".")[2] for t in side.child_tasks
                      if not t.name.endswith(("_guarded", "_accept_loop")))

    # TURN-1's settings and the task that hands out the turns; none for the two waiting.
    assert beside() == ["_dispatch", "_guard_side"]
    await leaving.stream.aclose()
    with trio.fail_after(5):
        while "TURN-2" in csms.server.connections:
            await trio.sleep(0.02)
    await first.answer(call)
    with trio.fail_after(10):
        await calls_until_quiet(first)
        calls = await calls_until_quiet(last)
    assert calls and {c[2] for c in calls} == {"ChangeConfiguration"}
    assert query(csms, "SELECT count(*) FROM command WHERE station_id = 'TURN-2'") == [(0,)]
    # Settled: no side task is left, and no connection keeps a scope for one.
    with trio.fail_after(2):
        while beside():
            await trio.sleep(0.02)
    assert all(c._helper is None for c in csms.server.connections.values())
    await first.stream.aclose()
    await last.stream.aclose()


async def test_what_follows_the_settings_waits_for_a_queued_station_s_turn(
        nursery, tmp_path, monkeypatch) -> None:
    # The server's next step after the settings (a password rotation, which may make the
    # station reconnect) runs once they are answered, also for a station that was queued.
    monkeypatch.setattr(policy, "SETTINGS_AT_ONCE", 1)
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    ran: list[tuple[str, int]] = []

    async def after(connection, login) -> None:
        answered = query(csms, "SELECT count(*) FROM command WHERE station_id = "
                               f"'{connection.station_id}' AND status = 'answered'")
        ran.append((connection.station_id, answered[0][0]))

    monkeypatch.setattr(csms.server.rotation, "on_accepted", after)
    await register(csms, "NEXT-1")
    await register(csms, "NEXT-2")
    first = await _booted(csms, "NEXT-1")
    call = await first.next_message()
    second = await _booted(csms, "NEXT-2")
    assert await second.silent_for(0.3) == []
    assert ran == []
    await first.answer(call)
    with trio.fail_after(10):
        rest = await calls_until_quiet(first)
        calls = await calls_until_quiet(second)
    assert ran == [("NEXT-1", 1 + len(rest)), ("NEXT-2", len(calls))]
    await first.stream.aclose()
    await second.stream.aclose()


async def test_a_queued_station_waits_for_the_boots_no_longer_than_its_bound(
        nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True,
                                  budget_policy_boots_first=0.5)
    await register(csms, "BOUND-1")
    # A handshake that never finishes keeps the server busy throughout.
    pending = await trio.open_tcp_stream("127.0.0.1", csms.port)
    with trio.fail_after(2):
        while csms.server.listener.limits.handshaking == 0:
            await trio.sleep(0.01)
    station = await _booted(csms, "BOUND-1")
    booted = trio.current_time()
    call = await station.next_message(timeout=3.0)
    assert call[2] == "ChangeConfiguration"
    assert 0.4 < trio.current_time() - booted < 2.0
    assert csms.server.boots_first.waited == 1
    await station.stream.aclose()
    await pending.aclose()

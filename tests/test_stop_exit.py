"""The stop's fast exit (`lite-csms serve`): once every station has had its 1001 and its time
to answer, the stations still connected are ended in the books only (offline, their traffic
counted) and the process exits without ending their connections one by one. Everything must
be durable, and the store closed, before the exit hook is called."""

from __future__ import annotations

import logging
import sqlite3
import struct

import pytest
import trio

from lite_csms.budget.names import CONTROL, TEARDOWN
from lite_csms.db.models import Station
from lite_csms.db.writer import WriterClosed
from tests import rawws
from tests.conftest import start_in_process
from tests.test_server import register
from tests.test_shutdown import _answer_going_away, booted_station, records


async def _hold(stream: trio.SocketStream, codes: list[int | None]) -> None:
    """A station that reads the 1001 (its code noted in `codes`) and never answers: left
    open for the exit. The exit hook returns in these tests, so the usual end follows."""
    opcode, payload = await rawws.read_frame(stream, bytearray())
    codes.append(struct.unpack("!H", payload[:2])[0] if opcode == 8 else None)
    with trio.fail_after(5):
        while await stream.receive_some(4096):
            pass


async def test_exit_hook_sees_every_station_offline_with_its_traffic(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    ids = ["ANS-1", "SIL-1", "SIL-2"]
    codes: list[int | None] = []
    silent: list[int | None] = []
    seen: dict[str, object] = {}

    async with trio.open_nursery() as outside:
        async with trio.open_nursery() as nursery:
            csms = await start_in_process(nursery, tmp_path)
            server = csms.server
            for sid in ids:
                await register(csms, sid)
            streams = [await booted_station(csms.port, sid) for sid in ids]
            database = tmp_path / "csms.sqlite3"

            def hook() -> None:
                # What the CLI's os._exit would leave: read with a connection of our own.
                with sqlite3.connect(database) as conn:
                    seen["online"] = conn.execute(
                        "SELECT count(*) FROM station WHERE online").fetchone()[0]
                    seen["last_seen"] = conn.execute(
                        "SELECT count(*) FROM station WHERE last_seen_at IS NOT NULL"
                    ).fetchone()[0]
                    seen["connections"] = dict(conn.execute(
                        "SELECT station_id, ip_bytes_out FROM traffic_connection"))
                    seen["flushed"] = conn.execute(
                        "SELECT count(*) FROM traffic_flush").fetchone()[0]
                    seen["job"] = conn.execute(
                        "SELECT count(*) FROM station WHERE id = 'JOB-1'").fetchone()[0]
                seen["silent_before"] = list(silent)

            server.exit_when_durable = hook
            outside.start_soon(_answer_going_away, streams[0], codes, True)
            outside.start_soon(_hold, streams[1], silent)
            outside.start_soon(_hold, streams[2], silent)
            server.stop()
            # A store job queued while the stations are told (a StopTransaction being
            # committed): it must be committed before the exit.
            await trio.sleep(0.1)
            await server.store.run(lambda: Station.create(id="JOB-1", registration="pending"))
    assert codes == [1001] and silent == [1001, 1001]
    assert seen["silent_before"] == [1001, 1001]  # the 1001s went out before the exit
    assert seen["online"] == 0 and seen["last_seen"] == 3 and seen["job"] == 1
    # Every connection's row, the two left open included, with our close frame counted.
    connections = seen["connections"]
    assert isinstance(connections, dict) and sorted(connections) == ids
    assert all(out > 0 for out in connections.values())
    assert seen["flushed"] == 1
    summary = records(caplog, "left open for the exit")
    assert len(summary) == 1 and "1 answered the close, 2 left open" in summary[0].message
    try:
        await server.store.run(lambda: None)
    except WriterClosed:
        pass
    else:
        raise AssertionError("the store must be closed before the exit hook")


@pytest.mark.parametrize("early_fails", [False, True])
async def test_exit_in_chunks_counts_every_byte_once(tmp_path, monkeypatch, early_fails) -> None:
    """The fast exit queues what ended connections leave, and the stations it ends in the
    books, in chunks while it works (here every 3 stations). Whatever the chunks, and even
    when one chunk's job fails, each station's hourly rows add up to its connection's row,
    nothing is split off as (teardown), and every station ends offline."""
    from lite_csms.budget import counters
    from lite_csms.net import server as server_module

    monkeypatch.setattr(server_module, "STOP_WRITE_AT_LEAST", 3)
    monkeypatch.setattr(server_module, "LEAVE_OPEN_CHUNK", 3)
    if early_fails:
        real = counters.add_connections
        calls = []

        def fail_first(closed, **options):
            if closed and not calls:  # the first early chunk of ended connections
                calls.append(len(closed))
                raise OSError("disk full")
            real(closed, **options)

        monkeypatch.setattr(counters, "add_connections", fail_first)
    booted = [f"BOOT-{n}" for n in range(4)]
    answering = [f"ANS-{n}" for n in range(8)]
    silent = [f"SIL-{n}" for n in range(7)]
    seen: dict[str, object] = {}
    codes: list[int | None] = []

    async with trio.open_nursery() as outside:
        async with trio.open_nursery() as nursery:
            csms = await start_in_process(nursery, tmp_path)
            server = csms.server
            await server.store.run(lambda: Station.insert_many(
                [{"id": sid, "registration": "accepted"} for sid in answering + silent]
            ).execute())
            for sid in booted:
                await register(csms, sid)
            streams = {sid: await booted_station(csms.port, sid) for sid in booted}
            for sid in answering + silent:
                stream, response = await rawws.connect(csms.port, f"/ocpp/{sid}")
                assert response.startswith(b"HTTP/1.1 101"), response
                streams[sid] = stream
            with trio.fail_after(5):
                while len(server.connections) < len(streams):
                    await trio.sleep(0.01)
            database = tmp_path / "csms.sqlite3"

            def hook() -> None:
                with sqlite3.connect(database) as conn:
                    seen["online"] = conn.execute(
                        "SELECT count(*) FROM station WHERE online").fetchone()[0]
                    seen["hourly"] = {
                        (sid, d): total for sid, d, total in conn.execute(
                            "SELECT station_id, direction, sum(bytes) FROM traffic_counter "
                            "WHERE layer = 'ip' GROUP BY station_id, direction")}
                    seen["connections"] = {
                        sid: (ip_in, ip_out) for sid, ip_in, ip_out in conn.execute(
                            "SELECT station_id, ip_bytes_in, ip_bytes_out "
                            "FROM traffic_connection")}
                    seen["actions"] = {a for (a,) in conn.execute(
                        "SELECT DISTINCT action FROM traffic_counter")}

            server.exit_when_durable = hook
            for sid in booted + answering:
                outside.start_soon(_answer_going_away, streams[sid], codes, True)
            for sid in silent:
                outside.start_soon(_hold, streams[sid], [])
            server.stop()
    everyone = booted + answering + silent
    assert codes == [1001] * len(booted + answering)
    assert seen["online"] == 0
    connections = seen["connections"]
    assert isinstance(connections, dict) and sorted(connections) == sorted(everyone)
    hourly = seen["hourly"]
    assert isinstance(hourly, dict)
    for sid, (ip_in, ip_out) in connections.items():
        assert (hourly[sid, "in"], hourly[sid, "out"]) == (ip_in, ip_out), sid
        assert ip_out > 0
    actions = seen["actions"]
    assert isinstance(actions, set) and TEARDOWN not in actions
    assert CONTROL in actions and "BootNotification" in actions
    if early_fails:
        assert calls and calls[0] < len(everyone)  # a chunk failed, its rows written later


async def test_exit_window_ends_once_every_station_has_answered(tmp_path, caplog) -> None:
    """Idle stations that answer the 1001 are counted as they answer, their readers wait
    for the exit (which reads the answers and ends them in the books), and the window ends
    before its 1 s: there is no one left to wait for."""
    from lite_csms.net.server import GOING_AWAY_TIMEOUT

    caplog.set_level(logging.INFO)
    ids = [f"FAST-{n}" for n in range(5)]
    codes: list[int | None] = []
    seen: dict[str, object] = {}
    async with trio.open_nursery() as outside:
        async with trio.open_nursery() as nursery:
            csms = await start_in_process(nursery, tmp_path)
            server = csms.server
            for sid in ids:
                await register(csms, sid)
            streams = [await booted_station(csms.port, sid) for sid in ids]

            def hook() -> None:
                seen["at"] = trio.current_time()
                # Every answered connection is still there for the exit, its task waiting.
                seen["running"] = sum(1 for c in connections if not c.stopped)

            server.exit_when_durable = hook
            connections = list(server.connections.values())
            for stream in streams:
                outside.start_soon(_answer_going_away, stream, codes, True)
            started = trio.current_time()
            server.stop()
    assert codes == [1001] * len(ids)
    assert seen["running"] == len(ids)
    assert isinstance(seen["at"], float) and seen["at"] - started < GOING_AWAY_TIMEOUT
    summary = records(caplog, "left open for the exit")
    assert len(summary) == 1 and "5 answered the close, 0 left open" in summary[0].message
    with sqlite3.connect(tmp_path / "csms.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM station WHERE online").fetchone()[0] == 0
        assert conn.execute("SELECT count(DISTINCT station_id) FROM traffic_connection"
                            ).fetchone()[0] == len(ids)

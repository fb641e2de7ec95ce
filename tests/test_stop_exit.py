"""The stop's fast exit (`lite-csms serve`): once every station has had its 1001 and its time
to answer, the stations still connected are ended in the books only (offline, their traffic
counted) and the process exits without ending their connections one by one. Everything must
be durable, and the store closed, before the exit hook is called."""

from __future__ import annotations

import logging
import sqlite3
import struct

import trio

from lite_csms.db.models import Station
from lite_csms.db.writer import WriterClosed
from tests import rawws
from tests.conftest import start_in_process
from tests.test_server import register
from tests.test_shutdown import _answer_going_away, booted_station, records


async def test_exit_hook_sees_every_station_offline_with_its_traffic(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    ids = ["ANS-1", "SIL-1", "SIL-2"]
    codes: list[int | None] = []
    silent: list[int | None] = []
    seen: dict[str, object] = {}

    async def hold(stream: trio.SocketStream) -> None:
        # Reads the 1001 and never answers: left open for the exit.
        opcode, payload = await rawws.read_frame(stream, bytearray())
        silent.append(struct.unpack("!H", payload[:2])[0] if opcode == 8 else None)
        with trio.fail_after(5):  # the hook returns here, so the usual end follows
            while await stream.receive_some(4096):
                pass

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
            outside.start_soon(hold, streams[1])
            outside.start_soon(hold, streams[2])
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

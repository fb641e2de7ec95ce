"""How connections end, and what the log says about it.

Shutdown (SIGTERM, SIGINT, or the server task cancelled) closes every station with 1001 Going
Away within a bounded time; an orderly close (1000, 1001) is logged at INFO, any other end at
WARNING; a port probe is logged with the peer's address.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sqlite3
import struct
import time
from pathlib import Path

import pytest
import trio

from lite_csms.db.models import Station
from tests import rawws
from tests.conftest import start_csms_process, start_in_process, stop_csms_process
from tests.test_server import BOOT_16, register


async def booted_station(port: int, station_id: str) -> trio.SocketStream:
    stream, response = await rawws.connect(port, f"/ocpp/{station_id}")
    assert response.startswith(b"HTTP/1.1 101"), response
    await stream.send_all(rawws.frame(1, json.dumps(
        [2, "b", "BootNotification", BOOT_16]).encode()))
    buffer = bytearray()
    with trio.fail_after(5):
        opcode, payload = await rawws.read_frame(stream, buffer)
    assert opcode == 1 and json.loads(payload)[2]["status"] == "Accepted"
    return stream


def records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("lite_csms") and text in r.message]


async def test_cancelled_server_closes_every_station_with_1001(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    async with trio.open_nursery() as nursery:
        csms = await start_in_process(nursery, tmp_path)
        for station_id in ("SD-1", "SD-2"):
            await register(csms, station_id)
        streams = [await booted_station(csms.port, sid) for sid in ("SD-1", "SD-2")]
        started = trio.current_time()
        nursery.cancel_scope.cancel()
    assert trio.current_time() - started < 3
    for stream in streams:
        assert await rawws.close_code(stream) == 1001
    goodbyes = records(caplog, "disconnected (1001 server shutting down)")
    assert len(goodbyes) == 2 and all(r.levelno == logging.INFO for r in goodbyes)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_closes_every_station_with_1001_and_exits(tmp_path: Path, signum) -> None:
    csms = start_csms_process(tmp_path)
    try:
        assert csms.cli("station", "add", "SD-3", "--no-password").returncode == 0
        stream = await booted_station(csms.port, "SD-3")
        started = time.monotonic()
        csms.process.send_signal(signum)
        assert await rawws.close_code(stream) == 1001
        assert csms.process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        log = csms.log()
        # One summary line for the stop; the station's own line is at DEBUG.
        assert "1001 sent to 1 stations" in log
        assert "SD-3: disconnected" not in log
        assert "Traceback" not in log
        listing = json.loads(csms.cli("station", "list", "--json").stdout)
        assert [(s["id"], s["online"]) for s in listing] == [("SD-3", False)]
    finally:
        if csms.process.poll() is None:
            stop_csms_process(csms)


async def test_normal_close_is_info_and_abnormal_is_warning(nursery, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    csms = await start_in_process(nursery, tmp_path)
    await register(csms, "SD-4")
    # A Heartbeat and the close in one write: our answer meets a closed connection.
    stream, _ = await rawws.connect(csms.port, "/ocpp/SD-4")
    await stream.send_all(
        rawws.frame(1, json.dumps([2, "h", "Heartbeat", {}]).encode())
        + rawws.frame(8, struct.pack("!H", 1000)))
    assert await rawws.close_code(stream) == 1000
    with trio.fail_after(5):
        while not records(caplog, "SD-4: disconnected"):
            await trio.sleep(0.02)
    await trio.sleep(0.1)
    closed = records(caplog, "SD-4: disconnected")
    assert [(r.levelno, r.message) for r in closed] == [
        (logging.INFO, "SD-4: disconnected (closed 1000)")]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    # The TCP connection dropped without a close frame: that is worth a warning.
    stream, _ = await rawws.connect(csms.port, "/ocpp/SD-4")
    await stream.aclose()
    with trio.fail_after(5):
        while not records(caplog, "SD-4: disconnected (closed 1006"):
            await trio.sleep(0.02)
    assert records(caplog, "SD-4: disconnected (closed 1006")[0].levelno == logging.WARNING


async def test_port_probe_is_logged_with_the_peer_address(nursery, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    csms = await start_in_process(nursery, tmp_path)
    probe = await trio.open_tcp_stream("127.0.0.1", csms.port)
    local_port = probe.socket.getsockname()[1]
    await probe.aclose()
    with trio.fail_after(5):
        while not records(caplog, "did not complete"):
            await trio.sleep(0.02)
    assert [r.message for r in records(caplog, "did not complete")] == [
        f"handshake from 127.0.0.1:{local_port} did not complete"]
    assert not records(caplog, "object at 0x")


async def _answer_going_away(stream: trio.SocketStream, codes: list[int | None],
                             answer: bool) -> None:
    """One station: read until the close frame, note its code, echo it if `answer`."""
    buffer = bytearray()
    code = None
    try:
        while (received := await rawws.read_frame(stream, buffer)) is not None:
            opcode, payload = received
            if opcode == 8:
                code = struct.unpack("!H", payload[:2])[0]
                if answer:
                    await stream.send_all(rawws.frame(8, payload[:2]))
                break
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    codes.append(code)
    await stream.aclose()


async def test_stop_closes_hundreds_of_stations_with_1001_at_once(tmp_path, caplog) -> None:
    """300 stations, a third of which never answer the close: every one gets 1001, the
    stop ends about one GOING_AWAY_TIMEOUT after it began (not one per station), and all
    stations are written offline in one store job, not one each."""
    caplog.set_level(logging.DEBUG, logger="lite_csms.net")
    count = 300
    ids = [f"GA-{n:03d}" for n in range(count)]
    codes: list[int | None] = []
    async with trio.open_nursery() as outside:
        async with trio.open_nursery() as nursery:
            csms = await start_in_process(nursery, tmp_path)
            await csms.server.store.run(lambda: Station.insert_many(
                [{"id": sid, "registration": "accepted"} for sid in ids]).execute())
            streams: list[trio.SocketStream] = []
            limiter = trio.CapacityLimiter(50)

            async def connect(sid: str) -> None:
                async with limiter:
                    stream, response = await rawws.connect(csms.port, f"/ocpp/{sid}")
                assert response.startswith(b"HTTP/1.1 101"), response
                streams.append(stream)

            async with trio.open_nursery() as connecting:
                for sid in ids:
                    connecting.start_soon(connect, sid)
            with trio.fail_after(10):
                while len(csms.server.connections) < count:
                    await trio.sleep(0.02)
            for n, stream in enumerate(streams):
                outside.start_soon(_answer_going_away, stream, codes, n % 3 != 0)
            # Every connection's own "online" job is committed before the count starts.
            await csms.server.store.run(lambda: None)
            jobs = csms.server.store.jobs
            started = trio.current_time()
            csms.server.stop()
        took = trio.current_time() - started
    assert codes == [1001] * count
    # One GOING_AWAY_TIMEOUT (1 s) for the silent third, plus the teardown; 10 s before.
    assert took < 1.0 + 3.0, took
    # The offline state of all 300 and the traffic flush: two jobs (one more if a periodic
    # job falls in), not 300 more.
    assert csms.server.store.jobs - jobs <= 3
    with sqlite3.connect(tmp_path / "csms.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM station WHERE online").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM station WHERE last_seen_at IS NOT NULL"
                            ).fetchone()[0] == count
    # A line per station at DEBUG, one summary at INFO (10,000 INFO lines cost a tenth of
    # the stop's CPU).
    goodbyes = records(caplog, "disconnected (1001 server shutting down)")
    assert len(goodbyes) == count and {r.levelno for r in goodbyes} == {logging.DEBUG}
    summary = records(caplog, f"1001 sent to {count} stations")
    assert len(summary) == 1 and summary[0].levelno == logging.INFO
    answered, cut_off, cancelled = (int(n) for n in re.findall(
        r"(\d+) answered the close, (\d+) cut off, (\d+) cancelled", summary[0].message)[0])
    assert answered + cut_off + cancelled == count


async def test_stop_cuts_off_stations_that_hold_the_connection_without_answering(
        tmp_path, caplog) -> None:
    """A station that reads the 1001 but neither answers nor closes is cut off after
    GOING_AWAY_TIMEOUT: its TCP connection is shut (it reads the end), its connection ends
    without a cancellation, and it is written offline with the others."""
    caplog.set_level(logging.INFO)
    ids = ["CUT-1", "CUT-2", "ANS-1"]
    silent: list[tuple[int | None, bool]] = []
    codes: list[int | None] = []

    async def hold(stream: trio.SocketStream) -> None:
        buffer = bytearray()
        opcode, payload = await rawws.read_frame(stream, buffer)
        code = struct.unpack("!H", payload[:2])[0] if opcode == 8 else None
        with trio.fail_after(5):  # no answer from us: the server must end it
            ended = await stream.receive_some(4096) == b""
        silent.append((code, ended))

    async with trio.open_nursery() as outside:
        async with trio.open_nursery() as nursery:
            csms = await start_in_process(nursery, tmp_path)
            for sid in ids:
                await register(csms, sid)
            streams = [await booted_station(csms.port, sid) for sid in ids]
            outside.start_soon(hold, streams[0])
            outside.start_soon(hold, streams[1])
            outside.start_soon(_answer_going_away, streams[2], codes, True)
            started = trio.current_time()
            csms.server.stop()
        took = trio.current_time() - started
    assert silent == [(1001, True), (1001, True)] and codes == [1001]
    assert took < 1.0 + 2.0, took
    summary = records(caplog, "1001 sent to 3 stations")
    assert len(summary) == 1 and "1 answered the close, 2 cut off, 0 cancelled" in (
        summary[0].message), summary[0].message
    with sqlite3.connect(tmp_path / "csms.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM station WHERE online").fetchone()[0] == 0


async def test_stop_writes_what_ended_connections_leave_in_chunks(tmp_path, caplog,
                                                                  monkeypatch) -> None:
    """While the others end, the offline state and traffic of ended connections are written
    in chunks (10,000 stations: the writer thread works beside the unwinding); the chunks
    and the final write together leave every station offline with its connection's row."""
    from lite_csms.net import server as server_module

    monkeypatch.setattr(server_module, "STOP_WRITE_AT_LEAST", 1)
    monkeypatch.setattr(server_module, "STOP_WRITE_EVERY", 0.001)
    caplog.set_level(logging.INFO)
    count = 40
    ids = [f"CH-{n:02d}" for n in range(count)]
    codes: list[int | None] = []
    async with trio.open_nursery() as outside:
        async with trio.open_nursery() as nursery:
            csms = await start_in_process(nursery, tmp_path)
            await csms.server.store.run(lambda: Station.insert_many(
                [{"id": sid, "registration": "accepted"} for sid in ids]).execute())
            streams = []
            for sid in ids:
                stream, response = await rawws.connect(csms.port, f"/ocpp/{sid}")
                assert response.startswith(b"HTTP/1.1 101"), response
                streams.append(stream)
            with trio.fail_after(10):
                while len(csms.server.connections) < count:
                    await trio.sleep(0.02)
            for n, stream in enumerate(streams):
                # A few at a time, so that some end while others are still open.
                outside.start_soon(_answer_later, stream, codes, n * 0.01)
            csms.server.stop()
    assert codes == [1001] * count
    summary = records(caplog, "stations written offline")
    assert len(summary) == 1 and summary[0].message.startswith(f"stopped: {count} stations")
    early = int(re.findall(r"\((\d+) of them while", summary[0].message)[0])
    assert 0 < early <= count, summary[0].message
    with sqlite3.connect(tmp_path / "csms.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM station WHERE online").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM station WHERE last_seen_at IS NOT NULL"
                            ).fetchone()[0] == count
        assert conn.execute("SELECT count(DISTINCT station_id) FROM traffic_connection"
                            ).fetchone()[0] == count
        flushed = conn.execute("SELECT count(*) FROM traffic_flush").fetchone()[0]
    assert flushed == 1


async def _answer_later(stream: trio.SocketStream, codes: list[int | None], delay: float
                        ) -> None:
    await trio.sleep(delay)
    await _answer_going_away(stream, codes, True)

"""Connection caps and the descriptor limit, over real sockets (docs/SECURITY.md, "Limits")."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from lite_csms.db.database import open_database
from lite_csms.db.models import Station
from lite_csms.net import limits
from lite_csms.net.ports import read_ports_file
from tests import rawws
from tests.conftest import REPO, CsmsInProcess, start_in_process

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "Home-7"}


async def call(stream: trio.SocketStream, message: list, timeout: float = 5.0) -> list:
    await stream.send_all(rawws.frame(1, json.dumps(message).encode()))
    buffer = bytearray()
    with trio.fail_after(timeout):
        while True:
            received = await rawws.read_frame(stream, buffer)
            assert received is not None, "the server closed the station's connection"
            if received[0] == 1:
                return json.loads(received[1])


async def station(port: int, station_id: str) -> trio.SocketStream:
    stream, response = await rawws.connect(port, f"/ocpp/{station_id}")
    assert response.startswith(b"HTTP/1.1 101"), response
    assert (await call(stream, [2, "b", "BootNotification", BOOT]))[2]["status"] == "Accepted"
    return stream


async def connect_once_free(port: int, station_id: str, timeout: float = 5.0
                            ) -> trio.SocketStream:
    """Retry until the server admits the station again (a refused try is reset or 503)."""
    with trio.fail_after(timeout):
        while True:
            try:
                stream, response = await rawws.connect(port, f"/ocpp/{station_id}")
            except (trio.BrokenResourceError, OSError):
                await trio.sleep(0.1)
                continue
            if response.startswith(b"HTTP/1.1 101"):
                return stream
            await stream.aclose()
            await trio.sleep(0.1)


async def answer_before_request(port: int, source: str = "127.0.0.1") -> bytes:
    """What the server says to a new connection before we send anything (b"" if it only
    closes); a connection it admits says nothing and is closed by us after 0.3 s."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    received = b""
    with trio.move_on_after(0.3):
        while chunk := await stream.receive_some(4096):
            received += chunk
        received = received or b"closed"
    await stream.aclose()
    return received


async def test_caps_per_source_and_on_handshakes_refuse_with_503_before_the_request(
        nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "lite_csms.net")
    csms = await start_in_process(nursery, tmp_path, max_connections_per_source=3,
                                  max_handshakes=4)
    await csms.server.store.run(lambda: Station.create(id="CS-1", registration="accepted"))
    served = await station(csms.port, "CS-1")
    idle = [await trio.open_tcp_stream("127.0.0.1", csms.port) for _ in range(2)]
    # The fourth connection from 127.0.0.1: its two idle sockets hold its share of the
    # handshakes (half of 4), so it is refused at once, its request never read.
    refused = await answer_before_request(csms.port)
    assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), refused
    assert b"\r\nRetry-After: " in refused
    # Another address is admitted, and counts as a handshake.
    assert await answer_before_request(csms.port, "127.0.0.2") == b""
    more = [await trio.open_tcp_stream("127.0.0.1", csms.port, local_address=f"127.0.0.{n}")
            for n in (3, 4)]
    # Four handshakes run (two from .1, two from .3/.4): the handshake cap refuses a fifth.
    assert (await answer_before_request(csms.port, "127.0.0.5")).startswith(b"HTTP/1.1 503")
    # The station already served is still served.
    assert (await call(served, [2, "h", "Heartbeat", {}]))[:2] == [3, "h"]
    for stream in idle + more:
        await stream.aclose()
    limits_now = csms.server.listener.limits
    with trio.fail_after(5):
        while limits_now.handshaking or limits_now.open > 1:
            await trio.sleep(0.02)
    assert await answer_before_request(csms.port) == b""
    # A flood of refusals is one log line, not one per connection.
    for _ in range(10):
        await trio.open_tcp_stream("127.0.0.1", csms.port, local_address="127.0.0.9")
    assert caplog.text.count("refused: ") <= 2, caplog.text
    await served.aclose()


def test_an_unlimited_cap_is_held_below_the_descriptor_limit() -> None:
    assert limits.effective_cap(6000, 1024) == 1024 - limits.DESCRIPTOR_RESERVE
    assert limits.effective_cap(100, 1024) == 100
    assert limits.effective_cap(0, 20000) == 20000 - limits.DESCRIPTOR_RESERVE
    assert limits.effective_cap(6000, 10) == 1


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    script = ("import resource\n"
              "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024))\n"
              "from lite_csms.net.limits import raise_descriptor_limit\n"
              "print(*raise_descriptor_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, timeout=30)
    assert done.stdout.split() == ["256", "1024", "1024", "1024"], done.stderr


CHILD = """
import resource, sys
n, reserve = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
from lite_csms.net import limits
limits.DESCRIPTOR_RESERVE = reserve
from lite_csms.cli.main import main
sys.exit(main(sys.argv[3:]))
"""


def start_limited(tmp_path: Path, descriptors: int, reserve: int) -> tuple[
        subprocess.Popen[bytes], int, Path]:
    database = tmp_path / "csms.sqlite3"
    db = open_database(database)
    for sid in ("CS-1", "CS-2"):
        Station.get_or_create(id=sid, defaults={"registration": "accepted"})
    db.close()
    log_path = tmp_path / f"server-{reserve}.log"
    ports_file = tmp_path / f"ports-{reserve}.json"
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(descriptors), str(reserve), "serve", "--host",
         "127.0.0.1", "--port", "0", "--database", str(database), "--admin-port", "0",
         "--ports-file", str(ports_file)],
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT, cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "LITE_CSMS_BUDGET_POLICY": "0",
             "LITE_CSMS_HANDSHAKE_TIMEOUT": "30"},
    )
    deadline = time.monotonic() + 20
    while "serving OCPP-J" not in log_path.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.05)
    return process, read_ports_file(ports_file)["ocpp"][0], log_path


def stop(process: subprocess.Popen[bytes]) -> None:
    # The orderly stop is tested elsewhere; here it would only wait out the idle peers.
    process.kill()
    process.wait()


async def test_a_low_descriptor_limit_caps_connections_and_the_station_keeps_its_link(
        tmp_path: Path) -> None:
    cap = 12
    process, port, log_path = start_limited(tmp_path, limits.DESCRIPTOR_RESERVE + cap,
                                            limits.DESCRIPTOR_RESERVE)
    try:
        served = await station(port, "CS-1")
        idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(cap - 1)]
        await trio.sleep(0.2)
        refused = await answer_before_request(port)
        assert refused.startswith(b"HTTP/1.1 503"), (refused, log_path.read_text())
        assert (await call(served, [2, "h1", "Heartbeat", {}]))[:2] == [3, "h1"]
        for stream in idle[:4]:
            await stream.aclose()
        stream = await connect_once_free(port, "CS-2")
        assert (await call(stream, [2, "b", "BootNotification", BOOT]))[2]["status"] == "Accepted"
        assert (await call(served, [2, "h2", "Heartbeat", {}]))[:2] == [3, "h2"]
        assert "connection from 127.0.0.1" in log_path.read_text()
        assert process.poll() is None
    finally:
        stop(process)


async def test_accept_failing_with_emfile_closes_new_peers_and_serves_the_rest(
        tmp_path: Path) -> None:
    # A reserve of 4 puts the cap beyond the descriptors left: accept() itself fails.
    process, port, log_path = start_limited(tmp_path, 40, 4)
    try:
        served = await station(port, "CS-1")
        # Schemas load on first use, which takes a descriptor (one reason for the reserve):
        # the station's Heartbeat has been seen before the descriptors run out.
        assert (await call(served, [2, "h0", "Heartbeat", {}]))[:2] == [3, "h0"]
        idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(30)]
        shed: list[trio.SocketStream] = []

        async def closed_at_once(stream: trio.SocketStream) -> None:
            if await rawws.closed_by_server(stream, timeout=0.5):
                shed.append(stream)

        async with trio.open_nursery() as reads:
            for stream in idle:
                reads.start_soon(closed_at_once, stream)
        text = log_path.read_text()
        assert shed, text
        assert "accept() failed with EMFILE" in text
        # Rate-limited: one line for the whole burst, no traceback per retry.
        assert text.count("accept() failed") == 1 and "Traceback" not in text, text
        assert (await call(served, [2, "h1", "Heartbeat", {}]))[:2] == [3, "h1"]
        for stream in idle:
            await stream.aclose()
        stream = await connect_once_free(port, "CS-2")
        assert (await call(served, [2, "h2", "Heartbeat", {}]))[:2] == [3, "h2"]
        assert process.poll() is None
    finally:
        stop(process)


async def test_at_the_cap_a_station_may_replace_its_own_connection_but_no_new_one_joins(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    # After a cell outage every old connection is still open: the cap on connected stations
    # must not keep the returning stations out, while it still keeps a new one out.
    csms = await start_in_process(nursery, tmp_path, max_connections=2, max_handshakes=2)
    for sid in ("CS-1", "CS-2", "CS-3"):
        await csms.server.store.run(lambda sid=sid: Station.create(id=sid,
                                                                   registration="accepted"))
    first, second = await station(csms.port, "CS-1"), await station(csms.port, "CS-2")
    stream, response = await rawws.connect(csms.port, "/ocpp/CS-3")
    assert response.startswith(b"HTTP/1.1 503"), response
    assert b"\r\nRetry-After: " in response
    await stream.aclose()
    again = await station(csms.port, "CS-1")  # replaces the silent first one
    assert (await call(again, [2, "h", "Heartbeat", {}]))[:2] == [3, "h"]
    assert csms.server.listener.limits.open <= 3
    for s in (first, second, again):
        await s.aclose()


async def add_stations(csms: CsmsInProcess, ids: list[str]) -> None:
    rows = [{"id": sid, "registration": "accepted"} for sid in ids]
    await csms.server.store.run(lambda: Station.insert_many(rows).execute())


async def upgrade_status(port: int, station_id: str, source: str | None = None
                         ) -> tuple[int, trio.SocketStream]:
    stream, response = await rawws.connect(port, f"/ocpp/{station_id}", source=source)
    return int(response.split()[1]), stream


async def test_idle_sockets_from_one_address_hold_only_its_share_of_the_handshakes(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    csms = await start_in_process(nursery, tmp_path, max_handshakes=40,
                                  max_connections_per_source=40)
    await add_stations(csms, ["CS-NEW"])
    idle = [await trio.open_tcp_stream("127.0.0.1", csms.port, local_address="127.8.0.1")
            for _ in range(40)]
    limits_now = csms.server.listener.limits
    with trio.fail_after(5):
        while limits_now.refused < 20:
            await trio.sleep(0.02)
    # Half the handshake slots stay free for every other address.
    assert limits_now.handshakes_by_source == {"127.8.0.1": 20}
    assert (await answer_before_request(csms.port, "127.8.0.1")).startswith(b"HTTP/1.1 503")
    status, stream = await upgrade_status(csms.port, "CS-NEW", "127.6.0.1")
    assert status == 101
    for s in (*idle, stream):
        await s.aclose()


async def test_stations_back_from_a_cell_outage_replace_their_own_per_source_connections(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    csms = await start_in_process(nursery, tmp_path, max_connections_per_source=10)
    ids = [f"CS-{n}" for n in range(11)]
    await add_stations(csms, ids)
    old = []
    for sid in ids[:8]:
        status, stream = await upgrade_status(csms.port, sid, "127.10.0.1")
        assert status == 101
        old.append(stream)
    # The cell comes back: the old sockets are still open, each station reconnects.
    again = [await upgrade_status(csms.port, sid, "127.10.0.1") for sid in ids[:8]]
    assert [status for status, _ in again] == [101] * 8
    # The cap still holds for stations that are new at this address.
    more = [await upgrade_status(csms.port, sid, "127.10.0.1") for sid in ids[8:]]
    assert [status for status, _ in more] == [101, 101, 503]
    for s in (*old, *(stream for _, stream in again + more)):
        await s.aclose()


async def test_a_burst_of_new_stations_never_overshoots_the_cap_on_connected_stations(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    csms = await start_in_process(nursery, tmp_path, max_connections=5)
    ids = [f"CS-{n}" for n in range(30)]
    await add_stations(csms, ids)
    results: list[tuple[int, trio.SocketStream]] = []

    async def one(sid: str) -> None:
        results.append(await upgrade_status(csms.port, sid))

    with trio.fail_after(10):
        async with trio.open_nursery() as burst:
            for sid in ids:
                burst.start_soon(one, sid)
    statuses = [status for status, _ in results]
    assert statuses.count(101) == 5 and statuses.count(503) == 25, statuses
    for _, stream in results:
        await stream.aclose()

"""A reconnect storm of a few hundred stations must fully settle (issue 11 item 8).

300 stations with Basic auth (the passwords `lite-csms station add` generates) connect at once
to the in-process server on a real SQLite file,
boot, then all drop at once and come back: half close their sockets, half vanish without a
word (a cell outage: the server hears nothing until the new connection replaces the old one).
Afterwards every station is back with exactly one live connection, and once they all leave
the server holds no more descriptors than before, no socket in CLOSE-WAIT and no handshake
work. tests/test_storm_auth.py covers the KDF cache and the shedding; this covers the
bookkeeping.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import trio

from lite_csms import passwords
from lite_csms.db.models import Station
from lite_csms.net.connection import CLOSE_REPLACED
from tests import rawws
from tests.conftest import CsmsInProcess
from tests.test_storm_auth import wait_until

STATIONS = 300
BOOT = {"chargePointVendor": "Acme", "chargePointModel": "Storm-1"}
CLOSE_WAIT, ESTABLISHED = "08", "01"


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def server_sockets(port: int) -> list[str]:
    """The TCP states (hex, as /proc/net/tcp spells them) of sockets whose local port is the
    server's: the server's side of each connection, whoever holds the other side."""
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                states.append(fields[3])
    return states


def settled(port: int, live: int) -> bool:
    """`live` connections established on the server's side and none left half-closed: a
    socket whose peer has gone is in CLOSE-WAIT until the server closes it, which it must do
    within moments (so a settled storm is waited for, never assumed at one instant)."""
    states = server_sockets(port)
    return states.count(ESTABLISHED) == live and CLOSE_WAIT not in states


async def boot(port: int, station_id: str, password: str) -> trio.SocketStream:
    token = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    stream, response = await rawws.connect(port, f"/ocpp/{station_id}",
                                           headers=(f"Authorization: Basic {token}",))
    assert response.startswith(b"HTTP/1.1 101"), (station_id, response[:80])
    await stream.send_all(rawws.frame(1, json.dumps(
        [2, "b", "BootNotification", BOOT]).encode()))
    received = await rawws.read_frame(stream, bytearray())
    assert received is not None, station_id
    opcode, payload = received
    answer = json.loads(payload)
    assert opcode == 1 and answer[:2] == [3, "b"] and answer[2]["status"] == "Accepted", answer
    return stream


async def boot_all(port: int, stations: dict[str, str]) -> dict[str, trio.SocketStream]:
    streams: dict[str, trio.SocketStream] = {}

    async def one(sid: str, pw: str) -> None:
        streams[sid] = await boot(port, sid, pw)

    async with trio.open_nursery() as nursery:
        for sid, pw in stations.items():
            nursery.start_soon(one, sid, pw)
    return streams


async def test_a_storm_of_300_stations_settles_completely(csms: CsmsInProcess) -> None:
    stations = {f"SETTLE-{i:03d}": passwords.generate() for i in range(STATIONS)}
    rows = [{"id": sid, "password_hash": passwords.hash_generated(pw), "registration": "accepted"}
            for sid, pw in stations.items()]
    await csms.server.store.run(lambda: Station.insert_many(rows).execute())
    server = csms.server
    baseline = open_descriptors()

    with trio.fail_after(30):
        first = await boot_all(csms.port, stations)
    await wait_until(lambda: len(server.connections) == STATIONS, 10)
    old = {sid: server.connections[sid] for sid in stations}

    # All drop at once: half close, half vanish and are replaced by their reconnection.
    names = sorted(stations)
    closers, vanished = names[::2], names[1::2]
    for sid in closers:
        await first[sid].aclose()
    with trio.fail_after(30):
        second = await boot_all(csms.port, stations)

    assert set(server.connections) == set(stations)
    assert all(server.connections[sid] is not old[sid] for sid in stations)
    # Each vanished station's old connection was closed by the server ("replaced"), not kept.
    for sid in vanished:
        assert await rawws.close_code(first[sid]) == CLOSE_REPLACED, sid
        await first[sid].aclose()
    # Exactly one live connection per station: the old ones are gone from the kernel too.
    await wait_until(lambda: settled(csms.port, STATIONS), 10)

    # Everyone leaves: the server lets go of every descriptor and every queued handshake.
    for stream in second.values():
        await stream.aclose()
    await wait_until(lambda: not server.connections, 10)
    await wait_until(lambda: settled(csms.port, 0), 10)
    await wait_until(lambda: open_descriptors() <= baseline, 10)
    kdf = server.kdf.limiter.statistics()
    assert kdf.tasks_waiting == 0 and kdf.borrowed_tokens == 0

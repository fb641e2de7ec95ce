#!/usr/bin/env python3
"""Reconnect storms and a password guesser against `lite-csms serve` (docs/SECURITY.md).

The server runs in a child process, pinned to one core with --cpu as on a 1-vCPU VPS; the
stations run in this process on another core (--client-cpu). Every station is the `ocpp`
package's ChargePoint over `websockets` with HTTP Basic auth (security profile 1), so the
handshake, framing and OCPP answers are checked by third-party code. Phases:

1. cold: --stations stations connect, spread evenly over --spread seconds, and each sends a
   BootNotification; a station is in when it is Accepted.
2. storm: all drop at once and reconnect, spread over --reconnect-spread seconds, each
   sending a Heartbeat; a station is back when the Heartbeat is answered. --drop rst resets
   every TCP connection; --drop silent leaves the old connections open and unread, as after a
   cell outage, so the server must replace each one.
3. guess: --guesses wrong passwords for one station, spread over --guess-seconds, from
   127.0.0.1, while that station logs in with its right password from 127.0.0.2 every 0.5 s.

Stations take the new password the server sends to replace a chosen one (ChangeConfiguration
AuthorizationKey, net/rotation.py): they keep it, answer Accepted and use it from their next
connection. --restart then stops the server after the storm, starts it again on the same
database (an empty credential cache) and runs the cold phase once more ("cold again").

A refused station retries after Retry-After, or after 1-2 s, as chargers do; each attempt
waits at most 30 s for the handshake. Each phase prints the seconds until the last station
was in, the answers by HTTP status, the server's CPU seconds, its peak RSS and descriptors.

    python tools/bench_auth_storm.py --stations 2000 --cpu 0 --client-cpu 1
    python tools/bench_auth_storm.py --stations 5000 --reconnect-spread 10 --cpu 0 \
        --client-cpu 1 --skip-guess
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from websockets.exceptions import InvalidStatus

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HANDSHAKE_WAIT = 30.0


PROFILED = """
import cProfile, runpy, sys, time
sys.argv[0] = "lite_csms"
profile = cProfile.Profile(time.thread_time)
profile.enable()
try:
    runpy.run_module("lite_csms", run_name="__main__")
finally:
    profile.disable()
    profile.dump_stats({out!r})
"""


def prepare(database: Path, count: int, scheme: str) -> dict[str, str]:
    """Stations CS-00000… with a password each. `generated`: what `station add` makes (no KDF
    to check); `chosen`: one scrypt hash shared by all, so each check costs one KDF run as
    a person's password would, without paying N KDF runs here."""
    from lite_csms import passwords
    from lite_csms.db.database import open_database
    from lite_csms.db.models import Station
    open_database(database)
    ids = [f"CS-{i:05d}" for i in range(count)]
    if scheme == "generated":
        stations = {sid: passwords.generate() for sid in ids}
        hashes = {sid: passwords.hash_generated(pw) for sid, pw in stations.items()}
    else:
        shared = base64.b64encode(os.urandom(12)).decode()
        stored = passwords.hash_password(shared)
        stations = dict.fromkeys(ids, shared)
        hashes = dict.fromkeys(ids, stored)
    rows = [{"id": sid, "password_hash": hashes[sid], "registration": "accepted"}
            for sid in ids]
    for start in range(0, len(rows), 500):
        Station.insert_many(rows[start:start + 500]).execute()
    return stations


def basic(sid: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{sid}:{password}".encode()).decode()}


@dataclass
class Phase:
    answers: collections.Counter = field(default_factory=collections.Counter)
    last_in: float = 0.0


class Charger(ChargePoint):
    """A charger that keeps a new AuthorizationKey (hex digits of its password) in `keys`,
    as a charger persists it, before it answers Accepted; it uses it from its next connection.
    """

    def __init__(self, sid: str, ws: websockets.ClientConnection, keys: dict[str, str],
                 rotated: set[str]) -> None:
        super().__init__(sid, ws)
        self._keys, self._rotated = keys, rotated

    @on("ChangeConfiguration")
    def change(self, key: str, value: str) -> call_result.ChangeConfiguration:
        if key != "AuthorizationKey":
            return call_result.ChangeConfiguration(status="NotSupported")
        self._keys[self.id] = bytes.fromhex(value).decode()
        self._rotated.add(self.id)
        return call_result.ChangeConfiguration(status="Accepted")


ROTATED: set[str] = set()


@dataclass
class Link:
    ws: websockets.ClientConnection
    reader: asyncio.Task


async def attempt(port: int, sid: str, password: str, phase: Phase,
                  source: str = "127.0.0.1") -> tuple[websockets.ClientConnection | None,
                                                      float | None]:
    try:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ocpp/{sid}", subprotocols=["ocpp1.6"],
            additional_headers=basic(sid, password), open_timeout=HANDSHAKE_WAIT,
            ping_interval=None, compression=None, proxy=None, local_addr=(source, 0))
    except InvalidStatus as exc:
        phase.answers[exc.response.status_code] += 1
        retry = exc.response.headers.get("Retry-After")
        return None, float(retry) if retry else None
    except (OSError, TimeoutError, websockets.InvalidHandshake):
        phase.answers["no answer"] += 1
        return None, None
    phase.answers[101] += 1
    return ws, None


def source_of(sid: str) -> str:
    """Each station its own loopback address, as stations in the field have their own (the
    server caps connections per source address)."""
    n = int(sid.rsplit("-", 1)[1])
    return f"127.1.{n // 250}.{n % 250 + 1}"


async def station(port: int, sid: str, keys: dict[str, str], delay: float, phase: Phase,
                  boot: bool, started: float) -> Link:
    await asyncio.sleep(delay)
    while True:
        ws, retry = await attempt(port, sid, keys[sid], phase, source_of(sid))
        if ws is None:
            await asyncio.sleep(retry if retry is not None else 1 + random.random())
            continue
        charger = Charger(sid, ws, keys, ROTATED)
        reader = asyncio.create_task(charger.start())
        try:
            if boot:
                result = await charger.call(call.BootNotification(
                    charge_point_model="Bench", charge_point_vendor="lite-csms"))
                assert result.status == "Accepted", result
            else:
                await charger.call(call.Heartbeat())
        except (websockets.ConnectionClosed, TimeoutError) as exc:
            # A charger whose link breaks before its answer starts over.
            phase.answers[f"lost: {type(exc).__name__}"] += 1
            reader.cancel()
            ws.transport.abort()
            await asyncio.sleep(1 + random.random())
            continue
        phase.last_in = max(phase.last_in, time.monotonic() - started)
        return Link(ws, reader)


async def run_phase(name: str, port: int, stations: dict[str, str], spread: float, boot: bool,
                    server: subprocess.Popen) -> list[Link]:
    phase = Phase()
    cpu = cpu_of(server.pid)
    peak = Peak(server.pid)
    sampler = asyncio.create_task(peak.sample())
    started = time.monotonic()
    count = len(stations)
    links = await asyncio.gather(*(
        station(port, sid, stations, spread * n / count, phase, boot, started)
        for n, sid in enumerate(list(stations))))
    sampler.cancel()
    print(f"{name}: {count} in after {phase.last_in:.1f} s, answers {dict(phase.answers)}, "
          f"server CPU {cpu_of(server.pid) - cpu:.1f} s, peak RSS {peak.rss / 1e6:.0f} MB, "
          f"descriptors {fds_of(server.pid)}", flush=True)
    return links


async def drop(links: list[Link], how: str) -> None:
    for link in links:
        link.reader.cancel()
        if how == "rst":
            sock = link.ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            link.ws.transport.abort()
        else:
            # A dead radio: the connection stays open and nothing is read or acknowledged.
            link.ws.transport.pause_reading()


async def until_listening(port: int) -> None:
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await asyncio.sleep(1)  # the probe's own descriptor is released
        return
    raise SystemExit("the server did not listen within 30 s")


class Peak:
    def __init__(self, pid: int) -> None:
        self.pid, self.rss = pid, 0

    async def sample(self) -> None:
        while True:
            self.rss = max(self.rss, rss_of(self.pid))
            await asyncio.sleep(0.25)


def rss_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        raise SystemExit(f"the server (pid {pid}) has exited")
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def fds_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def guess(port: int, stations: dict[str, str], args: argparse.Namespace, pid: int
                ) -> None:
    victim, right = next(iter(stations.items()))
    phase, worst, logins = Phase(), 0.0, 0
    cpu = cpu_of(pid)
    done = asyncio.Event()

    async def wrong(n: int) -> None:
        await asyncio.sleep(args.guess_seconds * n / args.guesses)
        ws, _ = await attempt(port, victim, f"wrong-{n}", phase)
        if ws is not None:
            raise AssertionError("a wrong password got in")

    async def legit() -> None:
        nonlocal worst, logins
        own = Phase()
        while not done.is_set():
            started = time.monotonic()
            ws, _ = await attempt(port, victim, right, own, source="127.0.0.2")
            assert ws is not None, f"the right password was refused: {dict(own.answers)}"
            worst = max(worst, time.monotonic() - started)
            logins += 1
            await ws.close()
            await asyncio.sleep(0.5)

    started = time.monotonic()
    login = asyncio.create_task(legit())
    await asyncio.gather(*(wrong(n) for n in range(args.guesses)))
    done.set()
    await login
    print(f"guess: {args.guesses} wrong in {time.monotonic() - started:.1f} s, answers "
          f"{dict(phase.answers)}, server CPU {cpu_of(pid) - cpu:.1f} s; {logins} right "
          f"logins meanwhile, worst {worst * 1000:.0f} ms", flush=True)


async def start_server(args: argparse.Namespace, tmp: Path, database: Path, run: int
                       ) -> tuple[subprocess.Popen, int]:
    ports_file = tmp / f"ports-{run}.json"
    command = [sys.executable, "-m", "lite_csms", "serve", "--host", "127.0.0.1",
               "--port", "0", "--database", str(database), "--admin-port", "0",
               "--ports-file", str(ports_file)]
    if args.profile:
        # The event loop thread's CPU time: wall time would charge other work on the core to us.
        command[1:3] = ["-c", PROFILED.format(out=f"{args.profile}.{run}")]
    if args.cpu is not None:
        command = ["taskset", "-c", str(args.cpu), *command]
    log = (tmp / f"server-{run}.log").open("wb")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={
        **os.environ, "LITE_CSMS_BUDGET_POLICY": "0", "LITE_CSMS_LOG_LEVEL": "WARNING"})
    from lite_csms.net.ports import read_ports_file
    port = read_ports_file(ports_file, alive=lambda: server.poll() is None)["ocpp"][0]
    await until_listening(port)
    return server, port


async def leave(links: list[Link], server: subprocess.Popen, baseline: int) -> None:
    for link in links:
        link.reader.cancel()
        link.ws.transport.abort()
    left = time.monotonic()
    while fds_of(server.pid) > baseline + 5 and time.monotonic() - left < 120:
        await asyncio.sleep(0.25)
    print(f"after all left: server descriptors {fds_of(server.pid)} (at start {baseline}) "
          f"after {time.monotonic() - left:.1f} s, RSS {rss_of(server.pid) / 1e6:.0f} MB",
          flush=True)


async def until_rotated(count: int, patience: float = 60.0) -> None:
    """Chosen passwords are replaced after each station's boot: wait for the last ones."""
    started = time.monotonic()
    while len(ROTATED) < count and time.monotonic() - started < patience:
        await asyncio.sleep(0.25)
    print(f"rotated: {len(ROTATED)} of {count} stations took a generated password "
          f"({time.monotonic() - started:.1f} s after the last was in)", flush=True)


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp())
    database = tmp / "bench.sqlite3"
    stations = prepare(database, args.stations, args.passwords)
    server, port = await start_server(args, tmp, database, 1)
    try:
        baseline = fds_of(server.pid)
        print(f"{args.stations} stations, {args.passwords} passwords; server log {tmp}",
              flush=True)
        links = await run_phase("cold", port, stations, args.spread, True, server)
        if args.passwords == "chosen":
            await until_rotated(args.stations)
        await drop(links, args.drop)
        links += await run_phase("storm", port, stations, args.reconnect_spread, False, server)
        await leave(links, server, baseline)
        if args.restart:
            server.terminate()
            server.wait()
            server, port = await start_server(args, tmp, database, 2)
            baseline = fds_of(server.pid)
            links = await run_phase("cold again", port, stations, args.spread, True, server)
            await leave(links, server, baseline)
        if not args.skip_guess:
            await guess(port, stations, args, server.pid)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=300)
    parser.add_argument("--passwords", choices=("generated", "chosen"), default="generated")
    parser.add_argument("--spread", type=float, default=10.0,
                        help="seconds over which the cold connects arrive")
    parser.add_argument("--reconnect-spread", type=float, default=1.0,
                        help="seconds over which the reconnects arrive")
    parser.add_argument("--drop", choices=("rst", "silent"), default="silent")
    parser.add_argument("--guesses", type=int, default=300)
    parser.add_argument("--guess-seconds", type=float, default=15.0)
    parser.add_argument("--skip-guess", action="store_true")
    parser.add_argument("--restart", action="store_true",
                        help="after the storm, restart the server and connect cold again")
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this core")
    parser.add_argument("--profile", help="write the server's cProfile statistics here")
    parser.add_argument("--client-cpu", type=int, default=None,
                        help="pin these stations to this core")
    parsed = parser.parse_args()
    if parsed.client_cpu is not None:
        os.sched_setaffinity(0, {parsed.client_cpu})
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parsed))

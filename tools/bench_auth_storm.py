#!/usr/bin/env python3
"""A reconnect storm and a password guesser against `lite-csms serve` (docs/SECURITY.md).

The server runs in a child process (pinned with --cpu, as on a 1-vCPU VPS); stations are
raw WebSocket upgrades with Basic auth, from this process. Phases:
1. cold: --stations stations with scrypt-hashed chosen passwords connect at once;
2. storm: all drop and reconnect at once;
3. guess: --guesses wrong passwords, --parallel at a time, from 127.0.0.1, while one station
   logs in with its right password from 127.0.0.2 every 0.5 s (its worst latency is shown).
A refused client retries after Retry-After (or 1-2 s), as chargers do; a client waits at most
30 s for an answer. Prints seconds until all are in, answers by status and server CPU.

    python tools/bench_auth_storm.py --stations 300 --cpu 0
"""

from __future__ import annotations

import argparse
import base64
import collections
import os
import random
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(database: Path, count: int) -> dict[str, str]:
    from lite_csms import passwords
    from lite_csms.db.database import open_database
    from lite_csms.db.models import Station
    open_database(database)
    stations = {f"CS-{i:05d}": base64.b64encode(os.urandom(15)).decode() for i in range(count)}
    Station.insert_many([{"id": sid, "password_hash": passwords.hash_password(pw),
                          "registration": "accepted"} for sid, pw in stations.items()]).execute()
    return stations


async def upgrade(port: int, sid: str, password: str, source: str = "127.0.0.1"
                  ) -> tuple[int, float | None, trio.SocketStream | None]:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    except OSError:
        return 0, None, None
    token = base64.b64encode(f"{sid}:{password}".encode()).decode()
    request = (f"GET /ocpp/{sid} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
               f"Sec-WebSocket-Protocol: ocpp1.6\r\nAuthorization: Basic {token}\r\n\r\n")
    response = b""
    with trio.move_on_after(30):
        try:
            await stream.send_all(request.encode())
            while b"\r\n\r\n" not in response:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                response += chunk
        except (trio.BrokenResourceError, OSError):
            pass
    status = int(response.split()[1]) if response.startswith(b"HTTP/1.1") else 0
    retry = None
    for line in response.split(b"\r\n"):
        if line.lower().startswith(b"retry-after:"):
            retry = float(line.split(b":")[1])
    if status != 101:
        await stream.aclose()
        return status, retry, None
    return status, retry, stream


async def storm(port: int, stations: dict[str, str], answers: collections.Counter
                ) -> tuple[float, list[trio.SocketStream]]:
    started = trio.current_time()
    open_streams: list[trio.SocketStream] = []

    async def station(sid: str, pw: str) -> None:
        await trio.sleep(random.random())  # within 1 s
        while True:
            status, retry, stream = await upgrade(port, sid, pw)
            answers[status] += 1
            if stream is not None:
                open_streams.append(stream)
                return
            await trio.sleep(retry if retry is not None else 1 + random.random())

    async with trio.open_nursery() as nursery:
        for sid, pw in stations.items():
            nursery.start_soon(station, sid, pw)
    return trio.current_time() - started, open_streams


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp())
    database = tmp / "bench.sqlite3"
    stations = prepare(database, args.stations)
    port = free_port()
    command = [sys.executable, "-m", "lite_csms", "serve", "--host", "127.0.0.1", "--port",
               str(port), "--database", str(database), "--admin-port", "0"]
    if args.cpu is not None:
        command = ["taskset", "-c", str(args.cpu), *command]
    log = (tmp / "server.log").open("wb")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={
        **os.environ, "LITE_CSMS_BUDGET_POLICY": "0", "LITE_CSMS_LOG_LEVEL": "WARNING"})
    try:
        await trio.sleep(3)
        for phase in ("cold", "storm"):
            answers: collections.Counter = collections.Counter()
            cpu = cpu_of(server.pid)
            took, streams = await storm(port, stations, answers)
            print(f"{phase}: {len(stations)} in after {took:.1f} s, answers {dict(answers)}, "
                  f"server CPU {cpu_of(server.pid) - cpu:.1f} s", flush=True)
            for stream in streams:
                await stream.aclose()
            await trio.sleep(2)
        await guess(port, stations, args, server.pid)
    finally:
        server.terminate()
        server.wait()


async def guess(port: int, stations: dict[str, str], args: argparse.Namespace, pid: int
                ) -> None:
    victim, right = next(iter(stations.items()))
    answers: collections.Counter = collections.Counter()
    worst = 0.0
    cpu = cpu_of(pid)
    limit = trio.CapacityLimiter(args.parallel)
    done = trio.Event()

    async def wrong(n: int) -> None:
        async with limit:
            answers[(await upgrade(port, victim, f"wrong-{n}"))[0]] += 1

    async def legit() -> None:
        nonlocal worst
        while not done.is_set():
            started = trio.current_time()
            status, _, stream = await upgrade(port, victim, right, source="127.0.0.2")
            worst = max(worst, trio.current_time() - started)
            assert status == 101, status
            await stream.aclose()
            await trio.sleep(0.5)

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(legit)
        async with trio.open_nursery() as attack:
            for n in range(args.guesses):
                attack.start_soon(wrong, n)
        done.set()
    print(f"guess: {args.guesses} wrong in {trio.current_time() - started:.1f} s, answers "
          f"{dict(answers)}, server CPU {cpu_of(pid) - cpu:.1f} s, right login worst "
          f"{worst * 1000:.0f} ms", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=300)
    parser.add_argument("--guesses", type=int, default=300)
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this core")
    trio.run(main, parser.parse_args())

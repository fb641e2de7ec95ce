#!/usr/bin/env python3
"""Graceful stop with many stations connected, measured from the stations' side.

`lite-csms serve` runs in a child process on a fresh database holding --stations stations
without passwords (made with `lite-csms station import`). --clients processes open one
WebSocket each per station, from loopback addresses 127.2.x.y (at most --per-source per
address, below the server's per-source cap), and, with --boot, send a BootNotification and
wait for Accepted. When every station is connected the server gets SIGTERM. Each station
then reads until its close frame, answers it as RFC 6455 asks (echoes the code), and closes.

Printed: seconds from SIGTERM to the server's exit, to the last close frame received and
to the last connection ended, the close codes received (1001 expected from every station),
and whether the database says every station is offline.

    python tools/bench_stop.py --stations 10000 --clients 2
    python tools/bench_stop.py --stations 2000 --boot
    python tools/bench_stop.py --stations 10000 --boot --settle 5
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import multiprocessing
import os
import resource
import select
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lite_csms.net.ports import read_ports_file

# --profile: the server under cProfile from SIGTERM on (the profile of the stop alone).
PROFILED = """
import cProfile, os, runpy, signal, sys
sys.argv[0] = "lite_csms"
import time
profile = cProfile.Profile(time.thread_time)
def start(signum, frame):
    profile.enable()
    signal.raise_signal(signal.SIGTERM)  # to the server's own handler, installed by now
signal.signal(signal.SIGUSR1, start)
def dump():
    profile.disable()
    profile.dump_stats({out!r})
# `serve` ends with os._exit once the database is closed: the profile is written first.
real_exit = os._exit
def _exit(code):
    dump()
    real_exit(code)
os._exit = _exit
try:
    runpy.run_module("lite_csms", run_name="__main__")
finally:
    dump()
"""

BOOT = json.dumps([2, "b", "BootNotification",
                   {"chargePointVendor": "Bench", "chargePointModel": "Stop"}]).encode()


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    header = (struct.pack("!BB", 0x80 | opcode, 0x80 | n) if n < 126
              else struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Station:
    """One raw WebSocket client: enough to upgrade, boot and take a close."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _need(self, n: int) -> bool:
        while len(self.buffer) < n:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return False
            self.buffer.extend(chunk)
        return True

    async def head(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(4096)
            if not chunk:
                break
            self.buffer.extend(chunk)
        end = self.buffer.find(b"\r\n\r\n") + 4
        head = bytes(self.buffer[:end])
        del self.buffer[:end]
        return head

    async def frame(self) -> tuple[int, bytes] | None:
        if not await self._need(2):
            return None
        opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
        offset = 2
        if length == 126:
            if not await self._need(4):
                return None
            length, offset = struct.unpack("!H", self.buffer[2:4])[0], 4
        elif length == 127:
            if not await self._need(10):
                return None
            length, offset = struct.unpack("!Q", self.buffer[2:10])[0], 10
        if not await self._need(offset + length):
            return None
        payload = bytes(self.buffer[offset:offset + length])
        del self.buffer[:offset + length]
        return opcode, payload


async def open_station(port: int, sid: str, source: str, boot: bool) -> Station:
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    request = (f"GET /ocpp/{sid} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n")
    await stream.send_all(request.encode())
    station = Station(stream)
    head = await station.head()
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"{sid}: {head[:60]!r}")
    if boot:
        await stream.send_all(masked(1, BOOT))
        answer = await station.frame()
        if answer is None or b"Accepted" not in answer[1]:
            raise RuntimeError(f"{sid}: boot answered {answer!r}")
    return station


def await_closes(stations: list[Station], origin: float, out: dict,
                 timeout: float = 30.0) -> None:
    """Every station reads until its close frame, answers it (echoing the code, RFC 6455
    5.5.1), and reads to the server's FIN; when each happened is noted in `out`. One epoll
    loop over plain sockets for the whole process, not a trio task per station: the
    stations share the server's two cores here, and with trio they took about as much CPU
    as the server's stop itself (docs/PERFORMANCE.md, "Graceful stop")."""
    poller = select.epoll()
    # fd: [socket, buffer, close code or None]
    ends: dict[int, list] = {}
    for station in stations:
        sock = socket.socket(fileno=station.stream.socket.detach())
        sock.setblocking(False)
        ends[sock.fileno()] = [sock, bytearray(station.buffer), None]
        poller.register(sock.fileno(), select.EPOLLIN)

    def end(fd: int, code: object) -> None:
        sock = ends.pop(fd)[0]
        poller.unregister(fd)
        sock.close()
        out["ended_at"].append(time.monotonic() - origin)
        out["codes"][str(code) if code is not None else "no close frame"] += 1

    give_up = time.monotonic() + timeout
    while ends and time.monotonic() < give_up:
        for fd, _ in poller.poll(1.0):
            sock, buffer, code = ends[fd]
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                end(fd, code or "reset")
                continue
            if not data:  # the server's FIN
                end(fd, code)
                continue
            buffer.extend(data)
            while code is None and len(buffer) >= 2:
                opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
                if length > 125 or len(buffer) < 2 + length:
                    break  # the server's frames here are short; wait for the rest
                payload = bytes(buffer[2:2 + length])
                del buffer[:2 + length]
                if opcode == 8:
                    out["close_at"].append(time.monotonic() - origin)
                    code = ends[fd][2] = (struct.unpack("!H", payload[:2])[0]
                                          if len(payload) >= 2 else 1005)
                    with contextlib.suppress(OSError):
                        sock.send(masked(8, payload[:2]))
    for fd in list(ends):
        end(fd, ends[fd][2] or "no end")
    poller.close()


def client(index: int, sids: list[str], port: int, per_source: int, boot: bool,
           ready: multiprocessing.Queue, go: multiprocessing.Queue,
           done: multiprocessing.Queue) -> None:
    raise_nofile()

    async def main() -> None:
        stations: list[Station] = []
        limiter = trio.CapacityLimiter(100)

        async def one(n: int, sid: str) -> None:
            # 127.2.<client>.<k>: each address carries at most `per_source` stations.
            k = n // per_source
            source = f"127.2.{index * 16 + k // 250}.{k % 250 + 1}"
            async with limiter:
                for attempt in range(5):
                    try:
                        stations.append(await open_station(port, sid, source, boot))
                        return
                    except (OSError, RuntimeError) as exc:
                        if attempt == 4:
                            raise RuntimeError(f"{sid}: {exc}") from None
                        await trio.sleep(1 + attempt)

        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for n, sid in enumerate(sids):
                nursery.start_soon(one, n, sid)
        ready.put((index, len(stations), time.monotonic() - started))
        return stations

    stations = trio.run(main)
    origin = go.get()
    out: dict = {"close_at": [], "ended_at": [], "codes": collections.Counter()}
    cpu = time.process_time()
    await_closes(stations, origin, out)
    done.put((max(out["close_at"], default=None), max(out["ended_at"], default=None),
              dict(out["codes"]), time.process_time() - cpu))


def process_cpu(pid: int) -> float:
    """User + system CPU seconds a live process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prepare(workdir: Path, count: int) -> tuple[Path, list[str]]:
    database = workdir / "stop.sqlite3"
    sids = [f"ST-{n:05d}" for n in range(count)]
    source = workdir / "stations.csv"
    source.write_text("id,password\n" + "".join(f"{sid},none\n" for sid in sids))
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "lite_csms", "--database", str(database), "station",
                    "import", str(source)], check=True, capture_output=True)
    print(f"imported {count} stations in {time.monotonic() - started:.1f} s")
    return database, sids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--per-source", type=int, default=500)
    parser.add_argument("--boot", action="store_true", help="each station boots first")
    parser.add_argument("--signal", choices=("TERM", "INT"), default="TERM")
    parser.add_argument("--profile", help="write a cProfile of the server's stop here")
    parser.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                        help="a fleet that has been up a while: the server flushes its traffic "
                             "every SECONDS, and the signal comes SECONDS + 1 after the last "
                             "connection, once a flush has written what the connects and "
                             "boots counted (default: the signal 1 s after, nothing flushed)")
    args = parser.parse_args()
    raise_nofile()
    with tempfile.TemporaryDirectory(prefix="bench-stop-") as tmp:
        workdir = Path(tmp)
        database, sids = prepare(workdir, args.stations)
        ports_file = workdir / "ports.json"
        log_path = workdir / "server.log"
        env = {**os.environ, "LITE_CSMS_BUDGET_POLICY": "0",
               "LITE_CSMS_MAX_CONNECTIONS": str(args.stations + 100),
               "LITE_CSMS_MAX_CONNECTIONS_PER_SOURCE": str(args.per_source + 10),
               "LITE_CSMS_HANDSHAKE_TIMEOUT": "60"}
        if args.settle:
            env["LITE_CSMS_TRAFFIC_FLUSH_INTERVAL"] = str(args.settle)
        with log_path.open("wb") as log:
            launch = (["-c", PROFILED.format(out=str(Path(args.profile).resolve()))]
                      if args.profile else ["-m", "lite_csms"])
            server = subprocess.Popen(
                [sys.executable, *launch, "serve", "--host", "127.0.0.1", "--port",
                 "0", "--admin-port", "0", "--database", str(database), "--ports-file",
                 str(ports_file)], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            port = read_ports_file(ports_file, 30, alive=lambda: server.poll() is None)["ocpp"][0]
            ready: multiprocessing.Queue = multiprocessing.Queue()
            done: multiprocessing.Queue = multiprocessing.Queue()
            gos = [multiprocessing.Queue() for _ in range(args.clients)]
            shares = [sids[i::args.clients] for i in range(args.clients)]
            workers = [multiprocessing.Process(target=client, args=(
                i, shares[i], port, args.per_source, args.boot, ready, gos[i], done))
                for i in range(args.clients)]
            for worker in workers:
                worker.start()
            connected = 0
            for _ in workers:
                index, count, seconds = ready.get(timeout=1800)
                connected += count
                print(f"client {index}: {count} stations connected in {seconds:.1f} s")
            time.sleep(1 + args.settle)  # the last connections' store jobs (and a flush)
            cpu_before = process_cpu(server.pid)
            origin = time.monotonic()
            if args.profile:
                # The handler starts the profile, then raises SIGTERM in the server itself.
                server.send_signal(signal.SIGUSR1)
            else:
                server.send_signal(signal.SIGTERM if args.signal == "TERM" else signal.SIGINT)
            for go in gos:
                go.put(origin)
            _, status, usage = os.wait4(server.pid, 0)
            exit_after = time.monotonic() - origin
            server.returncode = os.waitstatus_to_exitcode(status)
            stop_cpu = usage.ru_utime + usage.ru_stime - cpu_before
            codes: collections.Counter = collections.Counter()
            last_close = last_end = stations_cpu = 0.0
            for _ in workers:
                close_at, ended_at, got, spent = done.get(timeout=120)
                stations_cpu += spent
                codes.update(got)
                last_close = max(last_close, close_at or 0.0)
                last_end = max(last_end, ended_at or 0.0)
            for worker in workers:
                worker.join()
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        with sqlite3.connect(database) as conn:
            online = conn.execute("SELECT count(*) FROM station WHERE online").fetchone()[0]
        print(f"stations connected: {connected}; SIG{args.signal} → server exit "
              f"{exit_after:.2f} s (exit code {server.returncode}); last close frame "
              f"{last_close:.2f} s; last connection ended {last_end:.2f} s")
        print(f"close codes received: {dict(codes)}; still online in the database: {online}; "
              f"server CPU from the signal to exit: {stop_cpu:.2f} s; the stations' CPU (the "
              f"generator's, on the same cores): {stations_cpu:.2f} s")
        tail = [line for line in log_path.read_text().splitlines()
                if "Traceback" in line or "ERROR" in line or "stop" in line][:8]
        if tail:
            print("server log:", *tail, sep="\n  ")


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    main()

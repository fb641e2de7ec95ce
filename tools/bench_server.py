"""End-to-end server benchmark: the real `lite-csms serve` over real sockets on 127.0.0.1.

a) Throughput and latency: N stations each send one BootNotification, then Heartbeats (or
   StatusNotifications, which the server commits to SQLite before answering) back to back, one
   outstanding CALL per station as OCPP-J requires, for a fixed duration.
b) Memory: the server's VmRSS with 100 booted, idle stations connected.

The server runs as a child process; this process is the load generator. Both share the
machine's cores, so the figures are for client and server together on one box.

    python tools/bench_server.py [--duration 4] [--clients 1,10,50] [--idle-stations 100]
"""

from __future__ import annotations

import argparse
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench_common
import orjson
import trio
from bench_common import machine_summary, markdown_table
from trio_websocket import WebSocketConnection, open_websocket_url

from lite_csms.db.models import ConnectorStatusChange
from lite_csms.net.ports import read_ports_file

Payload = dict[str, Any]

HOST = "127.0.0.1"
STATION_PREFIX = "BENCH-"
SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 10.0
CONNECT_TIMEOUT = 15.0
CALL_TIMEOUT = 10.0


# ---- OCPP payloads per protocol ---------------------------------------------------------------
def utc_now_text() -> str:
    # Microseconds make every report distinct: the server drops a status report whose
    # timestamp it has already stored as a retransmission, without writing anything.
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Protocol:
    subprotocol: str
    boot: Payload
    status: Callable[[], Payload]

    def payload(self, action: str) -> Payload:
        return self.status() if action == "StatusNotification" else {}


OCPP16 = Protocol(
    "ocpp1.6",
    {"chargePointVendor": "lite-csms", "chargePointModel": "bench"},
    lambda: {"connectorId": 1, "errorCode": "NoError", "status": "Available",
             "timestamp": utc_now_text()},
)
OCPP201 = Protocol(
    "ocpp2.0.1",
    {"reason": "PowerUp", "chargingStation": {"vendorName": "lite-csms", "model": "bench"}},
    lambda: {"timestamp": utc_now_text(), "connectorStatus": "Available", "evseId": 1,
             "connectorId": 1},
)
PROTOCOLS = {p.subprotocol: p for p in (OCPP16, OCPP201)}
ACTIONS = ("Heartbeat", "StatusNotification")


# ---- the server process -----------------------------------------------------------------------
def station_ids(count: int) -> list[str]:
    return [f"{STATION_PREFIX}{n:03d}" for n in range(1, count + 1)]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lite_csms", *args]


def register_stations(database: Path, ids: list[str]) -> None:
    """Through the CLI, as an operator would. One at a time: concurrent `lite-csms` commands
    on one file fail with "database is locked"."""
    for sid in ids:
        done = subprocess.run(
            cli("station", "add", sid, "--no-password", "--database", str(database)),
            capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"station add {sid} failed: {done.stderr.strip()}")


@dataclass(slots=True)
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def url(self, station_id: str) -> str:
        return f"ws://{HOST}:{self.port}/ocpp/{station_id}"

    def rss_kib(self) -> int:
        return bench_common.rss_kib(self.process.pid)

    def cpu_seconds(self) -> float:
        """User + system seconds of every thread (lite-csms's SQLite writer included)."""
        return bench_common.cpu_seconds(self.process.pid)


def log_problems(log_path: Path) -> list[str]:
    """WARNING and ERROR lines: a clean run has none, so any of them puts the figures in doubt."""
    lines = log_path.read_text(errors="replace").splitlines()
    return [line for line in lines if " WARNING " in line or " ERROR " in line]


def filesystem_of(path: Path) -> str:
    """The mount holding `path`: fsync cost, and so the durable-write rate, depends on it."""
    best = ("?", "?")
    best_length = -1
    with open("/proc/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            device, mount_point, fs_type = line.split()[:3]
            inside = str(path).startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) > best_length:
                best, best_length = (fs_type, device), len(mount_point)
    return f"{best[0]} on {best[1]}"


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=SERVER_STOP_TIMEOUT)


@contextmanager
def running_server(database: Path, log_path: Path) -> Iterator[ServerProcess]:
    # Port 0 for OCPP-J and the admin API alike: the kernel picks free ports and the server
    # writes them to a ports file, so a server already on 9000/9001 is no obstacle.
    ports_file = log_path.with_suffix(".ports.json")
    ports_file.unlink(missing_ok=True)
    args = cli("serve", "--host", HOST, "--port", "0", "--admin-port", "0",
               "--database", str(database), "--ports-file", str(ports_file))
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        try:
            ports = read_ports_file(ports_file, SERVER_START_TIMEOUT,
                                    alive=lambda: process.poll() is None)
        except (RuntimeError, TimeoutError):
            raise RuntimeError("server did not start; its log:\n"
                               + log_path.read_text()[-2000:]) from None
        yield ServerProcess(process, ports["ocpp"][0], log_path)
    finally:
        stop(process)


# ---- an OCPP-J station, minimal -------------------------------------------------------------
class CallRefused(Exception):
    pass


@dataclass(slots=True)
class Station:
    ws: WebSocketConnection
    protocol: Protocol
    next_id: int = 1

    async def call(self, action: str, payload: Payload) -> Payload:
        """One CALL and its answer; the caller never has two outstanding (OCPP-J rule)."""
        message_id = str(self.next_id)
        self.next_id += 1
        with trio.fail_after(CALL_TIMEOUT):
            await self.ws.send_message(orjson.dumps([2, message_id, action, payload]).decode())
            reply = orjson.loads(await self.ws.get_message())
        if reply[0] != 3 or reply[1] != message_id:
            raise CallRefused(f"{action}: {reply!r}"[:300])
        return reply[2]

    async def boot(self) -> None:
        answer = await self.call("BootNotification", self.protocol.boot)
        if answer.get("status") != "Accepted":
            raise CallRefused(f"BootNotification answered {answer!r}")


class Countdown:
    """An event that fires once `count` tasks have each called `done`."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.event = trio.Event()
        if count == 0:
            self.event.set()

    def done(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self.event.set()


# ---- a) throughput and latency ----------------------------------------------------------------
@dataclass(slots=True)
class Window:
    """The measured interval: clients start together after all have booted."""

    clients: int
    go: trio.Event = field(default_factory=trio.Event)
    stop_at: float = 0.0
    booted: Countdown = field(init=False)
    finished: Countdown = field(init=False)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.booted = Countdown(self.clients)
        self.finished = Countdown(self.clients)


async def load_client(url: str, protocol: Protocol, action: str, window: Window) -> None:
    try:
        async with open_websocket_url(url, subprotocols=[protocol.subprotocol],
                                      connect_timeout=CONNECT_TIMEOUT) as ws:
            station = Station(ws, protocol)
            await station.boot()
            window.booted.done()
            await window.go.wait()
            while trio.current_time() < window.stop_at:
                started = time.perf_counter()
                try:
                    await station.call(action, protocol.payload(action))
                except CallRefused as exc:
                    window.errors.append(str(exc))
                    continue
                window.latencies.append(time.perf_counter() - started)
            window.finished.done()
    except BaseException:
        # Unblock main if we die before reaching a countdown; the error still propagates.
        window.booted.event.set()
        window.finished.event.set()
        raise


@dataclass(frozen=True, slots=True)
class LoadResult:
    protocol: str
    action: str
    clients: int
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu: float
    client_cpu: float
    errors: int
    rows_written: int | None

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile_ms(sorted_seconds: list[float], fraction: float) -> float:
    if not sorted_seconds:
        return float("nan")
    index = min(len(sorted_seconds) - 1, round(fraction * (len(sorted_seconds) - 1)))
    return sorted_seconds[index] * 1e3


def status_rows(database: Path) -> int:
    table = ConnectorStatusChange._meta.table_name
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


async def measure_load(server: ServerProcess, protocol: Protocol, action: str, clients: int,
                       duration: float) -> tuple[Window, float, float, float]:
    window = Window(clients)
    with trio.fail_after(CONNECT_TIMEOUT + duration + CALL_TIMEOUT + 10):
        async with trio.open_nursery() as nursery:
            for sid in station_ids(clients):
                nursery.start_soon(load_client, server.url(sid), protocol, action, window)
            await window.booted.event.wait()
            server_cpu, client_cpu = server.cpu_seconds(), own_cpu_seconds()
            started = time.perf_counter()
            window.stop_at = trio.current_time() + duration
            window.go.set()
            await window.finished.event.wait()
            seconds = time.perf_counter() - started
            server_cpu = server.cpu_seconds() - server_cpu
            client_cpu = own_cpu_seconds() - client_cpu
    return window, seconds, server_cpu, client_cpu


def run_load(server: ServerProcess, database: Path, protocol: Protocol, action: str,
             clients: int, duration: float) -> LoadResult:
    rows_before = status_rows(database)
    window, seconds, server_cpu, client_cpu = trio.run(
        measure_load, server, protocol, action, clients, duration)
    latencies = sorted(window.latencies)
    rows = status_rows(database) - rows_before if action == "StatusNotification" else None
    return LoadResult(protocol.subprotocol, action, clients, len(latencies), seconds,
                      percentile_ms(latencies, 0.50), percentile_ms(latencies, 0.99),
                      server_cpu / seconds, client_cpu / seconds, len(window.errors), rows)


def load_table(results: list[LoadResult]) -> str:
    headers = ["subprotocol", "CALL", "clients", "calls", "calls/s", "p50 ms", "p99 ms",
               "server CPU %", "load generator CPU %", "rows written", "errors"]
    rows = [[r.protocol, r.action, r.clients, r.calls, r.calls_per_second, r.p50_ms, r.p99_ms,
             r.server_cpu * 100, r.client_cpu * 100,
             "-" if r.rows_written is None else r.rows_written, r.errors] for r in results]
    return markdown_table(headers, rows, label_columns=2)


# ---- b) memory with idle stations ---------------------------------------------------------
async def idle_client(url: str, protocol: Protocol, connected: Countdown,
                      release: trio.Event) -> None:
    async with open_websocket_url(url, subprotocols=[protocol.subprotocol],
                                  connect_timeout=CONNECT_TIMEOUT) as ws:
        await Station(ws, protocol).boot()
        connected.done()
        await release.wait()


async def warm_up(server: ServerProcess, protocol: Protocol) -> None:
    """One station boots and leaves, so that imports and schema compiles done on first use are
    in the baseline instead of being charged to the idle stations."""
    with trio.fail_after(CONNECT_TIMEOUT + CALL_TIMEOUT):
        async with open_websocket_url(server.url(station_ids(1)[0]),
                                      subprotocols=[protocol.subprotocol]) as ws:
            station = Station(ws, protocol)
            await station.boot()
            await station.call("Heartbeat", {})


async def rss_with_idle_stations(server: ServerProcess, protocol: Protocol, count: int,
                                 idle_seconds: float) -> int:
    connected, release = Countdown(count), trio.Event()
    with trio.fail_after(CONNECT_TIMEOUT + CALL_TIMEOUT + idle_seconds + 10):
        async with trio.open_nursery() as nursery:
            for sid in station_ids(count):
                nursery.start_soon(idle_client, server.url(sid), protocol, connected, release)
            await connected.event.wait()
            await trio.sleep(idle_seconds)
            rss = server.rss_kib()
            release.set()
    return rss


@dataclass(frozen=True, slots=True)
class MemoryResult:
    protocol: str
    stations: int
    cold_kib: int
    baseline_kib: int
    loaded_kib: int

    @property
    def per_station_kib(self) -> float:
        return (self.loaded_kib - self.baseline_kib) / self.stations


def run_memory(workdir: Path, database: Path, protocol: Protocol, count: int,
               idle_seconds: float) -> MemoryResult:
    log_path = workdir / f"server-memory-{protocol.subprotocol}.log"
    with running_server(database, log_path) as server:
        time.sleep(1.0)  # let start-up allocations settle
        cold = server.rss_kib()
        trio.run(warm_up, server, protocol)
        time.sleep(1.0)
        baseline = server.rss_kib()
        loaded = trio.run(rss_with_idle_stations, server, protocol, count, idle_seconds)
    return MemoryResult(protocol.subprotocol, count, cold, baseline, loaded)


def memory_table(results: list[MemoryResult]) -> str:
    headers = ["subprotocol", "idle stations", "RSS at start MiB", "baseline MiB (after 1 boot)",
               "RSS with stations MiB", "delta MiB", "per station KiB"]
    rows = [[r.protocol, r.stations, r.cold_kib / 1024, r.baseline_kib / 1024,
             r.loaded_kib / 1024, (r.loaded_kib - r.baseline_kib) / 1024, r.per_station_kib]
            for r in results]
    return markdown_table(headers, rows, label_columns=1)


# ---- main -------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0,
                        help="seconds each load run is measured (default 4)")
    parser.add_argument("--clients", default="1,10,50",
                        help="comma-separated concurrent station counts (default 1,10,50)")
    parser.add_argument("--subprotocols", default="ocpp1.6,ocpp2.0.1",
                        help="comma-separated, from: " + ", ".join(PROTOCOLS))
    parser.add_argument("--actions", default=",".join(ACTIONS),
                        help="comma-separated, from: " + ", ".join(ACTIONS))
    parser.add_argument("--idle-stations", type=int, default=100,
                        help="stations connected for the memory figure (default 100, 0 skips)")
    parser.add_argument("--idle-seconds", type=float, default=3.0,
                        help="how long they idle before RSS is read (default 3)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the temporary database goes (default: the system temp dir); "
                             "put it on the disk a deployment would use")
    args = parser.parse_args()
    args.clients = [int(n) for n in args.clients.split(",") if n.strip()]
    args.subprotocols = [PROTOCOLS[name.strip()] for name in args.subprotocols.split(",")]
    args.actions = [name.strip() for name in args.actions.split(",")]
    unknown = set(args.actions) - set(ACTIONS)
    if unknown or not args.clients or min(args.clients) < 1:
        parser.error(f"bad --actions {sorted(unknown)} or --clients")
    return args


def run_all_load(workdir: Path, database: Path, args: argparse.Namespace) -> list[LoadResult]:
    results = []
    with running_server(database, workdir / "server-load.log") as server:
        for protocol in args.subprotocols:
            for action in args.actions:
                for clients in args.clients:
                    result = run_load(server, database, protocol, action, clients, args.duration)
                    print(f"  {protocol.subprotocol} {action} x{clients}: "
                          f"{result.calls_per_second:,.0f} calls/s", file=sys.stderr)
                    results.append(result)
                    time.sleep(0.5)  # let the closing connections finish before the next run
    return results


def main() -> None:
    args = parse_args()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lite-csms-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        database = workdir / "bench.sqlite3"
        stations = max([*args.clients, args.idle_stations])
        print(f"registering {stations} stations through the CLI…", file=sys.stderr)
        register_stations(database, station_ids(stations))
        load = run_all_load(workdir, database, args)
        memory = [run_memory(workdir, database, protocol, args.idle_stations, args.idle_seconds)
                  for protocol in args.subprotocols] if args.idle_stations else []
        problems = [line for log in sorted(workdir.glob("*.log")) for line in log_problems(log)]
        filesystem = filesystem_of(workdir.resolve())
    print("## Server benchmark\n")
    print(machine_summary(["trio", "trio-websocket", "wsproto", "orjson", "peewee"]))
    print(f"- database on {filesystem} (SQLite WAL, synchronous=FULL)")
    print(f"- server and load generator share the machine; {args.duration:g} s per load run")
    print(f"- server log: {len(problems)} WARNING/ERROR lines\n")
    for line in problems[:20]:
        print(f"    {line}")
    print("### Throughput: one outstanding CALL per station, back to back\n")
    print(load_table(load) + "\n")
    if memory:
        print(f"### Server RSS with idle stations (idle {args.idle_seconds:g} s)\n")
        print(memory_table(memory) + "\n")
    print(f"(whole run: {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()

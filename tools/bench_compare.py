#!/usr/bin/env python3
"""lite-csms and a typical Python CSMS (tools/peer_csms.py), side by side in one run.

Both servers run alternately, R repetitions each, against the same load generator
(tools/loadgen.py, raw WebSocket clients in --procs processes, one loopback source address
per 200 stations) and the same disk (databases in one temporary directory). The server is
pinned to --cpu and the generator to --client-cpu with taskset. lite-csms gets its stations
as rows without a password, as `lite-csms station add --no-password` makes them, so neither
side checks a password (the peer has no authentication at all). Method and figures:
docs/PERFORMANCE.md.

Per repetition and side, a fresh server (and database) for each of:
- every idle count (--idle-stations): RSS per idle booted station, from VmRSS of the server
  with the stations connected, booted and quiet, minus VmRSS after one warm-up station
  booted and left;
- lite-csms only, --variant-stations stations with TLS and with permessage-deflate;
- the load: start-up (process start to the first WebSocket handshake answered), idle RSS
  (--idle-seconds after start-up, no station yet), the connect-and-boot rate of --boot-stations new
  stations, durable StatusNotifications a second back to back (--throughput-stations, one
  outstanding CALL per station) with the server CPU per call, and p50/p99 latency at
  offered rates (--rates) over --open-stations stations.

    python tools/bench_compare.py --cpu 0 --client-cpu 1
    python tools/bench_compare.py --repetitions 3 --idle-stations 1000,5000,10000 \
        --cpu 0 --client-cpu 1 --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
sys.path.insert(0, str(TOOLS.parent))

import bench_common  # noqa: E402
import throwaway_tls  # noqa: E402
from bench_common import format_cell, machine_summary  # noqa: E402
from bench_server import filesystem_of, log_problems  # noqa: E402
from websockets.sync.client import connect as ws_connect  # noqa: E402

from lite_csms.net.ports import read_ports_file  # noqa: E402

SIDES = ("lite-csms", "peer")
PREFIX = "BENCH-"
STATUS_TABLE = {"lite-csms": "connector_status_change", "peer": "status"}
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    better: str  # "higher" or "lower"
    lite_only: bool = False


# ---- one server ------------------------------------------------------------------------------
@dataclass
class Server:
    side: str
    process: subprocess.Popen[bytes]
    port: int
    startup: float
    log: Path
    database: Path

    def rss_kib(self) -> int:
        return bench_common.rss_kib(self.process.pid)

    def cpu(self) -> float:
        """User + system seconds of every thread (lite-csms's SQLite writer included)."""
        return bench_common.cpu_seconds(self.process.pid)

    def settle(self, minimum: float, window: float = 0.2, limit: float = 60.0,
               calls: Callable[[], int] | None = None) -> None:
        """Wait `minimum` seconds, then until the server has used at most one clock tick of
        CPU in each of two `window`s running: answers to its own CALLs after a boot included.
        With `calls` (the server's CALLs the generator has answered so far), a window counts
        as quiet only if that count did not grow in it either."""
        time.sleep(minimum)
        deadline, quiet = time.monotonic() + limit, 0
        answered = calls() if calls else 0
        while quiet < 2 and time.monotonic() < deadline:
            before = self.cpu()
            time.sleep(window)
            idle = self.cpu() - before <= 0.011
            if calls:
                idle, answered = idle and calls() == answered, calls()
            quiet = quiet + 1 if idle else 0

    def status_rows(self) -> int:
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True) as db:
            return db.execute(f"SELECT COUNT(*) FROM {STATUS_TABLE[self.side]}").fetchone()[0]


def register_lite_stations(database: Path, numbers: list[int]) -> None:
    """The rows `lite-csms station add --no-password` makes (lite_csms/cli/stations.py), in
    bulk: registration accepted, no password hash."""
    from lite_csms.db.database import open_database
    from lite_csms.db.models import Station, database_proxy

    previous = database_proxy.obj  # a test running this in-process keeps its own database
    db = open_database(database)
    rows = [{"id": f"{PREFIX}{n:05d}", "registration": "accepted", "password_hash": None}
            for n in numbers]
    try:
        with db.atomic():
            for start in range(0, len(rows), 500):
                Station.insert_many(rows[start:start + 500]).execute()
    finally:
        db.close()
        database_proxy.initialize(previous)


def command_for(side: str, database: Path, ports_file: Path) -> list[str]:
    if side == "lite-csms":
        return [sys.executable, "-m", "lite_csms", "serve", "--host", "127.0.0.1", "--port",
                "0", "--admin-port", "0", "--database", str(database), "--ports-file",
                str(ports_file)]
    return [sys.executable, str(TOOLS / "peer_csms.py"), "--database", str(database),
            "--ports-file", str(ports_file)]


def first_handshake(port: int, ca: Path | None, deadline: float) -> None:
    """Until one WebSocket upgrade is answered: the server serves, not only listens."""
    import ssl
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    scheme = "wss" if ca else "ws"
    while True:
        try:
            with ws_connect(f"{scheme}://127.0.0.1:{port}/ocpp/{PREFIX}00000",
                            subprotocols=["ocpp1.6"], ssl=context, open_timeout=5,
                            proxy=None):
                return
        except (OSError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no WebSocket handshake: {exc}") from None
            time.sleep(0.01)


@contextmanager
def serving(side: str, workdir: Path, numbers: list[int], cpu: int | None,
            tls: tuple[Path, Path, Path] | None = None) -> Iterator[Server]:
    """A fresh server on a fresh database in `workdir`; its start-up time is measured from
    the process start to the first WebSocket handshake answered."""
    workdir.mkdir(parents=True)
    database = workdir / f"{side}.sqlite3"
    ports_file = workdir / "ports.json"
    if side == "lite-csms":
        register_lite_stations(database, numbers)
    # Caps far above any count here, under the descriptor limit so lite-csms does not warn:
    # the peer has no caps at all.
    descriptors = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    env = {**os.environ, "LITE_CSMS_LOG_LEVEL": "WARNING",
           "LITE_CSMS_MAX_CONNECTIONS": str(max(1000, descriptors - 1500))}
    if tls is not None:
        env.update(LITE_CSMS_TLS_CERT=str(tls[0]), LITE_CSMS_TLS_KEY=str(tls[1]))
    command = command_for(side, database, ports_file)
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        try:
            port = read_ports_file(ports_file, START_TIMEOUT,
                                   alive=lambda: process.poll() is None)["ocpp"][0]
            first_handshake(port, tls[2] if tls else None, time.monotonic() + START_TIMEOUT)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{side} did not start ({exc}):\n{log_path.read_text()}") from None
        yield Server(side, process, port, time.perf_counter() - started, log_path, database)
    finally:
        bench_common.terminate(process, 30)


# ---- the load generator processes --------------------------------------------------------
@dataclass
class Generators:
    """--procs tools/loadgen.py processes; a group's stations are split among them."""

    processes: list[subprocess.Popen[str]]
    cpu: list[float]
    groups: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def start(cls, port: int, procs: int, cpu: int | None, ca: Path | None) -> Generators:
        command = [sys.executable, str(TOOLS / "loadgen.py"), "--port", str(port),
                   "--prefix", PREFIX, *(["--ca", str(ca)] if ca else [])]
        if cpu is not None:
            command = ["taskset", "-c", str(cpu), *command]
        processes = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True) for _ in range(procs)]
        return cls(processes, [0.0] * procs)

    def ask(self, indexes: list[int], commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, command in zip(indexes, commands, strict=True):
            self.processes[i].stdin.write(json.dumps(command) + "\n")
            self.processes[i].stdin.flush()
        answers = []
        for i in indexes:
            line = self.processes[i].stdout.readline()
            if not line:
                raise RuntimeError("a load generator exited")
            answer = json.loads(line)
            if "error" in answer:
                raise RuntimeError(f"load generator: {answer['error']}")
            self.cpu[i] = answer["cpu"]
            answers.append(answer)
        return answers

    def connect(self, group: str, first: int, count: int, concurrency: int,
                **flags: bool) -> dict[str, Any]:
        procs = len(self.processes)
        sizes = [count // procs + (1 if i < count % procs else 0) for i in range(procs)]
        indexes = [i for i in range(procs) if sizes[i]]
        commands, start = [], first
        for i in indexes:
            commands.append({"op": "connect", "group": group, "first": start,
                             "count": sizes[i],
                             "concurrency": max(1, concurrency // len(indexes)), **flags})
            start += sizes[i]
        self.groups[group] = indexes
        answers = self.ask(indexes, commands)
        return {"booted": sum(a["booted"] for a in answers),
                "seconds": max(a["seconds"] for a in answers),
                "retries": sum(a["retries"] for a in answers)}

    def load(self, op: str, group: str, **params: float) -> dict[str, Any]:
        indexes = self.groups[group]
        share = dict(params)
        if "rate" in share:
            share["rate"] = params["rate"] / len(indexes)
        answers = self.ask(indexes, [{"op": op, "group": group, **share} for _ in indexes])
        return {"calls": sum(a["calls"] for a in answers),
                "seconds": max(a["seconds"] for a in answers),
                "offered": sum(a.get("offered", 0) for a in answers),
                "latencies_ms": sorted(x for a in answers for x in a["latencies_ms"]),
                "calls_detail": sorted(c for a in answers for c in a.get("calls_detail", []))}

    def close(self, group: str) -> None:
        indexes = self.groups.pop(group)
        self.ask(indexes, [{"op": "close", "group": group} for _ in indexes])

    def total_cpu(self) -> float:
        return sum(self.cpu)

    def server_calls(self) -> int:
        """The server's own CALLs (lite-csms's settings after a boot) answered so far."""
        indexes = list(range(len(self.processes)))
        return sum(a["server_calls"] for a in self.ask(indexes, [{"op": "count"}] * len(indexes)))

    def stop(self) -> None:
        for process in self.processes:
            try:
                process.stdin.write('{"op": "quit"}\n')
                process.stdin.close()
            except OSError:
                pass
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def generators(server: Server, args: argparse.Namespace,
               ca: Path | None = None) -> Iterator[Generators]:
    pool = Generators.start(server.port, args.procs, args.client_cpu, ca)
    try:
        yield pool
    finally:
        pool.stop()


# ---- the figures -------------------------------------------------------------------------
def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))]


def figures(args: argparse.Namespace) -> list[Figure]:
    top = max(args.throughput_stations)
    found = [Figure(f"throughput_{n}", f"durable StatusNotifications/s, {n} stations back to "
                    "back", "higher") for n in args.throughput_stations]
    found.append(Figure(f"cpu_per_call_{top}", f"server CPU per StatusNotification at {top} "
                        "stations, µs", "lower"))
    for rate in args.rates:
        found += [Figure(f"p50_{rate}", f"p50 at an offered {rate}/s ({args.open_stations} "
                         "stations), ms", "lower"),
                  Figure(f"p99_{rate}", f"p99 at an offered {rate}/s, ms", "lower")]
    found.append(Figure("boot_rate", f"stations connected and booted per second "
                        f"({args.boot_stations} arriving)", "higher"))
    found.append(Figure("cpu_per_boot", "server CPU per first boot, until quiet, ms", "lower"))
    found += [Figure(f"rss_station_{n}", f"RSS per idle booted station, {n} stations, KiB",
                     "lower") for n in args.idle_stations]
    found += [Figure("idle_rss", "idle RSS, no stations, MiB", "lower"),
              Figure("startup", "start-up, process start to first handshake, s", "lower")]
    if args.variant_stations:
        n = args.variant_stations
        found += [Figure(f"rss_station_tls_{n}", f"RSS per idle station with TLS, {n} "
                         "stations, KiB", "lower", lite_only=True),
                  Figure(f"rss_station_deflate_{n}", f"RSS per idle station with "
                         f"permessage-deflate, {n} stations, KiB", "lower", lite_only=True)]
    return found


@dataclass
class Notes:
    """What a reader needs to trust the figures: rows written, generator load, log lines."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # With --calls: per open run, each call's [due s from the run's start, latency ms,
    # station index], to see when the slow ones happen; "start" is the run's first due time
    # on CLOCK_MONOTONIC, which the server shares, to match a server-side trace.
    calls: list[dict[str, Any]] = field(default_factory=list)


def per_idle_station(server: Server, pool: Generators, count: int, args: argparse.Namespace,
                     notes: Notes, tls: bool = False, deflate: bool = False) -> float:
    """KiB per idle booted station on a server no station has used yet: one warm-up station
    boots and leaves, then `count` stations connect, boot and idle until the server is quiet
    (and leave again)."""
    pool.connect("warm", 0, 1, 1, tls=tls)
    pool.close("warm")
    server.settle(args.quiet_window, args.quiet_window)
    baseline = server.rss_kib()
    joined = pool.connect("idle", 1, count, args.boot_concurrency, tls=tls, deflate=deflate)
    if joined["retries"]:
        notes.lines.append(f"{server.side}: {joined['retries']} handshakes or boots retried "
                           f"while {count} idle stations joined")
    server.settle(args.idle_seconds, args.quiet_window)
    found = (server.rss_kib() - baseline) / count
    pool.close("idle")
    # The leaving stations are not charged to what follows.
    server.settle(args.quiet_window, args.quiet_window)
    return found


def idle_memory(side: str, workdir: Path, count: int, args: argparse.Namespace,
                numbers: list[int], notes: Notes, variant: str = "plain") -> float:
    """per_idle_station on a fresh server; `variant` plain, tls or deflate."""
    tls = None
    if variant == "tls":
        (workdir / "tls").mkdir(parents=True)
        cert, key, _ = throwaway_tls.issue(workdir / "tls")
        tls = (cert, key, workdir / "tls" / "ca.pem")
    with serving(side, workdir / f"{variant}-{count}", numbers, args.cpu, tls) as server, \
            generators(server, args, tls[2] if tls else None) as pool:
        return per_idle_station(server, pool, count, args, notes, tls=tls is not None,
                                deflate=variant == "deflate")


def load_figures(side: str, workdir: Path, args: argparse.Namespace, numbers: list[int],
                 notes: Notes) -> dict[str, float]:
    found: dict[str, float] = {}
    boot_first = max(numbers) - args.boot_stations + 1
    with serving(side, workdir / "load", numbers, args.cpu) as server:
        found["startup"] = server.startup
        time.sleep(args.idle_seconds)
        found["idle_rss"] = server.rss_kib() / 1024
        with generators(server, args) as pool:
            # The smallest idle count on this server while it is fresh; the others each get
            # a fresh server, since freed memory is reused rather than returned.
            first = min(args.idle_stations)
            found[f"rss_station_{first}"] = per_idle_station(server, pool, first, args, notes)
            cpu, server_calls = server.cpu(), pool.server_calls()
            booted = pool.connect("boot", boot_first, args.boot_stations, args.boot_concurrency)
            found["boot_rate"] = booted["booted"] / booted["seconds"]
            if booted["retries"]:
                notes.lines.append(f"{side}: {booted['retries']} handshakes or boots retried "
                                   "during the boot run")
            during = server.cpu() - cpu
            # Until quiet: whatever a boot sets off afterwards (lite-csms's settings) counts.
            server.settle(args.quiet_window, args.quiet_window, calls=pool.server_calls)
            found["cpu_per_boot"] = (server.cpu() - cpu) / booted["booted"] * 1e3
            notes.lines.append(f"{side}, boot run: server CPU {during:.2f} s until the last "
                               f"boot was answered, {server.cpu() - cpu:.2f} s until quiet; "
                               f"{pool.server_calls() - server_calls} server CALLs answered")
            pool.close("boot")
            for n in args.throughput_stations:
                pool.connect("load", 1, n, args.boot_concurrency)
                server.settle(args.quiet_window, args.quiet_window)
                rows, cpu, gen_cpu = server.status_rows(), server.cpu(), pool.total_cpu()
                run = pool.load("closed", "load", duration=args.duration)
                server_cpu, gen_cpu = server.cpu() - cpu, pool.total_cpu() - gen_cpu
                written = server.status_rows() - rows
                found[f"throughput_{n}"] = run["calls"] / run["seconds"]
                if written != run["calls"]:
                    notes.problems.append(f"{side}, {n} stations: {run['calls']} answered but "
                                          f"{written} status rows written")
                if n == max(args.throughput_stations):
                    found[f"cpu_per_call_{n}"] = server_cpu / run["calls"] * 1e6
                notes.lines.append(
                    f"{side}, {n} stations back to back: {run['calls']} calls, {written} rows "
                    f"written, server CPU {server_cpu / run['seconds']:.0%}, generator CPU "
                    f"{gen_cpu / run['seconds']:.0%} of a core")
                pool.close("load")
            pool.connect("open", 1, args.open_stations, args.boot_concurrency)
            server.settle(args.quiet_window, args.quiet_window)
            for rate in args.rates:
                run = pool.load("open", "open", rate=rate, duration=args.duration,
                                **({"detail": True} if args.calls else {}))
                if args.calls and run["calls_detail"]:
                    start = run["calls_detail"][0][0]
                    notes.calls.append({"side": side, "rate": rate, "start": start, "calls": [
                        [round(due - start, 6), ms, n] for due, ms, n in run["calls_detail"]]})
                found[f"p50_{rate}"] = percentile(run["latencies_ms"], 0.50)
                found[f"p99_{rate}"] = percentile(run["latencies_ms"], 0.99)
                notes.lines.append(
                    f"{side}, offered {rate}/s: {run['offered']} offered, {run['calls']} "
                    f"answered in {run['seconds']:.2f} s")
            pool.close("open")
    notes.problems += [f"{side}: {line}" for line in log_problems(server.log)][:10]
    return found


def one_side(side: str, workdir: Path, args: argparse.Namespace,
             notes: Notes) -> dict[str, float]:
    top = max([*args.idle_stations, args.variant_stations, args.open_stations,
               *args.throughput_stations])
    numbers = list(range(top + 1 + args.boot_stations))
    found = load_figures(side, workdir, args, numbers, notes)
    for count in sorted(args.idle_stations)[1:]:
        found[f"rss_station_{count}"] = idle_memory(side, workdir, count, args, numbers, notes)
    if side == "lite-csms" and args.variant_stations:
        n = args.variant_stations
        for variant in ("tls", "deflate"):
            found[f"rss_station_{variant}_{n}"] = idle_memory(side, workdir, n, args, numbers,
                                                              notes, variant)
    return found


# ---- the report --------------------------------------------------------------------------
def summarise(figures_: list[Figure], runs: dict[str, list[dict[str, float]]]
              ) -> dict[str, dict[str, Any]]:
    """Per figure: every repetition's value per side, and the ratio of the medians."""
    summary = {}
    for figure in figures_:
        entry: dict[str, Any] = {"label": figure.label, "better": figure.better}
        for side in SIDES:
            entry[side] = [run[figure.key] for run in runs[side] if figure.key in run]
        lite, peer = entry["lite-csms"], entry["peer"]
        entry["ratio"] = (statistics.median(lite) / statistics.median(peer)
                          if lite and peer and statistics.median(peer) else None)
        summary[figure.key] = entry
    return summary


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    cells = [min(values), statistics.median(values), max(values)]
    return " / ".join(str(format_cell(float(v))) for v in cells)


def report(summary: dict[str, dict[str, Any]]) -> str:
    lines = ["| figure | better | lite-csms min / median / max | peer min / median / max | "
             "ratio lite-csms / peer (medians) |", "| --- | --- | ---: | ---: | ---: |"]
    for entry in summary.values():
        ratio = "n/a" if entry["ratio"] is None else f"{entry['ratio']:.2f}"
        lines.append(f"| {entry['label']} | {entry['better']} | {spread(entry['lite-csms'])} "
                     f"| {spread(entry['peer'])} | {ratio} |")
    return "\n".join(lines)


def commit() -> str:
    done = subprocess.run(["git", "-C", str(TOOLS), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(TOOLS), "status", "--porcelain"],
                           capture_output=True, text=True).stdout.strip()
    return done.stdout.strip() + (" (uncommitted changes)" if dirty else "")


def counts(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds per throughput and latency run (default 10)")
    parser.add_argument("--throughput-stations", type=counts, default=[200, 50])
    parser.add_argument("--rates", type=counts, default=[500, 1000],
                        help="offered StatusNotifications a second (default 500,1000)")
    parser.add_argument("--open-stations", type=int, default=200)
    parser.add_argument("--boot-stations", type=int, default=1000)
    parser.add_argument("--boot-concurrency", type=int, default=100,
                        help="handshakes and boots the generator keeps in flight at once "
                             "(default 100)")
    parser.add_argument("--idle-stations", type=counts, default=[1000, 5000])
    parser.add_argument("--variant-stations", type=int, default=1000,
                        help="lite-csms stations with TLS and with deflate (0 skips)")
    parser.add_argument("--idle-seconds", type=float, default=3.0,
                        help="at least this long idle before RSS is read (default 3)")
    parser.add_argument("--quiet-window", type=float, default=0.2,
                        help="the server is quiet after two such windows (s) with at most one "
                             "clock tick of CPU each (default 0.2)")
    parser.add_argument("--procs", type=int, default=1, help="load generator processes")
    parser.add_argument("--cpu", type=int, default=None, help="pin the servers to this core")
    parser.add_argument("--client-cpu", type=int, default=None,
                        help="pin the load generator to this core")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the databases go (default: the system temp dir)")
    parser.add_argument("--json", type=Path, help="also write every value here")
    parser.add_argument("--calls", type=Path,
                        help="write each call of the open runs here: side, rate, and per call "
                             "its due time (s from the run's start), latency (ms) and station "
                             "(index in its generator process); the run's start is given on "
                             "CLOCK_MONOTONIC")
    parser.add_argument("--report-from", type=Path,
                        help="print the table from this --json file and measure nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report_from:
        # The table again from a --json file, also one a cut-short run left: the repetitions
        # it has. Give the options of that run, as its figure names depend on them.
        runs = json.loads(args.report_from.read_text())["runs"]
        print(report(summarise(figures(args), runs)))
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by both servers
    machine = machine_summary(["trio", "trio-websocket", "peewee", "websockets", "ocpp"])
    if args.client_cpu is not None:
        os.sched_setaffinity(0, {args.client_cpu})  # after machine_summary counts the cores
    began = time.monotonic()
    notes = Notes()
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    tmp = Path(tempfile.mkdtemp(prefix="bench-compare-", dir=args.workdir))
    try:
        for rep in range(args.repetitions):
            for side in SIDES:
                print(f"{time.strftime('%H:%M:%S')} repetition {rep + 1}, {side}…",
                      file=sys.stderr, flush=True)
                runs[side].append(one_side(side, tmp / f"{rep}-{side}", args, notes))
                if args.calls:
                    args.calls.write_text(json.dumps(notes.calls))
                if args.json:  # so far, in case the run is cut short
                    args.json.write_text(json.dumps({"runs": runs, "notes": notes.lines,
                                                     "problems": notes.problems}, indent=1))
        filesystem = filesystem_of(tmp.resolve())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarise(figures(args), runs)
    pinning = (f"server on core {args.cpu}, generator on core {args.client_cpu}"
               if args.cpu is not None else "not pinned")
    print("## lite-csms and a typical Python CSMS, side by side\n")
    print(machine)
    print(f"- commit {commit()}; databases on {filesystem} (WAL, synchronous=FULL both)")
    print(f"- {args.repetitions} repetitions, alternating; {pinning}; {args.procs} generator "
          f"process(es); {args.duration:g} s per load run; whole run "
          f"{time.monotonic() - began:.0f} s")
    print(f"- problems: {len(notes.problems)}")
    for line in notes.problems:
        print(f"    - {line}")
    print()
    print(report(summary))
    print("\n<details><summary>per run</summary>\n")
    for line in notes.lines:
        print(f"- {line}")
    print("\n</details>")
    if args.json:
        args.json.write_text(json.dumps({"figures": summary, "runs": runs,
                                         "problems": notes.problems, "notes": notes.lines},
                                        indent=1))


if __name__ == "__main__":
    main()

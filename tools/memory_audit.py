"""Memory per idle station, object by object (docs/PERFORMANCE.md, "Memory per station").

The server runs in this process under tracemalloc; a child process (the `websockets`
package, asyncio) connects N stations, boots each and leaves them idle. The difference
between the snapshots before and after, grouped by the code that allocated it, says what
each connected station costs, and VmRSS says what the operator pays.

    python tools/memory_audit.py [--stations 500] [--top 25] [--deflate]

tracemalloc sees Python's allocations only (not the kernel's socket buffers, which are
not in RSS either) and costs time, not bytes counted.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
from pathlib import Path

import bench_common
import trio

from lite_csms import config
from lite_csms.db.database import open_database
from lite_csms.db.models import Station
from lite_csms.net.server import CsmsServer

CLIENT = textwrap.dedent("""
    import asyncio, json, sys
    import websockets
    port, n, deflate = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
    async def one(i):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ocpp/MEM-{i:05d}",
            subprotocols=["ocpp1.6"], compression="deflate" if deflate else None,
            open_timeout=900, ping_interval=None)
        boot = {"chargePointVendor": "audit", "chargePointModel": "idle"}
        await ws.send(json.dumps([2, "b", "BootNotification", boot]))
        await ws.recv()
        return ws
    async def main():
        tasks = []
        for start in range(0, n, 100):
            tasks += [asyncio.create_task(one(i)) for i in range(start, min(n, start + 100))]
            await asyncio.sleep(0.05)
        held = await asyncio.gather(*tasks)  # every station booted; kept open until told
        print("ready", len(held), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    asyncio.run(main())
""")



def _rss_kib() -> int:
    return bench_common.rss_kib(os.getpid())


async def audit(stations: int, top: int, deflate: bool, workdir: Path) -> None:
    database = workdir / "audit.sqlite3"
    db = open_database(database)
    with db.atomic():
        Station.insert_many([{"id": f"MEM-{i:05d}", "registration": "accepted",
                              "password_hash": None} for i in range(stations)]).execute()
    settings = config.load(environ={}, overrides={
        "host": "127.0.0.1", "port": 0, "admin_port": 0, "database": str(database),
        "budget_policy": False, "log_level": "WARNING",
        # tracemalloc slows the server several times over: no handshake may time out.
        "handshake_timeout": 900.0,
        "ws_deflate": deflate})
    server = CsmsServer(settings, db)
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.run)
        await trio.sleep(0.5)
        if tracemalloc.is_tracing():
            await server.traffic.flush()
        gc.collect()
        rss_before = _rss_kib()
        before = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
        client = await trio.lowlevel.open_process(
            [sys.executable, "-c", CLIENT, str(ports[0]), str(stations), "1" if deflate else "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        while len(server.connections) < stations:
            await trio.sleep(0.2)
        await trio.sleep(2)  # booted and idle
        if tracemalloc.is_tracing():
            # The boots' traffic rows wait in memory for the minute's flush; written now, so
            # that what is left is what an idle station holds for as long as it is idle.
            # Not for the RSS, where the write would grow SQLite's page cache instead.
            await server.traffic.flush()
        gc.collect()
        after = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
        rss_after = _rss_kib()
        print(f"stations: {stations}; VmRSS {rss_before} -> {rss_after} KiB: "
              f"{(rss_after - rss_before) / stations:.1f} KiB per station"
              + ("" if after is None else " (tracemalloc on: RSS inflated by its traces)"))
        if after is not None and before is not None:
            _report(after.compare_to(before, "traceback"), stations, top)
        client.kill()
        server.stop()


def _owner(frames: list[tracemalloc.Frame]) -> tuple[str, str]:
    """(the innermost module that allocated, the innermost line of ours that led there)."""
    inner = Path(frames[-1].filename)
    inner_name = f"{inner.parent.name}/{inner.name}"
    ours = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames)
                 if "/lite_csms/" in f.filename), "-")
    return inner_name, ours


# What a connection's memory is, by the module that allocated it.
CATEGORIES = [
    ("trio: the task, its cancel scopes and events", ("_core/", "trio/_util", "trio/_sync",
                                                      "trio._core", "trio._sync", "outcome/")),
    ("socket and its epoll registration", ("trio/_socket", "trio/_highlevel_socket",
                                           "_io_epoll", "trio/_abc")),
    ("WebSocket frame state (wsproto, net/websocket.py)", ("wsproto/", "net/websocket")),
    ("deflate contexts", ("net/deflate", "zlib")),
    ("the connection's code: frames and objects of net/", ("net/",)),
    ("byte meter (budget/)", ("budget/",)),
    ("RPC session (ocppj/)", ("ocppj/",)),
]


def _category(module: str) -> str:
    for name, prefixes in CATEGORIES:
        if any(prefix in module for prefix in prefixes):
            return name
    return "other"


def _report(stats: list[tracemalloc.StatisticDiff], stations: int, top: int) -> None:
    by_module: dict[str, list[int]] = {}
    by_line: dict[tuple[str, str], list[int]] = {}
    for stat in stats:
        frames = list(stat.traceback)  # oldest first
        module, ours = _owner(frames)
        for table, key in ((by_module, module), (by_line, (module, ours))):
            entry = table.setdefault(key, [0, 0])  # type: ignore[arg-type]
            entry[0] += stat.size_diff
            entry[1] += stat.count_diff
    total = sum(size for size, _ in by_module.values())
    by_category: dict[str, int] = {}
    for module, (size, _) in by_module.items():
        by_category[_category(module)] = by_category.get(_category(module), 0) + size
    print("| part of a connection | bytes/station |\n|---|---:|")
    for name, size in sorted(by_category.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {size / stations:.0f} |")
    print()
    print(f"tracemalloc: {total / stations / 1024:.1f} KiB per station\n")
    print("| allocated in | bytes/station | blocks/station |\n|---|---:|---:|")
    for module, (size, count) in sorted(by_module.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"| {module} | {size / stations:.0f} | {count / stations:.1f} |")
    print("\n| allocated in | from our line | bytes/station |\n|---|---|---:|")
    for (module, ours), (size, _) in sorted(by_line.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"| {module} | {ours} | {size / stations:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=500)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--rss-only", action="store_true",
                        help="no tracemalloc: the RSS an operator would see")
    args = parser.parse_args()
    if not args.rss_only:
        tracemalloc.start(25)
    with tempfile.TemporaryDirectory() as workdir:
        trio.run(audit, args.stations, args.top, args.deflate, Path(workdir))


if __name__ == "__main__":
    main()

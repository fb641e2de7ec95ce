"""Memory per idle station, object by object (docs/PERFORMANCE.md, "Memory per station").

The server runs in this process under tracemalloc; a child process (the `websockets`
package, asyncio) connects N stations, boots each and leaves them idle. The difference
between the snapshots before and after, grouped by the code that allocated it, says what
each connected station costs, and VmRSS says what the operator pays.

    python tools/memory_audit.py [--stations 500] [--top 25] [--deflate] [--policy]
        [--hold-settings]

`--policy` turns the budget policy on (the default configuration): the stations answer the
server's settings (Accepted), and the snapshot waits until the server is quiet. With
`--malloc-stats` it also prints what Python's allocator and the C heap hold before and after
(pymalloc arenas against the blocks in use; /proc/self/smaps by mapping), and with `--types`
the objects alive per station, by type.

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
import time
import tracemalloc
from pathlib import Path

import bench_common
import trio

from lite_csms import config
from lite_csms.db.database import open_database
from lite_csms.db.models import Station
from lite_csms.net.server import CsmsServer

# --hold-settings: how long the snapshot waits for the settings to be in flight (the budget
# policy lets the boots go first, then sends).
HOLD_SECONDS = 12

CLIENT = textwrap.dedent("""
    import asyncio, json, sys
    import websockets
    port, n, deflate = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
    hold = sys.argv[4] == "1"
    async def answer(ws):
        async for text in ws:  # the server's own CALLs (the budget policy's settings)
            message = json.loads(text)
            if message[0] == 2 and not hold:
                await ws.send(json.dumps([3, message[1], {"status": "Accepted"}]))
    async def one(i):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ocpp/MEM-{i:05d}",
            subprotocols=["ocpp1.6"], compression="deflate" if deflate else None,
            open_timeout=900, ping_interval=None)
        boot = {"chargePointVendor": "audit", "chargePointModel": "idle"}
        await ws.send(json.dumps([2, "b", "BootNotification", boot]))
        await ws.recv()
        asyncio.get_running_loop().create_task(answer(ws))
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


def _malloc_stats() -> dict[str, int]:
    """Python's allocator (arenas held, bytes in used blocks) and the process's mappings
    (the C heap, anonymous mappings), in KiB."""
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write)
    with os.fdopen(read, "r") as pipe:
        text = pipe.read()
    found: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        name, value = name.strip(), value.strip().replace(",", "")
        if name.startswith("# arenas allocated current"):
            found["arenas held, KiB"] = int(value) * 1024  # 1 MiB arenas (3.10+, 64-bit)
        elif name.startswith("# bytes in allocated blocks"):
            found["bytes in used blocks, KiB"] = int(value) // 1024
        elif name.startswith("# bytes in available blocks"):
            found["bytes in free blocks of used pools, KiB"] = int(value) // 1024
        elif name.startswith("# bytes lost to pool headers") or name.startswith(
                "# bytes lost to quantization"):
            found["lost to headers and quantization, KiB"] = (
                found.get("lost to headers and quantization, KiB", 0) + int(value) // 1024)
        elif "unused pools" in name and value.isdigit():
            found["unused pools, KiB"] = int(value) // 1024
        elif len(parts := line.split()) == 5 and all(p.isdigit() for p in parts):
            # A size class: pools, blocks in use, free blocks in those pools.
            size = int(parts[1])
            found[f"class {size:3d} B: used blocks, KiB"] = int(parts[3]) * size // 1024
            found[f"class {size:3d} B: free blocks in its pools, KiB"] = (
                int(parts[4]) * size // 1024)
    heap = anon = other = 0
    current = ""
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            if not line[0].isupper() or ":" not in line.split()[0]:
                parts = line.split()
                current = parts[5] if len(parts) > 5 else ""
            elif line.startswith("Rss:"):
                size = int(line.split()[1])
                if current == "[heap]":
                    heap += size
                elif current == "":
                    anon += size
                else:
                    other += size
    found["RSS: C heap ([heap]), KiB"] = heap
    found["RSS: anonymous mappings (arenas, large blocks), KiB"] = anon
    found["RSS: files and the rest, KiB"] = other
    return found


def _types() -> dict[str, int]:
    counts: dict[str, int] = {}
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        counts[name] = counts.get(name, 0) + 1
    return counts


async def _quiet(window: float = 0.3) -> None:
    """Until this process (all its threads) used at most 10 ms of CPU in two windows running."""
    quiet = 0
    while quiet < 2:
        before = time.process_time()
        await trio.sleep(window)
        quiet = quiet + 1 if time.process_time() - before <= 0.011 else 0


async def audit(stations: int, top: int, deflate: bool, workdir: Path, policy: bool = False,
                keep_traffic: bool = False, malloc_stats: bool = False,
                types: bool = False, hold: bool = False) -> None:
    database = workdir / "audit.sqlite3"
    db = open_database(database)
    with db.atomic():
        Station.insert_many([{"id": f"MEM-{i:05d}", "registration": "accepted",
                              "password_hash": None} for i in range(stations)]).execute()
    settings = config.load(environ={}, overrides={
        "host": "127.0.0.1", "port": 0, "admin_port": 0, "database": str(database),
        "budget_policy": policy or hold, "log_level": "WARNING",
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
        stats_before = _malloc_stats() if malloc_stats else {}
        types_before = _types() if types else {}
        before = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
        client = await trio.lowlevel.open_process(
            [sys.executable, "-c", CLIENT, str(ports[0]), str(stations), "1" if deflate else "0",
             "1" if hold else "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        while len(server.connections) < stations:
            await trio.sleep(0.2)
        await trio.sleep(2)  # booted and idle
        if hold:
            # The settings' first CALLs in flight, unanswered (their deadline is far off).
            await trio.sleep(HOLD_SECONDS)
        elif policy:
            await _quiet()  # the settings sent and answered
        if tracemalloc.is_tracing() and not keep_traffic:
            # The boots' traffic rows wait in memory for the minute's flush; written now, so
            # that what is left is what an idle station holds for as long as it is idle.
            # Not for the RSS, where the write would grow SQLite's page cache instead.
            await server.traffic.flush()
        gc.collect()
        after = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
        rss_after = _rss_kib()
        if malloc_stats:
            stats_after = _malloc_stats()
            print("| allocator | before | after | KiB per station |\n|---|---:|---:|---:|")
            for name, value in stats_after.items():
                was = stats_before.get(name, 0)
                print(f"| {name} | {was} | {value} | {(value - was) / stations:.2f} |")
            print()
        if types:
            grown = _types()
            print("| type | objects per station |\n|---|---:|")
            for name, count in sorted(grown.items(),
                                      key=lambda kv: -(kv[1] - types_before.get(kv[0], 0))
                                      )[:top]:
                print(f"| {name} | {(count - types_before.get(name, 0)) / stations:.2f} |")
            print()
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
    parser.add_argument("--policy", action="store_true",
                        help="budget policy on (the default configuration); the stations "
                        "answer its settings")
    parser.add_argument("--keep-traffic", action="store_true",
                        help="under tracemalloc, keep the traffic rows held for the minute's "
                        "flush in the snapshot (they are written before it otherwise)")
    parser.add_argument("--malloc-stats", action="store_true",
                        help="pymalloc arenas and the process's mappings before and after")
    parser.add_argument("--types", action="store_true",
                        help="objects alive per station, by type")
    parser.add_argument("--hold-settings", action="store_true",
                        help="with --policy: the stations never answer the settings, and the "
                        "snapshot is taken with the first ones in flight (what a settle in "
                        "flight holds)")
    parser.add_argument("--rss-only", action="store_true",
                        help="no tracemalloc: the RSS an operator would see")
    args = parser.parse_args()
    if not args.rss_only:
        tracemalloc.start(25)
    with tempfile.TemporaryDirectory() as workdir:
        trio.run(audit, args.stations, args.top, args.deflate, Path(workdir), args.policy,
                 args.keep_traffic, args.malloc_stats, args.types, args.hold_settings)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A light OCPP 1.6J load generator, driven by tools/bench_compare.py over stdin and stdout.

Raw WebSocket clients (`websockets` on asyncio, JSON with orjson): no OCPP library, no schema
validation, so the generator costs far less per message than either server. Each station has
one reader task that answers the server's own CALLs (ChangeConfiguration and the like are
answered Accepted) and hands CALLRESULTs to the one CALL the station has outstanding, as
OCPP-J allows. Station n is `<prefix><n:05d>` and connects from its own loopback address
(127.1.x.y, 200 stations an address), so per-address caps do not apply.

Commands, one JSON object a line on stdin; one JSON answer a line on stdout, each with this
process's CPU seconds (`cpu`) and `server_calls` (below):

- `{"op": "connect", "group": g, "first": n, "count": k, "concurrency": c, "deflate": b,
  "tls": b}`: stations n..n+k-1 connect and send BootNotification (must be Accepted), at
  most c handshakes at once; answers `booted`, `seconds` (first connect to last boot) and
  `retries` (503 answers, retried after their Retry-After; failures and timeouts,
  retried after 1 s). They stay connected, idle.
- `{"op": "closed", "group": g, "duration": s}`: every station of g sends StatusNotifications
  back to back for s seconds; answers `calls`, `seconds` and `latencies_ms`.
- `{"op": "open", "group": g, "rate": r, "duration": s}`: StatusNotifications offered at r a
  second, round robin over g's stations, each queued behind the station's outstanding CALL;
  latency counts from the scheduled time, so queueing is included. Answers `offered`,
  `calls`, `seconds`, `latencies_ms`; with `"detail": true` also `calls_detail`, per call
  `[due, latency_ms, station]` (due in seconds of CLOCK_MONOTONIC, which the server shares).
- `{"op": "count"}`: nothing but the fields every answer has.
- `{"op": "close", "group": g}`; `{"op": "quit"}`.

Every answer also gives `server_calls`: the server's own CALLs this process has answered.

    python tools/loadgen.py --port 9000 [--prefix BENCH-] [--ca ca.pem]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import ssl
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect

CALL_TIMEOUT = 30.0
HANDSHAKE_TIMEOUT = 60.0
ATTEMPTS = 10
STATIONS_PER_ADDRESS = 200
BOOT = {"chargePointVendor": "lite-csms", "chargePointModel": "loadgen"}
# What a charger answers to the server's own CALLs (1.6 response payloads).
ANSWERS: dict[str, dict[str, Any]] = {
    "GetConfiguration": {"configurationKey": []},
    "DataTransfer": {"status": "Accepted"},
}


class Refused(Exception):
    pass


def source_address(n: int) -> str:
    block = n // STATIONS_PER_ADDRESS
    return f"127.1.{block // 250}.{block % 250 + 1}"


def status_payload(previous: datetime | None) -> tuple[dict[str, Any], datetime]:
    """A report, and its time: a millisecond later than the station's previous one at least.
    lite-csms stores a report's time to the millisecond and answers the same connector, time
    and status again as a retransmission, without a row; two round trips within one
    millisecond would otherwise be one row for two answers."""
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    if previous is not None and now <= previous:
        now = previous + timedelta(milliseconds=1)
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"connectorId": 1, "errorCode": "NoError", "status": "Available",
            "timestamp": stamp}, now


class Station:
    __slots__ = ("last_report", "next_id", "reader", "waiting", "ws")

    # The server's own CALLs answered by every station of this process.
    server_calls = 0

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.last_report: datetime | None = None
        self.waiting: tuple[str, asyncio.Future[list[Any]]] | None = None
        self.reader = asyncio.get_running_loop().create_task(self.read())

    async def read(self) -> None:
        try:
            async for text in self.ws:
                frame = orjson.loads(text)
                if frame[0] == 2:
                    Station.server_calls += 1
                    answer = ANSWERS.get(frame[2], {"status": "Accepted"})
                    await self.ws.send(orjson.dumps([3, frame[1], answer]).decode())
                elif self.waiting is not None and frame[1] == self.waiting[0]:
                    self.waiting[1].set_result(frame)
        except websockets.ConnectionClosed:
            pass
        if self.waiting is not None and not self.waiting[1].done():
            self.waiting[1].set_exception(Refused("connection closed"))

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        message_id = str(self.next_id)
        future = asyncio.get_running_loop().create_future()
        self.waiting = (message_id, future)
        await self.ws.send(orjson.dumps([2, message_id, action, payload]).decode())
        frame = await asyncio.wait_for(future, CALL_TIMEOUT)
        self.waiting = None
        if frame[0] != 3:
            raise Refused(f"{action}: {frame!r}"[:200])
        return frame[2]

    async def report_status(self) -> None:
        payload, self.last_report = status_payload(self.last_report)
        await self.call("StatusNotification", payload)

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.groups: dict[str, list[Station]] = {}
        self.tls: ssl.SSLContext | None = None
        if args.ca:
            self.tls = ssl.create_default_context(cafile=args.ca)

    def url(self, n: int, tls: bool) -> str:
        scheme = "wss" if tls else "ws"
        return f"{scheme}://127.0.0.1:{self.args.port}/ocpp/{self.args.prefix}{n:05d}"

    async def station(self, n: int, tls: bool, deflate: bool, retries: list[int]) -> Station:
        """Connected and booted; a 503 is retried after its Retry-After, a handshake or boot
        that fails or times out after 1 s, as a charger retries (each one counted)."""
        for _attempt in range(ATTEMPTS):
            station = None
            try:
                ws = await connect(
                    self.url(n, tls), subprotocols=["ocpp1.6"], ssl=self.tls if tls else None,
                    compression="deflate" if deflate else None, ping_interval=None,
                    open_timeout=HANDSHAKE_TIMEOUT, local_addr=(source_address(n), 0),
                    proxy=None, max_queue=4)
                station = Station(ws)
                answer = await station.call("BootNotification", BOOT)
            except websockets.InvalidStatus as exc:
                if exc.response.status_code != 503:
                    raise
                retries.append(1)
                await asyncio.sleep(float(exc.response.headers.get("Retry-After", "1")))
                continue
            except (OSError, TimeoutError, websockets.WebSocketException, Refused):
                retries.append(1)
                if station is not None:
                    station.ws.transport.abort()
                    station.reader.cancel()
                await asyncio.sleep(1.0)
                continue
            if answer.get("status") != "Accepted":
                raise Refused(f"BootNotification answered {answer!r}")
            return station
        raise Refused(f"station {n}: no boot in {ATTEMPTS} attempts")

    async def op_connect(self, group: str, first: int, count: int, concurrency: int = 100,
                         tls: bool = False, deflate: bool = False) -> dict[str, Any]:
        gate = asyncio.Semaphore(concurrency)
        retries: list[int] = []

        async def one(n: int) -> Station:
            async with gate:
                return await self.station(n, tls, deflate, retries)

        started = asyncio.get_running_loop().time()
        stations = await asyncio.gather(*(one(n) for n in range(first, first + count)))
        seconds = asyncio.get_running_loop().time() - started
        self.groups.setdefault(group, []).extend(stations)
        return {"booted": len(stations), "seconds": seconds, "retries": len(retries)}

    async def op_count(self) -> dict[str, Any]:
        return {}

    async def op_close(self, group: str) -> dict[str, Any]:
        stations = self.groups.pop(group, [])
        await asyncio.gather(*(s.close() for s in stations), return_exceptions=True)
        return {"closed": len(stations)}

    async def op_closed(self, group: str, duration: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        latencies: list[float] = []
        stop = loop.time() + duration

        async def back_to_back(station: Station) -> None:
            while loop.time() < stop:
                sent = loop.time()
                await station.report_status()
                latencies.append(loop.time() - sent)

        started = loop.time()
        await asyncio.gather(*(back_to_back(s) for s in self.groups[group]))
        return {"calls": len(latencies), "seconds": loop.time() - started,
                "latencies_ms": [round(x * 1e3, 3) for x in latencies]}

    async def op_open(self, group: str, rate: float, duration: float,
                      detail: bool = False) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        stations = self.groups[group]
        queues: list[asyncio.Queue[float | None]] = [asyncio.Queue() for _ in stations]
        latencies: list[float] = []
        calls: list[list[float]] = []

        async def worker(n: int, station: Station, queue: asyncio.Queue[float | None]) -> None:
            while (due := await queue.get()) is not None:
                await station.report_status()
                latencies.append(loop.time() - due)
                if detail:
                    calls.append([due, round(latencies[-1] * 1e3, 3), n])

        workers = [loop.create_task(worker(n, s, q))
                   for n, (s, q) in enumerate(zip(stations, queues, strict=True))]
        offered = int(rate * duration)
        started = loop.time()
        for k in range(offered):
            due = started + k / rate
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            queues[k % len(queues)].put_nowait(due)
        for queue in queues:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
        found = {"offered": offered, "calls": len(latencies), "seconds": loop.time() - started,
                 "latencies_ms": [round(x * 1e3, 3) for x in latencies]}
        if detail:
            found["calls_detail"] = calls
        return found

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        ops: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
            "connect": self.op_connect, "close": self.op_close, "closed": self.op_closed,
            "open": self.op_open, "count": self.op_count}
        while line := await reader.readline():
            command = orjson.loads(line)
            op = command.pop("op")
            if op == "quit":
                break
            try:
                answer = await ops[op](**command)
            except Exception as exc:  # reported to the driver, which stops the run
                answer = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            usage = resource.getrusage(resource.RUSAGE_SELF)
            answer["cpu"] = usage.ru_utime + usage.ru_stime
            answer["server_calls"] = Station.server_calls
            sys.stdout.write(orjson.dumps(answer).decode() + "\n")
            sys.stdout.flush()
        for group in list(self.groups):
            await self.op_close(group)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="BENCH-")
    parser.add_argument("--ca", help="PEM file of the CA that signed the server's certificate")
    asyncio.run(Generator(parser.parse_args()).run())


if __name__ == "__main__":
    main()

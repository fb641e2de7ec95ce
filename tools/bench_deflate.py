"""permessage-deflate: the server's memory per station and the bytes per message, per choice.

a) Memory. The real `lite-csms serve` runs as a child process on a temporary SQLite file (port
   0; it logs the port it got). N stations (default 1000), registered without a password,
   connect with the `websockets` client, compression on (it offers client_max_window_bits and
   compresses with memLevel 5), boot, and then each sends `--messages` more calls (MeterValues
   with 2 measurands and StatusNotifications, in turn) so that the windows fill as they do in
   the field. Then the server's VmRSS is read from /proc/PID/status. Each server setting is
   a fresh server: deflate off (the client offers, the server refuses), and the window/memLevel
   pairs given. The zlib column is what zlib allocates for one station (deflate: 2^(w+2) +
   2^(m+9) bytes + ~5.8 KiB state; inflate: 2^w + ~7.1 KiB); RSS counts only pages touched.
b) Bytes. One 1.6 station sends 2 StatusNotifications, `--samples` MeterValues and 3
   StatusNotifications; one 2.0.1 station a StatusNotification, TransactionEvent Started,
   `--samples` Updated, Ended and a StatusNotification; both through a counting relay, for
   each window 9..15 with context takeover and without (client_no_context_takeover and
   server_no_context_takeover). The bytes per message are WebSocket frames as they crossed
   (header + payload), per kind and direction.

    python tools/bench_deflate.py [--stations 1000] [--messages 10] [--pairs 15/8,12/5,11/4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websockets
from bench_common import machine_summary, markdown_table
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from lite_csms.db.database import open_database
from lite_csms.db.models import Station

HOST = "127.0.0.1"
PORT_LINE = re.compile(r"serving OCPP-J on \S+ port \[(\d+)")
CONCURRENT_HANDSHAKES = 100
# Stations calling at once; the rest stay connected and idle. Bounds queueing on a busy box.
CONCURRENT_CALLERS = 200
CALL_TIMEOUT = 300.0
T = "2026-11-21T{:02d}:{:02d}:00Z"


# ---- the server -------------------------------------------------------------------------------
@dataclass(slots=True)
class Server:
    process: subprocess.Popen[bytes]
    port: int

    def rss_kib(self) -> int:
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS line")


def register(database: Path, count: int) -> list[str]:
    ids = [f"DFL-{n:04d}" for n in range(count)]
    db = open_database(database)
    with db.atomic():
        Station.insert_many([{"id": sid, "registration": "accepted"} for sid in ids]).execute()
    db.close()
    return ids


@contextmanager
def serve(workdir: Path, database: Path, env: dict[str, str]) -> Iterator[Server]:
    log_path = workdir / "server.log"
    args = [sys.executable, "-m", "lite_csms", "serve", "--host", HOST, "--port", "0",
            "--database", str(database), "--admin-port", "0"]
    full_env = {**os.environ, "LITE_CSMS_BUDGET_POLICY": "0", **env}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT,
                                   env=full_env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            port = _port_from_log(log_path)
            if port:
                break
            if process.poll() is not None:
                raise RuntimeError(f"server exited:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        else:
            raise RuntimeError("server did not listen")
        yield Server(process, port)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _port_from_log(log_path: Path) -> int | None:
    found = PORT_LINE.search(log_path.read_text(errors="replace"))
    return int(found.group(1)) if found else None


# ---- OCPP 1.6 messages, as the `ocpp` package serialises them ---------------------------------
def boot() -> dict[str, Any]:
    return {"chargePointModel": "Wallbox-1", "chargePointVendor": "Bench",
            "firmwareVersion": "1.2.3"}


def meter_values(n: int) -> dict[str, Any]:
    return {"connectorId": 1, "transactionId": 17, "meterValue": [{
        "timestamp": T.format(8 + n // 12, (n * 5) % 60), "sampledValue": [
            {"value": str(100_000 + 617 * n), "context": "Sample.Periodic",
             "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"},
            {"value": str(7400 - (n * 37) % 300), "context": "Sample.Periodic",
             "measurand": "Power.Active.Import", "location": "Outlet", "unit": "W"}]}]}


def status(state: str, n: int) -> dict[str, Any]:
    return {"connectorId": 1, "errorCode": "NoError", "status": state,
            "timestamp": T.format(8 + n // 12, (n * 5) % 60)}


def boot201() -> dict[str, Any]:
    return {"reason": "PowerUp", "chargingStation": {
        "model": "Wallbox-2", "vendorName": "Bench", "firmwareVersion": "2.0.1-7"}}


def status201(state: str, n: int) -> dict[str, Any]:
    return {"timestamp": T.format(8 + n // 12, (n * 5) % 60), "connectorStatus": state,
            "evseId": 1, "connectorId": 1}


def transaction_event(kind: str, n: int) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "eventType": kind, "timestamp": T.format(8 + n // 12, (n * 5) % 60),
        "triggerReason": {"Started": "Authorized", "Updated": "MeterValuePeriodic",
                          "Ended": "EVCommunicationLost"}[kind],
        "seqNo": n, "transactionInfo": {"transactionId": "TX-BENCH-1",
                                        "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": T.format(8 + n // 12, (n * 5) % 60), "sampledValue": [
            {"value": 100_000 + 617 * n, "context": "Sample.Periodic",
             "measurand": "Energy.Active.Import.Register", "location": "Outlet",
             "unitOfMeasure": {"unit": "Wh"}},
            {"value": 7400 - (n * 37) % 300, "context": "Sample.Periodic",
             "measurand": "Power.Active.Import", "location": "Outlet",
             "unitOfMeasure": {"unit": "W"}}]}]}
    if kind == "Started":
        payload["idToken"] = {"idToken": "04A2B3C4", "type": "ISO14443"}
    return payload


def sequence201(samples: int) -> list[tuple[str, dict[str, Any]]]:
    steps: list[tuple[str, dict[str, Any]]] = [
        ("StatusNotification", status201("Occupied", 0)),
        ("TransactionEvent Started", transaction_event("Started", 0))]
    steps += [("TransactionEvent Updated", transaction_event("Updated", n + 1))
              for n in range(samples)]
    steps += [("TransactionEvent Ended", transaction_event("Ended", samples + 1)),
              ("StatusNotification", status201("Available", samples + 1))]
    return steps


def sequence(samples: int) -> list[tuple[str, dict[str, Any]]]:
    steps: list[tuple[str, dict[str, Any]]] = [
        ("StatusNotification", status("Preparing", 0)),
        ("StatusNotification", status("Charging", 0))]
    steps += [("MeterValues", meter_values(n)) for n in range(samples)]
    steps += [("StatusNotification", status(s, samples))
              for s in ("SuspendedEV", "Finishing", "Available")]
    return steps


class Link:
    """One station's CALLs over a `websockets` connection, one outstanding at a time."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, action: str, payload: dict[str, Any]) -> Any:
        self.next_id += 1
        await self.ws.send(json.dumps([2, str(self.next_id), action, payload],
                                      separators=(",", ":")))
        reply = json.loads(await asyncio.wait_for(self.ws.recv(), CALL_TIMEOUT))
        if reply[0] != 3:
            raise RuntimeError(f"{action} refused: {reply}")
        return reply[2]


# ---- a) memory --------------------------------------------------------------------------------
def zlib_kib(window_bits: int, mem_level: int, inflate_bits: int) -> float:
    deflate = (1 << (window_bits + 2)) + (1 << (mem_level + 9)) + 5_952
    inflate = (1 << inflate_bits) + 7_160
    return (deflate + inflate) / 1024


async def connect_all(port: int, ids: list[str], messages: int, compression: bool
                      ) -> list[Any]:
    gate = asyncio.Semaphore(CONCURRENT_HANDSHAKES)
    callers = asyncio.Semaphore(CONCURRENT_CALLERS)
    steps = sequence(max(0, messages - 5))[:messages]
    connections: list[Any] = []
    negotiated = 0

    async def one(sid: str) -> None:
        nonlocal negotiated
        async with gate:
            ws = await websockets.connect(f"ws://{HOST}:{port}/ocpp/{sid}",
                                          subprotocols=["ocpp1.6"], open_timeout=CALL_TIMEOUT,
                                          ping_interval=None,
                                          compression="deflate" if compression else None)
        connections.append(ws)
        if "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", ""):
            negotiated += 1
        link = Link(ws)
        async with callers:
            answer = await link.call("BootNotification", boot())
            if answer.get("status") != "Accepted":
                raise RuntimeError(f"{sid}: boot {answer}")
            for action, payload in steps:
                await link.call(action, payload)

    await asyncio.gather(*(one(sid) for sid in ids))
    print(f"  {len(ids)} stations booted, {messages} more calls each, deflate negotiated "
          f"with {negotiated}", file=sys.stderr)
    return connections


@dataclass(frozen=True, slots=True)
class MemoryRow:
    label: str
    window_bits: int | None
    mem_level: int | None
    baseline_kib: int
    loaded_kib: int
    stations: int

    @property
    def per_station(self) -> float:
        return (self.loaded_kib - self.baseline_kib) / self.stations


def measure_memory(workdir: Path, stations: int, messages: int,
                   pair: tuple[int, int] | None) -> MemoryRow:
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    database = run_dir / "csms.sqlite3"
    ids = register(database, stations + 1)
    env = {"LITE_CSMS_WS_DEFLATE": "0"} if pair is None else {
        "LITE_CSMS_WS_DEFLATE": "1", "LITE_CSMS_WS_DEFLATE_WINDOW_BITS": str(pair[0]),
        "LITE_CSMS_WS_DEFLATE_MEM_LEVEL": str(pair[1])}
    label = "off" if pair is None else f"window {pair[0]}, memLevel {pair[1]}"
    print(f"memory: {label}", file=sys.stderr)

    async def run(server: Server) -> tuple[int, int]:
        # One station first, so that imports and schema compiles are in the baseline.
        warm = await connect_all(server.port, ids[-1:], messages, True)
        for ws in warm:
            await ws.close()
        await asyncio.sleep(1.5)
        baseline = server.rss_kib()
        connections = await connect_all(server.port, ids[:stations], messages, True)
        await asyncio.sleep(2.0)
        loaded = server.rss_kib()
        await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)
        return baseline, loaded

    with serve(run_dir, database, env) as server:
        time.sleep(1.0)
        baseline, loaded = asyncio.run(run(server))
    return MemoryRow(label, None if pair is None else pair[0],
                     None if pair is None else pair[1], baseline, loaded, stations)


def memory_table(rows: list[MemoryRow]) -> str:
    off = next((r for r in rows if r.window_bits is None), None)
    headers = ["server setting", "RSS before MiB", f"RSS with {rows[0].stations} MiB",
               "per station KiB", "extra over off KiB", "zlib allocates KiB"]
    lines = []
    for r in rows:
        extra = "-" if off is None or r is off else f"{r.per_station - off.per_station:.1f}"
        alloc = "-" if r.window_bits is None or r.mem_level is None else \
            f"{zlib_kib(r.window_bits, r.mem_level, r.window_bits):.1f}"
        lines.append([r.label, r.baseline_kib / 1024, r.loaded_kib / 1024, r.per_station,
                      extra, alloc])
    return markdown_table(headers, lines)


# ---- b) bytes per message ---------------------------------------------------------------------
class Relay:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = 0
        self.down = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up: bool) -> None:
        try:
            while data := await reader.read(65536):
                if up:
                    self.up += len(data)
                else:
                    self.down += len(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target_reader, target_writer = await asyncio.open_connection(HOST, self.target_port)
        await asyncio.gather(self._pipe(reader, target_writer, True),
                             self._pipe(target_reader, writer, False))

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


@dataclass
class KindBytes:
    messages: int = 0
    json_in: int = 0
    wire_in: int = 0
    json_out: int = 0
    wire_out: int = 0


async def wire_bytes(port: int, station_id: str, protocol: str, takeover: bool | None,
                     samples: int) -> dict[str, KindBytes]:
    """Frame bytes per kind; takeover None means no deflate at all."""
    relay = Relay(port)
    await relay.start()
    extensions = None
    if takeover is not None:
        extensions = [ClientPerMessageDeflateFactory(
            client_max_window_bits=True, client_no_context_takeover=not takeover,
            server_no_context_takeover=not takeover)]
    ws = await websockets.connect(f"ws://{HOST}:{relay.port}/ocpp/{station_id}",
                                  subprotocols=[protocol], compression=None,
                                  extensions=extensions)
    kinds: dict[str, KindBytes] = {}
    link = Link(ws)
    v16 = protocol == "ocpp1.6"
    try:
        await link.call("BootNotification", boot() if v16 else boot201())
        for kind_name, payload in sequence(samples) if v16 else sequence201(samples):
            action = kind_name.split()[0]
            await asyncio.sleep(0.01)
            up, down = relay.up, relay.down
            text = json.dumps([2, str(link.next_id + 1), action, payload], separators=(",", ":"))
            answer = await link.call(action, payload)
            await asyncio.sleep(0.01)
            reply = json.dumps([3, str(link.next_id), answer], separators=(",", ":"))
            kind = kinds.setdefault(kind_name, KindBytes())
            kind.messages += 1
            kind.json_in += len(text)
            kind.wire_in += relay.up - up
            kind.json_out += len(reply)
            kind.wire_out += relay.down - down
    finally:
        await ws.close()
        relay.close()
    return kinds


def measure_bytes(workdir: Path, samples: int) -> list[list[Any]]:
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    database = run_dir / "csms.sqlite3"
    register(database, 2)
    rows: list[list[Any]] = []
    choices: list[tuple[int | None, bool | None]] = [(None, None)]
    choices += [(bits, takeover) for bits in range(9, 16) for takeover in (True, False)]
    for bits, takeover in choices:
        env = {"LITE_CSMS_WS_DEFLATE": "0" if bits is None else "1"}
        if bits is not None:
            env["LITE_CSMS_WS_DEFLATE_WINDOW_BITS"] = str(bits)
        with serve(run_dir, database, env) as server:
            kinds = asyncio.run(wire_bytes(server.port, "DFL-0000", "ocpp1.6", takeover,
                                           samples))
            kinds201 = asyncio.run(wire_bytes(server.port, "DFL-0001", "ocpp2.0.1", takeover,
                                              samples))
        label = "off" if bits is None else f"{bits}"
        take = "-" if takeover is None else ("on" if takeover else "off")
        row: list[Any] = [label, take]
        for kind in (kinds["MeterValues"], kinds["StatusNotification"],
                     kinds201["TransactionEvent Updated"], kinds201["StatusNotification"]):
            row += [kind.json_in / kind.messages, kind.wire_in / kind.messages,
                    kind.wire_out / kind.messages]
        rows.append(row)
        print(f"bytes: window {label}, takeover {take}: {rows[-1][2:]}", file=sys.stderr)
    return rows


def bytes_table(rows: list[list[Any]]) -> str:
    headers = ["window bits", "context takeover"]
    for kind in ("1.6 MeterValues", "1.6 StatusNotification", "2.0.1 TransactionEvent Updated",
                 "2.0.1 StatusNotification"):
        headers += [f"{kind} JSON", "frame in", "answer frame out"]
    return markdown_table(headers, rows, label_columns=2)


# ---- main -------------------------------------------------------------------------------------
def parse_pairs(text: str) -> list[tuple[int, int]]:
    pairs = []
    for item in text.split(","):
        window, level = item.split("/")
        pairs.append((int(window), int(level)))
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=10,
                        help="calls per station after its boot, before RSS is read")
    parser.add_argument("--pairs", default="15/8,12/5,11/4,10/3,9/2",
                        help="server window bits/memLevel pairs to measure")
    parser.add_argument("--samples", type=int, default=24,
                        help="MeterValues in the byte sequence")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-bytes", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-deflate-") as tmp:
        workdir = Path(tmp)
        print(machine_summary(["websockets", "wsproto", "trio-websocket"]))
        if not args.skip_memory:
            rows = [measure_memory(workdir, args.stations, args.messages, None)]
            rows += [measure_memory(workdir, args.stations, args.messages, pair)
                     for pair in parse_pairs(args.pairs)]
            print(f"\nMemory, {args.stations} stations, boot + {args.messages} calls each:\n")
            print(memory_table(rows))
        if not args.skip_bytes:
            print(f"\nBytes per message ({args.samples} meter samples with 2 measurands per "
                  "transaction; 1.6 MeterValues, 2.0.1 TransactionEvent Updated; WebSocket "
                  "frames as they crossed):\n")
            print(bytes_table(measure_bytes(workdir, args.samples)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

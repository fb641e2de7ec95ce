#!/usr/bin/env python3
"""Short sessions on the wire: the station's kernel, tcpdump and `budget report` side by side.

A third-party charger (the `ocpp` package's ChargePoint over `websockets`, TLS) connects
--connections times within --seconds of real time to `lite-csms serve`. Each connection
sends a BootNotification, two StatusNotifications and a Heartbeat at field pace (a pause
between exchanges), then closes normally or drops its TCP connection (alternately). Three
counts of IP bytes, both directions, per connection and in total:

- kernel: the charger's own socket, TCP_INFO read once the connection has fully closed
  (the socket is held open by a second descriptor so the kernel still answers);
- tcpdump: every packet of the connection on loopback (only as root with tcpdump present);
- server: what lite-csms stored, read back from SQLite as `budget report` reads it.

A segment sent twice crosses the wire twice and its sender's kernel counts it twice, but the
receiving kernel counts its payload once (the second copy is a duplicate it drops): each end
knows only its own retransmitted payload (tcpi_bytes_retrans). On loopback the charger's
tail-loss probes fire after a few milliseconds without an ACK, so a loaded machine makes
them. The kernel and server columns are therefore compared net of each end's own
retransmitted payload, which is printed beside (as tools/traffic_sim.py does).

    python tools/bench_accounting.py --connections 4 --seconds 45
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import os
import shutil
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import websockets
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common
import throwaway_tls

from lite_csms.budget import tcpinfo

STATION = "CS-ACCT"
# tcp_states: the kernel's last state once both FINs are through (the descriptor still open).
TCP_CLOSE = 7


# ---- the station's kernel ------------------------------------------------------------------
@dataclass
class KernelCount:
    """One connection's IP bytes as the station's kernel saw them (CSMS's view: in = to it)."""

    client_port: int
    close: str
    ip_in: int = 0
    ip_out: int = 0
    state: int = 0
    # Payload the charger's kernel sent a second time (tcpi_bytes_retrans): on the wire and
    # in ip_in, but counted once by the receiving kernel.
    retransmitted: int = 0

    @property
    def total(self) -> int:
        return self.ip_in + self.ip_out

    @property
    def net_in(self) -> int:
        """ip_in without the charger's retransmitted payload: what the CSMS's kernel counts."""
        return self.ip_in - self.retransmitted


def kernel_ip_bytes(counters: tcpinfo.TcpCounters, family: int) -> tuple[int, int]:
    """The station's counters as IP bytes (received, sent), handshake options included.

    Every segment is one IP+TCP header (timestamps included once negotiated) plus its data.
    The SYN and SYN-ACK carry 20 option bytes instead; the SYN and the FINs take a sequence
    byte each that is not data, which bytes_acked/bytes_received count.
    """
    ip = tcpinfo.ip_bytes(counters, family)
    received, sent = ip.bytes_in, ip.bytes_out
    extra = tcpinfo.SYN_OPTIONS - (tcpinfo.TIMESTAMP_OPTION if counters.timestamps else 0)
    return received + extra, sent + extra


class HeldSocket:
    """A second descriptor on the charger's socket, so TCP_INFO stays readable after the
    client library closes its own: the kernel keeps a socket while any descriptor holds it."""

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        self.family = sock.family
        self.port = sock.getsockname()[1]
        self.sock = socket.socket(fileno=os.dup(sock.fileno()))

    def read(self) -> tcpinfo.TcpCounters:
        counters = tcpinfo.read(self.sock)
        assert counters is not None, "TCP_INFO is needed (Linux)"
        return counters

    async def finish(self, timeout: float = 3.0) -> tcpinfo.TcpCounters:
        """The library has closed its descriptor; send the FIN it would have sent, wait until
        both FINs are through, and read the final counters before letting go."""
        deadline = time.monotonic() + timeout
        if self.read().state != TCP_CLOSE:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # already reset by the peer
        while self.read().state != TCP_CLOSE and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        final = self.read()
        if self._peer_fin_arrived():
            # The peer's FIN takes a sequence number that bytes_received counts.
            final = dataclasses.replace(final, bytes_in=final.bytes_in - 1)
        self.sock.close()
        return final

    def _peer_fin_arrived(self) -> bool:
        # The library read everything before it let go; an empty read now is the FIN.
        try:
            return self.sock.recv(1, socket.MSG_DONTWAIT) == b""
        except OSError:
            return False  # nothing yet, or reset


async def one_connection(url: str, password: str, client_tls: ssl.SSLContext, pace: float,
                         drop: bool) -> KernelCount:
    auth = base64.b64encode(f"{STATION}:{password}".encode()).decode()
    ws = await websockets.connect(url, subprotocols=["ocpp1.6"], ssl=client_tls,
                                  additional_headers={"Authorization": f"Basic {auth}"})
    held = HeldSocket(ws.transport)
    cp = ChargePoint16(STATION, ws)
    listener = asyncio.create_task(cp.start())
    try:
        boot = await cp.call(call16.BootNotification(
            charge_point_model="Wallbox-1", charge_point_vendor="Bench"))
        assert boot.status == "Accepted", boot
        for status in ("Available", "Preparing"):
            await asyncio.sleep(pace)
            await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError",
                                                    status=status))
        await asyncio.sleep(pace)
        await cp.call(call16.Heartbeat())
        await asyncio.sleep(pace)
    finally:
        listener.cancel()
    if drop:
        # The link goes: no WebSocket close, no TLS close_notify, the socket just closes.
        ws.transport.abort()
    else:
        await ws.close()
    await ws.wait_closed()
    final = await held.finish()
    ip_in, ip_out = kernel_ip_bytes(final, held.family)
    # The station sends what the CSMS receives.
    return KernelCount(held.port, "drop" if drop else "normal", ip_in=ip_out, ip_out=ip_in,
                       state=final.state, retransmitted=final.bytes_retrans)


async def run_station(url: str, password: str, client_tls: ssl.SSLContext, connections: int,
                      seconds: float) -> list[KernelCount]:
    """`connections` connections spread evenly over `seconds`, alternately closed normally
    and dropped; the exchanges inside each take about half of its slot."""
    slot = seconds / connections
    pace = slot / 2 / 4
    started = time.monotonic()
    counts = []
    for n in range(connections):
        await asyncio.sleep(max(0.0, started + n * slot - time.monotonic()))
        counts.append(await one_connection(url, password, client_tls, pace, drop=n % 2 == 1))
    return counts


# ---- the server ----------------------------------------------------------------------------
@dataclass
class Server:
    port: int
    database: Path
    password: str
    client_tls: ssl.SSLContext
    flush_interval: float

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/ocpp/{STATION}"


@contextmanager
def running_server(workdir: Path, flush_interval: float = 0.2) -> Iterator[Server]:
    """`lite-csms serve` with TLS on a throwaway certificate and one station with a password."""
    cert_file, key_file, client_tls = throwaway_tls.issue(workdir)
    database = workdir / "csms.sqlite3"
    env = {**os.environ, "LITE_CSMS_DATABASE": str(database), "LITE_CSMS_HOST": "127.0.0.1",
           "LITE_CSMS_TLS_CERT": str(cert_file),
           "LITE_CSMS_TLS_KEY": str(key_file), "LITE_CSMS_ADMIN_ENABLED": "0",
           "LITE_CSMS_BUDGET_POLICY": "0", "LITE_CSMS_LOG_LEVEL": "WARNING",
           "LITE_CSMS_TRAFFIC_FLUSH_INTERVAL": str(flush_interval)}
    added = subprocess.run([sys.executable, "-m", "lite_csms", "station", "add", STATION],
                           env=env, capture_output=True, text=True, check=True, timeout=60)
    password = next(line.split(": ", 1)[1] for line in added.stdout.splitlines()
                    if line.startswith("password: "))
    with bench_common.serving(env, workdir, 20) as served:
        yield Server(served.port, database, password, client_tls, flush_interval)


def wait_stored(database: Path, connections: int, timeout: float = 20.0) -> None:
    """Until the server has written every connection's row (one flush after its close)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(database) as db:
            stored = db.execute("SELECT COUNT(*) FROM traffic_connection WHERE station_id = ?",
                                (STATION,)).fetchone()[0]
        if stored >= connections:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the server stored {stored} of {connections} connections")


def server_counts(database: Path) -> dict[str, Any]:
    """What the server stored: IP bytes by direction, per connection and by action, and per
    connection the server's own retransmitted payload (in its IP out, not in the charger's)."""
    with sqlite3.connect(database) as db:
        totals = dict(db.execute(
            "SELECT direction, SUM(bytes) FROM traffic_counter WHERE layer = 'ip' "
            "AND station_id = ? GROUP BY direction", (STATION,)).fetchall())
        connections = db.execute(
            "SELECT ip_bytes_in, ip_bytes_out, close_reason FROM traffic_connection "
            "WHERE station_id = ? ORDER BY opened_at, id", (STATION,)).fetchall()
        retransmitted = [amount for (amount,) in db.execute(
            "SELECT retransmitted_bytes FROM traffic_connection "
            "WHERE station_id = ? ORDER BY opened_at, id", (STATION,)).fetchall()]
        layers = {f"{layer}_{direction}": amount for layer, direction, amount in db.execute(
            "SELECT layer, direction, SUM(bytes) FROM traffic_counter WHERE station_id = ? "
            "GROUP BY layer, direction", (STATION,)).fetchall()}
        teardown = dict(db.execute(
            "SELECT direction, SUM(bytes) FROM traffic_counter WHERE layer = 'ip' "
            "AND station_id = ? AND action = '(teardown)' GROUP BY direction",
            (STATION,)).fetchall())
    return {"in": totals.get("in", 0), "out": totals.get("out", 0),
            "connections": connections, "retransmitted": retransmitted, "teardown": teardown,
            "layers": layers}


def budget_report(database: Path) -> dict[str, Any]:
    """The station's record from `lite-csms budget report --json`, as an operator reads it."""
    done = subprocess.run([sys.executable, "-m", "lite_csms", "budget", "report", "--json",
                           "--station", STATION, "--database", str(database)],
                          capture_output=True, text=True, check=True, timeout=60)
    record: dict[str, Any] = json.loads(done.stdout)["stations"][0]
    return record


# ---- tcpdump -------------------------------------------------------------------------------
@contextmanager
def capture(port: int, workdir: Path) -> Iterator[Path | None]:
    """tcpdump on loopback for the server's port, if it can run here (root, installed)."""
    tool = shutil.which("tcpdump")
    if tool is None or os.geteuid() != 0:
        yield None
        return
    path = workdir / "wire.pcap"
    process = subprocess.Popen([tool, "-i", "lo", "-n", "-s", "128", "-U", "-w", str(path),
                                f"tcp port {port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # tcpdump says "listening on lo" once it captures.
    assert process.stderr is not None
    process.stderr.readline()
    try:
        yield path
    finally:
        time.sleep(0.5)
        process.terminate()
        process.wait(timeout=10)


@dataclass
class WireCount:
    ip_in: int = 0
    ip_out: int = 0
    packets: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ip_in + self.ip_out


def read_pcap(path: Path, server_port: int) -> dict[int, WireCount]:
    """IP bytes per client port from a loopback capture (IPv4 over Ethernet framing)."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data, 0)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    link_header = {1: 14, 113: 16, 276: 20}[linktype]
    counts: dict[int, WireCount] = {}
    offset = 24
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack_from(endian + "IIII", data, offset)
        packet = data[offset + 16: offset + 16 + captured]
        offset += 16 + captured
        ip = packet[link_header:]
        if len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        total_length = struct.unpack_from("!H", ip, 2)[0]
        tcp = ip[(ip[0] & 0x0F) * 4:]
        source, destination = struct.unpack_from("!HH", tcp, 0)
        flags = tcp[13]
        names = "".join(n for bit, n in ((2, "S"), (1, "F"), (4, "R"), (8, "P"), (16, "."))
                        if flags & bit)
        to_server = destination == server_port
        count = counts.setdefault(source if to_server else destination, WireCount())
        if to_server:
            count.ip_in += total_length
        else:
            count.ip_out += total_length
        count.packets.append(("in" if to_server else "out", total_length, names))
    return counts


# ---- the run -------------------------------------------------------------------------------
def measure(connections: int, seconds: float, workdir: Path) -> dict[str, Any]:
    with running_server(workdir) as server, capture(server.port, workdir) as pcap:
        kernel = asyncio.run(run_station(server.url, server.password, server.client_tls,
                                         connections, seconds))
        wait_stored(server.database, connections)
        stored = server_counts(server.database)
    wire = read_pcap(pcap, server.port) if pcap is not None and pcap.exists() else None
    rows = []
    for n, count in enumerate(kernel):
        stored_in, stored_out, reason = stored["connections"][n]
        server_retransmitted = stored["retransmitted"][n]
        seen = None if wire is None else wire.get(count.client_port)
        rows.append({**asdict(count), "kernel": count.total,
                     "tcpdump": None if seen is None else seen.total,
                     "tcpdump_in": None if seen is None else seen.ip_in,
                     "tcpdump_out": None if seen is None else seen.ip_out,
                     "packets": None if seen is None else seen.packets[-8:],
                     "server_in": stored_in, "server_out": stored_out,
                     "server": stored_in + stored_out, "close_reason": reason,
                     "server_retransmitted": server_retransmitted,
                     # Each end net of its own retransmitted payload (see the docstring).
                     "net_difference": (stored_in + stored_out - server_retransmitted)
                     - (count.total - count.retransmitted)})
    kernel_total = sum(c.total for c in kernel)
    wire_total = None if wire is None else sum(r["tcpdump"] or 0 for r in rows)
    server_total = stored["in"] + stored["out"]
    station_retransmitted = sum(c.retransmitted for c in kernel)
    server_retransmitted = sum(stored["retransmitted"])
    net_kernel = kernel_total - station_retransmitted
    net_server = server_total - server_retransmitted
    return {"connections": rows, "kernel": kernel_total, "tcpdump": wire_total,
            "server": server_total, "server_teardown": stored["teardown"],
            "server_layers": stored["layers"],
            "retransmitted": {"station": station_retransmitted, "server": server_retransmitted},
            "difference_pct": round(100 * (net_server - net_kernel) / net_kernel, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.connections, args.seconds, Path(tmp))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    # The last column compares each end net of its own retransmitted payload.
    print("| connection | close | station kernel | tcpdump | server "
          "| retransmitted (station/server) | server - kernel |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for n, row in enumerate(result["connections"], 1):
        print(f"| {n} | {row['close']} | {row['kernel']:,} | "
              f"{'-' if row['tcpdump'] is None else format(row['tcpdump'], ',')} | "
              f"{row['server']:,} | {row['retransmitted']}/{row['server_retransmitted']} | "
              f"{row['net_difference']:+,} |")
    wire = result["tcpdump"]
    again = result["retransmitted"]
    print(f"| **total** | | {result['kernel']:,} | {'-' if wire is None else format(wire, ',')}"
          f" | {result['server']:,} | {again['station']}/{again['server']} "
          f"| {result['difference_pct']:+.2f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

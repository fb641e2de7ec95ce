"""permessage-deflate (RFC 7692): negotiation, interop with `websockets`, bombs, accounting.

The server runs as `lite-csms serve` in a child process. A small loopback relay between the
charger and the server counts the bytes that really crossed, each way.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import os
import socket
import sqlite3
import ssl
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import websockets
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from lite_csms.budget.meter import CONTROL, PAYLOAD, WS, ConnectionMeter
from lite_csms.net.deflate import BoundedPerMessageDeflate, DeflateOptions, OfferError, parse_offer
from tests.conftest import REPO, CsmsProcess, start_csms_process, stop_csms_process

T = "2026-11-21T{}:00Z"


# ---- negotiation, by RFC 7692 section 7 ------------------------------------------------------
def _accept(offer: str, window_bits: int = 11) -> tuple[str | None, BoundedPerMessageDeflate]:
    extension = BoundedPerMessageDeflate(DeflateOptions(window_bits=window_bits))
    return extension.accept(offer), extension


def test_plain_offer_gets_our_server_window_and_no_client_window():
    response, ext = _accept("permessage-deflate")
    # 7.1.2.1: a server may limit its own window unasked; 7.1.2.2: it must not name the
    # client's window when the client did not offer client_max_window_bits.
    assert response == "server_max_window_bits=11"
    assert ext.enabled() and ext.server_max_window_bits == 11
    assert ext.client_max_window_bits == 15
    assert not ext.client_no_context_takeover and not ext.server_no_context_takeover


def test_client_window_offered_without_value_gets_ours():
    response, ext = _accept("permessage-deflate; client_max_window_bits")
    assert response == "server_max_window_bits=11; client_max_window_bits=11"
    assert ext.client_max_window_bits == 11


def test_smaller_windows_and_no_context_takeover_are_honoured():
    response, ext = _accept("permessage-deflate; server_no_context_takeover; "
                            "client_no_context_takeover; server_max_window_bits=10; "
                            'client_max_window_bits="9"')
    assert response == ("server_no_context_takeover; client_no_context_takeover; "
                        "server_max_window_bits=10; client_max_window_bits=9")
    assert ext.server_no_context_takeover and ext.client_no_context_takeover
    assert (ext.server_max_window_bits, ext.client_max_window_bits) == (10, 9)


def test_larger_windows_than_ours_are_lowered():
    response, _ = _accept("permessage-deflate; server_max_window_bits=15; "
                          "client_max_window_bits=15", window_bits=12)
    assert response == "server_max_window_bits=12; client_max_window_bits=12"


def test_full_window_is_not_named_unasked():
    response, _ = _accept("permessage-deflate", window_bits=15)
    assert response == ""


@pytest.mark.parametrize("offer", [
    "permessage-deflate; server_max_window_bits=8",
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; client_max_window_bits=16",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; client_no_context_takeover=1",
    "permessage-deflate; x_webkit_deflate_frame",
    # Malformed by RFC 7692 7.1.2.1 (decimal, no leading zeros, ASCII) or nameless.
    "permessage-deflate; =5",
    "permessage-deflate; client_max_window_bits=010",
    "permessage-deflate; client_max_window_bits=" + "9" * 5000,
    "permessage-deflate; client_max_window_bits=\u0661\u0662",
    "permessage-deflate; server_max_window_bits=+9",
])
def test_offers_rfc7692_forbids_are_declined_without_side_effects(offer):
    response, ext = _accept(offer)
    assert response is None and not ext.enabled()
    assert not ext.server_no_context_takeover and not ext.client_no_context_takeover


def test_first_acceptable_offer_wins():
    ext = BoundedPerMessageDeflate(DeflateOptions())
    assert ext.accept("permessage-deflate; server_max_window_bits=8") is None
    assert ext.accept("permessage-deflate; client_no_context_takeover") is not None
    assert ext.accept("permessage-deflate; server_no_context_takeover") is None
    assert ext.client_no_context_takeover and not ext.server_no_context_takeover


def test_parse_offer_reads_quoted_values():
    assert parse_offer('permessage-deflate; client_max_window_bits="12"').client_max_window_bits \
        == 12
    with pytest.raises(OfferError):
        parse_offer("permessage-deflate; server_max_window_bits=abc")


# ---- a relay that counts what crossed ---------------------------------------------------------
@dataclass
class Relay:
    port: int = 0
    up: int = 0
    down: int = 0
    server: asyncio.Server | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def start_relay(target_port: int) -> Relay:
    relay = Relay()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool) -> None:
        try:
            while data := await reader.read(65536):
                if up:
                    relay.up += len(data)
                else:
                    relay.down += len(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target_reader, target_writer = await asyncio.open_connection("127.0.0.1", target_port)
        relay.tasks += [asyncio.create_task(pipe(reader, target_writer, True)),
                        asyncio.create_task(pipe(target_reader, writer, False))]

    relay.server = await asyncio.start_server(handle, "127.0.0.1", 0)
    relay.port = relay.server.sockets[0].getsockname()[1]
    return relay


def register(csms: CsmsProcess, station_id: str) -> str:
    added = csms.cli("station", "add", station_id)
    assert added.returncode == 0, added.stderr
    return next(line.split(": ", 1)[1] for line in added.stdout.splitlines()
                if line.startswith("password: "))


@dataclass
class Outcome:
    extensions: str
    up: int
    down: int
    # What crossed during the HTTP upgrade, part of up and down.
    handshake_up: int
    handshake_down: int
    sent_json: int
    received_json: int


async def run_station(csms: CsmsProcess, station_id: str, password: str,
                      compression: str | None = "deflate",
                      extensions: Sequence[ClientPerMessageDeflateFactory] = (),
                      meter_values: int = 6, tls: ssl.SSLContext | None = None) -> Outcome:
    """Boot, heartbeat, status and a few meter values from the `ocpp` ChargePoint."""
    relay = await start_relay(csms.port)
    auth = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    scheme, tls_options = ("ws", {}) if tls is None else (
        "wss", {"ssl": tls, "server_hostname": "127.0.0.1"})
    ws = await websockets.connect(
        f"{scheme}://127.0.0.1:{relay.port}/ocpp/{station_id}", subprotocols=["ocpp1.6"],
        additional_headers={"Authorization": f"Basic {auth}"},
        compression=compression, extensions=list(extensions) or None, **tls_options)
    await asyncio.sleep(0.05)
    handshake = (relay.up, relay.down)
    sizes = {"sent": 0, "received": 0}
    original_send, original_recv = ws.send, ws.recv

    async def send(message: str) -> None:
        sizes["sent"] += len(message.encode())
        await original_send(message)

    async def recv(*args: object, **kwargs: object) -> str:
        message = await original_recv(*args, **kwargs)
        sizes["received"] += len(message.encode() if isinstance(message, str) else message)
        return message

    ws.send, ws.recv = send, recv  # type: ignore[method-assign]
    cp = ChargePoint16(station_id, ws)
    listener = asyncio.create_task(cp.start())
    try:
        boot = await cp.call(call16.BootNotification(
            charge_point_model="Wallbox-1", charge_point_vendor="Interop", firmware_version="1.2"))
        assert boot.status == "Accepted"
        beat = await cp.call(call16.Heartbeat())
        assert beat.current_time
        for status in ("Preparing", "Charging"):
            await cp.call(call16.StatusNotification(
                connector_id=1, error_code="NoError", status=status, timestamp=T.format("08:00")))
        for n in range(meter_values):
            await cp.call(call16.MeterValues(connector_id=1, meter_value=[
                {"timestamp": T.format(f"08:{n:02d}"), "sampled_value": [
                    {"value": str(100_000 + 250 * n), "measurand": "Energy.Active.Import.Register",
                     "unit": "Wh", "context": "Sample.Periodic"},
                    {"value": str(7400 + n), "measurand": "Power.Active.Import", "unit": "W",
                     "context": "Sample.Periodic"}]}]))
        header = ws.response.headers.get("Sec-WebSocket-Extensions", "")
    finally:
        listener.cancel()
        await ws.close()
        await asyncio.sleep(0.1)
        assert relay.server is not None
        relay.server.close()
        for task in relay.tasks:
            task.cancel()
    return Outcome(header, relay.up, relay.down, *handshake, sizes["sent"], sizes["received"])


def test_websockets_client_negotiates_deflate_and_sends_fewer_bytes(csms_process):
    password = register(csms_process, "DF-1")
    compressed = asyncio.run(run_station(csms_process, "DF-1", password))
    plain = asyncio.run(run_station(csms_process, "DF-1", password, compression=None))
    assert compressed.extensions.startswith("permessage-deflate")
    assert "server_max_window_bits=11" in compressed.extensions
    assert "client_max_window_bits=11" in compressed.extensions
    assert plain.extensions == ""
    # The same conversation, the same JSON; context takeover makes the repeats nearly free.
    assert compressed.sent_json == plain.sent_json

    def frames(o: Outcome) -> tuple[int, int]:
        return o.up - o.handshake_up, o.down - o.handshake_down

    assert frames(compressed)[0] < 0.5 * frames(plain)[0]
    # The answers are short ({} mostly): less to gain, but still fewer bytes.
    assert frames(compressed)[1] < 0.9 * frames(plain)[1]


def test_client_no_context_takeover_is_honoured(csms_process):
    password = register(csms_process, "DF-2")
    outcome = asyncio.run(run_station(
        csms_process, "DF-2", password, compression=None,
        extensions=[ClientPerMessageDeflateFactory(client_no_context_takeover=True,
                                                   client_max_window_bits=True)]))
    assert "client_no_context_takeover" in outcome.extensions
    assert "server_no_context_takeover" not in outcome.extensions


def test_server_no_context_takeover_and_client_window_are_honoured(csms_process):
    password = register(csms_process, "DF-3")
    # websockets resets its inflater after every message here: had the server kept its context,
    # the repeated answers would refer to bytes the client no longer has and fail to inflate.
    outcome = asyncio.run(run_station(
        csms_process, "DF-3", password, compression=None,
        extensions=[ClientPerMessageDeflateFactory(server_no_context_takeover=True,
                                                   client_max_window_bits=10)]))
    assert "server_no_context_takeover" in outcome.extensions
    assert "client_max_window_bits=10" in outcome.extensions
    assert "server_max_window_bits=11" in outcome.extensions


def test_deflate_off_is_refused_politely(tmp_path, monkeypatch):
    monkeypatch.setenv("LITE_CSMS_WS_DEFLATE", "false")
    csms = start_csms_process(tmp_path)
    try:
        password = register(csms, "DF-4")
        outcome = asyncio.run(run_station(csms, "DF-4", password))
        assert outcome.extensions == ""
    finally:
        stop_csms_process(csms)


# ---- bombs ---------------------------------------------------------------------------------
def _masked_frame(payload: bytes, *, rsv1: bool, opcode: int = 1, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return header + mask + masked


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def _repeated_deflate(head: bytes, chunk: bytes, times: int) -> bytes:
    """_raw_deflate(head + chunk * times) without compressing it all: after a full flush a
    compressor starts afresh on a byte boundary, so one compressed chunk can be repeated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    return (start + block * times)[:-4]


def test_a_repeated_deflate_inflates_to_the_whole_text() -> None:
    inflated = zlib.decompressobj(-15).decompress(
        _repeated_deflate(b"[", b" " * 1000, 5) + b"\x00\x00\xff\xff")
    assert inflated == b"[" + b" " * 5000


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _raw_upgrade(port: int, station_id: str, password: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    auth = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((
        f"GET /ocpp/{station_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: ocpp1.6\r\nAuthorization: Basic " + auth + "\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    ).encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    head, _, rest = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"permessage-deflate" in head
    return sock, rest


def _frames(sock: socket.socket, buffer: bytes, count: int) -> list[tuple[int, bool, bytes]]:
    """`count` unmasked server frames: (opcode, rsv1, payload)."""
    frames = []
    sock.settimeout(10)
    while len(frames) < count:
        if len(buffer) >= 2:
            length, offset = buffer[1] & 0x7F, 2
            if length == 126 and len(buffer) >= 4:
                length, offset = struct.unpack("!H", buffer[2:4])[0], 4
            if len(buffer) >= offset + length:
                frames.append((buffer[0] & 0x0F, bool(buffer[0] & 0x40),
                               buffer[offset:offset + length]))
                buffer = buffer[offset + length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, "server closed"
        buffer += chunk
    return frames


def test_pings_between_and_inside_compressed_messages(csms_process):
    password = register(csms_process, "DF-PING")
    sock, rest = _raw_upgrade(csms_process.port, "DF-PING", password)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)

    def deflate(text: bytes) -> bytes:
        return (compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]

    inflater = zlib.decompressobj(-15)
    try:
        boot = (b'[2,"1","BootNotification",{"chargePointModel":"M",'
                b'"chargePointVendor":"V"}]')
        sock.sendall(_masked_frame(b"p1", rsv1=False, opcode=9)
                     + _masked_frame(deflate(boot), rsv1=True))
        # A fragmented compressed message with a ping between its fragments (RFC 6455 5.4).
        beat = deflate(b'[2,"2","Heartbeat",{}]')
        sock.sendall(_masked_frame(beat[:5], rsv1=True, fin=False)
                     + _masked_frame(b"p2", rsv1=False, opcode=9)
                     + _masked_frame(beat[5:], rsv1=False, opcode=0))
        frames = _frames(sock, rest, 4)
        assert [(op, payload) for op, _, payload in frames if op == 10] == [(10, b"p1"),
                                                                            (10, b"p2")]
        answers = [inflater.decompress(payload + b"\x00\x00\xff\xff")
                   for op, rsv1, payload in frames if op == 1 and rsv1]
        assert answers[0].startswith(b'[3,"1",{') and b'"status":"Accepted"' in answers[0]
        assert answers[1].startswith(b'[3,"2",{"currentTime"')
    finally:
        sock.close()


def _close_code(sock: socket.socket, buffer: bytes) -> int | None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        while len(buffer) >= 2:
            opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
            offset = 2 if length < 126 else 4
            if length == 126:
                length = struct.unpack("!H", buffer[2:4])[0]
            if len(buffer) < offset + length:
                break
            payload, buffer = buffer[offset:offset + length], buffer[offset + length:]
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0]
        try:
            chunk = sock.recv(65536)
        except ConnectionError:
            return None
        if not chunk:
            return None
        buffer += chunk
    return None


def test_deflate_bomb_is_closed_with_1009_without_inflating_it(csms_process):
    password = register(csms_process, "DF-BOMB")
    pid = csms_process.process.pid
    # 300 MB of one byte compress to about 300 kB; inflated in full it would show in RSS.
    bomb = _repeated_deflate(b"[", b" " * 1_000_000, 300)
    before = _peak_rss_kib(pid)
    sock, rest = _raw_upgrade(csms_process.port, "DF-BOMB", password)
    try:
        try:
            sock.sendall(_masked_frame(bomb, rsv1=True))
        except ConnectionError:
            pass  # the server may close before it has read the whole frame
        assert _close_code(sock, rest) == 1009
    finally:
        sock.close()
    # The peak grew by far less than one inflated bomb (300 MB): it was never inflated whole.
    assert _peak_rss_kib(pid) - before < 30_000
    assert csms_process.process.poll() is None
    assert "message inflates past 65536 bytes" in csms_process.log()
    outcome = asyncio.run(run_station(csms_process, "DF-BOMB", password, meter_values=1))
    assert outcome.extensions.startswith("permessage-deflate")


def test_message_just_under_the_limit_inflates(csms_process):
    password = register(csms_process, "DF-BIG")
    sock, rest = _raw_upgrade(csms_process.port, "DF-BIG", password)
    try:
        # A valid-JSON call of 60 kB: answered (a CALLERROR or result), not closed.
        call = b'[2,"1","DataTransfer",{"vendorId":"x","data":"' + b"a" * 60_000 + b'"}]'
        sock.sendall(_masked_frame(_raw_deflate(call), rsv1=True))
        sock.settimeout(10)
        data = rest
        while len(data) < 2:
            data += sock.recv(65536)
        assert data[0] & 0x0F == 1  # a text frame back, not a close
    finally:
        sock.close()


# ---- accounting ----------------------------------------------------------------------------
def test_ws_layer_counts_compressed_bytes_and_payload_layer_counts_json(csms_process):
    password = register(csms_process, "DF-ACC")
    outcome = asyncio.run(run_station(csms_process, "DF-ACC", password))
    assert outcome.extensions.startswith("permessage-deflate")
    stop_csms_process(csms_process)  # its last flush writes every counter
    db = sqlite3.connect(csms_process.database)
    totals = dict(((d, layer), b) for d, layer, b in db.execute(
        "SELECT direction, layer, SUM(bytes) FROM traffic_counter WHERE station_id = 'DF-ACC' "
        "GROUP BY direction, layer"))
    # The payload layer is the JSON, exactly as the charger sent and received it.
    assert totals[("in", "payload")] == outcome.sent_json
    assert totals[("out", "payload")] == outcome.received_json
    # The WebSocket layer is everything that crossed the relay (upgrade, frames, close): the
    # wire, and so less than the JSON it carries.
    assert totals[("in", "ws")] == outcome.up
    assert totals[("out", "ws")] == outcome.down
    messages = dict(db.execute(
        "SELECT layer, SUM(bytes) FROM traffic_counter WHERE station_id = 'DF-ACC' AND "
        "direction = 'in' AND action NOT LIKE '(%' GROUP BY layer"))
    assert 0 < messages["ws"] < 0.6 * messages["payload"]


def _throwaway_tls(workdir: Path) -> tuple[Path, Path, ssl.SSLContext]:
    spec = importlib.util.spec_from_file_location("throwaway_tls",
                                                  REPO / "tools" / "throwaway_tls.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.issue(workdir)


def test_deflate_over_tls_is_counted_at_every_layer(tmp_path, monkeypatch):
    cert, key, client = _throwaway_tls(tmp_path)
    monkeypatch.setenv("LITE_CSMS_TLS_CERT", str(cert))
    monkeypatch.setenv("LITE_CSMS_TLS_KEY", str(key))
    csms = start_csms_process(tmp_path)
    try:
        password = register(csms, "DF-TLS")
        outcome = asyncio.run(run_station(csms, "DF-TLS", password, tls=client))
    finally:
        stop_csms_process(csms)
    assert outcome.extensions.startswith("permessage-deflate")
    db = sqlite3.connect(csms.database)
    totals = dict(((d, layer), b) for d, layer, b in db.execute(
        "SELECT direction, layer, SUM(bytes) FROM traffic_counter WHERE station_id = 'DF-TLS' "
        "GROUP BY direction, layer"))
    assert totals[("in", "payload")] == outcome.sent_json
    # TLS records are what crossed the relay, close_notify aside (at most one record each way).
    assert 0 <= outcome.up - totals[("in", "tls")] <= 24
    assert 0 <= outcome.down - totals[("out", "tls")] <= 24
    assert totals[("in", "tls")] > totals[("in", "ws")]
    messages = dict(db.execute(
        "SELECT layer, SUM(bytes) FROM traffic_counter WHERE station_id = 'DF-TLS' AND "
        "direction = 'in' AND action NOT LIKE '(%' GROUP BY layer"))
    # Frames inside records: TLS adds its overhead to the compressed frames, not to the JSON.
    assert messages["ws"] < messages["tls"] < messages["payload"]
    assert messages["ws"] < 0.6 * messages["payload"]


def test_meter_holds_compressed_frames_until_their_message_is_tallied():
    meter = ConnectionMeter(None)
    extension = BoundedPerMessageDeflate(DeflateOptions())
    assert extension.accept("permessage-deflate") is not None
    meter.deflate = extension
    plain = meter.wrap_plain(None)  # type: ignore[arg-type]  # counted by hand below
    plain.bytes_in, plain.bytes_out = 250, 180
    meter.upgrade_done()
    meter.collect()  # the upgrade's own rows
    text = '[2,"7","MeterValues",' + "x" * 340 + "]"
    # wsproto has read a 62-byte compressed frame; the session has not tallied it yet.
    plain.bytes_in += 62
    extension.received_wire += 62
    first = [f for f in meter.collect() if f.layer == WS and f.direction == "in"]
    assert first == []  # neither control traffic nor lost: held over
    meter.message("MeterValues", True, text)
    second = {(f.action, f.layer): f.bytes for f in meter.collect() if f.direction == "in"}
    assert second == {("MeterValues", PAYLOAD): len(text), ("MeterValues", WS): 62}
    # A ping (control frame) counted by the stream but not by the extension is control.
    plain.bytes_in += 6
    third = {(f.action, f.layer): f.bytes for f in meter.collect() if f.direction == "in"}
    assert third == {(CONTROL, WS): 6}

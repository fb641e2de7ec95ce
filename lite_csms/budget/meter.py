"""Counting one connection's bytes at every layer, and saying which action caused them.

Two counting streams sit in the stack: `raw` under TLS (TLS records, or WebSocket frames when
TLS is off) and `plain` above it (WebSocket frames and the HTTP upgrade). OCPP messages are
tallied by action as they pass. TCP_INFO supplies the IP level. `collect()` turns what
accumulated since the last call into rows: measured totals per direction and layer, shared
among actions in proportion to the layer above, so nothing is counted twice or lost.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from lite_csms.budget import tcpinfo
from lite_csms.budget.apportion import apportion
from lite_csms.budget.tcpinfo import IpBytes, TcpCounters

IN, OUT = "in", "out"
DIRECTIONS = (IN, OUT)
PAYLOAD, WS, TLS, IP = "payload", "ws", "tls", "ip"
LAYERS = (PAYLOAD, WS, TLS, IP)
TCP_SETUP = "(tcp-handshake)"
TLS_SETUP = "(tls-handshake)"
HTTP_SETUP = "(http-upgrade)"
CONTROL = "(ws-control)"
TLS_ONLY = "(tls-other)"
TCP_ONLY = "(tcp-only)"
TEARDOWN = "(teardown)"
SETUP_ACTIONS = (TCP_SETUP, TLS_SETUP, HTTP_SETUP)
# A TLS 1.3 alert record: 5-byte header, 2-byte alert, content type, 16-byte AEAD tag.
CLOSE_NOTIFY = 24


class CountingStream(trio.abc.Stream):
    """A pass-through stream that counts bytes each way and notes its first send."""

    def __init__(self, inner: trio.abc.Stream,
                 on_first_send: Callable[[CountingStream], None] | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        self.inner = inner
        self.bytes_in = 0
        self.bytes_out = 0
        self._on_first_send = on_first_send
        self._on_close = on_close

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)
        self.bytes_out += len(data)
        if self._on_first_send is not None:
            hook, self._on_first_send = self._on_first_send, None
            hook(self)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        self.bytes_in += len(data)
        return data

    async def aclose(self) -> None:
        if self._on_close is not None:
            hook, self._on_close = self._on_close, None
            hook()
        await self.inner.aclose()


def frame_header(size: int, masked: bool) -> int:
    """RFC 6455: 2, 4 or 10 bytes by payload length, plus a 4-byte mask from clients."""
    header = 2 if size < 126 else 4 if size < 65536 else 10
    return header + (4 if masked else 0)


@dataclass(slots=True)
class Flow:
    action: str
    direction: str
    layer: str
    bytes: int
    messages: int = 0


@dataclass(slots=True)
class _Snapshot:
    plain: tuple[int, int] = (0, 0)
    raw: tuple[int, int] = (0, 0)
    tcp: TcpCounters | None = None
    # Data-frame bytes on the wire (received, sent) as permessage-deflate counted them.
    deflated: tuple[int, int] = (0, 0)


class WireCounter(Protocol):
    """What a compressing extension reports: data-frame bytes as they crossed the wire."""

    received_wire: int
    sent_wire: int

    def enabled(self) -> bool: ...


@dataclass(slots=True)
class _Tally:
    payload: int = 0
    frames: int = 0
    messages: int = 0


@dataclass
class ConnectionMeter:
    """One connection's counters. `server_side` decides which direction is masked and "in"."""

    # A socket with getsockopt (stdlib or trio), or None where there is none to ask.
    sock: Any
    server_side: bool = True
    family: int = socket.AF_INET
    raw: CountingStream | None = None
    plain: CountingStream | None = None
    tls: bool = False
    tls_resumed: bool = False
    setup_ip: dict[str, int] = field(default_factory=dict)
    _pending: list[Flow] = field(default_factory=list)
    _tallies: dict[tuple[str, str], _Tally] = field(default_factory=dict)
    _last: _Snapshot = field(default_factory=_Snapshot)
    _upgraded: bool = False
    # The kernel's counters as the socket closed; TCP_INFO cannot be read after that.
    _closing_tcp: TcpCounters | None = None
    _closing_done: bool = False
    totals: dict[tuple[str, str], int] = field(default_factory=dict)
    # Set when permessage-deflate may be negotiated: frames then carry fewer bytes than the
    # JSON, and the WebSocket layer is counted from what the extension saw on the wire.
    deflate: WireCounter | None = None

    def __post_init__(self) -> None:
        first = tcpinfo.read(self.sock) if self.sock is not None else None
        timestamps = first.timestamps if first is not None else True
        handshake = tcpinfo.handshake_bytes(self.family, timestamps,
                                            server_side=self.server_side)
        # Counters as they stand right after the handshake, which handshake_bytes accounts.
        if self.server_side:
            baseline = TcpCounters(2, 0, 0, 0, 0, timestamps)
        else:
            baseline = TcpCounters(1, 2, 0, 0, 0, timestamps)
        self._last = _Snapshot(tcp=baseline if first is not None else None)
        if first is not None:
            self._add_setup(TCP_SETUP, None, None, handshake)

    # ---- wiring ----------------------------------------------------------------------------
    def wrap_raw(self, stream: trio.abc.Stream) -> CountingStream:
        self.raw = CountingStream(stream)
        return self.raw

    def wrap_plain(self, stream: trio.abc.Stream) -> CountingStream:
        """The stream wsproto reads; its first send is the 101 (or a refusal)."""
        hook = self._upgrade_sent if self.server_side else None
        # The last reading is taken here, after the WebSocket close frames and before TLS
        # close_notify and the TCP FINs, which each end would otherwise see only half of:
        # `closing` adds an estimate of them, the same figure at both ends.
        self.plain = CountingStream(stream, on_first_send=hook, on_close=self.closing)
        if self.raw is None:
            self.raw = self.plain
        return self.plain

    def closing(self) -> None:
        """Take the last kernel reading and add the teardown; once, before the socket closes.

        The plain stream's close calls this; a connection whose WebSocket ended without
        closing its stream (the peer vanished) gets it from the listener instead.
        """
        if self._closing_done:
            return
        self._closing_done = True
        tcp = tcpinfo.read(self.sock) if self.sock is not None else None
        # Whether the peer's FIN already arrived is a race; the estimate below counts it.
        self._closing_tcp = None if tcp is None else tcp.without_peer_fin()
        if self._closing_tcp is not None:
            header = tcpinfo.segment_header(self.family, self._closing_tcp.timestamps)
            # FIN and the ACK of the peer's FIN each way; a close_notify record each way.
            per_direction = 2 * header + ((header + CLOSE_NOTIFY) if self.tls else 0)
            for direction in DIRECTIONS:
                self._emit(TEARDOWN, direction, IP, per_direction)

    def _tcp_now(self) -> TcpCounters | None:
        if self._closing_tcp is not None:
            return self._closing_tcp
        return tcpinfo.read(self.sock) if self.sock is not None else None

    def tls_done(self, resumed: bool) -> None:
        self.tls = True
        self.tls_resumed = resumed
        raw = self._pair(self.raw)
        self._add_setup(TLS_SETUP, None, raw, None)

    def _upgrade_sent(self, _stream: CountingStream) -> None:
        self.upgrade_done()

    def upgrade_done(self) -> None:
        """The HTTP upgrade is complete: whatever crossed so far was set-up."""
        if self._upgraded:
            return
        self._upgraded = True
        self._add_setup(HTTP_SETUP, self._pair(self.plain), self._pair(self.raw), None)

    @staticmethod
    def _pair(stream: CountingStream | None) -> tuple[int, int]:
        return (0, 0) if stream is None else (stream.bytes_in, stream.bytes_out)

    def _add_setup(self, action: str, plain: tuple[int, int] | None,
                   raw: tuple[int, int] | None, ip: IpBytes | None) -> None:
        last = self._last
        if ip is None:
            tcp = self._tcp_now()
            if tcp is not None and last.tcp is not None:
                ip = tcpinfo.ip_bytes(tcp - last.tcp, self.family)
                last.tcp = tcp
        for index, direction in enumerate(self._directions()):
            if plain is not None:
                self._emit(action, direction, WS, plain[index] - last.plain[index])
            if raw is not None and self.tls:
                self._emit(action, direction, TLS, raw[index] - last.raw[index])
            if ip is not None:
                amount = (ip.bytes_in, ip.bytes_out)[index]
                self._emit(action, direction, IP, amount)
                self.setup_ip[action] = self.setup_ip.get(action, 0) + amount
        if plain is not None:
            last.plain = plain
        if raw is not None:
            last.raw = raw

    def _directions(self) -> tuple[str, str]:
        # Index 0 is what this end received. For a server that is "in"; rows are always kept
        # from the CSMS's point of view, so a station's own meter reports the mirror image.
        return (IN, OUT) if self.server_side else (OUT, IN)

    def _emit(self, action: str, direction: str, layer: str, amount: int,
              messages: int = 0) -> None:
        if amount <= 0 and messages == 0:
            return
        self._pending.append(Flow(action, direction, layer, amount, messages))
        self.totals[(direction, layer)] = self.totals.get((direction, layer), 0) + amount

    # ---- messages --------------------------------------------------------------------------
    def message(self, action: str, received: bool, text: str) -> None:
        size = len(text) if text.isascii() else len(text.encode())
        direction = self._directions()[0 if received else 1]
        masked = received != self.server_side
        tally = self._tallies.setdefault((action, direction), _Tally())
        tally.payload += size
        tally.frames += size + frame_header(size, masked)
        tally.messages += 1

    # ---- collecting ------------------------------------------------------------------------
    def collect(self) -> list[Flow]:
        """Everything measured since the last call, attributed to actions."""
        plain, raw, tcp = self._pair(self.plain), self._pair(self.raw), self._tcp_now()
        last = self._last
        ip = None
        if tcp is not None and last.tcp is not None:
            ip = tcpinfo.ip_bytes(tcp - last.tcp, self.family)
        carry_plain = list(plain)
        deflated = self._deflated()
        carry_deflated = list(deflated)
        for index, direction in enumerate(self._directions()):
            ws_total = plain[index] - last.plain[index]
            raw_total = raw[index] - last.raw[index]
            ip_total = None if ip is None else (ip.bytes_in, ip.bytes_out)[index]
            mine = {a: t for (a, d), t in self._tallies.items() if d == direction}
            frames = {a: t.frames for a, t in mine.items()}
            if self._compressing():
                # Compressed frames: the extension counted their wire bytes; the actions share
                # them by JSON size. Bytes of frames whose message is not tallied yet wait.
                wire = deflated[index] - last.deflated[index]
                if mine:
                    frames = apportion(wire, {a: t.payload for a, t in mine.items()})
                else:
                    held = max(0, min(wire, ws_total))
                    carry_deflated[index] = last.deflated[index]
                    carry_plain[index] = plain[index] - held
                    ws_total -= held
            framed = sum(frames.values())
            if framed > ws_total:
                # The frame bytes of a message just read are counted once the read returns;
                # hold the excess over to the next collection instead of going negative.
                carry_plain[index] = last.plain[index] + framed
                ws_total = framed
            if ws_total > framed:
                frames[CONTROL] = ws_total - framed
            for (action, d), tally in self._tallies.items():
                if d == direction:
                    self._emit(action, direction, PAYLOAD, tally.payload, tally.messages)
            for action, amount in frames.items():
                self._emit(action, direction, WS, amount)
            below = frames
            if self.tls:
                below = apportion(raw_total, frames) if frames else {}
                if raw_total > 0 and not frames:
                    below = {TLS_ONLY: raw_total}
                for action, amount in below.items():
                    self._emit(action, direction, TLS, amount)
            if ip_total is not None:
                shares = apportion(ip_total, below) if sum(below.values()) else {}
                if ip_total > 0 and not shares:
                    shares = {TCP_ONLY: ip_total}
                for action, amount in shares.items():
                    self._emit(action, direction, IP, amount)
        self._tallies.clear()
        self._last = _Snapshot(plain=(carry_plain[0], carry_plain[1]), raw=raw,
                               tcp=tcp if tcp is not None else last.tcp,
                               deflated=(carry_deflated[0], carry_deflated[1]))
        flows, self._pending = self._pending, []
        return flows

    def _compressing(self) -> bool:
        return self.deflate is not None and self.deflate.enabled()

    def _deflated(self) -> tuple[int, int]:
        """(in, out) from the CSMS's point of view, like every row."""
        if self.deflate is None:
            return (0, 0)
        pair = (self.deflate.received_wire, self.deflate.sent_wire)
        return pair if self.server_side else (pair[1], pair[0])

    @property
    def retransmitted_at_close(self) -> int:
        """Retransmitted bytes as of the last collection."""
        tcp = self._last.tcp
        return 0 if tcp is None else tcp.bytes_retrans

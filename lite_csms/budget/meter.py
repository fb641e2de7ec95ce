"""Counting one connection's bytes at every layer, and saying which action caused them.

Two counting streams sit in the stack: `raw` under TLS (TLS records, or WebSocket frames when
TLS is off) and `plain` above it (WebSocket frames and the HTTP upgrade). OCPP messages are
tallied by action as they pass: the payload layer is the OCPP-J text, or on a lite link the
binary lite frame (codecs/SPEC.md) that carried the message. TCP_INFO supplies the IP level.
`collect()` turns what accumulated since the last call into rows: measured totals per
direction and layer, shared among actions in proportion to the layer above, so nothing is
counted twice or lost.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import trio

from lite_csms.budget import tcpinfo
from lite_csms.budget.apportion import apportion
from lite_csms.budget.names import (
    CONTROL,
    DIRECTIONS,
    HTTP_SETUP,
    IN,
    IP,
    LAYERS,
    OUT,
    PAYLOAD,
    SETUP_ACTIONS,
    TCP_ONLY,
    TCP_SETUP,
    TEARDOWN,
    TLS,
    TLS_ONLY,
    TLS_SETUP,
    WS,
)
from lite_csms.budget.tcpinfo import IpBytes, TcpCounters

# Re-exported: the meter's users name layers and directions through it.
__all__ = ["CONTROL", "DIRECTIONS", "HTTP_SETUP", "IN", "IP", "LAYERS", "OUT", "PAYLOAD",
           "SETUP_ACTIONS", "TCP_ONLY", "TCP_SETUP", "TEARDOWN", "TLS", "TLS_ONLY", "TLS_SETUP",
           "WS", "ConnectionMeter", "CountingStream", "Flow", "frame_header"]


class CountingStream(trio.abc.Stream):
    """A pass-through stream that counts bytes each way and notes its first send."""

    __slots__ = ("_on_close", "_on_first_send", "bytes_in", "bytes_out", "inner")

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
        self._closing()
        await self.inner.aclose()

    def _closing(self) -> None:
        if self._on_close is not None:
            hook, self._on_close = self._on_close, None
            hook()


RECEIVE_SIZE = 65536  # trio's default for receive_some()


def _stream_error(exc: OSError) -> trio.ClosedResourceError | trio.BrokenResourceError:
    if exc.errno in (errno.EBADF, errno.ENOTSOCK):
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")


class SocketEnd(CountingStream):
    """The counting stream on the socket itself, for a meter that reads the teardown.

    Closing it sends our FIN but keeps the descriptor: the kernel answers TCP_INFO only while
    one is open, and the FINs and their ACKs are still to cross. `linger` then waits for
    them and lets the socket go.
    """

    __slots__ = ("fin_sent", "released", "socket_stream")

    def __init__(self, inner: trio.SocketStream,
                 on_first_send: Callable[[CountingStream], None] | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        super().__init__(inner, on_first_send, on_close)
        self.socket_stream = inner
        self.fin_sent = False
        self.released = False

    # Straight to the socket: trio's SocketStream takes five layers and a task switch per
    # send to do the same (docs/PERFORMANCE.md). Errors are translated as trio does.

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """A cancellation point; no schedule point when the kernel takes it all at once (the
        reader that sends an answer yields when it next waits for the station)."""
        if self.fin_sent:
            raise trio.ClosedResourceError("the stream is closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            sent = self.socket_stream.socket._sock.send(data)  # type: ignore[attr-defined]
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise _stream_error(exc) from exc
        if sent < len(data):
            await self.socket_stream.send_all(memoryview(data)[sent:])
        self.bytes_out += len(data)
        if self._on_first_send is not None:
            hook, self._on_first_send = self._on_first_send, None
            hook(self)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """As trio's: a checkpoint, and a task switch only when the data was there at once."""
        if self.fin_sent:
            raise trio.ClosedResourceError("the stream is closed")
        size = max_bytes or RECEIVE_SIZE
        sock = self.socket_stream.socket
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            try:
                data = sock._sock.recv(size)  # type: ignore[attr-defined]
            except BlockingIOError:
                data = await _recv_when_readable(sock, size)
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
        except OSError as exc:
            raise _stream_error(exc) from exc
        self.bytes_in += len(data)
        return data

    async def receive_when_readable(self, max_bytes: int = RECEIVE_SIZE) -> bytes:
        """receive_some() for a reader that has just taken everything there was (the
        station's next CALL follows our answer): wait first, then read, which saves the read
        that would fail and its exception, once per message."""
        if self.fin_sent:
            raise trio.ClosedResourceError("the stream is closed")
        sock = self.socket_stream.socket
        try:
            data = await _recv_when_readable(sock, max_bytes)
        except OSError as exc:
            raise _stream_error(exc) from exc
        self.bytes_in += len(data)
        return data

    def send_now(self, data: bytes, *, fin: bool = False) -> int:
        """Write what the socket takes without waiting, counted as send_all counts; returns
        the bytes written (0 when closed, reset or full). For the server's stop, which
        sends 10,000 close frames from one loop instead of 10,000 tasks. The caller must
        hold off every other sender (trio-websocket's send lock is free).

        `fin`: this is the last of our bytes. When all are taken our FIN follows at once,
        in the same TCP segment (the bytes are held back with MSG_MORE until the shutdown
        marks their segment FIN): one packet for both, not two."""
        if self.fin_sent or self.released:
            return 0
        sock = self.socket_stream.socket
        try:
            if fin:
                sent = sock._sock.send(data, socket.MSG_MORE)  # type: ignore[attr-defined]
            else:
                sent = os.write(sock.fileno(), data)
        except OSError:  # BlockingIOError: the buffer is full; EPIPE, ECONNRESET: gone
            return 0
        if fin and sent == len(data):
            self._shutdown(socket.SHUT_WR)
        self.bytes_out += sent
        if sent and self._on_first_send is not None:
            hook, self._on_first_send = self._on_first_send, None
            hook(self)
        return sent

    async def aclose(self) -> None:
        self._closing()
        self.send_fin()
        await trio.lowlevel.checkpoint()

    def shut_now(self) -> None:
        """Shut both directions (the server's stop cutting off a peer): a task blocked
        reading this socket wakes to the end of input. The descriptor stays open for the
        teardown's last TCP_INFO reading."""
        if not self.released:
            self._shutdown(socket.SHUT_RDWR)

    def send_fin(self) -> None:
        # Synchronous, so that a cancelled close (aclose_forcefully) still sends it.
        if not (self.fin_sent or self.released):
            self._shutdown(socket.SHUT_WR)

    def _shutdown(self, how: int) -> None:
        self.fin_sent = True
        try:
            self.socket_stream.socket.shutdown(how)
        except OSError:
            pass  # the connection is already gone (reset, timed out)

    async def linger(self, read: Callable[[], TcpCounters | None]) -> bool:
        """Send the FIN, read what still comes until the peer's FIN (counted as received),
        then wait until ours is acknowledged. Returns whether the peer's FIN arrived; the
        caller bounds the wait with a cancel scope."""
        self.send_fin()
        peer_fin = False
        while True:
            try:
                data = await self.socket_stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break  # reset: nothing more will cross
            except trio.BusyResourceError:
                break  # another task still reads; the kernel's state below still tells
            if not data:
                peer_fin = True
                break
            self.bytes_in += len(data)
        delay = 0.001
        while (tcp := read()) is not None and tcp.state != tcpinfo.CLOSED:
            await trio.sleep(delay)
            delay = min(2 * delay, 0.05)
        return peer_fin

    def take_waiting(self) -> None:
        """Read, without waiting, what has already arrived: at a cancelled linger (the
        server stopping) the peer's last records are in the kernel but not yet counted."""
        if self.released:
            return
        fd = self.socket_stream.socket.fileno()
        try:
            # A read shorter than asked took everything there was: no second read to learn
            # that nothing is left (the stop takes 10,000 of these).
            while data := os.read(fd, RECEIVE_SIZE):
                self.bytes_in += len(data)
                if len(data) < RECEIVE_SIZE:
                    return
        except OSError:
            pass  # nothing more waiting (BlockingIOError), or the connection was reset

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.socket_stream.socket.close()


# One key tuple per (direction, layer) for every meter's totals, not one per meter.
_TOTAL_KEYS = {(direction, layer): (direction, layer)
               for direction in DIRECTIONS for layer in LAYERS}


# The (action, direction) keys of the meters' tallies, shared (ConnectionMeter.message).
_TALLY_KEYS: dict[tuple[str, str], tuple[str, str]] = {}
_TALLY_KEYS_MAX = 1024


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


@dataclass(slots=True)
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
    # The socket's own counting stream, when there is a socket to linger on.
    _end: SocketEnd | None = None
    # The kernel's counters once the teardown is over; TCP_INFO cannot be read after that.
    _final_tcp: TcpCounters | None = None
    # Past the WebSocket's end: whatever crosses now is the teardown.
    _closing_done: bool = False
    # The server's stop takes this connection's last reading at once (finish_now): the
    # WebSocket's end is noted but splits nothing off (read_once_at_end).
    _read_once: bool = False
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
        self.raw = self._bottom(stream)
        return self.raw

    def wrap_plain(self, stream: trio.abc.Stream) -> CountingStream:
        """The stream wsproto reads; its first send is the 101 (or a refusal).

        Its close, after the WebSocket close frames, starts the teardown: what crosses from
        then on (TLS alerts, FINs, their ACKs) is counted as `(teardown)`.
        """
        hook = self._upgrade_sent if self.server_side else None
        if self.raw is None:
            self.plain = self.raw = self._bottom(stream, hook, self.closing)
        else:
            self.plain = CountingStream(stream, on_first_send=hook, on_close=self.closing)
        return self.plain

    def _bottom(self, stream: trio.abc.Stream,
                on_first_send: Callable[[CountingStream], None] | None = None,
                on_close: Callable[[], None] | None = None) -> CountingStream:
        if isinstance(stream, trio.SocketStream) and self.sock is not None:
            self._end = SocketEnd(stream, on_first_send, on_close)
            return self._end
        return CountingStream(stream, on_first_send, on_close)

    def closing(self) -> None:
        """The WebSocket is over: attribute what crossed so far; the rest is the teardown."""
        if self._closing_done or self._read_once:
            return
        self._attribute()
        self._closing_done = True

    def read_once_at_end(self) -> None:
        """The server's stop (its fast exit) takes this connection's last reading at once,
        our FIN sent and nothing awaited (finish_now): its WebSocket's end no longer splits
        a teardown off, so everything from the last collection to that reading is
        attributed once, the FINs with the close frames, as for a connection the exit
        leaves open. The same bytes; one attribution and one TCP_INFO reading instead of
        two per connection, and no (teardown) rows (10,000 stations in a stop)."""
        self._read_once = True

    async def finish(self, timeout: float, *, linger: bool = True) -> None:
        """End the connection and take the last kernel reading once the teardown is over.

        Sends our FIN (if the close has not), reads until the peer's FIN, and waits until
        ours is acknowledged, at most `timeout` seconds: then both ends have seen every
        segment of the connection, the same ones tcpdump sees. A peer that has vanished is
        counted as far as it got. Without `linger` (the server stopping: 10,000 teardowns
        would starve each other) our FIN is sent and what has arrived is counted, but the
        FIN exchange is not awaited. Closes the socket; never raises but Cancelled.
        """
        self.closing()
        end = self._end
        if end is None or end.released:
            return
        read = self._read_kernel
        peer_fin = False
        try:
            if linger:
                with trio.move_on_after(timeout):
                    peer_fin = await end.linger(read)
            else:
                end.send_fin()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            end.take_waiting()
            final = read()
            if final is not None and peer_fin:
                # The peer's FIN takes a sequence number that bytes_received counts.
                final = replace(final, bytes_in=final.bytes_in - 1)
            self._final_tcp = final
            end.release()

    def finish_now(self) -> None:
        """The process exits with this connection still open (the server's stop, once its
        final state is durable): send our FIN (RFC 6455 7.1.1: the server closes TCP
        first), count what has arrived and take the last kernel reading, without a wait
        and without closing the socket (the exit does; drain() first, so that it is not
        a reset). What crosses after this is not counted. The next collect() attributes
        everything once, with this reading: nothing is left for a teardown."""
        end = self._end
        if end is not None and not end.released:
            end.send_fin()
            end.take_waiting()
            self._final_tcp = self._read_kernel()

    def drain(self) -> None:
        """Read what has arrived since finish_now() without counting it anywhere that is
        written: a socket closed with unread data sends a reset instead of a FIN."""
        if self._end is not None:
            self._end.take_waiting()

    def _read_kernel(self) -> TcpCounters | None:
        return tcpinfo.read(self.sock) if self.sock is not None else None

    def _tcp_now(self) -> TcpCounters | None:
        if self._final_tcp is not None or (self._end is not None and self._end.released):
            return self._final_tcp
        return self._read_kernel()

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
        key = _TOTAL_KEYS.get((direction, layer)) or (direction, layer)
        self.totals[key] = self.totals.get(key, 0) + amount

    # ---- messages --------------------------------------------------------------------------
    def message(self, action: str, received: bool, data: str | bytes) -> None:
        """One WebSocket message: OCPP-J text, or a lite link's binary frame, whose bytes are
        then the payload layer (the lite frame as sent, its format byte included)."""
        # Two calls per OCPP call on the hot path: three integer additions, no allocation
        # once the (action, direction) pair has been seen on this connection.
        size = (len(data) if isinstance(data, bytes) or data.isascii()
                else len(data.encode()))
        server_side = self.server_side
        direction = (IN if received else OUT) if server_side else (OUT if received else IN)
        key = (action, direction)
        tally = self._tallies.get(key)
        if tally is None:
            # Every meter keys its tallies with the same tuples: one per action and direction
            # for the process (an idle station keeps four or more until the next collection).
            shared = _TALLY_KEYS.get(key)
            if shared is not None:
                key = shared
            elif len(_TALLY_KEYS) < _TALLY_KEYS_MAX:  # bounded: a station names its actions
                _TALLY_KEYS[key] = key
            tally = self._tallies[key] = _Tally()
        tally.payload += size
        tally.frames += size + (2 if size < 126 else 4 if size < 65536 else 10) + (
            4 if received != server_side else 0)
        tally.messages += 1

    # ---- collecting ------------------------------------------------------------------------
    def take_emitted(self) -> list[Flow]:
        """The flows already attributed (set-up rows) and not yet collected, without a new
        attribution or a kernel reading: the server's stop writes them early
        (TrafficRecorder.counted_write). collect() never returns them again."""
        flows, self._pending = self._pending, []
        return flows

    def collect(self) -> list[Flow]:
        """Everything measured since the last call, attributed to actions."""
        self._attribute()
        flows, self._pending = self._pending, []
        return flows

    def _attribute(self) -> None:
        # Bytes no message accounts for: control frames, alerts, bare segments; or, once
        # the WebSocket is over, the teardown.
        control, tls_only, tcp_only = ((TEARDOWN,) * 3 if self._closing_done
                                       else (CONTROL, TLS_ONLY, TCP_ONLY))
        plain_stream, raw_stream = self.plain, self.raw
        plain = (0, 0) if plain_stream is None else (plain_stream.bytes_in,
                                                     plain_stream.bytes_out)
        raw = plain if raw_stream is plain_stream else (
            (0, 0) if raw_stream is None else (raw_stream.bytes_in, raw_stream.bytes_out))
        tcp = self._tcp_now()
        last = self._last
        ip = None
        if tcp is not None and last.tcp is not None:
            ip = tcpinfo.ip_bytes(tcp - last.tcp, self.family)
        if not self._tallies and not self._compressing():
            # No message since the last collection (an idle station; a station's end in
            # the server's stop, 10,000 at once): one share per layer, no apportioning.
            self._attribute_untallied(control, tls_only, tcp_only, plain, raw, ip)
            self._last = _Snapshot(plain=plain, raw=raw,
                                   tcp=tcp if tcp is not None else last.tcp,
                                   deflated=self._deflated())
            return
        # Only compressed frames whose message is not tallied yet are carried over.
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
                # A message is tallied once its read (or send) has returned, after the stream
                # counted its bytes: across a collection those bytes were measured in the one
                # before. The measured total stands, shared by frame size.
                frames = apportion(ws_total, frames)
            elif ws_total > framed:
                frames[control] = ws_total - framed
            for (action, d), tally in self._tallies.items():
                if d == direction:
                    self._emit(action, direction, PAYLOAD, tally.payload, tally.messages)
            for action, amount in frames.items():
                self._emit(action, direction, WS, amount)
            below = frames
            if self.tls:
                below = (apportion(raw_total, frames) if sum(frames.values())
                         else {tls_only: raw_total})
                for action, amount in below.items():
                    self._emit(action, direction, TLS, amount)
            if ip_total is not None:
                shares = (apportion(ip_total, below) if sum(below.values())
                          else {tcp_only: ip_total})
                for action, amount in shares.items():
                    self._emit(action, direction, IP, amount)
        self._tallies.clear()
        self._last = _Snapshot(plain=(carry_plain[0], carry_plain[1]), raw=raw,
                               tcp=tcp if tcp is not None else last.tcp,
                               deflated=(carry_deflated[0], carry_deflated[1]))

    def _attribute_untallied(self, control: str, tls_only: str, tcp_only: str,
                             plain: tuple[int, int], raw: tuple[int, int],
                             ip: IpBytes | None) -> None:
        """_attribute() when no message is tallied and nothing is compressed: every layer's
        bytes go to one action (the WebSocket's control frames when any crossed, otherwise
        the lower layer's own), the same rows the apportioning gives."""
        last = self._last
        emit = self._emit
        for index, direction in enumerate(self._directions()):
            ws_total = plain[index] - last.plain[index]
            # The action the layers below are charged to, and its weight there (a share of
            # nothing charges nothing: the next layer down then has its own action).
            action: str | None = None
            weight = 0
            if ws_total > 0:
                action, weight = control, ws_total
                emit(control, direction, WS, ws_total)
            if self.tls:
                raw_total = raw[index] - last.raw[index]
                if action is None:
                    action, weight = tls_only, raw_total
                else:
                    weight = raw_total if raw_total > 0 else 0
                emit(action, direction, TLS, weight)
            if ip is not None:
                ip_total = ip.bytes_in if index == 0 else ip.bytes_out
                if action is not None and weight:
                    emit(action, direction, IP, ip_total if ip_total > 0 and weight > 0 else 0)
                else:
                    emit(tcp_only, direction, IP, ip_total)

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


async def _recv_when_readable(sock: trio.socket.SocketType, size: int) -> bytes:
    """Wait until the socket is readable, then read; again if another reader was first."""
    while True:
        await trio.lowlevel.wait_readable(sock)
        try:
            return sock._sock.recv(size)  # type: ignore[attr-defined,no-any-return]
        except BlockingIOError:
            pass

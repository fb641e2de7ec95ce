"""A server-side WebSocket (RFC 6455) on a trio stream, with no task of its own.

trio-websocket runs a reader task per connection that feeds a memory channel, and the
station's own reader takes each message from that channel: two tasks, a channel, several
events and locks for every idle charger, and two task switches for every message. Here the
station's reader task drives wsproto itself: `get_message()` reads the socket until a whole
message is there. An idle charger costs one suspended task (docs/PERFORMANCE.md, "Memory
per station").

One task reads at a time (the station's reader, or `aclose()` once no one else reads);
sends from any task are serialised.

Without an extension (no permessage-deflate), the frames of an ordinary message are read and
written here rather than through wsproto's event objects, which cost more than the rest of a
message's handling (docs/PERFORMANCE.md): a whole masked data frame (FIN, no RSV bits, valid
UTF-8 for text, the shortest length encoding, within the size limit) becomes a message, a
ping is answered, a pong noted, and a valid close frame ends the connection (echoed when the
peer closes first, RFC 6455 5.5.1). The first frame that is anything else (a fragment, a
protocol error, a close frame wsproto would refuse) and everything after it go to wsproto,
which answers it as before. wsproto's Connection (1.7 KB) is made only then, or for a
connection that negotiated an extension: an idle plain connection keeps none
(docs/PERFORMANCE.md, "Memory per station").

Close codes follow RFC 6455 7.4: 1009 for a message over the size limit, and the code
wsproto gives a frame it refuses (1007 invalid UTF-8, 1002 a protocol error), sent to the
peer before the TCP connection closes.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    TextMessage,
)

from lite_csms.budget.meter import SocketEnd

log = logging.getLogger("lite_csms.net")

# Bytes asked of the socket per read: an OCPP message is usually well under this.
RECEIVE_SIZE = 8192
CLOSE_ABNORMAL = 1006
CLOSE_TOO_BIG = 1009

# What _parse_plain() answers when it has no message: wait for more bytes, or hand over.
_MORE = 0
_WSPROTO = 1
_TOO_BIG = 2
_OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
# RFC 6455 7.4: codes a peer may send in a close frame, exactly as wsproto accepts them (the
# ones it defines but 1005, 1006 and 1015, which are never sent; 3000-4999 for libraries and
# applications): the same frame is answered the same either way.
_VALID_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, *range(1007, 1014)))
CLOSE_NO_STATUS = 1005
# A control frame's payload is at most 125 bytes (RFC 6455 5.5): a code and 123 of reason.
_MAX_CLOSE_REASON = 123


def unmask(data: bytes, mask: bytes) -> bytes:
    """RFC 6455 5.3: the payload XORed with the 4-byte key repeated, in one big-int XOR."""
    size = len(data)
    if not size:
        return b""
    key = (mask * ((size >> 2) + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def close_frame(code: int | None, reason: str | None) -> bytes:
    """A server's close frame (RFC 6455 5.5.1), as wsproto builds it: no payload for no code
    (or 1005), 1000 for a code only an endpoint may report (1005, 1006, 1015), the reason
    cut to 123 bytes on a character boundary."""
    if code is None or code == CLOSE_NO_STATUS:
        return bytes((0x80 | _OP_CLOSE, 0))
    if code in (1005, 1006, 1015):
        code = 1000
    text = (reason or "").encode()
    if len(text) > _MAX_CLOSE_REASON:
        text = text[:_MAX_CLOSE_REASON].decode(errors="ignore").encode()
    return bytes((0x80 | _OP_CLOSE, 2 + len(text))) + struct.pack("!H", code) + text


def _peer_close(payload: bytes) -> tuple[int, str] | None:
    """The code and reason of a peer's close frame (1005 and "" when it has no payload), or
    None when wsproto would refuse it (a 1-byte payload, a code not to be sent, a reason
    that is not UTF-8): wsproto then closes with its own code."""
    if not payload:
        return CLOSE_NO_STATUS, ""
    if len(payload) == 1:
        return None
    code = (payload[0] << 8) | payload[1]
    if code not in _VALID_CLOSE_CODES and not 3000 <= code <= 4999:
        return None
    try:
        return code, payload[2:].decode()
    except UnicodeDecodeError:
        return None


def frame_header(opcode: int, size: int) -> bytes:
    """A server's frame header (FIN, unmasked) for a payload of `size` bytes (RFC 6455 5.2)."""
    if size < 126:
        return bytes((0x80 | opcode, size))
    if size < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, size)
    return struct.pack("!BBQ", 0x80 | opcode, 127, size)


@dataclass(frozen=True, slots=True)
class CloseReason:
    """How the connection ended: the RFC 6455 close code and its reason text."""

    code: int
    reason: str | None


class ConnectionClosed(Exception):
    """The WebSocket is closed; `reason` says how (1006 when no close frame was seen)."""

    def __init__(self, reason: CloseReason) -> None:
        super().__init__(reason)
        self.reason = reason


class WebSocket:
    """An accepted connection: `get_message`, `send_message`, `ping`, `aclose`.

    `failure` names why a frame was refused when an extension (deflate) knows better than
    wsproto's generic reason; it is read when wsproto closes the connection itself.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_max_message_size",
        "_peer_closed",
        "_pings",
        "_plain_state",
        "_proto",
        "_send_waiters",
        "_sending",
        "_stream",
        "failure",
        "path",
        "reading",
        "remote",
        "slot",
        "subprotocol",
    )

    def __init__(self, stream: trio.abc.Stream, proto: Connection | None, *,
                 max_message_size: int,
                 remote: str, path: str, subprotocol: str | None,
                 failure: Callable[[], str | None] | None = None, slot: object = None,
                 plain: bool = False) -> None:
        self._stream = stream
        # No extension was negotiated: frames are read and written here until one is not
        # ordinary (see the module's docstring), and the frame state is ours
        # (`_plain_state`) for as long as there is no wsproto Connection: it is made when
        # wsproto takes over (_wsproto). `_buffer`: bytes read and not yet a whole frame.
        if not plain and proto is None:
            raise ValueError("a connection with an extension needs wsproto's frame state")
        self._proto = None if plain else proto
        self._plain_state = ConnectionState.OPEN
        self._buffer = b""
        self._max_message_size = max_message_size
        self._closed: CloseReason | None = None
        self.reading = False
        self._sending = False
        # Created only when two tasks send at once, or when someone waits for the close.
        self._send_waiters: trio.lowlevel.ParkingLot | None = None
        self._peer_closed: trio.Event | None = None
        self._pings: dict[bytes, trio.Event] | None = None
        self.remote = remote
        self.path = path
        self.subprotocol = subprotocol
        self.slot = slot
        self.failure = failure

    @property
    def closed(self) -> CloseReason | None:
        return self._closed

    @property
    def plain(self) -> bool:
        """Whether frames are still read and written here rather than by wsproto."""
        return self._proto is None

    def idle_socket(self) -> trio.socket.SocketType | None:
        """The plain TCP socket when nothing received waits here or in wsproto: the next message
        needs more bytes, so the reader may park on the socket's readability with no frame
        of the read path suspended (an idle station's task is then a few frames deep,
        docs/PERFORMANCE.md, "Memory per station"). None otherwise (TLS, which may hold
        decrypted bytes; something buffered; closing): then get_message() as usual.

        The caller sets `reading` while it waits, so that aclose() leaves the read to it."""
        stream = self._stream
        if (type(stream) is not SocketEnd or stream.fin_sent or stream.released
                or self._closed is not None):
            return None
        if self._proto is None:
            return None if self._buffer else stream.socket_stream.socket
        proto = self._wsproto()
        try:
            # wsproto keeps parsed events in `_events` and unparsed bytes in the frame
            # decoder's buffer; a partial frame there would also do, but any bytes at all
            # take the usual path.
            if proto._events or len(proto._proto._frame_decoder.buffer):
                return None
        except AttributeError:  # another wsproto: always the usual path
            return None
        return stream.socket_stream.socket

    # ---- receiving -----------------------------------------------------------------------
    async def get_message(self) -> str | bytes:
        """The next whole message. Raises ConnectionClosed once the connection is closed."""
        if self.reading:
            raise trio.BusyResourceError("another task is reading this WebSocket")
        self.reading = True
        try:
            return await self._next_message()
        finally:
            self.reading = False

    def feed(self, data: bytes) -> None:
        """Bytes that arrived before the WebSocket existed (with the HTTP upgrade)."""
        if self._proto is None:
            self._buffer += data
        else:
            self._wsproto().receive_data(data)

    async def _next_message(self) -> str | bytes:
        if self._proto is None:
            message = await self._next_plain()
            if message is not None:
                return message
        return await self._next_from_wsproto()

    async def _next_plain(self) -> str | bytes | None:
        """The next message while frames are ordinary; None once they go to wsproto."""
        while True:
            found = self._parse_plain()
            if found is _MORE:
                if self._closed is not None:
                    raise ConnectionClosed(self._closed)
                data = await self._receive_bytes(waiting=True)
                self._buffer = self._buffer + data if self._buffer else data
            elif found is _WSPROTO:
                self._wsproto()
                return None
            elif found is _TOO_BIG:
                await self._too_big()
            elif isinstance(found, tuple):
                opcode, payload = found
                if opcode == _OP_PONG:
                    self._on_pong(payload)
                elif opcode == _OP_CLOSE:
                    await self._on_plain_close(payload)
                elif self._plain_state is ConnectionState.OPEN:
                    # Past our close frame no pong may follow (RFC 6455 5.5.1).
                    await self._send_frame(frame_header(_OP_PONG, len(payload)) + payload)
            else:
                return found

    async def _on_plain_close(self, payload: bytes) -> None:
        """A close frame read here (its payload checked by _parse_plain): the answer to ours,
        or the peer closing, which is answered with its code and reason (RFC 6455 5.5.1);
        then the server closes TCP at once (7.1.1). Raises ConnectionClosed."""
        closing = _peer_close(payload)
        assert closing is not None, "_parse_plain hands such a frame to wsproto"
        code, reason = closing
        # OPEN: the peer closes first; otherwise (LOCAL_CLOSING) this answers our close.
        answer = self._plain_state is ConnectionState.OPEN
        self._plain_state = ConnectionState.CLOSED
        if self._closed is None:
            self._closed = CloseReason(code, reason or None)
        if answer:
            try:
                await self._send_frame(close_frame(code, reason))
            except ConnectionClosed:
                pass
        self._wake_closer()
        await _close_quietly(self._stream)
        assert self._closed is not None
        raise ConnectionClosed(self._closed)

    def _parse_plain(self) -> str | bytes | tuple[int, bytes] | int:
        """The first frame of the buffer, taken from it: a message, (opcode, payload) for a
        ping or pong, _MORE when it is not all there, _WSPROTO when it is not ordinary,
        _TOO_BIG for a data frame whose header declares more than the size limit."""
        buffer = self._buffer
        have = len(buffer)
        if have < 2:
            return _MORE
        first, second = buffer[0], buffer[1]
        # Judged on the first two bytes: a short unmasked frame is refused (1002) as soon as
        # it is there, not left waiting for bytes that make it six.
        if first & 0xF0 != 0x80 or not second & 0x80:
            return _WSPROTO  # a fragment, RSV bits, or an unmasked client frame
        opcode, size, start = first & 0x0F, second & 0x7F, 6
        if size == 126:
            if have < 8:
                return _MORE
            size, start = (buffer[2] << 8) | buffer[3], 8
            if size < 126:
                return _WSPROTO
        elif size == 127:
            if have < 14:
                return _MORE
            size, start = int.from_bytes(buffer[2:10], "big"), 14
            if size < 65536 or size >> 63:
                return _WSPROTO  # not the shortest form, or the top bit set (RFC 6455 5.2)
        if opcode in (_OP_TEXT, _OP_BINARY):
            if size > self._max_message_size:
                # Its header already says it is too big: 1009 now, not once the bytes are in.
                return _TOO_BIG
        elif opcode not in (_OP_PING, _OP_PONG, _OP_CLOSE) or size > 125:
            return _WSPROTO
        end = start + size
        if have < end:
            return _MORE
        payload = unmask(buffer[start:end], buffer[start - 4:start])
        message: str | bytes | tuple[int, bytes] = payload
        if opcode == _OP_TEXT:
            try:
                message = payload.decode()
            except UnicodeDecodeError:
                return _WSPROTO  # wsproto closes with 1007
        elif opcode != _OP_BINARY:
            if opcode == _OP_CLOSE and _peer_close(payload) is None:
                return _WSPROTO  # wsproto closes with 1002 or 1007
            message = (opcode, payload)
        self._buffer = buffer[end:]
        return message

    def _wsproto(self) -> Connection:
        """wsproto's frame state. For a plain connection this is the hand-over: from now on
        every frame goes through wsproto, starting with what is buffered, and its
        Connection is made in the state the frames read and written here left (open, or
        our close frame sent)."""
        proto = self._proto
        if proto is None:
            proto = self._proto = Connection(ConnectionType.SERVER)
            if self._plain_state is not ConnectionState.OPEN:
                # Our close frame is out (its bytes are not sent again). Once the close is
                # answered (CLOSED) nothing reads or sends a frame any more.
                closed = self._closed or CloseReason(1000, None)
                proto.send(CloseConnection(code=closed.code, reason=closed.reason))
            buffer, self._buffer = self._buffer, b""
            if buffer and proto.state is not ConnectionState.CLOSED:
                proto.receive_data(buffer)
        return proto

    def _state(self) -> ConnectionState:
        return self._plain_state if self._proto is None else self._proto.state

    async def _next_from_wsproto(self) -> str | bytes:
        parts: list[str] | list[bytes] = []
        size = 0
        proto = self._wsproto()
        while True:
            for event in proto.events():
                if isinstance(event, Message):
                    size += len(event.data)
                    if size > self._max_message_size:
                        await self._too_big()
                    parts.append(event.data)  # type: ignore[arg-type]
                    if event.message_finished:
                        if isinstance(event, TextMessage):
                            return "".join(parts)  # type: ignore[arg-type]
                        return b"".join(parts)  # type: ignore[arg-type]
                elif isinstance(event, CloseConnection):
                    await self._on_close(event)
                elif isinstance(event, Ping) and proto.state is ConnectionState.OPEN:
                    # Past our close frame no pong may follow (RFC 6455 5.5.1).
                    await self._send_frame(proto.send(event.response()))
                elif isinstance(event, Pong):
                    self._on_pong(bytes(event.payload))
            if self._closed is not None:
                raise ConnectionClosed(self._closed)
            await self._receive()

    async def _receive(self) -> None:
        data = await self._receive_bytes()
        proto = self._wsproto()
        if proto.state is not ConnectionState.CLOSED:
            proto.receive_data(data)

    async def _receive_bytes(self, *, waiting: bool = False) -> bytes:
        """Bytes from the stream; `waiting`: everything read so far is taken, so the next
        bytes are likely not there yet."""
        stream = self._stream
        try:
            if waiting and isinstance(stream, SocketEnd):
                data = await stream.receive_when_readable(RECEIVE_SIZE)
            else:
                data = await stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self._abort()
            raise ConnectionClosed(self._closed or CloseReason(CLOSE_ABNORMAL, None))
        return bytes(data)

    async def _too_big(self) -> None:
        reason = f"Exceeded maximum message size: {self._max_message_size} bytes"
        self._closed = CloseReason(CLOSE_TOO_BIG, reason)
        await self._send_close(CLOSE_TOO_BIG, reason)
        raise ConnectionClosed(self._closed)

    async def _on_close(self, event: CloseConnection) -> None:
        proto = self._wsproto()
        state = proto.state
        if state is ConnectionState.OPEN:
            # Still OPEN: wsproto refused a frame itself (1007 invalid UTF-8, 1002) rather
            # than the peer closing; the peer must learn why before the socket closes.
            reason = (self.failure() if self.failure is not None else None) or event.reason
            if reason != event.reason:
                log.warning("%s: closed with %d: %s", self.remote, event.code, reason)
            self._closed = CloseReason(event.code, reason or None)
            await self._send_close(event.code, reason)
        elif state is ConnectionState.REMOTE_CLOSING:
            # The peer closes: answer with its code (RFC 6455 5.5.1), then close TCP, as a
            # server should at once (7.1.1).
            if self._closed is None:
                self._closed = CloseReason(event.code, event.reason or None)
            try:
                await self._send_frame(proto.send(event.response()))
            except ConnectionClosed:
                pass
        elif self._closed is None:  # CLOSED: the answer to our own close
            self._closed = CloseReason(event.code, event.reason or None)
        self._wake_closer()
        await _close_quietly(self._stream)

    def _abort(self) -> None:
        """The TCP connection ended without a close handshake (1006)."""
        if self._closed is None:
            self._closed = CloseReason(CLOSE_ABNORMAL, None)
        self._wake_closer()

    def _wake_closer(self) -> None:
        if self._peer_closed is not None:
            self._peer_closed.set()
        if self._pings:
            for event in self._pings.values():
                event.set()
            self._pings.clear()

    # ---- sending -------------------------------------------------------------------------
    async def send_message(self, message: str | bytes) -> None:
        """Send one whole message; raises ConnectionClosed once closing has begun."""
        if self._closed is not None:
            raise ConnectionClosed(self._closed)
        if self._proto is None and self._plain_state is ConnectionState.OPEN:
            if isinstance(message, str):
                payload = message.encode()
                await self._send_frame(frame_header(_OP_TEXT, len(payload)) + payload)
            else:
                await self._send_frame(frame_header(_OP_BINARY, len(message)) + message)
            return
        event = TextMessage(data=message) if isinstance(message, str) else \
            BytesMessage(data=message)
        await self._send_frame(self._wsproto().send(event))

    async def ping(self) -> None:
        """Send a ping and wait for its pong (or for the connection to close)."""
        if self._closed is not None:
            raise ConnectionClosed(self._closed)
        payload = os.urandom(4)
        if self._pings is None:
            self._pings = {}
        waiter = self._pings[payload] = trio.Event()
        await self._send_frame(frame_header(_OP_PING, len(payload)) + payload
                               if self._proto is None
                               else self._proto.send(Ping(payload=payload)))
        await waiter.wait()
        if self._closed is not None:
            raise ConnectionClosed(self._closed)

    def _on_pong(self, payload: bytes) -> None:
        # A pong answers its ping and every earlier one (RFC 6455 5.5.3 allows skipping).
        if not self._pings or payload not in self._pings:
            return
        for key in list(self._pings):
            self._pings.pop(key).set()
            if key == payload:
                break

    async def _send_frame(self, data: bytes) -> None:
        while self._sending:
            if self._send_waiters is None:
                self._send_waiters = trio.lowlevel.ParkingLot()
            await self._send_waiters.park()
        self._sending = True
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._abort()
            raise ConnectionClosed(self._closed or CloseReason(CLOSE_ABNORMAL, None)) from None
        finally:
            self._sending = False
            if self._send_waiters is not None and self._send_waiters:
                self._send_waiters.unpark()

    def _close_data(self, code: int, reason: str | None) -> bytes:
        """Our close frame; from here on the connection is closing (LOCAL_CLOSING, or CLOSED
        when it answers the peer's close)."""
        if self._proto is None:
            self._plain_state = ConnectionState.LOCAL_CLOSING
            return close_frame(code, reason)
        return self._proto.send(CloseConnection(code=code, reason=reason))

    async def _send_close(self, code: int, reason: str | None) -> None:
        if self._state() not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return
        try:
            await self._send_frame(self._close_data(code, reason))
        except ConnectionClosed:
            pass

    # ---- closing -------------------------------------------------------------------------
    def send_close_now(self, code: int, reason: str, *, fin: bool = False) -> bytes | None:
        """Start the closing handshake without a task or a wait: the close frame is written
        straight to the socket (the server's stop, for every station in one loop). Returns
        None when the frame is out; b"" when this connection must take aclose() instead
        (TLS, a send under way, not open); otherwise the part of the frame the socket did
        not take, for finish_close_send(). The peer's answer is read as after aclose().

        `fin`: our FIN goes with the frame (SocketEnd.send_now) when it is all out; we
        still read the peer's answer (RFC 6455 7.1.1: the server closes TCP first)."""
        stream = self._stream
        if (self._closed is not None or self._state() is not ConnectionState.OPEN
                or self._sending or not isinstance(stream, SocketEnd)):
            return b""
        data = self._close_data(code, reason)
        # From here on our sends raise ConnectionClosed: nothing follows the close frame.
        self._closed = CloseReason(code, reason)
        sent = stream.send_now(data, fin=fin)
        return None if sent == len(data) else data[sent:]

    def shut_now(self) -> None:
        """The server stops and the peer has not answered our close in time: shut the TCP
        connection both ways without a wait (what is queued, our close frame, still goes
        out before the FIN). The reader, woken by the end of input, sees the connection
        closed. A TLS connection is left to its closing task."""
        if isinstance(self._stream, SocketEnd):
            self._stream.shut_now()

    async def finish_close_send(self, rest: bytes) -> None:
        """Send what send_close_now() could not; raises ConnectionClosed if the peer is gone."""
        await self._send_frame(rest)

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with `code`: send the close frame, wait for the peer's, close TCP.

        Idempotent. The caller bounds the wait (the peer may never answer); whatever
        happens, the TCP connection is closed on the way out.
        """
        try:
            if self._closed is None:
                self._closed = CloseReason(code, reason)
                await self._send_close(code, reason)
            if self._state() is ConnectionState.LOCAL_CLOSING:
                await self._await_peer_close()
        finally:
            await _close_quietly(self._stream)

    async def _await_peer_close(self) -> None:
        if self.reading:
            # The station's reader sees the answer and wakes us.
            if self._peer_closed is None:
                self._peer_closed = trio.Event()
            await self._peer_closed.wait()
            return
        proto = self._wsproto()
        while proto.state is ConnectionState.LOCAL_CLOSING:
            for event in proto.events():
                if isinstance(event, CloseConnection):
                    return
            try:
                await self._receive()
            except ConnectionClosed:  # the peer left without its close frame
                return


async def _close_quietly(stream: trio.abc.Stream) -> None:
    try:
        await stream.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass

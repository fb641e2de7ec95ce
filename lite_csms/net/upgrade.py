"""The opening handshake (RFC 6455 4.2): read the HTTP upgrade request, then accept or refuse.

The request is read with wsproto's H11Handshake in the connection's own task. While the
server decides (the password check may wait for the KDF), a small watcher task reads on,
so a peer that leaves ends the handshake at once (docs/SECURITY.md); bytes a client sends
early are kept for the WebSocket. After the 101 only the wsproto frame state remains: the
HTTP parser is dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable

import trio
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.extensions import Extension
from wsproto.handshake import H11Handshake
from wsproto.utilities import LocalProtocolError, RemoteProtocolError, generate_accept_token

from lite_csms.net.deflate import BoundedPerMessageDeflate
from lite_csms.net.websocket import RECEIVE_SIZE, WebSocket


class Unparsable(Exception):
    """The request cannot be read; `answer` is the HTTP response owed, if any."""

    def __init__(self, reason: str, answer: bytes | None) -> None:
        super().__init__(reason)
        self.answer = answer


class HandshakeRequest:
    """A WebSocket upgrade request waiting for `accept()` or `reject()`.

    `headers` are the request's (name, value) pairs as bytes; `on_accepted` runs once the
    101 is on the wire (the handshake deadline and the slot's handshake count end there).
    """

    def __init__(self, stream: trio.abc.Stream, handshake: H11Handshake | bytes,
                 event: Request, *, remote: str, max_message_size: int,
                 deflate: BoundedPerMessageDeflate | None,
                 on_outcome: Callable[[str], None], on_accepted: Callable[[], None],
                 slot: object) -> None:
        self._stream = stream
        # The bytes of a request read without h11 (`parse_plain`): an H11Handshake is made
        # of them only for an answer the plain 101 does not cover.
        self._raw: bytes | None = handshake if isinstance(handshake, bytes) else None
        self._handshake: H11Handshake | None = None if self._raw is not None else handshake
        self._event: Request | None = event
        self.path = event.target
        self.remote = remote
        self._max_message_size = max_message_size
        self.deflate = deflate
        self._on_outcome = on_outcome
        self._on_accepted = on_accepted
        self.slot = slot
        self.early = bytearray()
        self.websocket: WebSocket | None = None
        self.answered = False
        # Set by the listener: starts the watcher (which notices a peer that leaves while
        # the request is decided) and hands back what stops it and waits until it no
        # longer reads. Started by watch_peer() only before a wait: a request decided at
        # once (a station without a password) needs no second task.
        self.start_watching: Callable[[], Awaitable[Callable[[], trio.Event]]] | None = None
        self.stop_watching: Callable[[], trio.Event] | None = None

    async def watch_peer(self) -> None:
        """Watch for the peer leaving from now until the request is answered: call before
        anything that may wait (a password check, the writer's queue)."""
        if self.stop_watching is None and self.start_watching is not None \
                and not self.answered:
            self.stop_watching = await self.start_watching()

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        assert self._event is not None, "answered: the request is gone"
        return list(self._event.extra_headers)

    @property
    def proposed_subprotocols(self) -> tuple[str, ...]:
        assert self._event is not None, "answered: the request is gone"
        return tuple(self._event.subprotocols)

    async def accept(self, subprotocol: str | None = None) -> WebSocket:
        """Send the 101 (with permessage-deflate when offered and not declined)."""
        assert self._event is not None and not self.answered
        self.answered = True
        await self._quiet()
        extensions: list[Extension] = [self.deflate] if self.deflate is not None else []
        if self._raw is not None and not self._event.extensions:
            # No extension offered: the 101 wsproto would send, without h11's writer.
            data, trailing = _plain_101(self._event, subprotocol, self._raw)
            proto = None
        else:
            handshake = self._h11()
            data = handshake.send(AcceptConnection(subprotocol=subprotocol,
                                                   extensions=extensions))
            proto = handshake.connection
            assert proto is not None
            # wsproto's server drops what h11 read past the request; a client that sends
            # its first frame without waiting for the 101 would lose it.
            trailing = handshake._h11_connection.trailing_data[0]
        self._raw = None
        # The request and the HTTP parser are dropped: an open connection outlives them.
        self._handshake = self._event = None
        deflate = self.deflate
        websocket = WebSocket(self._stream, proto, max_message_size=self._max_message_size,
                              remote=self.remote, path=self.path, subprotocol=subprotocol,
                              failure=None if deflate is None else (lambda: deflate.failure),
                              slot=self.slot,
                              plain=deflate is None or not deflate.enabled())
        self.websocket = websocket
        await websocket._send_frame(data)
        for chunk in (trailing, bytes(self.early)):
            if chunk:
                websocket.feed(chunk)
        self.early = bytearray()
        self._on_accepted()
        self._on_outcome("accepted")
        return websocket

    async def reject(self, status_code: int, *, extra_headers: list[tuple[bytes, bytes]]
                     | None = None, body: bytes | None = None) -> None:
        """Answer with an HTTP status instead of the 101; the listener closes the stream."""
        assert self._event is not None and not self.answered
        self.answered = True
        self._on_outcome(str(status_code))
        await self._quiet()
        handshake = self._h11()
        headers = list(extra_headers or [])
        body = body or b""
        if body:
            headers.append((b"Content-Length", str(len(body)).encode("ascii")))
        data = handshake.send(RejectConnection(status_code=status_code, headers=headers,
                                               has_body=bool(body)))
        if body:
            data += handshake.send(RejectData(data=body))
        self._handshake = self._event = self._raw = None
        await self._stream.send_all(data)

    def _h11(self) -> H11Handshake:
        """The H11Handshake of the request: made now from its bytes if it was read without."""
        if self._handshake is None:
            assert self._raw is not None
            handshake = H11Handshake(ConnectionType.SERVER)
            handshake.receive_data(self._raw)
            events = list(handshake.events())
            assert events and isinstance(events[0], Request), "parse_plain took a bad request"
            self._handshake = handshake
        return self._handshake

    async def _quiet(self) -> None:
        if self.stop_watching is not None:
            await self.stop_watching().wait()


_REQUEST_LINE = re.compile(rb"GET ([\x21-\x7e]+) HTTP/1\.1")
_HEADER = re.compile(rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*((?:[\x21-\x7e](?:[ \t\x21-\x7e]*"
                     rb"[\x21-\x7e])?)?)[ \t]*")
_PLAIN_LIMIT = 8192


def _split(value: bytes) -> list[str]:
    return [piece.decode("ascii").strip() for piece in value.split(b",")]


def parse_plain(data: bytes) -> Request | None:
    """The upgrade request in `data` (its first bytes read) as wsproto would read it, or None
    when this short reader does not take it (incomplete, over 8 KiB, a byte or header
    outside the plain ASCII upgrade, anything wsproto would refuse): h11 and wsproto read
    that as before, with their answers. RFC 6455 4.2.1, RFC 9112 3 and 5."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or end > _PLAIN_LIMIT:
        return None
    lines = data[:end].split(b"\r\n")
    line = _REQUEST_LINE.fullmatch(lines[0])
    if line is None:
        return None
    connection: list[str] | None = None
    extensions: list[str] = []
    subprotocols: list[str] = []
    headers: list[tuple[bytes, bytes]] = []
    host: bytes | None = None
    key = version = None
    upgrade = b""
    try:
        for raw in lines[1:]:
            header = _HEADER.fullmatch(raw)
            if header is None:
                return None
            name, value = header.group(1).lower(), header.group(2)
            if name == b"host":
                if host is not None:
                    return None
                host = value
                continue
            if name in (b"content-length", b"transfer-encoding"):
                return None
            if name == b"connection":
                connection = _split(value)
            elif name == b"sec-websocket-extensions":
                extensions.extend(_split(value))
                continue
            elif name == b"sec-websocket-protocol":
                subprotocols.extend(_split(value))
                continue
            elif name == b"sec-websocket-key":
                key = value
            elif name == b"sec-websocket-version":
                version = value
            elif name == b"upgrade":
                upgrade = value
            headers.append((name, value))
        if (connection is None or not any(t.lower() == "upgrade" for t in connection)
                or version != b"13" or key is None or upgrade.lower() != b"websocket"
                or host is None):
            return None
        return Request(host=host.decode("idna"), target=line.group(1).decode("ascii"),
                       extensions=extensions, extra_headers=headers,
                       subprotocols=subprotocols)
    except UnicodeError:
        return None


def _plain_101(event: Request, subprotocol: str | None, raw: bytes) -> tuple[bytes, bytes]:
    """The 101 for a request that offered no extension, byte for byte what wsproto's
    H11Handshake sends, and the bytes read past the request. No frame state: WebSocket
    keeps its own while frames are plain."""
    # The last Sec-WebSocket-Key, as wsproto's header dict keeps it.
    key = next(value for name, value in reversed(event.extra_headers)
               if name == b"sec-websocket-key")
    data = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + generate_accept_token(key))
    if subprotocol is not None:
        if subprotocol not in event.subprotocols:
            raise LocalProtocolError(f"unexpected subprotocol {subprotocol}")
        data += b"\r\nSec-WebSocket-Protocol: " + subprotocol.encode("ascii")
    return data + b"\r\n\r\n", raw[raw.find(b"\r\n\r\n") + 4:]


async def read_request(stream: trio.abc.Stream, remote: str
                       ) -> tuple[H11Handshake | bytes, Request]:
    """Read until a whole upgrade request has arrived: the H11Handshake that read it (or,
    when `parse_plain` took it from the first bytes, those bytes) and the request.

    Raises Unparsable for a request wsproto or h11 refuses, EOFError when the peer leaves
    first. Cancellation (the handshake deadline) is the caller's.
    """
    try:
        data: bytes | None = await stream.receive_some(RECEIVE_SIZE)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        data = b""
    if not data:
        raise EOFError
    plain = parse_plain(data)
    if plain is not None:
        return data, plain
    handshake = H11Handshake(ConnectionType.SERVER)
    while True:
        try:
            if data is not None:
                handshake.receive_data(data)
            for event in handshake.events():
                if isinstance(event, Request):
                    return handshake, event
        except UnicodeDecodeError as exc:
            # wsproto decodes the list headers (Sec-WebSocket-Extensions, -Protocol,
            # Connection, Upgrade) as ASCII and lets the error through.
            raise Unparsable(f"a handshake header is not ASCII ({exc.reason})", None) from None
        except RemoteProtocolError as exc:
            hint = exc.event_hint
            answer = handshake.send(hint) if isinstance(hint, RejectConnection) else None
            raise Unparsable(str(exc), answer) from None
        try:
            data = await stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            raise EOFError


async def watch(request: HandshakeRequest, stream: trio.abc.Stream, limit: int,
                on_gone: Callable[[], None],
                task_status: trio.TaskStatus[Callable[[], trio.Event]] = trio.TASK_STATUS_IGNORED
                ) -> None:
    """Read on while the request is decided: `on_gone()` when the peer leaves. Hands the
    caller a function that stops the reading and returns an event set once it has."""
    scope = trio.CancelScope()
    done = trio.Event()

    def stop() -> trio.Event:
        scope.cancel()
        return done

    task_status.started(stop)
    try:
        with scope:
            while len(request.early) <= limit:
                try:
                    data = await stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    on_gone()
                    return
                request.early += data
            # More than a whole message before the 101: stop reading; TCP holds the rest.
            await trio.sleep(math.inf)
    finally:
        done.set()

"""The opening handshake (RFC 6455 4.2): read the HTTP upgrade request, then accept or refuse.

The request is read with wsproto's H11Handshake in the connection's own task. While the
server decides (the password check may wait for the KDF), a small watcher task reads on,
so a peer that leaves ends the handshake at once (docs/SECURITY.md); bytes a client sends
early are kept for the WebSocket. After the 101 only the wsproto frame state remains: the
HTTP parser is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.extensions import Extension
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

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

    def __init__(self, stream: trio.abc.Stream, handshake: H11Handshake, event: Request, *,
                 remote: str, max_message_size: int,
                 deflate: BoundedPerMessageDeflate | None,
                 on_outcome: Callable[[str], None], on_accepted: Callable[[], None],
                 slot: object) -> None:
        self._stream = stream
        self._handshake: H11Handshake | None = handshake
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
        assert self._handshake is not None and not self.answered
        self.answered = True
        await self._quiet()
        extensions: list[Extension] = [self.deflate] if self.deflate is not None else []
        data = self._handshake.send(AcceptConnection(subprotocol=subprotocol,
                                                     extensions=extensions))
        proto = self._handshake.connection
        assert proto is not None
        # wsproto's server drops what h11 read past the request; a client that sends its
        # first frame without waiting for the 101 would lose it.
        trailing = self._handshake._h11_connection.trailing_data[0]
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
        assert self._handshake is not None and not self.answered
        self.answered = True
        self._on_outcome(str(status_code))
        await self._quiet()
        headers = list(extra_headers or [])
        body = body or b""
        if body:
            headers.append((b"Content-Length", str(len(body)).encode("ascii")))
        data = self._handshake.send(RejectConnection(status_code=status_code, headers=headers,
                                                     has_body=bool(body)))
        if body:
            data += self._handshake.send(RejectData(data=body))
        self._handshake = self._event = None
        await self._stream.send_all(data)

    async def _quiet(self) -> None:
        if self.stop_watching is not None:
            await self.stop_watching().wait()


async def read_request(stream: trio.abc.Stream, remote: str) -> tuple[H11Handshake, Request]:
    """Read until a whole upgrade request has arrived.

    Raises Unparsable for a request wsproto or h11 refuses, EOFError when the peer leaves
    first. Cancellation (the handshake deadline) is the caller's.
    """
    handshake = H11Handshake(ConnectionType.SERVER)
    data: bytes | None = None
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

"""The station's transport: one connection to the CSMS that carries OCPP-J messages.

A message is the OCPP-J array itself, as Python values: `[2, "id", "Action", {...}]` (CALL),
`[3, "id", {...}]` (CALLRESULT), `[4, "id", "code", "text", {...}]` (CALLERROR), 2.1's 5 and
6. A transport encodes and decodes them; nothing above it knows the encoding. Two exist:
OCPP-J, JSON text frames on a WebSocket (OCPP-J 1.6 section 4, 2.0.1 Part 4 section 4), and
the lite link, binary CBOR + zstd frames (codecs/SPEC.md). `open_link` offers the lite
subprotocol first and the plain one after, and speaks whichever the CSMS picked. This module
is the only part of the simulator that touches trio_websocket.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from lite_csms.lite import (
    LITE_SUBPROTOCOLS,
    LiteFrameError,
    decode_frame,
    encode_frame,
    load_dictionaries,
)
from lite_csms.ocppj.framing import MAX_NESTING, CallError, encode
from lite_csms.ocppj.versions import ErrorKind, Version, error_code

CONNECT_TIMEOUT = 10.0
DISCONNECT_TIMEOUT = 2.0

Message = list[Any]
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A frame the codec could not turn into a message, kept as it came: the RPC layer
    answers it as OCPP-J requires (a CALLERROR under its id where one can be read)."""

    frame: str | bytes


Inbound = Message | Undecodable


class TransportClosed(Exception):
    """The connection is gone. `code` and `reason` are the close frame's (None when none
    came); `detail` is the transport's own account of it."""

    def __init__(self, code: int | None, reason: str | None, detail: str) -> None:
        super().__init__(detail)
        self.code, self.reason, self.detail = code, reason, detail

    @property
    def summary(self) -> str:
        """`closed <code> <reason>`, as the run's report gives it."""
        return f"closed {self.code} {self.reason or ''}".strip()


class ConnectFailed(Exception):
    """The connection could not be opened: refused (an HTTP status), unreachable or a
    failed handshake. The text says which, for the run's report."""


class Transport(Protocol):
    """One open connection carrying OCPP-J messages, whatever their encoding on the wire.

    `subprotocol` is what the CSMS agreed to. The byte counters are the encoded frames'
    payload bytes, sent and received (no framing or TCP overhead). Every method raises
    TransportClosed once the connection is gone.
    """

    subprotocol: str | None
    bytes_sent: int
    bytes_received: int

    async def send(self, messages: Sequence[Message]) -> None:
        """Send `messages` in order."""
        ...

    async def receive(self) -> list[Inbound]:
        """Wait for the next frame; return the messages it carries."""
        ...

    async def ping(self) -> None:
        """Prove the link alive: return once the peer has answered."""
        ...

    async def close(self) -> None:
        """Close the connection normally."""
        ...


# Opens a transport to a URL, offering the subprotocols, with extra HTTP headers; raises
# ConnectFailed. Leaving the context closes it.
Dial = Callable[[str, Sequence[str], Headers], AbstractAsyncContextManager[Transport]]


# ---- OCPP-J: JSON text on a WebSocket ---------------------------------------------------------
def encode_json(message: Message) -> str:
    return orjson.dumps(message).decode()


def decode_json(frame: str | bytes) -> Inbound:
    """The message in a JSON frame. A frame that is not a JSON array, or that nests deeper than
    OCPP-J allows, stays Undecodable so the RPC session judges its exact text."""
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return Undecodable(frame)
    if not isinstance(message, list) or _nested_deeper(message, MAX_NESTING):
        return Undecodable(frame)
    return message


def _nested_deeper(value: Any, limit: int) -> bool:
    level: list[Any] = [value]
    for _ in range(limit + 1):
        level = [item for node in level if isinstance(node, list | dict)
                 for item in (node.values() if isinstance(node, dict) else node)]
        if not level:
            return False
    return True


class WebSocketTransport:
    """OCPP-J on a WebSocket: one JSON text frame per message."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol

    async def send(self, messages: Sequence[Message]) -> None:
        for message in messages:
            text = encode_json(message)
            try:
                await self.ws.send_message(text)
            except ConnectionClosed as exc:
                raise _closed(exc) from None
            self.bytes_sent += len(text.encode())

    async def receive(self) -> list[Inbound]:
        try:
            frame = await self.ws.get_message()
        except ConnectionClosed as exc:
            raise _closed(exc) from None
        self.bytes_received += len(frame.encode() if isinstance(frame, str) else frame)
        return [decode_json(frame)]

    async def ping(self) -> None:
        try:
            await self.ws.ping()
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def close(self) -> None:
        await self.ws.aclose()


# ---- the lite link: binary CBOR + zstd frames on a WebSocket (codecs/SPEC.md) -----------------
class LiteTransport(WebSocketTransport):
    """One binary lite frame per message. Our frames use the newest dictionary we have; a
    frame from the CSMS that cannot be decoded gets the SPEC's answer here (section 8), since
    only the codec can read its id: a close with its code, a CALLERROR, or a dropped frame.
    The byte counters count lite frames."""

    def __init__(self, ws: WebSocketConnection, protocol: str) -> None:
        super().__init__(ws)
        self.protocol = protocol
        self.dictionaries = load_dictionaries(protocol)
        self.outbound = self.dictionaries[max(self.dictionaries)] if self.dictionaries else None
        # Frames dropped unanswered (a broken CALLRESULT or CALLERROR, SPEC section 8).
        self.dropped = 0

    async def send(self, messages: Sequence[Message]) -> None:
        for message in messages:
            frame = encode_frame(message, protocol=self.protocol, dictionary=self.outbound)
            try:
                await self.ws.send_message(frame)
            except ConnectionClosed as exc:
                raise _closed(exc) from None
            self.bytes_sent += len(frame)

    async def receive(self) -> list[Inbound]:
        while True:
            try:
                frame = await self.ws.get_message()
            except ConnectionClosed as exc:
                raise _closed(exc) from None
            if isinstance(frame, str):
                await self.ws.aclose(1003, "the lite link uses binary frames")
                raise TransportClosed(1003, "text frame", "the CSMS sent a text frame")
            self.bytes_received += len(frame)
            try:
                return [decode_frame(frame, protocol=self.protocol,
                                     dictionaries=self.dictionaries)]
            except LiteFrameError as exc:
                await self._refuse(exc)

    async def _refuse(self, exc: LiteFrameError) -> None:
        if exc.close_code is not None:
            reason = exc.description.encode()[:123].decode(errors="ignore")
            await self.ws.aclose(exc.close_code, reason)
            raise TransportClosed(exc.close_code, exc.description, "bad lite frame")
        if exc.answerable:
            version = Version(self.protocol)
            code = exc.error_code(version) or error_code(version, ErrorKind.GENERIC)
            text = encode(CallError(exc.message_id or "-1", code, exc.description))
            await self.send([orjson.loads(text)])
        else:
            self.dropped += 1


def _closed(exc: ConnectionClosed) -> TransportClosed:
    reason = exc.reason
    return TransportClosed(reason.code, reason.reason, str(reason))


@asynccontextmanager
async def open_websocket(url: str, subprotocols: Sequence[str], extra_headers: Headers
                         ) -> AsyncIterator[WebSocketTransport]:
    """The `Dial` for OCPP-J: a WebSocket to `url`, closed with a close frame on exit."""
    try:
        async with open_websocket_url(
            url, subprotocols=list(subprotocols), extra_headers=extra_headers,
            connect_timeout=CONNECT_TIMEOUT, disconnect_timeout=DISCONNECT_TIMEOUT,
        ) as ws:
            yield WebSocketTransport(ws)
    except ConnectionRejected as exc:
        body = (exc.body or b"").decode("utf-8", "replace").strip()
        raise ConnectFailed(f"CSMS refused the connection: HTTP {exc.status_code} {body}"
                            ) from None
    except (HandshakeError, OSError) as exc:
        raise ConnectFailed(f"could not connect to {url}: {exc!r}") from None


def lite_offer(protocol: str) -> list[str]:
    """The subprotocols a lite station offers: the lite one first, plain OCPP-J after."""
    return [f"{protocol}.lite1", protocol]


@asynccontextmanager
async def open_link(url: str, subprotocols: Sequence[str], extra_headers: Headers
                    ) -> AsyncIterator[WebSocketTransport]:
    """The `Dial` of a station that may speak the lite link: the transport for whichever
    subprotocol the CSMS picked (offer `lite_offer(protocol)` to ask for lite)."""
    async with open_websocket(url, subprotocols, extra_headers) as transport:
        plain = LITE_SUBPROTOCOLS.get(transport.subprotocol or "")
        yield transport if plain is None else LiteTransport(transport.ws, plain)


def station_url(base: str, station_id: str) -> str:
    """Chargers append their id to a configured base URL."""
    return f"{base.rstrip('/')}/{urllib.parse.quote(station_id, safe='')}"


def basic_auth_headers(station_id: str, password: str | None) -> Headers:
    """OCPP security profile 1: HTTP Basic auth with the station id as the user name."""
    if password is None:
        return []
    token = base64.b64encode(f"{station_id}:{password}".encode()).decode("ascii")
    return [(b"Authorization", f"Basic {token}".encode("ascii"))]

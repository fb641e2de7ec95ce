"""A deliberately dumb WebSocket client over a raw socket, for sending what real clients won't."""

from __future__ import annotations

import base64
import os
import struct

import trio


async def send_upgrade(port: int, path: str, *, protocols: str = "ocpp1.6",
                       headers: tuple[str, ...] = (), source: str | None = None
                       ) -> trio.SocketStream:
    """Send an HTTP upgrade request and read nothing of the answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if protocols:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    lines.extend(headers)
    await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
    return stream


async def connect(port: int, path: str, *, protocols: str = "ocpp1.6",
                  headers: tuple[str, ...] = (), source: str | None = None
                  ) -> tuple[trio.SocketStream, bytes]:
    """Send an HTTP upgrade request; returns the stream and the answer's head."""
    stream = await send_upgrade(port, path, protocols=protocols, headers=headers,
                                source=source)
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        response += chunk
    head, separator, rest = response.partition(b"\r\n\r\n")
    # A server may send its first frame in the same segment as the 101: keep it readable.
    return (_Prefixed(stream, rest) if rest else stream), head + separator  # type: ignore[return-value]


class _Prefixed:
    """A stream whose first reads return bytes already taken off the socket."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


async def read_frame(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, bytes] | None:
    """One unmasked server frame, or None at end of stream."""
    async def need(n: int) -> bool:
        while len(buffer) < n:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return False
            buffer.extend(chunk)
        return True

    if not await need(2):
        return None
    opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
    offset = 2
    if length == 126:
        await need(4)
        length, offset = struct.unpack("!H", buffer[2:4])[0], 4
    elif length == 127:
        await need(10)
        length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
    await need(offset + length)
    payload = bytes(buffer[offset:offset + length])
    del buffer[:offset + length]
    return opcode, payload


async def close_code(stream: trio.SocketStream, timeout: float = 5.0) -> int | None:
    """Read until the server's close frame and return its code."""
    buffer = bytearray()
    with trio.fail_after(timeout):
        while (received := await read_frame(stream, buffer)) is not None:
            opcode, payload = received
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
    return None


async def closed_by_server(stream: trio.SocketStream, timeout: float = 3.0) -> bool:
    """True when the server ends the TCP connection (EOF) within the timeout."""
    with trio.move_on_after(timeout):
        while True:
            try:
                chunk = await stream.receive_some(4096)
            except trio.BrokenResourceError:
                return True
            if not chunk:
                return True
    return False

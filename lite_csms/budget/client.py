"""The charger's end of the accounting: a metered WebSocket client connection.

The traffic simulator and the tests open their links through this, so the station's own
view of its bytes (its own counting streams and TCP_INFO) can be held against the server's.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from lite_csms.budget.meter import ConnectionMeter


@dataclass
class MeteredLink:
    ws: WebSocketConnection
    meter: ConnectionMeter
    tls: trio.SSLStream | None

    async def finish(self, timeout: float = 5.0) -> None:
        """Close the socket once the FINs have crossed (see ConnectionMeter.finish); call it
        after the WebSocket has closed or the link was dropped, before the last collect."""
        await self.meter.finish(timeout)

    @property
    def session(self) -> ssl.SSLSession | None:
        """The TLS session to resume next time; tickets arrive after the handshake."""
        return None if self.tls is None else self.tls.session


async def open_metered(
    nursery: trio.Nursery, host: str, port: int, resource: str, subprotocols: list[str], *,
    ssl_context: ssl.SSLContext | None = None, session: ssl.SSLSession | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> MeteredLink:
    stream = await trio.open_tcp_stream(host, port)
    sock = stream.socket
    meter = ConnectionMeter(sock, server_side=False, family=sock.family)
    tls = None
    plain: trio.abc.Stream = stream
    if ssl_context is not None:
        tls = trio.SSLStream(meter.wrap_raw(stream), ssl_context, server_hostname=host)
        if session is not None:
            tls.session = session
        await tls.do_handshake()
        meter.tls_done(resumed=bool(tls.session_reused))
        plain = tls
    counted = meter.wrap_plain(plain)
    ws = await wrap_client_stream(nursery, counted, host, resource,  # type: ignore[arg-type]
                                  subprotocols=subprotocols, extra_headers=extra_headers)
    meter.upgrade_done()
    return MeteredLink(ws, meter, tls)

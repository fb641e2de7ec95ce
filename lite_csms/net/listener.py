"""Serving WebSocket connections on trio-websocket 0.12 without its sharp edges.

WebSocketServer is replaced by our own accept path because, in 0.12:
- an exception escaping a connection handler stops the whole server;
- after `request.reject()` the TCP connection stays open;
- a client that sends garbage instead of an HTTP upgrade is held until the connect timeout;
- a frame wsproto cannot parse (invalid UTF-8, a bad opcode) drops the TCP connection without
  the close frame that tells the peer why.
Here every connection runs in its own guarded task, the stream is always closed at the end,
and a dead handshake ends as soon as the reader does. A connection over a cap (net/limits.py)
is refused before its request is read, and accept() failing for want of descriptors neither
stops nor spins the accept loop.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from lite_csms.budget.meter import ConnectionMeter
from lite_csms.net.deflate import BoundedPerMessageDeflate, DeflateOptions
from lite_csms.net.limits import (
    POLITE_REFUSALS,
    REFUSAL_LINGER,
    Caps,
    ConnectionLimits,
    RateLimitedLog,
    Slot,
    refusal_response,
)
from lite_csms.net.throttle import host_of, source_key
from lite_csms.net.upgrade import HandshakeRequest, Unparsable, read_request, watch
from lite_csms.net.websocket import WebSocket

log = logging.getLogger("lite_csms.net")

# Answers the handshake; once accepted, returns what serves the connection, which runs after
# the handshake's scope has ended and its frames are gone.
Serve = Callable[[], Awaitable[None]]
RequestHandler = Callable[[HandshakeRequest, ConnectionMeter], Awaitable[Serve | None]]
ClosedHandler = Callable[[ConnectionMeter], None]
# Told each handshake's outcome: "accepted", the HTTP status of a refusal ("401"; "503" also
# for a connection over a cap, answered before its request is read), "closed_at_accept" for
# one over a cap closed without an answer (TLS, or too many refusals at once), "400" for an
# unparsable request, "timeout" or "peer_left" after a request, "incomplete" without one
# (net/tally.py).
HandshakeHandler = Callable[[str], None]

# accept(2) failing for want of resources: the pending connection waits in the backlog.
ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


@dataclass(frozen=True, slots=True)
class ListenOptions:
    host: str
    port: int
    max_message_size: int
    handshake_timeout: float
    keepalive_idle: int
    keepalive_interval: int
    keepalive_count: int
    user_timeout: int
    close_timeout: float = 5.0
    # permessage-deflate accepted when a charger offers it; None refuses it (RFC 7692).
    deflate: DeflateOptions | None = None
    # Connection caps (net/limits.py); None: only the descriptor limit bounds them.
    caps: Caps | None = None


def configure_socket(sock: trio.socket.SocketType, options: ListenOptions) -> None:
    """TCP keepalive finds dead peers for a few dozen bytes, where WebSocket pings cost more."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, options.keepalive_idle))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL,
                        max(1, options.keepalive_interval))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, max(1, options.keepalive_count))
    if options.user_timeout and hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, options.user_timeout * 1000)


TCP_TIMESTAMPS = Path("/proc/sys/net/ipv4/tcp_timestamps")


def tcp_timestamps(path: Path = TCP_TIMESTAMPS) -> bool | None:
    """Whether this network namespace's TCP puts RFC 7323 timestamps on every segment;
    None when the setting cannot be read (not Linux)."""
    value = _setting(path)
    return None if value is None else value != "0"


def _setting(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def tcp_timestamps_note(path: Path = TCP_TIMESTAMPS) -> str | None:
    """One log line when the kernel puts RFC 7323 timestamps on this host's TCP segments.

    They add 12 B to every segment, each keepalive probe and its ACK included: about 0.11 MB
    a month for a home-share station (docs/DATA-BUDGET.md). Linux has no per-socket switch;
    the setting belongs to the network namespace, so only the operator can turn it off.
    Returns None when they are off or the setting cannot be read (not Linux).
    """
    value = _setting(path)
    if value is None or value == "0":
        return None
    return (f"TCP timestamps are on (net.ipv4.tcp_timestamps={value}): every segment to a "
            "charger carries 12 B more; for chargers billed per byte set it to 0 "
            "(docs/DATA-BUDGET.md, 'TCP timestamps')")


def decline_deflate(request: HandshakeRequest, meter: ConnectionMeter) -> None:
    """Accept the pending handshake without permessage-deflate, even if it was offered."""
    request.deflate = None
    meter.deflate = None


def slot_of(request: HandshakeRequest) -> Slot | None:
    """The pending handshake's place in the connection counts (net/limits.py), if counted."""
    return request.slot if isinstance(request.slot, Slot) else None


def peer_of(sock: trio.socket.SocketType | None) -> str:
    """The peer as host:port ([host]:port for IPv6), for the log."""
    try:
        address = sock.getpeername() if sock is not None else None
    except OSError:
        address = None
    if not isinstance(address, tuple):
        return "an unknown peer"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream.socket if isinstance(stream, trio.SocketStream) else None


class WebSocketListener:
    def __init__(
        self, options: ListenOptions, on_request: RequestHandler,
        ssl_context: ssl.SSLContext | None = None,
        on_closed: ClosedHandler | None = None,
        on_handshake: HandshakeHandler | None = None,
    ) -> None:
        self.options = options
        self._on_request = on_request
        self._on_closed = on_closed
        self._on_handshake = on_handshake
        self._ssl_context = ssl_context
        caps = options.caps or Caps(connections=1 << 30, handshakes=0, per_source=0)
        self.limits = ConnectionLimits(caps)
        self._accept_failures = RateLimitedLog()
        self._nursery: trio.Nursery
        # Cancelled by stop_accepting(): the accept loops end and the listening sockets
        # close; connections already accepted go on.
        self._accepting: list[trio.CancelScope] = []
        self._stopped_accepting = False
        # stop_accepting(leave_open=True): connections that end from then on are left as
        # they are for the process's exit.
        self._leave_open = False

    async def serve(
        self, sockets: list[socket.socket] | None = None, *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve on already bound, listening `sockets`, or bind host:port from the options."""
        if sockets is None:
            host = self.options.host or None
            listeners = await trio.open_tcp_listeners(self.options.port, host=host)
        else:
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                         for sock in sockets]
        for listener in listeners:
            configure_socket(listener.socket, self.options)
        task_status.started(listeners)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)

    @property
    def side_nursery(self) -> trio.Nursery:
        """The connections' nursery, for a connection's short side tasks (the handshake's
        watcher, the work after a boot): an idle connection then needs no nursery of its own."""
        return self._nursery

    def stop_accepting(self, *, leave_open: bool = False) -> None:
        """The server stops: close the listening sockets (new connections are refused by the
        kernel), and end each connection from now on without waiting for the FIN exchange.

        `leave_open`: the process exits once the stop's final state is written. A
        connection that ends from now on takes its meter's last reading without a wait
        (ConnectionMeter.finish_now) and leaves its socket to the exit; the stop takes the
        readings of those still open itself (TrafficRecorder.close_now)."""
        self._stopped_accepting = True
        self._leave_open = leave_open
        for scope in self._accepting:
            scope.cancel()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        # trio.serve_listeners logs a traceback every 100 ms while accept() fails with EMFILE
        # and leaves the peers waiting in the backlog; here a spare descriptor is given up to
        # take the pending connection and close it, so the peer learns at once.
        spare = _spare_descriptor()
        scope = trio.CancelScope()
        self._accepting.append(scope)
        if self._stopped_accepting:
            scope.cancel()
        with scope:
            await self._accept_until_stopped(listener, nursery, spare)

    async def _accept_until_stopped(self, listener: trio.SocketListener, nursery: trio.Nursery,
                                    spare: int | None) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                        raise
                    self._accept_failures.warn(
                        "accept() failed with %s (%d connections open): new connections "
                        "are closed until descriptors are free", errno.errorcode[exc.errno],
                        self.limits.open)
                    spare = await _shed_pending(listener, spare)
                    continue
                nursery.start_soon(self._guarded, stream)

    async def _guarded(self, stream: trio.abc.Stream) -> None:
        # One frame from accept to the end: an idle connection keeps every frame between
        # its task's start and its read suspended (docs/PERFORMANCE.md).
        try:
            sock = _socket_of(stream)
            peer = peer_of(sock)
            source = source_key(host_of(peer))
            limits = self.limits
            if (why := limits.refusal(source)) is not None:
                limits.refused += 1
                limits.log.warn("connection from %s refused: %s", peer, why)
                await self._refuse(stream, sock)
                return
            slot = limits.admit(source)
            source = None
            meter: ConnectionMeter | None = None
            try:
                if sock is not None:
                    configure_socket(sock, self.options)
                meter = ConnectionMeter(sock, server_side=True,
                                        family=sock.family if sock is not None
                                        else socket.AF_INET)
                # One deadline from accept() to the 101: the TLS handshake and the upgrade
                # share it, so a peer dripping both cannot hold the slot for twice the timeout.
                deadline = trio.current_time() + self.options.handshake_timeout
                plain = await self._secure(stream, meter, deadline)
                if plain is not None:
                    ws, serve = await self._serve_stream(plain, meter, peer, slot, deadline)
                    plain = None
                    if ws is not None:
                        try:
                            if serve is not None:
                                serving, serve = serve(), None
                                await serving
                        finally:
                            if not self._stopped_accepting:
                                with trio.move_on_after(self.options.close_timeout):
                                    await ws.aclose()
            except Exception as exc:  # one broken connection must never stop the server
                log.warning("connection error from %s: %s", peer, _describe(exc))
            finally:
                try:
                    limits.handshake_over(slot)
                    if meter is not None:
                        try:
                            # The FINs cross before the socket closes, so TCP_INFO counts them.
                            if self._leave_open:
                                meter.finish_now()
                            elif self._stopped_accepting:
                                await meter.finish(self.options.close_timeout, linger=False)
                            else:
                                await meter.finish(self.options.close_timeout)
                        finally:
                            if self._on_closed is not None:
                                self._on_closed(meter)
                    await self._close(stream)
                finally:
                    limits.release(slot)
        finally:
            await self._close(stream)

    async def _close(self, stream: trio.abc.Stream) -> None:
        if self._leave_open:
            return
        if self._stopped_accepting and isinstance(stream, trio.SocketStream):
            # The server stops: no cancelled checkpoint for each of 10,000 connections.
            stream.socket.close()
            return
        await trio.aclose_forcefully(stream)

    async def _refuse(self, stream: trio.abc.Stream, sock: trio.socket.SocketType | None
                      ) -> None:
        """503 + Retry-After before the request is read (plain listeners; a TLS peer would
        read it as garbage, so it only sees the close), then FIN, a short drain so that
        the peer's unread request does not turn our close into a reset, and the close."""
        limits = self.limits
        if (self._ssl_context is not None or sock is None
                or limits.refusing >= POLITE_REFUSALS):
            self._note("closed_at_accept")
            return
        self._note("503")
        limits.refusing += 1
        try:
            with trio.move_on_after(REFUSAL_LINGER):
                await stream.send_all(refusal_response())
                sock.shutdown(socket.SHUT_WR)
                while await stream.receive_some(4096):
                    pass
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            limits.refusing -= 1

    async def _secure(self, stream: trio.abc.Stream, meter: ConnectionMeter,
                      deadline: float) -> trio.abc.Stream | None:
        if self._ssl_context is None:
            return meter.wrap_plain(stream)
        tls = trio.SSLStream(meter.wrap_raw(stream), self._ssl_context, server_side=True,
                             https_compatible=True)
        with trio.move_on_at(deadline):
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError as exc:
                # trio hides the cause, e.g. a station certificate no trusted CA signed.
                log.warning("TLS handshake from %s failed: %s", _peer_of_stream(stream),
                            exc.__cause__ or "the peer left")
                return None
            meter.tls_done(resumed=bool(tls.session_reused))
            return meter.wrap_plain(tls)
        log.info("TLS handshake from %s did not complete within %g s", _peer_of_stream(stream),
                 self.options.handshake_timeout)
        return None

    async def _serve_stream(self, stream: trio.abc.Stream, meter: ConnectionMeter, peer: str,
                            slot: Slot | None = None, deadline: float | None = None
                            ) -> tuple[WebSocket | None, Serve | None]:
        """The handshake: (the accepted WebSocket, what serves it), or (None, None) when it
        was refused or abandoned. The caller runs the serving and closes the WebSocket, so
        nothing of the handshake (request, parser, scope, this frame) outlives it."""
        deflate = None
        if self.options.deflate is not None:
            deflate = BoundedPerMessageDeflate(self.options.deflate)
            meter.deflate = deflate
        # The whole handshake runs under this scope: reading the request, the password check
        # and the answer. It is cancelled at the deadline or when the peer goes away, so no
        # KDF runs for a client that gave up (docs/SECURITY.md).
        if deadline is None:
            deadline = trio.current_time() + self.options.handshake_timeout
        found = None
        with trio.CancelScope(deadline=deadline):
            try:
                found = await read_request(stream, peer)
            except EOFError:
                pass
            except Unparsable as exc:
                log.info("handshake from %s refused with 400: %s", peer, exc)
                self._note("400")
                with trio.move_on_after(self.options.close_timeout):
                    await stream.send_all(exc.answer or _bad_request(str(exc)))
                return None, None
        if found is None:
            log.info("handshake from %s did not complete", peer)
            self._note("incomplete")
            return None, None
        peer_gone = False
        handshake = trio.CancelScope(deadline=deadline)

        def gone() -> None:
            nonlocal peer_gone
            peer_gone = True
            handshake.cancel()

        def accepted() -> None:
            # The handshake is over: its deadline and the peer-gone cancel end here.
            handshake.deadline = math.inf
            if slot is not None:
                self.limits.handshake_over(slot)

        request = HandshakeRequest(stream, *found, remote=peer,
                                   max_message_size=self.options.max_message_size,
                                   deflate=deflate, on_outcome=self._note,
                                   on_accepted=accepted, slot=slot)
        found = None  # the request holds what it needs until it is answered
        # The watcher lives in the listener's nursery, not a nursery of this connection's:
        # it ends with the handshake, and an open connection keeps one task, not two.
        request.start_watching = partial(self._nursery.start, watch, request, stream,
                                         self.options.max_message_size, gone)
        serve = None
        try:
            with handshake:
                serve = await self._on_request(request, meter)
        except BaseException:
            # When the server stops, the close frames went out from its one loop and the
            # socket is closed by the caller without a wait: no checkpoint in the cancelled
            # task.
            if request.websocket is not None and not self._stopped_accepting:
                with trio.move_on_after(self.options.close_timeout):
                    await request.websocket.aclose()
            raise
        finally:
            request.start_watching = None
            if request.stop_watching is not None:
                request.stop_watching()
        ws = request.websocket
        if handshake.cancelled_caught and ws is None:
            why = ("the peer left" if peer_gone else
                   f"not answered within {self.options.handshake_timeout:g} s")
            log.info("handshake from %s abandoned: %s", peer, why)
            self._note("peer_left" if peer_gone else "timeout")
        if ws is None:
            return None, None
        if handshake.cancelled_caught:
            serve = None  # cancelled past the 101: close it, as the handshake's scope did
        return ws, serve

    def _note(self, outcome: str) -> None:
        if self._on_handshake is not None:
            self._on_handshake(outcome)


def _spare_descriptor() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return None


async def _shed_pending(listener: trio.SocketListener, spare: int | None) -> int | None:
    """Called while accept() fails for want of descriptors. Linux fails accept() before it
    looks at the backlog, so first wait until a peer is really waiting; then give up the
    spare descriptor, accept the peer on it and close that at once, and take the spare
    again. Without a spare (something else took its place) wait a little instead, so a
    lasting shortage cannot spin the loop."""
    if spare is None:
        await trio.sleep(0.1)
        return _spare_descriptor()
    await trio.lowlevel.wait_readable(listener.socket)
    os.close(spare)
    try:
        with trio.move_on_after(0.1):
            stream = await listener.accept()
            await trio.aclose_forcefully(stream)
    except OSError:
        await trio.sleep(0.1)
    return _spare_descriptor()


def _bad_request(reason: str) -> bytes:
    body = f"{reason}\n".encode()
    return (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))


def _peer_of_stream(stream: trio.abc.Stream) -> str:
    return peer_of(_socket_of(stream))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"

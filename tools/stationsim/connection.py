"""A station's whole run on real connections: connect, boot, run its scenario, linger, and
reconnect after a Reset. The connection itself is a Transport (transport.py); the station
never sees how messages are encoded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

import trio

from .answers import AnsweringStation
from .link import RpcLink
from .scenarios import SCENARIOS
from .state import HEARTBEAT_INTERVAL, WS_PING_INTERVAL, LinkLost, Report, SimFailure
from .transport import (
    ConnectFailed,
    Headers,
    Transport,
    TransportClosed,
    basic_auth_headers,
    lite_offer,
    open_link,
    open_websocket,
    station_url,
)


class ConnectedStation(AnsweringStation):
    """A station that answers the CSMS and runs itself: `run` until the scenario and the
    linger are over, or `shut_down` from outside. The version classes derive from this one."""

    async def ping_loop(self, transport: Transport, on_dead: Callable[[str], None]) -> None:
        """Pings every WebSocketPingInterval; a missing pong means a dead link."""
        while True:
            interval = self.config.seconds(WS_PING_INTERVAL)
            if interval <= 0:
                await self.config.changed.wait()
                continue
            with self.clock.move_on_after(interval) as timer:
                await self.config.changed.wait()
            if not timer.cancelled_caught:
                continue
            # The pong wait is network time, not simulated time.
            with trio.move_on_after(self.options.call_timeout) as wait:
                try:
                    await transport.ping()
                except TransportClosed:
                    return  # the reader reports the closed link
            if wait.cancelled_caught:
                on_dead(f"no pong within {self.options.call_timeout:g} s")
                return

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def shut_down(self) -> None:
        """End `run` from outside. Only the connection's own work is cancelled, so the
        transport still closes normally (a WebSocket with its close frame)."""
        self._shutting_down = True
        if self._tasks is not None:
            self._tasks.cancel_scope.cancel()
        elif self._run_scope is not None:
            self._run_scope.cancel()

    async def run(self) -> Report:
        """Connect, boot, run the scenario, linger; reconnect after a Reset. Never raises a
        SimFailure: the report carries it."""
        try:
            with trio.CancelScope() as self._run_scope:
                while not self._shutting_down:
                    self._reboot_requested = False
                    await self._serve_connection()
                    if not self._reboot_requested:
                        break
                    self._boot_reason = self.reboot_reason
        except SimFailure as exc:
            self.report.fail(str(exc), exc.exit_code)
        self.report.heartbeat_interval = self.config.seconds(HEARTBEAT_INTERVAL)
        self.log(f"== done: {'ok' if self.report.ok else 'FAILED: ' + str(self.report.error)}")
        return self.report

    def dial(self, url: str, subprotocols: Sequence[str], headers: Headers
             ) -> AbstractAsyncContextManager[Transport]:
        """Open the connection to the CSMS: OCPP-J on a WebSocket, or with `--lite` the
        lite link if the CSMS picks it. Another transport plugs in here."""
        if self.options.lite:
            return open_link(url, subprotocols, headers)
        return open_websocket(url, subprotocols, headers)

    async def _serve_connection(self) -> None:
        url = station_url(self.options.url, self.options.station_id)
        self.log(f"== connecting to {url} as {self.version.value}")
        headers = basic_auth_headers(self.options.station_id, self.options.password)
        try:
            offer = lite_offer(self.version.value) if self.options.lite else [self.version.value]
            async with self.dial(url, offer, headers) as transport:
                failure = await self._serve_transport(transport)
        except ConnectFailed as exc:
            raise LinkLost(str(exc)) from None
        if failure is not None:
            raise failure

    async def _serve_transport(self, transport: Transport) -> SimFailure | None:
        agreed = transport.subprotocol
        self.report.subprotocol = agreed
        if agreed != self.version.value and not (
                self.options.lite and agreed == lite_offer(self.version.value)[0]):
            return LinkLost(f"the CSMS agreed to {agreed!r}, not {self.version.value}")
        failure: SimFailure | None = None
        async with trio.open_nursery() as nursery:
            link = RpcLink(transport, self.version, answer=self._answer_inbound, spawn=self.spawn,
                           log=self.log, call_timeout=self.options.call_timeout)
            self.attach(link, nursery)
            nursery.start_soon(self._read, link, nursery.cancel_scope)
            try:
                await self._lifecycle(transport, link)
            except SimFailure as exc:
                failure = exc
            nursery.cancel_scope.cancel()
        self.detach()
        expected = self._reboot_requested or self._shutting_down
        if failure is None and link.close_reason is not None and not expected:
            failure = LinkLost(f"the CSMS closed the connection: {link.close_reason}")
        return failure

    async def _read(self, link: RpcLink, scope: trio.CancelScope) -> None:
        try:
            await link.serve()
        finally:
            scope.cancel()

    async def _lifecycle(self, transport: Transport, link: RpcLink) -> None:
        await self.boot(self._boot_reason)
        assert self._tasks is not None
        self._tasks.start_soon(self._guarded, self.heartbeat_loop, "Heartbeat")
        self._tasks.start_soon(self._guarded, self.aligned_data_loop, "aligned MeterValues")

        def dead(reason: str) -> None:
            link.close_reason = reason
            self.log(f"!! {reason}")
            if self._tasks is not None:
                self._tasks.cancel_scope.cancel()

        self._tasks.start_soon(self.ping_loop, transport, dead)
        if not self._scenario_started:
            self._scenario_started = True
            await SCENARIOS[self.options.scenario](self)
            self.report.scenario_completed = True
        if self._linger_until is None:
            self._linger_until = self.clock.elapsed() + self.options.linger
        await self.clock.sleep_until(self._linger_until)

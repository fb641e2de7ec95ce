"""Item 3: the server's TCP keepalive holds a NAT mapping, with the charger's ping switched off.

A NAT stand-in sits between a third-party charger (the `ocpp` package's ChargePoint over
`websockets`, its own keepalive ping off) and `lite-csms serve`: a loopback TCP relay that
forgets a connection idle longer than its timeout, in real time.

- **Idle** is judged per segment, as a NAT does, not per payload byte: the relay terminates
  TCP on each leg, so a keepalive probe stops at the relay's kernel and never reaches its
  userspace. The relay reads TCP_INFO (segments in and out) of both its sockets instead.
- **Forgetting** is a silent blackhole, as a carrier NAT does it: no FIN, no RST; whatever
  arrives later is dropped. The charger learns it only when a call goes unanswered.

With the policy on and `nat_timeout` = 3 s, the server probes after 2 s of silence (0.9 x 3,
whole seconds) and the link stays usable past several timeouts; with the policy off (the
server's keepalive at its 300 s default) the same silence loses the link.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, ConfigurationStatus

from lite_csms.budget import tcpinfo
from tests.conftest import run_cli, start_csms_process, stop_csms_process

NAT_TIMEOUT = 3.0
# More than two NAT timeouts of silence on the wire: without probes the mapping is gone after
# one (the control run shows it), so surviving this takes at least two.
IDLE = 2.2 * NAT_TIMEOUT
POLL = 0.05

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_KEEPIDLE"), reason="Linux TCP")


@dataclass
class Mapping:
    """One relayed connection as the NAT sees it."""

    last_activity: float = field(default_factory=time.monotonic)
    forgotten: bool = False
    # Refreshes by segments that carried no payload: keepalive probes and their ACKs.
    bare_refreshes: int = 0


class NatRelay:
    def __init__(self, upstream_port: int, timeout: float) -> None:
        self.upstream_port = upstream_port
        self.timeout = timeout
        # By the charger's port: its own end of the connection names the mapping.
        self.mappings: dict[int, Mapping] = {}
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _relay(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter
                     ) -> None:
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        mapping = Mapping()
        self.mappings[c_writer.get_extra_info("peername")[1]] = mapping
        payload = [0]

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                if mapping.forgotten:
                    continue  # a forgotten mapping drops what arrives, silently
                payload[0] += len(data)
                writer.write(data)
                await writer.drain()

        sockets = [w.get_extra_info("socket") for w in (c_writer, s_writer)]

        async def watch() -> None:
            seen = None
            while not mapping.forgotten:
                await asyncio.sleep(POLL)
                counters = [tcpinfo.read(sock) for sock in sockets]
                segments = sum(c.segs_in + c.segs_out for c in counters if c is not None)
                now = time.monotonic()
                if seen is not None and segments != seen[0]:
                    if payload[0] == seen[1]:
                        mapping.bare_refreshes += 1
                    mapping.last_activity = now
                elif now - mapping.last_activity > self.timeout:
                    mapping.forgotten = True
                seen = (segments, payload[0])

        tasks = [asyncio.create_task(pump(c_reader, s_writer)),
                 asyncio.create_task(pump(s_reader, c_writer)),
                 asyncio.create_task(watch())]
        try:
            await asyncio.gather(*tasks)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            for writer in (c_writer, s_writer):
                writer.close()


class Charger(ChargePoint):
    """Accepts every ChangeConfiguration, as a charger that honours the CSMS does."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.config: dict[str, str] = {}

    @on(Action.change_configuration)
    def change_configuration(self, key: str, value: str) -> call_result.ChangeConfiguration:
        self.config[key] = value
        return call_result.ChangeConfiguration(status=ConfigurationStatus.accepted)


def _add(database: Path, station_id: str, *budget: str) -> str:
    added = run_cli("station", "add", station_id, "--database", str(database))
    assert added.returncode == 0, added.stderr
    if budget:
        done = run_cli("budget", "set", station_id, *budget, "--database", str(database))
        assert done.returncode == 0, done.stderr
    return next(line.split(": ", 1)[1] for line in added.stdout.splitlines()
                if line.startswith("password: "))


async def _session(relay: NatRelay, station_id: str, password: str) -> dict[str, object]:
    auth = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    ws = await websockets.connect(
        f"ws://127.0.0.1:{relay.port}/ocpp/{station_id}", subprotocols=["ocpp1.6"],
        additional_headers={"Authorization": f"Basic {auth}"},
        ping_interval=None)  # the charger's own keepalive is off: the CSMS's must do
    cp = Charger(station_id, ws, response_timeout=2)
    listener = asyncio.create_task(cp.start())
    try:
        boot = await cp.call(call.BootNotification(charge_point_model="NAT-1",
                                                   charge_point_vendor="Interop"))
        assert boot.status == "Accepted"
        await asyncio.sleep(1.0)  # the policy's settings, if any, arrive and are answered
        mapping = relay.mappings[ws.transport.get_extra_info("sockname")[1]]
        refreshes = mapping.bare_refreshes
        await asyncio.sleep(IDLE)  # nothing from either side's application
        try:
            await cp.call(call.Heartbeat())
            usable = True
        except TimeoutError:
            usable = False
        return {"usable": usable, "forgotten": mapping.forgotten, "config": dict(cp.config),
                "probes": mapping.bare_refreshes - refreshes}
    finally:
        listener.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 1)


async def _both(upstream: int, kept: str, kept_password: str, control: str,
                control_password: str) -> tuple[dict[str, object], dict[str, object]]:
    relay = NatRelay(upstream, NAT_TIMEOUT)
    server = await relay.start()
    try:
        return tuple(await asyncio.gather(  # type: ignore[return-value]
            _session(relay, kept, kept_password), _session(relay, control, control_password)))
    finally:
        server.close()


def test_server_tcp_keepalive_holds_the_nat_mapping_with_the_ping_off(tmp_path: Path) -> None:
    csms = start_csms_process(tmp_path, env={"LITE_CSMS_BUDGET_POLICY": "1",
                                             "LITE_CSMS_NAT_TIMEOUT": str(int(NAT_TIMEOUT))})
    try:
        kept_password = _add(csms.database, "NAT-KEPT")
        control_password = _add(csms.database, "NAT-CTRL", "--policy", "off")
        kept, control = asyncio.run(_both(csms.port, "NAT-KEPT", kept_password, "NAT-CTRL",
                                          control_password))
    finally:
        stop_csms_process(csms)
    # The policy asked the charger to stop pinging, and the server's probes kept the mapping:
    # segments without payload, every 2 s of silence, past two NAT timeouts.
    assert kept["config"].get("WebSocketPingInterval") == "0"
    assert kept["forgotten"] is False and kept["usable"] is True
    assert kept["probes"] >= 2, kept
    # The control run, the server at its dead-peer default: the same silence loses the link.
    assert control["config"] == {}
    assert control["forgotten"] is True and control["usable"] is False

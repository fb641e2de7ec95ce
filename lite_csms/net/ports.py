"""Holding the listening ports before anything else happens.

A second `lite-csms serve` on the same ports must fail before it touches the database: its
start-up marks every station offline, which would lie about the stations of the server
that is running. So the sockets are bound first, with the standard library, and handed to
the OCPP listener and the admin API once the rest may start.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Connections the kernel completes before we accept them (capped by net.core.somaxconn).
# A cell's stations reconnect within a second of each other: with a short queue the kernel
# drops their SYNs, and each dropped one costs the charger a 1, 3, 7 s retransmission wait.
BACKLOG = 4096


class PortBusy(OSError):
    """A port we need is held by another process (or not ours to bind).

    `address` is "host:port" as configured; the message is one line for the operator.
    """

    def __init__(self, what: str, address: str, reason: str) -> None:
        super().__init__(f"cannot listen for {what} on {address}: {reason}")
        self.address = address


@dataclass(slots=True)
class HeldPorts:
    """Bound, listening sockets: the OCPP-J ones, and the admin API's (None when disabled)."""

    ocpp: list[socket.socket]
    admin: socket.socket | None = None

    def close(self) -> None:
        for sock in [*self.ocpp, *([self.admin] if self.admin is not None else [])]:
            sock.close()


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"


def _bind(host: str, port: int, what: str) -> list[socket.socket]:
    """Like trio.open_tcp_listeners: every address of `host` ("" = all interfaces)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortBusy(what, _address(host, port), exc.strerror or str(exc)) from None
    sockets: list[socket.socket] = []
    try:
        for family, type_, proto, _, sockaddr in infos:
            sock = socket.socket(family, type_, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise PortBusy(what, _address(host, port), exc.strerror or str(exc)) from None
    if port == 0 and len(sockets) > 1:
        # Port 0 picks one port per socket; keep the first family only, as one port is meant.
        for sock in sockets[1:]:
            sock.close()
        sockets = sockets[:1]
    return sockets


def hold_ports(host: str, port: int, admin_host: str | None, admin_port: int) -> HeldPorts:
    """Bind the OCPP-J port(s) and then the admin port; raises PortBusy naming the address."""
    ocpp = _bind(host, port, "OCPP-J")
    if admin_host is None:
        return HeldPorts(ocpp)
    try:
        admin, *more = _bind(admin_host, admin_port, "the admin API")
    except PortBusy:
        for sock in ocpp:
            sock.close()
        raise
    for sock in more:  # hypercorn serves one socket: the host's first address
        sock.close()
    return HeldPorts(ocpp, admin)


def write_ports_file(path: str | Path, held: HeldPorts) -> None:
    """Write `{"ocpp": [port, ...], "admin": port | null}` to `path`, atomically, so that a
    supervisor or a test that asked for port 0 learns the ports without racing anyone."""
    ports = {"ocpp": sorted({sock.getsockname()[1] for sock in held.ocpp}),
             "admin": None if held.admin is None else held.admin.getsockname()[1]}
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(ports))
    os.replace(partial, target)


def read_ports_file(path: str | Path, timeout: float = 20.0,
                    alive: Callable[[], bool] = lambda: True) -> dict[str, Any]:
    """Wait for write_ports_file's output; raises TimeoutError, or RuntimeError when `alive`
    says the server has exited first."""
    deadline = time.monotonic() + timeout
    target = Path(path)
    while time.monotonic() < deadline:
        if target.exists():
            return json.loads(target.read_text())
        if not alive():
            raise RuntimeError("the server exited before it listened")
        time.sleep(0.02)
    raise TimeoutError(f"no ports written to {target} within {timeout} s")

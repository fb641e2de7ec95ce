"""TLS 1.3 session tickets that outlive a real gap: the lifetime is ours to set (issue 9, 5)."""

from __future__ import annotations

import base64
import importlib.util
import os
import socket
import ssl
import time
from pathlib import Path

import pytest
import trio

from lite_csms import config
from lite_csms.net import tls
from tests.conftest import REPO, start_in_process

spec = importlib.util.spec_from_file_location("throwaway_tls", REPO / "tools" / "throwaway_tls.py")
assert spec is not None and spec.loader is not None
throwaway_tls = importlib.util.module_from_spec(spec)
spec.loader.exec_module(throwaway_tls)


def _upgrade(port: int, client: ssl.SSLContext, session: ssl.SSLSession | None
             ) -> tuple[ssl.SSLSession, bool, bytes]:
    """One TLS connection with an HTTP upgrade; the answer also carries the ticket."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            client.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /ocpp/NOBODY HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
                      ).encode())
        answer = sock.recv(4096)
        assert sock.version() == "TLSv1.3"
        assert sock.session is not None
        return sock.session, sock.session_reused, answer


def test_default_lifetime_is_a_day():
    assert config.load(environ={}).tls_ticket_lifetime == 86400
    with pytest.raises(config.ConfigError):
        config.load(environ={"LITE_CSMS_TLS_TICKET_LIFETIME": str(8 * 86400)})


def test_context_carries_the_configured_lifetime(tmp_path: Path):
    cert, key, _ = throwaway_tls.issue(tmp_path)
    context = tls.server_context(str(cert), str(key), ticket_lifetime=6 * 3600 + 1)
    assert tls.session_lifetime(context) == 6 * 3600 + 1
    assert tls.session_lifetime(ssl.create_default_context()) == 7200  # OpenSSL's own


async def test_ticket_hint_is_the_configured_lifetime_and_resumes(nursery, tmp_path: Path):
    cert, key, client = throwaway_tls.issue(tmp_path)
    csms = await start_in_process(nursery, tmp_path, tls_cert=str(cert), tls_key=str(key),
                                  tls_ticket_lifetime=30 * 3600)
    session, reused, answer = await trio.to_thread.run_sync(_upgrade, csms.port, client, None)
    assert answer.startswith(b"HTTP/1.1 401")  # unknown station; the TLS part is what counts
    assert not reused
    # What the charger's TLS stack is told: keep this ticket for 30 h (RFC 8446 4.6.1).
    assert session.ticket_lifetime_hint == 30 * 3600
    _, reused, _ = await trio.to_thread.run_sync(_upgrade, csms.port, client, session)
    assert reused


async def test_expired_ticket_gets_a_full_handshake(nursery, tmp_path: Path):
    cert, key, client = throwaway_tls.issue(tmp_path)
    csms = await start_in_process(nursery, tmp_path, tls_cert=str(cert), tls_key=str(key),
                                  tls_ticket_lifetime=1)
    session, _, _ = await trio.to_thread.run_sync(_upgrade, csms.port, client, None)
    assert session.ticket_lifetime_hint == 1
    # The server, not only the client, enforces the lifetime: past it, no resumption.
    started = time.monotonic()
    await trio.sleep(2.2)
    assert time.monotonic() - started >= 2
    _, reused, _ = await trio.to_thread.run_sync(_upgrade, csms.port, client, session)
    assert not reused


def test_new_context_as_after_a_restart_cannot_resume(tmp_path: Path):
    cert, key, client = throwaway_tls.issue(tmp_path)
    first = tls.server_context(str(cert), str(key))
    # Ticket keys are drawn per context, in memory: the same context resumes, a new one (what
    # a restarted process builds) cannot read the old tickets.
    session = _serve_once_and_connect(first, client, None)
    assert isinstance(session, ssl.SSLSession)
    assert _serve_once_and_connect(first, client, session) is True
    second = tls.server_context(str(cert), str(key))
    assert _serve_once_and_connect(second, client, session) is False


def _serve_once_and_connect(server: ssl.SSLContext, client: ssl.SSLContext,
                            session: ssl.SSLSession | None) -> ssl.SSLSession | bool:
    import threading

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve() -> None:
            conn, _ = listener.accept()
            with server.wrap_socket(conn, server_side=True) as tls_conn:
                tls_conn.recv(16)
                tls_conn.sendall(b"ok")

        thread = threading.Thread(target=serve)
        thread.start()
        with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
                client.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as sock:
            sock.sendall(b"hi")
            assert sock.recv(16) == b"ok"
            result: ssl.SSLSession | bool = sock.session if session is None else \
                sock.session_reused
        thread.join(10)
        return result


def _slow_upgrade(port: int, client: ssl.SSLContext, before_tls: float, mid_request: float
                  ) -> bytes:
    """Wait before the ClientHello, then send half the upgrade, wait again, send the rest."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        time.sleep(before_tls)
        with client.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET /ocpp/NOBODY HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            time.sleep(mid_request)
            key = base64.b64encode(os.urandom(16)).decode()
            try:
                sock.sendall((f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                              ).encode())
                return sock.recv(4096)
            except (OSError, ssl.SSLError):
                return b""


async def test_the_tls_handshake_and_the_upgrade_share_one_deadline(nursery, tmp_path: Path):
    cert, key, client = throwaway_tls.issue(tmp_path)
    csms = await start_in_process(nursery, tmp_path, tls_cert=str(cert), tls_key=str(key),
                                  handshake_timeout=1.0)
    # Each part within the timeout, both together past it: no answer, the slot is freed.
    answer = await trio.to_thread.run_sync(_slow_upgrade, csms.port, client, 0.6, 0.6)
    assert not answer.startswith(b"HTTP/1.1"), answer
    quick = await trio.to_thread.run_sync(_slow_upgrade, csms.port, client, 0.0, 0.0)
    assert quick.startswith(b"HTTP/1.1 401")

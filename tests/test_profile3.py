"""Security profile 3: TLS with client certificates, per station, with no downgrade (issue 11, 5).

Station certificates come from a test CA (trustme); the server runs in-process on a real
socket and the stations are the third-party `ocpp` ChargePoint over `websockets`, as in
tests/test_interop.py, in a worker thread with its own asyncio loop.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trustme
import websockets
from ocpp.v201 import ChargePoint
from ocpp.v201 import call as call201

from lite_csms import config, passwords
from lite_csms.db.models import Station
from lite_csms.net import profiles, tls
from tests.conftest import CsmsInProcess, run_cli, start_in_process

ORG = "Test CPO"


@dataclass
class Pki:
    server_ca: trustme.CA
    station_ca: trustme.CA
    files: dict[str, str]

    def client(self, station_id: str | None = None, *, ca: trustme.CA | None = None,
               organization: str = ORG) -> ssl.SSLContext:
        """A station's TLS context: trusts the server; with `station_id`, carries a
        certificate whose subject CN is that id, signed by `ca` (the station CA)."""
        context = ssl.create_default_context()
        self.server_ca.configure_trust(context)
        if station_id is not None:
            signer = ca or self.station_ca
            signer.issue_cert(station_id, common_name=station_id,
                              organization_name=organization).configure_cert(context)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    server_ca, station_ca = trustme.CA(), trustme.CA(organization_name=ORG)
    files = {name: str(tmp_path / f"{name}.pem") for name in ("cert", "key", "station_ca")}
    server = server_ca.issue_cert("127.0.0.1")
    server.private_key_and_cert_chain_pem.write_to_path(files["cert"])
    server.private_key_pem.write_to_path(files["key"])
    station_ca.cert_pem.write_to_path(files["station_ca"])
    return Pki(server_ca, station_ca, files)


async def start(nursery: trio.Nursery, tmp_path: Path, pki: Pki, **overrides: object
                ) -> CsmsInProcess:
    return await start_in_process(
        nursery, tmp_path, tls_cert=pki.files["cert"], tls_key=pki.files["key"],
        tls_client_ca=pki.files["station_ca"], **overrides)


async def add_station(csms: CsmsInProcess, station_id: str, password: str,
                      profile: int | None) -> None:
    hashed = passwords.hash_generated(password)
    await csms.server.store.run(lambda: Station.create(
        id=station_id, password_hash=hashed, registration="accepted",
        security_profile=profile))


async def stored_profile(csms: CsmsInProcess, station_id: str) -> int | None:
    return await csms.server.store.run(
        lambda: Station.get(Station.id == station_id).security_profile)


async def _boot(port: int, station_id: str, context: ssl.SSLContext | None,
                password: str | None) -> str:
    headers = {}
    if password is not None:
        token = base64.b64encode(f"{station_id}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    scheme = "wss" if context is not None else "ws"
    try:
        ws = await websockets.connect(
            f"{scheme}://127.0.0.1:{port}/ocpp/{station_id}", ssl=context,
            subprotocols=["ocpp2.0.1"], additional_headers=headers, open_timeout=10)
    except websockets.InvalidStatus as exc:
        return f"HTTP {exc.response.status_code}"
    except (OSError, ssl.SSLError, websockets.InvalidHandshake) as exc:
        return f"refused in TLS: {type(exc).__name__}"
    cp = ChargePoint(station_id, ws)
    listener = asyncio.create_task(cp.start())
    try:
        boot = await cp.call(call201.BootNotification(
            charging_station={"model": "Wallbox-3", "vendor_name": "Interop"},
            reason="PowerUp"))
        return str(boot.status)
    finally:
        listener.cancel()
        await ws.close()


async def connect(csms: CsmsInProcess, station_id: str, context: ssl.SSLContext | None,
                  password: str | None = None) -> str:
    """"Accepted" when the station booted, else how it was refused."""
    return await trio.to_thread.run_sync(
        lambda: asyncio.run(_boot(csms.port, station_id, context, password)))


async def test_profile3_station_gets_in_with_its_certificate_alone(nursery, tmp_path, pki,
                                                                   caplog):
    csms = await start(nursery, tmp_path, pki)
    await add_station(csms, "CS-3", "right-password-0123456789", profile=3)
    assert await connect(csms, "CS-3", pki.client("CS-3")) == "Accepted"
    # A password sent anyway, even a wrong one, is ignored: the certificate is the credential.
    with caplog.at_level(logging.INFO, logger="lite_csms.net"):
        assert await connect(csms, "CS-3", pki.client("CS-3"), "wrong") == "Accepted"
    assert await stored_profile(csms, "CS-3") == 3


async def test_profile3_refusals(nursery, tmp_path, pki, caplog):
    csms = await start(nursery, tmp_path, pki)
    password = "right-password-0123456789"
    await add_station(csms, "CS-3", password, profile=3)
    await add_station(csms, "CS-OTHER", password, profile=3)
    with caplog.at_level(logging.WARNING, logger="lite_csms.net"):
        # Another station's certificate never authenticates this one.
        assert await connect(csms, "CS-3", pki.client("CS-OTHER")) == "HTTP 401"
        # CN compared exactly: ids are case-sensitive in lite-csms.
        assert await connect(csms, "CS-3", pki.client("cs-3")) == "HTTP 401"
        # No certificate: the right password does not stand in for one.
        assert await connect(csms, "CS-3", pki.client(), password) == "HTTP 401"
    refusals = [r.getMessage() for r in caplog.records if "CS-3: refused" in r.getMessage()]
    assert len(refusals) == 3
    assert "names another station (CN='CS-OTHER')" in refusals[0]
    assert "CN='cs-3'" in refusals[1]
    assert "profile 3 needs a client certificate" in refusals[2]
    # A certificate from a CA the server does not trust fails the TLS handshake itself.
    stranger = trustme.CA(organization_name=ORG)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lite_csms.net"):
        outcome = await connect(csms, "CS-3", pki.client("CS-3", ca=stranger))
        await trio.sleep(0.2)
    assert outcome.startswith("refused in TLS"), outcome
    assert [r.getMessage() for r in caplog.records if "TLS handshake from" in r.getMessage()
            and "certificate verify failed" in r.getMessage()], caplog.text
    assert await stored_profile(csms, "CS-3") == 3
    online = await csms.server.store.run(lambda: Station.get(Station.id == "CS-3").online)
    assert not online and "CS-3" not in csms.server.connections


async def test_password_cache_does_not_outlive_a_raise_to_3(nursery, tmp_path, pki):
    csms = await start(nursery, tmp_path, pki)
    password = "right-password-0123456789"
    await add_station(csms, "CS-2", password, profile=2)
    # Profile 2 is unaffected by the CA: TLS + Basic auth, no certificate.
    assert await connect(csms, "CS-2", pki.client(), password) == "Accepted"
    assert await connect(csms, "CS-2", pki.client(), "wrong") == "HTTP 401"
    await csms.server.store.run(lambda: profiles.set_profile("CS-2", 3, 1, lower=False))
    assert await connect(csms, "CS-2", pki.client(), password) == "HTTP 401"


async def test_profile2_refused_on_plain_tcp(nursery, tmp_path):
    csms = await start_in_process(nursery, tmp_path)
    password = "right-password-0123456789"
    hashed = passwords.hash_generated(password)
    await csms.server.store.run(lambda: Station.insert_many([
        {"id": "CS-1", "password_hash": hashed, "security_profile": None},
        {"id": "CS-2", "password_hash": hashed, "security_profile": 2}]).execute())
    assert await connect(csms, "CS-1", None, password) == "Accepted"  # today's behaviour
    assert await connect(csms, "CS-2", None, password) == "HTTP 401"


async def test_certificate_raises_a_station_to_3_and_it_cannot_go_back(nursery, tmp_path, pki,
                                                                       caplog):
    csms = await start(nursery, tmp_path, pki, tls_client_organization=ORG)
    password = "right-password-0123456789"
    await add_station(csms, "CS-UP", password, profile=None)
    # The wrong organization is refused (A00.FR.404) and raises nothing.
    assert await connect(csms, "CS-UP", pki.client("CS-UP", organization="Other")) == "HTTP 401"
    assert await stored_profile(csms, "CS-UP") is None
    with caplog.at_level(logging.INFO, logger="lite_csms.net"):
        assert await connect(csms, "CS-UP", pki.client("CS-UP")) == "Accepted"
    assert "CS-UP: raised to security profile 3 by its client certificate" in caplog.text
    assert await stored_profile(csms, "CS-UP") == 3
    # The station cannot lower itself: its password alone is refused from now on.
    assert await connect(csms, "CS-UP", pki.client(), password) == "HTTP 401"
    assert await stored_profile(csms, "CS-UP") == 3


async def test_auto_raise_off_keeps_the_profile(nursery, tmp_path, pki):
    csms = await start(nursery, tmp_path, pki, security_profile_auto_raise=False)
    password = "right-password-0123456789"
    await add_station(csms, "CS-2", password, profile=2)
    # The certificate is ignored; profile 2 still wants the password.
    assert await connect(csms, "CS-2", pki.client("CS-2")) == "HTTP 401"
    assert await connect(csms, "CS-2", pki.client("CS-2"), password) == "Accepted"
    assert await stored_profile(csms, "CS-2") == 2


def test_operator_lowers_only_with_the_flag(tmp_path):
    database = str(tmp_path / "csms.sqlite3")
    assert run_cli("station", "add", "CS-9", "--database", database).returncode == 0
    raised = run_cli("station", "set-profile", "CS-9", "3", "--database", database)
    assert raised.returncode == 0, raised.stderr
    assert "security profile 1 -> 3" in raised.stdout
    refused = run_cli("station", "set-profile", "CS-9", "1", "--database", database)
    assert refused.returncode == 2 and "needs --lower" in refused.stderr
    shown = run_cli("station", "show", "CS-9", "--json", "--database", database)
    assert '"security_profile": 3' in shown.stdout
    lowered = run_cli("station", "set-profile", "CS-9", "1", "--lower", "--database", database)
    assert lowered.returncode == 0 and "security profile 3 -> 1" in lowered.stdout


def test_context_trusts_only_the_station_ca(tmp_path, pki):
    context = tls.server_context(pki.files["cert"], pki.files["key"],
                                 client_ca=pki.files["station_ca"])
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert context.cert_store_stats()["x509_ca"] == 1
    assert tls.server_context(pki.files["cert"], pki.files["key"]).verify_mode == ssl.CERT_NONE
    with pytest.raises(config.ConfigError):
        config.load(environ={}, overrides={"tls_client_ca": pki.files["station_ca"]})
    with pytest.raises(config.ConfigError):
        config.load(environ={}, overrides={"security_profile_default": 4})


def _upgrade(port: int, station_id: str, client: ssl.SSLContext,
             session: ssl.SSLSession | None) -> tuple[ssl.SSLSession | None, bool, bytes]:
    """One raw TLS connection with an HTTP upgrade; returns the session for resuming."""
    key = base64.b64encode(b"0123456789abcdef").decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            client.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as sock:
        sock.sendall((f"GET /ocpp/{station_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp2.0.1\r\n\r\n"
                      ).encode())
        answer = sock.recv(4096)
        return sock.session, sock.session_reused, answer


async def test_resumed_session_keeps_the_certificate(nursery, tmp_path, pki):
    # Chargers resume TLS to save bytes; the certificate verified at the full handshake
    # still names the station on the resumed one.
    csms = await start(nursery, tmp_path, pki)
    await add_station(csms, "CS-3", "right-password-0123456789", profile=3)
    client = pki.client("CS-3")
    session, reused, answer = await trio.to_thread.run_sync(
        _upgrade, csms.port, "CS-3", client, None)
    assert answer.startswith(b"HTTP/1.1 101") and not reused
    await trio.sleep(0.2)
    _, reused, answer = await trio.to_thread.run_sync(
        _upgrade, csms.port, "CS-3", client, session)
    assert reused and answer.startswith(b"HTTP/1.1 101"), answer[:40]


async def test_auto_registration_by_certificate(nursery, tmp_path, pki):
    csms = await start(nursery, tmp_path, pki, auto_register=True)
    assert await connect(csms, "CS-NEW", pki.client("CS-NEW")) == "Pending"
    row = await csms.server.store.run(lambda: Station.get(Station.id == "CS-NEW"))
    assert (row.security_profile, row.password_hash, row.registration) == (3, None, "pending")
    # A certificate naming someone else registers nobody.
    assert await connect(csms, "CS-NEW2", pki.client("CS-NEW")) == "HTTP 401"
    assert await csms.server.store.run(
        lambda: Station.get_or_none(Station.id == "CS-NEW2")) is None

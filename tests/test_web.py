"""The web page over real HTTP against an in-process server: pages, the session cookie,
CSRF, who may see what (owners only their stations, drivers only their sessions), sign-in
limits, escaping and page sizes."""

from __future__ import annotations

import os
import re
import sqlite3
from contextlib import closing
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from lite_csms import config, passwords
from lite_csms.db.models import Connector, Owner, Station, Transaction
from lite_csms.ocppj import timestamps
from lite_csms.sharing import codes, drivers, owners, pricing
from lite_csms.web.common import safe_next
from lite_csms.web.mount import is_web_path
from lite_csms.web.secret import secret_path, session_secret
from lite_csms.web.security import Attempts, client_address
from tests.conftest import CsmsInProcess
from tests.webclient import Reply, WebClient

PAGE_LIMIT = 30 * 1024
PASSWORD = "correct horse 1"


def seed(owner_names: tuple[str, ...] = ("Amina", "Baraka")) -> dict[str, Any]:
    """Owners with one station each (priced), two drivers, and a finished session of each
    driver at the first owner's station. A store job."""
    now = timestamps.now_utc()
    hashed = passwords.hash_password(PASSWORD)
    made: dict[str, Any] = {"owners": [], "stations": [], "drivers": [], "tx": []}
    for index, name in enumerate(owner_names):
        owner = owners.add_owner(name, email=f"o{index}@example.com", phone=f"+25472000000{index}",
                                 password_hash=hashed)
        station = f"CS-{index}"
        Station.create(id=station, protocol="ocpp1.6")
        # As its first StatusNotification leaves it: the page serves reported connectors only.
        Connector.create(station=station, evse_id=1, connector_id=1, status="Available",
                         status_at=now)
        owners.set_station_owner(station, owner.id)
        pricing.set_tariff(station, "KES", "25", "0", "50")
        made["owners"].append(owner.id)
        made["stations"].append(station)
    for index in range(2):
        driver = drivers.add_driver(phone=f"+25471234567{index}")
        made["drivers"].append(driver.id)
        tx = Transaction.create(
            station=made["stations"][0], evse_id=1, connector_id=1, id_token=f"D{index}",
            started_at=now - timedelta(hours=1), stopped_at=now - timedelta(minutes=30),
            energy_wh=4000.0, price_at=now - timedelta(hours=1), price_currency="KES",
            price_per_kwh=2500, price_per_hour=0, price_fee=5000, cost=15000,
            owner_id=made["owners"][0], driver_id=driver.id)
        made["tx"].append(tx.id)
    return made


async def http(csms: CsmsInProcess, client: WebClient, method: str, *args: Any) -> Reply:
    return await trio.to_thread.run_sync(getattr(client, method), *args)


def client_for(csms: CsmsInProcess) -> WebClient:
    assert csms.server.admin_port is not None
    return WebClient(csms.server.admin_port)


async def signed_in_driver(csms: CsmsInProcess, monkeypatch: pytest.MonkeyPatch,
                           phone: str) -> WebClient:
    """A driver signed in with the one-time code the server 'sent' (captured here)."""
    sent: dict[str, str] = {}
    monkeypatch.setattr(codes, "deliver", lambda number, code: sent.update({number: code}))
    client = client_for(csms)
    reply = await http(csms, client, "submit", "/signin", "/signin", {"phone": phone})
    assert reply.status == 303 and reply.location == "/signin/code"
    page = await http(csms, client, "get", "/signin/code")
    reply = await http(csms, client, "post", "/signin/code",
                       {"csrf": page.csrf(), "code": sent[phone]})
    assert reply.status == 303, reply.body
    return client


async def signed_in_owner(csms: CsmsInProcess, login: str) -> WebClient:
    client = client_for(csms)
    reply = await http(csms, client, "submit", "/owner/signin", "/owner/signin",
                       {"login": login, "password": PASSWORD})
    assert reply.status == 303 and reply.location == "/owner", reply.body
    return client


def tariff(database: Path, station: str) -> tuple[Any, ...] | None:
    with closing(sqlite3.connect(database)) as conn:
        return conn.execute("SELECT currency, per_kwh, per_hour, session_fee FROM tariff "
                            "WHERE station_id = ?", (station,)).fetchone()


# ---- pages without signing in -------------------------------------------------------------
async def test_pages_are_small_html_and_the_api_is_untouched(csms: CsmsInProcess) -> None:
    await csms.server.store.run(seed)
    client = client_for(csms)
    qr = await http(csms, client, "get", "/s/CS-0/1")
    assert qr.status == 200 and qr.headers["content-type"].startswith("text/html")
    assert "KES 25.00/kWh + KES 50.00 per session" in qr.body
    assert "Sign in to charge" in qr.body and "Charger offline" in qr.body
    assert "<script" not in qr.body and "http://" not in qr.body.replace(
        "http://www.w3.org/2000/svg", "")
    assert "default-src 'none'" in qr.headers["content-security-policy"]
    assert qr.headers["cache-control"] == "no-store"
    for path in ("/", "/signin", "/owner/signin", "/signin/password", "/s/CS-0/1"):
        reply = await http(csms, client, "get", path)
        assert reply.status == 200 and len(reply.body.encode()) < PAGE_LIMIT, path
    assert (await http(csms, client, "get", "/s/NOPE/1")).status == 404
    assert (await http(csms, client, "get", "/s/CS-0/100")).status == 404
    assert (await http(csms, client, "get", "/s/CS-0/x")).status == 404
    # A connector never reported, non-ASCII digits, and a station nobody shares: all 404,
    # as for an unknown id (the operator's own chargers are not for drivers to start).
    assert (await http(csms, client, "get", "/s/CS-0/2")).status == 404
    for odd in ("%C2%B2", "%D9%A3", "%EF%BC%93"):
        assert (await http(csms, client, "get", f"/s/CS-0/{odd}")).status == 404
    await csms.server.store.run(lambda: owners.set_station_owner("CS-1", None))
    assert (await http(csms, client, "get", "/s/CS-1/1")).status == 404
    assert (await http(csms, client, "get", "/owner/statements/9999-12")).status in (303, 404)
    owner_page = await http(csms, client, "get", "/owner")
    assert owner_page.status == 303 and owner_page.location == "/owner/signin?next=/owner"
    assert (await http(csms, client, "get", "/driver")).location == "/signin?next=/driver"
    # The admin API beside it still wants its key and answers JSON.
    api = await http(csms, client, "get", "/stations")
    assert api.status == 401 and api.headers["content-type"] == "application/json"
    assert (await http(csms, client, "get", "/health/live")).status == 200


def test_web_paths_are_whole_segments() -> None:
    assert is_web_path("/owner") and is_web_path("/owner/stations/CS-1")
    assert is_web_path("/s/CS-1/1") and is_web_path("/")
    assert not is_web_path("/owners") and not is_web_path("/drivers/codes")
    assert not is_web_path("/stations") and not is_web_path("/signing")


# ---- session cookie and CSRF --------------------------------------------------------------
async def test_every_post_needs_the_session_csrf_token(csms: CsmsInProcess) -> None:
    await csms.server.store.run(seed)
    form = {"login": "o0@example.com", "password": PASSWORD}
    client = client_for(csms)
    # No session at all, then a session with a wrong token, then another session's token.
    assert (await http(csms, client, "post", "/owner/signin", form)).status == 403
    await http(csms, client, "get", "/owner/signin")
    assert (await http(csms, client, "post", "/owner/signin",
                       {**form, "csrf": "x" * 32})).status == 403
    other = client_for(csms)
    foreign = (await http(csms, other, "get", "/owner/signin")).csrf()
    assert (await http(csms, client, "post", "/owner/signin",
                       {**form, "csrf": foreign})).status == 403
    assert "role" not in str(client.cookies)
    signed = await http(csms, client, "submit", "/owner/signin", "/owner/signin", form)
    assert signed.status == 303
    cookie = client.set_cookie_headers[-1].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    # Signed in, a POST without the token still changes nothing.
    reply = await http(csms, client, "post", "/owner/stations/CS-0/price",
                       {"currency": "KES", "per_kwh": "99"})
    assert reply.status == 403
    assert tariff(csms.database, "CS-0") == ("KES", 2500, 0, 5000)
    # Sign-out is a POST with the token too; afterwards the owner pages redirect again, and
    # so does a copy of the cookie taken before it (the session's stamp is out of date).
    copied = dict(client.cookies)
    page = await http(csms, client, "get", "/owner")
    assert (await http(csms, client, "post", "/signout", {"csrf": page.csrf()})).status == 303
    assert (await http(csms, client, "get", "/owner")).status == 303
    thief = client_for(csms)
    thief.cookies.update(copied)
    assert (await http(csms, thief, "get", "/owner")).status == 303
    # A new password ends the sessions signed in with the old one.
    again = await signed_in_owner(csms, "o0@example.com")
    assert (await http(csms, again, "get", "/owner")).status == 200
    await csms.server.store.run(lambda: Owner.update(
        password_hash=passwords.hash_password("a-new-password-1")).where(
        Owner.email == "o0@example.com").execute())
    assert (await http(csms, again, "get", "/owner")).status == 303


# ---- owners see only their own stations ---------------------------------------------------
async def test_an_owner_sees_and_prices_only_their_own_stations(csms: CsmsInProcess) -> None:
    made = await csms.server.store.run(seed)
    amina = await signed_in_owner(csms, "o0@example.com")
    home = await http(csms, amina, "get", "/owner")
    assert home.status == 200 and "CS-0" in home.body and "CS-1" not in home.body
    # The two finished sessions at her station: 2 x KES 150.00.
    assert "KES 300.00" in home.body
    mine = await http(csms, amina, "get", "/owner/stations/CS-0")
    assert mine.status == 200 and "<svg" in mine.body and "KES 150.00" in mine.body
    assert len(mine.body.encode()) < PAGE_LIMIT
    theirs = await http(csms, amina, "get", "/owner/stations/CS-1")
    assert theirs.status == 404 and "CS-1" not in theirs.body.replace("/CS-1", "")
    token = mine.csrf()
    refused = await http(csms, amina, "post", "/owner/stations/CS-1/price",
                         {"csrf": token, "currency": "KES", "per_kwh": "1"})
    assert refused.status == 404
    assert tariff(csms.database, "CS-1") == ("KES", 2500, 0, 5000)
    refused = await http(csms, amina, "post", "/owner/stations/CS-1/availability",
                         {"csrf": token, "connector": "0", "operative": "0"})
    assert refused.status == 404
    done = await http(csms, amina, "post", "/owner/stations/CS-0/price",
                      {"csrf": token, "currency": "KES", "per_kwh": "30.50",
                       "per_hour": "", "session_fee": "0"})
    assert done.status == 303 and done.location == "/owner/stations/CS-0"
    assert tariff(csms.database, "CS-0") == ("KES", 3050, 0, 0)
    shown = await http(csms, amina, "get", "/owner/stations/CS-0")
    assert "New price saved" in shown.body and 'value="30.50"' in shown.body
    bad = await http(csms, amina, "post", "/owner/stations/CS-0/price",
                     {"csrf": token, "currency": "KES", "per_kwh": "1.234"})
    assert bad.status == 303 and tariff(csms.database, "CS-0") == ("KES", 3050, 0, 0)
    assert "not changed" in (await http(csms, amina, "get", "/owner/stations/CS-0")).body
    # Availability of an offline charger: nothing sent, the page says so.
    await http(csms, amina, "post", "/owner/stations/CS-0/availability",
               {"csrf": token, "connector": "0", "operative": "0"})
    assert "offline" in (await http(csms, amina, "get", "/owner/stations/CS-0")).body
    # A charge running now shows on her stations page, with its cost so far.
    def running() -> None:
        Transaction.create(station="CS-0", evse_id=1, connector_id=1, id_token="D0",
                           started_at=timestamps.now_utc() - timedelta(minutes=30),
                           energy_wh=2000.0, price_at=timestamps.now_utc(),
                           price_currency="KES", price_per_kwh=3050, price_per_hour=0,
                           price_fee=0, owner_id=made["owners"][0])

    await csms.server.store.run(running)
    assert "Charging now: 2.00 kWh, 30 min" in (await http(csms, amina, "get", "/owner")).body
    baraka = await signed_in_owner(csms, "o1@example.com")
    sessions = await http(csms, baraka, "get", "/owner/sessions")
    assert sessions.status == 200 and "KES 150.00" not in sessions.body
    statements = await http(csms, amina, "get", "/owner/statements")
    month = re.search(r'href="/owner/statements/(\d{4}-\d{2})"', statements.body)
    assert month is not None
    statement = await http(csms, amina, "get", f"/owner/statements/{month.group(1)}")
    assert statement.status == 200 and "KES 300.00" in statement.body


# ---- drivers see only their own sessions --------------------------------------------------
async def test_a_driver_sees_and_stops_only_their_own_sessions(
        csms: CsmsInProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    made = await csms.server.store.run(seed)
    first = await signed_in_driver(csms, monkeypatch, "+254712345670")
    own, other = made["tx"]
    home = await http(csms, first, "get", "/driver")
    assert home.status == 200 and f"/driver/sessions/{own}" in home.body
    assert f"/driver/sessions/{other}" not in home.body
    page = await http(csms, first, "get", f"/driver/sessions/{own}")
    assert page.status == 200 and "KES 150.00" in page.body and "4.00 kWh" in page.body
    assert (await http(csms, first, "get", f"/driver/sessions/{other}")).status == 404
    assert (await http(csms, first, "get", "/driver/sessions/999999")).status == 404
    stop = await http(csms, first, "post", f"/driver/sessions/{other}/stop",
                      {"csrf": page.csrf()})
    assert stop.status == 404
    # An owner's session is not a driver's: the roles do not mix.
    assert (await http(csms, first, "get", "/owner")).status == 303


async def test_a_wrong_code_and_a_code_for_another_phone_do_not_sign_in(
        csms: CsmsInProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: dict[str, str] = {}
    monkeypatch.setattr(codes, "deliver", lambda number, code: sent.update({number: code}))
    client = client_for(csms)
    bad = await http(csms, client, "submit", "/signin", "/signin", {"phone": "0712"})
    assert bad.status == 400 and "country code" in bad.body
    await http(csms, client, "submit", "/signin", "/signin", {"phone": "+254700000001"})
    other = client_for(csms)
    await http(csms, other, "submit", "/signin", "/signin", {"phone": "+254700000002"})
    page = await http(csms, client, "get", "/signin/code")
    wrong = f"{(int(sent['+254700000001']) + 1) % 10**6:06d}"
    for code in (wrong, sent["+254700000002"]):
        reply = await http(csms, client, "post", "/signin/code",
                           {"csrf": page.csrf(), "code": code})
        assert reply.status == 400 and "wrong or has expired" in reply.body
    assert (await http(csms, client, "get", "/driver")).status == 303
    # Three codes per phone in 15 minutes (sharing/codes.py): the fourth is refused.
    for attempt in range(3):
        reply = await http(csms, other, "submit", "/signin", "/signin",
                           {"phone": "+254700000002"})
        assert reply.status == (303 if attempt < 2 else 429)
    assert int(reply.headers["retry-after"]) > 0 and "Too many codes" in reply.body


async def test_a_disabled_owner_is_signed_out_at_the_next_request(
        csms: CsmsInProcess) -> None:
    made = await csms.server.store.run(seed)
    client = await signed_in_owner(csms, "o0@example.com")
    assert (await http(csms, client, "get", "/owner")).status == 200

    def disable() -> None:
        Owner.update(disabled=True).where(Owner.id == made["owners"][0]).execute()

    await csms.server.store.run(disable)
    reply = await http(csms, client, "get", "/owner/stations/CS-0")
    assert reply.status == 303 and reply.location.startswith("/owner/signin")


async def test_a_driver_with_a_password_signs_in_without_a_code(csms: CsmsInProcess) -> None:
    def account() -> None:
        drivers.add_driver(email="otieno@example.com",
                           password_hash=passwords.hash_password(PASSWORD))

    await csms.server.store.run(account)
    client = client_for(csms)
    wrong = await http(csms, client, "submit", "/signin/password?next=/s/CS-0/1",
                       "/signin/password", {"login": "otieno@example.com", "password": "nope",
                                            "next": "/s/CS-0/1"})
    assert wrong.status == 400 and "do not match" in wrong.body
    right = await http(csms, client, "submit", "/signin/password", "/signin/password", {
        "login": "Otieno@Example.com", "password": PASSWORD, "next": "/driver"})
    assert right.status == 303 and right.location == "/driver"
    assert (await http(csms, client, "get", "/driver")).status == 200


# ---- sign-in limits -----------------------------------------------------------------------
async def test_failed_owner_sign_ins_are_limited_per_login(csms: CsmsInProcess) -> None:
    await csms.server.store.run(seed)
    client = client_for(csms)
    token = (await http(csms, client, "get", "/owner/signin")).csrf()
    for _ in range(5):
        reply = await http(csms, client, "post", "/owner/signin",
                           {"csrf": token, "login": "o0@example.com", "password": "wrong!!!"})
        assert reply.status == 400
    right = {"csrf": token, "login": "o0@example.com", "password": PASSWORD}
    blocked = await http(csms, client, "post", "/owner/signin", right)
    assert blocked.status == 429 and int(blocked.headers["retry-after"]) > 0
    # Another login from the same address is not blocked by the first one's failures.
    other = await http(csms, client, "post", "/owner/signin",
                       {**right, "login": "o1@example.com"})
    assert other.status == 303


def test_the_client_address_behind_a_local_proxy_only() -> None:
    from starlette.requests import Request

    def request(peer: str, forwarded: str | None) -> Request:
        headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
        return Request({"type": "http", "client": (peer, 5000), "headers": headers})

    assert client_address(request("127.0.0.1", "10.0.0.9, 41.90.1.2")) == "41.90.1.2"
    assert client_address(request("::1", "41.90.1.2")) == "41.90.1.2"
    assert client_address(request("127.0.0.1", None)) == "127.0.0.1"
    # Anyone else could write the header: it is ignored.
    assert client_address(request("41.90.1.3", "1.2.3.4")) == "41.90.1.3"


def test_redirects_after_sign_in_stay_on_the_page() -> None:
    assert safe_next("/s/CS-1/1") == "/s/CS-1/1"
    assert safe_next("/driver/sessions/4?fresh=1") == "/driver/sessions/4?fresh=1"
    for outside in ("//evil.example/x", "https://evil.example/", "/\\evil.example",
                    "/stations", "", None, "javascript:alert(1)"):
        assert safe_next(outside, "/owner") == "/owner"


def test_attempts_slide_with_time() -> None:
    now = [0.0]
    limit = Attempts(2, 60, max_keys=2, clock=lambda: now[0])
    limit.record("a")
    limit.record("a")
    assert limit.blocked("a") and not limit.blocked("b")
    assert 1 <= limit.retry_after("a") <= 61
    now[0] = 61.0
    assert not limit.blocked("a")
    limit.record("a")
    limit.record("a")
    limit.record("b")
    limit.record("c")  # over max_keys: the least recently seen key ("a") is forgotten
    assert not limit.blocked("a")


# ---- escaping -----------------------------------------------------------------------------
async def test_names_are_escaped(csms: CsmsInProcess) -> None:
    await csms.server.store.run(partial(seed, ("<script>alert(1)</script>",)))
    client = await signed_in_owner(csms, "o0@example.com")
    home = await http(csms, client, "get", "/owner")
    assert "<script>" not in home.body and "&lt;script&gt;alert(1)&lt;/script&gt;" in home.body


# ---- the session key -----------------------------------------------------------------------
def test_the_session_key_is_made_once_and_kept(tmp_path: Path) -> None:
    settings = config.load(environ={}, overrides={"database": str(tmp_path / "x.sqlite3")})
    first = session_secret(settings)
    path = secret_path(settings)
    assert path.exists() and (os.stat(path).st_mode & 0o777) == 0o600
    assert session_secret(settings) == first and len(first) >= 32
    chosen = config.load(environ={}, overrides={"database": str(tmp_path / "x.sqlite3"),
                                                "web_secret": "s" * 40})
    assert session_secret(chosen) == "s" * 40
    path.write_text("short\n")
    with pytest.raises(OSError):
        session_secret(settings)
    memory = config.load(environ={}, overrides={"database": ":memory:"})
    assert session_secret(memory) != session_secret(memory)
    assert not Path(":memory:.web-secret").exists()


async def test_a_busy_months_statement_is_paged_under_the_size_limit(
        csms: CsmsInProcess) -> None:
    made = await csms.server.store.run(seed)
    now = timestamps.now_utc()

    def busy_month() -> None:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        Transaction.insert_many([{
            "station": "CS-0", "evse_id": 1, "connector_id": 1, "id_token": "X",
            "started_at": start + timedelta(minutes=i), "stopped_at": start + timedelta(
                minutes=i + 1), "energy_wh": 1000.0, "price_currency": "KES",
            "price_per_kwh": 2500, "price_per_hour": 0, "price_fee": 0, "cost": 2500,
            "owner_id": made["owners"][0]} for i in range(200)]).execute()

    await csms.server.store.run(busy_month)
    client = await signed_in_owner(csms, "o0@example.com")
    month = f"/owner/statements/{now.year:04d}-{now.month:02d}"
    first = await http(csms, client, "get", month)
    assert first.status == 200 and len(first.body.encode()) < PAGE_LIMIT
    assert "Page 1 of 3" in first.body and "KES 5300.00" in first.body  # 200 x 25 + 2 x 150
    last = await http(csms, client, "get", month + "?page=3")
    # Two table headers, one charger, and the last 42 of 202 charges.
    assert "Page 3 of 3" in last.body and last.body.count("<tr>") == 2 + 1 + 42
    assert (await http(csms, client, "get", "/owner/statements/2026-13")).status == 404

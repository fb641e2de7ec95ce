"""Sharing: owners, drivers, one-time codes and monthly owner statements, on a real SQLite
file (lite_csms/sharing/)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import peewee as pw
import pytest

from lite_csms import passwords
from lite_csms.db.database import open_database
from lite_csms.db.models import IdToken, OneTimeCode, Station, TrafficCounter, Transaction
from lite_csms.handlers import transactions
from lite_csms.sharing import codes, drivers, logins, owners, pricing, statements

NOV = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[pw.SqliteDatabase]:
    database = open_database(tmp_path / "accounts.sqlite3")
    yield database
    database.close()


def test_logins_are_normalised_and_checked() -> None:
    assert logins.phone("+254 712-345 678") == "+254712345678"
    assert logins.phone("00254712345678") == "+254712345678"
    assert logins.email(" Wanjiru@Example.COM ") == "wanjiru@example.com"
    for bad in ("0712345678", "+0712345678", "phone", "+25471234567890123"):
        with pytest.raises(logins.LoginError):
            logins.phone(bad)
    with pytest.raises(logins.LoginError):
        logins.email("not-an-address")
    with pytest.raises(logins.LoginError):
        logins.check_password("short")


def test_owner_login_and_stations(db: pw.SqliteDatabase) -> None:
    Station.create(id="CS-1")
    Station.create(id="CS-2")
    owner = owners.add_owner("Wanjiru", email="W@example.com", phone="+254712345678",
                             password_hash=passwords.hash_password("secret-pw"))
    with pytest.raises(owners.OwnerError):
        owners.add_owner("Someone", phone="+254 712 345 678")  # the same phone
    with pytest.raises(owners.OwnerError):
        owners.add_owner("Nobody")  # no login
    assert owners.find_owner("w@example.com").id == owner.id
    assert owners.find_owner("+254712345678").id == owner.id
    assert owners.find_owner("garbage") is None
    assert owners.get_owner(str(owner.id)).id == owner.id
    assert owners.check_password(owner, "secret-pw")
    assert not owners.check_password(owner, "wrong-pw!")
    assert owners.set_station_owner("CS-1", owner.id)
    assert not owners.set_station_owner("NOPE", owner.id)
    with pytest.raises(owners.OwnerError):
        owners.set_station_owner("CS-2", 999)
    assert owners.owns(owner.id, "CS-1") and not owners.owns(owner.id, "CS-2")
    pricing.set_tariff("CS-1", "KES", "20")
    assert [s["id"] for s in owners.stations_of(owner.id)] == ["CS-1"]
    assert owners.stations_of(owner.id)[0]["tariff"]["per_kwh"] == 2000
    owner.disabled = True
    owner.save()
    assert not owners.check_password(owner, "secret-pw")


def test_driver_token_and_sessions_are_theirs_only(db: pw.SqliteDatabase) -> None:
    Station.create(id="CS-1")
    driver = drivers.add_driver("Otieno", phone="+254700000001")
    other = drivers.add_driver("Akinyi", phone="+254700000002")
    with pytest.raises(drivers.DriverError):
        drivers.add_driver(phone="+254 700 000 001")
    token = drivers.driver_token(driver.id)
    assert drivers.driver_token(driver.id) == token  # made once
    assert len(token) <= 20  # a 1.6 idTag
    assert IdToken.get(IdToken.token == token).token_type == "Central"
    IdToken.create(token="04AABB")
    assert drivers.link_token("04aabb", other.id)  # case-insensitive, as OCPP's
    started = transactions.start_v16("CS-1", 1, token, 0.0, NOV, None)
    transactions.start_v16("CS-1", 2, "04AABB", 0.0, NOV, None)
    assert [s["id"] for s in drivers.sessions_of(driver.id)] == [started.transaction_id]
    assert len(drivers.sessions_of(other.id)) == 1
    assert drivers.driver_for_phone("+254700000001").id == driver.id
    new = drivers.driver_for_phone("+254 700 000 009")
    assert new.id not in (driver.id, other.id) and new.phone == "+254700000009"
    driver.disabled = True
    driver.save()
    with pytest.raises(drivers.DriverError):
        drivers.driver_token(driver.id)


def test_one_time_codes_hash_expiry_attempts_and_rate(db: pw.SqliteDatabase) -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    phone = "+254711000000"
    code = codes.issue(phone, now)
    assert len(code) == 6 and code.isdigit()
    stored = OneTimeCode.get()
    assert code not in stored.code_hash  # only a salted hash is kept
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert not codes.redeem(phone, wrong, now)
    assert codes.redeem("+254 711 000 000", code, now + timedelta(minutes=1))
    assert not codes.redeem(phone, code, now + timedelta(minutes=1))  # used once
    # Expiry: a code is good for 10 minutes.
    late = codes.issue(phone, now + timedelta(minutes=2))
    assert not codes.redeem(phone, late, now + timedelta(minutes=13))
    # Attempts: five wrong tries and even the right code is refused.
    third = codes.issue(phone, now + timedelta(minutes=3))
    wrong = f"{(int(third) + 1) % 1_000_000:06d}"
    for _ in range(codes.MAX_ATTEMPTS):
        assert not codes.redeem(phone, wrong, now + timedelta(minutes=4))
    assert not codes.redeem(phone, third, now + timedelta(minutes=4))
    # Rate: a fourth code within 15 minutes is refused, with when to come back.
    with pytest.raises(codes.TooManyCodes) as refused:
        codes.issue(phone, now + timedelta(minutes=5))
    assert 0 < refused.value.retry_after <= 600
    assert codes.issue(phone, now + timedelta(minutes=16))
    # Codes long past use are deleted as new ones are issued.
    codes.issue(phone, now + timedelta(hours=2))
    assert OneTimeCode.select().where(OneTimeCode.phone == phone).count() == 1
    # A new code replaces the one before it.
    first = codes.issue("+254722000000", now)
    codes.issue("+254722000000", now + timedelta(seconds=1))
    assert not codes.redeem("+254722000000", first, now + timedelta(seconds=2))


def _session(station: str, evse: int, start: datetime, minutes: int, wh: float,
             stop: bool = True) -> int:
    tx_id = transactions.start_v16(station, evse, "TAG", 0.0, start, None).transaction_id
    if stop:
        transactions.stop_v16(station, tx_id, wh, start + timedelta(minutes=minutes), "Local",
                              None, [])
    return tx_id


def test_monthly_statement(db: pw.SqliteDatabase) -> None:
    for sid in ("CS-1", "CS-2", "CS-3"):
        Station.create(id=sid)
    owner = owners.add_owner("Wanjiru", phone="+254712345678")
    other = owners.add_owner("Kamau", phone="+254712345679")
    IdToken.create(token="TAG")
    owners.set_station_owner("CS-1", owner.id)
    owners.set_station_owner("CS-2", owner.id)
    owners.set_station_owner("CS-3", other.id)
    pricing.set_tariff("CS-1", "KES", per_kwh="25", session_fee="50")
    pricing.set_tariff("CS-2", "EUR", per_hour="1.20")
    _session("CS-1", 1, NOV, 60, 4_000.0)                # KES 150.00
    _session("CS-1", 1, NOV + timedelta(hours=2), 30, 1_000.4)  # KES 75.00
    _session("CS-2", 1, NOV, 90, 2_000.0)                # EUR 1.80
    _session("CS-3", 1, NOV, 60, 9_000.0)                # the other owner's
    _session("CS-1", 1, datetime(2026, 10, 31, 23, 0, tzinfo=UTC), 120, 500.0)  # stops Nov 1
    _session("CS-1", 1, datetime(2026, 11, 30, 23, 0, tzinfo=UTC), 120, 500.0)  # stops Dec
    _session("CS-1", 2, NOV, 0, 0.0, stop=False)         # still running: not in it
    # The station changes hands: sessions keep the owner they began under.
    owners.set_station_owner("CS-2", other.id)
    for sid, start, amount in (("CS-1", datetime(2026, 11, 3, 5, tzinfo=UTC), 1_500_000),
                               ("CS-1", datetime(2026, 11, 20, 0, tzinfo=UTC), 1_000_000),
                               ("CS-1", datetime(2026, 12, 1, 0, tzinfo=UTC), 9_999_999),
                               ("CS-2", datetime(2026, 11, 4, 0, tzinfo=UTC), 250_000)):
        TrafficCounter.create(station=sid, period="hour", period_start=start, action="Heartbeat",
                              direction="in", layer="ip", bytes=amount, messages=1)
        TrafficCounter.create(station=sid, period="hour", period_start=start, action="Heartbeat",
                              direction="in", layer="payload", bytes=amount, messages=1)
    found = statements.statement(owner.id, 2026, 11, data_price_per_mb=150,
                                 data_currency="KES")
    assert found is not None and found["month"] == "2026-11"
    assert found["sessions"] == 4
    assert found["energy_wh"] == 4_000 + 1_000 + 2_000 + 500
    assert found["revenue"] == {"KES": 15000 + 7500 + (1250 + 5000), "EUR": 180}
    by_station = {row["station"]: row for row in found["stations"]}
    assert set(by_station) == {"CS-1", "CS-2"}  # CS-2 through its session
    # CS-1: 2,500,000 ip bytes (not December's, not the payload layer) at 1.50/MB = 3.75
    assert by_station["CS-1"]["data_bytes"] == 2_500_000
    assert by_station["CS-1"]["data_cost"] == 375
    # CS-2: 0.25 MB at 1.50 = 0.375 -> 0.38 (half up)
    assert by_station["CS-2"]["data_cost"] == 38
    assert found["data_cost"] == 413
    assert by_station["CS-1"]["revenue"] == {"KES": 15000 + 7500 + 6250}
    assert statements.statement(other.id, 2026, 11)["sessions"] == 1
    assert statements.statement(999, 2026, 11) is None
    assert Transaction.select().where(Transaction.owner_id == owner.id).count() == 6
    with pytest.raises(ValueError):
        statements.parse_month("2026-13")
    assert statements.data_cost(1, 1) == 0 and statements.data_cost(500_000, 1) == 1

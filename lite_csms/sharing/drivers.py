"""Drivers: people who charge, with id tokens, a phone login, or both (store jobs).

A driver who signs in on the web page starts a charge by RemoteStart with an id token of
their own: `driver_token` makes one on first use (type Central, "D" + 11 random characters,
short enough for a 1.6 idTag), so the session is the driver's like any RFID session.
"""

from __future__ import annotations

import secrets
from typing import Any

from lite_csms import passwords
from lite_csms.ascii_digits import digits
from lite_csms.db.models import Driver, IdToken, Transaction, token_key
from lite_csms.sharing import logins, pricing

CENTRAL = "Central"
_TOKEN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class DriverError(ValueError):
    """A request about drivers that cannot be done; the message says why."""


def add_driver(name: str | None = None, phone: str | None = None, email: str | None = None,
               password_hash: str | None = None) -> Driver:
    """A new driver. Raises LoginError for a malformed phone/email, DriverError when one is
    taken."""
    number = None if not phone else logins.phone(phone)
    address = None if not email else logins.email(email)
    # Only the given ones: peewee reads `== None` as IS NULL, which every login-less row is.
    found = (Driver.select().where(Driver.phone == number).first() if number else None) or (
        Driver.select().where(Driver.email == address).first() if address else None)
    if found is not None:
        raise DriverError(f"driver {found.id} already has that phone number or email")
    return Driver.create(name=(name or "").strip() or None, phone=number, email=address,
                         password_hash=password_hash)


def get_driver(ref: int | str) -> Driver | None:
    """By id (an int, or digits) or by login (email or phone)."""
    if isinstance(ref, int) or digits(str(ref)):
        return Driver.get_or_none(Driver.id == int(ref))
    return find_driver(str(ref))


def find_driver(login: str) -> Driver | None:
    try:
        kind, value = logins.split(login)
    except logins.LoginError:
        return None
    return Driver.get_or_none((Driver.email if kind == "email" else Driver.phone) == value)


def driver_for_phone(phone: str) -> Driver:
    """The driver with this phone, made on first sign-in with a one-time code. Raises
    LoginError for a malformed number."""
    number = logins.phone(phone)
    found = Driver.get_or_none(Driver.phone == number)
    return found if found is not None else Driver.create(phone=number)


def link_token(token: str, driver_id: int | None) -> bool:
    """Give an existing id token to a driver (None: to nobody). False for an unknown token;
    raises DriverError for an unknown driver."""
    if driver_id is not None and Driver.get_or_none(Driver.id == driver_id) is None:
        raise DriverError(f"no driver {driver_id}")
    return (IdToken.update(driver=driver_id).where(IdToken.token_key == token_key(token))
            .execute() > 0)


def driver_token(driver_id: int) -> str:
    """The id token the driver's web remote starts use, as registered; made on first use.
    Raises DriverError for an unknown or disabled driver."""
    driver = Driver.get_or_none(Driver.id == driver_id)
    if driver is None or driver.disabled:
        raise DriverError(f"no driver {driver_id}" if driver is None
                          else f"driver {driver_id} is disabled")
    found = (IdToken.select().where(IdToken.driver == driver_id, IdToken.token_type == CENTRAL,
                                    IdToken.status == "Accepted")
             .order_by(IdToken.id).first())
    if found is not None:
        return found.token
    token = "D" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(11))
    IdToken.create(token=token, token_type=CENTRAL, driver=driver_id)
    return token


def tokens_of(driver_id: int) -> list[str]:
    return [t.token for t in IdToken.select(IdToken.token)
            .where(IdToken.driver == driver_id).order_by(IdToken.id)]


def sessions_of(driver_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """The driver's sessions, newest first: id, station, evse, started_at, stopped_at,
    energy_wh, price, cost, cost_text. Only theirs: the check the driver's pages rely on."""
    rows = (Transaction.select().where(Transaction.driver_id == driver_id)
            .order_by(Transaction.started_at.desc()).limit(limit))
    return [session_record(tx) for tx in rows]


def session_record(tx: Transaction) -> dict[str, Any]:
    return {"id": tx.id, "station": tx.station_id, "evse": tx.evse_id,
            "started_at": tx.started_at, "stopped_at": tx.stopped_at,
            "energy_wh": pricing.billed_wh(tx.energy_wh), **pricing.cost_record(tx)}


def driver_record(driver: Driver) -> dict[str, Any]:
    """id, name, phone, email, has_password, disabled, created_at, tokens."""
    return {"id": driver.id, "name": driver.name, "phone": driver.phone,
            "email": driver.email, "has_password": driver.password_hash is not None,
            "disabled": driver.disabled, "created_at": driver.created_at,
            "tokens": tokens_of(driver.id)}


def list_drivers() -> list[dict[str, Any]]:
    return [driver_record(d) for d in Driver.select().order_by(Driver.id)]


def check_password(driver: Driver, password: str) -> bool:
    """Whether `password` is the driver's account password (scrypt: run in a worker
    thread); False for a disabled driver or one without a password."""
    if driver.disabled or not driver.password_hash:
        passwords.verify(password, passwords.DUMMY_HASH)
        return False
    return passwords.verify(password, driver.password_hash)


def set_password_hash(driver_id: int, password_hash: str | None) -> bool:
    return (Driver.update(password_hash=password_hash).where(Driver.id == driver_id)
            .execute() > 0)

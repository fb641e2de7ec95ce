"""Owners: people who own stations and earn what they sell (store jobs).

An owner signs in with email or phone and a password, stored as a salted scrypt hash
(lite_csms/passwords.py). `check_password` runs scrypt (~40 ms, 16 MiB): call it in a
worker thread (`trio.to_thread.run_sync`), never inside a store job.
"""

from __future__ import annotations

from typing import Any

from lite_csms import passwords
from lite_csms.ascii_digits import digits
from lite_csms.db.models import Owner, Station
from lite_csms.sharing import logins, pricing


class OwnerError(ValueError):
    """A request about owners that cannot be done; the message says why."""


def add_owner(name: str, email: str | None = None, phone: str | None = None,
              password_hash: str | None = None) -> Owner:
    """A new owner. `password_hash` from passwords.hash_password (hash outside the store
    job). Raises LoginError for a malformed email/phone, OwnerError when one is taken or
    both are missing."""
    if not name.strip():
        raise OwnerError("an owner needs a name")
    if not email and not phone:
        raise OwnerError("an owner needs an email address or a phone number to sign in")
    address = None if not email else logins.email(email)
    number = None if not phone else logins.phone(phone)
    # Only the given ones: peewee reads `== None` as IS NULL, which every login-less row is.
    taken = (Owner.select().where(Owner.email == address).first() if address else None) or (
        Owner.select().where(Owner.phone == number).first() if number else None)
    if taken is not None:
        raise OwnerError(f"owner {taken.id} already has that email address or phone number")
    return Owner.create(name=name.strip(), email=address, phone=number,
                        password_hash=password_hash)


def find_owner(login: str) -> Owner | None:
    """The owner an email or phone names (None: unknown or malformed)."""
    try:
        kind, value = logins.split(login)
    except logins.LoginError:
        return None
    field = Owner.email if kind == "email" else Owner.phone
    return Owner.get_or_none(field == value)


def get_owner(ref: int | str) -> Owner | None:
    """By id (an int, or digits) or by login (email or phone)."""
    if isinstance(ref, int) or digits(str(ref)):
        return Owner.get_or_none(Owner.id == int(ref))
    return find_owner(str(ref))


def check_password(owner: Owner, password: str) -> bool:
    """Whether `password` is the owner's; False for a disabled owner or one without a
    password. Slow on purpose (scrypt): run in a worker thread."""
    if owner.disabled or not owner.password_hash:
        passwords.verify(password, passwords.DUMMY_HASH)  # same time for every refusal
        return False
    return passwords.verify(password, owner.password_hash)


def set_password_hash(owner_id: int, password_hash: str) -> bool:
    """Store a new hash (passwords.hash_password, computed outside the store job)."""
    return Owner.update(password_hash=password_hash).where(Owner.id == owner_id).execute() > 0


def set_station_owner(station_id: str, owner_id: int | None) -> bool:
    """Give a station to an owner (None: back to the operator). Sessions keep the owner they
    began under. False for an unknown station; raises OwnerError for an unknown owner."""
    if owner_id is not None and Owner.get_or_none(Owner.id == owner_id) is None:
        raise OwnerError(f"no owner {owner_id}")
    return Station.update(owner=owner_id).where(Station.id == station_id).execute() > 0


def owns(owner_id: int, station_id: str) -> bool:
    """Whether the station is this owner's: the check every owner page makes."""
    return Station.select().where(Station.id == station_id,
                                  Station.owner == owner_id).exists()


def stations_of(owner_id: int) -> list[dict[str, Any]]:
    """The owner's stations: id, online, last_seen_at, protocol, tariff (Price.as_dict or
    None), in id order."""
    found = []
    for station in (Station.select().where(Station.owner == owner_id).order_by(Station.id)):
        price = pricing.tariff_of(station.id)
        found.append({"id": station.id, "online": station.online,
                      "last_seen_at": station.last_seen_at, "protocol": station.protocol,
                      "tariff": None if price is None else price.as_dict()})
    return found


def owner_record(owner: Owner) -> dict[str, Any]:
    """id, name, email, phone, has_password, disabled, created_at, stations (ids)."""
    return {"id": owner.id, "name": owner.name, "email": owner.email, "phone": owner.phone,
            "has_password": owner.password_hash is not None, "disabled": owner.disabled,
            "created_at": owner.created_at,
            "stations": [s.id for s in Station.select(Station.id)
                         .where(Station.owner == owner.id).order_by(Station.id)]}


def list_owners() -> list[dict[str, Any]]:
    return [owner_record(o) for o in Owner.select().order_by(Owner.id)]

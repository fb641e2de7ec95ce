"""Tariffs per station and each session's cost.

Rule: cost = session fee + per_kwh * kWh + per_hour * hours, in integer minor units, rounded
half up to the minor unit once, at the end (the fee is whole already). Energy is the
transaction's `energy_wh` (lite_csms/energy.py), itself rounded half up to a whole Wh; time
is whole seconds from the session's start to its stop (or, while it runs, to its latest
reading), both as the station stamped them.

The price is taken once per session, in the store job that creates the transaction (the
first recount, handlers/meter_values.recount): the station's tariff if it was set before the
CSMS first heard of the session (`Transaction.created_at`), else none. A tariff changed
later never reprices a session. A session without a price has `cost` NULL: not free, just
unpriced (a station with a tariff of zeros prices sessions at 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from lite_csms.db.models import IdToken, Station, Tariff, Transaction, token_key
from lite_csms.ocppj.timestamps import now_utc
from lite_csms.sharing.money import check_currency, format_amount, parse_amount

WH_PER_KWH = 1000
SECONDS_PER_HOUR = 3600


@dataclass(frozen=True, slots=True)
class Price:
    """A tariff: minor units of `currency` per kWh, per hour and per session."""

    currency: str
    per_kwh: int = 0
    per_hour: int = 0
    session_fee: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"currency": self.currency, "per_kwh": self.per_kwh, "per_hour": self.per_hour,
                "session_fee": self.session_fee, "text": describe(self)}


def describe(price: Price) -> str:
    """"KES 25.00/kWh + KES 10.00/h + KES 50.00 per session"; the parts that are zero left
    out; "free" when all are."""
    parts = []
    if price.per_kwh:
        parts.append(f"{format_amount(price.per_kwh, price.currency)}/kWh")
    if price.per_hour:
        parts.append(f"{format_amount(price.per_hour, price.currency)}/h")
    if price.session_fee:
        parts.append(f"{format_amount(price.session_fee, price.currency)} per session")
    return " + ".join(parts) or "free"


def billed_wh(energy_wh: float | None) -> int:
    """The energy billed: whole Wh, rounded half up; none counts as 0."""
    if energy_wh is None or energy_wh <= 0:
        return 0
    return math.floor(energy_wh + 0.5)


def session_cost(price: Price, energy_wh: int, seconds: int) -> int:
    """Minor units: fee + per_kwh * Wh/1000 + per_hour * s/3600, rounded half up once.

    Exact integer arithmetic: both terms over the common denominator 3,600,000.
    Raises ValueError for negative energy or time."""
    if energy_wh < 0 or seconds < 0:
        raise ValueError("energy and time must not be negative")
    denominator = WH_PER_KWH * SECONDS_PER_HOUR
    numerator = (price.per_kwh * energy_wh * SECONDS_PER_HOUR
                 + price.per_hour * seconds * WH_PER_KWH)
    return price.session_fee + (2 * numerator + denominator) // (2 * denominator)


def seconds_between(start: datetime, end: datetime | None) -> int:
    """Whole seconds from start to end (truncated); 0 when end is missing or earlier."""
    if end is None:
        return 0
    return max(0, int((end - start).total_seconds()))


# ---- tariffs (store jobs) ---------------------------------------------------------------------

def set_tariff(station_id: str, currency: str, per_kwh: int | str = 0,
               per_hour: int | str = 0, session_fee: int | str = 0,
               updated_by: str | None = None) -> Price | None:
    """Set a station's tariff; amounts are minor units (int) or decimal text in major units
    ("25.50"). Returns the tariff, None for an unknown station. Raises MoneyError. Sessions
    already running keep the price they started with."""
    if Station.get_or_none(Station.id == station_id) is None:
        return None
    code = check_currency(currency)
    price = Price(code, parse_amount(per_kwh, code), parse_amount(per_hour, code),
                  parse_amount(session_fee, code))
    (Tariff.insert(station=station_id, currency=code, per_kwh=price.per_kwh,
                   per_hour=price.per_hour, session_fee=price.session_fee,
                   updated_at=now_utc(), updated_by=updated_by)
     .on_conflict_replace().execute())
    return price


def clear_tariff(station_id: str) -> bool:
    """Remove a station's tariff (later sessions are unpriced); False if it had none."""
    return Tariff.delete().where(Tariff.station == station_id).execute() > 0


def tariff_of(station_id: str) -> Price | None:
    row = Tariff.get_or_none(Tariff.station == station_id)
    return None if row is None else _price(row)


def _price(row: Tariff) -> Price:
    return Price(row.currency, row.per_kwh, row.per_hour, row.session_fee)


# ---- a session's price and cost -----------------------------------------------------------

def price_of(tx: Transaction) -> Price | None:
    """The price the session was taken at; None when it has none (or not taken yet)."""
    if tx.price_currency is None:
        return None
    return Price(tx.price_currency, tx.price_per_kwh or 0, tx.price_per_hour or 0,
                 tx.price_fee or 0)


def take_price(tx: Transaction) -> None:
    """Copy the tariff in force when the CSMS first heard of the session onto it, with the
    station's owner; once (price_at set). Does not save."""
    row = Tariff.get_or_none(Tariff.station == tx.station_id)
    if row is not None and tx.created_at is not None and row.updated_at > tx.created_at:
        row = None  # set after this session began: not its price
    tx.price_at = now_utc()
    tx.price_currency = None if row is None else row.currency
    tx.price_per_kwh = None if row is None else row.per_kwh
    tx.price_per_hour = None if row is None else row.per_hour
    tx.price_fee = None if row is None else row.session_fee
    owner = (Station.select(Station.owner).where(Station.id == tx.station_id).scalar())
    tx.owner_id = owner


def _driver_of(token: str) -> int | None:
    return (IdToken.select(IdToken.driver).where(IdToken.token_key == token_key(token))
            .scalar())


def update_cost(tx: Transaction, latest_at: datetime | None) -> None:
    """Take the session's price if not taken yet, note its driver, and recompute `cost`
    from its energy and its time up to its stop (running: up to `latest_at`, its latest
    reading). Called by every recount, before it saves."""
    if tx.price_at is None:
        take_price(tx)
    if tx.driver_id is None and tx.id_token:
        tx.driver_id = _driver_of(tx.id_token)
    price = price_of(tx)
    if price is None:
        tx.cost = None
        return
    end = tx.stopped_at or latest_at
    tx.cost = session_cost(price, billed_wh(tx.energy_wh), seconds_between(tx.started_at, end))


def running_cost(tx: Transaction, at: datetime) -> int | None:
    """The cost as of `at` (a running session's time goes on between readings); the stored
    cost once it stopped. None without a price."""
    price = price_of(tx)
    if price is None:
        return None
    if tx.stopped_at is not None:
        return tx.cost
    return session_cost(price, billed_wh(tx.energy_wh), seconds_between(tx.started_at, at))


def cost_record(tx: Transaction) -> dict[str, object]:
    """The session's price and cost for listings: price (Price.as_dict or None), cost
    (minor units or None), cost_text ("KES 12.35")."""
    price = price_of(tx)
    return {"price": None if price is None else price.as_dict(), "cost": tx.cost,
            "cost_text": (None if price is None or tx.cost is None
                          else format_amount(tx.cost, price.currency))}


def progress_cost(tx_id: int, at: datetime) -> dict[str, object] | None:
    """cost_record of a session with its cost as of `at` while it runs (the progress a
    driver sees); None for an unknown transaction."""
    tx = Transaction.get_or_none(Transaction.id == tx_id)
    if tx is None:
        return None
    record = cost_record(tx)
    cost, price = running_cost(tx, at), price_of(tx)
    if cost is not None and price is not None:
        record["cost"], record["cost_text"] = cost, format_amount(cost, price.currency)
    return record

"""Store jobs for the pages, each scoped to the person signed in: an owner's job finds only
their stations and the sessions they earn, a driver's only their own sessions. A row that
exists but is someone else's is answered exactly like one that does not exist (None: 404),
so ids cannot be probed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from functools import partial
from typing import Any

from lite_csms.db.models import Connector, Driver, Owner, Station, Transaction
from lite_csms.sharing import pricing
from lite_csms.sharing.money import amount_text
from lite_csms.sharing.statements import month_span

# Connector states as a driver reads them (1.6 ChargePointStatus, 2.x ConnectorStatusEnum).
FREE = {"Available", "Preparing"}
OUT_OF_SERVICE = {"Unavailable", "Faulted", "Inoperative"}
MAX_CONNECTOR = 99


def person(role: str, uid: int) -> dict[str, Any] | None:
    """The signed-in driver or owner (id, name, login); None when gone or disabled."""
    model = Driver if role == "driver" else Owner
    row = model.get_or_none(model.id == uid)
    if row is None or row.disabled:
        return None
    return {"id": row.id, "name": row.name, "login": row.email or row.phone,
            "stamp": stamp_of(row)}


def stamp_of(row: Owner | Driver) -> str:
    """What a web session must still match: the person's sign-out count and the tail of
    their password hash, so a sign-out or a new password ends every copy of the cookie."""
    return f"{row.session_epoch}:{(row.password_hash or '')[-16:]}"


def signed_out(role: str, uid: int) -> None:
    """Sign-out: every session of this person, copies of the cookie included, ends."""
    model = Driver if role == "driver" else Owner
    model.update(session_epoch=model.session_epoch + 1).where(model.id == uid).execute()


def _session(tx: Transaction, now: datetime) -> dict[str, Any]:
    running = tx.stopped_at is None
    cost = pricing.running_cost(tx, now) if running else tx.cost
    price = pricing.price_of(tx)
    end = now if running else tx.stopped_at
    return {"id": tx.id, "station": tx.station_id, "evse": tx.evse_id, "running": running,
            "started_at": tx.started_at, "stopped_at": tx.stopped_at,
            "seconds": pricing.seconds_between(tx.started_at, end),
            "energy_wh": pricing.billed_wh(tx.energy_wh), "cost": cost,
            "currency": None if price is None else price.currency,
            "price_text": None if price is None else pricing.describe(price),
            "stop_reason": tx.stop_reason, "driver_id": tx.driver_id}


def _running(station_id: str, evse: int | None = None) -> Transaction | None:
    query = Transaction.select().where(Transaction.station == station_id,
                                       Transaction.stopped_at.is_null())
    if evse is not None:
        query = query.where(Transaction.evse_id == evse)
    return query.order_by(Transaction.started_at.desc()).first()


def connector_state(status: str | None, running: Transaction | None, driver_id: int | None
                    ) -> str:
    """mine, busy, out (of service), free or unknown: what the driver's page says."""
    if running is not None:
        return "mine" if driver_id is not None and running.driver_id == driver_id else "busy"
    if status is None:
        return "unknown"
    if status in OUT_OF_SERVICE:
        return "out"
    return "free" if status in FREE else "busy"


def charge_point(station_id: str, evse: int, driver_id: int | None, now: datetime
                 ) -> dict[str, Any] | None:
    """What the QR code's page shows: the price, the connector's state, the driver's own
    running session there. None (a 404, the same as for an unknown id) for a station nobody
    shares, which is the operator's own and not for any driver to start, and for a connector
    the station never reported."""
    station = Station.get_or_none(Station.id == station_id)
    if station is None or station.owner_id is None or not 1 <= evse <= MAX_CONNECTOR:
        return None
    connector = (Connector.select().where(Connector.station == station_id,
                                          Connector.evse_id == evse)
                 .order_by(Connector.connector_id).first())
    if connector is None:
        return None
    status = None if connector is None else connector.status
    running = _running(station_id, evse)
    price = pricing.tariff_of(station_id)
    return {"station": station_id, "evse": evse, "status": status,
            "state": connector_state(status, running, driver_id),
            "price": None if price is None else pricing.describe(price),
            "mine": (_session(running, now) if running is not None and driver_id is not None
                     and running.driver_id == driver_id else None)}


def driver_session(driver_id: int, tx_id: int, now: datetime) -> dict[str, Any] | None:
    tx = Transaction.get_or_none(Transaction.id == tx_id, Transaction.driver_id == driver_id)
    return None if tx is None else _session(tx, now)


def driver_sessions(driver_id: int, now: datetime, limit: int = 30) -> list[dict[str, Any]]:
    rows = (Transaction.select().where(Transaction.driver_id == driver_id)
            .order_by(Transaction.started_at.desc()).limit(limit))
    return [_session(tx, now) for tx in rows]


def _earnings(owner_id: int, start: datetime, end: datetime) -> dict[str, Any]:
    """Sessions that stopped in [start, end) and their revenue per currency (the rule of the
    monthly statement: a session counts when its cost is final)."""
    revenue: dict[str, int] = defaultdict(int)
    count = energy = 0
    for tx in Transaction.select().where(Transaction.owner_id == owner_id,
                                         Transaction.stopped_at >= start,
                                         Transaction.stopped_at < end):
        count += 1
        energy += pricing.billed_wh(tx.energy_wh)
        if tx.cost is not None and tx.price_currency is not None:
            revenue[tx.price_currency] += tx.cost
    return {"sessions": count, "energy_wh": energy, "revenue": sorted(revenue.items())}


def owned_ids(owner_id: int) -> list[str]:
    return [s.id for s in Station.select(Station.id).where(Station.owner == owner_id)]


def owner_home(owner_id: int, online: set[str], now: datetime) -> dict[str, Any]:
    """The owner's stations (online, each connector's status, the running session) and this
    month's earnings so far."""
    stations = []
    for station in Station.select().where(Station.owner == owner_id).order_by(Station.id):
        connectors = [{"evse": c.evse_id, "status": c.status} for c in
                      Connector.select().where(Connector.station == station.id)
                      .order_by(Connector.evse_id, Connector.connector_id)]
        running = _running(station.id)
        price = pricing.tariff_of(station.id)
        stations.append({
            "id": station.id, "online": station.id in online,
            "last_seen_at": station.last_seen_at, "connectors": connectors,
            "price": None if price is None else pricing.describe(price),
            "running": None if running is None else _session(running, now)})
    start, end = month_span(now.year, now.month)
    return {"stations": stations, "month": f"{now.year:04d}-{now.month:02d}",
            "earned": _earnings(owner_id, start, end)}


def owner_station(owner_id: int, station_id: str, online: bool, now: datetime,
                  currency: str) -> dict[str, Any] | None:
    """One of the owner's stations: connectors, tariff, the latest sessions. None if the
    station is not theirs (or does not exist)."""
    station = Station.get_or_none(Station.id == station_id, Station.owner == owner_id)
    if station is None:
        return None
    price = pricing.tariff_of(station_id)
    connectors = [{"evse": c.evse_id, "status": c.status, "status_at": c.status_at}
                  for c in Connector.select().where(Connector.station == station_id)
                  .order_by(Connector.evse_id, Connector.connector_id)]
    sessions = [_session(tx, now) for tx in Transaction.select()
                .where(Transaction.station == station_id, Transaction.owner_id == owner_id)
                .order_by(Transaction.started_at.desc()).limit(10)]
    return {"id": station_id, "online": online, "last_seen_at": station.last_seen_at,
            "vendor": station.vendor, "model": station.model, "connectors": connectors,
            "tariff": None if price is None else price.as_dict(),
            "price": None if price is None else pricing.describe(price),
            "form": _price_form(price, currency), "sessions": sessions}


def _price_form(price: pricing.Price | None, currency: str) -> dict[str, str]:
    """The price form's values as decimal text in major units ("25.00"); `currency` (the
    server's setting) until the owner sets a price."""
    if price is None:
        return {"currency": currency, "per_kwh": "", "per_hour": "", "session_fee": ""}
    text = partial(amount_text, currency=price.currency)
    return {"currency": price.currency, "per_kwh": text(price.per_kwh),
            "per_hour": text(price.per_hour), "session_fee": text(price.session_fee)}


def owner_sessions(owner_id: int, now: datetime, limit: int = 50) -> list[dict[str, Any]]:
    """The sessions the owner earns from (Transaction.owner_id: the owner the session began
    under), newest first."""
    rows = (Transaction.select().where(Transaction.owner_id == owner_id)
            .order_by(Transaction.started_at.desc()).limit(limit))
    return [_session(tx, now) for tx in rows]


def owner_months(owner_id: int, now: datetime) -> list[str]:
    """The months with a statement: from the owner's first stopped session to this one,
    newest first."""
    first = (Transaction.select(Transaction.stopped_at)
             .where(Transaction.owner_id == owner_id, Transaction.stopped_at.is_null(False))
             .order_by(Transaction.stopped_at).first())
    start = now if first is None else first.stopped_at.astimezone(UTC)
    months, year, month = [], now.year, now.month
    while (year, month) >= (start.year, start.month) and len(months) < 36:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months

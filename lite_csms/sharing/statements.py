"""Monthly owner statements (store job): sessions, energy, revenue, and the data each
charger used with its cost.

Rules: a month is a calendar month in UTC. A session counts in the month it stopped in (its
cost is final then) and for the owner it began under (Transaction.owner_id); running sessions
are not in any statement yet. Revenue is the sum of the sessions' costs, per currency (a
station's tariff may change currency). Data is the billed ("ip") bytes the traffic
accounting recorded for each of the owner's stations in the month (lite_csms/budget/), priced
at the `data_price_per_mb` setting (minor units of `data_currency` per 1,000,000 bytes),
rounded half up per station.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from lite_csms.budget import usage
from lite_csms.db.models import Owner, Station, Transaction
from lite_csms.sharing import pricing
from lite_csms.sharing.money import format_amount

BYTES_PER_MB = 1_000_000


def parse_month(text: str) -> tuple[int, int]:
    """"2026-11" -> (2026, 11); raises ValueError."""
    try:
        year, month = (int(part) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"a month is YYYY-MM, got {text!r}") from None
    # 9998: the span of December ends in January of the next year, which datetime must hold.
    if not (1970 <= year <= 9998 and 1 <= month <= 12):
        raise ValueError(f"a month is YYYY-MM, got {text!r}")
    return year, month


def month_span(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def data_cost(used_bytes: int, price_per_mb: int) -> int:
    """Minor units for `used_bytes` at `price_per_mb` per 1,000,000 bytes, half up."""
    return (2 * used_bytes * price_per_mb + BYTES_PER_MB) // (2 * BYTES_PER_MB)


def statement(owner_id: int, year: int, month: int, data_price_per_mb: int = 0,
              data_currency: str = "EUR") -> dict[str, Any] | None:
    """The owner's statement for a month; None for an unknown owner.

    Shape: owner {id, name}, month "YYYY-MM", from, to, sessions, energy_wh,
    revenue {currency: minor}, revenue_text ["KES 120.00"], data_bytes, data_cost,
    data_currency, data_price_per_mb, stations [{station, sessions, energy_wh, revenue,
    data_bytes, data_cost}], transactions [{id, station, evse, started_at, stopped_at,
    energy_wh, price, cost, cost_text, id_token}] in stop order."""
    owner = Owner.get_or_none(Owner.id == owner_id)
    if owner is None:
        return None
    start, end = month_span(year, month)
    sessions = list(Transaction.select()
                    .where(Transaction.owner_id == owner_id,
                           Transaction.stopped_at >= start, Transaction.stopped_at < end)
                    .order_by(Transaction.stopped_at, Transaction.id))
    station_ids = {s.id for s in Station.select(Station.id).where(Station.owner == owner_id)}
    station_ids |= {tx.station_id for tx in sessions}
    per_station: dict[str, dict[str, Any]] = {
        sid: {"station": sid, "sessions": 0, "energy_wh": 0, "revenue": defaultdict(int)}
        for sid in sorted(station_ids)}
    revenue: dict[str, int] = defaultdict(int)
    listed = []
    for tx in sessions:
        row = per_station[tx.station_id]
        wh = pricing.billed_wh(tx.energy_wh)
        row["sessions"] += 1
        row["energy_wh"] += wh
        if tx.cost is not None and tx.price_currency is not None:
            row["revenue"][tx.price_currency] += tx.cost
            revenue[tx.price_currency] += tx.cost
        listed.append({"id": tx.id, "station": tx.station_id, "evse": tx.evse_id,
                       "started_at": tx.started_at, "stopped_at": tx.stopped_at,
                       "energy_wh": wh, "id_token": tx.id_token, **pricing.cost_record(tx)})
    data_total = cost_total = 0
    for sid, row in per_station.items():
        used = usage.used_bytes(sid, start, end)
        row["data_bytes"] = used
        row["data_cost"] = data_cost(used, data_price_per_mb)
        row["revenue"] = dict(row["revenue"])
        data_total += used
        cost_total += row["data_cost"]
    return {
        "owner": {"id": owner.id, "name": owner.name},
        "month": f"{year:04d}-{month:02d}", "from": start, "to": end,
        "sessions": len(sessions), "energy_wh": sum(r["energy_wh"] for r in listed),
        "revenue": dict(revenue),
        "revenue_text": [format_amount(v, c) for c, v in sorted(revenue.items())],
        "data_bytes": data_total, "data_cost": cost_total, "data_currency": data_currency,
        "data_cost_text": format_amount(cost_total, data_currency),
        "data_price_per_mb": data_price_per_mb,
        "stations": list(per_station.values()), "transactions": listed,
    }

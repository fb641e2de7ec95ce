"""Reading what stations used: effective budgets, cycle totals and breakdowns.

Counter rows are hourly, or daily once rolled up; a cycle starts at 00:00 UTC, so both kinds
fall wholly inside or outside it and are summed together. The billed layer is "ip": every
byte on the wire, both directions, which is what a SIM contract charges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

import peewee as pw

from lite_csms.budget import cycles
from lite_csms.budget.names import IN, IP, LAYERS, OUT, PAYLOAD
from lite_csms.config import Settings
from lite_csms.db import statements
from lite_csms.db.models import (
    Station,
    StationBudget,
    TrafficConnection,
    TrafficCounter,
    UtcDateTimeField,
)

BILLED_LAYER = IP
BREAKDOWNS = ("action", "layer", "day", "direction", "connection")


@dataclass(frozen=True, slots=True)
class EffectiveBudget:
    station_id: str
    cap_bytes: int
    cycle_day: int
    warn_ratio: float
    nat_timeout: int
    policy_enabled: bool
    level: str
    # The names of the values set for this station rather than taken from the defaults.
    overrides: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "overrides": list(self.overrides)}


_OVERRIDABLE = {"cap_bytes": "budget_cap", "cycle_day": "budget_cycle_day",
                "warn_ratio": "budget_warn_ratio", "nat_timeout": "nat_timeout",
                "policy_enabled": "budget_policy"}


def effective_budget(station_id: str, settings: Settings) -> EffectiveBudget:
    # Read at every boot (the policy): a prepared statement, not a built query.
    row = statements.first(StationBudget, 'WHERE "station_id" = ? LIMIT 1', (station_id,))
    values: dict[str, Any] = {}
    overrides = []
    for field, default_name in _OVERRIDABLE.items():
        own = None if row is None else getattr(row, field)
        values[field] = getattr(settings, default_name) if own is None else own
        if own is not None:
            overrides.append(field)
    return EffectiveBudget(station_id=station_id, level=row.level if row else "normal",
                           overrides=tuple(overrides), **values)


# _in_range as one prepared statement, for the policy's projection at every boot.
_DAILY = ('SELECT "period_start", "bytes" FROM "traffic_counter" WHERE "station_id" = ? '
          'AND "period_start" >= ? AND "period_start" < ? AND "layer" = ?')


def _in_range(station_id: str, start: datetime, end: datetime,
              layer: str | None = BILLED_LAYER) -> list[pw.Expression]:
    conditions = [TrafficCounter.station == station_id, TrafficCounter.period_start >= start,
                  TrafficCounter.period_start < end]
    if layer is not None:
        conditions.append(TrafficCounter.layer == layer)
    return conditions


def used_bytes(station_id: str, start: datetime, end: datetime,
               layer: str = BILLED_LAYER) -> int:
    total = pw.fn.COALESCE(pw.fn.SUM(TrafficCounter.bytes), 0)
    return int(TrafficCounter.select(total).where(*_in_range(station_id, start, end, layer))
               .scalar())


def first_traffic(station_id: str) -> datetime | None:
    """When the station's traffic began: its first connection's opening, or, before any
    connection has closed (rows are written then), the hour of its first counted bytes."""
    for field in (TrafficConnection.opened_at, TrafficCounter.period_start):
        model = field.model
        first = statements.connection(model).execute(
            f'SELECT MIN("{field.column_name}") FROM "{model._meta.table_name}" '
            'WHERE "station_id" = ?', (station_id,)).fetchone()[0]
        if first is not None:
            found: datetime = field.python_value(first)
            return found
    return None


def daily_totals(station_id: str, start: datetime, end: datetime,
                 layer: str = BILLED_LAYER) -> dict[date, int]:
    days: dict[date, int] = {}
    stored = UtcDateTimeField()
    rows = statements.connection(TrafficCounter).execute(_DAILY, (
        station_id, stored.db_value(start), stored.db_value(end), layer))
    for period_start, amount in rows:
        day = stored.python_value(period_start).date()
        days[day] = days.get(day, 0) + amount
    return days


def by_action(station_id: str, start: datetime, end: datetime,
              layer: str = BILLED_LAYER) -> list[dict[str, Any]]:
    """Bytes per action and direction, biggest first; messages are counted at payload level."""
    rows: dict[str, dict[str, Any]] = {}
    query = (TrafficCounter
             .select(TrafficCounter.action, TrafficCounter.direction, TrafficCounter.layer,
                     pw.fn.SUM(TrafficCounter.bytes).alias("amount"),
                     pw.fn.SUM(TrafficCounter.messages).alias("count"))
             .where(*_in_range(station_id, start, end, None),
                    TrafficCounter.layer.in_((layer, PAYLOAD)))
             .group_by(TrafficCounter.action, TrafficCounter.direction, TrafficCounter.layer))
    for row in query.namedtuples():
        entry = rows.setdefault(row.action, {"action": row.action, IN: 0, OUT: 0, "total": 0,
                                             "messages": 0})
        if row.layer == PAYLOAD:
            entry["messages"] += row.count
        if row.layer == layer:
            entry[row.direction] += row.amount
            entry["total"] += row.amount
    ordered = sorted((r for r in rows.values() if r["total"] or r["messages"]),
                     key=lambda r: (-r["total"], r["action"]))
    total = sum(r["total"] for r in ordered)
    for entry in ordered:
        entry["share"] = round(entry["total"] / total, 4) if total else 0.0
    return ordered


def by_layer(station_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Each layer's totals and its overhead: what it adds to the layer it carries.

    Without TLS the tls layer is zero and ip's overhead is counted over ws. The overheads
    add up to ip minus payload: framing, TLS records, TCP/IP headers, set-up and control.
    """
    sums = {(layer, d): 0 for layer in LAYERS for d in (IN, OUT)}
    query = (TrafficCounter
             .select(TrafficCounter.layer, TrafficCounter.direction,
                     pw.fn.SUM(TrafficCounter.bytes).alias("amount"))
             .where(*_in_range(station_id, start, end, None))
             .group_by(TrafficCounter.layer, TrafficCounter.direction))
    for row in query.namedtuples():
        if (row.layer, row.direction) in sums:
            sums[(row.layer, row.direction)] = row.amount
    rows: list[dict[str, Any]] = []
    carried = 0
    for layer in LAYERS:
        total = sums[(layer, IN)] + sums[(layer, OUT)]
        if total == 0 and layer != PAYLOAD:
            # A layer with no rows (tls on a plain ws:// link) carries nothing and adds nothing.
            rows.append({"layer": layer, IN: 0, OUT: 0, "total": 0, "overhead": 0})
            continue
        rows.append({"layer": layer, IN: sums[(layer, IN)], OUT: sums[(layer, OUT)],
                     "total": total, "overhead": total - carried if layer != PAYLOAD else 0})
        carried = total
    billed = rows[-1]["total"]
    for row in rows:
        row["share_of_ip"] = round(row["total"] / billed, 4) if billed else 0.0
    return rows


def by_direction(station_id: str, start: datetime, end: datetime,
                 layer: str = BILLED_LAYER) -> list[dict[str, Any]]:
    sums = {IN: 0, OUT: 0}
    query = (TrafficCounter.select(TrafficCounter.direction,
                                   pw.fn.SUM(TrafficCounter.bytes).alias("amount"))
             .where(*_in_range(station_id, start, end, layer))
             .group_by(TrafficCounter.direction))
    for row in query.namedtuples():
        sums[row.direction] = row.amount
    return [{"direction": d, "meaning": meaning, "bytes": sums[d]}
            for d, meaning in ((IN, "station to CSMS"), (OUT, "CSMS to station"))]


def by_day(station_id: str, cycle: cycles.Cycle, now: datetime,
           layer: str = BILLED_LAYER) -> list[dict[str, Any]]:
    """Every day of the cycle up to `now` (all of it for a finished cycle), zeros included."""
    totals = daily_totals(station_id, cycle.start, min(now, cycle.end), layer)
    last = min(now, cycle.end - cycles.DAY).date()
    return [{"day": day.isoformat(), "bytes": totals.get(day, 0)}
            for day in cycle.days() if day <= last]


def by_connection(station_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Connections that were open at any time in the range, oldest first."""
    query = (TrafficConnection.select()
             .where(TrafficConnection.station == station_id,
                    TrafficConnection.opened_at < end, TrafficConnection.closed_at >= start)
             .order_by(TrafficConnection.opened_at, TrafficConnection.id))
    return [{
        "opened_at": c.opened_at, "closed_at": c.closed_at,
        "duration_s": round((c.closed_at - c.opened_at).total_seconds()),
        "protocol": c.protocol, "tls": c.tls, "tls_resumed": c.tls_resumed,
        "tcp_setup": c.tcp_setup_bytes, "tls_setup": c.tls_setup_bytes,
        "http_setup": c.http_setup_bytes,
        "setup": c.tcp_setup_bytes + c.tls_setup_bytes + c.http_setup_bytes,
        IN: c.ip_bytes_in, OUT: c.ip_bytes_out, "total": c.ip_bytes_in + c.ip_bytes_out,
        "payload_in": c.payload_bytes_in, "payload_out": c.payload_bytes_out,
        "retransmitted": c.retransmitted_bytes, "close_reason": c.close_reason,
    } for c in query]


@dataclass(frozen=True, slots=True)
class StationUsage:
    station_id: str
    layer: str
    cycle_start: datetime
    cycle_end: datetime
    days_elapsed: float
    days_remaining: float
    used: int
    cap: int
    warn_at: int
    projected: int
    projected_over: bool
    status: str
    reason: str
    level: str

    @property
    def used_ratio(self) -> float:
        return self.used / self.cap if self.cap else 0.0

    @property
    def cycle(self) -> cycles.Cycle:
        return cycles.Cycle(self.cycle_start, self.cycle_end)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "used_pct": round(self.used_ratio * 100, 1),
                "days_elapsed": round(self.days_elapsed, 2),
                "days_remaining": round(self.days_remaining, 2)}


def select_cycle(budget: EffectiveBudget, now: datetime,
                 month: tuple[int, int] | None = None) -> cycles.Cycle:
    """The cycle that starts in `month` (by the station's cycle day), or the one holding now."""
    if month is None:
        return cycles.cycle_containing(now, budget.cycle_day)
    return cycles.cycle_starting_in(month[0], month[1], budget.cycle_day)


def station_usage(station_id: str, settings: Settings, now: datetime,
                  month: tuple[int, int] | None = None,
                  budget: EffectiveBudget | None = None) -> StationUsage:
    """`budget`: the station's effective budget, when the caller has just read it."""
    budget = budget or effective_budget(station_id, settings)
    cycle = select_cycle(budget, now, month)
    # Counts after `now` are left out, so a report "as of" a past instant reads as it did.
    until = min(now, cycle.end)
    daily = daily_totals(station_id, cycle.start, until) if until > cycle.start else {}
    used = sum(daily.values())
    projected = cycles.project(cycle, now, used, daily, first_traffic(station_id))
    verdict = cycles.judge(used, projected, budget.cap_bytes, budget.warn_ratio)
    return StationUsage(
        station_id=station_id, layer=BILLED_LAYER, cycle_start=cycle.start,
        cycle_end=cycle.end, days_elapsed=cycles.days_elapsed(cycle, now),
        days_remaining=cycles.days_remaining(cycle, now), used=used, cap=budget.cap_bytes,
        warn_at=round(budget.cap_bytes * budget.warn_ratio), projected=projected,
        projected_over=verdict.projected_over, status=verdict.status, reason=verdict.reason,
        level=budget.level)


def all_usage(settings: Settings, now: datetime,
              month: tuple[int, int] | None = None) -> list[StationUsage]:
    return [station_usage(s.id, settings, now, month)
            for s in Station.select(Station.id).order_by(Station.id)]


def breakdown(by: str, usage: StationUsage, now: datetime) -> list[dict[str, Any]]:
    """One station's cycle broken down `by` one of BREAKDOWNS."""
    sid, start = usage.station_id, usage.cycle_start
    end = min(now, usage.cycle_end) if now > start else start
    if by == "action":
        return by_action(sid, start, end)
    if by == "layer":
        return by_layer(sid, start, end)
    if by == "day":
        return by_day(sid, usage.cycle, now)
    if by == "direction":
        return by_direction(sid, start, end)
    if by == "connection":
        return by_connection(sid, start, end)
    raise ValueError(f"breakdown must be one of {', '.join(BREAKDOWNS)}")


"""Writing traffic counts: hourly upserts, connection rows, and the daily roll-up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import peewee as pw

from lite_csms.budget.names import HTTP_SETUP, TCP_SETUP, TLS_SETUP
from lite_csms.db.models import Station, TrafficConnection, TrafficCounter, TrafficFlush

# (station, hour, action, direction, layer)
BucketKey = tuple[str, datetime, str, str, str]
HOUR, DAY = "hour", "day"
_KEY = [TrafficCounter.station, TrafficCounter.period, TrafficCounter.period_start,
        TrafficCounter.action, TrafficCounter.direction, TrafficCounter.layer]


@dataclass(frozen=True, slots=True)
class ConnectionTotals:
    station_id: str
    opened_at: datetime
    closed_at: datetime
    protocol: str
    tls: bool
    tls_resumed: bool
    setup_ip: dict[str, int]
    ip_in: int
    ip_out: int
    payload_in: int
    payload_out: int
    retransmitted: int
    close_reason: str | None


def _upsert(rows: list[dict]) -> None:
    for start in range(0, len(rows), 100):
        (TrafficCounter.insert_many(rows[start:start + 100])
         .on_conflict(conflict_target=_KEY, update={
             TrafficCounter.bytes: TrafficCounter.bytes + pw.EXCLUDED.bytes,
             TrafficCounter.messages: TrafficCounter.messages + pw.EXCLUDED.messages,
         }).execute())


def _known(station_ids: set[str]) -> set[str]:
    # A station removed while connected has nowhere to keep its counts.
    return {s.id for s in Station.select(Station.id).where(Station.id.in_(list(station_ids)))}


def add_hourly(buckets: dict[BucketKey, list[int]]) -> None:
    if not buckets:
        return
    known = _known({key[0] for key in buckets})
    _upsert([
        {"station": sid, "period": HOUR, "period_start": hour, "action": action,
         "direction": direction, "layer": layer, "bytes": amount, "messages": messages}
        for (sid, hour, action, direction, layer), (amount, messages) in buckets.items()
        if sid in known
    ])


def add_connections(closed: list[ConnectionTotals]) -> None:
    if not closed:
        return
    known = _known({c.station_id for c in closed})
    for c in closed:
        if c.station_id not in known:
            continue
        TrafficConnection.create(
            station=c.station_id, opened_at=c.opened_at, closed_at=c.closed_at,
            protocol=c.protocol, tls=c.tls, tls_resumed=c.tls_resumed,
            tcp_setup_bytes=c.setup_ip.get(TCP_SETUP, 0),
            tls_setup_bytes=c.setup_ip.get(TLS_SETUP, 0),
            http_setup_bytes=c.setup_ip.get(HTTP_SETUP, 0),
            ip_bytes_in=c.ip_in, ip_bytes_out=c.ip_out, payload_bytes_in=c.payload_in,
            payload_bytes_out=c.payload_out, retransmitted_bytes=c.retransmitted,
            close_reason=c.close_reason,
        )


def mark_flushed(at: datetime, interval_s: float | None) -> None:
    """Record that every count up to `at` is written (see TrafficFlush)."""
    (TrafficFlush.insert(id=1, flushed_at=at, interval_s=interval_s)
     .on_conflict(conflict_target=[TrafficFlush.id],
                  update={TrafficFlush.flushed_at: at, TrafficFlush.interval_s: interval_s})
     .execute())


def last_flush() -> TrafficFlush | None:
    """When the server last wrote its traffic counts (and its interval), or None if never."""
    try:
        found: TrafficFlush | None = TrafficFlush.get_or_none(TrafficFlush.id == 1)
    except pw.OperationalError:
        return None  # a database from before the table; the upgrade on open adds it
    return found


def roll_up(before: datetime) -> int:
    """Fold hourly rows older than `before` into daily rows; returns the rows folded."""
    old = (TrafficCounter.select().where(TrafficCounter.period == HOUR,
                                         TrafficCounter.period_start < before))
    days: dict[tuple, list[int]] = {}
    count = 0
    for row in old.iterator():
        day = row.period_start.replace(hour=0, minute=0, second=0, microsecond=0)
        key = (row.station_id, day, row.action, row.direction, row.layer)
        sums = days.setdefault(key, [0, 0])
        sums[0] += row.bytes
        sums[1] += row.messages
        count += 1
    if not count:
        return 0
    _upsert([
        {"station": sid, "period": DAY, "period_start": day, "action": action,
         "direction": direction, "layer": layer, "bytes": amount, "messages": messages}
        for (sid, day, action, direction, layer), (amount, messages) in days.items()
    ])
    TrafficCounter.delete().where(TrafficCounter.period == HOUR,
                                  TrafficCounter.period_start < before).execute()
    return count

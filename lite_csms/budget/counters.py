"""Writing traffic counts: hourly upserts, connection rows, and the daily roll-up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import peewee as pw

from lite_csms.budget.names import HTTP_SETUP, TCP_SETUP, TLS_SETUP
from lite_csms.db import bulk
from lite_csms.db.models import (
    Station,
    TrafficConnection,
    TrafficCounter,
    TrafficFlush,
    database_proxy,
)

# (station, hour, action, direction, layer)
BucketKey = tuple[str, datetime, str, str, str]
HOUR, DAY = "hour", "day"


# Not frozen, though never changed once made: a frozen dataclass's __init__ took 2.6 us
# (a setattr per field), and a stop makes two or three of these per connection.
@dataclass(slots=True)
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


_COUNTER_COLUMNS = ('"station_id", "period", "period_start", "action", "direction", '
                    '"layer", "bytes", "messages"')
_ON_CONFLICT = (
    'ON CONFLICT ("station_id", "period", "period_start", "action", "direction", "layer") '
    'DO UPDATE SET "bytes" = "bytes" + excluded."bytes", '
    '"messages" = "messages" + excluded."messages"')
_UPSERT = (f'INSERT INTO "traffic_counter" ({_COUNTER_COLUMNS}) '
           f'VALUES (?, ?, ?, ?, ?, ?, ?, ?) {_ON_CONFLICT}')
# Many rows in one statement, from one JSON array: SQLite walks it in a single step with the
# GIL released. Row by row (executemany) the writer's thread took the GIL back after every
# row, and a stop's 100,000 rows written while the trio thread waited for the close answers
# starved it (docs/PERFORMANCE.md, "Graceful stop"). The WHERE (stations removed while
# connected have nowhere to keep their counts) also keeps ON CONFLICT from being read as a
# join's constraint (SQLite's upsert syntax).
_UPSERT_JSON = (
    f'INSERT INTO "traffic_counter" ({_COUNTER_COLUMNS}) SELECT '
    + ", ".join(f"json_extract(value, '$[{n}]')" for n in range(8))
    + " FROM json_each(?) WHERE json_extract(value, '$[0]') IN (SELECT \"id\" FROM \"station\") "
    + _ON_CONFLICT)
# The same for a process about to exit (the server's stop): VALUES lists of bound
# parameters (db/bulk.py), half the CPU, but each prepared text holds 2 MiB.
_UPSERT_VALUES = (
    f'INSERT INTO "traffic_counter" ({_COUNTER_COLUMNS}) '
    'SELECT * FROM ({values}) WHERE column1 IN (SELECT "id" FROM "station") ' + _ON_CONFLICT)
# Below this many rows the prepared statement row by row is as cheap.
_BULK_ROWS = 64


def _upsert(rows: list[tuple]) -> None:
    # One prepared statement for every row (ORM-built statements took seconds for many).
    database_proxy.obj.cursor().executemany(_UPSERT, rows)


# Above this many stations, _known reads every id rather than building an IN list.
_KNOWN_IN_LIST = 500


def _known(station_ids: set[str]) -> set[str]:
    # A station removed while connected has nowhere to keep its counts.
    if len(station_ids) > _KNOWN_IN_LIST:
        # The shutdown's flush: one scan, not an IN list of 10,000 built by the ORM.
        cursor = database_proxy.obj.cursor().execute('SELECT "id" FROM "station"')
        return station_ids.intersection(row[0] for row in cursor)
    return {s.id for s in Station.select(Station.id).where(Station.id.in_(list(station_ids)))}


def add_hourly(buckets: dict[BucketKey, list[int]], *, exiting: bool = False) -> None:
    """Add `buckets` (station, hour, action, direction, layer: [bytes, messages]) to the
    hourly rows; a station not known is left out. `exiting`: the process ends after this
    write (VALUES lists: db/bulk.py)."""
    if not buckets:
        return
    # Many rows: the statement itself leaves out the stations not known, in the same step
    # (reading the ids row by row also took the GIL back at every row).
    many = len(buckets) >= _BULK_ROWS
    known = None if many else _known({key[0] for key in buckets})
    stamp = TrafficCounter.period_start.db_value
    # The flush's few hours, each converted once; the rows in one comprehension (half the
    # time of a loop: the writer's thread holds the GIL for it, beside a busy trio thread).
    stamps = {hour: stamp(hour) for hour in {key[1] for key in buckets}}
    rows = [(sid, HOUR, stamps[hour], action, direction, layer, amount, messages)
            for (sid, hour, action, direction, layer), (amount, messages) in buckets.items()
            if known is None or sid in known]
    # In the unique index's order: the upserts then walk its pages once instead of at
    # random (a stop's 160,000 rows: about a third less time in SQLite).
    rows.sort()
    if many:
        bulk.execute(database_proxy.obj.connection(), rows, json=_UPSERT_JSON,
                     values=_UPSERT_VALUES if exiting else None)
    else:
        _upsert(rows)


_CONNECTION_COLUMNS = (
    "station_id", "opened_at", "closed_at", "protocol", "tls", "tls_resumed", "tcp_setup_bytes",
    "tls_setup_bytes", "http_setup_bytes", "ip_bytes_in", "ip_bytes_out", "payload_bytes_in",
    "payload_bytes_out", "retransmitted_bytes", "close_reason")
_QUOTED_COLUMNS = ", ".join('"' + column + '"' for column in _CONNECTION_COLUMNS)
_INSERT_CONNECTION = (f'INSERT INTO "traffic_connection" ({_QUOTED_COLUMNS}) '
                      f'VALUES ({", ".join("?" * len(_CONNECTION_COLUMNS))})')


# Many connection rows in one statement, as _UPSERT_JSON does for the hourly rows (a stop
# writes 10,000 beside a busy trio thread); stations not known are left out in it.
_INSERT_CONNECTIONS_JSON = (
    f'INSERT INTO "traffic_connection" ({_QUOTED_COLUMNS}) SELECT '
    + ", ".join(f"json_extract(value, '$[{n}]')" for n in range(len(_CONNECTION_COLUMNS)))
    + " FROM json_each(?) WHERE json_extract(value, '$[0]') IN (SELECT \"id\" FROM \"station\")")
_INSERT_CONNECTIONS_VALUES = (
    f'INSERT INTO "traffic_connection" ({_QUOTED_COLUMNS}) '
    'SELECT * FROM ({values}) WHERE column1 IN (SELECT "id" FROM "station")')


def add_connections(closed: list[ConnectionTotals], *, exiting: bool = False) -> None:
    """A row per closed connection; a station not known is left out. `exiting` as for
    add_hourly."""
    if not closed:
        return
    many = len(closed) >= _BULK_ROWS
    known = None if many else _known({c.station_id for c in closed})
    stamp = TrafficConnection.opened_at.db_value
    rows = [
        (c.station_id, stamp(c.opened_at), stamp(c.closed_at), c.protocol, int(c.tls),
         int(c.tls_resumed), c.setup_ip.get(TCP_SETUP, 0), c.setup_ip.get(TLS_SETUP, 0),
         c.setup_ip.get(HTTP_SETUP, 0), c.ip_in, c.ip_out, c.payload_in, c.payload_out,
         c.retransmitted, c.close_reason)
        for c in closed if known is None or c.station_id in known]
    if many:
        bulk.execute(database_proxy.obj.connection(), rows, json=_INSERT_CONNECTIONS_JSON,
                     values=_INSERT_CONNECTIONS_VALUES if exiting else None)
    else:
        database_proxy.obj.cursor().executemany(_INSERT_CONNECTION, rows)


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
    stamp = TrafficCounter.period_start.db_value
    _upsert([(sid, DAY, stamp(day), action, direction, layer, amount, messages)
             for (sid, day, action, direction, layer), (amount, messages) in days.items()])
    TrafficCounter.delete().where(TrafficCounter.period == HOUR,
                                  TrafficCounter.period_start < before).execute()
    return count


# Indexes of earlier releases that the unique (station, period, ...) index and the
# (station, opened_at) index cover: each cost about 40 % more per row written.
REDUNDANT_INDEXES = ("traffic_counter_station_id", "traffic_connection_station_id")


def drop_redundant_indexes(db: pw.Database) -> None:
    """Upgrade step for a database made before they went (REDUNDANT_INDEXES); idempotent.
    Lookups and ON DELETE CASCADE by station use the indexes that start with it."""
    for name in REDUNDANT_INDEXES:
        db.execute_sql(f'DROP INDEX IF EXISTS "{name}"')

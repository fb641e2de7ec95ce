"""The stop's large writes: 10,000 stations offline and 10,000 connection rows go as a few
statements of a thousand rows (db/bulk.py), which must store exactly what the statement row
by row stores;
and the traffic tables keep no index that a wider one already covers."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lite_csms.budget import counters
from lite_csms.db.database import SCHEMA_VERSION, open_database
from lite_csms.db.models import Station, TrafficConnection, TrafficCounter
from lite_csms.handlers import provisioning

AT = datetime(2026, 11, 30, 2, 3, 4, 567000, tzinfo=UTC)


def _written(path: Path, count: int, how: str,
             monkeypatch: pytest.MonkeyPatch) -> tuple[list, list, list]:
    """The stations, connection rows and hourly rows stored by mark_all_disconnected,
    add_connections and add_hourly for `count` stations (one of them unknown): row by row
    ("rows"), in one statement over a JSON array ("json"), or in VALUES lists ("exiting")."""
    rows = 10**9 if how == "rows" else 64
    exiting = how == "exiting"
    monkeypatch.setattr(provisioning, "_BULK_ROWS", rows)
    monkeypatch.setattr(counters, "_BULK_ROWS", rows)
    db = open_database(path)
    ids = [f"ST-{n:03d}-é" for n in range(count)]
    with db.atomic():
        Station.insert_many([{"id": sid, "registration": "accepted", "online": True}
                             for sid in ids]).execute()
    seen = {sid: AT + timedelta(seconds=n) for n, sid in enumerate(ids[1:])}
    seen["GONE-1"] = AT
    closed = [counters.ConnectionTotals(
        sid, AT, AT + timedelta(seconds=n), "ocpp2.0.1", n % 2 == 0, n % 3 == 0,
        {"(tcp-handshake)": 180 + n}, 1000 + n, 2000 + n, 30 + n, 40 + n, n % 5,
        None if n % 4 else "server shutting down") for n, sid in enumerate([*ids, "GONE-1"])]
    hour = AT.replace(minute=0, second=0, microsecond=0)
    buckets = {(sid, hour, action, direction, "ip"): [n * 10 + len(action), n % 3]
               for n, sid in enumerate([*ids, "GONE-1"])
               for action in ("Heartbeat", "(ws-control)") for direction in ("in", "out")}
    with db.atomic():
        provisioning.mark_all_disconnected(seen, exiting=exiting)
        counters.add_connections(closed, exiting=exiting)
        counters.add_hourly(buckets, exiting=exiting)
        # Added twice: the upsert adds up.
        counters.add_hourly(buckets, exiting=exiting)
    db.close()
    with sqlite3.connect(path) as conn:
        stations = conn.execute(
            "SELECT id, online, last_seen_at FROM station ORDER BY id").fetchall()
        connections = conn.execute(
            "SELECT station_id, opened_at, closed_at, protocol, tls, tls_resumed, "
            "tcp_setup_bytes, tls_setup_bytes, http_setup_bytes, ip_bytes_in, ip_bytes_out, "
            "payload_bytes_in, payload_bytes_out, retransmitted_bytes, close_reason, "
            "typeof(tls), typeof(ip_bytes_in) FROM traffic_connection ORDER BY station_id"
        ).fetchall()
        hourly = conn.execute(
            "SELECT station_id, period, period_start, action, direction, layer, bytes, "
            "messages, typeof(bytes) FROM traffic_counter ORDER BY station_id, action, "
            "direction").fetchall()
    return stations, connections, hourly


@pytest.mark.skipif(not provisioning._UPDATE_FROM, reason="SQLite before 3.33")
def test_one_statement_stores_what_row_by_row_stores(tmp_path, monkeypatch) -> None:
    # 300 stations: the VALUES lists of 256 and 64 rows, the last filled up with NULLs.
    written = _written(tmp_path / "a.sqlite3", 300, "json", monkeypatch)
    assert written == _written(tmp_path / "b.sqlite3", 300, "rows", monkeypatch)
    assert written == _written(tmp_path / "c.sqlite3", 300, "exiting", monkeypatch)
    stations, connections, hourly = written
    # The first station was not in the stop's list: still online, never seen.
    assert stations[0][1:] == (1, None) and {s[1] for s in stations[1:]} == {0}
    # The unknown station's rows are left out.
    assert len(connections) == 300 and len(hourly) == 1200
    assert connections[0][-2:] == ("integer", "integer")
    assert hourly[5][3:] == ("(ws-control)", "out", "ip", 2 * (10 + 12), 2, "integer")


def test_traffic_tables_keep_no_covered_index(tmp_path) -> None:
    """A database of an earlier release has the station indexes; the upgrade step drops
    them, and deleting a station still deletes its traffic rows."""
    path = tmp_path / "old.sqlite3"
    db = open_database(path)
    db.execute_sql('CREATE INDEX "traffic_counter_station_id" ON "traffic_counter" '
                   '("station_id")')
    db.execute_sql('CREATE INDEX "traffic_connection_station_id" ON "traffic_connection" '
                   '("station_id")')
    Station.create(id="DEL-1")
    TrafficCounter.create(station="DEL-1", period="hour", period_start=AT, action="Heartbeat",
                          direction="in", layer="ip", bytes=10)
    TrafficConnection.create(station="DEL-1", opened_at=AT, closed_at=AT, protocol="ocpp1.6",
                             tls=False, tls_resumed=False, tcp_setup_bytes=0,
                             tls_setup_bytes=0, http_setup_bytes=0, ip_bytes_in=0,
                             ip_bytes_out=0, payload_bytes_in=0, payload_bytes_out=0,
                             retransmitted_bytes=0)
    db.execute_sql("PRAGMA user_version = 4")
    db.close()
    db = open_database(path)  # the upgrade to 5 drops them
    assert db.execute_sql("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,) == (5,)
    counters.drop_redundant_indexes(db)  # idempotent
    names = {name for (name,) in db.execute_sql(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name LIKE 'traffic_%'")}
    assert not names & set(counters.REDUNDANT_INDEXES)
    # What still serves lookups by station: indexes that start with it.
    assert any(name.startswith("traffic_counter_station_id_period") for name in names)
    assert "traffic_connection_station_id_opened_at" in names
    db.execute_sql("PRAGMA foreign_keys = ON")
    Station.delete().where(Station.id == "DEL-1").execute()
    assert TrafficCounter.select().count() == 0 and TrafficConnection.select().count() == 0
    db.close()

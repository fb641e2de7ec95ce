"""The hot path's prepared statements (db/statements.py) write and read what peewee does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from lite_csms.db import statements
from lite_csms.db.database import open_database
from lite_csms.db.models import (
    Connector,
    ConnectorStatusChange,
    EnergyReading,
    Station,
    Transaction,
)
from lite_csms.handlers import availability

T0 = datetime(2026, 11, 1, 10, 0, 0, 123000, tzinfo=UTC)


def test_rows_and_save_agree_with_peewee(tmp_path: Path) -> None:
    db = open_database(tmp_path / "csms.sqlite3")
    try:
        Station.create(id="CS-1")
        made = Transaction.create(station="CS-1", evse_id=2, connector_id=1, id_token="TAG",
                                  started_at=T0, reconstructed=True, station_tx_id="X-1")
        loaded = statements.first(Transaction, 'WHERE "id" = ?', (made.id,))
        assert loaded is not None and not loaded.is_dirty()
        assert loaded.__data__ == Transaction.get_by_id(made.id).__data__
        assert statements.first(Transaction, 'WHERE "id" = ?', (made.id + 1,)) is None
        loaded.stopped_at, loaded.energy_wh, loaded.reconstructed = (
            T0 + timedelta(hours=1), 1234.5, False)
        statements.save(loaded)
        again = Transaction.get_by_id(made.id)
        assert (again.stopped_at, again.energy_wh, again.reconstructed, again.station_id,
                again.started_at) == (T0 + timedelta(hours=1), 1234.5, False, "CS-1", T0)
    finally:
        db.close()


def test_insert_or_ignore_counts_only_new_rows(tmp_path: Path) -> None:
    db = open_database(tmp_path / "csms.sqlite3")
    try:
        Station.create(id="CS-1")
        tx = Transaction.create(station="CS-1", evse_id=1, connector_id=1, started_at=T0)
        names = ("transaction", "timestamp", "value_wh", "context", "source", "seq_no")
        at = "2026-11-01T10:00:00.000+00:00"
        rows = [(tx.id, at, 10.0, "Transaction.Begin", "StartTransaction", -1),
                (tx.id, at, 10.0, "Transaction.Begin", "StartTransaction", -1)]
        assert statements.insert(EnergyReading, names, rows, ignore=True) == 1
        assert statements.insert(EnergyReading, names, rows[:1], ignore=True) == 0
        assert EnergyReading.select().count() == 1
    finally:
        db.close()


def test_status_reports_keep_the_newest_and_skip_retransmits(tmp_path: Path) -> None:
    db = open_database(tmp_path / "csms.sqlite3")
    try:
        Station.create(id="CS-1")
        assert availability.record_status("CS-1", 1, 1, "Charging", T0, "OtherError", "x")
        assert not availability.record_status("CS-1", 1, 1, "Charging", T0, "OtherError", "x")
        # Sent while offline, arriving late: history only, the current status stays.
        assert availability.record_status("CS-1", 1, 1, "Available", T0 - timedelta(minutes=1))
        connector = Connector.get()
        assert (connector.status, connector.error_code, connector.info, connector.status_at) == (
            "Charging", "OtherError", "x", T0)
        history = [(c.status, c.timestamp) for c in ConnectorStatusChange.select()
                   .order_by(ConnectorStatusChange.id)]
        assert history == [("Charging", T0), ("Available", T0 - timedelta(minutes=1))]
    finally:
        db.close()

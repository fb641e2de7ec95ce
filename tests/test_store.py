"""The SQLite store: schema file, group commit, and idempotent domain handlers."""

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import peewee as pw
import pytest
import trio

from lite_csms.db.database import SCHEMA_VERSION, DatabaseError, open_database
from lite_csms.db.models import ALL_MODELS, MeterSample, Station, Transaction
from lite_csms.db.writer import StoreWriter
from lite_csms.domain import Sample, TransactionEvent
from lite_csms.handlers import availability, transactions

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def structure(conn: sqlite3.Connection) -> dict:
    """Tables, columns, foreign keys and indexes, compared as data rather than as text."""
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    shape = {}
    for table in sorted(tables):
        indexes = {}
        for _, name, unique, *_ in conn.execute(f'PRAGMA index_list("{table}")'):
            columns = [r[2] for r in conn.execute(f'PRAGMA index_info("{name}")')]
            indexes[name] = (unique, columns)
        shape[table] = {
            "columns": conn.execute(f'PRAGMA table_info("{table}")').fetchall(),
            "foreign_keys": conn.execute(f'PRAGMA foreign_key_list("{table}")').fetchall(),
            "indexes": indexes,
        }
    return shape


def test_schema_sql_matches_the_models(tmp_path: Path) -> None:
    db = open_database(tmp_path / "models.sqlite3")
    db.close()
    from_models = sqlite3.connect(tmp_path / "models.sqlite3")
    from_file = sqlite3.connect(tmp_path / "file.sqlite3")
    from_file.executescript((REPO / "store" / "schema.sql").read_text())
    assert structure(from_file) == structure(from_models)
    assert len(structure(from_models)) == len(ALL_MODELS)


def test_a_version_1_file_gets_the_new_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    open_database(path).close()
    old = sqlite3.connect(path)
    old.executescript("DROP TABLE device_variable; DROP TABLE charging_profile; "
                      "PRAGMA user_version = 1;")
    old.close()
    open_database(path).close()
    upgraded = sqlite3.connect(path)
    tables = {row[0] for row in upgraded.execute("SELECT name FROM sqlite_master")}
    assert {"device_variable", "charging_profile"} <= tables
    assert upgraded.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_database_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseError, match="cannot open"):
        open_database(path)


def test_wal_and_durable_commits(tmp_path: Path) -> None:
    db = open_database(tmp_path / "s.sqlite3")
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute_sql("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    db.close()


@pytest.fixture
def store(tmp_path: Path):
    db = open_database(tmp_path / "s.sqlite3")
    Station.create(id="CS-1")
    yield db, tmp_path / "s.sqlite3"
    db.close()


async def test_group_commit_batches_and_isolates_failures(store) -> None:
    db, path = store
    writer = StoreWriter(db)
    results: dict[int, object] = {}

    async def submit(i: int) -> None:
        def work() -> int:
            if i == 3:
                Station.create(id=f"S{i}")
                raise ValueError("job 3 fails")
            Station.create(id=f"S{i}")
            return i
        try:
            results[i] = await writer.run(work)
        except ValueError as exc:
            results[i] = exc

    async with trio.open_nursery() as nursery:
        await nursery.start(writer.serve)
        async with trio.open_nursery() as submitters:
            for i in range(20):
                submitters.start_soon(submit, i)
        # Everything acknowledged is visible to an independent connection: it is committed.
        other = sqlite3.connect(path)
        ids = {r[0] for r in other.execute("SELECT id FROM station")}
        other.close()
        writer.close()
    assert isinstance(results[3], ValueError)
    assert "S3" not in ids  # its savepoint was rolled back
    assert {f"S{i}" for i in range(20) if i != 3} <= ids
    assert all(results[i] == i for i in range(20) if i != 3)
    assert writer.jobs == 20 and writer.batches < 20  # shared commits


def _run(db: pw.SqliteDatabase, fn):  # the handlers run inside the writer's transaction
    with db.atomic():
        return fn()


def test_v16_start_and_stop_are_idempotent(store) -> None:
    db, _ = store
    first = _run(db, lambda: transactions.start_v16("CS-1", 1, "TAG", 1000.0, T0, None))
    again = _run(db, lambda: transactions.start_v16("CS-1", 1, "TAG", 1000.0, T0, None))
    assert again.transaction_id == first.transaction_id and again.duplicate
    other = _run(db, lambda: transactions.start_v16("CS-1", 2, "TAG", 1000.0,
                                                     T0 + timedelta(hours=2), None))
    assert other.transaction_id != first.transaction_id
    end = T0 + timedelta(hours=1)
    for _ in range(2):
        _run(db, lambda: transactions.stop_v16("CS-1", first.transaction_id, 8400.0, end,
                                               None, None, []))
    # A late, different retransmit must not rewrite a closed transaction either.
    _run(db, lambda: transactions.stop_v16("CS-1", first.transaction_id, 9999.0, end, None,
                                           None, []))
    tx = Transaction.get_by_id(first.transaction_id)
    assert tx.energy_wh == 7400.0 and tx.stop_reason == "Local" and tx.stopped_at == end
    assert Transaction.select().count() == 2


def _event(kind: str, seq: int, minutes: int, register: float | None, context: str = "",
           **kw) -> TransactionEvent:
    at = T0 + timedelta(minutes=minutes)
    samples = () if register is None else (
        Sample(at, "Energy.Active.Import.Register", register, "Wh", context=context),)
    fields = dict(event_type=kind, station_tx_id="tx-a", seq_no=seq, timestamp=at,
                  trigger_reason="MeterValuePeriodic", offline=False, evse_id=1, connector_id=1,
                  id_token=None, id_token_type=None, stopped_reason=None, reservation_id=None,
                  samples=samples)
    return TransactionEvent(**{**fields, **kw})


def test_transaction_events_are_idempotent_and_gaps_are_counted(store) -> None:
    db, _ = store
    apply = lambda ev: _run(db, lambda: transactions.apply_event("CS-1", ev))  # noqa: E731
    apply(_event("Started", 0, 0, 500.0, "Transaction.Begin"))
    apply(_event("Updated", 1, 10, 1500.0))
    duplicate = apply(_event("Updated", 1, 10, 1500.0))
    assert duplicate.duplicate
    apply(_event("Updated", 4, 40, 4500.0, offline=True))
    tx = Transaction.get(Transaction.station_tx_id == "tx-a")
    assert tx.seq_no_gaps == 2 and tx.offline
    apply(_event("Updated", 2, 20, 2500.0))  # a late arrival fills one gap
    apply(_event("Ended", 5, 50, 5500.0, "Transaction.End", stopped_reason="EVDisconnected"))
    apply(_event("Ended", 5, 50, 5500.0, "Transaction.End", stopped_reason="EVDisconnected"))
    tx = Transaction.get(Transaction.station_tx_id == "tx-a")
    assert tx.seq_no_gaps == 1
    assert tx.energy_wh == 5000.0
    assert tx.stop_reason == "EVDisconnected"
    assert MeterSample.select().where(MeterSample.transaction == tx).count() == 5
    assert Transaction.select().count() == 1


def test_status_history_skips_retransmits_and_keeps_newest(store) -> None:
    db, _ = store
    assert _run(db, lambda: availability.record_status("CS-1", 1, 1, "Charging", T0))
    assert not _run(db, lambda: availability.record_status("CS-1", 1, 1, "Charging", T0))
    late = T0 - timedelta(minutes=5)
    assert _run(db, lambda: availability.record_status("CS-1", 1, 1, "Preparing", late))
    row = db.execute_sql("SELECT status FROM connector").fetchone()
    assert row[0] == "Charging"
    assert db.execute_sql("SELECT count(*) FROM connector_status_change").fetchone()[0] == 2


def test_a_new_start_closes_the_orphan_on_the_same_connector(store) -> None:
    from lite_csms.db.models import IdToken

    db, _ = store
    IdToken.create(token="TAG")
    lost = _run(db, lambda: transactions.start_v16("CS-1", 1, "TAG", 0.0, T0, None))
    later = T0 + timedelta(hours=3)
    fresh = _run(db, lambda: transactions.start_v16("CS-1", 1, "TAG", 900.0, later, None))
    assert fresh.auth.status == "Accepted"
    orphan = Transaction.get_by_id(lost.transaction_id)
    assert orphan.stop_reason == "Orphaned" and orphan.stopped_at == later
    # The same tag on another connector while the fresh session runs is a real conflict.
    other = _run(db, lambda: transactions.start_v16("CS-1", 2, "TAG", 0.0, later, None))
    assert other.auth.status == "ConcurrentTx"
    assert Transaction.get_by_id(fresh.transaction_id).stopped_at is None


def test_the_database_and_its_wal_and_shm_are_created_0600(tmp_path: Path) -> None:
    import os
    import stat

    old_umask = os.umask(0o022)  # a typical umask would leave the file world-readable
    try:
        db = open_database(tmp_path / "private.sqlite3")
        Station.create(id="CS-1")  # the WAL gets written
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        db.close()
    finally:
        os.umask(old_umask)
    assert set(modes) >= {"private.sqlite3", "private.sqlite3-wal", "private.sqlite3-shm"}
    assert all(mode == 0o600 for mode in modes.values()), {k: oct(v) for k, v in modes.items()}

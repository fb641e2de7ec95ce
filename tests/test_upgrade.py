"""An operator's database from the previous release upgrades in place and keeps every row."""

import shutil
import sqlite3
from pathlib import Path

import peewee as pw
import pytest

from lite_csms.db import upgrade
from lite_csms.db.database import SCHEMA_VERSION, DatabaseError, open_database
from tests.test_store import structure

RELEASE_0_1_0 = Path(__file__).parent / "data" / "release-0.1.0.sqlite3"


def rows(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Every row of every table, in rowid order, as the previous release wrote it."""
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    found = {}
    for table in tables:
        columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
        names = ", ".join(f'"{c}"' for c in columns)
        found[table] = conn.execute(f'SELECT {names} FROM "{table}" ORDER BY rowid').fetchall()
    return found


def old_columns(shape: dict) -> dict[str, list[str]]:
    return {table: [c[1] for c in info["columns"]] for table, info in shape.items()}


@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    path = tmp_path / "lite-csms.sqlite3"
    shutil.copy(RELEASE_0_1_0, path)
    return path


def test_the_release_file_upgrades_in_place_and_keeps_every_row(old_file: Path) -> None:
    before = sqlite3.connect(old_file)
    assert before.execute("PRAGMA user_version").fetchone() == (2,)
    old_rows = rows(before)
    old_shape = old_columns(structure(before))
    before.close()
    assert sum(len(r) for r in old_rows.values()) > 100, "the fixture holds real traffic"

    open_database(old_file).close()

    after = sqlite3.connect(old_file)
    assert after.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    for table, kept in old_rows.items():
        names = ", ".join(f'"{c}"' for c in old_shape[table])
        now = after.execute(f'SELECT {names} FROM "{table}" ORDER BY rowid').fetchall()
        assert now == kept, table
    assert after.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert after.execute("PRAGMA foreign_key_check").fetchall() == []


def test_the_upgraded_file_has_the_shape_of_a_new_one(old_file: Path, tmp_path: Path) -> None:
    open_database(old_file).close()
    open_database(tmp_path / "new.sqlite3").close()
    upgraded = structure(sqlite3.connect(old_file))
    fresh = structure(sqlite3.connect(tmp_path / "new.sqlite3"))
    assert upgraded.keys() == fresh.keys()
    for table, shape in fresh.items():
        # A column added to a table with rows carries its constant default in SQL too.
        strip = [c[:4] + c[5:] for c in shape["columns"]]
        assert [c[:4] + c[5:] for c in upgraded[table]["columns"]] == strip, table
        assert upgraded[table]["indexes"] == shape["indexes"], table
        assert upgraded[table]["foreign_keys"] == shape["foreign_keys"], table


def test_the_old_file_is_kept_beside_it_and_a_second_open_changes_nothing(
    old_file: Path,
) -> None:
    original_rows = rows(sqlite3.connect(RELEASE_0_1_0))
    open_database(old_file).close()
    copy = old_file.with_name(old_file.name + ".schema2.bak")
    kept = sqlite3.connect(copy)
    assert kept.execute("PRAGMA user_version").fetchone() == (2,)
    assert rows(kept) == original_rows
    kept.close()
    copy.unlink()
    open_database(old_file).close()
    assert not copy.exists(), "an up-to-date file is not copied again"


def test_a_not_null_column_without_a_constant_default_is_refused(tmp_path: Path) -> None:
    db = pw.SqliteDatabase(str(tmp_path / "x.sqlite3"))

    class Thing(pw.Model):
        name = pw.TextField()

        class Meta:
            database = db

    db.create_tables([Thing])
    Thing.create(name="a")

    class Grown(pw.Model):
        name = pw.TextField()
        size = pw.IntegerField(default=3)
        label = pw.TextField(null=True)

        class Meta:
            database = db
            table_name = "thing"

    assert upgrade.add_missing(db, [Grown]) == ["thing.size", "thing.label"]
    assert db.execute_sql("SELECT name, size, label FROM thing").fetchall() == [("a", 3, None)]

    class Broken(pw.Model):
        name = pw.TextField()
        born = pw.DateTimeField(default=lambda: None)

        class Meta:
            database = db
            table_name = "thing"

    with pytest.raises(ValueError, match="constant default"):
        upgrade.add_missing(db, [Broken])


def test_a_failed_upgrade_leaves_the_file_at_the_old_version(
    old_file: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lite_csms.db import database

    def boom(db: pw.SqliteDatabase) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setitem(database.UPGRADE_STEPS, SCHEMA_VERSION, [boom])
    with pytest.raises(DatabaseError, match="disk I/O error"):
        open_database(old_file)
    after = sqlite3.connect(old_file)
    assert after.execute("PRAGMA user_version").fetchone() == (2,)
    assert structure(after) == structure(sqlite3.connect(RELEASE_0_1_0))


def test_the_release_sessions_bill_the_same_after_the_upgrade(old_file: Path) -> None:
    open_database(old_file).close()
    done = sqlite3.connect(old_file).execute(
        'SELECT "id_token", "energy_wh", "reconstructed", "review" FROM "transaction" '
        "ORDER BY id").fetchall()
    assert done == [("04A2B3C4FF", 7400.0, 0, None), ("TAG-2", 5000.0, 0, None)]


RELEASE_0_2_0 = Path(__file__).parent / "data" / "release-0.2.0.sqlite3"


def test_a_schema_3_file_gets_its_refusals_scoped_and_the_shape_of_a_new_one(
    tmp_path: Path,
) -> None:
    """0.2.0 kept every refusal per value; the statuses that say the key is unknown now
    refuse the key (budget/memory.py upgrade_v4), the others stay per value."""
    path = tmp_path / "lite-csms.sqlite3"
    shutil.copy(RELEASE_0_2_0, path)
    with sqlite3.connect(path) as before:
        assert before.execute("PRAGMA user_version").fetchone() == (3,)
        old_rows = rows(before)
    open_database(path).close()
    after = sqlite3.connect(path)
    assert after.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    scopes = dict(after.execute("SELECT key, scope FROM setting_refusal").fetchall())
    assert scopes == {"MinimumStatusDuration": "key", "TxEndedInterval": "key",
                      "WebSocketPingInterval": "value"}
    kept = after.execute("SELECT id, station_id, key, value, status FROM setting_refusal "
                         "ORDER BY id").fetchall()
    assert kept == [row[:5] for row in old_rows["setting_refusal"]]
    fresh = tmp_path / "fresh.sqlite3"
    open_database(fresh, create=True).close()
    upgraded, new = structure(after), structure(sqlite3.connect(fresh))
    assert upgraded.keys() == new.keys()
    for table, shape in new.items():
        # As above: a column added to a table with rows carries its default in SQL too.
        assert ([c[:4] + c[5:] for c in upgraded[table]["columns"]]
                == [c[:4] + c[5:] for c in shape["columns"]]), table
        assert upgraded[table]["indexes"] == shape["indexes"], table

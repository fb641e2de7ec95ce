"""In-place upgrade of an operator's database to the schema the models describe.

Schema changes between releases are additive: new tables, new columns (nullable or with a
default) and new indexes. So an upgrade is "create what is missing", followed by the data
steps a version needs (backfills, index swaps), all inside one IMMEDIATE transaction: a
crash half-way leaves the file at the old version, and the next start tries again.

Before the first change the old file is copied with SQLite's online backup API to
`<database>.schema<N>.bak`, so an operator who must go back to the previous release can.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path

import peewee as pw

log = logging.getLogger("lite_csms.db")

# Data steps per target schema version, run after the missing columns exist. Each takes the
# open database and runs inside the upgrade's transaction.
UpgradeStep = Callable[[pw.SqliteDatabase], None]


def backup(db: pw.SqliteDatabase, path: Path, version: int) -> Path:
    """Copy the database as it is now, WAL included, next to it; returns the copy's path."""
    target = path.with_name(f"{path.name}.schema{version}.bak")
    if not target.exists():  # private from the first byte, like the database itself
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o600))
    copy = sqlite3.connect(target)
    try:
        db.connection().backup(copy)
    finally:
        copy.close()
    target.chmod(path.stat().st_mode & 0o777)
    return target


def missing_columns(
    db: pw.SqliteDatabase, models: Iterable[type[pw.Model]]
) -> list[tuple[type[pw.Model], pw.Field]]:
    """Fields of existing tables that the table does not have yet, in model order."""
    found = []
    for model in models:
        table = model._meta.table_name
        if not db.table_exists(table):
            continue
        have = {column.name for column in db.get_columns(table)}
        found.extend((model, field) for field in model._meta.sorted_fields
                     if field.column_name not in have)
    return found


def add_missing(db: pw.SqliteDatabase, models: Iterable[type[pw.Model]]) -> list[str]:
    """Create missing tables, columns and indexes; returns "table.column" for each column added.

    A NOT NULL column needs a constant default in the model, which existing rows take.
    Raises ValueError for a NOT NULL column without one.
    """
    models = list(models)
    added = []
    missing = missing_columns(db, models)
    if missing:
        # Only for an older file: playhouse.migrate brings its Postgres and CockroachDB
        # dialects along, memory an up-to-date server need not hold.
        from playhouse.migrate import SqliteMigrator, migrate
        migrator = SqliteMigrator(db)
    for model, field in missing:
        column = field.clone()
        if not field.null:
            # SQLite adds a NOT NULL column only with a constant default, and rebuilding the
            # table instead would fire ON DELETE actions on every child row.
            column.constraints = [*(field.constraints or []), pw.SQL(f"DEFAULT {_literal(field)}")]
        migrate(migrator.alter_add_column(model._meta.table_name, field.column_name, column,
                                          allow_not_null=True))
        added.append(f"{model._meta.table_name}.{field.column_name}")
    # safe=True: CREATE TABLE / INDEX IF NOT EXISTS, so only what is missing is made.
    db.create_tables(models, safe=True)
    return added


def upgrade(
    db: pw.SqliteDatabase, path: Path, models: Iterable[type[pw.Model]], from_version: int,
    to_version: int, steps: dict[int, list[UpgradeStep]],
) -> None:
    """Bring a database at `from_version` to `to_version` in one transaction.

    A fresh file (version 0, no tables) is simply created. Raises what SQLite raises; the
    transaction is then rolled back and the file stays at `from_version`.
    """
    fresh = from_version == 0 and not db.get_tables()
    if not fresh:
        copy = backup(db, path, from_version)
        log.warning("upgrading database %s from schema %d to %d; the old file is kept as %s",
                    path, from_version, to_version, copy)
    with db.atomic("IMMEDIATE"):
        added = add_missing(db, models)
        if not fresh:
            for version in range(from_version + 1, to_version + 1):
                for step in steps.get(version, []):
                    step(db)
        db.execute_sql(f"PRAGMA user_version = {to_version}")
    if added:
        log.info("database %s: added columns %s", path, ", ".join(added))


def _literal(field: pw.Field) -> str:
    default = field.default
    if callable(default) or default is None:
        raise ValueError(f"{field.model.__name__}.{field.name} is NOT NULL without a constant "
                         "default: an upgrade cannot fill existing rows")
    if isinstance(default, bool):
        return str(int(default))
    if isinstance(default, int | float):
        return repr(default)
    return "'" + str(default).replace("'", "''") + "'"

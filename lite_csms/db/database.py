"""Opening the SQLite file: WAL, durable commits, and one connection shared by design."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import peewee as pw

from lite_csms.budget import counters, memory
from lite_csms.db.models import ALL_MODELS, database_proxy
from lite_csms.db.upgrade import UpgradeStep, upgrade
from lite_csms.handlers import authorization, meter_values

SCHEMA_VERSION = 5

# Data steps per schema version, after the missing tables and columns exist (db/upgrade.py).
UPGRADE_STEPS: dict[int, list[UpgradeStep]] = {
    3: [authorization.upgrade_v3, meter_values.upgrade_v3],
    # 0.3.0: refusals per key or per value, the server's settings, firmware changes.
    4: [memory.upgrade_v4],
    # The traffic tables' station indexes that wider ones cover (40 % of a row's write).
    5: [counters.drop_redundant_indexes],
}

PRAGMAS = {
    "journal_mode": "wal",
    # FULL: a CALLRESULT promises the data is on disk, even across a power cut.
    "synchronous": "full",
    "foreign_keys": 1,
    # The CLI writes to the same file while the server runs.
    "busy_timeout": 5000,
    # A long read elsewhere (a backup, an operator's sqlite3 session) lets the WAL grow
    # with every commit; without a limit the file keeps that size after the WAL starts over.
    # Well above what a busy writer's WAL reaches between its checkpoints (db/writer.py),
    # so the file is not truncated and regrown on the answer path.
    "journal_size_limit": 64 * 1024 * 1024,
}


# sqlite3 keeps this many prepared statements per connection (default 128): the hot
# paths' raw statements and peewee's query texts share the cache, and an evicted one is re-parsed.
CACHED_STATEMENTS = 512


class DatabaseError(Exception):
    """The database file cannot be opened or is not ours."""


def open_database(path: str | Path, *, create: bool = True) -> pw.SqliteDatabase:
    """Open (and by default create) the store, binding the models to it.

    thread_safe=False gives one connection for the process, not one per thread: the server's
    single writer hands it from thread to thread, never using it from two at once.
    """
    path = Path(path)
    if not create and not path.exists():
        raise DatabaseError(f"database {path} does not exist")
    if path.parent and not path.parent.exists():
        raise DatabaseError(f"directory {path.parent} does not exist")
    if create and not path.exists():
        _create_private(path)
    db = pw.SqliteDatabase(
        str(path), pragmas=PRAGMAS, thread_safe=False, check_same_thread=False, autoconnect=False,
        cached_statements=CACHED_STATEMENTS,
    )
    try:
        db.connect()
        database_proxy.initialize(db)
        version = db.execute_sql("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"database {path} has schema version {version}; this lite-csms knows "
                f"{SCHEMA_VERSION}"
            )
        if create and version < SCHEMA_VERSION:
            upgrade(db, path, ALL_MODELS, version, SCHEMA_VERSION, UPGRADE_STEPS)
    except (pw.DatabaseError, sqlite3.DatabaseError, ValueError) as exc:
        if not db.is_closed():
            db.close()
        raise DatabaseError(f"cannot open database {path}: {exc}") from exc
    return db


def _create_private(path: Path) -> None:
    """Create the empty file with mode 0600 before SQLite writes a byte to it; SQLite gives
    the -wal and -shm files the mode of the database file, so they are 0600 too."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return  # created meanwhile by another process: its mode stands
    except OSError as exc:
        raise DatabaseError(f"cannot create database {path}: {exc}") from exc
    # os.open applies the umask, which may only remove bits; make sure of the owner's rw.
    os.chmod(path, 0o600)


def schema_sql(db: pw.SqliteDatabase) -> list[str]:
    """The CREATE statements of a database, in a stable order."""
    rows = db.execute_sql(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
        "ORDER BY type DESC, name"
    ).fetchall()
    return [row[0] for row in rows]

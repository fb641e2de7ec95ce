"""Point reads that never wait for the writer (docs/ARCHITECTURE.md, "One writer").

A group commit may hold the writer for seconds: a traffic flush after a reconnect storm
writes thousands of rows. A handshake that looked its station up through the writer queued
behind it, and a station's right password took seconds to get in. In WAL mode a reader
sees the last commit while the writer works on the next one, so these lookups use a
read-only connection of their own. They are single-row primary-key reads (tens of
microseconds), so they run on the caller's thread rather than paying a thread hop.

`run(work)` does the same for any read-only domain function written on the models (an id
token's status, the budget policy's state at boot): the models are routed to the read
connection while it runs (db/routing.py). A function that writes fails there ("attempt to
write a readonly database"), so only reads go this way. `read(store, reader, work)` falls
back to the writer when the read connection fails.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import peewee as pw

from lite_csms.db.models import Station
from lite_csms.db.routing import reading_from

if TYPE_CHECKING:
    from lite_csms.db.writer import StoreWriter

log = logging.getLogger(__name__)
T = TypeVar("T")

_COLUMNS = [(field.name, field.column_name, field) for field in Station._meta.sorted_fields]
_STATION = "SELECT {} FROM station WHERE id = ?".format(
    ", ".join(f'"{column}"' for _, column, _ in _COLUMNS))


class StoreReader:
    """Read-only lookups of committed rows; sqlite3 errors propagate to the caller."""

    def __init__(self, path: str | Path, *, cache_kib: int = 2000) -> None:
        """`cache_kib`: SQLite's page cache for this connection (its default: 2,000 KiB). A
        commit by the writer empties it anyway (WAL), so a small one costs little."""
        self._path = str(path)
        self._cache_kib = cache_kib
        self._conn: sqlite3.Connection | None = None
        self._db: pw.SqliteDatabase | None = None

    def open(self) -> None:
        """Open the connection now, with the server, rather than at the first handshake:
        its descriptors belong to the server's baseline, not to some station's (SQLite
        opens the WAL at the first read, hence one)."""
        self._connection().execute("SELECT 1 FROM station LIMIT 1").fetchall()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            uri = Path(self._path).resolve().as_uri() + "?mode=ro"
            # peewee's own connection, so that `run` can route the models to it.
            self._db = pw.SqliteDatabase(uri, uri=True, thread_safe=False,
                                         check_same_thread=False, autoconnect=False,
                                         pragmas={"busy_timeout": 1000,
                                                  "cache_size": -self._cache_kib})
            self._db.connect()
            self._conn = self._db.connection()
        return self._conn

    def run(self, work: Callable[[], T]) -> T:
        """Run a read-only function on the models against the committed state, here and now
        (on the caller's thread: keep it to a few indexed reads)."""
        self._connection()
        assert self._db is not None
        with reading_from(self._db):
            return work()

    def station(self, station_id: str) -> Station | None:
        """The committed Station row, as a model instance not bound to a query, or None."""
        row = self._connection().execute(_STATION, (station_id,)).fetchone()
        if row is None:
            return None
        return Station(**{name: field.python_value(value)
                          for (name, _, field), value in zip(_COLUMNS, row, strict=True)})

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db = None
        self._conn = None


async def read(store: StoreWriter, reader: StoreReader | None, work: Callable[[], T]) -> T:
    """`work` on the read connection, or through the writer when there is none (an
    in-memory database) or its read fails."""
    if reader is not None:
        import trio  # here: the CLI imports the policy, which reads, without the network stack

        try:
            found = reader.run(work)
        except (sqlite3.Error, pw.DatabaseError) as exc:
            log.warning("read beside the writer failed, asking the writer: %s", exc)
        else:
            # A yield per read, as the writer's queue gave: the policy's sweep over every
            # connected station must not hold the event loop for the whole fleet.
            await trio.lowlevel.checkpoint()
            return found
    return await store.run(work)

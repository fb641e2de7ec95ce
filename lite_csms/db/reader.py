"""Point reads that never wait for the writer (docs/ARCHITECTURE.md, "One writer").

A group commit may hold the writer for seconds: a traffic flush after a reconnect storm
writes thousands of rows. A handshake that looked its station up through the writer queued
behind it, and a station's right password took seconds to get in. In WAL mode a reader
sees the last commit while the writer works on the next one, so these lookups use a
read-only connection of their own. They are single-row primary-key reads (tens of
microseconds), so they run on the caller's thread rather than paying a thread hop.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lite_csms.db.models import Station

_COLUMNS = [(field.name, field.column_name, field) for field in Station._meta.sorted_fields]
_STATION = "SELECT {} FROM station WHERE id = ?".format(
    ", ".join(f'"{column}"' for _, column, _ in _COLUMNS))


class StoreReader:
    """Read-only lookups of committed rows; sqlite3 errors propagate to the caller."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        """Open the connection now, with the server, rather than at the first handshake:
        its descriptors belong to the server's baseline, not to some station's (SQLite
        opens the WAL at the first read, hence one)."""
        self._connection().execute("SELECT 1 FROM station LIMIT 1").fetchall()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            uri = Path(self._path).resolve().as_uri() + "?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False,
                                         isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 1000")
        return self._conn

    def station(self, station_id: str) -> Station | None:
        """The committed Station row, as a model instance not bound to a query, or None."""
        row = self._connection().execute(_STATION, (station_id,)).fetchone()
        if row is None:
            return None
        return Station(**{name: field.python_value(value)
                          for (name, _, field), value in zip(_COLUMNS, row, strict=True)})

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

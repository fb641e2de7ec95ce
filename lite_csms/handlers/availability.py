"""Availability: connector status and its history.

A status report is the commonest durable message, so it is a handful of prepared statements
on the writer's sqlite3 connection rather than ORM queries (sqlite3 caches each statement
per connection); the models in db/models.py still define the tables.
"""

from __future__ import annotations

from datetime import datetime

from lite_csms.db import statements
from lite_csms.db.models import Connector, UtcDateTimeField
from lite_csms.ocppj.timestamps import now_utc

_STORED = UtcDateTimeField()
# The connector and whether this report is a retransmission, in one statement: each
# statement is a round of the writer's thread through the GIL.
_CONNECTOR_AND_REPEAT = (
    'SELECT c."id", c."status_at", EXISTS (SELECT 1 FROM "connector_status_change" '
    'WHERE "connector_id" = c."id" AND "timestamp" = ? AND "status" = ?) FROM "connector" c '
    'WHERE c."station_id" = ? AND c."evse_id" = ? AND c."connector_id" = ?')
_NEW_CONNECTOR = ('INSERT INTO "connector" ("station_id", "evse_id", "connector_id", "status", '
                  '"error_code", "info", "status_at") VALUES (?, ?, ?, ?, ?, ?, ?)')
_CURRENT = ('UPDATE "connector" SET "status" = ?, "error_code" = ?, "info" = ?, '
            '"status_at" = ? WHERE "id" = ?')
_CHANGE = ('INSERT INTO "connector_status_change" ("connector_id", "status", "error_code", '
           '"info", "timestamp", "received_at") VALUES (?, ?, ?, ?, ?, ?)')


def record_status(
    station_id: str, evse_id: int, connector_id: int, status: str, at: datetime,
    error_code: str | None = None, info: str | None = None,
) -> bool:
    """Store a status report; return False for a retransmitted one (same connector,
    timestamp and status), which stores nothing. Runs inside a writer job."""
    conn = statements.connection(Connector)
    stored_at = _STORED.db_value(at)
    found = conn.execute(_CONNECTOR_AND_REPEAT,
                         (stored_at, status, station_id, evse_id, connector_id)).fetchone()
    if found is None:
        connector = conn.execute(_NEW_CONNECTOR, (station_id, evse_id, connector_id, status,
                                                  error_code, info, stored_at)).lastrowid
    else:
        connector, status_at, repeat = found
        if repeat:
            return False
        # Reports sent while offline may arrive late; the newest one decides the current status.
        if at >= _STORED.python_value(status_at):
            conn.execute(_CURRENT, (status, error_code, info, stored_at, connector))
    conn.execute(_CHANGE, (connector, status, error_code, info, stored_at,
                           _STORED.db_value(now_utc())))
    return True

"""db/bulk.py: rows written through one JSON array or through VALUES lists of fixed sizes
are exactly the rows given, whatever their number, and the padding never reaches the
table."""

from __future__ import annotations

import sqlite3

import pytest

from lite_csms.db import bulk

TEMPLATE = ('INSERT INTO "t" ("k", "v", "note") SELECT * FROM ({values}) '
            'WHERE column1 IS NOT NULL')
JSON = ('INSERT INTO "t" ("k", "v", "note") SELECT json_extract(value, \'$[0]\'), '
        'json_extract(value, \'$[1]\'), json_extract(value, \'$[2]\') FROM json_each(?)')


def _table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute('CREATE TABLE "t" ("k" TEXT NOT NULL, "v" INTEGER, "note" TEXT)')
    return conn


@pytest.mark.parametrize("values", [TEMPLATE, None])
@pytest.mark.parametrize("count", [1, 63, 64, 65, 256, 257, 1024, 1025, 2049])
def test_every_row_once_and_nothing_else(count: int, values: str | None) -> None:
    rows = [(f"K-{n}-é'\"", n * 7 - 3, None if n % 3 else f"n{n}") for n in range(count)]
    conn = _table()
    bulk.execute(conn, rows, json=JSON, values=values)
    stored = conn.execute('SELECT "k", "v", "note", typeof("v") FROM "t" ORDER BY rowid')
    assert [tuple(r[:3]) for r in stored] == rows
    assert {r[0] for r in conn.execute('SELECT typeof("v") FROM "t"')} == {"integer"}


def test_no_rows_runs_nothing() -> None:
    conn = _table()
    bulk.execute(conn, [], json="this is not SQL", values="nor this {values}")
    assert conn.execute('SELECT count(*) FROM "t"').fetchone() == (0,)


def test_sizes_follow_the_parameter_limit() -> None:
    conn = _table()
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    assert bulk.sizes_for(conn, 3) == (64, 256)
    assert bulk.sizes_for(conn, 15) == (64,)
    assert bulk.sizes_for(conn, 500) == (1,)
    rows = [(f"K-{n}", n, "x") for n in range(700)]
    bulk.execute(conn, rows, json=JSON, values=TEMPLATE)
    assert conn.execute('SELECT count(*), sum("v") FROM "t"').fetchone() == (700, sum(range(700)))


def test_an_update_from_values_changes_only_the_rows_given() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute('CREATE TABLE "s" ("id" TEXT PRIMARY KEY, "seen" TEXT, "online" INTEGER)')
    conn.executemany('INSERT INTO "s" VALUES (?, NULL, 1)', [(f"S{n}",) for n in range(300)])
    rows = [(f"at-{n}", f"S{n}") for n in range(0, 300, 2)] + [("at-x", "GONE")]
    bulk.execute(conn, rows, json="",
                 values='UPDATE "s" SET "online" = 0, "seen" = j.column1 FROM ({values}) AS j '
                        'WHERE "s"."id" = j.column2')
    stored = dict(conn.execute('SELECT "id", "seen" FROM "s" WHERE "online" = 0'))
    assert stored == {f"S{n}": f"at-{n}" for n in range(0, 300, 2)}

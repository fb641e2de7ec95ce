"""Many rows in one statement, or a few: a JSON array, or, in a process about to exit,
VALUES lists of bound parameters.

sqlite3 gives up the GIL for each sqlite3_step, so one statement over many rows runs in one
step with the GIL released, while executemany takes it back at every row (a stop's 100,000
rows beside a busy trio thread: the writer's thread waited for the GIL each time).

- **A JSON array** (`json`, a statement with one parameter walked by `json_each`): one
  small prepared statement, kept in the connection's cache. json_extract parses each row's
  text again for every column: about 5 us a row, half the cost of the write.
- **VALUES lists** (`values`, a template with `{values}` where a VALUES list goes, whose
  columns SQLite names column1, column2, ...): no parsing, about half the CPU. Each list
  holds one of SIZES rows, so that each text is prepared once; the last is filled up with
  rows of NULLs, which the template must leave out (`WHERE column1 IN (...)` or a join on
  a NOT NULL column does). But a prepared statement of 1,024 rows of 8 columns holds 2 MiB
  (15 columns: 3.5 MiB) for as long as the connection caches it: only for the server's
  stop, which exits after its last write (docs/PERFORMANCE.md, "Graceful stop").
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

import orjson

# Rows per VALUES statement: the smallest size that holds the rows, the largest for each
# full chunk.
SIZES = (64, 256, 1024)

_TEXTS: dict[tuple[str, int, int], str] = {}


def _text(template: str, width: int, size: int) -> str:
    key = (template, width, size)
    text = _TEXTS.get(key)
    if text is None:
        row = "(" + ", ".join("?" * width) + ")"
        text = _TEXTS[key] = template.format(values="VALUES " + ", ".join([row] * size))
    return text


def sizes_for(conn: sqlite3.Connection, width: int) -> tuple[int, ...]:
    """The sizes of SIZES whose parameters fit the connection's limit (32,766 since SQLite
    3.32; 999 before), at least one row."""
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    fitting = tuple(size for size in SIZES if size * width <= limit)
    return fitting or (max(1, limit // width),)


def execute(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]], *, json: str,
            values: str | None = None) -> None:
    """Run the `json` statement over `rows` (each of the same width, of str, int, float,
    bool or None) as one JSON array; or, given `values`, that template in as few
    statements as SIZES allow. Raises what sqlite3 raises; the caller's transaction keeps
    what ran before."""
    if not rows:
        return
    if values is None:
        conn.execute(json, (orjson.dumps(rows).decode(),))
        return
    width = len(rows[0])
    sizes = sizes_for(conn, width)
    largest = sizes[-1]
    cursor = conn.cursor()
    for start in range(0, len(rows), largest):
        chunk = rows[start:start + largest]
        size = next(size for size in sizes if size >= len(chunk))
        params = list(chain.from_iterable(chunk))
        params.extend([None] * (width * (size - len(chunk))))
        cursor.execute(_text(values, width, size), params)

"""Many rows in a few statements: multi-row VALUES lists of bound parameters.

sqlite3 gives up the GIL for each sqlite3_step, so one statement over a thousand rows runs
in one step with the GIL released, while executemany takes it back at every row (a stop's
100,000 rows beside a busy trio thread: the writer's thread waited for the GIL each time).
The JSON arrays this replaces did the same, but json_extract parsed each row's text again for
every column: about 5 us a row, half the cost of the write (docs/PERFORMANCE.md, "Graceful
stop").

A statement is `template` with `{values}` replaced by a VALUES list, whose columns SQLite
names column1, column2, ... Each list holds one of a few fixed numbers of rows, so that the
connection's statement cache keeps each text prepared; the last list is filled up with rows
of NULLs, which the template must leave out (`WHERE column1 IN (...)` or a join on a NOT NULL
column does).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

# Rows per statement: the smallest size that holds the rows, the largest for each full chunk.
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


def execute(conn: sqlite3.Connection, template: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run `template` over `rows` (each of the same width), as few statements as SIZES
    allow. Raises what sqlite3 raises; the caller's transaction keeps what ran before."""
    if not rows:
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
        cursor.execute(_text(template, width, size), params)

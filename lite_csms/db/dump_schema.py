"""Write the schema the models create, as readable SQL: `python -m lite_csms.db.dump_schema`.

store/schema.sql is this output; tests/test_store.py fails when the two drift apart.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from lite_csms.db.database import SCHEMA_VERSION, open_database, schema_sql

HEADER = f"""-- lite-csms SQLite schema, version {SCHEMA_VERSION} (PRAGMA user_version).
-- Generated from lite_csms/db/models.py by `python -m lite_csms.db.dump_schema`.
-- The server creates these itself; this file is for reading, reviewing and other tools.
-- Times are ISO 8601 text in UTC with milliseconds; booleans are 0/1.
"""


def render() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp) / "schema.sqlite3")
        try:
            statements = schema_sql(db)
        finally:
            db.close()
    body = "\n\n".join(_pretty(s) + ";" for s in statements)
    return f"{HEADER}\n{body}\n"


def _pretty(statement: str) -> str:
    if not statement.startswith("CREATE TABLE"):
        return statement
    head, _, rest = statement.partition(" (")
    columns = _split_top_level(rest[:-1])
    return head + " (\n    " + ",\n    ".join(columns) + "\n)"


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        depth += char == "("
        depth -= char == ")"
        current.append(char)
    parts.append("".join(current).strip())
    return parts


if __name__ == "__main__":
    sys.stdout.write(render())

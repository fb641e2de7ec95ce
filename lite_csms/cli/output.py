"""Printing listings as aligned text or as JSON."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson


class CliError(Exception):
    """A one-line error for the user; the command exits non-zero."""


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def emit(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(list(rows), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = [[_plain(row.get(col)) for col in columns] for row in rows]
    widths = [max([len(col)] + [len(r[i]) for r in table]) for i, col in enumerate(columns)]
    print("  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True)).rstrip())
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def emit_one(record: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(record, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    width = max(len(k) for k in record)
    for key, value in record.items():
        if isinstance(value, list):
            print(f"{key.ljust(width)}  ({len(value)})")
            for item in value:
                print("  " + "  ".join(f"{k}={_plain(v)}" for k, v in item.items()))
        else:
            print(f"{key.ljust(width)}  {_plain(value)}")

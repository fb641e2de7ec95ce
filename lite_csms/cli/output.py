"""Printing listings as aligned text or as JSON."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson


class CliError(Exception):
    """A one-line error for the user; the command exits non-zero."""


# The admin API names its body's fields; the CLI has flags for them.
_API_TO_CLI_WORDS = [
    ('"queue": true', "--queue"), ('"ttl"', "--ttl"), ("ttl must", "--ttl must"),
    ("expires_in", "--expires-in"), ("queue true or false", "--queue"),
]


_LEADING_ARGUMENT = re.compile(r"([a-z][a-z_]*) must ")
# Arguments the CLI takes positionally or builds itself: no flag to name.
_NOT_FLAGS = frozenset({"args", "payload", "action", "keys", "variables", "location",
                        "planned", "periods"})


def api_error(status: int, message: str, station_id: str | None = None) -> CliError:
    """An admin API error (HTTP status and its "error" text) in the CLI's words.

    404 "not found" names what was not found; "offline, send with "queue": true" becomes the
    --queue advice; the API's field names become flags.
    """
    subject = f"station {station_id}" if station_id else "it"
    if status == 404 and message == "not found":
        return CliError(f"{subject} not found")
    if status == 401:
        return CliError(f"the admin API refused the key in LITE_CSMS_API_KEY (or api_key): "
                        f"{message}")
    if status == 409 and '"queue": true' in message:
        reason = message.split(";", 1)[0]
        if reason.endswith("is not connected"):
            return CliError(f"{subject} is offline; add --queue to deliver it when it "
                            "reconnects")
        return CliError(f"{reason}; add --queue to deliver it once it has")
    if status == 409 and message.startswith("the station has never connected"):
        return CliError(f"{subject} has never connected, so its OCPP version is unknown: "
                        "nothing can be sent or queued yet")
    for api_words, cli_words in _API_TO_CLI_WORDS:
        message = message.replace(api_words, cli_words)
    # "stack_level must be ..." names the API's argument; the CLI's flag is --stack-level.
    field = _LEADING_ARGUMENT.match(message)
    if status == 422 and field is not None and field.group(1) not in _NOT_FLAGS:
        message = "--" + field.group(1).replace("_", "-") + message[field.end(1):]
    if not message.strip():
        message = f"the admin API answered HTTP {status} without a reason"
    elif status >= 500 and str(status) not in message and status != 502:
        message = f"the admin API answered HTTP {status}: {message}"
    return CliError(message)


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

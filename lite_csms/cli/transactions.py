"""`lite-csms tx …`: charging sessions and the energy they delivered."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lite_csms.cli.output import CliError, api_error, emit, emit_one
from lite_csms.cli.remote import call_api
from lite_csms.config import Settings
from lite_csms.db.models import Transaction
from lite_csms.views import sample_rows, transaction_row

# FLAG is "REVIEW: <tags>" for a transaction to check before billing (`tx show` says why).
COLUMNS = ["id", "station", "evse", "token", "started_at", "stopped_at", "energy_kwh", "reason",
           "flag"]


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    tx = sub.add_parser("tx", help="charging sessions")
    cmds = tx.add_subparsers(dest="tx_command", required=True)
    listing = cmds.add_parser("list", parents=[common], help="list sessions, newest first")
    listing.add_argument("--station", help="only this station")
    listing.add_argument("--active", action="store_true", help="only running sessions")
    listing.add_argument("--review", action="store_true",
                         help="only sessions flagged for review before billing")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    show = cmds.add_parser("show", parents=[common], help="one session with its meter samples")
    show.add_argument("transaction_id", type=int)
    show.add_argument("--json", action="store_true")
    progress_ = cmds.add_parser(
        "progress", parents=[common],
        help="a running session's energy and power now: asks the station for a fresh reading "
             "(through the admin API; at most once a minute per session)")
    progress_.add_argument("transaction_id", type=int)
    progress_.add_argument("--wait", type=float, help="seconds to wait for the station's "
                           "reading (default: the server's progress_wait, 5)")
    progress_.add_argument("--cached", action="store_true",
                           help="send nothing to the station: show the stored reading")
    progress_.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.tx_command == "list":
        query = Transaction.select().order_by(Transaction.started_at.desc(), Transaction.id.desc())
        if args.station:
            query = query.where(Transaction.station == args.station)
        if args.active:
            query = query.where(Transaction.stopped_at.is_null())
        if args.review:
            query = query.where(Transaction.review.is_null(False))
        rows = [transaction_row(t) for t in query.limit(max(1, args.limit))]
        emit(rows, COLUMNS, as_json=args.json)
        return 0
    tx = Transaction.get_or_none(Transaction.id == args.transaction_id)
    if tx is None:
        raise CliError(f"no transaction {args.transaction_id}")
    record = transaction_row(tx)
    record["samples"] = sample_rows(tx)
    emit_one(record, as_json=args.json)
    return 0


# What the admin API's `refresh` means, in a sentence each.
REFRESH = {
    "fetched": "fresh reading from the station",
    "rate-limited": "no new request: one was sent in the last minute",
    "refused": "the station refused to send a reading",
    "timeout": "the station sent no reading in time",
    "requested": "asked the station; its reading is stored when it arrives",
    "offline": "the station is offline",
    "ended": "the session has ended",
    "not-requested": "stored reading (--cached)",
}


def progress(args: argparse.Namespace, settings: Settings) -> int:
    """`tx progress ID`: GET /transactions/ID/progress on the running server."""
    query = f"fresh={0 if args.cached else 1}"
    if args.wait is not None:
        query += f"&wait={args.wait:g}"
    status, answer = call_api(settings, "GET",
                              f"/transactions/{args.transaction_id}/progress?{query}", None)
    if "error" in answer:
        if status == 404:
            raise CliError(f"no transaction {args.transaction_id}")
        raise api_error(status, str(answer["error"]))
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(describe_progress(answer))
    return 0


def describe_progress(p: dict[str, Any]) -> str:
    state = "running" if p["running"] else f"ended at {p['stopped_at']}"
    energy = "unknown" if p["energy_wh"] is None else f"{p['energy_wh'] / 1000:.3f} kWh"
    lines = [f"transaction {p['transaction']} on {p['station']} evse {p['evse']}: {state}, "
             f"started {p['started_at']}", f"energy so far: {energy}"]
    if p["register_wh"] is not None:
        lines.append(f"register: {p['register_wh']:.12g} Wh at {p['reading_at']} "
                     f"({_age(p['age_s'])} old)")
    if p["power_w"] is not None:
        lines.append(f"power: {p['power_w'] / 1000:.2f} kW at {p['power_at']}")
    note = REFRESH.get(p["refresh"], p["refresh"])
    if p["stale"]:
        note = f"STALE: {note}"
    if p.get("detail"):
        note += f" ({p['detail']})"
    lines.append(note)
    return "\n".join(lines)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

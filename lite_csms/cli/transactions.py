"""`lite-csms tx …`: charging sessions and the energy they delivered."""

from __future__ import annotations

import argparse

from lite_csms.cli.output import CliError, emit, emit_one
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

"""`lite-csms tx …`: charging sessions and the energy they delivered."""

from __future__ import annotations

import argparse
from typing import Any

from lite_csms.cli.output import CliError, emit, emit_one
from lite_csms.db.models import MeterSample, Transaction

COLUMNS = ["id", "station", "evse", "token", "started_at", "stopped_at", "energy_kwh", "reason"]


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    tx = sub.add_parser("tx", help="charging sessions")
    cmds = tx.add_subparsers(dest="tx_command", required=True)
    listing = cmds.add_parser("list", parents=[common], help="list sessions, newest first")
    listing.add_argument("--station", help="only this station")
    listing.add_argument("--active", action="store_true", help="only running sessions")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    show = cmds.add_parser("show", parents=[common], help="one session with its meter samples")
    show.add_argument("transaction_id", type=int)
    show.add_argument("--json", action="store_true")


def _row(tx: Transaction) -> dict[str, Any]:
    energy = tx.energy_wh
    return {
        "id": tx.id, "station": tx.station_id, "station_tx_id": tx.station_tx_id,
        "evse": tx.evse_id, "connector": tx.connector_id, "token": tx.id_token,
        "auth_status": tx.auth_status, "started_at": tx.started_at, "stopped_at": tx.stopped_at,
        "meter_start_wh": tx.meter_start_wh, "meter_stop_wh": tx.meter_stop_wh,
        "energy_wh": energy, "energy_kwh": None if energy is None else energy / 1000,
        "reason": tx.stop_reason, "offline": tx.offline, "seq_no_gaps": tx.seq_no_gaps,
    }


def run(args: argparse.Namespace) -> int:
    if args.tx_command == "list":
        query = Transaction.select().order_by(Transaction.started_at.desc(), Transaction.id.desc())
        if args.station:
            query = query.where(Transaction.station == args.station)
        if args.active:
            query = query.where(Transaction.stopped_at.is_null())
        emit([_row(t) for t in query.limit(max(1, args.limit))], COLUMNS, as_json=args.json)
        return 0
    tx = Transaction.get_or_none(Transaction.id == args.transaction_id)
    if tx is None:
        raise CliError(f"no transaction {args.transaction_id}")
    record = _row(tx)
    record["samples"] = [
        {"timestamp": s.timestamp, "measurand": s.measurand, "value": s.value, "unit": s.unit,
         "phase": s.phase or None, "context": s.context or None}
        for s in tx.samples.order_by(MeterSample.timestamp, MeterSample.id)
    ]
    emit_one(record, as_json=args.json)
    return 0

"""A running session's meter, read on demand: the store side of `operations/progress.py`.

Tying meter values that name no transaction to the one running on their EVSE: a 2.x
MeterValues never names a transaction (2.0.1 F06: a TriggerMessage MeterValues is answered
with one), and a 1.6 charger may leave transactionId out. A sample belongs to the
transaction on the same station and EVSE (1.6: connector) that was running at the sample's
own timestamp: started at or before it and not stopped before it. Its energy register
readings join that transaction's readings (so its energy and latest reading follow them); a
2.x reading takes the seqNo of the transaction's last event at or before its timestamp, so it
is ordered among that transaction's events by time (energy.py orders 2.x readings by seqNo).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lite_csms.db.models import MeterSample, Transaction, TransactionEventRecord
from lite_csms.domain import Sample
from lite_csms.handlers.meter_values import measure_transaction, recount, store_samples

POWER = "Power.Active.Import"
PHASES = ("L1", "L2", "L3", "L1-N", "L2-N", "L3-N")


def running_at(station_id: str, evse_id: int, at: datetime) -> Transaction | None:
    """The transaction running on this EVSE at `at` (the newest, if several claim it)."""
    if evse_id <= 0:
        return None
    return (Transaction.select()
            .where(Transaction.station == station_id, Transaction.evse_id == evse_id,
                   Transaction.started_at <= at,
                   Transaction.stopped_at.is_null() | (Transaction.stopped_at >= at))
            .order_by(Transaction.started_at.desc(), Transaction.id.desc()).first())


def seq_no_at(tx: Transaction, at: datetime) -> int | None:
    """The seqNo of the transaction's last event at or before `at` (None for 1.6, whose
    readings are ordered by time alone, or when no event is that old)."""
    if tx.station_tx_id is None:
        return None
    last = (TransactionEventRecord.select(TransactionEventRecord.seq_no)
            .where(TransactionEventRecord.transaction == tx,
                   TransactionEventRecord.timestamp <= at)
            .order_by(TransactionEventRecord.seq_no.desc()).first())
    return None if last is None else last.seq_no


def store_untied(station_id: str, evse_id: int, samples: Sequence[Sample]) -> int:
    """Store meter values that name no transaction, each tied to the transaction running on
    its EVSE at its timestamp (module docstring); return how many samples were new."""
    by_time: dict[datetime, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_time[sample.timestamp].append(sample)
    new = 0
    touched: dict[int, Transaction] = {}
    for at, group in by_time.items():
        tx = running_at(station_id, evse_id, at)
        if tx is None:
            new += store_samples(station_id, evse_id, group, None)
            continue
        tx = touched.setdefault(tx.id, tx)
        new += store_samples(station_id, evse_id, group, tx, source="MeterValues",
                             seq_no=seq_no_at(tx, at))
    for tx in touched.values():
        recount(tx)
    return new


def progress(tx_id: int, now: datetime) -> dict[str, Any] | None:
    """What a running (or ended) session has delivered so far, from the store.

    Shape: transaction, station, evse, running, started_at, stopped_at, energy_wh (delivered
    so far, energy.py rules), register_wh (latest counted register reading, Wh), reading_at
    (its station timestamp), age_s (server now minus reading_at, never negative), power_w
    (latest Power.Active.Import on the outlet: the total, else the sum of its phases; None
    when the station sends none), power_at. None when there is no such transaction.
    """
    tx = Transaction.get_or_none(Transaction.id == tx_id)
    if tx is None:
        return None
    latest = measure_transaction(tx).latest
    power_w, power_at = _latest_power(tx)
    reading_at = None if latest is None else latest.timestamp
    return {
        "transaction": tx.id, "station": tx.station_id, "station_tx_id": tx.station_tx_id,
        "evse": tx.evse_id, "running": tx.stopped_at is None, "started_at": tx.started_at,
        "stopped_at": tx.stopped_at, "energy_wh": tx.energy_wh,
        "register_wh": None if latest is None else latest.value_wh,
        "reading_at": reading_at,
        "age_s": None if reading_at is None else max(0.0, (now - reading_at).total_seconds()),
        "power_w": power_w, "power_at": power_at,
    }


def _latest_power(tx: Transaction) -> tuple[float | None, datetime | None]:
    newest = (MeterSample.select(MeterSample.timestamp)
              .where(MeterSample.transaction == tx, MeterSample.measurand == POWER,
                     MeterSample.location.in_(("", "Outlet")))
              .order_by(MeterSample.timestamp.desc()).first())
    if newest is None:
        return None, None
    rows = list(MeterSample.select().where(
        MeterSample.transaction == tx, MeterSample.measurand == POWER,
        MeterSample.location.in_(("", "Outlet")), MeterSample.timestamp == newest.timestamp))
    total = [r.value for r in rows if r.phase == ""]
    if total:
        return total[0], newest.timestamp
    return sum(r.value for r in rows if r.phase in PHASES), newest.timestamp

"""Meter values: samples stored once, whatever the retransmits, and each transaction's energy.

A transaction's energy is recomputed from all its energy register readings (EnergyReading)
whenever one arrives, by the rules in lite_csms/energy.py, and stored on the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import peewee as pw

from lite_csms.db import statements
from lite_csms.db.models import (
    EnergyReading,
    MeterSample,
    Transaction,
    TransactionEventRecord,
    UtcDateTimeField,
)
from lite_csms.domain import Sample
from lite_csms.energy import BEGIN, END, End, Measurement, Reading, measure
from lite_csms.sharing import pricing

# The review tag of a 2.x transaction whose station reused a seqNo (handlers/transactions.py).
SEQ_NO_REUSED = "seqNo reused"
# EnergyReading.seq_no of a 1.6 reading, which has none.
NO_SEQ_NO = -1

_STORED = UtcDateTimeField()
_SAMPLE_FIELDS = ("station", "transaction", "evse_id", "timestamp", "measurand", "unit", "phase",
                  "location", "context", "value")
_READING_FIELDS = ("transaction", "timestamp", "value_wh", "context", "source", "seq_no")
_READINGS = ('SELECT "id", "transaction_id", "timestamp", "value_wh", "context", "source", '
             '"seq_no" FROM "energy_reading" WHERE "transaction_id" = ?')


def store_samples(
    station_id: str, evse_id: int, samples: Iterable[Sample], transaction: Transaction | None,
    *, source: str = "MeterValues", seq_no: int | None = None,
) -> int:
    """Insert samples, ignoring exact repeats; return how many were new.

    With a transaction, its energy register readings are added to its readings and its
    energy recomputed (`recount`).
    """
    samples = list(samples)
    if not samples:
        return 0
    tx_id = transaction.id if transaction is not None else None
    inserted = statements.insert(MeterSample, _SAMPLE_FIELDS, [
        (station_id, tx_id, evse_id, _STORED.db_value(s.timestamp), s.measurand, s.unit,
         s.phase, s.location, s.context, s.value) for s in samples], ignore=True)
    if transaction is not None:
        add_readings(transaction, [
            Reading(s.timestamp, s.value, s.context, source, seq_no)
            for s in samples if s.is_energy_register
        ])
    return inserted


def add_readings(transaction: Transaction, readings: Iterable[Reading]) -> int:
    """Store readings once each (a retransmit repeats them); return how many were new."""
    rows = [(transaction.id, _STORED.db_value(r.timestamp), r.value_wh, r.context, r.source,
             NO_SEQ_NO if r.seq_no is None else r.seq_no) for r in readings]
    if not rows:
        return 0
    return statements.insert(EnergyReading, _READING_FIELDS, rows, ignore=True)


@dataclass(frozen=True, slots=True)
class Recount:
    measurement: Measurement
    # Problems with the readings (backward register, stop before start) not flagged before.
    new_problems: tuple[str, ...]


def recount(transaction: Transaction, *, priced: bool = True) -> Recount:
    """Recompute start, stop, latest, energy, cost and the review flag from all readings;
    save. The first recount takes the session's price (sharing/pricing.py); `priced=False`
    (a schema upgrade's backfill, which binds only its own models) leaves price and cost."""
    found = measure_transaction(transaction)
    transaction.meter_start_wh = None if found.start is None else found.start.value_wh
    transaction.meter_stop_wh = None if found.stop is None else found.stop.value_wh
    transaction.meter_last_wh = None if found.latest is None else found.latest.value_wh
    transaction.energy_wh = found.energy_wh
    before = transaction.review_reason or ""
    tags, reasons = review_of(transaction, found)
    transaction.review = " / ".join(dict.fromkeys(tags)) or None
    transaction.review_reason = "; ".join(reasons) or None
    if priced:
        pricing.update_cost(transaction,
                            None if found.latest is None else found.latest.timestamp)
    statements.save(transaction)
    return Recount(found, tuple(p for p in found.problems if p not in before))


def measure_transaction(transaction: Transaction) -> Measurement:
    """energy.measure over the transaction's stored readings, as it stands now."""
    # A station that reused a seqNo for another event has lost the seqNo order: time orders.
    by_time = any(note.startswith(SEQ_NO_REUSED)
                  for note in (transaction.review_note or "").splitlines())
    return measure(stored_readings(transaction), ended=transaction.stopped_at is not None,
                   by_time=by_time, end=ended_by(transaction))


def ended_by(transaction: Transaction) -> End | None:
    """The 2.x Ended event that stopped the transaction (its earliest), if one did."""
    if transaction.stopped_at is None or transaction.station_tx_id is None:
        return None
    ends = list(transaction.events.where(TransactionEventRecord.event_type == "Ended")
                .order_by(TransactionEventRecord.timestamp, TransactionEventRecord.seq_no))
    own = next((e for e in ends if e.timestamp == transaction.stopped_at), None)
    if own is None:
        return None
    return End(own.timestamp, own.seq_no,
               tuple(e.timestamp for e in ends if e.timestamp > own.timestamp))


def stored_readings(transaction: Transaction) -> list[Reading]:
    # Every column, as `transaction.readings` selects them, so SQLite picks the same plan
    # and returns the rows in the same order; no model instance per reading.
    parse = _STORED.python_value
    return [Reading(parse(at), value_wh, context, source,
                    None if seq_no == NO_SEQ_NO else seq_no)
            for _, _, at, value_wh, context, source, seq_no
            in statements.connection(EnergyReading).execute(_READINGS, (transaction.id,))]


def review_of(transaction: Transaction, found: Measurement) -> tuple[list[str], list[str]]:
    """Why an operator should look at this transaction before billing it: tags and reasons."""
    tags: list[str] = []
    reasons: list[str] = []
    if transaction.reconstructed:
        tags.append("reconstructed")
        reasons.append(
            f"reconstructed: the station named transaction {transaction.station_tx_id} but its"
            " start never arrived; kept from its later messages"
        )
    if transaction.stop_reason == "Orphaned" and transaction.stopped_at is not None:
        tags.append("orphaned")
        reasons.append(
            "orphaned: its stop never arrived; closed at "
            f"{transaction.stopped_at.isoformat(timespec='seconds')} when a new transaction "
            f"started on EVSE {transaction.evse_id}; energy counted to its last reading"
        )
    for problem in found.problems:
        tags.append(problem.partition(":")[0])
        reasons.append(problem)
    for note in (transaction.review_note or "").splitlines():
        tags.append(note.partition(":")[0])
        reasons.append(note)
    return tags, reasons


def add_review_note(transaction: Transaction, note: str) -> bool:
    """Flag the transaction for review with `note` ("tag: reason"), once; True if new.

    Not saved: `recount` (or the caller) saves."""
    notes = (transaction.review_note or "").splitlines()
    if note in notes:
        return False
    transaction.review_note = "\n".join([*notes, note])
    return True


# Indexes of release 0.1.0 that schema 3 replaces: a station's transaction number may name
# several sessions (Transaction.generation), and a seqNo several events.
REPLACED_INDEXES = ("transaction_station_id_station_tx_id",
                    "transaction_event_record_transaction_id_seq_no")


def drop_replaced_indexes(db: pw.Database) -> None:
    """Drop the unique indexes schema 3 replaces (REPLACED_INDEXES); idempotent. Runs in the
    upgrade's transaction, after the new columns and indexes exist."""
    for name in REPLACED_INDEXES:
        db.execute_sql(f'DROP INDEX IF EXISTS "{name}"')


def upgrade_v3(db: pw.Database) -> None:
    """Backfill readings and the stored energy of transactions made before schema 3.

    Rows of release 0.1.0 have no EnergyReading rows: their 1.6 meterStart/meterStop come
    from the transaction's own columns (a stop of ours, "Orphaned", carried no reading) and
    the rest from its stored samples; a 2.x one whose Started never arrived is marked
    reconstructed; then `recount`. Idempotent: a transaction that already has readings is
    left alone. Run inside the upgrade's transaction. It first drops the replaced unique
    indexes (`drop_replaced_indexes`).
    """
    drop_replaced_indexes(db)
    models = [Transaction, EnergyReading, MeterSample, TransactionEventRecord]
    with db.bind_ctx(models):
        has_readings = EnergyReading.select(EnergyReading.transaction).distinct()
        for tx in Transaction.select().where(Transaction.id.not_in(has_readings)):
            if tx.station_tx_id is not None:
                tx.reconstructed = not tx.events.where(
                    TransactionEventRecord.event_type == "Started").exists()
            readings = []
            if tx.station_tx_id is None and tx.meter_start_wh is not None:
                readings.append(Reading(tx.started_at, tx.meter_start_wh, BEGIN,
                                        "StartTransaction"))
            if (tx.station_tx_id is None and tx.stopped_at is not None
                    and tx.meter_stop_wh is not None and tx.stop_reason != "Orphaned"):
                readings.append(Reading(tx.stopped_at, tx.meter_stop_wh, END, "StopTransaction"))
            for s in tx.samples:
                sample = Sample(s.timestamp, s.measurand, s.value, s.unit, s.phase, s.location,
                                s.context)
                if sample.is_energy_register:
                    readings.append(Reading(s.timestamp, s.value, s.context, "upgrade"))
            add_readings(tx, readings)
            recount(tx, priced=False)

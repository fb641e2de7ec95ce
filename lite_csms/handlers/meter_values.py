"""Meter values: samples stored once, whatever the retransmits."""

from __future__ import annotations

from collections.abc import Iterable

from lite_csms.db.models import MeterSample, Transaction
from lite_csms.domain import Sample


def store_samples(
    station_id: str, evse_id: int, samples: Iterable[Sample], transaction: Transaction | None
) -> int:
    """Insert samples, ignoring exact repeats; return how many were new."""
    rows = [
        {
            "station": station_id,
            "transaction": transaction.id if transaction is not None else None,
            "evse_id": evse_id,
            "timestamp": s.timestamp,
            "measurand": s.measurand,
            "unit": s.unit,
            "phase": s.phase,
            "location": s.location,
            "context": s.context,
            "value": s.value,
        }
        for s in samples
    ]
    if not rows:
        return 0
    inserted = MeterSample.insert_many(rows).on_conflict_ignore().as_rowcount().execute()
    if transaction is not None:
        track_energy(transaction, samples)
    return inserted


def track_energy(transaction: Transaction, samples: Iterable[Sample]) -> None:
    """Keep the transaction's start, latest and stop register readings up to date."""
    changed = False
    for sample in sorted((s for s in samples if s.is_energy_register), key=lambda s: s.timestamp):
        if sample.context == "Transaction.Begin" or transaction.meter_start_wh is None:
            transaction.meter_start_wh = sample.value
            changed = True
        if sample.context == "Transaction.End":
            transaction.meter_stop_wh = sample.value
        transaction.meter_last_wh = sample.value
        changed = True
    if changed:
        transaction.save()

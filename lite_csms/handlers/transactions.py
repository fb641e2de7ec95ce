"""Transactions: 1.6 Start/Stop and 2.x TransactionEvent, idempotent under retransmission."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from lite_csms.db.models import Transaction, TransactionEventRecord
from lite_csms.domain import AuthResult, Sample, TransactionEvent
from lite_csms.handlers import reservation, smart_charging
from lite_csms.handlers.authorization import authorize, authorize_for_start
from lite_csms.handlers.meter_values import store_samples


@dataclass(frozen=True, slots=True)
class StartOutcome:
    transaction_id: int
    auth: AuthResult
    duplicate: bool


def start_v16(
    station_id: str, connector_id: int, id_tag: str, meter_start_wh: float, at: datetime,
    reservation_id: int | None,
) -> StartOutcome:
    existing = Transaction.get_or_none(
        Transaction.station == station_id,
        Transaction.station_tx_id.is_null(),
        Transaction.evse_id == connector_id,
        Transaction.id_token == id_tag,
        Transaction.started_at == at,
        Transaction.meter_start_wh == meter_start_wh,
    )
    if existing is not None:
        return StartOutcome(existing.id, AuthResult(existing.auth_status or "Invalid"), True)
    close_orphans(station_id, connector_id, at)
    auth = authorize_for_start(id_tag, at, station_id)
    tx = Transaction.create(
        station=station_id, evse_id=connector_id, connector_id=1 if connector_id else 0,
        id_token=id_tag, auth_status=auth.status, reservation_id=reservation_id,
        started_at=at, meter_start_wh=meter_start_wh, meter_last_wh=meter_start_wh,
    )
    if reservation_id is not None:
        reservation.consume(station_id, reservation_id, tx)
    return StartOutcome(tx.id, auth, False)


def stop_v16(
    station_id: str, transaction_id: int, meter_stop_wh: float, at: datetime,
    reason: str | None, id_tag: str | None, samples: Sequence[Sample],
) -> tuple[Transaction | None, AuthResult | None]:
    """Close a 1.6 transaction. A repeat of the same stop changes nothing."""
    auth = authorize(id_tag, at) if id_tag else None
    tx = Transaction.get_or_none(
        Transaction.id == transaction_id, Transaction.station == station_id
    )
    if tx is None:
        return None, auth
    if tx.stopped_at is None:
        store_samples(station_id, tx.evse_id, samples, tx)
        tx.stopped_at = at
        tx.meter_stop_wh = meter_stop_wh
        tx.meter_last_wh = meter_stop_wh
        tx.stop_reason = reason or "Local"
        tx.save()
        smart_charging.transaction_ended(station_id, str(tx.id))
    return tx, auth


def close_orphans(station_id: str, evse_id: int, at: datetime, keep: int | None = None) -> int:
    """Close transactions a new start on the same EVSE proves over.

    An EVSE runs one transaction at a time, so one still open there lost its stop (a reboot,
    a lost message). Left open it would make its driver's tag ConcurrentTx for ever.
    """
    query = Transaction.update(stopped_at=at, stop_reason="Orphaned").where(
        Transaction.station == station_id, Transaction.evse_id == evse_id,
        Transaction.stopped_at.is_null(), Transaction.started_at <= at,
    )
    if keep is not None:
        query = query.where(Transaction.id != keep)
    return query.execute()


def find_v16(station_id: str, transaction_id: int | None) -> Transaction | None:
    if transaction_id is None:
        return None
    return Transaction.get_or_none(
        Transaction.id == transaction_id, Transaction.station == station_id
    )


@dataclass(frozen=True, slots=True)
class EventOutcome:
    transaction: Transaction
    auth: AuthResult | None
    duplicate: bool


def apply_event(station_id: str, event: TransactionEvent) -> EventOutcome:
    """Apply a 2.x TransactionEvent once; a repeated seqNo only re-reads the answer."""
    auth = None
    if event.id_token is not None:
        if event.id_token_type == "NoAuthorization":
            auth = AuthResult("Accepted")
        else:
            auth = authorize(event.id_token, event.timestamp, unknown_status="Unknown")
    tx, _ = Transaction.get_or_create(
        station=station_id,
        station_tx_id=event.station_tx_id,
        defaults={
            "evse_id": event.evse_id or 0,
            "connector_id": event.connector_id or 0,
            "started_at": event.timestamp,
        },
    )
    seen = TransactionEventRecord.get_or_none(
        TransactionEventRecord.transaction == tx, TransactionEventRecord.seq_no == event.seq_no
    )
    if seen is not None:
        return EventOutcome(tx, auth, True)
    TransactionEventRecord.create(
        transaction=tx, seq_no=event.seq_no, event_type=event.event_type,
        trigger_reason=event.trigger_reason, timestamp=event.timestamp, offline=event.offline,
    )
    _note_seq_no(tx, event.seq_no)
    if event.evse_id is not None and tx.evse_id == 0:
        tx.evse_id = event.evse_id
        tx.connector_id = event.connector_id or tx.connector_id
    if event.event_type == "Started":
        tx.started_at = event.timestamp
        if tx.evse_id:
            close_orphans(station_id, tx.evse_id, event.timestamp, keep=tx.id)
    tx.offline = tx.offline or event.offline
    if event.reservation_id is not None:
        tx.reservation_id = event.reservation_id
        reservation.consume(station_id, event.reservation_id, tx, event.id_token)
    if auth is not None:
        tx.id_token = event.id_token
        tx.auth_status = auth.status
    if event.event_type == "Ended":
        tx.stopped_at = event.timestamp
        tx.stop_reason = event.stopped_reason or "Local"
        smart_charging.transaction_ended(station_id, event.station_tx_id)
    tx.save()
    if event.samples:
        store_samples(station_id, tx.evse_id, event.samples, tx)
    if event.event_type == "Ended" and tx.meter_stop_wh is None and tx.meter_last_wh is not None:
        tx.meter_stop_wh = tx.meter_last_wh
        tx.save()
    return EventOutcome(tx, auth, False)


def _note_seq_no(tx: Transaction, seq_no: int) -> None:
    """Count the seqNos not (yet) seen; a late arrival fills its gap."""
    if tx.last_seq_no is None:
        tx.last_seq_no = seq_no
    elif seq_no > tx.last_seq_no:
        tx.seq_no_gaps += seq_no - tx.last_seq_no - 1
        tx.last_seq_no = seq_no
    elif tx.seq_no_gaps > 0:
        tx.seq_no_gaps -= 1


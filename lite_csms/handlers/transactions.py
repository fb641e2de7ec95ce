"""Transactions: 1.6 Start/Stop/MeterValues and 2.x TransactionEvent, idempotent under retransmits.

Energy comes from all the readings of a transaction (handlers/meter_values.recount, rules in
lite_csms/energy.py), whatever order they arrive in.

No stop is dropped. A message naming a transaction we do not know keeps a transaction marked
`reconstructed` and flagged for review, built from what the message carries: 1.6
StopTransaction or MeterValues with an unknown transactionId (the station's number is kept in
`station_tx_id`, where its retransmits and later messages find it), 2.x TransactionEvent
Updated or Ended before its Started (a Started arriving later fills in the start and clears
the mark). Each outcome carries log lines (`Note`) to write once the store has committed.

A station's own transaction number may name several sessions (`Transaction.generation`): a
2.x transactionId whose Started comes after its session stopped, a 1.6 number the charger
made up (0, -1) stopped twice differently. Our 1.6 ids name only rows we issued. A retransmit
(the same message again) is recognised under any of them and changes nothing; a repeated
StopTransaction whose transactionData carries readings not stored yet adds them and recounts.
Under a station's own 1.6 number a meter value goes to the session whose span [start, stop]
holds its timestamp, and begins another only after the newest session's stop; a reading
stored in any session under that number is a retransmit. A 2.x session ends at its earliest
Ended; a Started beginning another session under the same transactionId takes the earlier
row's events, readings and samples stamped after that end (they arrived before it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lite_csms.db import statements
from lite_csms.db.models import (
    EnergyReading,
    MeterSample,
    Transaction,
    TransactionEventRecord,
    UtcDateTimeField,
)
from lite_csms.domain import AuthResult, Sample, TransactionEvent
from lite_csms.energy import BEGIN, END, Reading, format_wh
from lite_csms.handlers import diagnostics, live_meter, reservation, smart_charging
from lite_csms.handlers.authorization import authorize, authorize_for_start
from lite_csms.handlers.meter_values import (
    SEQ_NO_REUSED,
    Recount,
    add_readings,
    add_review_note,
    recount,
    store_samples,
)

log = logging.getLogger("lite_csms.transactions")

ORPHANED = "Orphaned"

# The statements of the commonest steps (db/statements.py); each does what the peewee query
# it replaced did, on the same indexes.
_STORED = UtcDateTimeField()
_SEEN = ('SELECT e."transaction_id" FROM "transaction_event_record" AS e '
         'JOIN "transaction" AS t ON e."transaction_id" = t."id" '
         'WHERE t."station_id" = ? AND t."station_tx_id" = ? AND e."seq_no" = ? '
         'AND e."event_type" = ? AND e."timestamp" = ? AND e."trigger_reason" = ? LIMIT 1')
_STARTED = ('SELECT t."id", t."auth_status" FROM "transaction" AS t '
            'JOIN "energy_reading" AS r ON r."transaction_id" = t."id" '
            'WHERE t."station_id" = ? AND t."station_tx_id" IS NULL AND t."evse_id" = ? '
            'AND t."id_token" = ? AND t."started_at" = ? '
            'AND r."source" = \'StartTransaction\' AND r."value_wh" = ? LIMIT 1')
_SEQ_NO_KEPT = ('SELECT 1 FROM "transaction_event_record" '
                'WHERE "transaction_id" = ? AND "seq_no" = ? LIMIT 1')
_EVENT_FIELDS = ("transaction", "seq_no", "event_type", "trigger_reason", "timestamp",
                 "offline")
_KEPT_STOP = ('SELECT 1 FROM "energy_reading" WHERE "transaction_id" = ? '
              'AND "source" = \'StopTransaction\' AND "context" = ? AND "timestamp" = ? '
              'AND "value_wh" = ? LIMIT 1')


@dataclass(frozen=True, slots=True)
class Note:
    """A log line about a transaction, written once the store has committed what it tells."""

    level: int
    message: str


def report(notes: Iterable[Note]) -> None:
    for note in notes:
        log.log(note.level, "%s", note.message)


@dataclass(frozen=True, slots=True)
class StartOutcome:
    transaction_id: int
    auth: AuthResult
    duplicate: bool
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True, slots=True)
class StopOutcome:
    transaction: Transaction
    auth: AuthResult | None
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True, slots=True)
class EventOutcome:
    transaction: Transaction
    auth: AuthResult | None
    duplicate: bool
    notes: tuple[Note, ...] = ()


def start_v16(
    station_id: str, connector_id: int, id_tag: str, meter_start_wh: float, at: datetime,
    reservation_id: int | None,
) -> StartOutcome:
    existing = statements.connection(Transaction).execute(_STARTED, (
        station_id, connector_id, id_tag, _STORED.db_value(at), meter_start_wh)).fetchone()
    if existing is not None:
        return StartOutcome(existing[0], AuthResult(existing[1] or "Invalid"), True)
    notes = close_orphans(station_id, connector_id, at)
    auth = authorize_for_start(id_tag, at, station_id)
    tx = Transaction.create(
        station=station_id, evse_id=connector_id, connector_id=1 if connector_id else 0,
        id_token=id_tag, auth_status=auth.status, reservation_id=reservation_id, started_at=at,
    )
    add_readings(tx, [Reading(at, meter_start_wh, BEGIN, "StartTransaction")])
    recount(tx)
    if reservation_id is not None:
        reservation.consume(station_id, reservation_id, tx)
    notes.append(_started(tx))
    return StartOutcome(tx.id, auth, False, tuple(notes))


def stop_v16(
    station_id: str, transaction_id: int, meter_stop_wh: float, at: datetime,
    reason: str | None, id_tag: str | None, samples: Sequence[Sample],
    review_note: str | None = None, payload: dict[str, Any] | None = None,
) -> StopOutcome:
    """Close a 1.6 transaction; an unknown one is reconstructed. A repeat changes nothing.

    `review_note` flags the transaction for review with that reason (e.g. samples left out).
    A stop that differs from the kept one: for a number of the station's own (reconstructed,
    a charger's 0 or -1) it is another session, reconstructed as a row of its own; for a
    transaction we issued it is a conflicting stop: `payload` is kept as received, the
    transaction flagged with both stops, and its energy stays from the first (the one
    acknowledged and billed first; the second cannot be told right from wrong).
    """
    auth = authorize(id_tag, at) if id_tag else None
    notes: list[Note] = []
    tx = find_v16(station_id, transaction_id)
    created = tx is None
    if tx is None:
        tx = _reconstruct(station_id, str(transaction_id), 0, 0, at)
    elif tx.stopped_at is not None and tx.stop_reason != ORPHANED:
        kept = _kept_stop(tx, at, meter_stop_wh)
        if kept is not None:
            return StopOutcome(kept, auth, _repeat_adds(kept, station_id, samples, at))
        if tx.station_tx_id is None:
            notes.extend(_conflicting_stop(tx, meter_stop_wh, at, payload))
            return StopOutcome(tx, auth, tuple(notes))
        tx = _reconstruct(station_id, tx.station_tx_id, 0, 0, at, tx.generation + 1)
        created = True
    replaces_orphaned = tx.stop_reason == ORPHANED
    if tx.reconstructed:
        tx.started_at = min([tx.started_at, at, *(s.timestamp for s in samples)])
    store_samples(station_id, tx.evse_id, samples, tx, source="StopTransaction")
    add_readings(tx, [Reading(at, meter_stop_wh, END, "StopTransaction")])
    tx.stopped_at = at
    tx.stop_reason = reason or "Local"
    if tx.id_token is None and id_tag and auth is not None:
        tx.id_token, tx.auth_status = id_tag, auth.status
    if review_note is not None and add_review_note(tx, review_note):
        notes.append(Note(logging.WARNING, f"{station_id}: transaction {tx.id}: {review_note}"))
    counted = recount(tx)
    smart_charging.transaction_ended(station_id, tx.station_tx_id or str(tx.id))
    notes.extend(_problems(tx, counted))
    if created:
        again = (f" (session {tx.generation + 1} under that number)" if tx.generation else "")
        notes.append(Note(logging.WARNING, (
            f"StopTransaction for unknown transaction {transaction_id}{again} on {station_id}: "
            f"kept as reconstructed transaction {tx.id}, {format_wh(tx.energy_wh)} "
            f"({tx.stop_reason}), flagged for review")))
    else:
        notes.append(_stopped(tx, replaces_orphaned))
    return StopOutcome(tx, auth, tuple(notes))


def _kept_stop(tx: Transaction, at: datetime, meter_stop_wh: float) -> Transaction | None:
    """The row whose kept stop this is (a retransmit): `tx` itself, or for a station's own
    number any session under it."""
    if tx.station_tx_id is None:
        rows = [tx]
    else:
        rows = list(Transaction.select().where(Transaction.station == tx.station_id,
                                               Transaction.station_tx_id == tx.station_tx_id))
    return next((row for row in rows if _is_kept_stop(row, at, meter_stop_wh)), None)


def _repeat_adds(tx: Transaction, station_id: str, samples: Sequence[Sample],
                 at: datetime) -> tuple[Note, ...]:
    """A repeat of the kept stop whose transactionData carries readings not stored yet: they
    are added (once) and the energy recounted; a pure retransmit changes nothing."""
    if not store_samples(station_id, tx.evse_id, samples, tx, source="StopTransaction"):
        return ()
    if tx.reconstructed:
        tx.started_at = min([tx.started_at, at, *(s.timestamp for s in samples)])
    counted = recount(tx)
    return (*_problems(tx, counted), Note(logging.INFO, (
        f"{_name(tx)} on {station_id}: a repeated StopTransaction added transactionData "
        f"not stored before; recounted: {format_wh(tx.energy_wh)}")))


def _conflicting_stop(tx: Transaction, meter_stop_wh: float, at: datetime,
                      payload: dict[str, Any] | None) -> list[Note]:
    first = (f"meterStop {format_wh(tx.meter_stop_wh)} at "
             f"{tx.stopped_at.isoformat(timespec='seconds')}")
    second = f"meterStop {format_wh(meter_stop_wh)} at {at.isoformat(timespec='seconds')}"
    note = (f"conflicting stop: a second StopTransaction ({second}) after the kept one "
            f"({first}); energy counted from the first")
    if not add_review_note(tx, note):
        return []  # a retransmit of the conflicting stop: kept and flagged already
    if payload is not None:
        diagnostics.record_notification(tx.station_id, "StopTransaction", payload, at)
    recount(tx)
    return [Note(logging.WARNING, f"{_name(tx)} on {tx.station_id} flagged for review: {note}")]


def meter_values_v16(
    station_id: str, connector_id: int, transaction_id: int | None,
    samples: Sequence[Sample], first_at: datetime,
) -> tuple[Note, ...]:
    """Store 1.6 MeterValues; an unknown transactionId is reconstructed, never dropped.

    `first_at` is the oldest meterValue timestamp, which a reconstructed transaction starts at
    even when none of its values could be stored.
    """
    notes: list[Note] = []
    tx = find_v16(station_id, transaction_id)
    generation = 0
    if tx is not None and tx.station_tx_id is not None:
        # The station's own number (a charger's 0 or -1) may name several sessions.
        samples = _not_stored_under(station_id, tx.station_tx_id, samples)
        if not samples:
            return ()  # a retransmit: every reading is stored under that number already
        first_at = min(s.timestamp for s in samples)
        tx, generation = _session_at(station_id, tx.station_tx_id, first_at)
    if tx is None and transaction_id is not None:
        tx = _reconstruct(station_id, str(transaction_id), connector_id,
                          1 if connector_id else 0, first_at, generation)
        again = f" (session {generation + 1} under that number)" if generation else ""
        notes.append(Note(logging.WARNING, (
            f"MeterValues for unknown transaction {transaction_id}{again} on {station_id} "
            f"connector {connector_id}: kept as reconstructed transaction {tx.id}, flagged "
            "for review")))
    store_samples(station_id, connector_id, samples, tx)
    if tx is not None:
        if tx.reconstructed and first_at < tx.started_at:
            tx.started_at = first_at
        notes.extend(_problems(tx, recount(tx)))
    return tuple(notes)


def _not_stored_under(station_id: str, station_tx_id: str,
                      samples: Sequence[Sample]) -> list[Sample]:
    """The samples but the energy register readings already stored in any session under the
    station's number: those are retransmits, whichever session holds them."""
    def stored(sample: Sample) -> bool:
        return sample.is_energy_register and EnergyReading.select().join(Transaction).where(
            Transaction.station == station_id, Transaction.station_tx_id == station_tx_id,
            EnergyReading.timestamp == sample.timestamp, EnergyReading.value_wh == sample.value,
            EnergyReading.context == sample.context).exists()
    return [s for s in samples if not stored(s)]


def _session_at(station_id: str, station_tx_id: str,
                at: datetime) -> tuple[Transaction | None, int]:
    """The session under a station's number whose span [start, stop] holds `at`; else, after
    the newest session's stop, none (a new session: the generation to give it); else the
    newest session started by `at` (the first if none)."""
    sessions = list(Transaction.select().where(
        Transaction.station == station_id, Transaction.station_tx_id == station_tx_id,
    ).order_by(Transaction.generation))
    def stopped(tx: Transaction) -> bool:
        return tx.stopped_at is not None and tx.stop_reason != ORPHANED
    holding = [tx for tx in sessions
               if tx.started_at <= at and (not stopped(tx) or at <= tx.stopped_at)]
    if holding:
        return holding[-1], 0
    newest = sessions[-1]
    if stopped(newest) and at > newest.stopped_at:
        return None, newest.generation + 1
    started = [tx for tx in sessions if tx.started_at <= at]
    return (started[-1] if started else sessions[0]), 0


def find_v16(station_id: str, transaction_id: int | None) -> Transaction | None:
    """Ours by id (only rows we issued: station_tx_id NULL), else the newest one
    reconstructed under the station's own number. A reconstructed row is never found by our
    id: that number is ours, not the station's, and could close another session."""
    if transaction_id is None:
        return None
    return statements.first(
        Transaction, 'WHERE "id" = ? AND "station_id" = ? AND "station_tx_id" IS NULL LIMIT 1',
        (transaction_id, station_id)) or _newest(station_id, str(transaction_id))


def _newest(station_id: str, station_tx_id: str) -> Transaction | None:
    return statements.first(
        Transaction, 'WHERE "station_id" = ? AND "station_tx_id" = ? ORDER BY "id" DESC LIMIT 1',
        (station_id, station_tx_id))


def close_orphans(
    station_id: str, evse_id: int, at: datetime, keep: int | None = None
) -> list[Note]:
    """Close transactions a new start on the same EVSE proves over; flag them for review.

    An EVSE runs one transaction at a time, so one still open there lost its stop (a reboot,
    a lost message). Left open it would make its driver's tag ConcurrentTx for ever. Its
    real stop, should it come later, replaces this close.
    """
    query = Transaction.select().where(
        Transaction.station == station_id, Transaction.evse_id == evse_id,
        Transaction.stopped_at.is_null(), Transaction.started_at <= at,
    )
    if keep is not None:
        query = query.where(Transaction.id != keep)
    notes = []
    for tx in query:
        tx.stopped_at = at
        tx.stop_reason = ORPHANED
        recount(tx)
        energy = ("energy unknown" if tx.energy_wh is None
                  else f"energy {format_wh(tx.energy_wh)}")
        notes.append(Note(logging.WARNING, (
            f"transaction {tx.id} on {station_id} evse {evse_id} closed as Orphaned: a new "
            f"transaction started there at {at.isoformat()} before its stop arrived; "
            f"{energy}, flagged for review")))
    return notes


def apply_event(station_id: str, event: TransactionEvent) -> EventOutcome:
    """Apply a 2.x TransactionEvent once; a retransmit only re-reads the answer.

    A retransmit is the same event again: same transactionId, seqNo, eventType, timestamp
    and triggerReason, under any session of that transactionId. Anything else is applied:
    - a seqNo the session already has, for a different event, is kept as a new event, the
      session flagged `seqNo reused` (one WARNING each) and its readings ordered by time;
    - a Started stamped after the session under that transactionId stopped begins a new
      session (a row of its own, the next `generation`), flagged `transactionId reused`;
    - any other event goes to the newest session under that id that had started by the
      event's timestamp (else the first); an Ended later than the session's own Ended does
      not move its stop (the later session's Started takes it over).
    """
    auth = None
    if event.id_token is not None:
        if event.id_token_type == "NoAuthorization":
            auth = AuthResult("Accepted")
        else:
            auth = authorize(event.id_token, event.timestamp, unknown_status="Unknown")
    notes: list[Note] = []
    seen = statements.connection(TransactionEventRecord).execute(_SEEN, (
        station_id, event.station_tx_id, event.seq_no, event.event_type,
        _STORED.db_value(event.timestamp), event.trigger_reason)).fetchone()
    if seen is not None:
        kept = statements.first(Transaction, 'WHERE "id" = ?', seen)
        assert kept is not None  # the event's foreign key holds it
        return EventOutcome(kept, auth, True)
    tx = _session_of(station_id, event)
    reused_id = None
    if (tx is not None and event.event_type == "Started" and tx.stopped_at is not None
            and event.timestamp > tx.stopped_at):
        reused_id, tx = tx, None
    created = tx is None and event.event_type != "Started"
    if tx is None:
        tx = Transaction.create(
            station=station_id, station_tx_id=event.station_tx_id,
            evse_id=event.evse_id or 0, connector_id=event.connector_id or 0,
            started_at=event.timestamp, reconstructed=created,
            generation=0 if reused_id is None else reused_id.generation + 1,
        )
        if reused_id is not None:
            notes.extend(_move_after_end(reused_id, tx))
    reused_seq = statements.connection(TransactionEventRecord).execute(
        _SEQ_NO_KEPT, (tx.id, event.seq_no)).fetchone() is not None
    statements.insert(TransactionEventRecord, _EVENT_FIELDS, [
        (tx.id, event.seq_no, event.event_type, event.trigger_reason,
         _STORED.db_value(event.timestamp), event.offline)])
    if reused_seq:
        notes.append(_flag(tx, (
            f"seqNo reused: seqNo {event.seq_no} came again with another event ("
            f"{event.event_type} at {event.timestamp.isoformat(timespec='seconds')}, "
            f"{event.trigger_reason}); readings ordered by time")))
    else:
        _note_seq_no(tx, event.seq_no)
    if reused_id is not None:
        notes.append(_flag(tx, (
            f"transactionId reused: {event.station_tx_id} named an earlier session "
            f"(transaction {reused_id.id}, stopped "
            f"{reused_id.stopped_at.isoformat(timespec='seconds')}); this Started at "
            f"{event.timestamp.isoformat(timespec='seconds')} begins another")))
    if event.evse_id is not None and tx.evse_id == 0:
        tx.evse_id = event.evse_id
        tx.connector_id = event.connector_id or tx.connector_id
    filled = event.event_type == "Started" and tx.reconstructed
    replaces_orphaned = event.event_type == "Ended" and tx.stop_reason == ORPHANED
    if event.event_type == "Started":
        # A Started completes a reconstructed session; a second one (a reused seqNo) never
        # moves the start later.
        tx.started_at = (event.timestamp if tx.reconstructed
                         else min(tx.started_at, event.timestamp))
        tx.reconstructed = False
        if tx.evse_id:
            notes.extend(close_orphans(station_id, tx.evse_id, event.timestamp, keep=tx.id))
    elif tx.reconstructed and event.timestamp < tx.started_at:
        tx.started_at = event.timestamp
    tx.offline = tx.offline or event.offline
    if event.reservation_id is not None:
        tx.reservation_id = event.reservation_id
        reservation.consume(station_id, event.reservation_id, tx, event.id_token)
    # The session belongs to the token that started it, not to one that stopped it.
    if auth is not None and (event.event_type == "Started" or tx.id_token is None):
        tx.id_token = event.id_token
        tx.auth_status = auth.status
    if event.event_type == "Ended" and (tx.stopped_at is None or tx.stop_reason == ORPHANED
                                        or event.timestamp < tx.stopped_at):
        # A session ends at its earliest Ended: a later one belongs to a later session under
        # the same transactionId, which its Started (if still to come) takes it to.
        tx.stopped_at = event.timestamp
        tx.stop_reason = event.stopped_reason or "Local"
        smart_charging.transaction_ended(station_id, event.station_tx_id)
    statements.save(tx)
    _store_event_samples(station_id, tx, event)
    notes.extend(_problems(tx, recount(tx)))
    if created:
        ended = f", {format_wh(tx.energy_wh)} ({tx.stop_reason})" if tx.stopped_at else ""
        notes.append(Note(logging.WARNING, (
            f"TransactionEvent {event.event_type} for unknown transaction "
            f"{event.station_tx_id} on {station_id}: kept as reconstructed transaction "
            f"{tx.id}{ended} until its Started arrives, flagged for review")))
    elif event.event_type == "Started":
        notes.append(_started(tx, filled))
    elif event.event_type == "Ended":
        notes.append(_stopped(tx, replaces_orphaned))
    return EventOutcome(tx, auth, False, tuple(notes))


def _move_after_end(earlier: Transaction, later: Transaction) -> list[Note]:
    """Move the events, readings and samples of `earlier` stamped after its Ended to `later`,
    a new session under the same transactionId (they arrived before its Started); recount
    both. `later` takes its stop from a moved Ended."""
    end = earlier.stopped_at
    moved = list(earlier.events.where(TransactionEventRecord.timestamp > end))
    if not moved and not earlier.readings.where(EnergyReading.timestamp > end).exists():
        return []
    for model in (TransactionEventRecord, EnergyReading, MeterSample):
        model.update(transaction=later).where(model.transaction == earlier,
                                              model.timestamp > end).execute()
    ends = [e.timestamp for e in moved if e.event_type == "Ended"]
    if ends:
        # The stoppedReason of an event is not kept apart: the earlier row's is the best left.
        later.stopped_at, later.stop_reason = min(ends), earlier.stop_reason
    later.offline = later.offline or any(e.offline for e in moved)
    seqs = [e.seq_no for e in earlier.events]
    if len(seqs) == len(set(seqs)):
        # The reused seqNo was the later session's: the earlier one keeps its seqNo order.
        earlier.review_note = "\n".join(
            n for n in (earlier.review_note or "").splitlines()
            if not n.startswith(SEQ_NO_REUSED)) or None
    later.save()
    return _problems(earlier, recount(earlier))


def _session_of(station_id: str, event: TransactionEvent) -> Transaction | None:
    """The session under the event's transactionId it belongs to (apply_event's rules)."""
    sessions = statements.rows(
        Transaction, 'WHERE "station_id" = ? AND "station_tx_id" = ? ORDER BY "generation" DESC',
        (station_id, event.station_tx_id))
    if not sessions:
        return None
    return next((tx for tx in sessions if tx.started_at <= event.timestamp), sessions[-1])


def _flag(tx: Transaction, note: str) -> Note:
    add_review_note(tx, note)
    return Note(logging.WARNING, f"{_name(tx)} on {tx.station_id} flagged for review: {note}")


def _store_event_samples(station_id: str, tx: Transaction, event: TransactionEvent) -> None:
    """An Ended event also carries the samples taken during the session (2.0.1
    SampledDataCtrlr.TxEndedMeasurands every TxEndedInterval). Those are ordered by their own
    timestamps among the session's events, not after them all: under the Ended's seqNo a
    sample from the first hour would follow a triggered or Updated reading of the second and
    look like a register going backwards."""
    if event.event_type != "Ended":
        store_samples(station_id, tx.evse_id, event.samples, tx, source=event.event_type,
                      seq_no=event.seq_no)
        return
    closing = [s for s in event.samples
               if s.context in (END, "") or s.timestamp >= event.timestamp]
    store_samples(station_id, tx.evse_id, closing, tx, source="Ended", seq_no=event.seq_no)
    by_time: dict[datetime, list[Sample]] = {}
    for sample in event.samples:
        if not (sample.context in (END, "") or sample.timestamp >= event.timestamp):
            by_time.setdefault(sample.timestamp, []).append(sample)
    for at, group in by_time.items():
        store_samples(station_id, tx.evse_id, group, tx, source="Ended",
                      seq_no=live_meter.seq_no_at(tx, at))


def _reconstruct(station_id: str, station_tx_id: str, evse_id: int, connector_id: int,
                 started_at: datetime, generation: int = 0) -> Transaction:
    return Transaction.create(
        station=station_id, station_tx_id=station_tx_id, evse_id=evse_id,
        connector_id=connector_id, started_at=started_at, reconstructed=True,
        generation=generation,
    )


def _is_kept_stop(tx: Transaction, at: datetime, meter_stop_wh: float) -> bool:
    return statements.connection(EnergyReading).execute(
        _KEPT_STOP, (tx.id, END, _STORED.db_value(at), meter_stop_wh)).fetchone() is not None


def _name(tx: Transaction) -> str:
    if tx.station_tx_id is None:
        return f"transaction {tx.id}"
    return f"transaction {tx.id} ({tx.station_tx_id})"


def _started(tx: Transaction, filled: bool = False) -> Note:
    # A Started that arrives after later events completes a reconstructed transaction.
    late = ""
    if filled:
        late = "; it arrived after later events and completes the reconstructed transaction"
        if tx.stopped_at is not None:
            late += f" (stopped: {format_wh(tx.energy_wh)})"
    return Note(logging.INFO, (
        f"{_name(tx)} started on {tx.station_id} evse {tx.evse_id} by "
        f"{tx.id_token or 'no id token'}{late}"))


def _stopped(tx: Transaction, replaces_orphaned: bool) -> Note:
    review = f"; REVIEW: {tx.review}" if tx.review else ""
    late = "; its stop replaces the Orphaned close" if replaces_orphaned else ""
    return Note(logging.INFO, (
        f"{_name(tx)} stopped on {tx.station_id} evse {tx.evse_id}: "
        f"{format_wh(tx.energy_wh)} ({tx.stop_reason}){late}{review}"))


def _problems(tx: Transaction, counted: Recount) -> list[Note]:
    return [Note(logging.WARNING, f"{_name(tx)} on {tx.station_id} flagged for review: {p}")
            for p in counted.new_problems]


def _note_seq_no(tx: Transaction, seq_no: int) -> None:
    """Count the seqNos not (yet) seen; a late arrival fills its gap."""
    if tx.last_seq_no is None:
        tx.last_seq_no = seq_no
    elif seq_no > tx.last_seq_no:
        tx.seq_no_gaps += seq_no - tx.last_seq_no - 1
        tx.last_seq_no = seq_no
    elif tx.seq_no_gaps > 0:
        tx.seq_no_gaps -= 1

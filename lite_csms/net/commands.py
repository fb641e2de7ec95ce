"""Sending CSMS-initiated CALLs to stations, now or when they next connect.

Each command is written to the command log before it is sent and updated with its outcome,
so the operator can always see what was asked, by whom, and what the charger said. A
password sent to a station is logged redacted (operations/secret.py).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import peewee as pw
import trio

from lite_csms.budget import memory
from lite_csms.db.reader import StoreReader
from lite_csms.db.writer import StoreWriter
from lite_csms.handlers import commands as log_
from lite_csms.net.connection import StationConnection
from lite_csms.ocppj import timestamps
from lite_csms.ocppj.session import CallAnswered, CallFailed, InvalidOutbound
from lite_csms.operations import effects, secret
from lite_csms.operations.catalogue import Request

log = logging.getLogger("lite_csms.commands")

DEFAULT_QUEUE_TTL = timedelta(hours=1)


class StationOffline(Exception):
    """The station is not connected and queueing was not asked for."""


class StationNotReady(StationOffline):
    """The station is connected but has not sent a message on this connection yet.

    OCPP has the CSMS wait for the station to speak first, so the command is refused like an
    offline one, or queued and sent once the station is accepted on this connection.
    """


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    command_id: int
    # answered, error, timeout, queued
    status: str
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error_description: str | None = None
    # The station answered, but the answer failed the checks an inbound message gets.
    invalid_answer: bool = False


class CommandSender:
    def __init__(self, store: StoreWriter, connections: Mapping[str, StationConnection],
                 reader: StoreReader | None = None) -> None:
        self._store = store
        self._connections = connections
        # Whether a station has anything queued is read beside the writer (db/reader.py);
        # `_queueing` counts, per station, queued rows submitted but not yet committed,
        # which that read cannot see yet.
        self._reader = reader
        self._queueing: dict[str, int] = {}

    async def send(
        self, station_id: str, action: str, payload: dict[str, Any], *, requested_by: str,
        queue: bool = False, ttl: timedelta = DEFAULT_QUEUE_TTL,
    ) -> CommandOutcome:
        now = timestamps.now_utc()
        connection = self._connections.get(station_id)
        # No await between this check and the queued row's submission: a connection that
        # becomes ready meanwhile takes its queue in a later store job, so it sees the row.
        if connection is None or not connection.spoke.is_set():
            status = "queued" if queue else "offline"
            self._queueing[station_id] = self._queueing.get(station_id, 0) + 1
            try:
                command_id = await self._store.run(partial(
                    log_.create, station_id, action, payload, requested_by, status, now,
                    ttl if queue else None))
            finally:
                if (left := self._queueing.pop(station_id) - 1) > 0:
                    self._queueing[station_id] = left
            if not queue and connection is not None:
                raise StationNotReady(f"station {station_id} is connected but has not sent "
                                      "its first message yet")
            if not queue:
                raise StationOffline(f"station {station_id} is not connected")
            log.info("%s: %s queued as command %d", station_id, action, command_id)
            return CommandOutcome(command_id, "queued")
        return await self.send_on(connection, action, payload, requested_by=requested_by)

    async def send_on(self, connection: StationConnection, action: str,
                      payload: dict[str, Any], *, requested_by: str) -> CommandOutcome:
        """Log and send on this very connection (not a newer one that replaced it), which
        must have spoken; the answer is recorded as for send()."""
        command_id = await self._store.run(partial(
            log_.create, connection.station_id, action, secret.redacted(action, payload),
            requested_by, "sent", timestamps.now_utc()))
        return await self._deliver(connection, command_id, action, payload)

    async def send_each_on(
        self, connection: StationConnection, requests: Sequence[Request], *,
        requested_by: str, stop: Callable[[CommandOutcome], bool] = lambda _: False,
    ) -> list[CommandOutcome]:
        """Send `requests` one after the other on this connection, each logged and its answer
        recorded as send_on does, but in two store jobs instead of two per request: all are
        logged before the first goes out, and every outcome is recorded in one job after the
        last answer (or as soon as the connection ends). A 1.6 station's first boot (six
        ChangeConfiguration from the budget policy) costs two group-commit jobs, not twelve.
        After an outcome for which `stop` is true nothing more is sent; a request never sent
        leaves no row, as with send_on. Returns the outcomes of the requests sent, in order.
        A crash before the last answer leaves the rows `sent` without an outcome."""
        if any(effects.recorded_before_sending(r.action) for r in requests):
            # Their follow-ups name them before the answer lands: one at a time, as send_on.
            found = []
            for request in requests:
                found.append(await self.send_on(connection, request.action, request.payload,
                                                requested_by=requested_by))
                if stop(found[-1]):
                    break
            return found
        if not requests:
            return []
        station_id = connection.station_id
        ids = await self._store.run(partial(
            _create_all, station_id, requests, requested_by, timestamps.now_utc()))
        outcomes: list[CommandOutcome] = []
        try:
            for command_id, request in zip(ids, requests, strict=True):
                # Recorded as ended if the connection ends (this task cancelled) mid-call.
                outcomes.append(_closed(command_id))
                outcomes[-1] = await self._call(connection, command_id, request.action,
                                                request.payload)
                if stop(outcomes[-1]):
                    break
        finally:
            with trio.CancelScope(shield=True):
                await self._store.run(partial(_record_all, station_id, ids, requests,
                                              outcomes, requested_by))
        return outcomes

    async def deliver_queued(self, connection: StationConnection) -> int:
        """Send what waited for this station, oldest first; return how many were sent."""
        if not self._may_have_queued(connection.station_id):
            return 0  # the usual case, found without a store job at every connection
        due = await self._store.run(
            partial(log_.take_due, connection.station_id, timestamps.now_utc()))
        for command_id, action, payload in due:
            await self._store.run(partial(log_.mark_sent, command_id, timestamps.now_utc()))
            outcome = await self._deliver(connection, command_id, action, payload)
            log.info("%s: queued command %d (%s) %s", connection.station_id, command_id, action,
                     outcome.status)
        return len(due)

    def _may_have_queued(self, station_id: str) -> bool:
        """False only when the committed log holds no queued row for the station and none
        is on its way to the writer: take_due (which also expires stale rows) has nothing
        to do then."""
        if self._reader is None or self._queueing.get(station_id):
            return True
        try:
            return self._reader.run(partial(log_.has_queued, station_id))
        except (sqlite3.Error, pw.DatabaseError) as exc:
            log.warning("%s: queued commands unread beside the writer: %s", station_id, exc)
            return True

    async def _deliver(
        self, connection: StationConnection, command_id: int, action: str,
        payload: dict[str, Any],
    ) -> CommandOutcome:
        # If the connection ends mid-call this task is cancelled; the log must still say so.
        outcome = _closed(command_id)
        try:
            if effects.recorded_before_sending(action):
                await self._store.run(partial(
                    effects.before_send, connection.station_id, command_id,
                    Request(action, payload), timestamps.now_utc()))
            outcome = await self._call(connection, command_id, action, payload)
        finally:
            with trio.CancelScope(shield=True):
                await self._store.run(partial(
                    _record, connection.station_id, command_id, Request(action, payload),
                    outcome))
        return outcome

    @staticmethod
    async def _call(connection: StationConnection, command_id: int, action: str,
                    payload: dict[str, Any]) -> CommandOutcome:
        """The CALL on the wire and its answer as an outcome; recorded by the caller."""
        try:
            answer = await connection.call(action, payload)
        except InvalidOutbound as exc:
            return CommandOutcome(command_id, "error", None, "InvalidRequest", str(exc))
        outcome = _outcome(command_id, answer)
        if outcome.invalid_answer:
            log.warning("%s: command %d: the answer to %s was refused: %s %s",
                        connection.station_id, command_id, action, outcome.error_code,
                        (outcome.error_description or "")[:200])
        return outcome


def _closed(command_id: int) -> CommandOutcome:
    return CommandOutcome(command_id, "error", None, "ConnectionClosed",
                          "the connection ended before an answer arrived")


def _create_all(station_id: str, requests: Sequence[Request], requested_by: str,
                at: datetime) -> list[int]:
    return [log_.create(station_id, r.action, secret.redacted(r.action, r.payload),
                        requested_by, "sent", at) for r in requests]


def _record_all(station_id: str, ids: Sequence[int], requests: Sequence[Request],
                outcomes: Sequence[CommandOutcome], requested_by: str) -> None:
    """Each sent request's outcome in order, as _record; the rows of those never sent go.
    `requested_by` is the one the rows were logged with."""
    # Whether the station has refusals to forget is read once, not twice per accepted
    # setting (a first boot: seven); a refusal recorded on the way makes it true again.
    known: bool | None = None
    if any(r.action in memory.SETTING_ACTIONS for r in requests):
        known = memory.has_refusals(station_id)
    for command_id, request, outcome in zip(ids, requests, outcomes, strict=False):
        if _record(station_id, command_id, request, outcome, requested_by, known):
            known = True
    log_.forget(ids[len(outcomes):])


def _record(station_id: str, command_id: int, request: Request, outcome: CommandOutcome,
            requested_by: str | None = None, refusals_exist: bool | None = None) -> bool:
    """The outcome in the log and what it means (effects.apply); `requested_by` None: read
    from the log. Returns whether a setting refusal was recorded."""
    now = timestamps.now_utc()
    log_.finish(command_id, outcome.status, now, outcome.result, outcome.error_code,
                outcome.error_description)
    if secret.writes_secret(request.action, request.payload):
        # A queued password waited in the log as it must be sent; once sent it goes.
        request = Request(request.action, secret.redacted(request.action, request.payload))
        log_.redact(command_id, request.payload)
    answer = outcome.result if outcome.status == "answered" else None
    if requested_by is None:
        return effects.apply(station_id, request, answer, now, command_id)
    return effects.apply(station_id, request, answer, now, command_id, requested_by,
                         refusals_exist)


def _outcome(command_id: int, answer: CallAnswered | CallFailed) -> CommandOutcome:
    if isinstance(answer, CallAnswered):
        return CommandOutcome(command_id, "answered", answer.payload)
    status = "timeout" if answer.timed_out else "error"
    return CommandOutcome(command_id, status, answer.details or None, answer.code,
                          answer.description, answer.invalid_answer)

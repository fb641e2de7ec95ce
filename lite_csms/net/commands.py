"""Sending CSMS-initiated CALLs to stations, now or when they next connect.

Each command is written to the command log before it is sent and updated with its outcome,
so the operator can always see what was asked, by whom, and what the charger said. A
password sent to a station is logged redacted (operations/secret.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import trio

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
    def __init__(self, store: StoreWriter, connections: Mapping[str, StationConnection]) -> None:
        self._store = store
        self._connections = connections

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
            command_id = await self._store.run(partial(
                log_.create, station_id, action, payload, requested_by, status, now,
                ttl if queue else None))
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

    async def deliver_queued(self, connection: StationConnection) -> int:
        """Send what waited for this station, oldest first; return how many were sent."""
        due = await self._store.run(
            partial(log_.take_due, connection.station_id, timestamps.now_utc()))
        for command_id, action, payload in due:
            await self._store.run(partial(log_.mark_sent, command_id, timestamps.now_utc()))
            outcome = await self._deliver(connection, command_id, action, payload)
            log.info("%s: queued command %d (%s) %s", connection.station_id, command_id, action,
                     outcome.status)
        return len(due)

    async def _deliver(
        self, connection: StationConnection, command_id: int, action: str,
        payload: dict[str, Any],
    ) -> CommandOutcome:
        # If the connection ends mid-call this task is cancelled; the log must still say so.
        outcome = CommandOutcome(command_id, "error", None, "ConnectionClosed",
                                 "the connection ended before an answer arrived")
        try:
            if effects.recorded_before_sending(action):
                await self._store.run(partial(
                    effects.before_send, connection.station_id, command_id,
                    Request(action, payload), timestamps.now_utc()))
            answer = await connection.call(action, payload)
        except InvalidOutbound as exc:
            outcome = CommandOutcome(command_id, "error", None, "InvalidRequest", str(exc))
        else:
            outcome = _outcome(command_id, answer)
            if outcome.invalid_answer:
                log.warning("%s: command %d: the answer to %s was refused: %s %s",
                            connection.station_id, command_id, action, outcome.error_code,
                            (outcome.error_description or "")[:200])
        finally:
            with trio.CancelScope(shield=True):
                await self._store.run(partial(
                    _record, connection.station_id, command_id, Request(action, payload),
                    outcome))
        return outcome


def _record(station_id: str, command_id: int, request: Request, outcome: CommandOutcome
            ) -> None:
    now = timestamps.now_utc()
    log_.finish(command_id, outcome.status, now, outcome.result, outcome.error_code,
                outcome.error_description)
    if secret.writes_secret(request.action, request.payload):
        # A queued password waited in the log as it must be sent; once sent it goes.
        request = Request(request.action, secret.redacted(request.action, request.payload))
        log_.redact(command_id, request.payload)
    effects.apply(station_id, request,
                  outcome.result if outcome.status == "answered" else None, now, command_id)


def _outcome(command_id: int, answer: CallAnswered | CallFailed) -> CommandOutcome:
    if isinstance(answer, CallAnswered):
        return CommandOutcome(command_id, "answered", answer.payload)
    status = "timeout" if answer.timed_out else "error"
    return CommandOutcome(command_id, status, answer.details or None, answer.code,
                          answer.description, answer.invalid_answer)

"""The budget policy: keep each station's settings at its level, and move it between levels.

A station's level lives in SQLite (StationBudget). When the station is accepted on a
connection (its BootNotification Accepted, or its first message after a reconnect without a
boot), the policy sends only the settings the station does not already hold, so a reconnect
costs nothing extra. Every move between levels is logged with its reason and the station's answers.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import trio

from lite_csms.budget import levels, usage
from lite_csms.config import Settings
from lite_csms.db.models import PolicyChange, StationBudget
from lite_csms.db.writer import StoreWriter
from lite_csms.handlers import settings as station_settings
from lite_csms.net.commands import CommandSender
from lite_csms.net.connection import StationConnection
from lite_csms.ocppj import timestamps
from lite_csms.operations import catalogue

log = logging.getLogger("lite_csms.budget")
REQUESTED_BY = "budget-policy"


@dataclass(frozen=True, slots=True)
class Move:
    from_level: str
    to_level: str
    reason: str
    cycle_start: datetime
    nat_timeout: int


def decide(station_id: str, settings: Settings, now: datetime) -> Move | None:
    """Where the station's projection says it should be; None to stay.

    Within a cycle the policy only tightens: relaxing as soon as the lean settings bring the
    projection down would swing the station back and forth. A new cycle restores normal.
    """
    budget = usage.effective_budget(station_id, settings)
    if not budget.policy_enabled:
        return None
    current = usage.station_usage(station_id, settings, now)
    row = StationBudget.get_or_none(StationBudget.station == station_id)
    held_since = None if row is None else row.level_cycle_start
    if held_since is not None and held_since < current.cycle_start:
        if budget.level != levels.NORMAL:
            day = current.cycle_start.date().isoformat()
            return Move(budget.level, levels.NORMAL, f"a new billing cycle started on {day}",
                        current.cycle_start, budget.nat_timeout)
    level, reason = levels.choose(current.used, current.projected, current.cap,
                                  budget.warn_ratio)
    if levels.LEVELS.index(level) > levels.LEVELS.index(budget.level):
        return Move(budget.level, level, reason, current.cycle_start, budget.nat_timeout)
    return None


def record_move(station_id: str, from_level: str, to_level: str, reason: str,
                cycle_start: datetime | None, at: datetime) -> int:
    """Set the station's level and log the move; returns the log row's id."""
    StationBudget.insert(station=station_id, level=to_level, level_cycle_start=cycle_start,
                         updated_at=at).on_conflict(
        conflict_target=[StationBudget.station],
        update={StationBudget.level: to_level, StationBudget.level_cycle_start: cycle_start,
                StationBudget.updated_at: at}).execute()
    change = PolicyChange.create(station=station_id, at=at, from_level=from_level,
                                 to_level=to_level, reason=reason, settings="[]")
    return int(change.id)


def record_outcomes(change_id: int, outcomes: list[dict[str, Any]]) -> None:
    """Attach what the station answered to the policy change that caused it."""
    (PolicyChange.update(settings=json.dumps(outcomes))
     .where(PolicyChange.id == change_id).execute())


def missing(wanted: Mapping[str, str], held: Mapping[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in wanted.items() if held.get(key) != value}


def set_server_keepalive(connection: StationConnection, nat_timeout: int) -> None:
    """TCP keepalive only after a NAT timeout of silence: pings normally come first, so
    probes go out only when the link has really gone quiet, to find a dead peer."""
    sock = None if connection.meter is None else connection.meter.sock
    if sock is None or not hasattr(socket, "TCP_KEEPIDLE"):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, nat_timeout))
    except OSError as exc:
        log.info("%s: cannot set keepalive: %s", connection.station_id, exc)


class BudgetPolicy:
    def __init__(self, store: StoreWriter, settings: Settings, commands: CommandSender,
                 clock: Callable[[], datetime] = timestamps.now_utc) -> None:
        self._store = store
        self._settings = settings
        self._commands = commands
        self._clock = clock

    async def heartbeat_for(self, station_id: str) -> int | None:
        budget = await self._store.run(
            partial(usage.effective_budget, station_id, self._settings))
        return levels.heartbeat_for(budget.level) if budget.policy_enabled else None

    async def on_accepted(self, connection: StationConnection) -> None:
        """Bring a freshly accepted station to its level's settings (a new cycle's first)."""
        station_id = connection.station_id
        budget = await self._store.run(
            partial(usage.effective_budget, station_id, self._settings))
        if not budget.policy_enabled:
            return
        set_server_keepalive(connection, budget.nat_timeout)
        if not await self.evaluate_one(station_id, connection):
            await self.apply(connection, budget.level, budget.nat_timeout)

    async def evaluate_one(self, station_id: str, connection: StationConnection | None
                           ) -> bool:
        """Move the station if its projection says so; True when it moved."""
        move = await self._store.run(partial(decide, station_id, self._settings,
                                             self._clock()))
        if move is None:
            return False
        await self.move(connection, station_id, move)
        return True

    async def run(self, connections: Mapping[str, StationConnection], interval: float
                  ) -> None:
        while True:
            await trio.sleep(interval)
            for station_id, connection in list(connections.items()):
                # A station that has not booted (or spoken) on this connection gets nothing
                # yet: the move is recorded, and on_accepted applies the level later.
                ready = connection if connection.accepted.is_set() else None
                try:
                    await self.evaluate_one(station_id, ready)
                except Exception as exc:  # one station's failure must not stop the others
                    log.exception("%s: budget policy failed: %s", station_id, exc)

    async def apply(self, connection: StationConnection, level: str, nat_timeout: int
                    ) -> list[dict[str, Any]]:
        station_id, version = connection.station_id, connection.ctx.version
        connection.ctx.heartbeat_interval = levels.heartbeat_for(level)
        wanted = levels.settings_for(level, version, nat_timeout)
        held = await self._store.run(partial(station_settings.read, station_id))
        outcomes: list[dict[str, Any]] = []
        for request in catalogue.set_configs(version, missing(wanted, held)):
            outcome = await self._commands.send(station_id, request.action, request.payload,
                                                requested_by=REQUESTED_BY)
            outcomes.append({"action": request.action, "payload": request.payload,
                             "status": outcome.status, "result": outcome.result,
                             "error": outcome.error_code})
        if outcomes:
            log.info("%s: policy level %s applied (%d requests)", station_id, level,
                     len(outcomes))
        return outcomes

    async def move(self, connection: StationConnection | None, station_id: str, move: Move
                   ) -> None:
        change_id = await self._store.run(partial(
            record_move, station_id, move.from_level, move.to_level, move.reason,
            move.cycle_start, self._clock()))
        log.info("%s: budget policy %s -> %s: %s", station_id, move.from_level, move.to_level,
                 move.reason)
        if connection is not None:
            outcomes = await self.apply(connection, move.to_level, move.nat_timeout)
            await self._store.run(partial(record_outcomes, change_id, outcomes))

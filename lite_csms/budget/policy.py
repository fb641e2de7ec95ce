"""The budget policy: keep each station's settings at its level, and move it between levels.

A station's level lives in SQLite (StationBudget). When the station is accepted on a
connection (its BootNotification Accepted, or its first message after a reconnect without a
boot; never before), the policy decides each setting of its level (`plan`):

- **yielded** when an operator owns it (`config set`; see budget/memory.py) or, for the
  heartbeat, when `heartbeat_interval` is set in the server's configuration;
- **skipped** when the station already holds the value, or refused every value the level
  offers for it under its current firmware;
- **sent** otherwise: the first value of the level's choices the station has not refused.
  A refusal is remembered, and the next choice (a fallback) is sent on the same connection.

Then it sets the server's TCP keepalive: at 0.9 x `nat_timeout` when the station's own
WebSocket ping is off (or unknown), so that probes hold the NAT mapping; back at the
dead-peer default when the station pings often enough itself. Every move between levels, and
every application that sent something, is logged with each setting's outcome and reason.
"""

from __future__ import annotations

import json
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from lite_csms.ascii_digits import digits
from lite_csms.budget import levels, memory, usage
from lite_csms.config import Settings
from lite_csms.db import reader as db_reader
from lite_csms.db import statements
from lite_csms.db.models import (
    PolicyChange,
    SettingRefusal,
    Station,
    StationBudget,
    StationSetting,
)
from lite_csms.ocppj import timestamps
from lite_csms.ocppj.versions import Version
from lite_csms.operations import catalogue

if TYPE_CHECKING:
    # Annotations only: the CLI reads plans from here without loading the network stack.
    from lite_csms.budget.precedence import BootsFirst
    from lite_csms.db.writer import StoreWriter
    from lite_csms.net.commands import CommandOutcome, CommandSender
    from lite_csms.net.connection import StationConnection

log = logging.getLogger("lite_csms.budget")
T = TypeVar("T")
REQUESTED_BY = memory.POLICY
SENT, SKIPPED, YIELDED = "sent", "skipped", "yielded"
# One round per fallback value a setting may have, and no more.
MAX_ROUNDS = 3
# Stations whose settings are settled at once after they are accepted. After a burst a
# thousand stations are released together (precedence.py); all their round trips in flight
# at once raised the server's RSS by about 18 KiB per station for good (freed objects leave
# Python's arenas partly used; docs/PERFORMANCE.md, "Memory per station"). What is left is
# about the round trips in flight (about 17 KiB each, tools/memory_audit.py
# --hold-settings): with 25 a fleet's first boot leaves 0.5-1 KiB less per station than
# with 100 at 1,000 stations, and settling 1,000 stations over a link with a 0.5 s round
# trip takes about 140 s instead of 35, once. A station holds its place for one
# call_timeout at most, so silent stations delay the others by that much.
SETTINGS_AT_ONCE = 25
_FIRMWARE = ('SELECT "firmware_version", "previous_firmware_version", "firmware_changed_at" '
             'FROM "station" WHERE "id" = ?')
_CHANGE_FIELDS = ("station", "at", "from_level", "to_level", "reason", "settings")


@dataclass(frozen=True, slots=True)
class Move:
    from_level: str
    to_level: str
    reason: str
    cycle_start: datetime
    nat_timeout: int


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy does with one setting: `outcome` sent, skipped or yielded, and why.
    `value` is the value chosen (the operator's, when yielded; None when all were refused)."""

    key: str
    value: str | None
    outcome: str
    reason: str
    status: str | None = None

    def as_dict(self) -> dict[str, Any]:
        # Seven per first boot, logged and kept: the fields by hand, not dataclasses.asdict's
        # recursive copy (all are flat strings).
        found: dict[str, Any] = {"key": self.key, "value": self.value,
                                 "outcome": self.outcome, "reason": self.reason}
        if self.status is not None:
            found["status"] = self.status
        return found


@dataclass(frozen=True, slots=True)
class StationState:
    held: Mapping[str, str | None]
    refused: Mapping[tuple[str, str], Mapping[str, Any]]
    owned: Mapping[str, Mapping[str, Any]]
    # Keys whose held value or refusal predates the station's last firmware change, and how
    # that change reads ("firmware changed from 1.0 to 1.1"): they are sent again once.
    renewed: frozenset[str] = frozenset()
    firmware_note: str = ""


def read_state(station_id: str) -> StationState:
    """What the station holds, refused and had set by an operator. After a firmware change
    a setting held before it counts as not held (the update may have reset it), and refusals
    made under the old firmware are forgotten (memory.refusals)."""
    # Read at every boot: prepared statements (db/statements.py), not built queries, and of
    # the station's row only the three columns needed.
    station = statements.connection(Station).execute(_FIRMWARE, (station_id,)).fetchone()
    firmware, previous, changed = (None, None, None) if station is None else (
        station[0], station[1], Station.firmware_changed_at.python_value(station[2]))
    held: dict[str, str | None] = {}
    renewed: set[str] = set()
    for row in statements.rows(StationSetting, 'WHERE "station_id" = ?', (station_id,)):
        if changed is not None and row.updated_at < changed:
            renewed.add(row.key)
        else:
            held[row.key] = row.value
    note = ""
    if changed is not None and station is not None:
        renewed.update(r.key for r in statements.rows(
            SettingRefusal, 'WHERE "station_id" = ?', (station_id,))
            if r.firmware_version != firmware)
        note = (f"firmware changed from {previous or '(none)'} to "
                f"{firmware or '(none)'} on "
                f"{changed.strftime('%Y-%m-%d %H:%M')} UTC")
    return StationState(held, memory.refusals(station_id, firmware),
                        memory.owned(station_id), frozenset(renewed), note)


def explicit_heartbeat(settings: Settings) -> int | None:
    """The server-wide heartbeat an operator configured (file, environment, flag), if any."""
    return settings.heartbeat_interval if "heartbeat_interval" in settings.explicit else None


def plan(level: str, version: Version, nat_timeout: int, state: StationState,
         configured_heartbeat: int | None) -> list[Decision]:
    """Each setting of the level, decided; see the module docstring for the rules."""
    decisions = []
    action_name = "ChangeConfiguration" if version is Version.OCPP16 else "SetVariables"
    unsupported = next(((k, r) for (k, _), r in state.refused.items()
                        if r.get("scope") == memory.ACTION and k == action_name), None)
    for key, choices in levels.choices_for(level, version, nat_timeout).items():
        mine = state.owned.get(key)
        if mine is not None:
            decisions.append(Decision(key, mine["value"], YIELDED,
                                      f"operator-owned: set to {mine['value']!r} by "
                                      f"{mine['requested_by'] or 'an operator'}"))
            continue
        if key in levels.HEARTBEAT_KEYS and configured_heartbeat is not None:
            decisions.append(Decision(
                key, str(configured_heartbeat), YIELDED,
                f"heartbeat_interval {configured_heartbeat} is set in the server's "
                "configuration; BootNotification answers it"))
            continue
        if unsupported is not None:
            action, r = unsupported
            decisions.append(Decision(
                key, None, SKIPPED,
                f"{action} unsupported: the charger answered it with CALLERROR "
                f"{r['status']} under firmware {r['firmware_version'] or '(none)'}; no "
                "setting is sent until the firmware changes"))
            continue
        unknown = next((r for (k, _), r in state.refused.items()
                        if k == key and r.get("scope") == memory.KEY), None)
        if unknown is not None:
            decisions.append(Decision(
                key, None, SKIPPED,
                f"key unknown to the charger ({unknown['status']} under firmware "
                f"{unknown['firmware_version'] or '(none)'}): no value is sent until the "
                "firmware changes"))
            continue
        refusals = [(value, state.refused[(key, value)]) for value in choices
                    if (key, value) in state.refused]
        remaining = [value for value in choices if (key, value) not in state.refused]
        said = "; ".join(f"{value!r} refused ({r['status']}) under firmware "
                         f"{r['firmware_version'] or '(none)'}" for value, r in refusals)
        if not remaining:
            decisions.append(Decision(key, None, SKIPPED,
                                      f"refused before: {said}; not sent again until the "
                                      "firmware changes"))
            continue
        value = remaining[0]
        why = f"fallback: {said}" if refusals else f"level {level}"
        if key in state.renewed:
            why = f"{state.firmware_note}: sent again once ({why})"
        if state.held.get(key) == value:
            decisions.append(Decision(key, value, SKIPPED, f"already held ({why})"))
        else:
            decisions.append(Decision(key, value, SENT, why))
    return decisions


def heartbeat_of(version: Version | None, level: str, policy_enabled: bool,
                 state: StationState, configured_heartbeat: int | None) -> int | None:
    """The BootNotification interval: the operator's for this station, else the server's
    configured one, else the level's (policy on); None leaves the server default."""
    keys = sorted(levels.HEARTBEAT_KEYS) if version is None else [
        "HeartbeatInterval" if version is Version.OCPP16 else "OCPPCommCtrlr.HeartbeatInterval"]
    for key in keys:
        mine = state.owned.get(key)
        if mine is not None and digits(str(mine["value"])):
            return int(mine["value"])
    if configured_heartbeat is not None:
        return configured_heartbeat
    return levels.heartbeat_for(level) if policy_enabled else None


def boot_interval(version: Version | None, level: str, policy_enabled: bool,
                  state: StationState, settings: Settings) -> int:
    """The interval an Accepted BootNotification answer carries, and what explain shows: the
    one function for both, so the two never disagree (`heartbeat_of`, else the server's
    `heartbeat_interval`)."""
    chosen = heartbeat_of(version, level, policy_enabled, state, explicit_heartbeat(settings))
    return settings.heartbeat_interval if chosen is None else chosen


def keepalive_for(decisions: list[Decision], nat_timeout: int, settings: Settings) -> int:
    """TCP_KEEPIDLE for the station: 0.9 x nat_timeout unless its own ping holds the NAT."""
    for decision in decisions:
        if decision.key in levels.PING_KEYS and decision.value not in (None, levels.PING_OFF):
            pinged = decision.outcome != SENT or decision.status in ("Accepted",
                                                                      "RebootRequired")
            value = decision.value
            if pinged and digits(value) and int(value) <= levels.keepalive_idle(nat_timeout):
                # Its ping keeps the mapping: probes only after a NAT timeout of silence.
                return max(settings.tcp_keepalive_idle, nat_timeout)
    return levels.keepalive_idle(nat_timeout)


def decide(station_id: str, settings: Settings, now: datetime,
           budget: usage.EffectiveBudget | None = None) -> Move | None:
    """Where the station's projection says it should be; None to stay. `budget`: the
    station's effective budget, when the caller has just read it.

    Within a cycle the policy only tightens: relaxing as soon as the lean settings bring the
    projection down would swing the station back and forth. A new cycle restores normal.
    """
    budget = budget or usage.effective_budget(station_id, settings)
    if not budget.policy_enabled:
        return None
    current = usage.station_usage(station_id, settings, now, budget=budget)
    row = statements.first(StationBudget, 'WHERE "station_id" = ? LIMIT 1', (station_id,))
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


def record_application(station_id: str, level: str, reason: str,
                       outcomes: list[dict[str, Any]], at: datetime) -> None:
    """Log an application of the station's level that sent something (a new connection)."""
    # At every first boot: a prepared insert, not a built one.
    statements.insert_one(PolicyChange, _CHANGE_FIELDS, (
        station_id, PolicyChange.at.db_value(at), level, level, reason,
        json.dumps(outcomes, default=str)))


def record_outcomes(change_id: int, outcomes: list[dict[str, Any]]) -> None:
    """Attach what the station answered to the policy change that caused it."""
    (PolicyChange.update(settings=json.dumps(outcomes, default=str))
     .where(PolicyChange.id == change_id).execute())


def current_plan(station_id: str, settings: Settings) -> dict[str, Any]:
    """What the policy would do with each setting of the station's level now (for explain):
    uses the station's last protocol; empty before it ever connected."""
    budget = usage.effective_budget(station_id, settings)
    station = Station.get_or_none(Station.id == station_id)
    protocol = None if station is None else station.protocol
    state = read_state(station_id)
    configured = explicit_heartbeat(settings)
    version = Version(protocol) if protocol in {v.value for v in Version} else None
    decisions = [] if version is None else plan(budget.level, version, budget.nat_timeout,
                                                state, configured)
    return {
        "level": budget.level, "policy_enabled": budget.policy_enabled, "protocol": protocol,
        "heartbeat_interval": boot_interval(version, budget.level, budget.policy_enabled,
                                            state, settings),
        "tcp_keepalive_idle": keepalive_for(decisions, budget.nat_timeout, settings)
        if budget.policy_enabled else settings.tcp_keepalive_idle,
        "settings": [d.as_dict() for d in decisions],
        "operator_owned": [{"key": k, **v} for k, v in state.owned.items()],
        "refused": [{"key": k, "value": v, **r} for (k, v), r in state.refused.items()],
    }


def set_server_keepalive(connection: StationConnection, idle: int, interval: int) -> None:
    """TCP_KEEPIDLE on the station's socket (seconds of silence before a probe), and
    TCP_KEEPINTVL at most that: Linux times the next probe after an answered one by the
    interval, so an interval longer than the idle time would space probes by the interval."""
    sock = None if connection.meter is None else connection.meter.sock
    if sock is None or not hasattr(socket, "TCP_KEEPIDLE"):
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, idle))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL,
                        max(1, min(interval, idle)))
    except OSError as exc:
        log.info("%s: cannot set keepalive: %s", connection.station_id, exc)


def _unsupported(outcome: CommandOutcome) -> bool:
    """A CALLERROR saying the charger lacks the action itself (NotImplemented, ...)."""
    return (outcome.status != "answered"
            and outcome.error_code in memory.CALL_ERROR_REFUSALS)


def _answered_statuses(version: Version, sent: Mapping[str, str], outcome: CommandOutcome
                       ) -> dict[str, str]:
    """key -> what the station said about it: its status, a CALLERROR code, or timeout."""
    if outcome.status != "answered" or outcome.result is None:
        return dict.fromkeys(sent, outcome.error_code or outcome.status)
    if version is Version.OCPP16:
        return dict.fromkeys(sent, str(outcome.result.get("status")))
    found = {}
    for entry in outcome.result.get("setVariableResult", []):
        key = f"{entry['component']['name']}.{entry['variable']['name']}"
        if key in sent:
            found[key] = str(entry.get("attributeStatus"))
    return {key: found.get(key, "unanswered") for key in sent}


@dataclass(slots=True)
class _Turn:
    """A station waiting for its settings: no task of its own until its turn."""

    connection: StationConnection
    kept: int | None  # the NAT timeout its keepalive was set for while it waited
    deadline: float | None  # trio's clock: past the boots-first gate at this time at most
    then: Callable[[], Awaitable[Any]] | None


def _trio_now() -> float:
    import trio  # here, not at the top: the CLI reads plans without the network stack

    return trio.current_time()


class BudgetPolicy:
    def __init__(self, store: StoreWriter, settings: Settings, commands: CommandSender,
                 clock: Callable[[], datetime] = timestamps.now_utc,
                 reader: db_reader.StoreReader | None = None,
                 boots_first: BootsFirst | None = None) -> None:
        self._store = store
        # Under a connection burst the settings wait for the handshakes (precedence.py).
        self._boots_first = boots_first
        # Made at the first boot (the CLI imports this module without trio).
        self._at_once: Any = None
        # Stations waiting for their turn (on_accepted), and whether _dispatch runs.
        self._queue: deque[_Turn] = deque()
        self._dispatching = False
        # Places taken, in order: when each is due back, and how (_give_back_late).
        self._held: dict[object, tuple[float, Callable[[], None]]] = {}
        self._giving_back = False
        # The policy's reads at boot go beside the writer, not behind it (db/reader.py).
        self._reader = reader
        self._settings = settings
        self._commands = commands
        self._clock = clock

    async def heartbeat_for(self, station_id: str, version: Version | None = None) -> int:
        """The interval the station's Accepted BootNotification answer gives, read afresh at
        each boot (`boot_interval`: what explain shows)."""
        def read() -> int:
            budget = usage.effective_budget(station_id, self._settings)
            # Of the station's state the interval needs only the operator's own values:
            # the held settings and refusals are not read at every boot for it.
            owned = StationState({}, {}, memory.owned(station_id))
            return boot_interval(version, budget.level, budget.policy_enabled, owned,
                                 self._settings)
        return await self._read(read)

    async def _read(self, work: Callable[[], T]) -> T:
        return await db_reader.read(self._store, self._reader, work)

    async def on_accepted(self, connection: StationConnection,
                          then: Callable[[], Awaitable[Any]] | None = None) -> None:
        """Bring a freshly accepted station to its level's settings (a new cycle's first),
        then run `then` (the server's next step for the station). Returns when both are
        done, or once the station is queued for its turn: a station that must wait (other
        stations' boots go first, or SETTINGS_AT_ONCE are being settled) waits as an entry
        in a queue, not as a task, and its settings and `then` run later as its connection's
        side task (StationConnection.continue_aside). A waiting task and its frames are
        about 5 KiB made at the boot among the idle connections' objects; freed after the
        burst they left that much per station in partly used pools of Python's allocator
        (docs/PERFORMANCE.md, "Memory per station")."""
        station_id = connection.station_id
        settings = self._settings
        gate, kept, deadline = self._boots_first, None, None
        if gate is not None and gate.would_wait():
            # Other stations' boots go first (budget/precedence.py): the keepalive at once,
            # the decision once they are answered.
            early = await self._read(partial(usage.effective_budget, station_id, settings))
            if not early.policy_enabled:
                if then is not None:
                    await then()
                return
            kept = early.nat_timeout
            set_server_keepalive(connection, levels.keepalive_idle(kept),
                                 settings.tcp_keepalive_interval)
            if not connection.can_continue_aside:
                await gate.wait()
            else:
                gate.waited += 1
                deadline = _trio_now() + gate.max_wait
        import trio  # here, not at the top: the CLI reads plans without the network stack

        if self._at_once is None:
            self._at_once = trio.CapacityLimiter(SETTINGS_AT_ONCE)
        if connection.can_continue_aside and (
                deadline is not None or self._queue or not self._at_once.available_tokens):
            self._queue.append(_Turn(connection, kept, deadline, then))
            if not self._dispatching:
                self._dispatching = True
                connection.start_beside(self._dispatch)
            return
        place = object()
        await self._at_once.acquire_on_behalf_of(place)
        await self._turn(connection, place, kept, then)

    async def _dispatch(self) -> None:
        """Give the queued stations their turns, first come first served: past the gate
        (each at most until its own deadline), then a place among SETTINGS_AT_ONCE."""
        queue, gate, limiter = self._queue, self._boots_first, self._at_once
        try:
            while queue:
                turn = queue[0]
                if turn.connection.stopped:
                    queue.popleft()
                    continue
                if turn.deadline is not None and gate is not None:
                    await gate.wait_until(turn.deadline)
                    if not gate.would_wait():
                        # Quiet: every station queued so far is past the gate, as the
                        # waiters released together were.
                        for queued in queue:
                            queued.deadline = None
                place = object()
                await limiter.acquire_on_behalf_of(place)
                queue.popleft()
                if not turn.connection.continue_aside(
                        partial(self._turn, place=place, kept=turn.kept, then=turn.then)):
                    limiter.release_on_behalf_of(place)  # the connection has ended
        finally:
            self._dispatching = False

    async def _give_back_late(self) -> None:
        """Take back the places held for longer than call_timeout, oldest first. One task for
        every station, whose sleeps end when due: a timer per station, cancelled when its
        settings end early (nearly always), stays in trio's deadline heap with its scope until
        its time, and after a burst a few hundred of them pinned partly used pools of
        Python's allocator (docs/PERFORMANCE.md, "Memory per station")."""
        import trio

        held = self._held
        try:
            while held:
                # Places are taken in order and all held for the same time: the first is due
                # first, and no later one is due before it.
                due, give_back = next(iter(held.values()))
                if trio.current_time() >= due:
                    give_back()
                else:
                    await trio.sleep_until(due)
        finally:
            self._giving_back = False

    async def _turn(self, connection: StationConnection, place: object, kept: int | None,
                    then: Callable[[], Awaitable[Any]] | None) -> None:
        """The station's settings with its place among SETTINGS_AT_ONCE held, then `then`."""
        import trio

        limiter, held = self._at_once, True
        station_id, settings = connection.station_id, self._settings

        def read() -> tuple[usage.EffectiveBudget, Move | None, StationState | None]:
            # One read at a boot for the budget, the move and the station's state.
            now = self._clock()
            budget = usage.effective_budget(station_id, settings)
            if not budget.policy_enabled:
                return budget, None, None
            move = decide(station_id, settings, now, budget)
            return budget, move, None if move is not None else read_state(station_id)

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                self._held.pop(place, None)
                limiter.release_on_behalf_of(place)

        # A silent station would hold its place for every call's timeout in turn (seven of
        # them); it holds it for one at most, then settles without (_give_back_late).
        self._held[place] = (trio.current_time() + settings.call_timeout, give_back)
        if not self._giving_back:
            self._giving_back = True
            trio.lowlevel.spawn_system_task(self._give_back_late)
        try:
            await self._settle(connection, read, kept)
        finally:
            give_back()
        if then is not None:
            await then()

    async def _settle(self, connection: StationConnection,
                      read: Callable[[], tuple[usage.EffectiveBudget, Move | None,
                                               StationState | None]],
                      kept: int | None) -> None:
        station_id, settings = connection.station_id, self._settings
        budget, move, state = await self._read(read)
        if not budget.policy_enabled:
            return
        if kept != budget.nat_timeout:
            # At once: the NAT mapping must hold while the settings go out, whatever they get.
            set_server_keepalive(connection, levels.keepalive_idle(budget.nat_timeout),
                                 settings.tcp_keepalive_interval)
        if move is not None:
            await self.move(connection, station_id, move)
        else:
            outcomes = await self.apply(connection, budget.level, budget.nat_timeout, state)
            if any(o["outcome"] == SENT for o in outcomes):
                await self._store.run(partial(
                    record_application, station_id, budget.level,
                    "level applied on a new connection", outcomes, self._clock()))

    async def evaluate_one(self, station_id: str, connection: StationConnection | None
                           ) -> bool:
        """Move the station if its projection says so; True when it moved."""
        move = await self._read(partial(decide, station_id, self._settings, self._clock()))
        if move is None:
            return False
        await self.move(connection, station_id, move)
        return True

    async def run(self, connections: Mapping[str, StationConnection], interval: float
                  ) -> None:
        import trio  # here, not at the top: the CLI reads plans without the network stack

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

    async def apply(self, connection: StationConnection, level: str, nat_timeout: int,
                    state: StationState | None = None) -> list[dict[str, Any]]:
        """Send what the plan says, learn from the answers, fall back where refused, and set
        the keepalive; returns every setting's decision (with the answer, where sent).
        `state`: the station's, when the caller has just read it (saves the first read)."""
        station_id, version = connection.station_id, connection.ctx.version
        configured = explicit_heartbeat(self._settings)
        # Every decision in order (a refused value and its fallback are both kept), and the
        # last one per key, which says where the station ends up.
        records: list[Decision] = []
        final: dict[str, Decision] = {}
        tried: set[tuple[str, str]] = set()
        # Keys refused in one round and settled (not sent) in a later one, in `records` already.
        settled: set[str] = set()
        for round_ in range(MAX_ROUNDS):
            if state is None or round_ > 0:
                state = await self._read(partial(read_state, station_id))
            decisions = plan(level, version, nat_timeout, state, configured)
            sending = {d.key: d for d in decisions if d.outcome == SENT
                       and d.value is not None and (d.key, d.value) not in tried}
            if round_ == 0:
                final.update((d.key, d) for d in decisions if d.key not in sending)
            else:
                # A key refused in an earlier round whose fallback is not sent (already held,
                # or every value refused) ends where this round says: the keepalive follows
                # where the station ends up (its own ping at the fallback), not the refusal.
                for d in decisions:
                    last = final.get(d.key)
                    if (d.key not in sending and d.outcome != SENT
                            and (last is None or (last.outcome == SENT
                                                  and last.status not in memory.ACCEPTANCES))):
                        final[d.key] = d
                        records.append(d)
                        settled.add(d.key)
            if not sending:
                break
            values = {k: d.value for k, d in sending.items() if d.value is not None}
            statuses = await self._send(connection, version, values)
            tried.update(values.items())
            for key, decision in sending.items():
                if key not in statuses:
                    continue  # not sent: the charger lacks the action (see _send)
                done = Decision(key, decision.value, SENT, decision.reason, statuses[key])
                records.append(done)
                final[key] = done
            if all(statuses.get(key) in memory.ACCEPTANCES for key in values):
                # Nothing refused, so no fallback to choose: another round would read the
                # values just stored as held and send nothing (a read per boot saved).
                break
        records = [d for d in final.values() if d.outcome != SENT and d.key not in settled
                   ] + records
        set_server_keepalive(connection, keepalive_for(list(final.values()), nat_timeout,
                                                       self._settings),
                             self._settings.tcp_keepalive_interval)
        sent = [d for d in records if d.outcome == SENT]
        if sent:
            # What the station took, not only what went out: a refusal must not read as applied.
            taken = sum(1 for d in sent if d.status in ("Accepted", "RebootRequired"))
            log.info("%s: policy level %s: %d settings sent, %d accepted, %d refused or "
                     "unanswered", station_id, level, len(sent), taken, len(sent) - taken)
        return [d.as_dict() for d in records]

    async def _send(self, connection: StationConnection, version: Version,
                    values: dict[str, str]) -> dict[str, str]:
        """Send the values (1.6: one ChangeConfiguration each; 2.x one SetVariables); returns
        key -> answer for the keys sent. A CALLERROR NotImplemented/NotSupported says the
        charger lacks the action itself: it is remembered for this firmware and nothing
        more is sent."""
        station_id = connection.station_id
        statuses: dict[str, str] = {}
        requests = catalogue.set_configs(version, values)
        # Logged in one store job and answered into another (send_each_on), not two per key.
        outcomes = await self._commands.send_each_on(
            connection, requests, requested_by=REQUESTED_BY, stop=_unsupported)
        for request, outcome in zip(requests, outcomes, strict=False):
            sent = memory.requested_values(request.action, request.payload)
            statuses.update(_answered_statuses(version, sent, outcome))
            # Refusals in an answer were learned with the command's outcome (effects.apply).
            if _unsupported(outcome):
                await self._store.run(partial(memory.record_unsupported, station_id,
                                              request.action, str(outcome.error_code),
                                              self._clock()))
                log.info("%s: %s answered CALLERROR %s: no settings are sent until its "
                         "firmware changes", station_id, request.action, outcome.error_code)
        said = {k: s for k, s in statuses.items()
                if s in memory.V16_REFUSALS | memory.V2_REFUSALS | memory.CALL_ERROR_REFUSALS}
        if said:
            log.info("%s: refused %s; not sent again until its firmware changes", station_id,
                     ", ".join(f"{k}={values[k]!r} ({s})" for k, s in said.items()))
        return statuses

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

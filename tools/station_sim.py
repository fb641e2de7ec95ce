#!/usr/bin/env python3
"""A charging-station simulator for lite-csms: OCPP 1.6J, 2.0.1 and 2.1 on trio-websocket.

It boots, heartbeats and charges by script, and answers the CSMS's own calls as a real charger
would, from a station-side configuration store the CSMS can change. Framing, validation and call
correlation come from lite_csms.ocppj.session.RpcSession, so every payload the simulator sends
is checked against the OCA schemas before it leaves, and every answer the CSMS gives is checked
on the way in.

tools/ is not a package: load this file by path (importlib.util.spec_from_file_location) to
build a `ChargingStation` and drive it directly, as the tests and the traffic simulator do.
tools/README.md describes the command line.
"""

from __future__ import annotations

import argparse
import base64
import enum
import functools
import importlib.util
import json
import math
import signal
import sys
import types
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Protocol, TextIO

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from lite_csms.ocppj import schemas
from lite_csms.ocppj.framing import Payload
from lite_csms.ocppj.session import (
    CallAnswered,
    CallFailed,
    Event,
    Ignored,
    InboundCall,
    InboundSend,
    InvalidOutbound,
    RpcSession,
    SendReply,
)
from lite_csms.ocppj.versions import SUPPORTED_SUBPROTOCOLS, ErrorKind, Version, error_code


def _load_sibling(name: str) -> types.ModuleType:
    """tools/ is not a package, and this file is run as a script or loaded by path: load a
    helper module that sits next to it the same way."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses look their module up while a class is being built.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


responders = _load_sibling("sim_responders")

VENDOR = "LiteCSMS-Sim"
MODEL = "StationSim"
FIRMWARE = "0.1.0"

EXIT_OK = 0
EXIT_STEP_FAILED = 1
EXIT_LINK_FAILED = 3
EXIT_INTERRUPTED = 130

# Waits without a configured interval: a Pending boot answered with interval 0, and the length
# of a charging "tick" when MeterValueSampleInterval is 0 (sampling off, yet the EV still charges).
DEFAULT_RETRY_SECONDS = 60
DEFAULT_TICK_SECONDS = 60
# Samples kept for the stop message: beyond this, every other one is dropped (the newest kept),
# as a charger with bounded memory does, so that a long session's stop stays under the CSMS's
# message size limit.
MAX_ENDED_SAMPLES = 240
CONNECT_TIMEOUT = 10.0
DISCONNECT_TIMEOUT = 2.0
# A month of heartbeats must not grow the JSON summary without bound.
MAX_REPORTED_ENTRIES = 10_000
CONNECTION_CLOSED = "ConnectionClosed"

Request = tuple[str, Payload]
FollowUp = Callable[[], Awaitable[None]]

# Configuration keys, named as 1.6 names them; 2.x settings map onto them (see default_settings).
HEARTBEAT_INTERVAL = "HeartbeatInterval"
SAMPLE_INTERVAL = "MeterValueSampleInterval"
ALIGNED_INTERVAL = "ClockAlignedDataInterval"
SAMPLED_DATA = "MeterValuesSampledData"
ALIGNED_DATA = "MeterValuesAlignedData"
STOP_TXN_DATA = "StopTxnSampledData"
# 2.x only: how often the samples delivered with TransactionEvent Ended are taken (1.6 takes
# its StopTxnSampledData every MeterValueSampleInterval).
ENDED_INTERVAL = "SampledDataCtrlr.TxEndedInterval"
MIN_STATUS_DURATION = "MinimumStatusDuration"
WS_PING_INTERVAL = "WebSocketPingInterval"
AUTHORIZE_REMOTE = "AuthorizeRemoteTxRequests"
STOP_ON_INVALID_ID = "StopTransactionOnInvalidId"

# Connector states, in 1.6 spelling; 2.x folds the busy ones into Occupied.
AVAILABLE = "Available"
PREPARING = "Preparing"
CHARGING = "Charging"
FINISHING = "Finishing"
UNAVAILABLE = "Unavailable"

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
CURRENT = "Current.Import"
VOLTAGE = "Voltage"
SUPPORTED_MEASURANDS = frozenset({ENERGY, POWER, CURRENT, VOLTAGE})
NOMINAL_VOLTAGE = 230.0


# ---- failures ----------------------------------------------------------------------------------
class SimFailure(Exception):
    exit_code = EXIT_STEP_FAILED


class StepFailed(SimFailure):
    """The CSMS answered a step with a CALLERROR, a refusal, or not at all."""


class LinkLost(SimFailure):
    """The CSMS refused the WebSocket or the connection died."""

    exit_code = EXIT_LINK_FAILED


# ---- time --------------------------------------------------------------------------------------
class Clock:
    """Simulated time: `scale` simulated seconds pass per real second.

    Every wait and every timestamp in the simulator goes through here, so this one object
    decides how fast a simulated month runs. It reads trio's clock, so a trio MockClock drives
    it too. Simulated time starts at `start` (default: the wall clock) when `anchor` is first
    called, or the clock first read, which must be inside trio.run.
    """

    def __init__(self, scale: float = 1.0, start: datetime | None = None) -> None:
        if not scale > 0:
            raise ValueError("the time scale must be positive")
        self.scale = scale
        self._start_wall = start
        self._start_trio: float | None = None

    def anchor(self) -> None:
        if self._start_trio is None:
            self._start_trio = trio.current_time()
            self._start_wall = self._start_wall or datetime.now(UTC)

    def elapsed(self) -> float:
        """Simulated seconds since the clock was anchored."""
        self.anchor()
        assert self._start_trio is not None
        return (trio.current_time() - self._start_trio) * self.scale

    def now(self) -> datetime:
        elapsed = self.elapsed()
        assert self._start_wall is not None
        return self._start_wall + timedelta(seconds=elapsed)

    def timestamp(self) -> str:
        # Milliseconds keep two samples within one second distinct: the CSMS keys samples by time.
        return self.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(max(0.0, seconds) / self.scale)

    async def sleep_until(self, elapsed: float) -> None:
        await self.sleep(elapsed - self.elapsed())

    def move_on_after(self, seconds: float) -> trio.CancelScope:
        return trio.move_on_after(max(0.0, seconds) / self.scale)


class Signal:
    """A reusable trio.Event: every waiter wakes on the next fire()."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()


# ---- configuration -----------------------------------------------------------------------------
class Kind(enum.Enum):
    INT = "int"
    BOOL = "bool"
    LIST = "list"
    TEXT = "text"


@dataclass(slots=True)
class Setting:
    """One configuration value: a 1.6 key, a 2.x component variable, or both."""

    key: str
    value: str
    kind: Kind = Kind.INT
    readonly: bool = False
    in_v16: bool = True
    v2: tuple[str, str] | None = None
    allowed: frozenset[str] | None = None

    def parse(self, text: str) -> str | None:
        """The normalised value, or None when `text` is not valid for this setting."""
        match self.kind:
            case Kind.INT:
                try:
                    number = int(text.strip())
                except ValueError:
                    return None
                return str(number) if number >= 0 else None
            case Kind.BOOL:
                lowered = text.strip().lower()
                return lowered if lowered in ("true", "false") else None
            case Kind.LIST:
                items = [item.strip() for item in text.split(",") if item.strip()]
                if self.allowed is not None and not set(items) <= self.allowed:
                    return None
                return ",".join(items)
        return text


def default_settings(station_id: str, connectors: int) -> list[Setting]:
    measurands = SUPPORTED_MEASURANDS
    return [
        Setting(HEARTBEAT_INTERVAL, "300", v2=("OCPPCommCtrlr", "HeartbeatInterval")),
        Setting(SAMPLE_INTERVAL, "60", v2=("SampledDataCtrlr", "TxUpdatedInterval")),
        Setting(ALIGNED_INTERVAL, "0", v2=("AlignedDataCtrlr", "Interval")),
        Setting(SAMPLED_DATA, ENERGY, Kind.LIST, allowed=measurands,
                v2=("SampledDataCtrlr", "TxUpdatedMeasurands")),
        Setting(ALIGNED_DATA, ENERGY, Kind.LIST, allowed=measurands,
                v2=("AlignedDataCtrlr", "Measurands")),
        Setting(STOP_TXN_DATA, ENERGY, Kind.LIST, allowed=measurands,
                v2=("SampledDataCtrlr", "TxEndedMeasurands")),
        Setting(ENDED_INTERVAL, "0", in_v16=False, v2=("SampledDataCtrlr", "TxEndedInterval")),
        Setting(MIN_STATUS_DURATION, "0"),
        Setting(WS_PING_INTERVAL, "0", v2=("OCPPCommCtrlr", "WebSocketPingInterval")),
        Setting("ConnectionTimeOut", "60", v2=("TxCtrlr", "EVConnectionTimeOut")),
        Setting(AUTHORIZE_REMOTE, "false", Kind.BOOL, v2=("AuthCtrlr", "AuthorizeRemoteStart")),
        Setting("LocalAuthorizeOffline", "true", Kind.BOOL,
                v2=("AuthCtrlr", "LocalAuthorizeOffline")),
        Setting("LocalPreAuthorize", "false", Kind.BOOL, v2=("AuthCtrlr", "LocalPreAuthorize")),
        Setting(STOP_ON_INVALID_ID, "true", Kind.BOOL, v2=("TxCtrlr", "StopTxOnInvalidId")),
        Setting("ResetRetries", "1", v2=("OCPPCommCtrlr", "ResetRetries")),
        Setting("TransactionMessageAttempts", "3"),
        Setting("TransactionMessageRetryInterval", "60"),
        Setting("ConnectorPhaseRotation", "NotApplicable", Kind.LIST),
        Setting("NumberOfConnectors", str(connectors), readonly=True),
        Setting("GetConfigurationMaxKeys", "100", readonly=True),
        Setting("SupportedFeatureProfiles", "Core,RemoteTrigger,SmartCharging,FirmwareManagement",
                Kind.LIST, readonly=True),
        Setting("SecurityCtrlr.Identity", station_id, Kind.TEXT, readonly=True, in_v16=False,
                v2=("SecurityCtrlr", "Identity")),
        Setting("TxCtrlr.TxStartPoint", "PowerPathClosed", Kind.LIST, in_v16=False,
                v2=("TxCtrlr", "TxStartPoint")),
        Setting("TxCtrlr.TxStopPoint", "EVConnected,Authorized", Kind.LIST, in_v16=False,
                v2=("TxCtrlr", "TxStopPoint")),
    ]


class ConfigStore:
    """The station's own configuration; background tasks wait on `changed` to pick up edits."""

    def __init__(self, settings: Iterable[Setting]) -> None:
        self._by_key = {s.key: s for s in settings}
        self._by_variable = {s.v2: s for s in self._by_key.values() if s.v2 is not None}
        self._components = {component for component, _ in self._by_variable}
        self.changed = Signal()

    def v2_settings(self) -> list[Setting]:
        return [s for s in self._by_key.values() if s.v2 is not None]

    def v16_settings(self) -> list[Setting]:
        return [s for s in self._by_key.values() if s.in_v16]

    def lookup_v16(self, key: str) -> Setting | None:
        setting = self._by_key.get(key)
        return setting if setting is not None and setting.in_v16 else None

    def lookup_v2(self, component: str, variable: str) -> Setting | None:
        return self._by_variable.get((component, variable))

    def has_component(self, component: str) -> bool:
        return component in self._components

    def get(self, key: str) -> str:
        return self._by_key[key].value

    def seconds(self, key: str) -> int:
        return int(self.get(key))

    def flag(self, key: str) -> bool:
        return self.get(key) == "true"

    def items(self, key: str) -> list[str]:
        return [item for item in self.get(key).split(",") if item]

    def set(self, key: str, value: str) -> None:
        """Set a value the station decided on itself (the boot interval); no checks."""
        self._by_key[key].value = value
        self.changed.fire()

    def change(self, setting: Setting, text: str) -> bool:
        """Apply a CSMS-requested change; False when read-only or not a valid value."""
        value = setting.parse(text)
        if setting.readonly or value is None:
            return False
        setting.value = value
        self.changed.fire()
        return True


# ---- charging state ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChargePlan:
    """How the simulated EV draws energy: `energy_wh` spread evenly over `samples` sample
    intervals and one last stretch, or, without them, `power_w` until the session is stopped."""

    power_w: float
    energy_wh: int | None = None
    samples: int | None = None

    @property
    def final_step(self) -> int | None:
        return None if self.samples is None else self.samples + 1

    def delivered_wh(self, step: int, seconds: float) -> int:
        if self.energy_wh is None or self.final_step is None:
            return round(self.power_w * seconds / 3600)
        return round(self.energy_wh * min(step, self.final_step) / self.final_step)


@dataclass(eq=False, slots=True)
class SimTransaction:
    connector_id: int
    id_tag: str
    meter_start_wh: int
    plan: ChargePlan
    started_at: float
    remote_start_id: int | None = None
    # 2.x stations name their transactions; a 1.6 one is named by the CSMS (csms_id).
    station_tx_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    csms_id: int | None = None
    register_wh: int = 0
    power_w: float = 0.0
    steps: int = 0
    seq_no: int = 0
    last_reading_at: float = 0.0
    # Samples for the stop message (1.6 transactionData, 2.x Ended meterValue), oldest first,
    # and when the last was taken.
    ended_samples: list[Payload] = field(default_factory=list)
    ended_sampled_at: float = 0.0
    stop_reason: str | None = None
    stop_requested: trio.Event = field(default_factory=trio.Event)
    finished: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self.register_wh = self.meter_start_wh
        self.last_reading_at = self.ended_sampled_at = self.started_at

    def register_at(self, now: float) -> int:
        """The register as the meter shows it at `now`, without moving the sampling state."""
        return self.meter_start_wh + self.plan.delivered_wh(self.steps, now - self.started_at)

    def keep_ended_sample(self, meter_value: Payload) -> None:
        self.ended_samples.append(meter_value)
        if len(self.ended_samples) > MAX_ENDED_SAMPLES:
            self.ended_samples = self.ended_samples[::-2][::-1]

    def advance(self, now: float) -> None:
        """Move the register to where `steps` and the time charged put it."""
        register = self.meter_start_wh + self.plan.delivered_wh(self.steps,
                                                                 now - self.started_at)
        if now > self.last_reading_at:
            self.power_w = (register - self.register_wh) * 3600 / (now - self.last_reading_at)
        self.register_wh = register
        self.last_reading_at = now

    def request_stop(self, reason: str) -> None:
        if not self.stop_requested.is_set():
            self.stop_reason = reason
            self.stop_requested.set()

    def next_seq_no(self) -> int:
        self.seq_no += 1
        return self.seq_no - 1


@dataclass(eq=False, slots=True)
class Connector:
    """A 1.6 connector, or a 2.x EVSE with its one connector: both are numbered from 1."""

    id: int
    register_wh: int
    status: str = AVAILABLE
    operative: bool = True
    # A ChangeAvailability that must wait for the running transaction to end.
    scheduled_operative: bool | None = None
    transaction: SimTransaction | None = None
    # The status the CSMS last heard, in wire spelling; None forces the next report.
    reported: str | None = None
    report_pending: bool = False

    @property
    def is_free(self) -> bool:
        return self.operative and self.transaction is None


@dataclass(frozen=True, slots=True)
class Reading:
    measurand: str
    value: float
    unit: str


# ---- the run's record --------------------------------------------------------------------------
@dataclass
class Report:
    """What happened, for the JSON summary and the exit code."""

    station_id: str
    protocol: str
    scenario: str
    ok: bool = True
    exit_code: int = EXIT_OK
    error: str | None = None
    scenario_completed: bool = False
    boot_status: str | None = None
    boot_attempts: int = 0
    heartbeat_interval: int | None = None
    heartbeats: int = 0
    reboots: int = 0
    transaction_id: int | str | None = None
    meter_start_wh: int | None = None
    meter_stop_wh: int | None = None
    energy_wh: int | None = None
    transactions: list[dict[str, Any]] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)
    status_history: list[list[Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    calls_received: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, message: str, exit_code: int) -> None:
        # The first failure explains the run; later ones are usually its consequences.
        if self.ok:
            self.ok, self.error, self.exit_code = False, message, exit_code

    def step(self, action: str, *, answer: Payload | None = None, error: str | None = None
             ) -> None:
        entry: dict[str, Any] = {"action": action, "ok": error is None}
        entry.update({"answer": answer} if error is None else {"error": error})
        _append_bounded(self.steps, entry)

    def call_received(self, action: str, request: Payload, answer: Payload | str) -> None:
        _append_bounded(self.calls_received,
                        {"action": action, "request": request, "answer": answer})

    def status(self, connector_id: int, status: str) -> None:
        self.statuses[str(connector_id)] = status
        _append_bounded(self.status_history, [connector_id, status])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _append_bounded(entries: list[Any], entry: Any) -> None:
    if len(entries) < MAX_REPORTED_ENTRIES:
        entries.append(entry)


# ---- the wire ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Answer:
    """The station's answer to one CSMS CALL, and the work it starts once the answer is sent
    (a charger answers RemoteStart first, then starts charging)."""

    payload: Payload | None = None
    error: ErrorKind | None = None
    description: str = ""
    then: FollowUp | None = None

    @classmethod
    def ok(cls, payload: Payload, then: FollowUp | None = None) -> Answer:
        return cls(payload=payload, then=then)

    @classmethod
    def refuse(cls, kind: ErrorKind, description: str) -> Answer:
        return cls(error=kind, description=description)


class Link(Protocol):
    """What a station needs from a connection; tests and the traffic simulator substitute it."""

    async def call(self, action: str, payload: Payload) -> CallAnswered | CallFailed: ...


@dataclass(slots=True)
class _Waiter:
    message_id: str
    event: trio.Event = field(default_factory=trio.Event)
    outcome: CallAnswered | CallFailed | None = None


class RpcLink:
    """One WebSocket's worth of OCPP-J: reads frames, answers CALLs, correlates our CALLs.

    The RpcSession decides; this class only moves text. Inbound CALLs are answered by the
    reader itself because a station's answers never wait on I/O; the work an answer starts
    is handed to `spawn`, so the reader keeps reading while that work awaits its own CALLs.
    """

    def __init__(
        self, ws: WebSocketConnection, version: Version, *,
        answer: Callable[[InboundCall], Answer], spawn: Callable[[FollowUp, str], None],
        log: Callable[[str], None], call_timeout: float,
    ) -> None:
        self.ws = ws
        self.session = RpcSession(version, call_timeout=call_timeout)
        self._answer = answer
        self._spawn = spawn
        self._log = log
        self._lock = trio.Lock()
        self._waiter: _Waiter | None = None
        self.close_reason: str | None = None

    @property
    def busy(self) -> bool:
        """A CALL of ours is waiting for its answer."""
        return self._lock.locked()

    async def serve(self) -> None:
        """Read until the socket closes; `close_reason` says why it did."""
        try:
            while True:
                message = await self.ws.get_message()
                for event in self.session.receive(message, trio.current_time()):
                    await self._on_event(event)
        except ConnectionClosed as exc:
            reason = exc.reason
            self.close_reason = f"closed {reason.code} {reason.reason or ''}".strip()
        finally:
            self._settle_waiter(CallFailed("", "", CONNECTION_CLOSED,
                                           self.close_reason or "link closed", {}))

    async def _on_event(self, event: Event) -> None:
        match event:
            case InboundCall():
                answer = self._answer(event)
                await self.ws.send_message(self._render(event, answer))
                if answer.then is not None:
                    self._spawn(answer.then, event.action)
            case CallAnswered() | CallFailed():
                self._settle_waiter(event)
            case SendReply(text, reason):
                self._log(f"!! answered a bad message with {reason[:120]}")
                await self.ws.send_message(text)
            case Ignored(reason):
                self._log(f"!! ignored: {reason[:160]}")
            case InboundSend(_, action, _):
                self._log(f"<- SEND {action} (not handled)")

    def _render(self, call: InboundCall, answer: Answer) -> str:
        if answer.error is not None:
            return self.session.refuse(call, answer.error, answer.description)
        try:
            return self.session.answer(call, answer.payload or {})
        except InvalidOutbound as exc:
            # Our bug, never the CSMS's: say so on the wire rather than send an invalid payload.
            self._log(f"!! invalid {call.action} answer: {exc}")
            return self.session.refuse(call, ErrorKind.INTERNAL, "simulator built a bad answer")

    def _settle_waiter(self, outcome: CallAnswered | CallFailed) -> None:
        waiter = self._waiter
        if waiter is None or waiter.outcome is not None:
            return
        if outcome.message_id and outcome.message_id != waiter.message_id:
            return
        waiter.outcome = outcome
        waiter.event.set()

    async def call(self, action: str, payload: Payload) -> CallAnswered | CallFailed:
        """Send a CALL and await its answer; OCPP-J allows one outstanding CALL at a time."""
        async with self._lock:
            if self.close_reason is not None:
                return CallFailed("", action, CONNECTION_CLOSED, self.close_reason, {})
            message_id, text = self.session.start_call(action, payload, trio.current_time())
            waiter = self._waiter = _Waiter(message_id)
            try:
                await self.ws.send_message(text)
                deadline = self.session.next_deadline()
                assert deadline is not None
                with trio.move_on_at(deadline):
                    await waiter.event.wait()
                return waiter.outcome or self._expired(message_id, action)
            finally:
                self._waiter = None
                if self.session.outstanding_call == (message_id, action):
                    # The send failed or the wait was cancelled (the link went): the call is
                    # lost with it, and must not block the next one on this link.
                    self.session.expire(math.inf)

    def _expired(self, message_id: str, action: str) -> CallFailed:
        for event in self.session.expire(trio.current_time()):
            if isinstance(event, CallFailed):
                return event
        return CallFailed(message_id, action, "Timeout", "no answer in time", {}, timed_out=True)


# ---- the station -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StationOptions:
    url: str
    station_id: str
    protocol: Version = Version.OCPP16
    password: str | None = None
    scenario: str = "boot"
    connectors: int = 1
    id_tag: str = "SIMTAG01"
    energy_wh: int = 10_000
    meter_values: int = 3
    heartbeats: int = 3
    power_w: float = 7400.0
    meter_start_wh: int = 1000
    linger: float = 0.0
    time_scale: float = 1.0
    call_timeout: float = 30.0
    max_boot_attempts: int = 0
    json_summary: bool = False


Handler = Callable[[Payload], Answer]


class ChargingStation:
    """Behaviour every OCPP version shares: boot, heartbeats, statuses, charging, reboots.

    Subclasses own the wire format: the payloads the station sends and the CSMS calls it
    answers. The state (configuration, connectors, transactions) lives here so a test can
    drive `handle_call` directly and look at what changed.
    """

    version: Version
    # The BootNotification reason after a Reset; 1.6 BootNotification has no reason field.
    reboot_reason: ClassVar[str] = "RemoteReset"

    def __init__(self, options: StationOptions, *, clock: Clock | None = None,
                 log_stream: TextIO | None = None) -> None:
        self.options = options
        self.version = options.protocol
        self.clock = clock or Clock(options.time_scale)
        self.config = ConfigStore(default_settings(options.station_id, options.connectors))
        self.connectors = {n: Connector(n, options.meter_start_wh)
                           for n in range(1, options.connectors + 1)}
        self.report = Report(options.station_id, options.protocol.value, options.scenario)
        self.registration = "Unknown"
        self.link: Link | None = None
        self._log_stream = log_stream
        self._tasks: trio.Nursery | None = None
        self._last_activity = 0.0
        self._heartbeat_sent = Signal()
        self._registration_changed = Signal()
        self._boot_reason = "PowerUp"
        self._reboot_requested = False
        self._shutting_down = False
        self._run_scope: trio.CancelScope | None = None
        self._scenario_started = False
        self._linger_until: float | None = None
        # Charging profiles the CSMS set and this station holds (smart charging).
        self.profiles = responders.ProfileStore()

    # ---- wire format, per version -----------------------------------------------------------
    def boot_request(self, reason: str) -> Request:
        raise NotImplementedError

    def status_request(self, connector: Connector, status: str) -> Request:
        raise NotImplementedError

    def wire_status(self, status: str) -> str:
        return status

    async def authorize(self, id_tag: str) -> str:
        raise NotImplementedError

    async def start_transaction(self, tx: SimTransaction) -> str:
        """Tell the CSMS a transaction started; return the authorization status it gave."""
        raise NotImplementedError

    def _meter_value(self, readings: list[Reading], context: str, at: str | None = None
                     ) -> Payload:
        """One meterValue entry in the version's shape, stamped `at` (default now)."""
        raise NotImplementedError

    async def send_meter_values(self, connector: Connector, context: str,
                                at: str | None = None) -> None:
        raise NotImplementedError

    async def stop_transaction(self, tx: SimTransaction, reason: str) -> None:
        raise NotImplementedError

    def handlers(self) -> dict[str, Handler]:
        raise NotImplementedError

    # ---- plumbing ---------------------------------------------------------------------------
    def log(self, line: str) -> None:
        if self._log_stream is not None:
            print(f"{self.clock.timestamp()} {self.options.station_id} {line}",
                  file=self._log_stream, flush=True)

    def attach(self, link: Link, nursery: trio.Nursery) -> None:
        """Use `link` for CALLs, and `nursery` for work started by the CSMS's calls."""
        self.clock.anchor()
        self.link, self._tasks = link, nursery
        for connector in self.connectors.values():
            connector.reported = None

    def detach(self) -> None:
        self.link, self._tasks = None, None

    def spawn(self, work: FollowUp, label: str) -> None:
        if self._tasks is not None:
            self._tasks.start_soon(self._guarded, work, label)

    async def _guarded(self, work: FollowUp, label: str) -> None:
        # Background work records its failure but never tears the connection down with it.
        try:
            await work()
        except SimFailure as exc:
            self.report.fail(f"{label}: {exc}", exc.exit_code)
            self.log(f"!! {label} failed: {exc}")

    async def call(self, action: str, payload: Payload) -> Payload:
        """One step: send a CALL, log and record the answer. Raises StepFailed or LinkLost."""
        if self.link is None:
            raise LinkLost(f"{action}: not connected")
        sent_at = self.clock.elapsed()
        try:
            outcome = await self.link.call(action, payload)
        except ConnectionClosed as exc:
            raise LinkLost(f"{action}: connection closed ({exc.reason})") from None
        # Idle time counts from the send: the answer's delay must not stretch the interval.
        self._last_activity = sent_at
        if isinstance(outcome, CallFailed):
            detail = f"{outcome.code} {outcome.description}".strip()
            self.report.step(action, error=detail)
            self.log(f"-> {action} FAILED {detail}")
            failure = LinkLost if outcome.code == CONNECTION_CLOSED else StepFailed
            raise failure(f"{action}: {detail}")
        self.report.step(action, answer=outcome.payload)
        self.log(f"-> {action} {_brief(payload, 100)} => {_brief(outcome.payload, 100)}")
        return outcome.payload

    def handle_call(self, action: str, payload: Payload) -> Answer:
        """Answer one CSMS-initiated CALL as a charger would.

        State changes that are part of the answer (a new configuration value) happen here;
        anything that needs the wire (starting to charge, a triggered message) is in `then`.
        """
        handler = self.handlers().get(action)
        if handler is not None:
            return handler(payload)
        kind = (ErrorKind.NOT_SUPPORTED if action in schemas.known_actions(self.version)
                else ErrorKind.NOT_IMPLEMENTED)
        return Answer.refuse(kind, f"{action} is not supported by this station")

    def _answer_inbound(self, call: InboundCall) -> Answer:
        try:
            answer = self.handle_call(call.action, call.payload)
        except Exception as exc:
            # A simulator bug must cost one CALLERROR, not the reader task and the link.
            self.log(f"!! {call.action} handler failed: {exc!r}")
            answer = Answer.refuse(ErrorKind.INTERNAL, "simulator error")
        shown: Payload | str = (answer.payload or {}) if answer.error is None else (
            f"CALLERROR {error_code(self.version, answer.error)}")
        self.report.call_received(call.action, call.payload, shown)
        self.log(f"<- {call.action} {_brief(call.payload)} => {_brief(shown)}")
        return answer

    # ---- firmware, logs, profiles: shared by both versions -----------------------------------
    async def report_progress(self, action: str, statuses: Iterable[str],
                              request_id: int | None, start_after: float = 0.0) -> None:
        """A download, install or upload as a charger reports it: one status per step."""
        await self.clock.sleep(start_after)
        for status in statuses:
            await self.clock.sleep(responders.PROGRESS_STEP_SECONDS)
            payload: Payload = {"status": status}
            if request_id is not None:
                payload["requestId"] = request_id
            await self.call(action, payload)

    def seconds_until(self, timestamp: str) -> float:
        """Simulated seconds until a CSMS-given time (a retrieve date); 0 if it has passed."""
        when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        return max(0.0, (when - self.clock.now()).total_seconds())

    def profile_refused(self, evse: int, profile: Payload, tx_id: object) -> bool:
        """Whether a new charging profile cannot apply: an unknown connector, a TxProfile for
        a transaction not running there, a station-wide maximum on one connector."""
        if evse and evse not in self.connectors:
            return True
        purpose = profile["chargingProfilePurpose"]
        if purpose == "TxProfile":
            tx = self.connectors[evse].transaction if evse else None
            return tx is None or tx_id != profile.get("transactionId")
        return purpose in ("ChargePointMaxProfile", "ChargingStationMaxProfile") and evse != 0

    def composite_limit(self, evse: int, unit: str | None) -> tuple[str, float]:
        unit = unit or self.profiles.unit_for(evse)
        return unit, round(self.profiles.limit(evse, unit), 1)

    # ---- boot and presence ------------------------------------------------------------------
    async def boot(self, reason: str) -> None:
        """BootNotification until Accepted; a Pending answer is retried after its interval."""
        attempts = 0
        while True:
            attempts += 1
            interval = await self._send_boot(reason)
            if self.registration == "Accepted":
                await self.report_all_statuses()
                return
            if self.registration != "Pending":
                raise StepFailed(f"BootNotification {self.registration}")
            limit = self.options.max_boot_attempts
            if limit and attempts >= limit:
                raise StepFailed(f"BootNotification still Pending after {attempts} attempts")
            # A triggered BootNotification may be accepted while we wait.
            with self.clock.move_on_after(interval or DEFAULT_RETRY_SECONDS):
                await self._registration_changed.wait()

    async def _send_boot(self, reason: str) -> int:
        answer = await self.call(*self.boot_request(reason))
        self.report.boot_attempts += 1
        self.registration = self.report.boot_status = answer["status"]
        interval: int = answer["interval"]
        # The interval is the heartbeat interval once accepted, the retry delay before then.
        if self.registration == "Accepted" and interval > 0:
            self.config.set(HEARTBEAT_INTERVAL, str(interval))
        self.report.heartbeat_interval = self.config.seconds(HEARTBEAT_INTERVAL)
        self._registration_changed.fire()
        return interval

    async def heartbeat(self) -> None:
        await self.call("Heartbeat", {})
        self.report.heartbeats += 1
        self._heartbeat_sent.fire()

    async def heartbeat_loop(self) -> None:
        """Heartbeat after HeartbeatInterval without other traffic, as both versions define it;
        an edited interval takes effect at once."""
        while True:
            interval = self.config.seconds(HEARTBEAT_INTERVAL)
            idle = self.clock.elapsed() - self._last_activity
            if interval > 0 and idle >= interval - 1e-6:
                await self.heartbeat()
                continue
            with self.clock.move_on_after(interval - idle if interval > 0 else math.inf):
                await self.config.changed.wait()

    async def wait_heartbeats(self, count: int) -> None:
        if self.config.seconds(HEARTBEAT_INTERVAL) <= 0:
            raise StepFailed("heartbeats are disabled (HeartbeatInterval is 0)")
        target = self.report.heartbeats + count
        while self.report.heartbeats < target:
            await self._heartbeat_sent.wait()

    async def aligned_data_loop(self) -> None:
        """MeterValues on ClockAlignedDataInterval boundaries of the (simulated) UTC day."""
        while True:
            interval = self.config.seconds(ALIGNED_INTERVAL)
            if interval <= 0:
                await self.config.changed.wait()
                continue
            now = self.clock.now()
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            wait = interval - (now - midnight).total_seconds() % interval
            with self.clock.move_on_after(wait) as timer:
                await self.config.changed.wait()
            if timer.cancelled_caught:
                for connector in self.connectors.values():
                    await self.send_meter_values(connector, "Sample.Clock")

    async def ping_loop(self, ws: WebSocketConnection, on_dead: Callable[[str], None]) -> None:
        """WebSocket pings every WebSocketPingInterval; a missing pong means a dead link."""
        while True:
            interval = self.config.seconds(WS_PING_INTERVAL)
            if interval <= 0:
                await self.config.changed.wait()
                continue
            with self.clock.move_on_after(interval) as timer:
                await self.config.changed.wait()
            if not timer.cancelled_caught:
                continue
            # The pong wait is network time, not simulated time.
            with trio.move_on_after(self.options.call_timeout) as wait:
                try:
                    await ws.ping()
                except ConnectionClosed:
                    return  # the reader reports the closed link
            if wait.cancelled_caught:
                on_dead(f"no pong within {self.options.call_timeout:g} s")
                return

    # ---- connector status -------------------------------------------------------------------
    async def report_all_statuses(self) -> None:
        for connector in self.connectors.values():
            connector.status = self._idle_status(connector)
            await self._send_status(connector)

    async def set_status(self, connector: Connector, status: str) -> None:
        connector.status = status
        if self.wire_status(status) == connector.reported:
            return
        delay = self.minimum_status_duration()
        if delay <= 0:
            await self._send_status(connector)
        elif not connector.report_pending:
            connector.report_pending = True
            self.spawn(functools.partial(self._report_later, connector, delay),
                       "StatusNotification")

    def minimum_status_duration(self) -> int:
        return 0

    async def _report_later(self, connector: Connector, delay: float) -> None:
        # Only a status that held for MinimumStatusDuration is worth a message.
        await self.clock.sleep(delay)
        connector.report_pending = False
        if self.wire_status(connector.status) != connector.reported:
            await self._send_status(connector)

    async def _send_status(self, connector: Connector) -> None:
        wire = self.wire_status(connector.status)
        await self.call(*self.status_request(connector, wire))
        connector.reported = wire
        self.report.status(connector.id, wire)

    def _idle_status(self, connector: Connector) -> str:
        if connector.transaction is not None:
            return connector.status
        return AVAILABLE if connector.operative else UNAVAILABLE

    async def settle(self, connector: Connector) -> None:
        """After a session or an availability change: report where the connector now is."""
        await self.set_status(connector, self._idle_status(connector))

    @staticmethod
    def release(connector: Connector, tx: SimTransaction) -> None:
        """End the session's hold on the connector. Synchronous, so that a Reset cancelling
        the status reports that follow cannot lose a scheduled availability change."""
        connector.transaction = None
        connector.register_wh = tx.register_wh
        if connector.scheduled_operative is not None:
            connector.operative = connector.scheduled_operative
            connector.scheduled_operative = None
        tx.finished.set()

    def change_availability(self, targets: list[Connector], operative: bool) -> Answer:
        """Shared by both versions: busy connectors change once their session ends."""
        scheduled = False
        for connector in targets:
            if connector.transaction is not None:
                connector.scheduled_operative = operative
                scheduled = True
            else:
                connector.operative = operative
        status = "Scheduled" if scheduled else "Accepted"
        return Answer.ok({"status": status}, then=functools.partial(self._settle_all, targets))

    async def _settle_all(self, targets: list[Connector]) -> None:
        for connector in targets:
            await self.settle(connector)

    # ---- measuring --------------------------------------------------------------------------
    def readings(self, connector: Connector, measurands: Iterable[str], *,
                 at: float | None = None) -> list[Reading]:
        """The measurands' values; with `at` (elapsed seconds), the register as the meter
        shows it then, not at the last sampling tick (a triggered reading, a sample kept for
        the stop message)."""
        tx = connector.transaction
        power = tx.power_w if tx is not None else 0.0
        register = tx.register_wh if tx is not None else connector.register_wh
        if at is not None and tx is not None:
            register = tx.register_at(at)
        values = {
            ENERGY: Reading(ENERGY, register, "Wh"),
            POWER: Reading(POWER, round(power, 1), "W"),
            CURRENT: Reading(CURRENT, round(power / NOMINAL_VOLTAGE, 1), "A"),
            VOLTAGE: Reading(VOLTAGE, NOMINAL_VOLTAGE, "V"),
        }
        return [values[m] for m in dict.fromkeys(measurands) if m in values]

    def ended_readings(self, connector: Connector) -> list[Reading]:
        # The register always closes a session, whatever else the CSMS asked for.
        return self.readings(connector, [ENERGY, *self.config.items(STOP_TXN_DATA)])

    # ---- charging ---------------------------------------------------------------------------
    def free_connector(self, wanted: int | None) -> Connector | None:
        if wanted is not None:
            connector = self.connectors.get(wanted)
            return connector if connector is not None and connector.is_free else None
        return next((c for c in self.connectors.values() if c.is_free), None)

    def new_transaction(self, connector: Connector, id_tag: str, plan: ChargePlan,
                        remote_start_id: int | None = None) -> SimTransaction:
        """Claim the connector at once, so a second remote start cannot take it too."""
        tx = SimTransaction(connector.id, id_tag, connector.register_wh, plan,
                            self.clock.elapsed(), remote_start_id)
        connector.transaction = tx
        return tx

    def transactions(self) -> list[SimTransaction]:
        return [c.transaction for c in self.connectors.values() if c.transaction is not None]

    async def charge(self, tx: SimTransaction, *, authorize: bool = True) -> None:
        """Plug in, authorize, start, sample until the plan ends or a stop, stop, unplug."""
        connector = self.connectors[tx.connector_id]
        refused: StepFailed | None = None
        try:
            await self.set_status(connector, PREPARING)
            if authorize:
                status = await self.authorize(tx.id_tag)
                if status != "Accepted":
                    raise StepFailed(f"Authorize {tx.id_tag}: {status}")
            await self._run_transaction(connector, tx)
        except StepFailed as exc:
            refused = exc
        finally:
            self.release(connector, tx)
            # A TxProfile lives as long as its transaction.
            self.profiles.clear(purpose="TxProfile", evse=connector.id)
        # A refused driver unplugs too: the connector must not stay Preparing.
        if refused is None:
            await self.set_status(connector, FINISHING)
        await self.settle(connector)
        if refused is not None:
            raise refused

    async def _run_transaction(self, connector: Connector, tx: SimTransaction) -> None:
        tx.started_at = tx.last_reading_at = tx.ended_sampled_at = self.clock.elapsed()
        auth = await self.start_transaction(tx)
        self._record_transaction(tx)
        if auth != "Accepted" and self.config.flag(STOP_ON_INVALID_ID):
            await self.stop_transaction(tx, "DeAuthorized")
            self._record_transaction(tx, "DeAuthorized")
            raise StepFailed(f"transaction refused: id tag {tx.id_tag} is {auth}")
        await self.set_status(connector, CHARGING)
        await self._sample_until_stopped(connector, tx)
        reason = tx.stop_reason or "Local"
        await self.stop_transaction(tx, reason)
        self._record_transaction(tx, reason)

    async def _sample_until_stopped(self, connector: Connector, tx: SimTransaction) -> None:
        """One sample per interval; the plan's last stretch ends the session unsampled, its
        closing reading going into the stop message instead. Live samples go out when the
        interval and the measurand list are set (1.6 MeterValueSampleInterval and
        MeterValuesSampledData, 2.x TxUpdatedInterval and TxUpdatedMeasurands); samples for
        the stop message are kept on their own grid (`ended_interval`)."""
        while True:
            # With sampling off (interval 0) the EV still charges; only the messages stop.
            step_every = self.config.seconds(SAMPLE_INTERVAL) or DEFAULT_TICK_SECONDS
            step_due = _on_grid(tx.last_reading_at, tx.started_at, step_every)
            ended_every = self.ended_interval()
            ended_due = (_on_grid(tx.ended_sampled_at, tx.started_at, ended_every)
                         if ended_every > 0 else math.inf)
            due = min(step_due, ended_due)
            with self.clock.move_on_after(max(due - self.clock.elapsed(), 0.0)):
                await tx.stop_requested.wait()
            stopped = tx.stop_requested.is_set()
            now = self.clock.elapsed()
            if stopped or due == step_due:
                if not stopped:
                    tx.steps += 1
                tx.advance(now)
                if stopped or tx.steps == tx.plan.final_step:
                    return
            # One instant for both, so that a sample both sent live and kept for the stop is
            # the same sample (the CSMS stores it once).
            at = self.clock.timestamp()
            if due == ended_due:
                tx.ended_sampled_at = now
                # At `now`: the very value a live sample of this instant carries.
                readings = self.readings(connector, self.config.items(STOP_TXN_DATA), at=now)
                if readings:
                    tx.keep_ended_sample(self._meter_value(readings, "Sample.Periodic", at))
            if due == step_due and self.config.seconds(SAMPLE_INTERVAL) > 0:
                await self.send_meter_values(connector, "Sample.Periodic", at)

    def ended_interval(self) -> int:
        """Seconds between the samples kept for the stop message (0: only the closing one)."""
        return 0

    def _record_transaction(self, tx: SimTransaction, stop_reason: str | None = None) -> None:
        entry = {
            "id": tx.csms_id if tx.csms_id is not None else tx.station_tx_id,
            "connector": tx.connector_id, "id_tag": tx.id_tag,
            "meter_start_wh": tx.meter_start_wh, "meter_stop_wh": None, "energy_wh": None,
            "stop_reason": stop_reason, "remote_start_id": tx.remote_start_id,
        }
        if stop_reason is not None:
            entry.update(meter_stop_wh=tx.register_wh,
                         energy_wh=tx.register_wh - tx.meter_start_wh)
        for index, known in enumerate(self.report.transactions):
            if known["id"] == entry["id"]:
                self.report.transactions[index] = entry
                return
        _append_bounded(self.report.transactions, entry)

    async def remote_charge(self, tx: SimTransaction) -> None:
        """A session the CSMS started: it charges at power_w until someone stops it."""
        await self.charge(tx, authorize=self.config.flag(AUTHORIZE_REMOTE))

    def remote_plan(self) -> ChargePlan:
        return ChargePlan(self.options.power_w)

    async def stop_all(self, reason: str) -> None:
        running = self.transactions()
        for tx in running:
            tx.request_stop(reason)
        for tx in running:
            await tx.finished.wait()

    # ---- reboot -----------------------------------------------------------------------------
    async def reboot(self, stop_reason: str) -> None:
        """End every session, then drop the link; `run` reconnects and boots again."""
        self.log(f"== rebooting ({stop_reason})")
        await self.stop_all(stop_reason)
        self.report.reboots += 1
        self._reboot_requested = True
        if self._tasks is not None:
            self._tasks.cancel_scope.cancel()

    async def reboot_when_idle(self, stop_reason: str) -> None:
        for tx in self.transactions():
            await tx.finished.wait()
        await self.reboot(stop_reason)

    # ---- a whole run ------------------------------------------------------------------------
    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def shut_down(self) -> None:
        """End `run` from outside. Only the connection's own work is cancelled, so the
        WebSocket still closes with a proper close frame."""
        self._shutting_down = True
        if self._tasks is not None:
            self._tasks.cancel_scope.cancel()
        elif self._run_scope is not None:
            self._run_scope.cancel()

    async def run(self) -> Report:
        """Connect, boot, run the scenario, linger; reconnect after a Reset. Never raises a
        SimFailure: the report carries it."""
        try:
            with trio.CancelScope() as self._run_scope:
                while not self._shutting_down:
                    self._reboot_requested = False
                    await self._serve_connection()
                    if not self._reboot_requested:
                        break
                    self._boot_reason = self.reboot_reason
        except SimFailure as exc:
            self.report.fail(str(exc), exc.exit_code)
        self.report.heartbeat_interval = self.config.seconds(HEARTBEAT_INTERVAL)
        self.log(f"== done: {'ok' if self.report.ok else 'FAILED: ' + str(self.report.error)}")
        return self.report

    async def _serve_connection(self) -> None:
        url = station_url(self.options.url, self.options.station_id)
        self.log(f"== connecting to {url} as {self.version.value}")
        try:
            async with open_websocket_url(
                url, subprotocols=[self.version.value],
                extra_headers=basic_auth_headers(self.options.station_id, self.options.password),
                connect_timeout=CONNECT_TIMEOUT, disconnect_timeout=DISCONNECT_TIMEOUT,
            ) as ws:
                failure = await self._serve_socket(ws)
        except ConnectionRejected as exc:
            body = (exc.body or b"").decode("utf-8", "replace").strip()
            raise LinkLost(f"CSMS refused the connection: HTTP {exc.status_code} {body}"
                           ) from None
        except (HandshakeError, OSError) as exc:
            raise LinkLost(f"could not connect to {url}: {exc!r}") from None
        if failure is not None:
            raise failure

    async def _serve_socket(self, ws: WebSocketConnection) -> SimFailure | None:
        if ws.subprotocol != self.version.value:
            return LinkLost(f"the CSMS agreed to {ws.subprotocol!r}, not {self.version.value}")
        failure: SimFailure | None = None
        async with trio.open_nursery() as nursery:
            link = RpcLink(ws, self.version, answer=self._answer_inbound, spawn=self.spawn,
                           log=self.log, call_timeout=self.options.call_timeout)
            self.attach(link, nursery)
            nursery.start_soon(self._read, link, nursery.cancel_scope)
            try:
                await self._lifecycle(ws, link)
            except SimFailure as exc:
                failure = exc
            nursery.cancel_scope.cancel()
        self.detach()
        expected = self._reboot_requested or self._shutting_down
        if failure is None and link.close_reason is not None and not expected:
            failure = LinkLost(f"the CSMS closed the connection: {link.close_reason}")
        return failure

    async def _read(self, link: RpcLink, scope: trio.CancelScope) -> None:
        try:
            await link.serve()
        finally:
            scope.cancel()

    async def _lifecycle(self, ws: WebSocketConnection, link: RpcLink) -> None:
        await self.boot(self._boot_reason)
        assert self._tasks is not None
        self._tasks.start_soon(self._guarded, self.heartbeat_loop, "Heartbeat")
        self._tasks.start_soon(self._guarded, self.aligned_data_loop, "aligned MeterValues")

        def dead(reason: str) -> None:
            link.close_reason = reason
            self.log(f"!! {reason}")
            if self._tasks is not None:
                self._tasks.cancel_scope.cancel()

        self._tasks.start_soon(self.ping_loop, ws, dead)
        if not self._scenario_started:
            self._scenario_started = True
            await SCENARIOS[self.options.scenario](self)
            self.report.scenario_completed = True
        if self._linger_until is None:
            self._linger_until = self.clock.elapsed() + self.options.linger
        await self.clock.sleep_until(self._linger_until)


# ---- OCPP 1.6J ---------------------------------------------------------------------------------
class StationV16(ChargingStation):
    RESET_REASONS: ClassVar[dict[str, str]] = {"Hard": "HardReset", "Soft": "SoftReset"}
    TRIGGERABLE: ClassVar[frozenset[str]] = frozenset({
        "BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification",
        "Heartbeat", "MeterValues", "StatusNotification"})

    def boot_request(self, reason: str) -> Request:
        return "BootNotification", {
            "chargePointVendor": VENDOR, "chargePointModel": MODEL,
            "chargePointSerialNumber": f"SIM-{self.options.station_id}"[:25],
            "firmwareVersion": FIRMWARE,
        }

    def status_request(self, connector: Connector, status: str) -> Request:
        return "StatusNotification", {"connectorId": connector.id, "errorCode": "NoError",
                                      "status": status, "timestamp": self.clock.timestamp()}

    def minimum_status_duration(self) -> int:
        return self.config.seconds(MIN_STATUS_DURATION)

    async def authorize(self, id_tag: str) -> str:
        answer = await self.call("Authorize", {"idTag": id_tag})
        return answer["idTagInfo"]["status"]

    async def start_transaction(self, tx: SimTransaction) -> str:
        answer = await self.call("StartTransaction", {
            "connectorId": tx.connector_id, "idTag": tx.id_tag,
            "meterStart": tx.meter_start_wh, "timestamp": self.clock.timestamp(),
        })
        tx.csms_id = answer["transactionId"]
        return answer["idTagInfo"]["status"]

    def _meter_value(self, readings: list[Reading], context: str, at: str | None = None
                     ) -> Payload:
        return {"timestamp": at or self.clock.timestamp(), "sampledValue": [
            {"value": _decimal(r.value), "context": context, "measurand": r.measurand,
             "location": "Outlet", "unit": r.unit} for r in readings]}

    def ended_interval(self) -> int:
        # 1.6: "StopTxnSampledData ... every MeterValueSampleInterval seconds".
        return self.config.seconds(SAMPLE_INTERVAL)

    async def send_meter_values(self, connector: Connector, context: str,
                                at: str | None = None) -> None:
        key = ALIGNED_DATA if context == "Sample.Clock" else SAMPLED_DATA
        measurands = self.config.items(key)
        if context == "Trigger":
            # A triggered reading carries the register even when live sampling is off
            # (MeterValuesSampledData emptied): it is what the CSMS asked for.
            measurands = [ENERGY, *measurands]
        readings = self.readings(connector, measurands,
                                 at=self.clock.elapsed() if context == "Trigger" else None)
        if not readings:
            return
        payload: Payload = {"connectorId": connector.id,
                            "meterValue": [self._meter_value(readings, context, at)]}
        tx = connector.transaction
        if tx is not None and tx.csms_id is not None:
            payload["transactionId"] = tx.csms_id
        await self.call("MeterValues", payload)

    async def stop_transaction(self, tx: SimTransaction, reason: str) -> None:
        payload: Payload = {"transactionId": tx.csms_id, "meterStop": tx.register_wh,
                            "timestamp": self.clock.timestamp(), "reason": reason}
        if self.config.items(STOP_TXN_DATA):
            connector = self.connectors[tx.connector_id]
            payload["transactionData"] = [
                *tx.ended_samples,
                self._meter_value(self.ended_readings(connector), "Transaction.End")]
        await self.call("StopTransaction", payload)

    # ---- answers to the CSMS ----------------------------------------------------------------
    def handlers(self) -> dict[str, Handler]:
        return {
            "GetConfiguration": self._get_configuration,
            "ChangeConfiguration": self._change_configuration,
            "Reset": self._reset,
            "RemoteStartTransaction": self._remote_start,
            "RemoteStopTransaction": self._remote_stop,
            "TriggerMessage": self._trigger,
            "ChangeAvailability": self._change_availability,
            "UnlockConnector": self._unlock,
            "ClearCache": lambda p: Answer.ok({"status": "Accepted"}),
            "DataTransfer": lambda p: Answer.ok({"status": "UnknownVendorId"}),
            "SetChargingProfile": self._set_charging_profile,
            "ClearChargingProfile": self._clear_charging_profile,
            "GetCompositeSchedule": self._composite_schedule,
            "UpdateFirmware": self._update_firmware,
            "GetDiagnostics": self._get_diagnostics,
        }

    def _set_charging_profile(self, p: Payload) -> Answer:
        connector, profile = p["connectorId"], p["csChargingProfiles"]
        tx = self.connectors[connector].transaction if connector in self.connectors else None
        if self.profile_refused(connector, profile, None if tx is None else tx.csms_id):
            return Answer.ok({"status": "Rejected"})
        self.profiles.set(connector, profile)
        return Answer.ok({"status": "Accepted"})

    def _clear_charging_profile(self, p: Payload) -> Answer:
        found = self.profiles.clear(
            profile_ids=[p["id"]] if "id" in p else None, evse=p.get("connectorId"),
            purpose=p.get("chargingProfilePurpose"), stack_level=p.get("stackLevel"))
        return Answer.ok({"status": "Accepted" if found else "Unknown"})

    def _composite_schedule(self, p: Payload) -> Answer:
        connector = p["connectorId"]
        if connector and connector not in self.connectors:
            return Answer.ok({"status": "Rejected"})
        unit, limit = self.composite_limit(connector, p.get("chargingRateUnit"))
        return Answer.ok({"status": "Accepted", "connectorId": connector,
                          "scheduleStart": self.clock.timestamp(), "chargingSchedule": {
                              "duration": p["duration"], "chargingRateUnit": unit,
                              "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}})

    def _update_firmware(self, p: Payload) -> Answer:
        # 1.6 statuses carry no request id: the CSMS matches them to its latest request.
        return Answer.ok({}, then=functools.partial(
            self.report_progress, "FirmwareStatusNotification", responders.FIRMWARE_STEPS,
            None, self.seconds_until(p["retrieveDate"])))

    def _get_diagnostics(self, p: Payload) -> Answer:
        name = f"diagnostics-{self.options.station_id}-{int(self.clock.now().timestamp())}.log"
        return Answer.ok({"fileName": name}, then=functools.partial(
            self.report_progress, "DiagnosticsStatusNotification", responders.UPLOAD_STEPS,
            None))

    def _get_configuration(self, p: Payload) -> Answer:
        wanted = p.get("key")
        known = self.config.v16_settings()
        if wanted:
            by_key = {s.key: s for s in known}
            known = [by_key[k] for k in dict.fromkeys(wanted) if k in by_key]
            unknown = [k for k in dict.fromkeys(wanted) if k not in by_key]
        else:
            unknown = []
        answer: Payload = {"configurationKey": [
            {"key": s.key, "readonly": s.readonly, "value": s.value} for s in known]}
        if unknown:
            answer["unknownKey"] = unknown
        return Answer.ok(answer)

    def _change_configuration(self, p: Payload) -> Answer:
        setting = self.config.lookup_v16(p["key"])
        if setting is None:
            return Answer.ok({"status": "NotSupported"})
        accepted = self.config.change(setting, p["value"])
        return Answer.ok({"status": "Accepted" if accepted else "Rejected"})

    def _reset(self, p: Payload) -> Answer:
        reason = self.RESET_REASONS[p["type"]]
        return Answer.ok({"status": "Accepted"}, then=functools.partial(self.reboot, reason))

    def _remote_start(self, p: Payload) -> Answer:
        wanted = p.get("connectorId")
        connector = None if wanted == 0 else self.free_connector(wanted)
        if connector is None:
            return Answer.ok({"status": "Rejected"})
        tx = self.new_transaction(connector, p["idTag"], self.remote_plan())
        return Answer.ok({"status": "Accepted"},
                         then=functools.partial(self.remote_charge, tx))

    def _remote_stop(self, p: Payload) -> Answer:
        tx = next((t for t in self.transactions() if t.csms_id == p["transactionId"]), None)
        if tx is None:
            return Answer.ok({"status": "Rejected"})
        return Answer.ok({"status": "Accepted"},
                         then=functools.partial(_request_stop, tx, "Remote"))

    def _targets(self, connector_id: int | None) -> list[Connector] | None:
        """Connector 0 or none means all of them; an unknown connector means None."""
        if not connector_id:
            return list(self.connectors.values())
        connector = self.connectors.get(connector_id)
        return None if connector is None else [connector]

    def _trigger(self, p: Payload) -> Answer:
        requested = p["requestedMessage"]
        targets = self._targets(p.get("connectorId"))
        if targets is None or requested not in self.TRIGGERABLE:
            return Answer.ok({"status": "Rejected"})
        return Answer.ok({"status": "Accepted"},
                         then=functools.partial(self._send_triggered, requested, targets))

    async def _send_triggered(self, requested: str, targets: list[Connector]) -> None:
        match requested:
            case "BootNotification":
                await self._send_boot(self._boot_reason)
            case "Heartbeat":
                await self.heartbeat()
            case "StatusNotification":
                for connector in targets:
                    await self._send_status(connector)
            case "MeterValues":
                for connector in targets:
                    await self.send_meter_values(connector, "Trigger")
            case _:
                await self.call(requested, {"status": "Idle"})

    def _change_availability(self, p: Payload) -> Answer:
        targets = self._targets(p["connectorId"])
        if targets is None:
            return Answer.ok({"status": "Rejected"})
        return self.change_availability(targets, p["type"] == "Operative")

    def _unlock(self, p: Payload) -> Answer:
        connector = self.connectors.get(p["connectorId"])
        if connector is None:
            return Answer.ok({"status": "NotSupported"})
        tx = connector.transaction
        # 1.6: unlocking a connector in use ends its session first.
        then = None if tx is None else functools.partial(_request_stop, tx, "UnlockCommand")
        return Answer.ok({"status": "Unlocked"}, then=then)


# ---- OCPP 2.0.1 and 2.1 ------------------------------------------------------------------------
class StationV2(ChargingStation):
    """2.0.1, and 2.1 which keeps these messages' shapes; each version's schemas check them."""

    WIRE_STATUS: ClassVar[dict[str, str]] = {PREPARING: "Occupied", CHARGING: "Occupied",
                                             FINISHING: "Occupied"}
    START_TRIGGERS: ClassVar[dict[bool, str]] = {False: "Authorized", True: "RemoteStart"}
    STOP_TRIGGERS: ClassVar[dict[str, str]] = {
        "Local": "StopAuthorized", "Remote": "RemoteStop", "DeAuthorized": "Deauthorized",
        "ImmediateReset": "ResetCommand", "EVDisconnected": "EVCommunicationLost"}
    METER_TRIGGERS: ClassVar[dict[str, str]] = {
        "Sample.Periodic": "MeterValuePeriodic", "Sample.Clock": "MeterValueClock",
        "Trigger": "Trigger"}
    IMPLEMENTED_TRIGGERS: ClassVar[frozenset[str]] = frozenset({
        "BootNotification", "Heartbeat", "StatusNotification", "MeterValues",
        "TransactionEvent", "FirmwareStatusNotification", "LogStatusNotification"})

    def wire_status(self, status: str) -> str:
        return self.WIRE_STATUS.get(status, status)

    def boot_request(self, reason: str) -> Request:
        return "BootNotification", {"reason": reason, "chargingStation": {
            "model": MODEL, "vendorName": VENDOR, "firmwareVersion": FIRMWARE,
            "serialNumber": f"SIM-{self.options.station_id}"[:25]}}

    def status_request(self, connector: Connector, status: str) -> Request:
        return "StatusNotification", {"timestamp": self.clock.timestamp(),
                                      "connectorStatus": status, "evseId": connector.id,
                                      "connectorId": 1}

    @staticmethod
    def _id_token(id_tag: str) -> Payload:
        return {"idToken": id_tag, "type": "ISO14443"}

    async def authorize(self, id_tag: str) -> str:
        answer = await self.call("Authorize", {"idToken": self._id_token(id_tag)})
        return answer["idTokenInfo"]["status"]

    def _meter_value(self, readings: list[Reading], context: str, at: str | None = None
                     ) -> Payload:
        return {"timestamp": at or self.clock.timestamp(), "sampledValue": [
            {"value": _number(r.value), "context": context, "measurand": r.measurand,
             "location": "Outlet", "unitOfMeasure": {"unit": r.unit}} for r in readings]}

    def ended_interval(self) -> int:
        return self.config.seconds(ENDED_INTERVAL)

    def _transaction_event(self, tx: SimTransaction, event_type: str, trigger: str,
                           info: Payload, meter_value: Payload | None) -> Payload:
        payload: Payload = {
            "eventType": event_type, "timestamp": self.clock.timestamp(),
            "triggerReason": trigger, "seqNo": tx.next_seq_no(),
            "transactionInfo": {"transactionId": tx.station_tx_id, **info},
            "evse": {"id": tx.connector_id, "connectorId": 1},
        }
        if meter_value is not None:
            payload["meterValue"] = [meter_value]
        return payload

    async def start_transaction(self, tx: SimTransaction) -> str:
        info: Payload = {"chargingState": "Charging"}
        if tx.remote_start_id is not None:
            info["remoteStartId"] = tx.remote_start_id
        begin = self._meter_value([Reading(ENERGY, tx.meter_start_wh, "Wh")],
                                  "Transaction.Begin")
        payload = self._transaction_event(
            tx, "Started", self.START_TRIGGERS[tx.remote_start_id is not None], info, begin)
        payload["idToken"] = self._id_token(tx.id_tag)
        answer = await self.call("TransactionEvent", payload)
        return answer.get("idTokenInfo", {}).get("status", "Accepted")

    async def send_meter_values(self, connector: Connector, context: str,
                                at: str | None = None) -> None:
        """Sample.Periodic (TxUpdatedMeasurands) and Sample.Clock (AlignedDataCtrlr
        .Measurands): a TransactionEvent Updated during a session, else a MeterValues.
        Trigger, a triggered MeterValues: a MeterValues with the aligned measurands and the
        register, during a session too (2.0.1 F06: TriggerMessage MeterValues is answered with
        a MeterValues). "TransactionEvent", a triggered one: Updated, triggerReason Trigger."""
        key = SAMPLED_DATA if context in ("Sample.Periodic", "TransactionEvent") else (
            ALIGNED_DATA)
        measurands = self.config.items(key)
        if context == "Trigger":
            measurands = [ENERGY, *measurands]
        triggered = context in ("Trigger", "TransactionEvent")
        readings = self.readings(connector, measurands,
                                 at=self.clock.elapsed() if triggered else None)
        if not readings:
            return
        wire_context = "Trigger" if context == "TransactionEvent" else context
        meter_value = self._meter_value(readings, wire_context, at)
        tx = connector.transaction
        if tx is None or context == "Trigger":
            await self.call("MeterValues", {"evseId": connector.id, "meterValue": [meter_value]})
            return
        await self.call("TransactionEvent", self._transaction_event(
            tx, "Updated", self.METER_TRIGGERS[wire_context], {"chargingState": "Charging"},
            meter_value))

    async def stop_transaction(self, tx: SimTransaction, reason: str) -> None:
        connector = self.connectors[tx.connector_id]
        end = self._meter_value(self.ended_readings(connector), "Transaction.End")
        info = {"chargingState": "EVConnected", "stoppedReason": reason}
        payload = self._transaction_event(
            tx, "Ended", self.STOP_TRIGGERS.get(reason, "AbnormalCondition"), info, end)
        payload["meterValue"] = [*tx.ended_samples, end]
        await self.call("TransactionEvent", payload)

    # ---- answers to the CSMS ----------------------------------------------------------------
    def handlers(self) -> dict[str, Handler]:
        return {
            "GetVariables": self._get_variables,
            "SetVariables": self._set_variables,
            "Reset": self._reset,
            "RequestStartTransaction": self._request_start,
            "RequestStopTransaction": self._request_stop,
            "TriggerMessage": self._trigger,
            "ChangeAvailability": self._change_availability,
            "UnlockConnector": self._unlock,
            "ClearCache": lambda p: Answer.ok({"status": "Accepted"}),
            "DataTransfer": lambda p: Answer.ok({"status": "UnknownVendorId"}),
            "SetChargingProfile": self._set_charging_profile,
            "ClearChargingProfile": self._clear_charging_profile,
            "GetChargingProfiles": self._get_charging_profiles,
            "GetCompositeSchedule": self._composite_schedule,
            "UpdateFirmware": self._update_firmware,
            "GetLog": self._get_log,
            "GetBaseReport": self._base_report,
            "GetReport": self._get_report,
            "GetTransactionStatus": self._transaction_status,
        }

    def _set_charging_profile(self, p: Payload) -> Answer:
        evse, profile = p["evseId"], p["chargingProfile"]
        tx = self.connectors[evse].transaction if evse in self.connectors else None
        if self.profile_refused(evse, profile, None if tx is None else tx.station_tx_id):
            return Answer.ok({"status": "Rejected"})
        self.profiles.set(evse, profile)
        return Answer.ok({"status": "Accepted"})

    def _clear_charging_profile(self, p: Payload) -> Answer:
        criteria = p.get("chargingProfileCriteria", {})
        found = self.profiles.clear(
            profile_ids=[p["chargingProfileId"]] if "chargingProfileId" in p else None,
            evse=criteria.get("evseId"), purpose=criteria.get("chargingProfilePurpose"),
            stack_level=criteria.get("stackLevel"))
        return Answer.ok({"status": "Accepted" if found else "Unknown"})

    def _get_charging_profiles(self, p: Payload) -> Answer:
        criteria = p["chargingProfile"]
        found = self.profiles.matching(
            profile_ids=criteria.get("chargingProfileId"), evse=p.get("evseId"),
            purpose=criteria.get("chargingProfilePurpose"),
            stack_level=criteria.get("stackLevel"))
        if not found:
            return Answer.ok({"status": "NoProfiles"})
        return Answer.ok({"status": "Accepted"}, then=functools.partial(
            self._report_profiles, p["requestId"], found))

    async def _report_profiles(self, request_id: int, found: list[Any]) -> None:
        evses = sorted({profile.evse for profile in found})
        for n, evse in enumerate(evses):
            await self.call("ReportChargingProfiles", {
                "requestId": request_id, "chargingLimitSource": "CSO", "evseId": evse,
                "chargingProfile": [p.profile for p in found if p.evse == evse],
                "tbc": n < len(evses) - 1})

    def _composite_schedule(self, p: Payload) -> Answer:
        evse = p["evseId"]
        if evse and evse not in self.connectors:
            return Answer.ok({"status": "Rejected"})
        unit, limit = self.composite_limit(evse, p.get("chargingRateUnit"))
        return Answer.ok({"status": "Accepted", "schedule": {
            "evseId": evse, "duration": p["duration"], "scheduleStart": self.clock.timestamp(),
            "chargingRateUnit": unit,
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}})

    def _update_firmware(self, p: Payload) -> Answer:
        return Answer.ok({"status": "Accepted"}, then=functools.partial(
            self.report_progress, "FirmwareStatusNotification", responders.FIRMWARE_STEPS,
            p["requestId"], self.seconds_until(p["firmware"]["retrieveDateTime"])))

    def _get_log(self, p: Payload) -> Answer:
        name = (f"{p['logType']}-{self.options.station_id}-"
                f"{int(self.clock.now().timestamp())}.log")
        return Answer.ok({"status": "Accepted", "filename": name}, then=functools.partial(
            self.report_progress, "LogStatusNotification", responders.UPLOAD_STEPS,
            p["requestId"]))

    def _device_model(self) -> list[Payload]:
        """The station's variables as reportData: its settings, and each EVSE's state."""
        entries = [responders.variable_entry({"name": s.v2[0]}, s.v2[1], s.value, s.readonly,
                                             s.kind.value, s.allowed)
                   for s in self.config.v2_settings() if s.v2 is not None]
        entries += [responders.variable_entry(
            {"name": "EVSE", "evse": {"id": c.id}}, "AvailabilityState",
            self.wire_status(c.status), True, "text") for c in self.connectors.values()]
        return entries

    def _base_report(self, p: Payload) -> Answer:
        entries = self._device_model()
        if p["reportBase"] == "ConfigurationInventory":
            entries = [e for e in entries
                       if e["variableAttribute"][0]["mutability"] == "ReadWrite"]
        elif p["reportBase"] == "SummaryInventory":
            entries = [e for e in entries if e["component"]["name"] == "EVSE"]
        return self._report(p["requestId"], entries)

    def _get_report(self, p: Payload) -> Answer:
        criteria = p.get("componentVariable")
        return self._report(p["requestId"], [
            e for e in self._device_model()
            if criteria is None or responders.wanted_by(e, criteria)])

    def _report(self, request_id: int, entries: list[Payload]) -> Answer:
        if not entries:
            return Answer.ok({"status": "EmptyResultSet"})
        return Answer.ok({"status": "Accepted"}, then=functools.partial(
            self._send_report, request_id, entries))

    async def _send_report(self, request_id: int, entries: list[Payload]) -> None:
        for part in responders.report_parts(entries, request_id, self.clock.timestamp()):
            await self.call("NotifyReport", part)

    def _transaction_status(self, p: Payload) -> Answer:
        # Events go out as they happen: nothing ever waits in this station's queue.
        answer: Payload = {"messagesInQueue": False}
        if "transactionId" in p:
            answer["ongoingIndicator"] = any(
                t.station_tx_id == p["transactionId"] for t in self.transactions())
        return Answer.ok(answer)

    def _resolve(self, component: Payload, variable: Payload) -> tuple[str, Setting | None]:
        # Every setting here is station-wide: an EVSE or instance qualifier names nothing we have.
        if "evse" in component or "instance" in component or not self.config.has_component(
                component["name"]):
            return "UnknownComponent", None
        setting = None if "instance" in variable else self.config.lookup_v2(
            component["name"], variable["name"])
        return ("UnknownVariable", None) if setting is None else ("Accepted", setting)

    def _variable_result(self, item: Payload) -> tuple[Payload, Setting | None]:
        attribute = item.get("attributeType", "Actual")
        status, setting = self._resolve(item["component"], item["variable"])
        if setting is not None and attribute != "Actual":
            status, setting = "NotSupportedAttributeType", None
        result: Payload = {"attributeStatus": status, "attributeType": attribute,
                           "component": item["component"], "variable": item["variable"]}
        return result, setting

    def _get_variables(self, p: Payload) -> Answer:
        results = []
        for item in p["getVariableData"]:
            result, setting = self._variable_result(item)
            if setting is not None:
                result["attributeValue"] = setting.value
            results.append(result)
        return Answer.ok({"getVariableResult": results})

    def _set_variables(self, p: Payload) -> Answer:
        results = []
        for item in p["setVariableData"]:
            result, setting = self._variable_result(item)
            if setting is not None and not self.config.change(setting, item["attributeValue"]):
                result["attributeStatus"] = "Rejected"
            results.append(result)
        return Answer.ok({"setVariableResult": results})

    def _reset(self, p: Payload) -> Answer:
        if p.get("evseId"):
            return Answer.ok({"status": "Rejected"})
        if p["type"] == "OnIdle" and self.transactions():
            return Answer.ok({"status": "Scheduled"},
                             then=functools.partial(self.reboot_when_idle, "Local"))
        return Answer.ok({"status": "Accepted"},
                         then=functools.partial(self.reboot, "ImmediateReset"))

    def _request_start(self, p: Payload) -> Answer:
        connector = self.free_connector(p.get("evseId"))
        if connector is None:
            return Answer.ok({"status": "Rejected"})
        tx = self.new_transaction(connector, p["idToken"]["idToken"], self.remote_plan(),
                                  p["remoteStartId"])
        return Answer.ok({"status": "Accepted"}, then=functools.partial(self.remote_charge, tx))

    def _request_stop(self, p: Payload) -> Answer:
        wanted = p["transactionId"]
        tx = next((t for t in self.transactions() if t.station_tx_id == wanted), None)
        if tx is None:
            return Answer.ok({"status": "Rejected"})
        return Answer.ok({"status": "Accepted"},
                         then=functools.partial(_request_stop, tx, "Remote"))

    def _targets(self, evse: Payload | None) -> list[Connector] | None:
        """No EVSE or EVSE 0 means the whole station; an unknown one means None."""
        if evse is None or evse["id"] == 0:
            return list(self.connectors.values())
        connector = self.connectors.get(evse["id"])
        if connector is None or evse.get("connectorId", 1) != 1:
            return None
        return [connector]

    def _trigger(self, p: Payload) -> Answer:
        requested = p["requestedMessage"]
        if requested not in self.IMPLEMENTED_TRIGGERS:
            return Answer.ok({"status": "NotImplemented"})
        targets = self._targets(p.get("evse"))
        if targets is None:
            return Answer.ok({"status": "Rejected"})
        if requested == "BootNotification" and self.registration == "Accepted":
            # F06.FR.17: an accepted station refuses a triggered BootNotification.
            return Answer.ok({"status": "Rejected"})
        if requested == "TransactionEvent":
            targets = [c for c in targets if c.transaction is not None]
            if not targets:
                return Answer.ok({"status": "Rejected"})
        return Answer.ok({"status": "Accepted"},
                         then=functools.partial(self._send_triggered, requested, targets))

    async def _send_triggered(self, requested: str, targets: list[Connector]) -> None:
        match requested:
            case "BootNotification":
                await self._send_boot("Triggered")
            case "Heartbeat":
                await self.heartbeat()
            case "StatusNotification":
                for connector in targets:
                    await self._send_status(connector)
            case "MeterValues":
                for connector in targets:
                    await self.send_meter_values(connector, "Trigger")
            case "TransactionEvent":
                for connector in targets:
                    await self.send_meter_values(connector, "TransactionEvent")
            case _:
                await self.call(requested, {"status": "Idle"})

    def _change_availability(self, p: Payload) -> Answer:
        targets = self._targets(p.get("evse"))
        if targets is None:
            return Answer.ok({"status": "Rejected"})
        return self.change_availability(targets, p["operationalStatus"] == "Operative")

    def _unlock(self, p: Payload) -> Answer:
        connector = self.connectors.get(p["evseId"])
        if connector is None or p["connectorId"] != 1:
            return Answer.ok({"status": "UnknownConnector"})
        if connector.transaction is not None:
            return Answer.ok({"status": "OngoingAuthorizedTransaction"})
        return Answer.ok({"status": "Unlocked"})


def _on_grid(last: float, origin: float, interval: float) -> float:
    """The first instant after `last` on a grid of `interval` from `origin`: a meter samples
    on a fixed grid, so the time spent sending one sample does not push the next back."""
    due = last + interval
    return due - (due - origin) % interval


async def _request_stop(tx: SimTransaction, reason: str) -> None:
    tx.request_stop(reason)


# ---- scenarios ---------------------------------------------------------------------------------
async def scenario_boot(station: ChargingStation) -> None:
    """Nothing beyond what every connection does: BootNotification and connector statuses."""


async def scenario_heartbeat(station: ChargingStation) -> None:
    """Let the heartbeat task send N heartbeats at the interval the CSMS gave."""
    await station.wait_heartbeats(station.options.heartbeats)


async def scenario_charge(station: ChargingStation) -> None:
    """One session on connector 1 delivering exactly --energy-wh over --meter-values samples."""
    options = station.options
    connector = station.connectors[1]
    if not connector.is_free:
        raise StepFailed("connector 1 is not available")
    plan = ChargePlan(options.power_w, options.energy_wh, options.meter_values)
    tx = station.new_transaction(connector, options.id_tag, plan)
    try:
        await station.charge(tx)
    finally:
        report = station.report
        report.transaction_id = tx.csms_id if station.version is Version.OCPP16 else (
            tx.station_tx_id)
        report.meter_start_wh = tx.meter_start_wh
        report.meter_stop_wh = tx.register_wh
        report.energy_wh = tx.register_wh - tx.meter_start_wh


SCENARIOS: dict[str, Callable[[ChargingStation], Awaitable[None]]] = {
    "boot": scenario_boot,
    "heartbeat": scenario_heartbeat,
    "charge": scenario_charge,
}


# ---- helpers -----------------------------------------------------------------------------------
def make_station(options: StationOptions, *, clock: Clock | None = None,
                 log_stream: TextIO | None = None) -> ChargingStation:
    cls = StationV16 if options.protocol is Version.OCPP16 else StationV2
    return cls(options, clock=clock, log_stream=log_stream)


def station_url(base: str, station_id: str) -> str:
    """Chargers append their id to a configured base URL."""
    return f"{base.rstrip('/')}/{urllib.parse.quote(station_id, safe='')}"


def basic_auth_headers(station_id: str, password: str | None) -> list[tuple[bytes, bytes]]:
    """OCPP security profile 1: HTTP Basic auth with the station id as the user name."""
    if password is None:
        return []
    token = base64.b64encode(f"{station_id}:{password}".encode()).decode("ascii")
    return [(b"Authorization", f"Basic {token}".encode("ascii"))]


def _decimal(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _brief(payload: Payload | str, limit: int = 160) -> str:
    if isinstance(payload, dict):
        # The log line carries its own time; message timestamps would only crowd it.
        payload = {k: v for k, v in payload.items() if k not in ("timestamp", "currentTime")}
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- command line ------------------------------------------------------------------------------
def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Simulate an OCPP-J charging station against a CSMS.")
    add = parser.add_argument
    add("--url", required=True, help="CSMS base URL; /<id> is appended, as chargers do")
    add("--id", dest="station_id", required=True, help="charging station id")
    add("--password", help="HTTP Basic auth password (security profile 1)")
    add("--protocol", default="ocpp1.6", choices=sorted(SUPPORTED_SUBPROTOCOLS))
    add("--scenario", default="boot", choices=sorted(SCENARIOS))
    add("--connectors", type=int, default=1, help="connectors (1.6) or EVSEs (2.x)")
    add("--id-tag", default="SIMTAG01", help="the RFID tag the scenario charges with")
    add("--energy-wh", type=_count, default=10_000, help="energy the charge scenario delivers")
    add("--meter-values", type=_count, default=3, help="periodic samples in the charge scenario")
    add("--heartbeats", type=_count, default=3, help="heartbeats the heartbeat scenario waits for")
    add("--power-w", type=_positive, default=7400.0, help="power of remotely started sessions")
    add("--meter-start-wh", type=_count, default=1000, help="energy register at power-up")
    add("--linger", type=float, default=0.0,
        help="simulated seconds to stay connected after the scenario ('inf': until killed)")
    add("--time-scale", type=_positive, default=1.0,
        help="simulated seconds per real second; divides every interval")
    add("--call-timeout", type=_positive, default=30.0, help="real seconds to wait for an answer")
    add("--max-boot-attempts", type=_count, default=0,
        help="give up after this many Pending boots (0: keep trying, as a charger does)")
    add("--json", dest="json_summary", action="store_true",
        help="print a JSON summary on stdout (log on stderr)")
    return parser


def parse_args(argv: list[str] | None = None) -> StationOptions:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.connectors < 1:
        parser.error("--connectors must be at least 1")
    if args.password is not None and ":" in args.station_id:
        parser.error("a station id with ':' cannot be sent as a Basic auth user name")
    if args.linger < 0:
        parser.error("--linger must not be negative")
    values = vars(args)
    values["protocol"] = SUPPORTED_SUBPROTOCOLS[args.protocol]
    return StationOptions(**values)


async def run_until_signalled(station: ChargingStation) -> Report:
    """Run the station; SIGINT or SIGTERM ends it with a clean close and a report, which is
    how a `--linger inf` run is meant to end. A second signal stops it at once."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, station, nursery.cancel_scope)
        await station.run()
        nursery.cancel_scope.cancel()
    return station.report


async def _stop_on_signal(station: ChargingStation, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if station.shutting_down:
                scope.cancel()
                return
            station.report.fail(f"stopped by {signal.Signals(signum).name}", EXIT_INTERRUPTED)
            station.shut_down()


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    log_stream = sys.stderr if options.json_summary else sys.stdout
    station = make_station(options, log_stream=log_stream)
    report = trio.run(run_until_signalled, station)
    if options.json_summary:
        print(json.dumps(report.as_dict(), default=str), flush=True)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())

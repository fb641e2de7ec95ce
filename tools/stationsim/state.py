"""Station state: configuration, connectors, transactions, readings, the clock, the report.

What a charging station knows and remembers, free of any connection: the station in
station.py changes it, the responders answer from it, and a test can look at it directly.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import trio

from lite_csms.ocppj.framing import Payload
from lite_csms.ocppj.versions import Version

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
# A month of heartbeats must not grow the JSON summary without bound.
MAX_REPORTED_ENTRIES = 10_000

Request = tuple[str, Payload]

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
    # What the CSMS agreed to on the last connection ("ocpp1.6", "ocpp1.6.lite1").
    subprotocol: str | None = None
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
        append_bounded(self.steps, entry)

    def call_received(self, action: str, request: Payload, answer: Payload | str) -> None:
        append_bounded(self.calls_received,
                        {"action": action, "request": request, "answer": answer})

    def status(self, connector_id: int, status: str) -> None:
        self.statuses[str(connector_id)] = status
        append_bounded(self.status_history, [connector_id, status])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def append_bounded(entries: list[Any], entry: Any) -> None:
    if len(entries) < MAX_REPORTED_ENTRIES:
        entries.append(entry)


# ---- the run's options -------------------------------------------------------------------------
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
    # Offer the lite link (codecs/SPEC.md) first, plain OCPP-J after.
    lite: bool = False

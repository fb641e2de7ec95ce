"""The charging station: what every OCPP version shares, on any link.

Boot, heartbeats, connector statuses, charging sessions, meter readings and reboots, driven
by the station's state (state.py) over a `Link` (link.py) that the station is attached to.
answers.py adds the answers to the CSMS's calls, connection.py a whole run on real
connections, and the version classes (v16.py, v2.py) the wire format.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable
from typing import ClassVar, TextIO

import trio

from lite_csms.ocppj.framing import Payload
from lite_csms.ocppj.session import CallFailed
from lite_csms.ocppj.versions import Version

from . import responders
from .link import CONNECTION_CLOSED, FollowUp, Link
from .state import (
    ALIGNED_INTERVAL,
    AUTHORIZE_REMOTE,
    AVAILABLE,
    CHARGING,
    CURRENT,
    DEFAULT_RETRY_SECONDS,
    DEFAULT_TICK_SECONDS,
    ENERGY,
    FINISHING,
    HEARTBEAT_INTERVAL,
    NOMINAL_VOLTAGE,
    POWER,
    PREPARING,
    SAMPLE_INTERVAL,
    STOP_ON_INVALID_ID,
    STOP_TXN_DATA,
    UNAVAILABLE,
    VOLTAGE,
    ChargePlan,
    Clock,
    ConfigStore,
    Connector,
    LinkLost,
    Reading,
    Report,
    Request,
    Signal,
    SimFailure,
    SimTransaction,
    StationOptions,
    StepFailed,
    append_bounded,
    default_settings,
)
from .transport import TransportClosed


class ChargingStation:
    """Behaviour every OCPP version shares: boot, heartbeats, statuses, charging, reboots.

    Subclasses own the wire format: the payloads the station sends and the CSMS calls it
    answers (see answers.py). The state (configuration, connectors, transactions) lives
    here so a test can drive `handle_call` directly and look at what changed.
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
        except TransportClosed as exc:
            raise LinkLost(f"{action}: connection closed ({exc.detail})") from None
        # Idle time counts from the send: the answer's delay must not stretch the interval.
        self._last_activity = sent_at
        if isinstance(outcome, CallFailed):
            detail = f"{outcome.code} {outcome.description}".strip()
            self.report.step(action, error=detail)
            self.log(f"-> {action} FAILED {detail}")
            failure = LinkLost if outcome.code == CONNECTION_CLOSED else StepFailed
            raise failure(f"{action}: {detail}")
        self.report.step(action, answer=outcome.payload)
        self.log(f"-> {action} {brief(payload, 100)} => {brief(outcome.payload, 100)}")
        return outcome.payload

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
        append_bounded(self.report.transactions, entry)

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


def _on_grid(last: float, origin: float, interval: float) -> float:
    """The first instant after `last` on a grid of `interval` from `origin`: a meter samples
    on a fixed grid, so the time spent sending one sample does not push the next back."""
    due = last + interval
    return due - (due - origin) % interval


async def request_stop(tx: SimTransaction, reason: str) -> None:
    tx.request_stop(reason)


def brief(payload: Payload | str, limit: int = 160) -> str:
    if isinstance(payload, dict):
        # The log line carries its own time; message timestamps would only crowd it.
        payload = {k: v for k, v in payload.items() if k not in ("timestamp", "currentTime")}
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."

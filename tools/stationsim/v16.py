"""OCPP 1.6J: the messages a 1.6 station sends, and its answers to the CSMS's calls
(Core, Smart Charging, Remote Trigger, Firmware Management)."""

from __future__ import annotations

import functools
from typing import ClassVar

from lite_csms.ocppj.framing import Payload

from . import responders
from .answers import Handler
from .connection import ConnectedStation
from .link import Answer
from .state import (
    ALIGNED_DATA,
    ENERGY,
    FIRMWARE,
    MIN_STATUS_DURATION,
    MODEL,
    SAMPLE_INTERVAL,
    SAMPLED_DATA,
    STOP_TXN_DATA,
    VENDOR,
    Connector,
    Reading,
    Request,
    SimTransaction,
)
from .station import request_stop


class StationV16(ConnectedStation):
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
                         then=functools.partial(request_stop, tx, "Remote"))

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
        then = None if tx is None else functools.partial(request_stop, tx, "UnlockCommand")
        return Answer.ok({"status": "Unlocked"}, then=then)


def _decimal(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"

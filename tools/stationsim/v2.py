"""OCPP 2.0.1 and 2.1: the messages a 2.x station sends, and its answers to the CSMS's calls
(provisioning, authorization, transactions, remote control, smart charging, firmware and
log management, reporting)."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from lite_csms.ocppj.framing import Payload

from . import responders
from .answers import Handler
from .connection import ConnectedStation
from .link import Answer
from .state import (
    ALIGNED_DATA,
    CHARGING,
    ENDED_INTERVAL,
    ENERGY,
    FINISHING,
    FIRMWARE,
    MODEL,
    PREPARING,
    SAMPLED_DATA,
    VENDOR,
    Connector,
    Reading,
    Request,
    Setting,
    SimTransaction,
)
from .station import request_stop


class StationV2(ConnectedStation):
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
                         then=functools.partial(request_stop, tx, "Remote"))

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


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value

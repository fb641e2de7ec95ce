"""OCPP 2.0.1 (and 2.1, which keeps these messages' shape): translate into the domain model."""

from __future__ import annotations

from typing import Any

from lite_csms.domain import AuthResult, BootInfo, Sample, TransactionEvent, unit_respelled
from lite_csms.handlers import (
    authorization,
    availability,
    data_transfer,
    deviations,
    device_model,
    diagnostics,
    firmware,
    live_meter,
    provisioning,
    reservation,
    smart_charging,
    transactions,
)
from lite_csms.ocppj import timestamps, values
from lite_csms.ocppj.lenient import Deviation
from lite_csms.sharing import display, pricing
from lite_csms.versions import station_messages
from lite_csms.versions.context import Handler, StationContext

Payload = dict[str, Any]


def id_token_info(auth: AuthResult) -> Payload:
    info: Payload = {"status": auth.status}
    if auth.expires_at is not None:
        info["cacheExpiryDateTime"] = timestamps.format_utc(auth.expires_at)
    if auth.group_token is not None:
        info["groupIdToken"] = {"idToken": auth.group_token, "type": auth.group_type or "Central"}
    return info


# The kind a unit spelled otherwise than OCPP's is counted under (docs/DEVIATIONS.md).
UNIT_SPELLING = "unit spelling"


def samples(meter_value: list[Payload], field: str = "meterValue",
            respelled: list[Deviation] | None = None) -> list[Sample]:
    """2.x sampled values (numbers * 10^multiplier), normalised to Wh/W.

    Units are matched ignoring case ("kwh" is kWh); with `respelled` given, each unit spelled
    otherwise than OCPP's is appended there as a deviation for the station's record. Raises
    UnstorableValue when the scaled value leaves the finite doubles, or for an energy register
    reading (Energy.Active.*.Register) whose unit is not Wh, kWh or MWh.
    """
    found = []
    for i, entry in enumerate(meter_value):
        at = timestamps.parse(entry["timestamp"])
        for j, sampled in enumerate(entry["sampledValue"]):
            path = f"{field}[{i}].sampledValue[{j}].value"
            unit_of_measure = sampled.get("unitOfMeasure", {})
            unit = unit_of_measure.get("unit", "Wh")
            value = values.scaled(path, float(sampled["value"]),
                                  unit_of_measure.get("multiplier", 0))
            sample = Sample.normalised(
                at, sampled.get("measurand", "Energy.Active.Import.Register"), value,
                unit, sampled.get("phase", ""),
                sampled.get("location", ""), sampled.get("context", "Sample.Periodic"),
            )
            values.check_float(path, sample.value)
            refusal = sample.unit_refusal()
            if refusal is not None:
                raise values.UnstorableValue(
                    f"{field}[{i}].sampledValue[{j}].unitOfMeasure.unit", unit, refusal)
            if respelled is not None and unit_respelled(unit) is not None:
                respelled.append(Deviation(
                    UNIT_SPELLING, f"{field}[].sampledValue[].unitOfMeasure.unit", unit))
            found.append(sample)
    return found


async def boot_notification(ctx: StationContext, p: Payload) -> Payload:
    station = p["chargingStation"]
    modem = station.get("modem", {})
    info = BootInfo(
        vendor=station["vendorName"], model=station["model"],
        serial_number=station.get("serialNumber"),
        firmware_version=station.get("firmwareVersion"),
        iccid=modem.get("iccid"), imsi=modem.get("imsi"),
    )
    now = ctx.now()
    status = await ctx.store.run(
        lambda: provisioning.record_boot(ctx.station_id, ctx.version.value, info, now)
    )
    ctx.registration = status.lower()
    return {"status": status, "currentTime": timestamps.format_utc(now),
            "interval": await ctx.boot_interval(status)}


async def heartbeat(ctx: StationContext, p: Payload) -> Payload:
    return {"currentTime": timestamps.format_utc(ctx.now())}


async def status_notification(ctx: StationContext, p: Payload) -> Payload:
    at = timestamps.parse(p["timestamp"])
    await ctx.store.run(lambda: availability.record_status(
        ctx.station_id, p["evseId"], p["connectorId"], p["connectorStatus"], at
    ))
    return {}


async def authorize(ctx: StationContext, p: Payload) -> Payload:
    token = p["idToken"]
    now = ctx.now()
    if token["type"] == "NoAuthorization":
        return {"idTokenInfo": {"status": "Accepted"}}
    auth, price = await ctx.read(
        lambda: (authorization.authorize(token["idToken"], now, unknown_status="Unknown"),
                 pricing.tariff_of(ctx.station_id))
    )
    # I01: an accepted driver sees the station's price on its display.
    return {"idTokenInfo": display.with_tariff(id_token_info(auth), price)}


async def meter_values_(ctx: StationContext, p: Payload) -> Payload:
    respelled: list[Deviation] = []
    found = samples(p["meterValue"], respelled=respelled)
    now = ctx.now()

    def work() -> None:
        deviations.record(ctx.station_id, "MeterValues", _once(respelled), now)
        # 2.x MeterValues name no transaction: each sample joins the one running on its EVSE.
        live_meter.store_untied(ctx.station_id, p["evseId"], found)

    await ctx.store.run(work)
    ctx.saw_meter_values(p["evseId"])
    ctx.running_cost_may_change(p["evseId"])
    return {}


async def transaction_event(ctx: StationContext, p: Payload) -> Payload:
    info = p["transactionInfo"]
    evse = p.get("evse", {})
    respelled: list[Deviation] = []
    token = p.get("idToken")
    event = TransactionEvent(
        event_type=p["eventType"], station_tx_id=info["transactionId"], seq_no=p["seqNo"],
        timestamp=timestamps.parse(p["timestamp"]), trigger_reason=p["triggerReason"],
        offline=p.get("offline", False), evse_id=evse.get("id"),
        connector_id=evse.get("connectorId"),
        id_token=None if token is None else token["idToken"],
        id_token_type=None if token is None else token["type"],
        stopped_reason=info.get("stoppedReason"), reservation_id=p.get("reservationId"),
        samples=tuple(samples(p.get("meterValue", []), respelled=respelled)),
    )
    now = ctx.now()

    def work() -> transactions.EventOutcome:
        deviations.record(ctx.station_id, "TransactionEvent", _once(respelled), now)
        return transactions.apply_event(ctx.station_id, event)

    outcome = await ctx.store.run(work)
    transactions.report(outcome.notes)
    if event.samples:
        ctx.saw_meter_values(outcome.transaction.evse_id)
    return _transaction_answer(ctx, event, outcome)


def _transaction_answer(ctx: StationContext, event: TransactionEvent,
                        outcome: transactions.EventOutcome) -> Payload:
    tx = outcome.transaction
    answer: Payload = {}
    if outcome.auth is not None:
        # Part 2 requires idTokenInfo in the answer whenever the request carried an idToken;
        # a Started's carries the session's price (I01).
        info = id_token_info(outcome.auth)
        if event.event_type == "Started":
            info = display.with_tariff(info, pricing.price_of(tx))
        answer["idTokenInfo"] = info
    cost = display.total_cost(tx, event.event_type, event.timestamp)
    if cost is not None:
        # I02 running cost (Updated), I03 final cost (Ended).
        answer["totalCost"] = display.wire_total(tx, cost)
        ctx.told_cost(tx.id, cost)
    return answer


async def reservation_status_update(ctx: StationContext, p: Payload) -> Payload:
    at = ctx.now()

    def work() -> None:
        # Kept as received too: an update for a reservation we never made still leaves a trace.
        diagnostics.record_notification(ctx.station_id, "ReservationStatusUpdate", p, at)
        reservation.station_update(ctx.station_id, p["reservationId"],
                                   p["reservationUpdateStatus"])

    await ctx.store.run(work)
    return {}


async def data_transfer_(ctx: StationContext, p: Payload) -> Payload:
    now = ctx.now()
    status = await ctx.store.run(lambda: data_transfer.receive(ctx.station_id, p, now))
    return {"status": status}


async def firmware_status(ctx: StationContext, p: Payload) -> Payload:
    now = ctx.now()
    await ctx.store.run(lambda: firmware.record_firmware_status(ctx.station_id, p, now))
    return {}


async def notify_report(ctx: StationContext, p: Payload) -> Payload:
    at = ctx.now()

    def work() -> None:
        # Kept as received too, like every notification, besides the assembled model.
        diagnostics.record_notification(ctx.station_id, "NotifyReport", p,
                                        timestamps.parse(p["generatedAt"]))
        device_model.notify_report(ctx.station_id, p, at)

    await ctx.store.run(work)
    return {}


async def report_charging_profiles(ctx: StationContext, p: Payload) -> Payload:
    at = ctx.now()
    await ctx.store.run(lambda: smart_charging.reported(ctx.station_id, p, at))
    return {}


async def notify_ev_charging_schedule(ctx: StationContext, p: Payload) -> Payload:
    at = timestamps.parse(p["timeBase"])
    await ctx.store.run(lambda: diagnostics.record_notification(
        ctx.station_id, "NotifyEVChargingSchedule", p, at))
    # Recorded for the operator; the CSMS does no schedule negotiation of its own.
    return {"status": "Accepted"}


def _once(found: list[Deviation]) -> list[Deviation]:
    """One deviation per kind and field in a message, as lenient mode counts them."""
    return list({(d.kind, d.path): d for d in found}.values())


def _notification(action: str, timestamp_key: str | None) -> Handler:
    async def record(ctx: StationContext, p: Payload) -> Payload:
        raw = p.get(timestamp_key) if timestamp_key else None
        at = timestamps.parse(raw) if raw else ctx.now()
        await ctx.store.run(lambda: diagnostics.record_notification(ctx.station_id, action, p, at))
        return {}

    return record


ROUTES: dict[str, Handler] = {
    "BootNotification": boot_notification,
    "Heartbeat": heartbeat,
    "StatusNotification": status_notification,
    "Authorize": authorize,
    "MeterValues": meter_values_,
    "TransactionEvent": transaction_event,
    "ReservationStatusUpdate": reservation_status_update,
    "DataTransfer": data_transfer_,
    "FirmwareStatusNotification": firmware_status,
    "NotifyReport": notify_report,
    "ReportChargingProfiles": report_charging_profiles,
    "NotifyChargingLimit": _notification("NotifyChargingLimit", None),
    "NotifyEVChargingSchedule": notify_ev_charging_schedule,
    "NotifyEvent": _notification("NotifyEvent", "generatedAt"),
    "SecurityEventNotification": _notification("SecurityEventNotification", "timestamp"),
    "LogStatusNotification": _notification("LogStatusNotification", None),
    **station_messages.V201_ROUTES,
}

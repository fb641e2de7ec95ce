"""OCPP 1.6J: translate Core-profile messages into the domain model and back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.domain import AuthResult, BootInfo, Sample
from lite_csms.handlers import (
    authorization,
    availability,
    data_transfer,
    diagnostics,
    firmware,
    live_meter,
    provisioning,
    transactions,
)
from lite_csms.ocppj import timestamps, values
from lite_csms.versions import station_messages
from lite_csms.versions.context import Handler, StationContext

Payload = dict[str, Any]


def id_tag_info(auth: AuthResult) -> Payload:
    info: Payload = {"status": auth.status if auth.status != "Unknown" else "Invalid"}
    if auth.expires_at is not None:
        info["expiryDate"] = timestamps.format_utc(auth.expires_at)
    if auth.group_token is not None:
        info["parentIdTag"] = auth.group_token[:20]
    return info


def samples(meter_value: list[Payload], field: str = "meterValue",
            left_out: list[values.UnstorableValue] | None = None) -> list[Sample]:
    """1.6 sampled values: decimal strings, normalised to Wh/W (units matched ignoring case).

    An energy register reading (Energy.Active.*.Register) in a unit other than Wh or kWh
    raises UnstorableValue too (domain.Sample.unit_refusal).

    A Raw value that is not a finite decimal raises UnstorableValue (PropertyConstraintViolation):
    storing nothing while acknowledging would lose it. With `left_out` given, such a value is
    appended there and skipped instead. SignedData values are the meter's signed record, not a
    decimal: accepted and not stored as numbers.
    """
    found = []
    for i, entry in enumerate(meter_value):
        at = timestamps.parse(entry["timestamp"])
        for j, sampled in enumerate(entry["sampledValue"]):
            if sampled.get("format") == "SignedData":
                continue
            path = f"{field}[{i}].sampledValue[{j}].value"
            try:
                sample = Sample.normalised(
                    at, sampled.get("measurand", "Energy.Active.Import.Register"),
                    values.decimal(path, sampled["value"]),
                    sampled.get("unit", "Wh"), sampled.get("phase", ""),
                    sampled.get("location", ""), sampled.get("context", "Sample.Periodic"),
                )
                values.check_float(path, sample.value)  # 1e308 kWh overflows once in Wh
                refusal = sample.unit_refusal()
                if refusal is not None:
                    raise values.UnstorableValue(path[:-len("value")] + "unit",
                                                 sampled.get("unit", "Wh"), refusal)
            except values.UnstorableValue as exc:
                if left_out is None:
                    raise
                left_out.append(exc)
                continue
            found.append(sample)
    return found


async def boot_notification(ctx: StationContext, p: Payload) -> Payload:
    info = BootInfo(
        vendor=p["chargePointVendor"], model=p["chargePointModel"],
        serial_number=p.get("chargePointSerialNumber") or p.get("chargeBoxSerialNumber"),
        firmware_version=p.get("firmwareVersion"), iccid=p.get("iccid"), imsi=p.get("imsi"),
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
    at = timestamps.parse(p["timestamp"]) if "timestamp" in p else ctx.now()
    connector = p["connectorId"]
    error = p["errorCode"] if p["errorCode"] != "NoError" else None
    info = " ".join(x for x in (p.get("info"), p.get("vendorErrorCode")) if x) or None
    await ctx.store.run(lambda: availability.record_status(
        ctx.station_id, connector, 1 if connector else 0, p["status"], at, error, info
    ))
    return {}


async def authorize(ctx: StationContext, p: Payload) -> Payload:
    now = ctx.now()
    auth = await ctx.read(lambda: authorization.authorize(p["idTag"], now))
    return {"idTagInfo": id_tag_info(auth)}


async def meter_values_(ctx: StationContext, p: Payload) -> Payload:
    found = samples(p["meterValue"])
    first_at = min(timestamps.parse(entry["timestamp"]) for entry in p["meterValue"])
    if p.get("transactionId") is None and p["connectorId"] > 0:
        # No transactionId: tied to the session running on the connector at each timestamp.
        await ctx.store.run(lambda: live_meter.store_untied(ctx.station_id, p["connectorId"],
                                                            found))
    else:
        notes = await ctx.store.run(lambda: transactions.meter_values_v16(
            ctx.station_id, p["connectorId"], p.get("transactionId"), found, first_at))
        transactions.report(notes)
    ctx.saw_meter_values(p["connectorId"])
    return {}


async def start_transaction(ctx: StationContext, p: Payload) -> Payload:
    at = timestamps.parse(p["timestamp"])
    outcome = await ctx.store.run(lambda: transactions.start_v16(
        ctx.station_id, p["connectorId"], p["idTag"], float(p["meterStart"]), at,
        p.get("reservationId"),
    ))
    transactions.report(outcome.notes)
    return {"transactionId": outcome.transaction_id, "idTagInfo": id_tag_info(outcome.auth)}


async def stop_transaction(ctx: StationContext, p: Payload) -> Payload:
    at = timestamps.parse(p["timestamp"])
    # A refused stop is one the charger drops after its retries. Its meterStop is checked by
    # the core; a sample in transactionData the store cannot hold is left out instead, the
    # message kept as received and the transaction flagged.
    left_out: list[values.UnstorableValue] = []
    found = samples(p.get("transactionData", []), "transactionData", left_out)
    note = None
    if left_out:
        note = (f"unstorable sample: the stop's transactionData held {len(left_out)} value(s) "
                f"the store cannot hold, left out ({left_out[0]}); the message is kept as "
                "received")

    def work() -> transactions.StopOutcome:
        if note is not None:
            diagnostics.record_notification(ctx.station_id, "StopTransaction", p, at)
        return transactions.stop_v16(
            ctx.station_id, p["transactionId"], float(p["meterStop"]), at, p.get("reason"),
            p.get("idTag"), found, review_note=note, payload=None if note is not None else p,
        )

    outcome = await ctx.store.run(work)
    transactions.report(outcome.notes)
    return {} if outcome.auth is None else {"idTagInfo": id_tag_info(outcome.auth)}


async def data_transfer_(ctx: StationContext, p: Payload) -> Payload:
    now = ctx.now()
    status = await ctx.store.run(lambda: data_transfer.receive(ctx.station_id, p, now))
    return {"status": status}


async def firmware_status(ctx: StationContext, p: Payload) -> Payload:
    now = ctx.now()
    await ctx.store.run(lambda: firmware.record_firmware_status(ctx.station_id, p, now))
    return {}


def _notification(action: str) -> Handler:
    async def record(ctx: StationContext, p: Payload) -> Payload:
        at: datetime = ctx.now()
        await ctx.store.run(lambda: diagnostics.record_notification(ctx.station_id, action, p, at))
        return {}

    return record


ROUTES: dict[str, Handler] = {
    "BootNotification": boot_notification,
    "Heartbeat": heartbeat,
    "StatusNotification": status_notification,
    "Authorize": authorize,
    "MeterValues": meter_values_,
    "StartTransaction": start_transaction,
    "StopTransaction": stop_transaction,
    "DataTransfer": data_transfer_,
    "FirmwareStatusNotification": firmware_status,
    "DiagnosticsStatusNotification": _notification("DiagnosticsStatusNotification"),
    **station_messages.V16_ROUTES,
}

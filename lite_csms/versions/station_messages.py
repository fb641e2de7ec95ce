"""Station-to-CSMS messages this CSMS keeps and answers without acting on them.

Each is recorded as received (handlers/diagnostics.record_notification) and answered with
a schema-valid, honest answer: this CSMS holds no PKI, offers no EV charging schedules, runs
no periodic event streams, validates no VAT numbers. Never NotSupported: a station whose
message is refused may retry it for ever or give up a use case that needs only an answer.
"""

from __future__ import annotations

from typing import Any

from lite_csms.handlers import diagnostics, maintenance
from lite_csms.ocppj import timestamps
from lite_csms.ocppj.versions import Version
from lite_csms.versions.context import Handler, StationContext

Payload = dict[str, Any]


def recorded(action: str, timestamp_key: str | None = None,
             answer: Payload | None = None) -> Handler:
    """Keep the message as received, stamped with its own time if it has one; answer `answer`."""
    fixed = answer or {}

    async def handle(ctx: StationContext, p: Payload) -> Payload:
        raw = p.get(timestamp_key) if timestamp_key else None
        at = timestamps.parse(raw) if isinstance(raw, str) else ctx.now()
        await ctx.store.run(lambda: diagnostics.record_notification(ctx.station_id, action, p, at))
        return dict(fixed)

    return handle


async def signed_firmware_status(ctx: StationContext, p: Payload) -> Payload:
    """1.6 security whitepaper: the progress of a SignedUpdateFirmware, by its requestId."""
    at = ctx.now()

    def work() -> None:
        diagnostics.record_notification(ctx.station_id, "SignedFirmwareStatusNotification", p, at)
        maintenance.progress(ctx.station_id, maintenance.FIRMWARE, p.get("requestId"),
                             p["status"], at)

    await ctx.store.run(work)
    return {}


async def notify_ev_charging_needs(ctx: StationContext, p: Payload) -> Payload:
    """Kept for the operator; no schedule will be offered (2.0.1 Rejected, 2.1 NoChargingProfile).

    2.0.1 has no status that says "no schedule": Rejected is its "service not available".
    """
    await recorded("NotifyEVChargingNeeds")(ctx, p)
    return {"status": "NoChargingProfile" if ctx.version is Version.OCPP21 else "Rejected"}


async def get_15118_ev_certificate(ctx: StationContext, p: Payload) -> Payload:
    """No contract-certificate pool behind this CSMS: Failed, with an empty EXI response."""
    await recorded("Get15118EVCertificate")(ctx, p)
    return {"status": "Failed", "exiResponse": "",
            "statusInfo": {"reasonCode": "NoPKI"}}


async def get_certificate_chain_status(ctx: StationContext, p: Payload) -> Payload:
    """2.1: one Failed status per certificate asked about; no OCSP or CRL is consulted here."""
    await recorded("GetCertificateChainStatus")(ctx, p)
    now = timestamps.format_utc(ctx.now())
    return {"certificateStatus": [
        {"certificateHashData": asked["certificateHashData"], "source": asked["source"],
         "status": "Failed", "nextUpdate": now}
        for asked in p["certificateStatusRequests"]]}


async def vat_number_validation(ctx: StationContext, p: Payload) -> Payload:
    """2.1: no VAT register is consulted, so the number is not confirmed (Rejected)."""
    await recorded("VatNumberValidation")(ctx, p)
    answer: Payload = {"vatNumber": p["vatNumber"], "status": "Rejected"}
    if "evseId" in p:
        answer["evseId"] = p["evseId"]
    return answer


_NO_PKI = {"status": "Rejected", "statusInfo": {"reasonCode": "NoPKI"}}

# 1.6 security whitepaper (the `ocpp` package ships its schemas).
V16_ROUTES: dict[str, Handler] = {
    "SecurityEventNotification": recorded("SecurityEventNotification", "timestamp"),
    "LogStatusNotification": recorded("LogStatusNotification"),
    "SignedFirmwareStatusNotification": signed_firmware_status,
    # 1.6 SignCertificate.conf is {status} only.
    "SignCertificate": recorded("SignCertificate", answer={"status": "Rejected"}),
}

# 2.0.1 station-to-CSMS messages not handled elsewhere; 2.1 shares them.
V201_ROUTES: dict[str, Handler] = {
    "ClearedChargingLimit": recorded("ClearedChargingLimit"),
    "NotifyEVChargingNeeds": notify_ev_charging_needs,
    "NotifyCustomerInformation": recorded("NotifyCustomerInformation", "generatedAt"),
    "NotifyDisplayMessages": recorded("NotifyDisplayMessages"),
    "NotifyMonitoringReport": recorded("NotifyMonitoringReport", "generatedAt"),
    "PublishFirmwareStatusNotification": recorded("PublishFirmwareStatusNotification"),
    "Get15118EVCertificate": get_15118_ev_certificate,
    "GetCertificateStatus": recorded("GetCertificateStatus", answer={
        "status": "Failed", "statusInfo": {"reasonCode": "NoOCSPResponder"}}),
    "SignCertificate": recorded("SignCertificate", answer=_NO_PKI),
}

# Messages only OCPP 2.1 stations send.
V21_ROUTES: dict[str, Handler] = {
    "BatterySwap": recorded("BatterySwap"),
    "ClosePeriodicEventStream": recorded("ClosePeriodicEventStream"),
    "GetCertificateChainStatus": get_certificate_chain_status,
    "NotifyDERAlarm": recorded("NotifyDERAlarm", "timestamp"),
    "NotifyDERStartStop": recorded("NotifyDERStartStop", "timestamp"),
    "NotifyPriorityCharging": recorded("NotifyPriorityCharging"),
    "NotifySettlement": recorded("NotifySettlement", "settlementTime"),
    "OpenPeriodicEventStream": recorded("OpenPeriodicEventStream", answer={
        "status": "Rejected", "statusInfo": {"reasonCode": "NotSupported"}}),
    "PullDynamicScheduleUpdate": recorded("PullDynamicScheduleUpdate", answer={
        "status": "Rejected", "statusInfo": {"reasonCode": "NoSchedule"}}),
    "ReportDERControl": recorded("ReportDERControl"),
    "VatNumberValidation": vat_number_validation,
}

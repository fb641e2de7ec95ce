"""Firmware, diagnostics, device-model reports and transaction status CALLs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.ocppj import timestamps
from lite_csms.ocppj.versions import Version
from lite_csms.operations.catalogue import OperationError, Request

Payload = dict[str, Any]

REPORT_BASES = ("FullInventory", "ConfigurationInventory", "SummaryInventory")
LOG_TYPES = ("DiagnosticsLog", "SecurityLog")


def update_firmware(version: Version, location: str, retrieve_at: datetime, request_id: int,
                    *, retries: int | None = None, retry_interval: int | None = None,
                    signing_certificate: str | None = None, signature: str | None = None
                    ) -> Request:
    retry: Payload = {}
    if retries is not None:
        retry["retries"] = retries
    if retry_interval is not None:
        retry["retryInterval"] = retry_interval
    when = timestamps.format_utc(retrieve_at)
    if version is Version.OCPP16:
        if signing_certificate or signature:
            raise OperationError("1.6 UpdateFirmware carries no certificate or signature "
                                 "(that is the security extension's SignedUpdateFirmware)")
        return Request("UpdateFirmware", {"location": location, "retrieveDate": when, **retry})
    firmware: Payload = {"location": location, "retrieveDateTime": when}
    if signing_certificate:
        firmware["signingCertificate"] = signing_certificate
    if signature:
        firmware["signature"] = signature
    return Request("UpdateFirmware", {"requestId": request_id, "firmware": firmware, **retry})


def get_diagnostics(version: Version, location: str, request_id: int, *,
                    since: datetime | None = None, until: datetime | None = None,
                    log_type: str = "DiagnosticsLog") -> Request:
    """1.6 GetDiagnostics, or 2.x GetLog: both ask the station to upload a log file."""
    window: dict[str, str] = {}
    if version is Version.OCPP16:
        if since is not None:
            window["startTime"] = timestamps.format_utc(since)
        if until is not None:
            window["stopTime"] = timestamps.format_utc(until)
        return Request("GetDiagnostics", {"location": location, **window})
    if log_type not in LOG_TYPES:
        raise OperationError(f"log type must be one of {', '.join(LOG_TYPES)}")
    if since is not None:
        window["oldestTimestamp"] = timestamps.format_utc(since)
    if until is not None:
        window["latestTimestamp"] = timestamps.format_utc(until)
    return Request("GetLog", {"logType": log_type, "requestId": request_id,
                              "log": {"remoteLocation": location, **window}})


def _needs_2x(version: Version, action: str) -> None:
    if version is Version.OCPP16:
        raise OperationError(f"{action} is an OCPP 2.x message (1.6: use get-config)")


def base_report(version: Version, report: str, request_id: int) -> Request:
    _needs_2x(version, "GetBaseReport")
    if report not in REPORT_BASES:
        raise OperationError(f"report must be one of {', '.join(REPORT_BASES)}")
    return Request("GetBaseReport", {"requestId": request_id, "reportBase": report})


def get_report(version: Version, variables: list[str], request_id: int) -> Request:
    """GetReport for Component or Component.Variable names (all of a component, or one)."""
    _needs_2x(version, "GetReport")
    if not variables:
        raise OperationError("name at least one Component or Component.Variable")
    wanted = []
    for name in variables:
        component, _, variable = name.partition(".")
        if not component:
            raise OperationError(f"not a Component or Component.Variable: {name!r}")
        entry: Payload = {"component": {"name": component}}
        if variable:
            entry["variable"] = {"name": variable}
        wanted.append(entry)
    return Request("GetReport", {"requestId": request_id, "componentVariable": wanted})


def transaction_status(version: Version, station_tx_id: str | None) -> Request:
    _needs_2x(version, "GetTransactionStatus")
    return Request("GetTransactionStatus",
                   {} if station_tx_id is None else {"transactionId": station_tx_id})


def request_id_of(request: Request) -> int | None:
    """The requestId a 2.x request carries, which the station's follow-up messages echo."""
    value = request.payload.get("requestId")
    return value if isinstance(value, int) else None

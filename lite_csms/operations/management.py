"""Named charger-management operations: smart charging, firmware, logs, device model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lite_csms.ocppj import timestamps
from lite_csms.ocppj.versions import Version
from lite_csms.operations import charging, maintenance
from lite_csms.operations.args import (
    int_arg,
    number_arg,
    optional_int,
    optional_str,
    str_arg,
    time_arg,
)
from lite_csms.operations.catalogue import OperationError, Request

StationTxLookup = Callable[[int], str | None]

NAMES = ("set-limit", "clear-limit", "composite-schedule", "get-charging-profiles",
         "update-firmware", "get-diagnostics", "base-report", "get-report",
         "transaction-status")


def _station_tx(version: Version, args: dict[str, Any], lookup: StationTxLookup
                ) -> int | str | None:
    """The transaction as the station names it: our id on 1.6, its own id on 2.x."""
    tx = optional_int(args, "transaction")
    if tx is None or version is Version.OCPP16:
        return tx
    station_tx_id = lookup(tx)
    if station_tx_id is None:
        raise OperationError(f"transaction {tx} has no station transaction id")
    return station_tx_id


def _variables(args: dict[str, Any]) -> list[str]:
    names = args.get("variables", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise OperationError("variables must be a list of Component or Component.Variable")
    return names


def _periods(args: dict[str, Any]) -> list[tuple[int, float]] | None:
    """set-limit's periods: [{"start": seconds, "limit": number}, ...], or None."""
    raw = args.get("periods")
    if raw is None:
        return None
    if args.get("limit") is not None:
        raise OperationError("give either limit or periods, not both")
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        raise OperationError('periods must be a list of {"start": seconds, "limit": number}')
    try:
        return [(int_arg(p, "start"), number_arg(p, "limit")) for p in raw]
    except OperationError as exc:
        raise OperationError(f"periods: {exc}") from None


def build(version: Version, name: str, args: dict[str, Any], lookup: StationTxLookup,
          request_id: int) -> Request:
    match name:
        case "set-limit":
            kind = str(args.get("kind", "Absolute"))
            start = time_arg(args, "start")
            if kind == "Absolute" and start is None:
                # Absolute from now: the limit holds at once, not from the next session.
                start = timestamps.now_utc()
            periods = _periods(args)
            return charging.set_limit(
                version, int_arg(args, "connector", 0),
                None if periods is not None else number_arg(args, "limit"),
                str(args.get("unit", "A")), request_id, start,
                stack_level=int_arg(args, "stack_level", 0),
                duration=optional_int(args, "duration"),
                transaction_id=_station_tx(version, args, lookup), kind=kind,
                recurrency=optional_str(args, "recurrency"), periods=periods)
        case "clear-limit":
            profile = optional_int(args, "profile")
            # Without a profile id, clear the kind of limit set-limit sets.
            default_purpose = None if profile is not None else "TxDefaultProfile"
            return charging.clear_limit(
                version, profile, optional_int(args, "connector"),
                args.get("purpose", default_purpose), optional_int(args, "stack_level"))
        case "composite-schedule":
            return charging.composite_schedule(
                version, int_arg(args, "connector", 0), int_arg(args, "duration", 3600),
                optional_str(args, "unit"))
        case "get-charging-profiles":
            return charging.get_charging_profiles(
                version, request_id, optional_int(args, "connector"),
                optional_str(args, "purpose"))
        case "update-firmware":
            return maintenance.update_firmware(
                version, str_arg(args, "location"),
                time_arg(args, "retrieve_at") or timestamps.now_utc(), request_id,
                retries=optional_int(args, "retries"),
                retry_interval=optional_int(args, "retry_interval"),
                signing_certificate=optional_str(args, "signing_certificate"),
                signature=optional_str(args, "signature"))
        case "get-diagnostics":
            return maintenance.get_diagnostics(
                version, str_arg(args, "location"), request_id,
                since=time_arg(args, "since"), until=time_arg(args, "until"),
                log_type=str(args.get("log_type", "DiagnosticsLog")))
        case "base-report":
            return maintenance.base_report(version, str(args.get("report", "FullInventory")),
                                           request_id)
        case "get-report":
            return maintenance.get_report(version, _variables(args), request_id)
        case "transaction-status":
            tx = _station_tx(version, args, lookup)
            return maintenance.transaction_status(version, None if tx is None else str(tx))
    raise OperationError(f"unknown operation {name!r}")

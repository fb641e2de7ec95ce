"""`lite-csms remote` commands for smart charging, firmware, logs and device-model reports."""

from __future__ import annotations

import argparse
import math
from typing import Any

from lite_csms.ocppj.values import INT64_MAX


def add_parsers(cmds: argparse._SubParsersAction, shared: argparse.ArgumentParser) -> None:
    limit = cmds.add_parser("set-limit", parents=[shared],
                            help="limit charging power or current (a charging profile)")
    limit.add_argument("--connector", type=count, default=0, help="0: every connector")
    amount = limit.add_mutually_exclusive_group(required=True)
    amount.add_argument("--limit", type=finite_float, help="one limit from the start on")
    amount.add_argument("--periods", type=_periods, metavar="S:LIMIT,...",
                        help="a schedule: each period's start (seconds from the schedule's "
                             "start) and limit, e.g. 0:16,3600:10")
    limit.add_argument("--unit", choices=("A", "W"), default="A")
    limit.add_argument("--kind", choices=("Absolute", "Recurring", "Relative"),
                       default="Absolute",
                       help="Absolute: from --start (default now); Recurring: every day or "
                            "week from --start; Relative: from each transaction's start")
    limit.add_argument("--recurrency", choices=("Daily", "Weekly"),
                       help="with --kind Recurring")
    limit.add_argument("--start", help="ISO 8601 time the schedule starts (e.g. "
                                       "2026-01-01T07:00Z)")
    limit.add_argument("--transaction", type=count,
                       help="limit only this running transaction (a TxProfile)")
    limit.add_argument("--duration", type=count, help="seconds; default: until cleared")
    limit.add_argument("--stack-level", type=count, default=0)
    clear = cmds.add_parser("clear-limit", parents=[shared], help="remove charging profiles")
    clear.add_argument("--profile", type=count, help="one profile by id")
    clear.add_argument("--connector", type=count)
    clear.add_argument("--purpose", help="default without --profile: TxDefaultProfile")
    clear.add_argument("--stack-level", type=count)
    composite = cmds.add_parser("composite-schedule", parents=[shared],
                                help="the limits a connector will apply, all profiles combined")
    composite.add_argument("--connector", type=count, default=0)
    composite.add_argument("--duration", type=count, default=3600, help="seconds")
    composite.add_argument("--unit", choices=("A", "W"))
    profiles = cmds.add_parser("charging-profiles", parents=[shared],
                               help="2.x: ask the station to report the profiles it holds")
    profiles.add_argument("--connector", type=count)
    profiles.add_argument("--purpose")
    firmware = cmds.add_parser("update-firmware", parents=[shared],
                               help="have the station download and install firmware")
    firmware.add_argument("location", help="URL of the firmware image")
    firmware.add_argument("--retrieve-at", help="ISO 8601 time; default now")
    firmware.add_argument("--retries", type=count)
    firmware.add_argument("--retry-interval", type=count)
    firmware.add_argument("--signing-certificate", help="2.x: PEM certificate")
    firmware.add_argument("--signature", help="2.x: base64 signature of the image")
    diagnostics = cmds.add_parser("get-diagnostics", parents=[shared],
                                  help="have the station upload its log (2.x: GetLog)")
    diagnostics.add_argument("location", help="URL to upload to")
    diagnostics.add_argument("--since", help="ISO 8601: oldest entries wanted")
    diagnostics.add_argument("--until", help="ISO 8601: newest entries wanted")
    diagnostics.add_argument("--log-type", choices=("DiagnosticsLog", "SecurityLog"),
                             default="DiagnosticsLog", help="2.x only")
    cmds.add_parser("base-report", parents=[shared],
                    help="2.x: have the station report its device model").add_argument(
        "--report", choices=("FullInventory", "ConfigurationInventory", "SummaryInventory"),
        default="FullInventory")
    cmds.add_parser("get-report", parents=[shared],
                    help="2.x: report some components or variables").add_argument(
        "variables", nargs="+", help="Component or Component.Variable")
    cmds.add_parser("transaction-status", parents=[shared],
                    help="2.x: is a transaction ongoing, are messages queued").add_argument(
        "--transaction", type=count)


def count(raw: str) -> int:
    """An integer argument (connector, EVSE, transaction, id, seconds): 0 to 2^63 - 1, the
    range OCPP and the store hold; the error names that range."""
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= INT64_MAX:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 0 to {INT64_MAX}, not {raw[:40]!r}")
    return value


def finite_float(raw: str) -> float:
    """A number argument: "nan", "inf" and "1e400" are not limits."""
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {raw!r}")
    return value


def _periods(raw: str) -> list[dict[str, Any]]:
    """--periods 0:16,3600:10 as the API's [{"start": 0, "limit": 16.0}, ...]."""
    periods = []
    for part in raw.split(","):
        start, _, limit = part.partition(":")
        try:
            periods.append({"start": int(start), "limit": finite_float(limit)})
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(
                f"{part!r} is not SECONDS:LIMIT with a finite limit (e.g. 0:16,3600:10)"
            ) from None
    return periods


def _present(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def operation(args: argparse.Namespace) -> tuple[str, dict[str, Any]] | None:
    """The API operation for one of these commands; None when the command is not one."""
    match args.remote_command:
        case "set-limit":
            return "set-limit", _present(
                connector=args.connector, limit=args.limit, periods=args.periods,
                unit=args.unit, kind=args.kind, recurrency=args.recurrency, start=args.start,
                transaction=args.transaction, duration=args.duration,
                stack_level=args.stack_level)
        case "clear-limit":
            return "clear-limit", _present(profile=args.profile, connector=args.connector,
                                           purpose=args.purpose, stack_level=args.stack_level)
        case "composite-schedule":
            return "composite-schedule", _present(connector=args.connector,
                                                  duration=args.duration, unit=args.unit)
        case "charging-profiles":
            return "get-charging-profiles", _present(connector=args.connector,
                                                     purpose=args.purpose)
        case "update-firmware":
            return "update-firmware", _present(
                location=args.location, retrieve_at=args.retrieve_at, retries=args.retries,
                retry_interval=args.retry_interval,
                signing_certificate=args.signing_certificate, signature=args.signature)
        case "get-diagnostics":
            return "get-diagnostics", _present(location=args.location, since=args.since,
                                               until=args.until, log_type=args.log_type)
        case "base-report":
            return "base-report", {"report": args.report}
        case "get-report":
            return "get-report", {"variables": args.variables}
        case "transaction-status":
            return "transaction-status", _present(transaction=args.transaction)
    return None

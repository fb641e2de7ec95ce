"""Reading an operation's JSON arguments, with one clear error per bad argument."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from lite_csms.ocppj import timestamps
from lite_csms.ocppj.values import INT64_MAX
from lite_csms.operations.catalogue import OperationError

# An int beyond a double's range (10**400) cannot be a limit either.
FLOAT_MAX_INT = 1.7976931348623157e308


def int_arg(args: dict[str, Any], name: str, default: int | None = None) -> int:
    """An integer argument. Every one an operation takes (connector, EVSE, transaction,
    reservation, profile, stack level, seconds, retries) is a count or an id that OCPP and the
    store hold as a non-negative signed 64-bit integer: anything else is refused before a
    CALL is built."""
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
        # Name the range: 99999999999999999999 is an integer, just not one OCPP can hold.
        raise OperationError(f"{name} must be an integer from 0 to {INT64_MAX}")
    return value


def str_arg(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise OperationError(f"{name} must be a non-empty string")
    return value


def bool_arg(args: dict[str, Any], name: str, default: bool) -> bool:
    value = args.get(name, default)
    if not isinstance(value, bool):
        raise OperationError(f"{name} must be true or false")
    return value


def optional_int(args: dict[str, Any], name: str) -> int | None:
    return None if args.get(name) is None else int_arg(args, name)


def optional_str(args: dict[str, Any], name: str) -> str | None:
    return None if args.get(name) is None else str_arg(args, name)


def number_arg(args: dict[str, Any], name: str) -> float:
    value = args.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OperationError(f"{name} must be a number")
    if not math.isfinite(value) or abs(value) > FLOAT_MAX_INT:
        raise OperationError(f"{name} must be a finite number")
    return value


def time_arg(args: dict[str, Any], name: str) -> datetime | None:
    """An optional ISO 8601 date-time (no offset: UTC)."""
    value = args.get(name)
    if value is None:
        return None
    try:
        return timestamps.parse(str_arg(args, name))
    except ValueError:
        raise OperationError(f"{name} must be an ISO 8601 date-time") from None

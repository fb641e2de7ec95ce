"""Reading an operation's JSON arguments, with one clear error per bad argument."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.ocppj import timestamps
from lite_csms.operations.catalogue import OperationError


def int_arg(args: dict[str, Any], name: str, default: int | None = None) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise OperationError(f"{name} must be an integer")
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

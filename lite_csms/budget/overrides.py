"""A station's own budget settings, overriding the global defaults one value at a time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from lite_csms.budget.units import parse_size
from lite_csms.db.models import Station, StationBudget
from lite_csms.ocppj.timestamps import now_utc

# Carrier NATs drop idle mappings after 30 s to a few hours; outside this range is a typo.
NAT_TIMEOUT_RANGE = (10, 86_400)
_SWITCH = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}


class BudgetError(ValueError):
    """A value the operator gave cannot be used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class BudgetChange:
    """Values to set; None leaves a value as it is."""

    cap_bytes: int | None = None
    cycle_day: int | None = None
    warn_ratio: float | None = None
    nat_timeout: int | None = None
    policy_enabled: bool | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise BudgetError(f"{name} must be an integer")
    try:
        number = int(value) if isinstance(value, str) else value
    except ValueError:
        raise BudgetError(f"{name} must be an integer, not {value!r}") from None
    if not isinstance(number, int):
        raise BudgetError(f"{name} must be an integer")
    return number


def parse_change(data: Mapping[str, Any]) -> BudgetChange:
    """Check values from the CLI or a JSON body: cap, cycle_day, warn_ratio, nat_timeout, policy.

    Unknown keys are refused rather than ignored, so a misspelt setting is never silently lost.
    """
    unknown = set(data) - {"cap", "cycle_day", "warn_ratio", "nat_timeout", "policy"}
    if unknown:
        raise BudgetError(f"unknown budget setting(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    if data.get("cap") is not None:
        try:
            values["cap_bytes"] = parse_size(data["cap"])
        except ValueError as exc:
            raise BudgetError(f"cap: {exc}") from None
    if data.get("cycle_day") is not None:
        day = _integer("cycle_day", data["cycle_day"])
        if not 1 <= day <= 28:
            raise BudgetError("cycle_day must be 1 to 28, so that every month has the day")
        values["cycle_day"] = day
    if data.get("warn_ratio") is not None:
        ratio = data["warn_ratio"]
        try:
            ratio = float(ratio) if not isinstance(ratio, bool) else None
        except (TypeError, ValueError):
            ratio = None
        if ratio is None or not 0 < ratio < 1:
            raise BudgetError("warn_ratio must be a number between 0 and 1, such as 0.8")
        values["warn_ratio"] = ratio
    if data.get("nat_timeout") is not None:
        seconds = _integer("nat_timeout", data["nat_timeout"])
        low, high = NAT_TIMEOUT_RANGE
        if not low <= seconds <= high:
            raise BudgetError(f"nat_timeout must be {low} to {high} seconds")
        values["nat_timeout"] = seconds
    if data.get("policy") is not None:
        policy = data["policy"]
        if isinstance(policy, str):
            policy = _SWITCH.get(policy.lower())
        if not isinstance(policy, bool):
            raise BudgetError("policy must be on or off (true or false)")
        values["policy_enabled"] = policy
    return BudgetChange(**values)


def parse_release(value: Any) -> list[str] | None:
    """Keys to hand back to the policy: a list of keys, or "all" (None: every key)."""
    keys = [value] if isinstance(value, str) else value
    if not isinstance(keys, list) or not keys or not all(
            isinstance(k, str) and k for k in keys):
        raise BudgetError('release must be a list of setting keys, or "all"')
    return None if "all" in keys else keys


def apply(station_id: str, change: BudgetChange, *, clear: bool = False) -> None:
    """Store the change; `clear` first drops every override (the policy's level is kept)."""
    if Station.get_or_none(Station.id == station_id) is None:
        raise BudgetError(f"no station {station_id!r}")
    row, _ = StationBudget.get_or_create(station=station_id)
    for f in fields(change):
        value = getattr(change, f.name)
        if clear or value is not None:
            setattr(row, f.name, value)
    row.updated_at = now_utc()
    row.save()

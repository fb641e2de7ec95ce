"""Smart charging CALLs: set and clear a charging limit, composite schedules, profile reports.

A "limit" is one charging profile: a TxProfile when it names a running transaction, otherwise
a TxDefaultProfile that every transaction on the connector (0: all connectors) starts with. Its
schedule is one limit or several periods, Absolute (from a start time, by default now),
Recurring (Daily or Weekly from a start time) or Relative (from each transaction's start).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import pairwise
from typing import Any

from lite_csms.ocppj import timestamps
from lite_csms.ocppj.versions import Version
from lite_csms.operations.catalogue import OperationError, Request

Payload = dict[str, Any]

UNITS = ("A", "W")
KINDS = ("Absolute", "Recurring", "Relative")
RECURRENCY_SECONDS = {"Daily": 24 * 3600, "Weekly": 7 * 24 * 3600}
PURPOSES = ("TxDefaultProfile", "TxProfile", "ChargePointMaxProfile",
            "ChargingStationMaxProfile", "ChargingStationExternalConstraints")


def check_periods(periods: Sequence[tuple[int, float]], kind: str, recurrency: str | None,
                  duration: int | None) -> None:
    """A schedule's periods: the first starts at 0 s, each later one after the one before,
    limits not negative; a Daily (Weekly) schedule fits in one day (week)."""
    if not periods:
        raise OperationError("a schedule needs at least one period")
    starts = [start for start, _ in periods]
    if starts[0] != 0:
        raise OperationError("the first period must start at 0 s")
    if any(later <= earlier for earlier, later in pairwise(starts)):
        raise OperationError("periods must start in increasing order")
    if any(limit < 0 for _, limit in periods):
        raise OperationError("limit must not be negative")
    if kind == "Recurring":
        length = RECURRENCY_SECONDS[recurrency or ""]
        if starts[-1] >= length or (duration is not None and duration > length):
            raise OperationError(f"a {recurrency} schedule fits in {length} s")


def limit_16(value: float) -> float:
    """A 1.6 limit (a multiple of 0.1, Part 2 ChargingSchedulePeriod): rounded to one decimal,
    the value sent is in the command log. A positive limit that rounds to 0 would stop
    charging instead of limiting it: refused (OperationError, 422) rather than sent as 0.
    """
    rounded = round(value, 1)
    if value > 0 and rounded == 0:
        raise OperationError(f"limit must be 0 or at least 0.05 in OCPP 1.6, which sends "
                             f"multiples of 0.1: {value:g} rounds to 0, which stops charging")
    return rounded


def set_limit(version: Version, connector: int, limit: float | None, unit: str,
              profile_id: int, start: datetime | None, *, stack_level: int = 0,
              duration: int | None = None, transaction_id: int | str | None = None,
              kind: str = "Absolute", recurrency: str | None = None,
              periods: Sequence[tuple[int, float]] | None = None) -> Request:
    """SetChargingProfile for one limit (`limit`) or a schedule of periods, each (start in
    seconds from the schedule's start, limit in `unit`).

    kind Absolute starts at `start`; Recurring repeats Daily or Weekly from `start` (required);
    Relative counts from each transaction's start, so it takes no `start` (1.6 3.13.2, 2.0.1
    K01: startSchedule is absent for Relative profiles).
    """
    if unit not in UNITS:
        raise OperationError("unit must be A or W")
    if kind not in KINDS:
        raise OperationError(f"kind must be one of {', '.join(KINDS)}")
    if (limit is None) == (periods is None):
        raise OperationError("give either limit or periods")
    if transaction_id is not None and connector < 1:
        raise OperationError("a limit for a transaction needs its connector (1 or more)")
    if kind == "Recurring" and recurrency not in RECURRENCY_SECONDS:
        raise OperationError("a Recurring profile needs recurrency Daily or Weekly")
    if kind != "Recurring" and recurrency is not None:
        raise OperationError("recurrency is for Recurring profiles only")
    if kind == "Recurring" and start is None:
        raise OperationError("a Recurring profile needs a start: when its day or week begins")
    if kind == "Relative" and start is not None:
        raise OperationError("a Relative profile counts from each transaction's start: "
                             "it takes no start")
    if kind == "Absolute" and start is None:
        raise OperationError("an Absolute profile needs a start")
    steps = [(0, limit)] if periods is None else list(periods)
    check_periods(steps, kind, recurrency, duration)
    if version is Version.OCPP16:
        steps = [(at, limit_16(value)) for at, value in steps]
    schedule: Payload = {"chargingRateUnit": unit, "chargingSchedulePeriod": [
        {"startPeriod": at, "limit": value} for at, value in steps]}
    if start is not None:
        schedule["startSchedule"] = timestamps.format_utc(start)
    if duration is not None:
        schedule["duration"] = duration
    purpose = "TxDefaultProfile" if transaction_id is None else "TxProfile"
    profile: Payload = {"stackLevel": stack_level, "chargingProfilePurpose": purpose,
                        "chargingProfileKind": kind}
    if recurrency is not None:
        profile["recurrencyKind"] = recurrency
    if version is Version.OCPP16:
        profile = {"chargingProfileId": profile_id, **profile, "chargingSchedule": schedule}
        if transaction_id is not None:
            profile["transactionId"] = int(transaction_id)
        return Request("SetChargingProfile", {"connectorId": connector,
                                              "csChargingProfiles": profile})
    profile = {"id": profile_id, **profile,
               "chargingSchedule": [{"id": profile_id, **schedule}]}
    if transaction_id is not None:
        profile["transactionId"] = str(transaction_id)
    return Request("SetChargingProfile", {"evseId": connector, "chargingProfile": profile})


def clear_limit(version: Version, profile_id: int | None, connector: int | None,
                purpose: str | None, stack_level: int | None) -> Request:
    if purpose is not None and purpose not in PURPOSES:
        raise OperationError(f"purpose must be one of {', '.join(PURPOSES)}")
    if version is Version.OCPP16:
        payload: Payload = {}
        for key, value in (("id", profile_id), ("connectorId", connector),
                           ("chargingProfilePurpose", purpose), ("stackLevel", stack_level)):
            if value is not None:
                payload[key] = value
        return Request("ClearChargingProfile", payload)
    criteria: Payload = {}
    for key, value in (("evseId", connector), ("chargingProfilePurpose", purpose),
                       ("stackLevel", stack_level)):
        if value is not None:
            criteria[key] = value
    payload = {} if profile_id is None else {"chargingProfileId": profile_id}
    if criteria:
        payload["chargingProfileCriteria"] = criteria
    return Request("ClearChargingProfile", payload)


def composite_schedule(version: Version, connector: int, duration: int, unit: str | None
                       ) -> Request:
    if unit is not None and unit not in UNITS:
        raise OperationError("unit must be A or W")
    payload: Payload = {"duration": duration}
    payload["connectorId" if version is Version.OCPP16 else "evseId"] = connector
    if unit is not None:
        payload["chargingRateUnit"] = unit
    return Request("GetCompositeSchedule", payload)


def get_charging_profiles(version: Version, request_id: int, connector: int | None,
                          purpose: str | None) -> Request:
    if version is Version.OCPP16:
        raise OperationError("1.6 has no GetChargingProfiles; the CSMS keeps what it set")
    if purpose is not None and purpose not in PURPOSES:
        raise OperationError(f"purpose must be one of {', '.join(PURPOSES)}")
    payload: Payload = {"requestId": request_id,
                        "chargingProfile": {} if purpose is None else {
                            "chargingProfilePurpose": purpose}}
    if connector is not None:
        payload["evseId"] = connector
    return Request("GetChargingProfiles", payload)

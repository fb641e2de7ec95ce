"""Smart charging CALLs: set and clear a charging limit, composite schedules, profile reports.

A "limit" is one charging profile with one schedule period: a TxProfile when it names a
running transaction, otherwise a TxDefaultProfile that every transaction on the connector
(0: all connectors) starts with.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.ocppj import timestamps
from lite_csms.ocppj.versions import Version
from lite_csms.operations.catalogue import OperationError, Request

Payload = dict[str, Any]

UNITS = ("A", "W")
PURPOSES = ("TxDefaultProfile", "TxProfile", "ChargePointMaxProfile",
            "ChargingStationMaxProfile", "ChargingStationExternalConstraints")


def set_limit(version: Version, connector: int, limit: float, unit: str, profile_id: int,
              start: datetime, *, stack_level: int = 0, duration: int | None = None,
              transaction_id: int | str | None = None) -> Request:
    if unit not in UNITS:
        raise OperationError("unit must be A or W")
    if limit < 0:
        raise OperationError("limit must not be negative")
    if transaction_id is not None and connector < 1:
        raise OperationError("a limit for a transaction needs its connector (1 or more)")
    if version is Version.OCPP16:
        # 1.6 limits are multiples of 0.1.
        limit = round(limit, 1)
    schedule: Payload = {"chargingRateUnit": unit, "startSchedule": timestamps.format_utc(start),
                         "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}
    if duration is not None:
        schedule["duration"] = duration
    purpose = "TxDefaultProfile" if transaction_id is None else "TxProfile"
    # Absolute from now: the limit holds at once, not only from the next session's start.
    profile: Payload = {"stackLevel": stack_level, "chargingProfilePurpose": purpose,
                        "chargingProfileKind": "Absolute"}
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

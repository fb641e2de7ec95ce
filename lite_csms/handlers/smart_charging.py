"""Charging profiles a station holds, and the composite schedules it last answered.

The CSMS keeps what the station accepted (SetChargingProfile), forgets what it cleared
(ClearChargingProfile) and takes the station's word for what it holds (2.x
ReportChargingProfiles), so the operator sees the limits in force without asking again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from lite_csms.db.models import ChargingProfile, CompositeSchedule

Payload = dict[str, Any]


def _keep(station_id: str, evse_id: int, profile: Payload, at: datetime) -> None:
    profile_id = profile.get("chargingProfileId", profile.get("id"))
    purpose, stack_level = profile["chargingProfilePurpose"], profile["stackLevel"]
    # A station replaces a profile of the same purpose and stack level on the same EVSE
    # (1.6 3.13.2, 2.x K01.FR.05), and any profile with the same id.
    ChargingProfile.delete().where(
        ChargingProfile.station == station_id,
        (ChargingProfile.profile_id == profile_id)
        | ((ChargingProfile.evse_id == evse_id) & (ChargingProfile.purpose == purpose)
           & (ChargingProfile.stack_level == stack_level))).execute()
    tx = profile.get("transactionId")
    ChargingProfile.create(
        station=station_id, evse_id=evse_id, profile_id=profile_id, purpose=purpose,
        stack_level=stack_level, transaction_id=None if tx is None else str(tx),
        profile=orjson.dumps(profile).decode(), set_at=at)


def accepted(station_id: str, request: Payload, at: datetime) -> None:
    """A SetChargingProfile the station accepted (either version's shape)."""
    if "csChargingProfiles" in request:
        _keep(station_id, request["connectorId"], request["csChargingProfiles"], at)
    else:
        _keep(station_id, request["evseId"], request["chargingProfile"], at)


def cleared(station_id: str, request: Payload) -> int:
    """Forget the profiles a ClearChargingProfile matched; return how many were kept here.

    Called for Accepted (they are gone) and for Unknown (the station holds none that match,
    so any we still list are stale).
    """
    criteria = request.get("chargingProfileCriteria", request)
    conditions = [ChargingProfile.station == station_id]
    profile_id = request.get("id", request.get("chargingProfileId"))
    if profile_id is not None:
        conditions.append(ChargingProfile.profile_id == profile_id)
    evse_id = criteria.get("connectorId", criteria.get("evseId"))
    if evse_id is not None:
        conditions.append(ChargingProfile.evse_id == evse_id)
    if "chargingProfilePurpose" in criteria:
        conditions.append(ChargingProfile.purpose == criteria["chargingProfilePurpose"])
    if "stackLevel" in criteria:
        conditions.append(ChargingProfile.stack_level == criteria["stackLevel"])
    return ChargingProfile.delete().where(*conditions).execute()


def reported(station_id: str, report: Payload, at: datetime) -> None:
    """2.x ReportChargingProfiles: the profiles the station says it holds on one EVSE."""
    for profile in report["chargingProfile"]:
        _keep(station_id, report["evseId"], profile, at)


def transaction_ended(station_id: str, station_tx_id: str) -> None:
    """A TxProfile ends with its transaction (1.6 3.13.4, 2.x K01.FR.05): forget it."""
    ChargingProfile.delete().where(
        ChargingProfile.station == station_id, ChargingProfile.purpose == "TxProfile",
        ChargingProfile.transaction_id == station_tx_id).execute()


def composite_answered(station_id: str, request: Payload, answer: Payload, at: datetime
                       ) -> None:
    evse_id = request.get("connectorId", request.get("evseId", 0))
    schedule: Payload | None = None
    if "schedule" in answer:
        found = answer["schedule"]
        schedule = {"chargingRateUnit": found["chargingRateUnit"],
                    "scheduleStart": found["scheduleStart"], "duration": found["duration"],
                    "chargingSchedulePeriod": found["chargingSchedulePeriod"]}
    elif "chargingSchedule" in answer:
        found = answer["chargingSchedule"]
        start = answer.get("scheduleStart", found.get("startSchedule"))
        schedule = {"chargingRateUnit": found["chargingRateUnit"], "scheduleStart": start,
                    "duration": found.get("duration"),
                    "chargingSchedulePeriod": found["chargingSchedulePeriod"]}
    row = {"station": station_id, "evse_id": evse_id, "status": answer.get("status", ""),
           "schedule": None if schedule is None else orjson.dumps(schedule).decode(),
           "asked_at": at}
    (CompositeSchedule.insert(row)
     .on_conflict(conflict_target=[CompositeSchedule.station, CompositeSchedule.evse_id],
                  preserve=[CompositeSchedule.status, CompositeSchedule.schedule,
                            CompositeSchedule.asked_at]).execute())


def profile_rows(station_id: str) -> list[Payload]:
    query = (ChargingProfile.select().where(ChargingProfile.station == station_id)
             .order_by(ChargingProfile.evse_id, ChargingProfile.profile_id))
    return [{"evse": p.evse_id, "id": p.profile_id, "purpose": p.purpose,
             "stack_level": p.stack_level, "transaction": p.transaction_id,
             "profile": orjson.loads(p.profile), "set_at": p.set_at} for p in query]


def schedule_rows(station_id: str) -> list[Payload]:
    query = (CompositeSchedule.select().where(CompositeSchedule.station == station_id)
             .order_by(CompositeSchedule.evse_id))
    return [{"evse": s.evse_id, "status": s.status, "asked_at": s.asked_at,
             "schedule": None if s.schedule is None else orjson.loads(s.schedule)}
            for s in query]

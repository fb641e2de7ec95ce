"""What an answer teaches us: configuration values, reservations held or refused, charging
profiles in force, firmware and log requests under way, device-model reports expected."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.budget import memory
from lite_csms.db import statements
from lite_csms.db.models import Command
from lite_csms.handlers import (
    device_model,
    local_list,
    maintenance,
    reservation,
    settings,
    smart_charging,
)
from lite_csms.operations import secret
from lite_csms.operations.catalogue import Request, reservation_id_of
from lite_csms.operations.maintenance import request_id_of

Setting = tuple[str, str | None, bool]


def _variable_key(entry: dict[str, Any]) -> str:
    return f"{entry['component']['name']}.{entry['variable']['name']}"


def settings_learned(request: Request, answer: dict[str, Any]) -> list[Setting]:
    """The (key, value, readonly) facts an answered request establishes."""
    action, payload = request.action, request.payload
    if action == "GetConfiguration":
        return [(k["key"], k.get("value"), k["readonly"])
                for k in answer.get("configurationKey", [])]
    if action == "ChangeConfiguration" and answer.get("status") in ("Accepted", "RebootRequired"):
        return [(payload["key"], payload["value"], False)]
    if action == "GetVariables":
        return [(_variable_key(r), r.get("attributeValue"), False)
                for r in answer.get("getVariableResult", [])
                if r.get("attributeStatus") == "Accepted"]
    if action == "SetVariables":
        sent = {_variable_key(d): d["attributeValue"] for d in payload["setVariableData"]}
        return [(key, sent[key], False) for r in answer.get("setVariableResult", [])
                if r.get("attributeStatus") in ("Accepted", "RebootRequired")
                and (key := _variable_key(r)) in sent]
    return []


def _local_list(station_id: str, request: Request, answer: dict[str, Any], at: datetime
                ) -> None:
    if request.action == "SendLocalList" and answer.get("status") == "Accepted":
        payload = request.payload
        local_list.accepted(station_id, payload.get("listVersion", payload.get("versionNumber")),
                            at)
    elif request.action == "GetLocalListVersion":
        local_list.reported_version(
            station_id, answer.get("listVersion", answer.get("versionNumber", 0)))


MAINTENANCE_KINDS = {"UpdateFirmware": maintenance.FIRMWARE,
                     "GetDiagnostics": maintenance.DIAGNOSTICS,
                     "GetLog": maintenance.DIAGNOSTICS}
REPORT_KINDS = {"GetBaseReport": lambda payload: payload["reportBase"],
                "GetReport": lambda payload: "custom"}


def recorded_before_sending(action: str) -> bool:
    """Whether `before_send` has anything to do for this action (it costs a store job)."""
    return action in MAINTENANCE_KINDS or action in REPORT_KINDS


def before_send(station_id: str, command_id: int, request: Request, at: datetime) -> None:
    """Record a request whose follow-up messages the station may send before the CSMS has
    handled its answer: status reports and report parts must find their request."""
    payload = request.payload
    if request.action in MAINTENANCE_KINDS:
        location = payload.get("location") or payload.get("firmware", payload.get("log", {}))
        if isinstance(location, dict):
            location = location.get("location", location.get("remoteLocation", ""))
        maintenance.requested(station_id, MAINTENANCE_KINDS[request.action],
                              request_id_of(request), command_id, location, at)
    elif request.action in REPORT_KINDS:
        device_model.requested(station_id, payload["requestId"],
                               REPORT_KINDS[request.action](payload), at)


def _smart_charging(station_id: str, request: Request, answer: dict[str, Any], at: datetime
                    ) -> None:
    status = answer.get("status")
    if request.action == "SetChargingProfile" and status == "Accepted":
        smart_charging.accepted(station_id, request.payload, at)
    elif request.action == "ClearChargingProfile" and status in ("Accepted", "Unknown"):
        smart_charging.cleared(station_id, request.payload)
    elif request.action == "GetCompositeSchedule":
        smart_charging.composite_answered(station_id, request.payload, answer, at)


def _requested_by(command_id: int | None) -> str | None:
    if command_id is None:
        return None
    found = statements.connection(Command).execute(
        'SELECT "requested_by" FROM "command" WHERE "id" = ?', (command_id,)).fetchone()
    return None if found is None else found[0]


_UNKNOWN: Any = object()


def apply(station_id: str, request: Request, answer: dict[str, Any] | None, at: datetime,
          command_id: int | None = None, requested_by: str | None = _UNKNOWN,
          refusals_exist: bool | None = None) -> bool:
    """Record what the answer (None: no answer) means; runs inside the store writer.
    `requested_by`: who asked for the command, when the caller knows (else it is read from
    the command log by `command_id`); `refusals_exist`: see memory.learn. Returns whether a
    setting refusal was recorded."""
    learned = False
    if answer is not None and not secret.writes_secret(request.action, request.payload):
        # A password is no configuration value to show or own (operations/secret.py).
        settings.store(station_id, settings_learned(request, answer), at)
        learned = memory.learn(
            station_id, request.action, request.payload, answer, at,
            _requested_by(command_id) if requested_by is _UNKNOWN else requested_by,
            refusals_exist)
    if answer is not None:
        _local_list(station_id, request, answer, at)
        _smart_charging(station_id, request, answer, at)
    if request.action in MAINTENANCE_KINDS and command_id is not None:
        maintenance.answered(command_id, answer, at)
    elif request.action in REPORT_KINDS:
        device_model.answered(station_id, request.payload["requestId"], answer)
    reservation_id = reservation_id_of(request)
    if reservation_id is None:
        return learned
    status = None if answer is None else answer.get("status")
    if request.action == "ReserveNow":
        reservation.answered(reservation_id, status)
    elif status == "Accepted":
        reservation.cancelled(reservation_id)
    return learned

"""What an answer teaches us: configuration values, reservations held or refused."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.handlers import local_list, reservation, settings
from lite_csms.operations.catalogue import Request, reservation_id_of

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


def apply(station_id: str, request: Request, answer: dict[str, Any] | None, at: datetime
          ) -> None:
    """Record what the answer (None: no answer) means; runs inside the store writer."""
    if answer is not None:
        settings.store(station_id, settings_learned(request, answer), at)
    if answer is not None:
        _local_list(station_id, request, answer, at)
    reservation_id = reservation_id_of(request)
    if reservation_id is None:
        return
    status = None if answer is None else answer.get("status")
    if request.action == "ReserveNow":
        reservation.answered(reservation_id, status)
    elif status == "Accepted":
        reservation.cancelled(reservation_id)

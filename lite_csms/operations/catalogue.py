"""The CALL each remote operation sends, for 1.6 and for 2.x (2.0.1 and 2.1 share shapes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lite_csms.handlers.local_list import PlannedList
from lite_csms.ocppj import timestamps
from lite_csms.ocppj.versions import Version

Payload = dict[str, Any]

V16_ID_TAG_MAX = 20


class OperationError(ValueError):
    """The operation cannot be expressed for this station (bad key, missing argument)."""


@dataclass(frozen=True, slots=True)
class Request:
    action: str
    payload: Payload


def remote_start(version: Version, connector: int, id_token: str, remote_start_id: int
                 ) -> Request:
    if version is Version.OCPP16:
        return Request("RemoteStartTransaction", {"connectorId": connector, "idTag": id_token})
    return Request("RequestStartTransaction", {
        "evseId": connector, "remoteStartId": remote_start_id,
        # Central: the CSMS vouches for this token; the charger need not authorize it again.
        "idToken": {"idToken": id_token, "type": "Central"},
    })


def remote_stop(version: Version, transaction_id: int, station_tx_id: str | None) -> Request:
    if version is Version.OCPP16:
        return Request("RemoteStopTransaction", {"transactionId": transaction_id})
    if station_tx_id is None:
        raise OperationError(f"transaction {transaction_id} has no station transaction id")
    return Request("RequestStopTransaction", {"transactionId": station_tx_id})


def reset(version: Version, hard: bool, evse: int | None = None) -> Request:
    """Reset the station, or on 2.x one EVSE (evseId, 2.0.1 B11/B12); 1.6 has no EVSE reset."""
    if version is Version.OCPP16:
        if evse is not None:
            raise OperationError("a 1.6 Reset restarts the whole charge point: it cannot "
                                 "target one EVSE (2.0.1 and 2.1 can)")
        return Request("Reset", {"type": "Hard" if hard else "Soft"})
    payload: Payload = {"type": "Immediate" if hard else "OnIdle"}
    if evse is not None:
        if evse < 1:
            raise OperationError("evse must be 1 or more (omit it to reset the whole station)")
        payload["evseId"] = evse
    return Request("Reset", payload)


def change_availability(version: Version, connector: int, operative: bool) -> Request:
    status = "Operative" if operative else "Inoperative"
    if version is Version.OCPP16:
        return Request("ChangeAvailability", {"connectorId": connector, "type": status})
    payload: Payload = {"operationalStatus": status}
    if connector:
        payload["evse"] = {"id": connector}
    return Request("ChangeAvailability", payload)


def unlock(version: Version, connector: int) -> Request:
    if version is Version.OCPP16:
        return Request("UnlockConnector", {"connectorId": connector})
    return Request("UnlockConnector", {"evseId": connector, "connectorId": 1})


def clear_cache(version: Version) -> Request:
    return Request("ClearCache", {})


def trigger(version: Version, message: str, connector: int | None) -> Request:
    if version is Version.OCPP16:
        payload: Payload = {"requestedMessage": message}
        if connector is not None:
            payload["connectorId"] = connector
        return Request("TriggerMessage", payload)
    payload = {"requestedMessage": message}
    if connector is not None:
        payload["evse"] = {"id": connector}
    return Request("TriggerMessage", payload)


def data_transfer(version: Version, vendor_id: str, message_id: str | None, data: Any
                  ) -> Request:
    payload: Payload = {"vendorId": vendor_id}
    if message_id is not None:
        payload["messageId"] = message_id
    if data is not None:
        # 1.6 carries data as a string; 2.x takes any JSON value.
        payload["data"] = data if version.is_2x or isinstance(data, str) else str(data)
    return Request("DataTransfer", payload)


def split_variable(key: str) -> Payload:
    """2.x keys are written Component.Variable, e.g. OCPPCommCtrlr.HeartbeatInterval."""
    component, dot, variable = key.partition(".")
    if not dot or not component or not variable:
        raise OperationError(f"2.x keys are Component.Variable, got {key!r}")
    return {"component": {"name": component}, "variable": {"name": variable}}


def get_config(version: Version, keys: list[str]) -> Request:
    if version is Version.OCPP16:
        return Request("GetConfiguration", {"key": keys} if keys else {})
    if not keys:
        raise OperationError("2.x stations need explicit Component.Variable keys "
                             "(a full report comes from GetBaseReport)")
    return Request("GetVariables", {"getVariableData": [split_variable(k) for k in keys]})


def set_config(version: Version, key: str, value: str) -> Request:
    return set_configs(version, {key: value})[0]


def set_configs(version: Version, changes: Mapping[str, str]) -> list[Request]:
    """1.6 changes one key per ChangeConfiguration; 2.x sets them all in one SetVariables."""
    if version is Version.OCPP16:
        return [Request("ChangeConfiguration", {"key": key, "value": value})
                for key, value in changes.items()]
    return [Request("SetVariables", {"setVariableData": [
        {**split_variable(key), "attributeValue": value} for key, value in changes.items()]})]


def reserve(version: Version, connector: int, token: str, token_type: str,
            expires_at: datetime, reservation_id: int,
            group: tuple[str, str] | None = None) -> Request:
    """ReserveNow; `group` is the token's group and its type, so that the station lets any
    token of the group use the reservation (1.6 parentIdTag, 2.x groupIdToken)."""
    expiry = timestamps.format_utc(expires_at)
    if version is Version.OCPP16:
        payload: Payload = {"connectorId": connector, "expiryDate": expiry, "idTag": token,
                            "reservationId": reservation_id}
        # A cut group would name another group: longer than the 1.6 idTag's 20, it is left out.
        if group is not None and len(group[0]) <= V16_ID_TAG_MAX:
            payload["parentIdTag"] = group[0]
        return Request("ReserveNow", payload)
    payload = {"id": reservation_id, "expiryDateTime": expiry,
               "idToken": {"idToken": token, "type": token_type}}
    if connector:
        payload["evseId"] = connector
    if group is not None:
        payload["groupIdToken"] = {"idToken": group[0], "type": group[1]}
    return Request("ReserveNow", payload)


def cancel_reservation(version: Version, reservation_id: int) -> Request:
    return Request("CancelReservation", {"reservationId": reservation_id})


def reservation_id_of(request: Request) -> int | None:
    if request.action == "ReserveNow":
        return request.payload.get("reservationId", request.payload.get("id"))
    if request.action == "CancelReservation":
        return request.payload["reservationId"]
    return None


def send_local_list(version: Version, planned: PlannedList) -> Request:
    update = "Full" if planned.full else "Differential"
    if version is Version.OCPP16:
        entries = []
        for entry in planned.entries:
            info: Payload = {"status": entry.auth.status}
            if entry.auth.expires_at is not None:
                info["expiryDate"] = timestamps.format_utc(entry.auth.expires_at)
            if entry.auth.group_token is not None:
                info["parentIdTag"] = entry.auth.group_token[:20]
            entries.append({"idTag": entry.token, "idTagInfo": info})
        return Request("SendLocalList", {"listVersion": planned.version, "updateType": update,
                                         "localAuthorizationList": entries})
    entries = []
    for entry in planned.entries:
        token_info: Payload = {"status": entry.auth.status}
        if entry.auth.expires_at is not None:
            token_info["cacheExpiryDateTime"] = timestamps.format_utc(entry.auth.expires_at)
        if entry.auth.group_token is not None:
            token_info["groupIdToken"] = {"idToken": entry.auth.group_token,
                                          "type": entry.auth.group_type or "Central"}
        entries.append({"idToken": {"idToken": entry.token, "type": entry.token_type},
                        "idTokenInfo": token_info})
    payload: Payload = {"versionNumber": planned.version, "updateType": update}
    if entries:
        payload["localAuthorizationList"] = entries
    return Request("SendLocalList", payload)


def get_local_list_version(version: Version) -> Request:
    return Request("GetLocalListVersion", {})

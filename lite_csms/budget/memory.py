"""What the budget policy remembers per station and setting: what the charger refused, and
what an operator set explicitly. Functions run inside the store writer (or a read-only store).

- A refusal is kept with the firmware the station ran when it refused; it stops counting as
  soon as the station boots with another `firmwareVersion` (the new firmware may accept it).
  Rejected refuses that value; 1.6 NotSupported and 2.x UnknownVariable/UnknownComponent
  refuse the key (any value); a CALLERROR NotImplemented/NotSupported to the configuration
  action refuses the action itself (no setting is sent to that firmware at all).
- An operator's `config set` (1.6 ChangeConfiguration, 2.x SetVariables sent by anyone but
  the policy) that the charger accepted (Accepted or RebootRequired) makes that key
  operator-owned for that station: the policy yields it, and the BootNotification answer
  carries the operator's heartbeat. `release` hands keys back. A value the charger refused
  is recorded as a refusal (with who asked for it) and the key stays with the policy: the
  charger does not hold the operator's value, so nothing may pretend it does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from lite_csms.db import statements
from lite_csms.db.models import OperatorSetting, SettingRefusal, Station

# The requested_by of the policy's own commands; every other sender is an operator.
POLICY = "budget-policy"
SETTING_ACTIONS = frozenset({"ChangeConfiguration", "SetVariables"})
# Answers that say "not this value, not on this firmware" (1.6 §7.9 ConfigurationStatus,
# 2.0.1 SetVariableStatusEnumType). RebootRequired is an acceptance.
V16_REFUSALS = frozenset({"Rejected", "NotSupported"})
V2_REFUSALS = frozenset({"Rejected", "UnknownComponent", "UnknownVariable",
                         "NotSupportedAttributeType"})
# A CALLERROR that says the charger has no such operation at all refuses every key it carried.
CALL_ERROR_REFUSALS = frozenset({"NotImplemented", "NotSupported"})
# Answers that say the charger does not know the key at all, whatever its value: remembered
# per key (any value), where Rejected is remembered per value.
KEY_REFUSALS = frozenset({"NotSupported", "UnknownVariable", "UnknownComponent"})
VALUE, KEY, ACTION = "value", "key", "action"
# What makes a value held: 1.6 ConfigurationStatus and 2.x SetVariableStatusEnumType alike.
ACCEPTANCES = frozenset({"Accepted", "RebootRequired"})


def _variable_key(entry: Mapping[str, Any]) -> str:
    return f"{entry['component']['name']}.{entry['variable']['name']}"


def requested_values(action: str, payload: Mapping[str, Any]) -> dict[str, str]:
    """The key -> value a ChangeConfiguration or SetVariables asks for ({} for other actions)."""
    try:
        if action == "ChangeConfiguration":
            return {str(payload["key"]): str(payload["value"])}
        if action == "SetVariables":
            return {_variable_key(d): str(d["attributeValue"])
                    for d in payload["setVariableData"]
                    if d.get("attributeType", "Actual") == "Actual"}
    except (KeyError, TypeError):
        pass  # not a valid request: outbound validation refuses it before it is sent
    return {}


def refused_in(action: str, payload: Mapping[str, Any], result: Mapping[str, Any] | None,
               error_code: str | None) -> dict[str, str]:
    """key -> refusal status for each key the answer refused."""
    sent = requested_values(action, payload)
    if result is None:
        if error_code in CALL_ERROR_REFUSALS:
            return dict.fromkeys(sent, error_code)
        return {}  # a timeout or a lost link says nothing about the value
    if action == "ChangeConfiguration":
        status = result.get("status")
        return dict.fromkeys(sent, status) if status in V16_REFUSALS else {}
    refused = {}
    for entry in result.get("setVariableResult", []):
        key, status = _variable_key(entry), entry.get("attributeStatus")
        if key in sent and status in V2_REFUSALS:
            refused[key] = status
    return refused


def accepted_in(action: str, payload: Mapping[str, Any], result: Mapping[str, Any]
                ) -> dict[str, str]:
    """key -> value for each key the answer accepted (Accepted or RebootRequired)."""
    sent = requested_values(action, payload)
    if action == "ChangeConfiguration":
        return dict(sent) if result.get("status") in ACCEPTANCES else {}
    taken = {}
    for entry in result.get("setVariableResult", []):
        key = _variable_key(entry)
        if key in sent and entry.get("attributeStatus") in ACCEPTANCES:
            taken[key] = sent[key]
    return taken


def firmware_of(station_id: str) -> str | None:
    station = statements.first(Station, 'WHERE "id" = ? LIMIT 1', (station_id,))
    return None if station is None else station.firmware_version


def record_refusals(station_id: str, refused: Mapping[str, tuple[str, str]], at: datetime,
                    requested_by: str | None = POLICY) -> None:
    """Keep `key -> (value, status)` refusals under the station's current firmware."""
    firmware = firmware_of(station_id)
    for key, (value, status) in refused.items():
        _keep(station_id, key, value, status, firmware, at, requested_by,
              KEY if status in KEY_REFUSALS else VALUE)


def record_unsupported(station_id: str, action: str, status: str, at: datetime) -> None:
    """The charger answered the configuration `action` itself with a CALLERROR (`status`
    NotImplemented or NotSupported): no setting goes to this firmware any more."""
    _keep(station_id, action, "", status, firmware_of(station_id), at, POLICY, ACTION)


def _keep(station_id: str, key: str, value: str, status: str, firmware: str | None,
          at: datetime, requested_by: str | None, scope: str) -> None:
    (SettingRefusal.insert(station=station_id, key=key, value=value, status=status,
                           firmware_version=firmware, at=at, requested_by=requested_by,
                           scope=scope)
     .on_conflict(conflict_target=[SettingRefusal.station, SettingRefusal.key,
                                   SettingRefusal.value],
                  update={SettingRefusal.status: status,
                          SettingRefusal.firmware_version: firmware,
                          SettingRefusal.at: at,
                          SettingRefusal.requested_by: requested_by,
                          SettingRefusal.scope: scope})
     .execute())


def has_refusals(station_id: str) -> bool:
    """Whether any refusal of the station's is remembered (under any firmware)."""
    return statements.connection(SettingRefusal).execute(
        'SELECT 1 FROM "setting_refusal" WHERE "station_id" = ? LIMIT 1',
        (station_id,)).fetchone() is not None


def learn(station_id: str, action: str, payload: Mapping[str, Any],
          answer: Mapping[str, Any] | None, at: datetime,
          requested_by: str | None = POLICY, refusals_exist: bool | None = None) -> bool:
    """Remember what an answered ChangeConfiguration/SetVariables refused, whoever sent it,
    and forget a refusal of a value the station has now accepted; an operator's accepted
    value makes its key operator-owned (`claim`). Runs in the store writer with the
    command's outcome, so a link that drops right after the answer loses nothing.
    `refusals_exist`: False when the caller has just found none of the station's
    (`has_refusals`), so there is nothing to forget. Returns whether it recorded a refusal."""
    if answer is None or action not in SETTING_ACTIONS:
        return False
    sent = requested_values(action, payload)
    refused = refused_in(action, payload, answer, None)
    if refused:
        record_refusals(station_id, {k: (sent[k], status) for k, status in refused.items()},
                        at, requested_by)
    accepted = accepted_in(action, payload, answer)
    if accepted and requested_by is not None and requested_by != POLICY:
        claim(station_id, accepted, requested_by, at)
    if refusals_exist is False and not refused:
        # A first boot's seven accepted settings: fourteen DELETEs that find nothing.
        return False
    for key, value in accepted.items():
        # It knows the key after all (and the action): those refusals go with this one.
        statements.connection(SettingRefusal).execute(
            'DELETE FROM "setting_refusal" WHERE "station_id" = ? AND "key" = ? '
            'AND ("value" = ? OR "scope" = ?)', (station_id, key, value, KEY))
    if accepted:
        statements.connection(SettingRefusal).execute(
            'DELETE FROM "setting_refusal" WHERE "station_id" = ? AND "scope" = ?',
            (station_id, ACTION))
    return bool(refused)


_UNREAD: Any = object()


def refusals(station_id: str, firmware: str | None = _UNREAD
             ) -> dict[tuple[str, str], dict[str, Any]]:
    """(key, value) -> the refusal (with its `scope`: value, key or action), for refusals
    made under the station's current firmware (`firmware`, when the caller has read it)."""
    if firmware is _UNREAD:
        firmware = firmware_of(station_id)
    found = {}
    for row in statements.rows(SettingRefusal, 'WHERE "station_id" = ?', (station_id,)):
        if row.firmware_version == firmware:
            found[(row.key, row.value)] = {"status": row.status, "at": row.at,
                                           "firmware_version": row.firmware_version,
                                           "requested_by": row.requested_by,
                                           "scope": row.scope or VALUE}
    return found


def claim(station_id: str, values: Mapping[str, str], requested_by: str | None, at: datetime
          ) -> None:
    """Make these keys operator-owned for the station, with the values the charger accepted
    from the operator."""
    for key, value in values.items():
        (OperatorSetting.insert(station=station_id, key=key, value=value,
                                requested_by=requested_by, at=at)
         .on_conflict(conflict_target=[OperatorSetting.station, OperatorSetting.key],
                      update={OperatorSetting.value: value,
                              OperatorSetting.requested_by: requested_by,
                              OperatorSetting.at: at})
         .execute())


def owned(station_id: str) -> dict[str, dict[str, Any]]:
    """key -> {value, requested_by, at} for the station's operator-owned keys."""
    # Read at every boot (the policy's state): a prepared statement, not a built query.
    query = statements.rows(OperatorSetting, 'WHERE "station_id" = ? ORDER BY "key"',
                            (station_id,))
    return {row.key: {"value": row.value, "requested_by": row.requested_by, "at": row.at}
            for row in query}


def release(station_id: str, keys: Iterable[str] | None) -> list[str]:
    """Hand keys back to the policy (None: all of them); returns the keys released."""
    query = OperatorSetting.select(OperatorSetting.key).where(
        OperatorSetting.station == station_id)
    if keys is not None:
        query = query.where(OperatorSetting.key.in_(list(keys)))
    released = sorted(row.key for row in query)
    if released:
        (OperatorSetting.delete().where(OperatorSetting.station == station_id,
                                        OperatorSetting.key.in_(released)).execute())
    return released


def upgrade_v4(db: Any) -> None:
    """Give each refusal an earlier release kept its scope; idempotent. Those releases kept
    every refusal per value: the statuses that say the key is unknown (1.6 NotSupported, 2.x
    UnknownVariable/UnknownComponent) now refuse the key; the rest stay per value.
    db/upgrade.py has added the `scope` column (its default "value") by now."""
    if not db.execute_sql("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                          "name='setting_refusal'").fetchone():
        return
    db.execute_sql("UPDATE setting_refusal SET scope = ? WHERE scope IS NULL", (VALUE,))
    marks = ", ".join("?" for _ in KEY_REFUSALS)
    db.execute_sql(f"UPDATE setting_refusal SET scope = ? WHERE scope = ? AND status IN "
                   f"({marks})", (KEY, VALUE, *sorted(KEY_REFUSALS)))

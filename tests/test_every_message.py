"""Every message a station may send gets a schema-valid CALLRESULT and leaves a trace.

The station-to-CSMS actions are listed per version from Part 2 of each spec (1.6 with its
security whitepaper). Payloads are the minimal valid ones, generated from the OCA schemas.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from trio_websocket import open_websocket_url

from lite_csms.db.models import Station
from lite_csms.ocppj import schemas
from lite_csms.ocppj.versions import Version
from tests.conftest import CsmsInProcess

V16 = ["Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification",
       "FirmwareStatusNotification", "Heartbeat", "MeterValues", "StartTransaction",
       "StatusNotification", "StopTransaction",
       # 1.6 security whitepaper
       "LogStatusNotification", "SecurityEventNotification", "SignCertificate",
       "SignedFirmwareStatusNotification"]
V201 = ["Authorize", "BootNotification", "ClearedChargingLimit", "DataTransfer",
        "FirmwareStatusNotification", "Get15118EVCertificate", "GetCertificateStatus",
        "Heartbeat", "LogStatusNotification", "MeterValues", "NotifyChargingLimit",
        "NotifyCustomerInformation", "NotifyDisplayMessages", "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule", "NotifyEvent", "NotifyMonitoringReport", "NotifyReport",
        "PublishFirmwareStatusNotification", "ReportChargingProfiles",
        "ReservationStatusUpdate", "SecurityEventNotification", "SignCertificate",
        "StatusNotification", "TransactionEvent"]
V21 = [*V201, "BatterySwap", "ClosePeriodicEventStream", "GetCertificateChainStatus",
       "NotifyDERAlarm", "NotifyDERStartStop", "NotifyPriorityCharging", "NotifySettlement",
       "OpenPeriodicEventStream", "PullDynamicScheduleUpdate", "ReportDERControl",
       "VatNumberValidation"]
ACTIONS = {Version.OCPP16: V16, Version.OCPP201: V201, Version.OCPP21: V21}

# Messages with a store of their own; every other one is kept in station_event.
OWN_STORE = {
    "BootNotification": "SELECT 1 FROM station WHERE id=? AND last_boot_at IS NOT NULL",
    "StatusNotification": "SELECT 1 FROM connector WHERE station_id=?",
    "MeterValues": "SELECT 1 FROM meter_sample WHERE station_id=?",
    "StartTransaction": 'SELECT 1 FROM "transaction" WHERE station_id=?',
    "TransactionEvent": 'SELECT 1 FROM "transaction" WHERE station_id=?',
    "ReportChargingProfiles": "SELECT 1 FROM charging_profile WHERE station_id=?",
}
# Questions rather than reports: answered from the store, nothing to keep.
QUESTIONS = {"Authorize", "Heartbeat"}
AT = "2026-11-21T10:00:00Z"


def minimal(node: dict[str, Any], definitions: dict[str, Any], name: str = "") -> Any:
    """The smallest value the schema node accepts: required properties only, first enum."""
    if "$ref" in node:
        node = definitions[node["$ref"].rsplit("/", 1)[1]]
    kind = node.get("type")
    if "enum" in node:
        return node["enum"][0]
    if kind == "object":
        return {key: minimal(node["properties"][key], definitions, key)
                for key in node.get("required", [])}
    if kind == "array":
        return [minimal(node["items"], definitions, name)
                for _ in range(max(1, node.get("minItems", 0)))]
    if kind == "string":
        if node.get("format") == "date-time":
            return AT
        # 1.6 sampled values are decimal strings.
        return "1" if name == "value" else "x"
    if kind == "integer":
        return max(1, node.get("minimum", 1))
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    raise AssertionError(f"no minimal value for {node}")


def payload_for(version: Version, action: str) -> dict[str, Any]:
    schema = schemas.schema(version, action, False)
    payload = minimal(schema, schema.get("definitions", {}))
    assert schemas.validate(version, action, payload, response=False) is None, action
    return payload


def rows(csms: CsmsInProcess, sql: str, *args: object) -> list[tuple]:
    conn = sqlite3.connect(csms.database)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("version", list(Version), ids=lambda v: v.value)
async def test_every_station_message_is_answered_and_recorded(
    csms: CsmsInProcess, version: Version
) -> None:
    station = f"ALL-{version.name}"
    await csms.server.store.run(lambda: Station.create(id=station))
    known = schemas.known_actions(version)
    assert set(ACTIONS[version]) <= known
    async with open_websocket_url(csms.url(station), subprotocols=[version.value]) as ws:
        boot = "BootNotification"
        for n, action in enumerate([boot] + [a for a in ACTIONS[version] if a != boot]):
            await ws.send_message(json.dumps([2, f"m{n}", action, payload_for(version, action)]))
            answer = json.loads(await ws.get_message())
            assert answer[:2] == [3, f"m{n}"], (action, answer)
            assert schemas.validate(version, action, answer[2], response=True) is None, action
            if action in OWN_STORE:
                assert rows(csms, OWN_STORE[action], station), action
            elif action not in QUESTIONS and action != "StopTransaction":
                assert rows(csms, "SELECT 1 FROM station_event WHERE station_id=? AND action=?",
                            station, action), f"{action} left no trace"
        if version is Version.OCPP21:
            # SEND is never answered; a heartbeat after it proves it was read.
            sent = payload_for(version, "NotifyPeriodicEventStream")
            await ws.send_message(json.dumps([6, "s1", "NotifyPeriodicEventStream", sent]))
            await ws.send_message(json.dumps([2, "h", "Heartbeat", {}]))
            assert json.loads(await ws.get_message())[:2] == [3, "h"]
            assert rows(csms, "SELECT 1 FROM station_event WHERE station_id=? AND action=?",
                        station, "NotifyPeriodicEventStream")


async def test_answers_say_what_this_csms_cannot_do(csms: CsmsInProcess) -> None:
    """No PKI, no EV schedules: the answers say so instead of pretending."""
    expected = {
        Version.OCPP201: {"NotifyEVChargingNeeds": "Rejected", "SignCertificate": "Rejected",
                          "GetCertificateStatus": "Failed", "Get15118EVCertificate": "Failed"},
        Version.OCPP21: {"NotifyEVChargingNeeds": "NoChargingProfile",
                         "OpenPeriodicEventStream": "Rejected",
                         "PullDynamicScheduleUpdate": "Rejected",
                         "VatNumberValidation": "Rejected"},
        Version.OCPP16: {"SignCertificate": "Rejected"},
    }
    for version, statuses in expected.items():
        station = f"NO-{version.name}"
        await csms.server.store.run(lambda station=station: Station.create(id=station))
        async with open_websocket_url(csms.url(station), subprotocols=[version.value]) as ws:
            for action, status in statuses.items():
                await ws.send_message(json.dumps([2, action, action,
                                                  payload_for(version, action)]))
                answer = json.loads(await ws.get_message())
                assert answer[0] == 3 and answer[2]["status"] == status, (action, answer)

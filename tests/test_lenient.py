"""Kind 5: liberal in what we accept (known charger deviations, recorded per station), strict
in what we send, and strict on request."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import trio
from trio_websocket import open_websocket_url

from lite_csms import config
from lite_csms.cli.main import _settings, build_parser
from lite_csms.db.models import Station
from lite_csms.ocppj import lenient
from lite_csms.ocppj.session import InboundCall, RpcSession, SendReply
from lite_csms.ocppj.versions import Version
from tests.conftest import CsmsInProcess, run_cli, start_in_process
from tests.test_admin_api import http, new_key

AT = "2026-11-21T10:00:00Z"
# The Schneider EVlink Smart Wallbox's boot, as reported against other CSMSs.
EVLINK_BOOT = {"chargeBoxSerialNumber": "EVB1A22P2KI3N12345678901234567890",
               "chargePointModel": "EVlink Smart Wallbox",
               "chargePointSerialNumber": "3N123456789F2S1B1234567890",
               "chargePointVendor": "Schneider Electric", "firmwareVersion": "3.4.0.9"}
BOOT_201_LONG = {"reason": "PowerUp", "chargingStation": {
    "vendorName": "Acme", "model": "Home-7 Wallbox Pro Max XL", "serialNumber": "S" * 30}}


def rows(database: Path, sql: str, *args: object) -> list[tuple]:
    conn = sqlite3.connect(database)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def rpc(ws, message: list) -> list:
    await ws.send_message(json.dumps(message))
    return json.loads(await ws.get_message())


def receive(version: Version, action: str, payload: dict, *, strict: bool = False) -> object:
    [event] = RpcSession(version, lenient=not strict).receive(
        json.dumps([2, "a", action, payload]), 0.0)
    return event


# ---- the sans-IO core -------------------------------------------------------------------------

def test_over_long_strings_are_kept_whole_and_reported() -> None:
    event = receive(Version.OCPP16, "BootNotification", EVLINK_BOOT)
    assert isinstance(event, InboundCall)
    assert event.payload == EVLINK_BOOT
    assert {(d.kind, d.path) for d in event.deviations} == {
        (lenient.OVERLONG, "chargeBoxSerialNumber"), (lenient.OVERLONG, "chargePointSerialNumber")}
    strict = receive(Version.OCPP16, "BootNotification", EVLINK_BOOT, strict=True)
    assert isinstance(strict, SendReply)
    assert json.loads(strict.text)[2] == "PropertyConstraintViolation"


@pytest.mark.parametrize(("version", "action", "payload", "expected", "kind", "path"), [
    # numbers where strings are wanted: coerced to their JSON text
    (Version.OCPP16, "BootNotification",
     {"chargePointVendor": "A", "chargePointModel": "M", "firmwareVersion": 3.4},
     {"chargePointVendor": "A", "chargePointModel": "M", "firmwareVersion": "3.4"},
     lenient.NUMBER_AS_STRING, "firmwareVersion"),
    (Version.OCPP16, "MeterValues",
     {"connectorId": 1, "meterValue": [{"timestamp": AT, "sampledValue": [{"value": 1234.5}]}]},
     {"connectorId": 1, "meterValue": [{"timestamp": AT, "sampledValue": [{"value": "1234.5"}]}]},
     lenient.NUMBER_AS_STRING, "meterValue[].sampledValue[].value"),
    # null for an optional property: absent
    (Version.OCPP16, "StatusNotification",
     {"connectorId": 1, "errorCode": "NoError", "info": None, "status": "Available"},
     {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
     lenient.NULL_OPTIONAL, "info"),
    # enum in the wrong case: the one member that matches
    (Version.OCPP201, "StatusNotification",
     {"timestamp": AT, "connectorStatus": "AVAILABLE", "evseId": 1, "connectorId": 1},
     {"timestamp": AT, "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
     lenient.ENUM_CASE, "connectorStatus"),
    # unknown property: ignored, kept as received
    (Version.OCPP201, "Heartbeat", {"uptime": 5}, {"uptime": 5},
     lenient.UNKNOWN_PROPERTY, "uptime"),
    (Version.OCPP201, "BootNotification",
     {**BOOT_201_LONG, "chargingStation": {"vendorName": "A", "model": "M", "serialNumber": 42}},
     {**BOOT_201_LONG, "chargingStation": {"vendorName": "A", "model": "M",
                                           "serialNumber": "42"}},
     lenient.NUMBER_AS_STRING, "chargingStation.serialNumber"),
])
def test_known_deviations_are_repaired(version: Version, action: str, payload: dict,
                                       expected: dict, kind: str, path: str) -> None:
    event = receive(version, action, payload)
    assert isinstance(event, InboundCall), event
    assert event.payload == expected
    assert [(d.kind, d.path) for d in event.deviations] == [(kind, path)]
    assert isinstance(receive(version, action, payload, strict=True), SendReply)


@pytest.mark.parametrize(("version", "action", "payload", "code"), [
    # ids that are numbers may have lost leading zeros: not coerced
    (Version.OCPP16, "Authorize", {"idTag": 12}, "TypeConstraintViolation"),
    (Version.OCPP201, "TransactionEvent", {
        "eventType": "Started", "timestamp": AT, "triggerReason": "Authorized", "seqNo": 0,
        "transactionInfo": {"transactionId": 1234}}, "TypeConstraintViolation"),
    # a required field is never made up
    (Version.OCPP16, "StatusNotification",
     {"connectorId": 1, "errorCode": None, "status": "Available"}, "TypeConstraintViolation"),
    (Version.OCPP16, "StartTransaction", {"connectorId": 1, "idTag": "T", "timestamp": AT},
     "OccurenceConstraintViolation"),
    # strings where numbers are wanted: energy is never parsed out of text
    (Version.OCPP16, "StartTransaction",
     {"connectorId": 1, "idTag": "T", "meterStart": "1000", "timestamp": AT},
     "TypeConstraintViolation"),
    # an unknown enum value is not guessed
    (Version.OCPP16, "StatusNotification",
     {"connectorId": 1, "errorCode": "Error", "status": "Faulted"},
     "PropertyConstraintViolation"),
    (Version.OCPP201, "MeterValues", {"evseId": 1, "meterValue": [{"timestamp": "yesterday",
                                      "sampledValue": [{"value": 1}]}]},
     "PropertyConstraintViolation"),
])
def test_everything_else_still_gets_the_specs_callerror(version: Version, action: str,
                                                         payload: dict, code: str) -> None:
    event = receive(version, action, payload)
    assert isinstance(event, SendReply), event
    assert json.loads(event.text)[2] == code


def test_one_repair_covers_every_entry_of_a_list() -> None:
    sampled = [{"value": "1", "unit": "WH", "extra": n} for n in range(300)]
    event = receive(Version.OCPP16, "MeterValues", {
        "connectorId": 1, "meterValue": [{"timestamp": AT, "sampledValue": sampled}] * 2})
    assert isinstance(event, InboundCall)
    assert {s["unit"] for m in event.payload["meterValue"] for s in m["sampledValue"]} == {"Wh"}
    assert sorted(d.kind for d in event.deviations) == [lenient.ENUM_CASE,
                                                        lenient.UNKNOWN_PROPERTY]


def test_repairs_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = {"connectorId": 1, "errorCode": "noerror", "info": None, "status": "Available"}
    assert isinstance(receive(Version.OCPP16, "StatusNotification", payload), InboundCall)
    monkeypatch.setattr(lenient, "MAX_REPAIRS", 1)
    assert isinstance(receive(Version.OCPP16, "StatusNotification", payload), SendReply)


# ---- over a real socket, recorded per station ---------------------------------------------------

async def test_evlink_boots_in_lenient_mode_and_its_deviations_are_counted(
    csms: CsmsInProcess,
) -> None:
    await csms.server.store.run(lambda: Station.create(id="EVLINK"))
    for attempt in ("1", "2"):
        async with open_websocket_url(csms.url("EVLINK"), subprotocols=["ocpp1.6"]) as ws:
            boot = await rpc(ws, [2, attempt, "BootNotification", EVLINK_BOOT])
            assert boot[0] == 3 and boot[2]["status"] == "Accepted"
    assert rows(csms.database, "SELECT serial_number FROM station") == [
        (EVLINK_BOOT["chargePointSerialNumber"],)]
    assert rows(csms.database, "SELECT action, kind, path, count, example FROM "
                               "station_deviation ORDER BY path") == [
        ("BootNotification", lenient.OVERLONG, "chargeBoxSerialNumber", 2,
         EVLINK_BOOT["chargeBoxSerialNumber"]),
        ("BootNotification", lenient.OVERLONG, "chargePointSerialNumber", 2,
         EVLINK_BOOT["chargePointSerialNumber"])]

    shown = run_cli("station", "show", "EVLINK", "--json", "--database", str(csms.database))
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)["deviations"]
    assert [(d["field"], d["count"]) for d in listed] == [
        ("chargeBoxSerialNumber", 2), ("chargePointSerialNumber", 2)]
    text = run_cli("station", "show", "EVLINK", "--database", str(csms.database)).stdout
    assert "deviations" in text and "chargeBoxSerialNumber" in text

    key = await new_key(csms)
    status, body = await http(csms, "GET", "/stations/EVLINK", key)
    assert status == 200
    assert {d["field"]: d["kind"] for d in body["deviations"]} == {
        "chargeBoxSerialNumber": lenient.OVERLONG, "chargePointSerialNumber": lenient.OVERLONG}


async def test_v201_long_boot_and_lenient_meter_values_are_stored(csms: CsmsInProcess) -> None:
    await csms.server.store.run(lambda: Station.create(id="LONG2"))
    async with open_websocket_url(csms.url("LONG2"), subprotocols=["ocpp2.0.1"]) as ws:
        assert (await rpc(ws, [2, "b", "BootNotification", BOOT_201_LONG]))[2][
            "status"] == "Accepted"
        answer = await rpc(ws, [2, "m", "MeterValues", {"evseId": 1, "meterValue": [{
            "timestamp": AT, "sampledValue": [{"value": 2.5, "measurand": "Voltage",
                                               "unitOfMeasure": {"unit": "V"}, "phase": "l1"}]}]}])
        assert answer[:2] == [3, "m"]
        # A transaction id over 36 characters names the transaction whole, every time.
        long_tx = "urn:uuid:" + "f" * 40
        for seq, kind in ((0, "Started"), (1, "Ended")):
            event = await rpc(ws, [2, f"t{seq}", "TransactionEvent", {
                "eventType": kind, "timestamp": AT, "triggerReason": "Authorized",
                "seqNo": seq, "transactionInfo": {"transactionId": long_tx},
                "evse": {"id": 1, "connectorId": 1}}])
            assert event[:2] == [3, f"t{seq}"], event
    assert rows(csms.database, 'SELECT station_tx_id, stopped_at IS NOT NULL FROM '
                               '"transaction"') == [(long_tx, 1)]
    assert rows(csms.database, "SELECT model, serial_number FROM station") == [
        ("Home-7 Wallbox Pro Max XL", "S" * 30)]
    assert rows(csms.database, "SELECT measurand, phase, value FROM meter_sample") == [
        ("Voltage", "L1", 2.5)]
    assert {(a, k) for a, k in rows(csms.database,
                                    "SELECT action, kind FROM station_deviation")} == {
        ("BootNotification", lenient.OVERLONG), ("MeterValues", lenient.ENUM_CASE),
        ("TransactionEvent", lenient.OVERLONG)}


async def test_strict_mode_refuses_the_same_boot(nursery: trio.Nursery, tmp_path: Path) -> None:
    csms = await start_in_process(nursery, tmp_path, inbound_mode="strict")
    await csms.server.store.run(lambda: Station.create(id="EVLINK"))
    async with open_websocket_url(csms.url("EVLINK"), subprotocols=["ocpp1.6"]) as ws:
        answer = await rpc(ws, [2, "1", "BootNotification", EVLINK_BOOT])
        assert answer[:3] == [4, "1", "PropertyConstraintViolation"]
    assert rows(csms.database, "SELECT count(*) FROM station_deviation") == [(0,)]


def test_inbound_mode_setting(tmp_path: Path) -> None:
    assert config.load(environ={}).inbound_mode == "lenient"
    assert config.load(environ={"LITE_CSMS_INBOUND_MODE": "strict"}).inbound_mode == "strict"
    toml = tmp_path / "c.toml"
    toml.write_text('inbound_mode = "strict"\n')
    assert config.load(toml, environ={}).inbound_mode == "strict"
    with pytest.raises(config.ConfigError, match="inbound_mode"):
        config.load(environ={"LITE_CSMS_INBOUND_MODE": "loose"})
    args = build_parser().parse_args(["serve", "--inbound-mode", "strict"])
    assert _settings(args).inbound_mode == "strict"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--inbound-mode", "loose"])

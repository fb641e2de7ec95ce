"""Kind 3: a value the store cannot hold is refused with the spec's CALLERROR, never acknowledged
and then lost, and nothing of the message reaches the store."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest
import trio
from trio_websocket import open_websocket_url

from lite_csms.db.models import Station
from lite_csms.ocppj.session import InboundCall, RpcSession, SendReply
from lite_csms.ocppj.versions import Version
from tests.conftest import CsmsInProcess

AT = "2026-11-21T10:00:00Z"
BIG = 9223372036854775808  # 2**63: one past SQLite's largest INTEGER


def rows(csms: CsmsInProcess, sql: str, *args: object) -> list[tuple]:
    conn = sqlite3.connect(csms.database)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def refusal(events: list) -> list:
    assert len(events) == 1 and isinstance(events[0], SendReply), events
    return json.loads(events[0].text)


# ---- the sans-IO core -------------------------------------------------------------------------

@pytest.mark.parametrize(("version", "text", "code"), [
    (Version.OCPP16, f'[2,"a","StatusNotification",{{"connectorId":{BIG},"errorCode":"NoError",'
                     f'"status":"Available"}}]', "PropertyConstraintViolation"),
    (Version.OCPP201, f'[2,"a","StatusNotification",{{"timestamp":"{AT}","connectorStatus":'
                      f'"Available","evseId":{BIG},"connectorId":1}}]',
     "PropertyConstraintViolation"),
    # orjson reads integers up to 2**64 - 1 as int, larger ones as float: both refused.
    (Version.OCPP201, f'[2,"a","StatusNotification",{{"timestamp":"{AT}","connectorStatus":'
                      f'"Available","evseId":1,"connectorId":{2**70}}}]',
     "PropertyConstraintViolation"),
    (Version.OCPP16, '[2,"a","StatusNotification",{"connectorId":-1,"errorCode":"NoError",'
                     '"status":"Available"}]', "PropertyConstraintViolation"),
    (Version.OCPP201, f'[2,"a","TransactionEvent",{{"eventType":"Started","timestamp":"{AT}",'
                      '"triggerReason":"Authorized","seqNo":0,"transactionInfo":'
                      '{"transactionId":"T1"},"evse":{"id":-2}}]',
     "PropertyConstraintViolation"),
    # 1e400 is valid JSON but no double: answered under the message's own id, not "-1".
    (Version.OCPP201, f'[2,"a","MeterValues",{{"evseId":1,"meterValue":[{{"timestamp":"{AT}",'
                      '"sampledValue":[{"value":1e400}]}]}]', "PropertyConstraintViolation"),
    (Version.OCPP16, f'[2,"a","StartTransaction",{{"connectorId":1,"idTag":"T","meterStart":'
                     f'{BIG},"timestamp":"{AT}"}}]', "PropertyConstraintViolation"),
    # A time before the first UTC instant used to raise inside the validator.
    (Version.OCPP201, '[2,"a","StatusNotification",{"timestamp":"0001-01-01T00:00:00+01:00",'
                      '"connectorStatus":"Available","evseId":1,"connectorId":1}]',
     "PropertyConstraintViolation"),
    (Version.OCPP201, f'[2,"a","TransactionEvent",{{"eventType":"Updated","timestamp":"{AT}",'
                      '"triggerReason":"MeterValuePeriodic","seqNo":-1,"transactionInfo":'
                      '{"transactionId":"T1"}}]', "PropertyConstraintViolation"),
], ids=["16-connector-2^63", "201-evse-2^63", "201-connector-2^70", "16-negative-connector",
        "201-negative-evse", "201-1e400", "16-meterStart-2^63", "201-year-1",
        "201-negative-seqNo"])
def test_core_refuses_numbers_the_store_cannot_hold(version: Version, text: str,
                                                     code: str) -> None:
    for lenient in (False, True):
        answer = refusal(RpcSession(version, lenient=lenient).receive(text, 0.0))
        assert answer[:3] == [4, "a", code]


def test_core_turns_an_integral_float_into_an_int() -> None:
    text = (f'[2,"a","StatusNotification",{{"timestamp":"{AT}","connectorStatus":"Available",'
            '"evseId":2.0,"connectorId":1}]')
    [event] = RpcSession(Version.OCPP201).receive(text, 0.0)
    assert isinstance(event, InboundCall)
    assert event.payload["evseId"] == 2 and type(event.payload["evseId"]) is int


def test_nan_literal_stays_invalid_json() -> None:
    answer = refusal(RpcSession(Version.OCPP201).receive('[2,"a","Heartbeat",{"x":NaN}]', 0.0))
    assert answer[:3] == [4, "-1", "RpcFrameworkError"]


# ---- over a real socket -----------------------------------------------------------------------

async def rpc(ws, message: list) -> list:
    await ws.send_message(json.dumps(message))
    return json.loads(await ws.get_message())


def meter_values_16(value: str, tx: int | None = None) -> dict:
    payload = {"connectorId": 1, "meterValue": [{"timestamp": AT, "sampledValue": [
        {"value": value, "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]}
    if tx is not None:
        payload["transactionId"] = tx
    return payload


@pytest.mark.parametrize("value", ["NaN", "nan", "inf", "-Infinity", "1e400", "1,5", "12 kWh",
                                   "", "0x10", "1_000"])
async def test_v16_sampled_value_that_is_no_decimal_is_refused(
    csms: CsmsInProcess, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    await csms.server.store.run(lambda: Station.create(id="V16"))
    async with open_websocket_url(csms.url("V16"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "b", "BootNotification", {"chargePointVendor": "A",
                                                    "chargePointModel": "M"}])
        started = await rpc(ws, [2, "s", "StartTransaction", {
            "connectorId": 1, "idTag": "T", "meterStart": 1000, "timestamp": AT}])
        tx = started[2]["transactionId"]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="lite_csms"):
            answer = await rpc(ws, [2, "m", "MeterValues", meter_values_16(value, tx)])
        assert answer[:3] == [4, "m", "PropertyConstraintViolation"]
        refused_lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(refused_lines) == 1, [r.getMessage() for r in refused_lines]
        # A good value still goes through afterwards.
        assert (await rpc(ws, [2, "g", "MeterValues", meter_values_16("1500.5", tx)]))[0] == 3
        # The stop carries the same bad value in transactionData. A refused stop is one the
        # charger drops after its retries, so the stop is kept without that sample, flagged.
        stop = {"transactionId": tx, "meterStop": 2000, "timestamp": AT,
                "transactionData": meter_values_16(value)["meterValue"]}
        assert (await rpc(ws, [2, "t", "StopTransaction", stop]))[:2] == [3, "t"]
    assert rows(csms, "SELECT value FROM meter_sample") == [(1500.5,)]
    ((stopped, energy, review, reason),) = rows(
        csms, 'SELECT stopped_at, energy_wh, review, review_reason FROM "transaction"')
    assert stopped is not None and energy == 1000.0
    assert review == "unstorable sample" and "transactionData[0].sampledValue[0].value" in reason
    ((kept,),) = rows(csms, "SELECT payload FROM station_event WHERE action='StopTransaction'")
    assert json.loads(kept)["transactionData"][0]["sampledValue"][0]["value"] == value


async def test_v16_signed_data_is_accepted_but_not_stored_as_a_number(
    csms: CsmsInProcess
) -> None:
    await csms.server.store.run(lambda: Station.create(id="V16S"))
    signed = {"connectorId": 1, "meterValue": [{"timestamp": AT, "sampledValue": [
        {"value": "OCMF|{\"FV\":\"1.0\"}|{\"SA\":\"ECDSA\"}", "format": "SignedData",
         "context": "Transaction.End"},
        {"value": "2000", "measurand": "Energy.Active.Import.Register"}]}]}
    async with open_websocket_url(csms.url("V16S"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "b", "BootNotification", {"chargePointVendor": "A",
                                                    "chargePointModel": "M"}])
        assert (await rpc(ws, [2, "m", "MeterValues", signed]))[:2] == [3, "m"]
    assert rows(csms, "SELECT value FROM meter_sample") == [(2000.0,)]


async def test_v16_status_with_connector_beyond_int64_is_refused(csms: CsmsInProcess) -> None:
    await csms.server.store.run(lambda: Station.create(id="V16C"))
    async with open_websocket_url(csms.url("V16C"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "b", "BootNotification", {"chargePointVendor": "A",
                                                    "chargePointModel": "M"}])
        await ws.send_message(f'[2,"c","StatusNotification",{{"connectorId":{BIG},'
                              '"errorCode":"NoError","status":"Available"}]')
        assert json.loads(await ws.get_message())[:3] == [4, "c", "PropertyConstraintViolation"]
    assert rows(csms, "SELECT count(*) FROM connector") == [(0,)]


def event_201(seq: int, value: object, unit: dict | None = None, tx: str = "T-1") -> str:
    sampled = {"value": value, **({"unitOfMeasure": unit} if unit else {})}
    body = {"eventType": "Started" if seq == 0 else "Updated", "timestamp": AT,
            "triggerReason": "Authorized", "seqNo": seq, "transactionInfo": {"transactionId": tx},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": AT, "sampledValue": [sampled]}]}
    return json.dumps([2, f"e{seq}", "TransactionEvent", body]).replace('"1e400"', "1e400")


@pytest.mark.parametrize(("value", "unit"), [
    ("1e400", None),                                 # a bare 1e400 on the wire
    (1e306, {"unit": "kWh"}),                        # finite, but not once in Wh
    (5, {"unit": "Wh", "multiplier": 1_000_000_000}),  # 10**10**9 must not be computed
    (5, {"unit": "Wh", "multiplier": -400}),         # underflows to 0: a lie about the energy
    (BIG, None),
])
async def test_v201_meter_value_the_store_cannot_hold_is_refused(
    csms: CsmsInProcess, value: object, unit: dict | None
) -> None:
    await csms.server.store.run(lambda: Station.create(id="V2"))
    async with open_websocket_url(csms.url("V2"), subprotocols=["ocpp2.0.1"]) as ws:
        await rpc(ws, [2, "b", "BootNotification", {
            "reason": "PowerUp", "chargingStation": {"vendorName": "A", "model": "M"}}])
        with trio.fail_after(2):
            await ws.send_message(event_201(0, value, unit))
            answer = json.loads(await ws.get_message())
        assert answer[:3] == [4, "e0", "PropertyConstraintViolation"]
        # The connection goes on; a correct event is taken.
        await ws.send_message(event_201(0, 1000, {"unit": "Wh"}, tx="T-2"))
        assert json.loads(await ws.get_message())[:2] == [3, "e0"]
    assert rows(csms, 'SELECT station_tx_id, meter_start_wh FROM "transaction"') == [
        ("T-2", 1000.0)]
    assert rows(csms, "SELECT value FROM meter_sample") == [(1000.0,)]


def test_vendor_custom_data_is_checked_for_size_only() -> None:
    session = RpcSession(Version.OCPP201)
    [kept] = session.receive('[2,"a","Heartbeat",{"customData":{"vendorId":"v",'
                             '"connectorId":-1}}]', 0.0)
    assert isinstance(kept, InboundCall)
    huge = "1" + "0" * 400
    answer = refusal(session.receive(
        f'[2,"b","Heartbeat",{{"customData":{{"vendorId":"v","n":{huge}}}}}]', 0.0))
    assert answer[:3] == [4, "b", "PropertyConstraintViolation"]

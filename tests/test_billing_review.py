"""Billing after review: what a reviewer found the first billing work still got wrong.

Each test sends over a real socket to a server on a real SQLite file, like tests/test_billing.py,
and checks the stored transaction an operator would bill. `ts(n)` is n minutes ago.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import timedelta
from typing import Any

import pytest

from lite_csms.db.models import IdToken
from lite_csms.ocppj.timestamps import format_utc
from tests.conftest import CsmsInProcess
from tests.test_billing import NOW, REGISTER, T0, at, boot, connect, event201, messages, mv16, rows


def ts(minutes: int) -> str:
    return format_utc(NOW - timedelta(minutes=minutes))


def mv(minutes: int, wh: str, context: str | None = None, **extra: Any) -> dict[str, Any]:
    sampled: dict[str, Any] = {"value": wh, "measurand": REGISTER, **extra}
    if context:
        sampled["context"] = context
    return {"timestamp": ts(minutes), "sampledValue": [sampled]}


def readings(csms: CsmsInProcess) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(csms.database)
    try:
        return conn.execute("SELECT transaction_id, seq_no, value_wh FROM energy_reading "
                            "ORDER BY transaction_id, seq_no, value_wh").fetchall()
    finally:
        conn.close()


# ---- finding 2: one low reading does not inflate the energy ------------------------------------
async def test_16_one_zero_reading_is_a_dip_not_the_whole_register(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await csms.server.store.run(lambda: IdToken.create(token="DIP"))
    async with await connect(csms, "CS-DIP", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        tx_id = (await station.call("StartTransaction", {
            "connectorId": 1, "idTag": "DIP", "meterStart": 2259988, "timestamp": ts(60)}))[
            "transactionId"]
        await station.call("MeterValues", {"connectorId": 1, "transactionId": tx_id,
                                           "meterValue": [mv(30, "0")]})
        await station.call("StopTransaction", {
            "transactionId": tx_id, "meterStop": 2268000, "timestamp": ts(10)})
    (tx,) = rows(csms)
    assert tx["energy_wh"] == 8012 and tx["review"] == "register dip"
    assert "0 Wh at" in tx["review_reason"]
    # While it ran, the 0 looked like a reset; the stop shows it was a dip.
    warnings = messages(caplog, logging.WARNING)
    assert "register dip" in warnings[-1] and len(warnings) <= 2


# ---- finding 8: the Orphaned close says plainly when its energy is unknown ---------------------
async def test_16_orphaned_close_with_unknown_energy_reads_well(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with await connect(csms, "CS-ORW", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        for minutes, tag in ((60, "A"), (30, "B")):
            await station.call("StartTransaction", {
                "connectorId": 1, "idTag": tag, "meterStart": 1000, "timestamp": ts(minutes)})
    (warning,) = messages(caplog, logging.WARNING)
    assert "closed as Orphaned" in warning and "; energy unknown, flagged" in warning
    assert "unknown energy" not in warning


# ---- finding 5: readings at one timestamp from different events are all kept ------------------
async def test_201_unset_clock_keeps_every_reading_of_its_events(csms: CsmsInProcess) -> None:
    same = ts(30)
    evse = {"id": 1, "connectorId": 1}
    events = [("Started", 0, 1000, "Transaction.Begin"), ("Updated", 1, 5000, None),
              ("Updated", 2, 200, None), ("Ended", 3, 1200, "Transaction.End")]
    async with await connect(csms, "CS-CLK", "ocpp2.0.1") as ws:
        station = await boot(ws, "ocpp2.0.1")
        for _ in range(2):  # the second round is a retransmit of each: stored once
            for kind, seq, wh, context in events:
                sampled: dict[str, Any] = {"value": wh}
                if context:
                    sampled["context"] = context
                await station.call("TransactionEvent", {
                    "eventType": kind, "timestamp": same, "seqNo": seq,
                    "triggerReason": "MeterValuePeriodic", "evse": evse,
                    "transactionInfo": {"transactionId": "CLK-1"},
                    "meterValue": [{"timestamp": same, "sampledValue": [sampled]}]})
    (tx,) = rows(csms)
    assert readings(csms) == [(tx["id"], 0, 1000), (tx["id"], 1, 5000), (tx["id"], 2, 200),
                              (tx["id"], 3, 1200)]
    # In seqNo order: 1000 -> 5000 (+4000), 200 never regained (reset), 1200 (+1000).
    assert tx["energy_wh"] == 5000 and tx["review"] == "backward register"


# ---- finding 3: a reconstructed row is found by the station's number only ----------------------
async def test_16_our_id_never_names_a_reconstructed_session(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with await connect(csms, "CS-ID", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        # Our ids up to 30 are taken by sessions of another station.
        for minute in range(30):
            await csms.server.store.run(lambda m=minute: _issued("CS-OTHER", m))
        await station.call("MeterValues", {"connectorId": 1, "transactionId": 26,
                                           "meterValue": [mv(50, "1000")]})
        reconstructed = rows(csms)[-1]
        assert (reconstructed["id"], reconstructed["station_tx_id"]) == (31, "26")
        # The station's own session 31, which we never saw started.
        await station.call("StopTransaction", {"transactionId": 31, "meterStop": 700,
                                               "timestamp": ts(40)})
        await station.call("StopTransaction", {"transactionId": 26, "meterStop": 4000,
                                               "timestamp": ts(10)})
    by_station_tx = {t["station_tx_id"]: t for t in rows(csms) if t["station_id"] == "CS-ID"}
    assert by_station_tx["26"]["id"] == 31 and by_station_tx["26"]["energy_wh"] == 3000
    assert by_station_tx["26"]["meter_stop_wh"] == 4000
    assert by_station_tx["31"]["meter_stop_wh"] == 700
    assert by_station_tx["31"]["reconstructed"] == 1
    assert not any("already stopped" in m for m in messages(caplog, logging.WARNING))


def _issued(station_id: str, minute: int) -> None:
    from lite_csms.db.models import Station, Transaction

    Station.get_or_create(id=station_id)
    Transaction.create(station=station_id, evse_id=1, connector_id=1,
                       started_at=NOW - timedelta(days=1, minutes=minute))


# ---- finding 4: a second, different stop is never dropped --------------------------------------
async def test_16_two_sessions_stopped_under_transaction_id_0_are_both_kept(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first = {"transactionId": 0, "idTag": "A", "meterStop": 10000, "timestamp": ts(50)}
    second = {"transactionId": 0, "idTag": "B", "meterStop": 18000, "timestamp": ts(5),
              "transactionData": [mv(40, "10000", "Transaction.Begin")]}
    async with await connect(csms, "CS-ZERO", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        for stop in (first, second, first, second):  # the last two are retransmits
            await station.call("StopTransaction", stop)
    a, b = rows(csms)
    assert (a["station_tx_id"], a["id_token"], a["meter_stop_wh"]) == ("0", "A", 10000)
    assert (b["station_tx_id"], b["id_token"], b["energy_wh"]) == ("0", "B", 8000)
    assert (a["generation"], b["generation"]) == (0, 1)
    assert b["reconstructed"] == 1 and b["review"] == "reconstructed"
    assert b["started_at"].startswith(ts(40)[:19])
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 2 and "session 2 under that number" in warnings[1]


async def test_16_conflicting_stop_of_ours_is_kept_and_flagged(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with await connect(csms, "CS-CONF", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        tx_id = (await station.call("StartTransaction", {
            "connectorId": 1, "idTag": "C", "meterStart": 1000, "timestamp": ts(60)}))[
            "transactionId"]
        stop = {"transactionId": tx_id, "meterStop": 5000, "timestamp": ts(20)}
        conflicting = {**stop, "meterStop": 7000, "timestamp": ts(10)}
        for message in (stop, conflicting, stop, conflicting):
            await station.call("StopTransaction", message)
    (tx,) = rows(csms)
    assert (tx["energy_wh"], tx["meter_stop_wh"], tx["review"]) == (4000, 5000,
                                                                   "conflicting stop")
    assert "meterStop 7000 Wh" in tx["review_reason"]
    assert "meterStop 5000 Wh" in tx["review_reason"]
    conn = sqlite3.connect(csms.database)
    kept = conn.execute("SELECT payload FROM station_event WHERE station_id = 'CS-CONF' AND "
                        "action = 'StopTransaction'").fetchall()
    conn.close()
    assert len(kept) == 1 and '"meterStop":7000' in kept[0][0].replace(" ", "")
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and "conflicting stop" in warnings[0]


# ---- finding 1: a reused seqNo or transactionId never drops an event ---------------------------
def tx_event(kind: str, seq: int, minutes: int, wh: float, tx_id: str = "R-1",
             context: str | None = None, **extra: Any) -> dict[str, Any]:
    sampled: dict[str, Any] = {"value": wh}
    if context:
        sampled["context"] = context
    return {"eventType": kind, "timestamp": ts(minutes), "seqNo": seq,
            "triggerReason": {"Started": "Authorized", "Ended": "EVCommunicationLost"}.get(
                kind, "MeterValuePeriodic"),
            "transactionInfo": {"transactionId": tx_id, **extra.pop("info", {})},
            "meterValue": [{"timestamp": ts(minutes), "sampledValue": [sampled]}], **extra}


async def test_201_seq_no_reset_keeps_every_event_and_the_end(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    evse = {"id": 1, "connectorId": 1}
    events = [
        tx_event("Started", 0, 60, 1000, context="Transaction.Begin", evse=evse),
        tx_event("Updated", 1, 40, 3000),
        tx_event("Updated", 0, 30, 4000),
        tx_event("Ended", 1, 10, 5000, context="Transaction.End",
                 info={"stoppedReason": "EVDisconnected"}),
    ]
    async with await connect(csms, "CS-SEQ", "ocpp2.0.1") as ws:
        station = await boot(ws, "ocpp2.0.1")
        for event in events + events:  # the second round: retransmits, stored once
            await station.call("TransactionEvent", event)
    (tx,) = rows(csms)
    assert tx["stopped_at"] is not None and tx["stop_reason"] == "EVDisconnected"
    assert (tx["meter_stop_wh"], tx["energy_wh"]) == (5000, 4000)
    assert tx["review"] == "seqNo reused"
    conn = sqlite3.connect(csms.database)
    assert conn.execute("SELECT count(*) FROM transaction_event_record").fetchone() == (4,)
    conn.close()
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 2 and all("seqNo reused" in w for w in warnings)


async def test_201_transaction_id_reused_after_its_end_is_a_session_of_its_own(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    evse = {"id": 1, "connectorId": 1}
    first = [tx_event("Started", 0, 90, 1000, context="Transaction.Begin", evse=evse),
             tx_event("Ended", 1, 70, 3000, context="Transaction.End")]
    second = [tx_event("Started", 0, 50, 3000, context="Transaction.Begin", evse=evse),
              tx_event("Updated", 1, 30, 4000),
              tx_event("Ended", 2, 10, 6000, context="Transaction.End")]
    async with await connect(csms, "CS-REUSE", "ocpp2.0.1") as ws:
        station = await boot(ws, "ocpp2.0.1")
        for event in first + second + first[1:] + second:  # then retransmits
            await station.call("TransactionEvent", event)
    a, b = rows(csms)
    assert (a["generation"], a["energy_wh"], a["review"]) == (0, 2000, None)
    assert (b["generation"], b["energy_wh"], b["review"]) == (1, 3000, "transactionId reused")
    assert b["station_tx_id"] == a["station_tx_id"] == "R-1" and b["stopped_at"] is not None
    assert str(a["id"]) in b["review_reason"]
    conn = sqlite3.connect(csms.database)
    per_tx = conn.execute("SELECT transaction_id, count(*) FROM energy_reading "
                          "GROUP BY transaction_id ORDER BY transaction_id").fetchall()
    events_per_tx = conn.execute("SELECT transaction_id, count(*) FROM "
                                 "transaction_event_record GROUP BY transaction_id "
                                 "ORDER BY transaction_id").fetchall()
    conn.close()
    assert per_tx == [(a["id"], 2), (b["id"], 3)]
    assert events_per_tx == [(a["id"], 2), (b["id"], 3)]
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and "transactionId reused" in warnings[0]


# ---- finding 6: units are scaled whatever their case, and a register in a non-energy unit is
# refused ---------------------------------------------------------------------------------------
async def raw_call(ws: Any, action: str, payload: dict[str, Any]) -> list[Any]:
    await ws.send_message(json.dumps([2, "raw", action, payload]))
    return json.loads(await ws.get_message())


def unit_event(kind: str, seq: int, minutes: int, value: float, unit: str,
               **extra: Any) -> dict[str, Any]:
    return {"eventType": kind, "timestamp": ts(minutes), "seqNo": seq,
            "triggerReason": "MeterValuePeriodic",
            "transactionInfo": {"transactionId": "U-1"},
            "meterValue": [{"timestamp": ts(minutes), "sampledValue": [
                {"value": value, "measurand": REGISTER, "unitOfMeasure": {"unit": unit}}]}],
            **extra}


async def test_201_units_scale_ignoring_case_and_a_varh_register_is_refused(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with await connect(csms, "CS-UNIT", "ocpp2.0.1") as ws:
        station = await boot(ws, "ocpp2.0.1")
        await station.call("TransactionEvent", unit_event(
            "Started", 0, 60, 1.5, "kwh", evse={"id": 1, "connectorId": 1}))
        await station.call("TransactionEvent", unit_event("Updated", 1, 40, 3, "KWH"))
        refused = await raw_call(ws, "TransactionEvent", unit_event("Updated", 2, 30, 9, "varh"))
        assert refused[0] == 4 and refused[2] == "PropertyConstraintViolation", refused
        assert "unitOfMeasure.unit" in refused[3]
        await station.call("TransactionEvent", unit_event("Ended", 3, 10, 0.004, "MWh"))
    (tx,) = rows(csms)
    assert (tx["meter_start_wh"], tx["meter_stop_wh"]) == (1500, 4000)
    assert tx["energy_wh"] == 2500 and tx["review"] is None
    conn = sqlite3.connect(csms.database)
    deviations = conn.execute("SELECT action, kind, path, count FROM station_deviation WHERE "
                              "station_id = 'CS-UNIT'").fetchall()
    stored = conn.execute("SELECT count(*) FROM energy_reading").fetchone()
    conn.close()
    assert deviations == [("TransactionEvent", "unit spelling",
                           "meterValue[].sampledValue[].unitOfMeasure.unit", 2)]
    assert stored == (3,)  # the refused varh reading reached nothing
    assert any("TransactionEvent refused" in r.getMessage() for r in caplog.records)


async def test_16_units_scale_ignoring_case_and_a_varh_register_is_refused(
    csms: CsmsInProcess,
) -> None:
    async with await connect(csms, "CS-UNIT16", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        tx_id = (await station.call("StartTransaction", {
            "connectorId": 1, "idTag": "U", "meterStart": 1000, "timestamp": ts(60)}))[
            "transactionId"]
        # Lenient mode reads "kwh" as kWh (enum value case): 2 kWh, not 2 Wh.
        await station.call("MeterValues", {"connectorId": 1, "transactionId": tx_id,
                                           "meterValue": [mv(40, "2", unit="kwh")]})
        refused = await raw_call(ws, "MeterValues", {
            "connectorId": 1, "transactionId": tx_id,
            "meterValue": [mv(30, "9000", unit="varh")]})
        assert refused[0] == 4 and refused[2] == "PropertyConstraintViolation", refused
        (running,) = rows(csms)
        assert (running["meter_last_wh"], running["energy_wh"]) == (2000, 1000)


async def test_201_one_low_reading_is_a_dip(csms: CsmsInProcess) -> None:
    async with await connect(csms, "CS-DIP2", "ocpp2.0.1") as ws:
        station = await boot(ws, "ocpp2.0.1")
        for event in (tx_event("Started", 0, 60, 1000, "D-1", "Transaction.Begin",
                               evse={"id": 1, "connectorId": 1}),
                      tx_event("Updated", 1, 30, 500, "D-1"),
                      tx_event("Ended", 2, 10, 9000, "D-1", "Transaction.End")):
            await station.call("TransactionEvent", event)
    (tx,) = rows(csms)
    # 500 -> 9000 Wh in 20 minutes (25.5 kW) is a plausible reset, so since the power rule it
    # counts on from 500 (was 8000, a dip).
    assert (tx["energy_wh"], tx["review"]) == (8500, "backward register")


async def test_16_meter_values_after_a_made_up_number_stopped_begin_another_session(
    csms: CsmsInProcess,
) -> None:
    async with await connect(csms, "CS-NEG", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        for _ in range(2):  # a retransmit changes nothing
            await station.call("MeterValues", {"connectorId": 1, "transactionId": -1,
                                               "meterValue": [mv(50, "1000")]})
        await station.call("StopTransaction", {"transactionId": -1, "meterStop": 3000,
                                               "timestamp": ts(40)})
        for _ in range(2):
            await station.call("MeterValues", {"connectorId": 1, "transactionId": -1,
                                               "meterValue": [mv(30, "3000")]})
        await station.call("StopTransaction", {"transactionId": -1, "meterStop": 7000,
                                               "timestamp": ts(10)})
    a, b = rows(csms)
    assert (a["generation"], a["energy_wh"], a["meter_stop_wh"]) == (0, 2000, 3000)
    assert (b["generation"], b["energy_wh"], b["meter_stop_wh"]) == (1, 4000, 7000)
    assert b["reconstructed"] == 1 and b["started_at"].startswith(ts(30)[:19])


# ---- second review ------------------------------------------------------------------------------
def at_event(kind: str, seq: int, minutes: int, wh: float, tx_id: str, **extra: Any) -> dict[
        str, Any]:
    """A 2.x TransactionEvent at 08:00 + minutes (tests.test_billing.at), one reading, no
    context."""
    return event201(kind, seq, at(minutes), wh, tx_id, **extra)


# ---- item 1: an Updated after the Ended adds nothing to a stopped session ---------------------
async def test_201_updated_after_ended_is_not_counted_and_flagged(csms: CsmsInProcess) -> None:
    await csms.server.store.run(lambda: IdToken.create(token="TOK1"))
    token = {"idToken": "TOK1", "type": "ISO14443"}
    async with await connect(csms, "N20", "ocpp2.0.1") as ws:
        station = await boot(ws, "ocpp2.0.1")
        for event in (at_event("Started", 0, 0, 1000, "V", idToken=token,
                               evse={"id": 1, "connectorId": 1}),
                      at_event("Ended", 1, 10, 2000, "V",
                               transactionInfo={"transactionId": "V", "stoppedReason": "Local"}),
                      at_event("Updated", 2, 25, 9000, "V")):
            await station.call("TransactionEvent", event)
    (tx,) = rows(csms)
    assert tx["stopped_at"].startswith(at(10)[:19]) and tx["stop_reason"] == "Local"
    assert (tx["meter_stop_wh"], tx["energy_wh"]) == (2000, 1000)
    assert tx["review"] == "reading after its end" and "9000 Wh" in tx["review_reason"]


# ---- item 4: a real meter reset is counted, one failing reading is still a dip ----------------
@pytest.mark.parametrize(("values", "energy", "review"), [
    ((1000, 5000, 0, 2000, 4000, 6000, 7000), 11000, "backward register"),
    ((2259988, 0, 2268000), 8012, "register dip"),
    ((2259988, 0, 0, 2268000), 8012, "register dip"),
])
async def test_16_meter_reset_is_counted_and_a_failing_reading_is_a_dip(
    csms: CsmsInProcess, values: tuple[float, ...], energy: float, review: str
) -> None:
    async with await connect(csms, "CS-RESET", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        tx_id = (await station.call("StartTransaction", {
            "connectorId": 1, "idTag": "R", "meterStart": values[0], "timestamp": at(0)}))[
            "transactionId"]
        await station.call("MeterValues", {"connectorId": 1, "transactionId": tx_id,
                                           "meterValue": [mv16(10 * i, v) for i, v in
                                                          enumerate(values[1:-1], 1)]})
        await station.call("StopTransaction", {"transactionId": tx_id, "meterStop": values[-1],
                                               "timestamp": at(10 * (len(values) - 1))})
    (tx,) = rows(csms)
    assert (tx["energy_wh"], tx["review"]) == (energy, review)
    # One entry per dip run, one per reset: never one per low reading.
    assert tx["review_reason"].count(review + ":") == 1


def test_rule_identical_timestamps_make_any_climb_back_a_dip() -> None:
    from lite_csms.energy import END as E
    from lite_csms.energy import Reading as R
    from lite_csms.energy import measure as m
    t = T0
    found = m([R(t, 1000, "Transaction.Begin", "t"), R(t + timedelta(minutes=1), 0),
               R(t + timedelta(minutes=1), 1500), R(t + timedelta(minutes=2), 1600, E)],
              ended=True)
    # 0 -> 1500 at one instant: no meter counts that, so the 0 was a dip.
    assert found.energy_wh == 600 and [p.partition(":")[0] for p in found.problems] == [
        "register dip"]


# ---- item 5: a repeated stop that adds transactionData is stored and recounted ----------------
async def test_16_repeated_stop_adding_transaction_data_is_recounted(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stop = {"transactionId": 0, "meterStop": 5000, "timestamp": at(180), "idTag": "TOK1"}
    with_data = {**stop, "transactionData": [mv16(120, 4000)]}
    async with await connect(csms, "J16", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        await station.call("StopTransaction", stop)
        (first,) = rows(csms)
        assert first["energy_wh"] is None
        for message in (with_data, with_data, stop):  # then a retransmit of each
            await station.call("StopTransaction", message)
    (tx,) = rows(csms)
    assert (tx["meter_start_wh"], tx["meter_stop_wh"], tx["energy_wh"]) == (4000, 5000, 1000)
    assert tx["started_at"].startswith(at(120)[:19])
    added = [m for m in messages(caplog, logging.INFO) if "added transactionData" in m]
    assert len(added) == 1 and "1000 Wh" in added[0]
    conn = sqlite3.connect(csms.database)
    assert conn.execute("SELECT count(*) FROM energy_reading").fetchone() == (2,)
    conn.close()


# ---- item 2: a retransmitted reading of an earlier session under 0 stays there ----------------
async def test_16_reading_goes_to_the_session_of_number_0_whose_span_holds_it(
    csms: CsmsInProcess,
) -> None:
    def values(minutes: int, wh: float) -> dict[str, Any]:
        return {"connectorId": 1, "transactionId": 0, "meterValue": [mv16(minutes, wh)]}

    def stop(minutes: int, wh: float) -> dict[str, Any]:
        return {"transactionId": 0, "meterStop": wh, "timestamp": at(minutes)}

    # 06:00 is at(-120).
    async with await connect(csms, "C16", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        for action, payload in (
                ("MeterValues", values(-119, 100)), ("MeterValues", values(-118, 200)),
                ("StopTransaction", stop(-117, 300)),
                ("MeterValues", values(-109, 1100)), ("StopTransaction", stop(-107, 1300)),
                ("MeterValues", values(-108, 1200)),
                # retransmits, the last exactly session A's reading
                ("MeterValues", values(-109, 1100)), ("StopTransaction", stop(-117, 300)),
                ("StopTransaction", stop(-107, 1300)), ("MeterValues", values(-118, 200))):
            await station.call(action, payload)
    a, b = rows(csms)
    assert (a["energy_wh"], a["meter_start_wh"], a["meter_stop_wh"]) == (200, 100, 300)
    assert a["started_at"].startswith(at(-119)[:19])
    assert (b["energy_wh"], b["meter_start_wh"], b["meter_stop_wh"]) == (200, 1100, 1300)
    assert b["started_at"].startswith(at(-109)[:19]) and b["generation"] == 1
    conn = sqlite3.connect(csms.database)
    per_tx = conn.execute("SELECT transaction_id, count(*) FROM energy_reading "
                          "GROUP BY transaction_id ORDER BY transaction_id").fetchall()
    conn.close()
    assert per_tx == [(a["id"], 3), (b["id"], 3)]


# ---- item 3: a reused transactionId with events out of order ----------------------------------
def _session(kind: str, seq: int, minutes: int, wh: float, tx_id: str) -> dict[str, Any]:
    extra: dict[str, Any] = {"offline": True}
    if kind == "Started":
        extra["evse"] = {"id": 1, "connectorId": 1}
    return at_event(kind, seq, minutes, wh, tx_id, **extra)


@pytest.mark.parametrize("order", ["late_end_first", "update_before_started"])
async def test_201_reused_transaction_id_out_of_order_keeps_each_session_its_own(
    csms: CsmsInProcess, order: str
) -> None:
    first = [("Started", 0, 0, 1000), ("Updated", 1, 5, 1500), ("Ended", 2, 10, 2000)]
    if order == "late_end_first":
        sent = [("Ended", 2, 30, 3500), *first, ("Started", 0, 20, 3000),
                ("Updated", 1, 25, 3200)]
    else:
        sent = [*first, ("Updated", 1, 25, 3200), ("Started", 0, 20, 3000),
                ("Ended", 2, 30, 3500)]
    async with await connect(csms, "A20", "ocpp2.0.1") as ws:
        station = await boot(ws, "ocpp2.0.1")
        for _ in range(2):  # the second round: retransmits, which change nothing
            for kind, seq, minutes, wh in sent:
                await station.call("TransactionEvent", _session(kind, seq, minutes, wh, "X"))
    a, b = rows(csms)
    assert (a["generation"], b["generation"]) == (0, 1)
    assert (a["meter_start_wh"], a["meter_stop_wh"], a["energy_wh"]) == (1000, 2000, 1000)
    assert a["stopped_at"].startswith(at(10)[:19]) and a["review"] is None
    assert (b["meter_start_wh"], b["meter_stop_wh"], b["energy_wh"]) == (3000, 3500, 500)
    assert b["started_at"].startswith(at(20)[:19]) and b["stopped_at"].startswith(at(30)[:19])
    assert b["review"] == "transactionId reused"
    conn = sqlite3.connect(csms.database)
    events = conn.execute("SELECT transaction_id, count(*) FROM transaction_event_record "
                          "GROUP BY transaction_id ORDER BY transaction_id").fetchall()
    conn.close()
    assert events == [(a["id"], 3), (b["id"], 3)]


def test_rule_after_the_end_keeps_the_ended_events_own_readings() -> None:
    from lite_csms.energy import End, Reading, measure

    def reading(minutes: int, wh: float, seq: int, source: str) -> Reading:
        return Reading(T0 + timedelta(minutes=minutes), wh, "", source, seq)

    base = [reading(0, 1000, 0, "Started"), reading(5, 1500, 1, "Updated")]
    end = End(T0 + timedelta(minutes=10), 2)
    # The Ended's own reading stamped a minute after the event is still its stop.
    found = measure([*base, reading(11, 2000, 2, "Ended")], ended=True, end=end)
    assert (found.stop.value_wh, found.energy_wh, found.problems) == (2000, 1000, ())
    # By time: an Updated stamped after the Ended, even with a lower seqNo, is not counted.
    found = measure([*base, reading(10, 2000, 2, "Ended"), reading(25, 9000, 1, "Updated")],
                    ended=True, end=end, by_time=True)
    assert (found.stop.value_wh, found.energy_wh) == (2000, 1000)
    assert [p.partition(":")[0] for p in found.problems] == ["reading after its end"]
    # A later Ended under a reused transactionId carries its own readings: not this one's.
    later = End(end.timestamp, 2, (T0 + timedelta(minutes=30),))
    found = measure([*base, reading(10, 2000, 2, "Ended"), reading(30, 3500, 2, "Ended")],
                    ended=True, end=later, by_time=True)
    assert (found.stop.value_wh, found.energy_wh) == (2000, 1000)

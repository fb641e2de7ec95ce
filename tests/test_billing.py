"""Billing that survives what chargers send: ordered readings, backward registers, unknown stops.

Issue 8, kinds 1, 2 and 6: each example with its right value, over real sockets to a server on
a real SQLite file, on 1.6 and 2.0.1; and the energy rule itself (lite_csms/energy.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import peewee as pw
import pytest
import trio
from playhouse.migrate import SqliteMigrator, migrate
from trio_websocket import open_websocket_url

from lite_csms.db.models import EnergyReading, IdToken, Transaction
from lite_csms.energy import BEGIN, END, MAX_PLAUSIBLE_POWER_W, Reading, measure
from lite_csms.handlers.meter_values import upgrade_v3
from lite_csms.ocppj.timestamps import format_utc
from tests.conftest import CsmsInProcess, run_cli
from tests.test_admin_api import http, new_key
from tests.test_server import BOOT_16, BOOT_201, register

REGISTER = "Energy.Active.Import.Register"
NOW = datetime.now(UTC).replace(microsecond=0)
T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def ago(minutes: int) -> str:
    return format_utc(NOW - timedelta(minutes=minutes))


def at(minutes: int) -> str:
    return format_utc(T0 + timedelta(minutes=minutes))


class Station:
    """One charger over a real WebSocket: sends CALLs, returns CALLRESULT payloads."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.n = 0

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        await self.ws.send_message(json.dumps([2, str(self.n), action, payload]))
        answer = json.loads(await self.ws.get_message())
        assert answer[0] == 3 and answer[1] == str(self.n), answer
        return answer[2]


async def connect(csms: CsmsInProcess, station_id: str, protocol: str) -> Any:
    await register(csms, station_id)
    return open_websocket_url(csms.url(station_id), subprotocols=[protocol])


async def boot(ws: Any, protocol: str) -> Station:
    station = Station(ws)
    boot_payload = BOOT_16 if protocol == "ocpp1.6" else BOOT_201
    assert (await station.call("BootNotification", boot_payload))["status"] == "Accepted"
    return station


def rows(csms: CsmsInProcess) -> list[dict[str, Any]]:
    """Transactions as an independent reader sees them: committed."""
    conn = sqlite3.connect(csms.database)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute('SELECT * FROM "transaction" ORDER BY id')]
    finally:
        conn.close()


async def tx_list(csms: CsmsInProcess, *args: str) -> Any:
    result = await trio.to_thread.run_sync(
        lambda: run_cli("tx", *args, "--database", str(csms.database)))
    assert result.returncode == 0, result.stderr
    return result.stdout


def mv16(minutes: int, wh: float, context: str | None = None) -> dict[str, Any]:
    sampled: dict[str, Any] = {"value": str(wh), "measurand": REGISTER, "unit": "Wh"}
    if context:
        sampled["context"] = context
    return {"timestamp": at(minutes), "sampledValue": [sampled]}


def event201(kind: str, seq: int, when: str, wh: float | None, tx_id: str = "T-1",
             context: str | None = None, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "eventType": kind, "timestamp": when, "seqNo": seq,
        "triggerReason": {"Started": "Authorized", "Ended": "EVDeparted"}.get(
            kind, "MeterValuePeriodic"),
        "transactionInfo": {"transactionId": tx_id}, **extra}
    if wh is not None:
        sampled: dict[str, Any] = {"value": wh}
        if context:
            sampled["context"] = context
        payload["meterValue"] = [{"timestamp": when, "sampledValue": [sampled]}]
    return payload


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "lite_csms.transactions" and r.levelno == level]


# ---- the energy rule ---------------------------------------------------------------------------
def r(minutes: int, wh: float, context: str = "", seq: int | None = None) -> Reading:
    return Reading(T0 + timedelta(minutes=minutes), wh, context, "test", seq)


def test_rule_monotonic_readings_give_stop_minus_start() -> None:
    found = measure([r(60, 9000, END), r(0, 1000, BEGIN), r(30, 5000)], ended=True)
    assert (found.start.value_wh, found.stop.value_wh, found.energy_wh) == (1000, 9000, 8000)
    assert found.problems == ()


def test_rule_orders_by_seq_no_before_timestamp() -> None:
    # A clock that jumped back: seqNo says what came first.
    readings = [r(5, 1000, seq=0), r(-600, 4000, seq=1), r(10, 6000, seq=2)]
    found = measure(readings, ended=True)
    assert found.energy_wh == 5000 and found.start.value_wh == 1000
    assert found.stop.value_wh == 6000 and found.problems == ()


def test_rule_begin_sets_the_start_only_and_end_the_stop_only() -> None:
    readings = [r(-5, 400), r(0, 1000, BEGIN), r(30, 5000), r(60, 9000, END), r(90, 9900)]
    for ended in (False, True):
        found = measure(readings, ended=ended)
        # Readings before the start or after the stop are not counted.
        assert found.start.value_wh == 1000 and found.stop.value_wh == 9000
        assert found.latest.value_wh == 9000 and found.energy_wh == 8000


def test_rule_without_context_start_is_oldest_stop_is_newest_once_ended() -> None:
    readings = [r(30, 5000), r(0, 1000), r(60, 9000)]
    running = measure(readings, ended=False)
    assert running.stop is None and running.latest.value_wh == 9000
    assert running.energy_wh == 8000
    ended = measure(readings, ended=True)
    assert ended.stop.value_wh == 9000 and ended.energy_wh == 8000


def test_rule_backward_steps_add_nothing_and_are_named() -> None:
    found = measure([r(0, 2259988, BEGIN), r(60, 1200, END)], ended=True)
    assert found.energy_wh == 0
    assert len(found.backward_steps) == 1
    (problem,) = found.problems
    assert problem.startswith("backward register: 2259988 Wh at 2026-11-21T08:00:00")
    assert "then 1200 Wh at 2026-11-21T09:00:00" in problem
    # A meter replaced mid-session: what it counted before and after both count.
    replaced = measure([r(0, 5000, BEGIN), r(20, 6000), r(40, 100), r(60, 400, END)],
                       ended=True)
    assert replaced.energy_wh == 1000 + 300 and len(replaced.backward_steps) == 1


def test_rule_conversion_noise_is_not_a_backward_step() -> None:
    found = measure([r(0, 5.3 * 1000 + 1e-9, BEGIN), r(10, 5300.0), r(20, 6300.0, END)],
                    ended=True)
    assert found.problems == () and found.energy_wh == pytest.approx(1000)


def test_rule_only_an_end_reading_leaves_energy_unknown() -> None:
    found = measure([r(60, 1200, END)], ended=True)
    assert found.energy_wh is None and found.stop.value_wh == 1200 and found.start is None
    assert measure([], ended=True).energy_wh is None
    # One reading that is both start and stop: the stop carried no reading of its own.
    assert measure([r(0, 1000, BEGIN)], ended=True).energy_wh is None
    assert measure([r(0, 1000)], ended=True).energy_wh is None
    assert measure([r(0, 1000, BEGIN)], ended=False).energy_wh == 0


def test_rule_stop_before_start_is_reported_not_negative() -> None:
    found = measure([r(60, 1000, BEGIN), r(0, 3000, END)], ended=True)
    assert found.energy_wh == 2000 and found.stop_before_start
    assert found.problems[0].startswith("stop before start")
    assert measure([r(60, 3000, BEGIN), r(0, 1000, END)], ended=True).energy_wh == 0


def test_rule_energy_never_negative_and_arrival_order_never_matters() -> None:
    rng = random.Random(8)
    for _ in range(300):
        values = [rng.uniform(0, 10_000) for _ in range(rng.randint(1, 7))]
        readings = [r(i, v) for i, v in enumerate(values)]
        ended = rng.random() < 0.5
        found = measure(readings, ended=ended)
        shuffled = readings[:]
        rng.shuffle(shuffled)
        assert measure(shuffled, ended=ended) == found
        if ended and len(values) == 1:
            assert found.energy_wh is None
            continue
        assert found.energy_wh is not None and found.energy_wh >= 0
        rises = sum(max(0.0, b - a) for a, b in itertools.pairwise(values))
        assert found.energy_wh <= rises + 1e-6
        assert found.energy_wh == pytest.approx(high_water(values))
        assert bool(found.problems) == any(b < a for a, b in itertools.pairwise(values))


def high_water(values: list[float], minutes: list[float] | None = None) -> float:
    """The rule as worded in energy.py, written the slow way, for the property test: a
    reading below the mark is a dip only when the first later reading back at the mark is
    reached faster than MAX_PLAUSIBLE_POWER_W allows from it."""
    minutes = list(range(len(values))) if minutes is None else minutes
    high, energy, skip_to = values[0], 0.0, 0
    for i, value in enumerate(values[1:], start=1):
        if i < skip_to:
            continue
        if value >= high:
            energy, high = energy + value - high, value
            continue
        back = [j for j in range(i + 1, len(values)) if values[j] >= high]
        if back:
            rise, hours = values[back[0]] - value, (minutes[back[0]] - minutes[i]) / 60
            if hours <= 0 or rise / hours > MAX_PLAUSIBLE_POWER_W:
                skip_to = back[0]
                continue
        high = value
    return energy


@pytest.mark.parametrize(("values", "energy", "tags"), [
    ((2259988, 0, 2268000), 8012, ["register dip"]),
    ((2259988, 0, 0, 2268000), 8012, ["register dip"]),
    # 8500 Wh in 20 minutes is 25.5 kW: a plausible reset, not a dip (was 8000, a dip).
    ((1000, 500, 9000), 8500, ["backward register"]),
    ((1000, 5000, 0, 3000), 7000, ["backward register"]),
    ((2259988, 1200, 0), 0, ["backward register", "backward register"]),
    # A new meter counting 0 -> 6000 in 30 minutes (12 kW): a reset, both meters count
    # (was 5000 with two dips).
    ((1000, 5000, 0, 3000, 6000), 10000, ["backward register"]),
    ((1000, 5000, 0, 2000, 4000, 6000, 7000), 11000, ["backward register"]),
])
def test_rule_high_water_mark_skips_dips_and_counts_on_after_a_reset(
    values: tuple[float, ...], energy: float, tags: list[str]
) -> None:
    readings = [r(0, values[0], BEGIN)] + [r(10 * i, v) for i, v in enumerate(values[1:-1], 1)]
    readings.append(r(10 * len(values), values[-1], END))
    found = measure(readings, ended=True)
    assert found.energy_wh == energy
    assert [p.partition(":")[0] for p in found.problems] == tags


# ---- kind 1: energy from the ordered readings --------------------------------------------------
ORDERS = list(itertools.permutations(["Started", "Updated", "Ended"]))


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
async def test_201_offline_replay_in_any_order_bills_8000_wh(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture, order: tuple[str, ...]
) -> None:
    caplog.set_level(logging.INFO)
    await csms.server.store.run(lambda: IdToken.create(token="TAG-R", token_type="ISO14443"))
    token = {"idToken": "TAG-R", "type": "ISO14443"}
    events = {
        "Started": event201("Started", 0, ago(60), 1000, offline=True, idToken=token,
                            evse={"id": 1, "connectorId": 1}),
        "Updated": event201("Updated", 1, ago(30), 5000, offline=True),
        "Ended": event201("Ended", 2, ago(10), 9000, offline=True),
    }
    async with await connect(csms, "CS-R", "ocpp2.0.1") as ws:
        station = await boot(ws, "ocpp2.0.1")
        for kind in order:
            answer = await station.call("TransactionEvent", events[kind])
            if kind == "Started":
                assert answer == {"idTokenInfo": {"status": "Accepted"}}
    (tx,) = rows(csms)
    assert tx["energy_wh"] == 8000
    assert (tx["meter_start_wh"], tx["meter_stop_wh"]) == (1000, 9000)
    assert tx["started_at"].startswith(ago(60)[:19])
    assert tx["stopped_at"].startswith(ago(10)[:19])
    assert (tx["id_token"], tx["evse_id"], tx["offline"]) == ("TAG-R", 1, 1)
    assert tx["reconstructed"] == 0 and tx["review"] is None
    listed = json.loads(await tx_list(csms, "list", "--json"))
    assert [(t["energy_wh"], t["flag"]) for t in listed] == [(8000, None)]
    (started,) = [m for m in messages(caplog, logging.INFO) if " started on CS-R evse 1 " in m]
    if order[0] == "Started":
        assert started.endswith("by TAG-R")
    elif order.index("Ended") < order.index("Started"):
        assert started.endswith("completes the reconstructed transaction (stopped: 8000 Wh)")
    else:
        assert started.endswith("by TAG-R; it arrived after later events and completes the "
                                "reconstructed transaction")
    # A Started that is not first arrives after an unknown transaction was reconstructed.
    assert len(messages(caplog, logging.WARNING)) == (0 if order[0] == "Started" else 1)


async def test_201_begin_and_end_contexts_bound_the_session(csms: CsmsInProcess) -> None:
    async with await connect(csms, "CS-C", "ocpp2.0.1") as ws:
        station = await boot(ws, "ocpp2.0.1")
        # A periodic sample taken before the session's Transaction.Begin reading is not part
        # of it, nor one after its Transaction.End reading; all in one offline batch.
        await station.call("TransactionEvent", event201(
            "Ended", 3, at(60), 9000, context="Transaction.End"))
        await station.call("TransactionEvent", event201(
            "Updated", 4, at(90), 9900, context="Sample.Periodic"))
        started = event201("Started", 0, at(0), 1000, context="Transaction.Begin",
                           evse={"id": 1, "connectorId": 1})
        started["meterValue"].insert(0, {"timestamp": at(-5), "sampledValue": [
            {"value": 400, "context": "Sample.Clock"}]})
        await station.call("TransactionEvent", started)
        await station.call("TransactionEvent", event201("Updated", 1, at(30), 5000))
    (tx,) = rows(csms)
    assert (tx["meter_start_wh"], tx["meter_stop_wh"], tx["energy_wh"]) == (1000, 9000, 8000)


async def test_16_late_meter_values_neither_move_the_stop_nor_the_latest(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await csms.server.store.run(lambda: IdToken.create(token="TAG16"))
    async with await connect(csms, "CS-L", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        started = await station.call("StartTransaction", {
            "connectorId": 1, "idTag": "TAG16", "meterStart": 1000, "timestamp": at(0)})
        tx_id = started["transactionId"]
        # Replayed out of order: the newest reading by timestamp is the latest, not the last
        # to arrive.
        for minutes, wh in ((40, 6000), (20, 3000)):
            await station.call("MeterValues", {"connectorId": 1, "transactionId": tx_id,
                                               "meterValue": [mv16(minutes, wh)]})
        (running,) = rows(csms)
        assert (running["meter_last_wh"], running["energy_wh"]) == (6000, 5000)
        await station.call("StopTransaction", {
            "transactionId": tx_id, "meterStop": 8000, "timestamp": at(60), "idTag": "TAG16",
            "transactionData": [mv16(50, 7000)]})
        # A MeterValues queued before the stop but delivered after it.
        await station.call("MeterValues", {"connectorId": 1, "transactionId": tx_id,
                                           "meterValue": [mv16(70, 8800)]})
    (tx,) = rows(csms)
    assert (tx["meter_start_wh"], tx["meter_stop_wh"], tx["energy_wh"]) == (1000, 8000, 7000)
    assert tx["review"] is None
    conn = sqlite3.connect(csms.database)
    sources = set(conn.execute("SELECT source, value_wh FROM energy_reading").fetchall())
    conn.close()
    assert ("StopTransaction", 7000) in sources and ("MeterValues", 8800) in sources
    info = messages(caplog, logging.INFO)
    assert f"transaction {tx_id} started on CS-L evse 1 by TAG16" in info
    assert f"transaction {tx_id} stopped on CS-L evse 1: 7000 Wh (Local)" in info


# ---- kind 2: a register that goes backwards ----------------------------------------------------
async def test_16_backward_register_is_flagged_never_negative(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await csms.server.store.run(lambda: IdToken.create(token="TAGB"))
    async with await connect(csms, "CS-B", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        started = await station.call("StartTransaction", {
            "connectorId": 1, "idTag": "TAGB", "meterStart": 2259988, "timestamp": at(0)})
        tx_id = started["transactionId"]
        await station.call("StopTransaction", {
            "transactionId": tx_id, "meterStop": 1200, "timestamp": at(60)})
    (tx,) = rows(csms)
    assert tx["energy_wh"] == 0 and tx["review"] == "backward register"
    assert "2259988 Wh at 2026-11-21T08:00:00+00:00, StartTransaction" in tx["review_reason"]
    assert "then 1200 Wh at 2026-11-21T09:00:00+00:00, StopTransaction" in tx["review_reason"]
    listing = await tx_list(csms, "list")
    header, line = listing.splitlines()
    assert header.split()[-2:] == ["REASON", "FLAG"]
    assert line.split()[-5:] == ["0", "Local", "REVIEW:", "backward", "register"]
    assert "-2258788" not in listing
    shown = await tx_list(csms, "show", str(tx_id))
    assert "review_reason" in shown and "backward register: 2259988 Wh" in shown
    key = await new_key(csms)
    status, body = await http(csms, "GET", f"/transactions/{tx_id}", key)
    assert status == 200 and body["energy_wh"] == 0 and body["flag"].startswith("REVIEW")
    assert body["review_reason"] == tx["review_reason"] and body["reconstructed"] is False
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and "backward register" in warnings[0]
    assert any(m.endswith("0 Wh (Local); REVIEW: backward register")
               for m in messages(caplog, logging.INFO))


async def test_16_meter_replaced_mid_session_counts_both_meters(csms: CsmsInProcess) -> None:
    async with await connect(csms, "CS-M", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        tx_id = (await station.call("StartTransaction", {
            "connectorId": 1, "idTag": "X", "meterStart": 5000, "timestamp": at(0)}))[
            "transactionId"]
        await station.call("MeterValues", {"connectorId": 1, "transactionId": tx_id,
                                           "meterValue": [mv16(20, 6000), mv16(40, 100)]})
        (running,) = rows(csms)
        assert running["energy_wh"] == 1000 and running["review"] == "backward register"
        await station.call("StopTransaction", {
            "transactionId": tx_id, "meterStop": 400, "timestamp": at(60)})
    (tx,) = rows(csms)
    assert tx["energy_wh"] == 1300 and tx["review"] == "backward register"
    assert "6000 Wh at 2026-11-21T08:20:00+00:00" in tx["review_reason"]


async def test_201_backward_register_is_flagged_never_negative(csms: CsmsInProcess) -> None:
    async with await connect(csms, "CS-B2", "ocpp2.0.1") as ws:
        station = await boot(ws, "ocpp2.0.1")
        await station.call("TransactionEvent", event201(
            "Started", 0, at(0), 2259988, context="Transaction.Begin",
            evse={"id": 1, "connectorId": 1}))
        await station.call("TransactionEvent", event201(
            "Ended", 1, at(60), 1200, context="Transaction.End"))
        await station.call("TransactionEvent", event201(
            "Started", 0, at(100), 5000, tx_id="T-2", evse={"id": 1, "connectorId": 1}))
        await station.call("TransactionEvent", event201("Updated", 1, at(120), 6000, "T-2"))
        await station.call("TransactionEvent", event201("Updated", 2, at(140), 100, "T-2"))
        await station.call("TransactionEvent", event201("Ended", 3, at(160), 400, "T-2"))
        first, second = rows(csms)
        assert first["energy_wh"] == 0 and first["review"] == "backward register"
        assert "2259988 Wh" in first["review_reason"] and "1200 Wh" in first["review_reason"]
        assert second["energy_wh"] == 1300 and second["review"] == "backward register"
        await station.call("TransactionEvent", event201(
            "Started", 0, at(200), 400, tx_id="T-3", evse={"id": 1, "connectorId": 1}))
    listed = json.loads(await tx_list(csms, "list", "--json"))
    assert [(t["energy_wh"], t["flag"]) for t in listed] == [
        (0, None), (1300, "REVIEW: backward register"), (0, "REVIEW: backward register")]
    flagged = json.loads(await tx_list(csms, "list", "--review", "--json"))
    assert [t["station_tx_id"] for t in flagged] == ["T-2", "T-1"]


# ---- kind 6: no stop silently dropped ----------------------------------------------------------
async def test_16_stop_for_unknown_transaction_is_reconstructed_once(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await csms.server.store.run(lambda: IdToken.create(token="TAGU"))
    stop = {"transactionId": 4242, "meterStop": 1200, "timestamp": at(60), "idTag": "TAGU",
            "reason": "EVDisconnected"}
    async with await connect(csms, "CS-U", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        for _ in range(2):  # a retransmit must not make a second one
            answer = await station.call("StopTransaction", stop)
            assert answer == {"idTagInfo": {"status": "Accepted"}}
    (tx,) = rows(csms)
    assert tx["station_tx_id"] == "4242" and tx["reconstructed"] == 1
    assert (tx["id_token"], tx["meter_stop_wh"], tx["stop_reason"]) == (
        "TAGU", 1200, "EVDisconnected")
    assert tx["stopped_at"].startswith("2026-11-21T09:00:00")
    assert tx["energy_wh"] is None and tx["review"] == "reconstructed"
    assert "4242" in tx["review_reason"]
    listing = await tx_list(csms, "list")
    assert "REVIEW: reconstructed" in listing.splitlines()[1]
    shown = json.loads(await tx_list(csms, "show", str(tx["id"]), "--json"))
    assert shown["reconstructed"] is True and "never arrived" in shown["review_reason"]
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and "unknown transaction 4242 on CS-U" in warnings[0]


async def test_16_stop_naming_another_stations_transaction_is_not_applied_to_it(
    csms: CsmsInProcess,
) -> None:
    async with await connect(csms, "CS-P", "ocpp1.6") as ws:
        ours = (await (await boot(ws, "ocpp1.6")).call("StartTransaction", {
            "connectorId": 1, "idTag": "P", "meterStart": 100, "timestamp": at(0)}))[
            "transactionId"]
    async with await connect(csms, "CS-Q", "ocpp1.6") as ws:
        await (await boot(ws, "ocpp1.6")).call("StopTransaction", {
            "transactionId": ours, "meterStop": 900, "timestamp": at(30)})
    first, second = rows(csms)
    assert (first["station_id"], first["stopped_at"], first["energy_wh"]) == ("CS-P", None, 0)
    assert (second["station_id"], second["station_tx_id"]) == ("CS-Q", str(ours))
    assert second["reconstructed"] == 1 and second["meter_stop_wh"] == 900


async def test_16_unknown_stop_keeps_what_its_transaction_data_carries(
    csms: CsmsInProcess,
) -> None:
    async with await connect(csms, "CS-D", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        answer = await station.call("StopTransaction", {
            "transactionId": 77, "meterStop": 9000, "timestamp": at(60),
            "transactionData": [mv16(0, 2000, "Transaction.Begin"), mv16(30, 5000)]})
        assert answer == {}
    (tx,) = rows(csms)
    assert (tx["meter_start_wh"], tx["energy_wh"], tx["reconstructed"]) == (2000, 7000, 1)
    assert tx["started_at"].startswith("2026-11-21T08:00:00") and tx["id_token"] is None


async def test_16_meter_values_for_unknown_transaction_then_its_stop(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with await connect(csms, "CS-V", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        for _ in range(2):
            await station.call("MeterValues", {"connectorId": 2, "transactionId": 5151,
                                               "meterValue": [mv16(10, 3000)]})
        (running,) = rows(csms)
        assert running["reconstructed"] == 1 and running["stopped_at"] is None
        assert (running["evse_id"], running["station_tx_id"]) == (2, "5151")
        await station.call("StopTransaction", {"transactionId": 5151, "meterStop": 4500,
                                               "timestamp": at(40)})
        # The next real session on that connector is ours and is not confused with it.
        started = await station.call("StartTransaction", {
            "connectorId": 2, "idTag": "NEXT", "meterStart": 4500, "timestamp": at(50)})
    first, second = rows(csms)
    assert first["energy_wh"] == 1500 and first["review"] == "reconstructed"
    assert first["stop_reason"] == "Local"
    assert second["id"] == started["transactionId"] and second["reconstructed"] == 0
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and "MeterValues for unknown transaction 5151" in warnings[0]
    assert any(m.startswith(f"transaction {first['id']} (5151) stopped on CS-V evse 2: 1500 Wh")
               for m in messages(caplog, logging.INFO))


async def test_201_events_for_unknown_transaction_are_reconstructed_until_started(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with await connect(csms, "CS-E", "ocpp2.0.1") as ws:
        station = await boot(ws, "ocpp2.0.1")
        await station.call("TransactionEvent", event201("Updated", 1, at(30), 5000, "T-9"))
        ended = event201("Ended", 2, at(60), 9000, "T-9", context="Transaction.End")
        for _ in range(2):
            await station.call("TransactionEvent", ended)
        (tx,) = rows(csms)
        assert tx["reconstructed"] == 1 and tx["review"] == "reconstructed"
        assert tx["energy_wh"] == 4000 and tx["started_at"].startswith("2026-11-21T08:30:00")
        assert "REVIEW: reconstructed" in await tx_list(csms, "list")
        key = await new_key(csms)
        status, listed = await http(csms, "GET", "/transactions", key)
        assert status == 200 and listed[0]["reconstructed"] is True
        assert "T-9" in listed[0]["review_reason"]
        # Another one never started, only ended: kept with what the Ended carries.
        await station.call("TransactionEvent", event201(
            "Ended", 7, at(80), 7000, "T-10", context="Transaction.End",
            evse={"id": 2, "connectorId": 1}, idToken={"idToken": "X", "type": "Central"}))
        await station.call("TransactionEvent", event201(
            "Started", 0, at(0), 1000, "T-9", context="Transaction.Begin",
            evse={"id": 1, "connectorId": 1}))
    complete, lone = rows(csms)
    assert complete["reconstructed"] == 0 and complete["review"] is None
    assert complete["energy_wh"] == 8000 and complete["started_at"].startswith(
        "2026-11-21T08:00:00")
    assert (lone["reconstructed"], lone["energy_wh"], lone["evse_id"]) == (1, None, 2)
    assert lone["id_token"] == "X" and lone["meter_stop_wh"] == 7000
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 2 and "TransactionEvent Updated for unknown transaction T-9" in \
        warnings[0] and "T-10" in warnings[1]


async def test_201_a_real_end_replaces_an_orphaned_close(
    csms: CsmsInProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with await connect(csms, "CS-O", "ocpp2.0.1") as ws:
        station = await boot(ws, "ocpp2.0.1")
        evse = {"id": 1, "connectorId": 1}
        await station.call("TransactionEvent", event201("Started", 0, at(0), 1000, "A",
                                                        evse=evse))
        await station.call("TransactionEvent", event201("Started", 0, at(90), 6000, "B",
                                                        evse=evse))
        (orphan, _) = rows(csms)
        assert orphan["stop_reason"] == "Orphaned" and orphan["review"] == "orphaned"
        await station.call("TransactionEvent", event201("Ended", 1, at(60), 5500, "A"))
    (a, b) = rows(csms)
    assert (a["stop_reason"], a["energy_wh"], a["review"]) == ("Local", 4500, None)
    assert a["stopped_at"].startswith("2026-11-21T09:00:00") and b["stopped_at"] is None
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and "closed as Orphaned" in warnings[0]


async def test_16_a_real_stop_replaces_an_orphaned_close(csms: CsmsInProcess) -> None:
    async with await connect(csms, "CS-O16", "ocpp1.6") as ws:
        station = await boot(ws, "ocpp1.6")
        lost = (await station.call("StartTransaction", {
            "connectorId": 1, "idTag": "A", "meterStart": 1000, "timestamp": at(0)}))[
            "transactionId"]
        await station.call("StartTransaction", {
            "connectorId": 1, "idTag": "B", "meterStart": 6000, "timestamp": at(90)})
        assert rows(csms)[0]["review"] == "orphaned"
        stop = {"transactionId": lost, "meterStop": 5500, "timestamp": at(60)}
        await station.call("StopTransaction", stop)
        # Differs from the kept stop: kept as received, flagged, energy from the first.
        await station.call("StopTransaction", {**stop, "meterStop": 5600})
    a, b = rows(csms)
    assert (a["stop_reason"], a["energy_wh"], a["review"]) == ("Local", 4500,
                                                                "conflicting stop")
    assert b["stopped_at"] is None


# ---- the backfill of rows made by release 0.1.0 ------------------------------------------------
def test_upgrade_v3_backfills_energy_of_old_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    shutil.copy(Path(__file__).parent / "data" / "release-0.1.0.sqlite3", path)
    db = pw.SqliteDatabase(str(path))
    db.connect()
    old = T0.isoformat(timespec="milliseconds")
    # As 0.1.0 kept a 2.x transaction whose Started never came: silently, as if normal.
    db.execute_sql(
        'INSERT INTO "transaction" (id, station_id, station_tx_id, evse_id, connector_id, '
        "started_at, stopped_at, meter_start_wh, meter_stop_wh, meter_last_wh, stop_reason, "
        "offline, seq_no_gaps, created_at) VALUES (3, 'CS-201', 'OLD-X', 1, 1, ?, ?, 900, 900,"
        " 900, 'Local', 0, 0, ?)", (old, old, old))
    db.execute_sql("INSERT INTO transaction_event_record (transaction_id, seq_no, event_type, "
                   "trigger_reason, timestamp, offline) VALUES (3, 5, 'Ended', 'EVDeparted', ?,"
                   " 0)", (old,))
    # What the lead's in-place upgrade does before calling upgrade_v3: new columns and tables.
    with db.bind_ctx([Transaction, EnergyReading]):
        have = {c.name for c in db.get_columns("transaction")}
        migrator = SqliteMigrator(db)
        migrate(*[migrator.add_column("transaction", f.column_name, f)
                  for f in Transaction._meta.sorted_fields if f.column_name not in have])
        db.create_tables([EnergyReading])
    before = db.execute_sql('SELECT id, meter_start_wh, meter_stop_wh FROM "transaction" '
                            "ORDER BY id").fetchall()
    with db.atomic():
        upgrade_v3(db)
    energies = db.execute_sql('SELECT id, energy_wh, review, meter_start_wh, meter_stop_wh '
                              'FROM "transaction" ORDER BY id').fetchall()
    assert [(i, e, rv) for i, e, rv, _, _ in energies] == [
        (1, 7400.0, None), (2, 5000.0, None), (3, None, "reconstructed")]
    assert [(i, s, e) for i, _, _, s, e in energies[:2]] == before[:2]
    count = db.execute_sql("SELECT count(*) FROM energy_reading").fetchone()[0]
    assert count == 6 + 5  # tx 1: meterStart, meterStop, 4 samples; tx 2: 5 samples
    with db.atomic():
        upgrade_v3(db)  # idempotent
    assert db.execute_sql("SELECT count(*) FROM energy_reading").fetchone()[0] == count
    db.close()

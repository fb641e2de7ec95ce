"""A running session's progress on demand: TriggerMessage MeterValues, over real sockets.

The `ocpp` package's ChargePoint (2.0.1, asyncio, against `lite-csms serve`) and the station
simulator (1.6, in this trio run, against the in-process server) as the station; the API over
real HTTP; the SQLite file read back.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from trio_websocket import open_websocket_url

from tests.conftest import CsmsInProcess, run_cli, start_in_process, stop_csms_process
from tests.test_admin_api import http, new_key
from tests.test_interop_remote import Operator, running
from tests.test_server import BOOT_16, register, rpc
from tests.test_simulator import load_simulator

sim = load_simulator()
ENERGY = "Energy.Active.Import.Register"


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def get(operator: Operator, path: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{operator.admin_port}{path}",
                                     headers={"Authorization": f"Bearer {operator.key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# ---- 2.0.1: the ocpp package's ChargePoint, `lite-csms serve` --------------------------------
class Wallbox201(ChargePoint201):
    """Answers TriggerMessage MeterValues as 2.0.1 F06 says: Accepted, then a MeterValues."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.triggers: list[dict[str, Any]] = []
        self.register_wh = 53_000

    @on("TriggerMessage")
    def trigger(self, requested_message: str, evse: dict | None = None, **_: object):
        self.triggers.append({"requested_message": requested_message, "evse": evse})
        return result201.TriggerMessage(status="Accepted")

    @after("TriggerMessage")
    async def send_reading(self, requested_message: str, evse: dict | None = None,
                           **_: object):
        await self.call(call201.MeterValues(evse_id=evse["id"], meter_value=[{
            "timestamp": stamp(datetime.now(UTC)), "sampled_value": [
                {"value": self.register_wh, "measurand": ENERGY, "context": "Trigger"},
                {"value": 7400, "measurand": "Power.Active.Import", "context": "Trigger",
                 "unit_of_measure": {"unit": "W"}}]}]))


def test_v201_charge_point_fresh_reading_stored_rate_limited_and_billed(tmp_path: Path
                                                                         ) -> None:
    operator = Operator(tmp_path)
    try:
        password = operator.add_station("LIVE-201", "RFID-L")
        now = datetime.now(UTC).replace(microsecond=0)

        def meter(at: datetime, wh: int, context: str) -> dict[str, Any]:
            return {"timestamp": stamp(at), "sampled_value": [
                {"value": wh, "measurand": ENERGY, "context": context}]}

        async def scenario() -> tuple[Wallbox201, list[dict[str, Any]], int]:
            async with running(operator, Wallbox201, "LIVE-201", password, "ocpp2.0.1") as cp:
                await cp.call(call201.BootNotification(
                    charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"))
                await cp.call(call201.TransactionEvent(
                    event_type="Started", timestamp=stamp(now - timedelta(minutes=10)),
                    trigger_reason="Authorized", seq_no=0,
                    transaction_info={"transaction_id": "TX-L1"},
                    id_token={"id_token": "RFID-L", "type": "ISO14443"},
                    evse={"id": 1, "connector_id": 1},
                    meter_value=[meter(now - timedelta(minutes=10), 50_000,
                                       "Transaction.Begin")]))
                tx_id = operator.db().execute('SELECT id FROM "transaction"').fetchone()[0]
                answers = [await asyncio.to_thread(get, operator,
                                                   f"/transactions/{tx_id}/progress?fresh=1")]
                cp.register_wh = 99_999  # a second trigger would show it
                answers.append(await asyncio.to_thread(
                    get, operator, f"/transactions/{tx_id}/progress"))
                env = {**os.environ, "LITE_CSMS_API_KEY": operator.key,
                       "LITE_CSMS_ADMIN_PORT": str(operator.admin_port)}
                shown = await asyncio.to_thread(run_cli, "tx", "progress", str(tx_id),
                                                 "--json", env=env)
                assert shown.returncode == 0, shown.stderr
                answers.append((0, json.loads(shown.stdout)))
                text = await asyncio.to_thread(run_cli, "tx", "progress", str(tx_id), env=env)
                assert text.returncode == 0, text.stderr
                assert "energy so far: 3.000 kWh" in text.stdout
                assert "register: 53000 Wh" in text.stdout and "power: 7.40 kW" in text.stdout
                assert "one was sent in the last minute" in text.stdout
                assert "STALE" not in text.stdout
                # The samples of the session come with the stop (TxEndedMeasurands), some
                # older than the triggered reading: ordered by time, they are no step back.
                await cp.call(call201.TransactionEvent(
                    event_type="Ended", timestamp=stamp(now + timedelta(minutes=1)),
                    trigger_reason="StopAuthorized", seq_no=1,
                    transaction_info={"transaction_id": "TX-L1", "stopped_reason": "Local"},
                    meter_value=[meter(now - timedelta(minutes=8), 51_000, "Sample.Periodic"),
                                 meter(now + timedelta(seconds=30), 54_000, "Sample.Periodic"),
                                 meter(now + timedelta(minutes=1), 57_000,
                                       "Transaction.End")]))
                answers.append(await asyncio.to_thread(
                    get, operator, f"/transactions/{tx_id}/progress?fresh=1"))
                return cp, [a for _, a in answers], tx_id

        cp, (first, second, cli, ended), tx_id = asyncio.run(scenario())
        assert cp.triggers == [{"requested_message": "MeterValues", "evse": {"id": 1}}]
        assert (first["refresh"], first["stale"]) == ("fetched", False)
        assert (first["register_wh"], first["energy_wh"], first["power_w"]) == (
            53_000, 3_000, 7400)
        assert first["age_s"] < 60 and first["command_id"] is not None
        assert 0 < first["next_fetch_in_s"] <= 60
        # Within the window: no second TriggerMessage, the stored reading, still fresh.
        assert (second["refresh"], second["stale"], second["register_wh"]) == (
            "rate-limited", False, 53_000)
        assert (cli["refresh"], cli["register_wh"]) == ("rate-limited", 53_000)
        assert (ended["refresh"], ended["stale"], ended["running"]) == ("ended", False, False)
        db = operator.db()
        assert db.execute(
            "SELECT transaction_id, context FROM meter_sample WHERE measurand = ? "
            "AND value = 53000", (ENERGY,)).fetchall() == [(tx_id, "Trigger")]
        assert db.execute('SELECT energy_wh, review FROM "transaction"').fetchone() == (
            7_000.0, None)
        assert db.execute("SELECT count(*) FROM command WHERE action = 'TriggerMessage'"
                          ).fetchone()[0] == 1
    finally:
        stop_csms_process(operator.csms)


# ---- 1.6: the simulator, in-process server ----------------------------------------------------
@pytest.fixture
async def live_csms(nursery: trio.Nursery, tmp_path: Path) -> CsmsInProcess:
    # A short window, so that the test sees it end.
    return await start_in_process(nursery, tmp_path, progress_min_interval=1.0)


async def test_v16_simulator_samples_with_the_stop_and_fresh_readings_on_demand(
    live_csms: CsmsInProcess, nursery: trio.Nursery
) -> None:
    csms = live_csms
    key = await new_key(csms)
    await register(csms, "SIM-16")
    status, _ = await http(csms, "POST", "/tokens", key, {"token": "TAG-16"})
    assert status == 201
    station = sim.make_station(sim.StationOptions(
        url=f"ws://127.0.0.1:{csms.port}/ocpp", station_id="SIM-16", linger=float("inf"),
        time_scale=600, power_w=7200))
    # What the budget policy sets: no live samples, the samples with the stop.
    for name, value in (("MeterValuesSampledData", ""), ("MeterValueSampleInterval", "300"),
                        ("StopTxnSampledData", ENERGY)):
        assert station.config.change(station.config.lookup_v16(name), value)
    nursery.start_soon(station.run)
    with trio.fail_after(10):
        while "SIM-16" not in csms.server.connections or not (
                csms.server.connections["SIM-16"].accepted.is_set()):
            await trio.sleep(0.05)
    status, started = await http(csms, "POST", "/stations/SIM-16/commands", key, {
        "operation": "remote-start", "args": {"connector": 1, "token": "TAG-16"}})
    assert status == 200 and started["result"] == {"status": "Accepted"}
    with trio.fail_after(10):
        while not (rows := query(csms, 'SELECT id FROM "transaction"')):
            await trio.sleep(0.05)
    tx_id = rows[0][0]
    await trio.sleep(2)  # 20 simulated minutes: four samples kept, none sent

    status, first = await http(csms, "GET", f"/transactions/{tx_id}/progress?wait=5", key)
    assert status == 200 and (first["refresh"], first["stale"]) == ("fetched", False)
    assert first["register_wh"] > 1000 and first["energy_wh"] == first["register_wh"] - 1000
    status, again = await http(csms, "GET", f"/transactions/{tx_id}/progress", key)
    assert (again["refresh"], again["register_wh"]) == ("rate-limited", first["register_wh"])
    await trio.sleep(1.1)  # the window is over: the next ask fetches again
    status, later = await http(csms, "GET", f"/transactions/{tx_id}/progress", key)
    assert later["refresh"] == "fetched" and later["register_wh"] > first["register_wh"]
    await trio.sleep(1.1)
    status, asked = await http(csms, "GET", f"/transactions/{tx_id}/progress?wait=0", key)
    assert (asked["refresh"], asked["stale"]) == ("requested", True)
    with trio.fail_after(5):
        while (await http(csms, "GET", f"/transactions/{tx_id}/progress?fresh=0", key)
               )[1]["stale"]:
            await trio.sleep(0.05)
    status, stored = await http(csms, "GET", f"/transactions/{tx_id}/progress?fresh=0", key)
    assert stored["refresh"] == "not-requested" and stored["register_wh"] > later["register_wh"]
    status, _ = await http(csms, "POST", "/stations/SIM-16/commands", key, {
        "operation": "remote-stop", "args": {"transaction": tx_id}})
    with trio.fail_after(10):
        while not query(csms, 'SELECT 1 FROM "transaction" WHERE stopped_at IS NOT NULL'):
            await trio.sleep(0.05)
    station.shut_down()

    triggers = query(csms, "SELECT payload, status FROM command WHERE action = 'TriggerMessage'")
    assert [(json.loads(p), s) for p, s in triggers] == [
        ({"requestedMessage": "MeterValues", "connectorId": 1}, "answered")] * 3
    contexts = [c for (c,) in query(
        csms, "SELECT context FROM meter_sample WHERE transaction_id = ? ORDER BY timestamp",
        tx_id)]
    # No live MeterValues; three triggered readings; the periodic samples came with the stop.
    assert contexts.count("Trigger") == 3 and contexts.count("Sample.Periodic") >= 4
    assert contexts[-1] == "Transaction.End"
    sent = [step["action"] for step in station.report.steps]
    assert sent.count("MeterValues") == 3
    [(energy, stop, start, review)] = query(
        csms, 'SELECT energy_wh, meter_stop_wh, meter_start_wh, review FROM "transaction"')
    assert energy == stop - start > 0 and review is None


def query(csms: CsmsInProcess, sql: str, *args: object) -> list[tuple]:
    conn = sqlite3.connect(csms.database)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# ---- refused, silent, offline ----------------------------------------------------------------
async def test_refused_silent_and_offline_stations_get_the_stored_reading_marked_stale(
    live_csms: CsmsInProcess,
) -> None:
    csms = live_csms
    key = await new_key(csms)
    await register(csms, "RAW-16")
    assert (await http(csms, "GET", "/transactions/404/progress", key))[0] == 404
    async with open_websocket_url(csms.url("RAW-16"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "1", "BootNotification", BOOT_16])
        begun = stamp(datetime.now(UTC) - timedelta(minutes=30))
        started = await rpc(ws, [2, "2", "StartTransaction", {
            "connectorId": 2, "idTag": "ANY", "meterStart": 4000, "timestamp": begun}])
        tx_id = started[2]["transactionId"]
        path = f"/transactions/{tx_id}/progress"
        assert (await http(csms, "GET", f"{path}?wait=99", key))[0] == 400

        async def station(answer: list) -> None:
            request = json.loads(await ws.get_message())
            assert request[2:] == ["TriggerMessage",
                                   {"requestedMessage": "MeterValues", "connectorId": 2}]
            await ws.send_message(json.dumps([*answer[:1], request[1], *answer[1:]]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(station, [3, {"status": "Rejected"}])
            status, refused = await http(csms, "GET", path, key)
        assert (refused["refresh"], refused["stale"]) == ("refused", True)
        assert "Rejected" in refused["detail"]
        assert refused["register_wh"] == 4000 and refused["age_s"] >= 29 * 60
        # A refusal counts against the window too: asking again sends nothing.
        status, again = await http(csms, "GET", path, key)
        assert (again["refresh"], again["stale"]) == ("rate-limited", True)

        await trio.sleep(1.1)
        # Accepted, but the MeterValues never comes within the wait.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(station, [3, {"status": "Accepted"}])
            status, silent = await http(csms, "GET", f"{path}?wait=0.5", key)
        assert (silent["refresh"], silent["stale"], silent["register_wh"]) == (
            "timeout", True, 4000)
        # It comes late: stored, and the window's next asker sees it, no longer stale.
        late = stamp(datetime.now(UTC))
        assert (await rpc(ws, [2, "3", "MeterValues", {"connectorId": 2, "meterValue": [
            {"timestamp": late, "sampledValue": [
                {"value": "4800", "measurand": ENERGY, "context": "Trigger"}]}]}]))[0] == 3
        status, caught_up = await http(csms, "GET", path, key)
        assert (caught_up["refresh"], caught_up["stale"], caught_up["register_wh"],
                caught_up["energy_wh"]) == ("rate-limited", False, 4800, 800)
        # The reading named no transactionId: it joined the session running on connector 2.
        assert query(csms, "SELECT transaction_id FROM meter_sample WHERE value = 4800") == [
            (tx_id,)]

    await trio.sleep(1.1)
    with trio.fail_after(5):
        while "RAW-16" in csms.server.connections:
            await trio.sleep(0.05)
    status, offline = await http(csms, "GET", path, key)
    assert (offline["refresh"], offline["stale"], offline["register_wh"]) == (
        "offline", True, 4800)
    assert "not connected" in offline["detail"]
    status, cached = await http(csms, "GET", f"{path}?fresh=0", key)
    assert status == 200 and cached["refresh"] == "not-requested"
    assert query(csms, "SELECT count(*) FROM command WHERE action = 'TriggerMessage'") == [(2,)]

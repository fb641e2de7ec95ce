"""Block I on the charger's display, against the `ocpp` package's ChargePoint (2.0.1, 2.1).

The charger validates every message it receives against the OCA schemas (the package's own
validation), so each answer and CostUpdated below arrived schema-valid. The server runs in
this test's trio loop; the charger, asyncio like its package, runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio
import websockets
from ocpp.routing import on
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call as call21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from trio_websocket import open_websocket_url

from lite_csms.db.models import IdToken
from lite_csms.ocppj.timestamps import format_utc
from lite_csms.sharing import pricing
from tests.conftest import CsmsInProcess, start_in_process
from tests.test_interop_remote import listening
from tests.test_server import BOOT_201, register

PRICE = "Price: KES 25.00/kWh + KES 60.00/h + KES 50.00 per session"


class Charger201(ChargePoint201):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.costs: list[tuple[float, str]] = []
        self.cost_arrived = asyncio.Event()

    @on("CostUpdated")
    def cost_updated(self, total_cost: float, transaction_id: str, **_: object):
        self.costs.append((total_cost, transaction_id))
        self.cost_arrived.set()
        return result201.CostUpdated()


def at(minutes: int, start: datetime) -> str:
    return format_utc(start + timedelta(minutes=minutes))


def meter(wh: float, when: str, context: str = "Sample.Periodic") -> list:
    return [{"timestamp": when, "sampled_value": [
        {"value": wh, "context": context, "measurand": "Energy.Active.Import.Register"}]}]


@contextlib.asynccontextmanager
async def running(csms: CsmsInProcess, charger_class: type, station_id: str,
                  protocol: str) -> AsyncIterator:
    """A ChargePoint connected (no password: registered without one) and listening."""
    ws = await websockets.connect(csms.url(station_id), subprotocols=[protocol])
    async with listening(charger_class, station_id, ws) as charger:
        yield charger


async def test_tariff_total_cost_and_cost_updated_reach_the_charger(
        csms: CsmsInProcess, tmp_path: Path) -> None:
    for station, tag in (("SHARE-201", "RFID-S1"), ("SHARE-21", "RFID-S2")):
        await register(csms, station)
        await csms.server.store.run(lambda s=station, t=tag: (
            IdToken.create(token=t),
            pricing.set_tariff(s, "KES", "25", "60", "50")))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    token = {"id_token": "RFID-S1", "type": "ISO14443"}

    async def scenario() -> tuple[Charger201, dict]:
        seen: dict = {}
        async with running(csms, Charger201, "SHARE-201", "ocpp2.0.1") as cp:
            await cp.call(call201.BootNotification(
                charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"))
            auth = await cp.call(call201.Authorize(id_token=token))
            seen["authorize"] = auth.id_token_info
            blocked = await cp.call(call201.Authorize(
                id_token={"id_token": "UNKNOWN-1", "type": "ISO14443"}))
            seen["unknown"] = blocked.id_token_info
            started = await cp.call(call201.TransactionEvent(
                event_type="Started", seq_no=0, timestamp=at(0, start),
                trigger_reason="Authorized", transaction_info={"transaction_id": "T-1"},
                id_token=token, evse={"id": 1, "connector_id": 1},
                meter_value=meter(10_000, at(0, start), "Transaction.Begin")))
            seen["started"] = started
            # Meter values with the session running: the first CostUpdated goes out.
            await cp.call(call201.MeterValues(evse_id=1,
                                              meter_value=meter(12_000, at(20, start))))
            await asyncio.wait_for(cp.cost_arrived.wait(), 10)
            # More meter values within 15 minutes: the running cost changed, but the link
            # is metered, so no second CostUpdated.
            await cp.call(call201.MeterValues(evse_id=1,
                                              meter_value=meter(13_000, at(30, start))))
            await asyncio.sleep(0.3)
            updated = await cp.call(call201.TransactionEvent(
                event_type="Updated", seq_no=1, timestamp=at(30, start),
                trigger_reason="MeterValuePeriodic",
                transaction_info={"transaction_id": "T-1"}))
            seen["updated"] = updated.total_cost
            ended = await cp.call(call201.TransactionEvent(
                event_type="Ended", seq_no=2, timestamp=at(60, start),
                trigger_reason="EVDeparted",
                transaction_info={"transaction_id": "T-1", "stopped_reason": "EVDisconnected"},
                meter_value=meter(14_000.4, at(60, start), "Transaction.End")))
            seen["ended"] = ended.total_cost
        return cp, seen

    cp, seen = await trio.to_thread.run_sync(asyncio.run, scenario())
    assert seen["authorize"]["personal_message"] == {"format": "UTF8", "content": PRICE}
    assert "personal_message" not in seen["unknown"]  # no price for a refused token
    assert seen["started"].id_token_info["personal_message"]["content"] == PRICE
    assert seen["started"].total_cost is None
    # At 20 min: 2 kWh * 25 + 1/3 h * 60 + 50 = 120.00
    assert cp.costs == [(120.0, "T-1")]
    # At 30 min: 3 kWh * 25 + 0.5 h * 60 + 50 = 155.00 (running cost)
    assert seen["updated"] == 155.0
    # Ended at 60 min: 4 kWh (4000.4 Wh -> 4000) * 25 + 1 h * 60 + 50 = 210.00
    assert seen["ended"] == 210.0
    db = sqlite3.connect(csms.database)
    assert db.execute('SELECT cost, price_currency, price_per_kwh FROM "transaction"'
                      ).fetchall() == [(21000, "KES", 2500)]
    assert db.execute("SELECT requested_by, status FROM command WHERE action = "
                      "'CostUpdated'").fetchall() == [("pricing", "answered")]

    async def scenario21() -> tuple[dict, float]:
        async with running(csms, ChargePoint21, "SHARE-21", "ocpp2.1") as cp:
            await cp.call(call21.BootNotification(
                charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"))
            auth = await cp.call(call21.Authorize(
                id_token={"id_token": "RFID-S2", "type": "ISO14443"}))
            await cp.call(call21.TransactionEvent(
                event_type="Started", seq_no=0, timestamp=at(0, start),
                trigger_reason="Authorized", transaction_info={"transaction_id": "T-2"},
                evse={"id": 1, "connector_id": 1},
                meter_value=meter(0, at(0, start), "Transaction.Begin")))
            ended = await cp.call(call21.TransactionEvent(
                event_type="Ended", seq_no=1, timestamp=at(6, start),
                trigger_reason="EVDeparted", transaction_info={"transaction_id": "T-2"},
                meter_value=meter(1_000, at(6, start), "Transaction.End")))
            return auth.id_token_info, ended.total_cost

    info, total = await trio.to_thread.run_sync(asyncio.run, scenario21())
    assert info["personal_message"]["content"] == PRICE
    assert total == 81.0  # 1 kWh * 25 + 0.1 h * 60 + 50


class RawCharger:
    """A raw 2.0.1 client that answers the CSMS's CALLs and keeps the CostUpdated ones."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.costs: list[float] = []
        self.ids = 0

    async def call(self, action: str, payload: dict) -> dict:
        self.ids += 1
        unique = f"m{self.ids}"
        await self.ws.send_message(json.dumps([2, unique, action, payload]))
        while True:
            message = json.loads(await self.ws.get_message())
            if message[0] == 2:
                assert message[2] == "CostUpdated", message
                self.costs.append(message[3]["totalCost"])
                await self.ws.send_message(json.dumps([3, message[1], {}]))
            elif message[1] == unique:
                assert message[0] == 3, message
                return message[2]

    async def cost_updated(self) -> float:
        """Wait for the next CostUpdated and answer it."""
        with trio.fail_after(5):
            message = json.loads(await self.ws.get_message())
        assert message[0] == 2 and message[2] == "CostUpdated", message
        self.costs.append(message[3]["totalCost"])
        await self.ws.send_message(json.dumps([3, message[1], {}]))
        return message[3]["totalCost"]


def sampled(wh: float, when: datetime, context: str = "Sample.Periodic") -> list:
    return [{"timestamp": format_utc(when), "sampledValue": [
        {"value": wh, "context": context, "measurand": "Energy.Active.Import.Register"}]}]


async def test_cost_updated_waits_out_its_interval_and_needs_a_change(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    csms = await start_in_process(nursery, tmp_path, cost_update_interval=0.6)
    await register(csms, "RATE-1")
    await csms.server.store.run(lambda: pricing.set_tariff("RATE-1", "EUR", "1", "0", "0"))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    async with open_websocket_url(csms.url("RATE-1"), subprotocols=["ocpp2.0.1"]) as ws:
        cp = RawCharger(ws)
        await cp.call("BootNotification", BOOT_201)
        await cp.call("TransactionEvent", {
            "eventType": "Started", "seqNo": 0, "timestamp": format_utc(start),
            "triggerReason": "CablePluggedIn", "transactionInfo": {"transactionId": "R-1"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": sampled(0, start, "Transaction.Begin")})

        async def reading(minutes: int, wh: float, sent: float | None) -> None:
            before = len(cp.costs)
            await cp.call("MeterValues", {
                "evseId": 1, "meterValue": sampled(wh, start + timedelta(minutes=minutes))})
            if sent is not None:
                if len(cp.costs) == before:  # not already taken while awaiting the answer
                    await cp.cost_updated()
                assert cp.costs[before:] == [sent]
                return
            # The check the reading started (registered before its answer) ends sending
            # nothing: one that sent would wait for our answer and never end.
            with trio.fail_after(5):
                while csms.server.costs._checking:
                    await trio.sleep(0.01)

        await reading(1, 1000, 1.0)        # 1 kWh at 1.00: the first change is sent
        await reading(2, 2000, None)       # changed, inside the interval: not sent
        await trio.sleep(0.6)
        await reading(3, 2000, 2.0)        # interval over: the change held back goes now
        await trio.sleep(0.6)
        await reading(4, 2000, None)       # interval over, but nothing changed: not sent
        # A TransactionEvent's totalCost tells the charger too: no CostUpdated repeats it.
        answer = await cp.call("TransactionEvent", {
            "eventType": "Updated", "seqNo": 1, "timestamp": format_utc(start),
            "triggerReason": "MeterValuePeriodic", "transactionInfo": {"transactionId": "R-1"},
            "meterValue": sampled(3000, start + timedelta(minutes=5))})
        assert answer["totalCost"] == 3.0
        await trio.sleep(0.6)
        await reading(6, 3000, None)
        assert cp.costs == [1.0, 2.0]

"""kill -9 under load: what was acknowledged is stored (issue 11 item 8).

`lite-csms serve` runs as a child process on a real SQLite file. Four 1.6 stations run charging
sessions back to back (StartTransaction, MeterValues, StopTransaction) and record every
CALLRESULT. The server is killed with SIGKILL at a random moment, twice; after each kill the
file must hold every acknowledged start, meter value and stop, with no duplicate transaction
and a clean integrity check. On restart each station first retransmits the message that was in
flight when the server died, as a charger does: the answer must be the one it would have got
(the same transactionId for a start that was already stored) and nothing is stored twice.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import trio

from lite_csms.db.database import open_database
from lite_csms.db.models import Station
from tests import rawws
from tests.conftest import CsmsProcess, start_csms_process, stop_csms_process

STATIONS = 4
KILLS = 2
T0 = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
BOOT = {"chargePointVendor": "Acme", "chargePointModel": "Crash-1"}


@dataclass
class Station16:
    """One charger's view: what the server acknowledged, and what is still unanswered."""

    station_id: str
    tag: str
    clock: int = 0  # seconds after T0 of this station's next message; all distinct
    meter: int = 0  # Wh register, only ever climbing
    transaction: int | None = None
    started: dict[int, int] = field(default_factory=dict)  # transactionId -> meterStart
    metered: list[tuple[int, int]] = field(default_factory=list)  # (transactionId, Wh)
    stopped: dict[int, int] = field(default_factory=dict)  # transactionId -> meterStop
    pending: list | None = None  # the CALL sent and not yet answered
    answers: int = 0  # CALLRESULTs to its session messages

    def stamp(self) -> str:
        self.clock += 1
        return (T0 + timedelta(seconds=self.clock)).isoformat().replace("+00:00", "Z")

    def next_call(self) -> list:
        self.meter += 37
        if self.transaction is None:
            return [2, f"s{self.clock}", "StartTransaction", {
                "connectorId": 1, "idTag": self.tag, "meterStart": self.meter,
                "timestamp": self.stamp()}]
        if self.meter % 5:
            return [2, f"m{self.clock}", "MeterValues", {
                "connectorId": 1, "transactionId": self.transaction, "meterValue": [{
                    "timestamp": self.stamp(), "sampledValue": [{
                        "value": str(self.meter), "unit": "Wh",
                        "measurand": "Energy.Active.Import.Register"}]}]}]
        return [2, f"e{self.clock}", "StopTransaction", {
            "transactionId": self.transaction, "meterStop": self.meter,
            "timestamp": self.stamp(), "reason": "Local"}]

    def acknowledged(self, call: list, answer: dict) -> None:
        action, payload = call[2], call[3]
        if action == "StartTransaction":
            tx = answer["transactionId"]
            assert tx not in self.started, "a new session got an old transactionId"
            self.started[tx] = payload["meterStart"]
            self.transaction = tx
        elif action == "MeterValues":
            value = int(payload["meterValue"][0]["sampledValue"][0]["value"])
            self.metered.append((payload["transactionId"], value))
        else:
            self.stopped[payload["transactionId"]] = payload["meterStop"]
            self.transaction = None


async def exchange(stream: trio.SocketStream, buffer: bytearray, call: list) -> dict:
    await stream.send_all(rawws.frame(1, json.dumps(call).encode()))
    received = await rawws.read_frame(stream, buffer)
    if received is None:
        raise trio.BrokenResourceError("server gone")
    answer = json.loads(received[1])
    assert answer[:2] == [3, call[1]], (call, answer)
    return answer[2]


async def drive(port: int, station: Station16, *, until_gone: bool) -> None:
    """Boot, retransmit what was in flight, then run sessions until the server dies (or, with
    until_gone False, stop after the retransmission)."""
    buffer = bytearray()
    stream: trio.SocketStream | None = None
    try:
        stream, response = await rawws.connect(port, f"/ocpp/{station.station_id}")
        if not response.startswith(b"HTTP/1.1 101"):
            assert until_gone, response
            return  # the kill came during the handshake
        boot = await exchange(stream, buffer, [2, "b", "BootNotification", BOOT])
        assert boot["status"] == "Accepted"
        while True:
            if station.pending is None:
                if not until_gone:
                    return
                station.pending = station.next_call()
            answer = await exchange(stream, buffer, station.pending)
            station.acknowledged(station.pending, answer)
            station.pending = None
            station.answers += 1
    except (trio.BrokenResourceError, OSError):  # the server died under us
        if not until_gone:
            raise
    finally:
        if stream is not None:
            await stream.aclose()


def check_store(database: Path, stations: list[Station16]) -> None:
    db = sqlite3.connect(database)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        duplicates = db.execute(
            'SELECT station_id, connector_id, id_token, started_at, COUNT(*) FROM "transaction"'
            " GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 1").fetchall()
        assert duplicates == []
        assert db.execute('SELECT COUNT(*) FROM "transaction" WHERE energy_wh < 0 '
                          "OR reconstructed").fetchone() == (0,)
        for station in stations:
            rows = {tx: (start, stop) for tx, start, stop in db.execute(
                'SELECT id, meter_start_wh, meter_stop_wh FROM "transaction" WHERE station_id=?',
                (station.station_id,))}
            for tx, meter_start in station.started.items():
                assert rows[tx][0] == meter_start, (station.station_id, tx)
            for tx, meter_stop in station.stopped.items():
                assert rows[tx][1] == meter_stop, (station.station_id, tx)
            samples = set(db.execute(
                "SELECT transaction_id, CAST(value AS INTEGER) FROM meter_sample "
                "WHERE station_id=?", (station.station_id,)))
            missing = set(station.metered) - samples
            assert not missing, (station.station_id, sorted(missing))
    finally:
        db.close()


def stored_start(database: Path, station: Station16, call: list) -> int | None:
    db = sqlite3.connect(database)
    try:
        row = db.execute('SELECT id FROM "transaction" WHERE station_id=? AND meter_start_wh=?',
                         (station.station_id, call[3]["meterStart"])).fetchone()
        return None if row is None else row[0]
    finally:
        db.close()


def register(database: Path, ids: list[str]) -> None:
    db = open_database(database)
    try:
        Station.insert_many([{"id": sid, "registration": "accepted"} for sid in ids]).execute()
    finally:
        db.close()


async def test_kill_9_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    stations = [Station16(f"CRASH-{n}", f"TAG-{n}") for n in range(STATIONS)]
    register(tmp_path / "csms.sqlite3", [s.station_id for s in stations])
    for _kill in range(KILLS):
        csms: CsmsProcess = start_csms_process(tmp_path)
        try:
            # The retransmissions first, each checked against what the dead server stored.
            for station in stations:
                call = station.pending
                before = (stored_start(csms.database, station, call)
                          if call and call[2] == "StartTransaction" else None)
                with trio.fail_after(10):
                    await drive(csms.port, station, until_gone=False)
                if before is not None:
                    assert station.transaction == before, "a retransmitted start got a new id"
            check_store(csms.database, stations)
            answered = sum(s.answers for s in stations)
            with trio.fail_after(15):
                async with trio.open_nursery() as nursery:
                    for station in stations:
                        nursery.start_soon(partial(drive, csms.port, station, until_gone=True))
                    # Under load: a few answers in, then at a random moment.
                    while sum(s.answers for s in stations) < answered + 2 * STATIONS:
                        await trio.sleep(0.01)
                    await trio.sleep(rng.uniform(0.0, 0.5))
                    csms.process.send_signal(signal.SIGKILL)
            assert csms.process.wait(5) == -signal.SIGKILL
            check_store(csms.database, stations)
        finally:
            if csms.process.poll() is None:
                stop_csms_process(csms)
    # A last restart: the in-flight messages of the last kill are retransmitted and stored once.
    csms = start_csms_process(tmp_path)
    try:
        for station in stations:
            with trio.fail_after(10):
                await drive(csms.port, station, until_gone=False)
            assert station.pending is None
    finally:
        stop_csms_process(csms)
    check_store(csms.database, stations)
    assert sum(len(s.started) for s in stations) >= STATIONS

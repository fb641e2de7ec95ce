"""Recovery from a full disk (issue 11 item 4), on a real full filesystem.

The database lives on a tiny filesystem that the test mounts itself (CI runs as root): a
tmpfs, and an ext4 image on a loop device. A filler file takes the rest of it. While it is
full, a station's calls that cannot be stored get a CALLERROR, never a CALLRESULT; once the
filler is gone, the next calls succeed without a restart, and every acknowledged message is in
the database.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, open_websocket_url

from lite_csms.db.database import open_database
from lite_csms.db.models import Station, StationEvent
from lite_csms.db.writer import BatchLost, StoreWriter
from tests.conftest import start_in_process
from tests.test_admin_api import http

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
SAMPLES_PER_MESSAGE = 20


# tmpfs only in the suite: a loop device (the ext4 variant, run by hand with
# LITE_CSMS_TEST_LOOP=1) is not on every machine.
@pytest.fixture(params=["tmpfs", "ext4"] if os.environ.get("LITE_CSMS_TEST_LOOP") else ["tmpfs"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, or a 4 MiB ext4 image on a loop device: memory-backed and block-backed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if request.param == "tmpfs":
        command = ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)]
    else:
        image = tmp_path / "ext4.img"
        with image.open("wb") as blank:
            blank.truncate(4 << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
        command = ["mount", "-o", "loop", str(image), str(mount)]
    done = subprocess.run(command, capture_output=True, text=True)
    # Fails rather than skips: the recovery must be tested, and CI runs as root.
    assert done.returncode == 0, f"cannot mount a small {request.param} (run as root): " \
        f"{done.stderr}"
    try:
        yield mount
    finally:
        # Lazy: the server's connection may still hold the file while the nursery winds down.
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path: Path) -> None:
    """Write zeros until the filesystem says ENOSPC."""
    chunk = b"\0" * 4096
    with path.open("wb", buffering=0) as filler:
        while True:
            try:
                filler.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return


def meter_values(tx_id: int, n: int) -> list:
    """Message n carries readings n*100 .. n*100+19 Wh, so its rows can be found again."""
    values = [{"timestamp": (T0 + timedelta(minutes=n, seconds=k)).isoformat(),
               "sampledValue": [{"value": str(n * 100 + k), "unit": "Wh",
                                 "measurand": "Energy.Active.Import.Register"}]}
              for k in range(SAMPLES_PER_MESSAGE)]
    return [2, f"mv{n}", "MeterValues",
            {"connectorId": 1, "transactionId": tx_id, "meterValue": values}]


def stored(database: Path, n: int) -> int:
    conn = sqlite3.connect(database)
    try:
        return conn.execute("SELECT count(*) FROM meter_sample WHERE value >= ? AND value < ?",
                            (n * 100, n * 100 + SAMPLES_PER_MESSAGE)).fetchone()[0]
    finally:
        conn.close()


async def test_a_full_disk_refuses_calls_and_the_writer_recovers_when_space_returns(
    nursery: trio.Nursery, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    csms = await start_in_process(nursery, small_disk)
    await csms.server.store.run(lambda: Station.create(id="CS-DF", registration="accepted"))
    answers: dict[int, int] = {}  # message number -> 3 (CALLRESULT) or 4 (CALLERROR)

    async def send(ws, n: int) -> int:
        await ws.send_message(json.dumps(meter_values(tx_id, n)))
        answer = json.loads(await ws.get_message())
        assert answer[1] == f"mv{n}"
        answers[n] = answer[0]
        return answer[0]

    async with open_websocket_url(csms.url("CS-DF"), subprotocols=["ocpp1.6"]) as ws:
        await ws.send_message(json.dumps([2, "s", "StartTransaction", {
            "connectorId": 1, "idTag": "TAG", "meterStart": 0, "timestamp": T0.isoformat()}]))
        tx_id = json.loads(await ws.get_message())[2]["transactionId"]
        for n in range(1, 4):
            assert await send(ws, n) == 3

        fill(small_disk / "filler")
        n, refused_in_a_row = 4, 0
        while refused_in_a_row < 3:
            assert n < 400, "the full disk never refused a call"
            refused_in_a_row = refused_in_a_row + 1 if await send(ws, n) == 4 else 0
            n += 1
        refused = [m for m, kind in answers.items() if kind == 4]

        (small_disk / "filler").unlink()
        for m in range(n, n + 5):
            assert await send(ws, m) == 3, "the writer did not recover once space returned"
        stop = {"transactionId": tx_id, "meterStop": 100 * (n + 5),
                "timestamp": (T0 + timedelta(hours=12)).isoformat(), "reason": "Local"}
        await ws.send_message(json.dumps([2, "e", "StopTransaction", stop]))
        assert json.loads(await ws.get_message())[0] == 3

    for m, kind in answers.items():
        # Acknowledged: all of it is stored. Refused: none of it is (a lost batch is whole).
        assert stored(csms.database, m) == (SAMPLES_PER_MESSAGE if kind == 3 else 0), m
    assert refused
    logged = [r.getMessage() for r in caplog.records]
    assert any("database or disk is full" in line for line in logged)
    assert not any("no transaction is active" in line for line in logged)
    assert any("store writes again" in line for line in logged)
    check = sqlite3.connect(csms.database)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()


async def test_a_batch_that_hits_sqlite_full_is_lost_whole_and_the_next_one_commits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLITE_FULL from a tiny max_page_count, deterministic: the jobs before and after the one
    that fails in the same group commit get an error naming the cause, and store nothing."""
    db = open_database(tmp_path / "csms.sqlite3")
    writer = StoreWriter(db)
    pages = db.execute_sql("PRAGMA page_count").fetchone()[0]
    db.execute_sql(f"PRAGMA max_page_count = {pages + 4}")
    Station.create(id="CS-1")
    outcomes: dict[str, BaseException | None] = {}

    async def event(name: str, size: int) -> None:
        try:
            await writer.run(lambda: StationEvent.create(station="CS-1", action=name,
                                                         payload="x" * size))
            outcomes[name] = None
        except Exception as exc:
            outcomes[name] = exc

    async with trio.open_nursery() as nursery:
        try:
            async with trio.open_nursery() as batch:
                for name, size in [("small-1", 10), ("huge", 200_000), ("small-2", 10)]:
                    batch.start_soon(event, name, size)
                # All three queued before the writer starts: one group commit.
                await trio.testing.wait_all_tasks_blocked()
                await nursery.start(writer.serve)
            assert writer.batches == 1
            assert all(outcomes[name] is not None for name in outcomes)
            assert all("database or disk is full" in str(outcomes[name]) for name in outcomes)
            assert StationEvent.select().count() == 0
            db.execute_sql(f"PRAGMA max_page_count = {pages + 1000}")
            await event("after", 10)
            assert outcomes["after"] is None
        finally:
            writer.close()  # serve() is shielded: only close() ends it
    assert [e.action for e in StationEvent.select()] == ["after"]
    assert "store writes again after 1 failed group commits" in caplog.text
    db.close()


async def test_on_a_full_disk_ready_says_so_and_a_connecting_station_is_told_1011(
    nursery: trio.Nursery, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    csms = await start_in_process(nursery, small_disk)
    store = csms.server.store
    await store.run(lambda: Station.create(id="CS-LATE", registration="accepted"))
    fill(small_disk / "filler")
    try:
        for _ in range(400):
            try:
                await store.run(lambda: StationEvent.create(station="CS-LATE", action="x",
                                                            payload="x" * 4000))
            except BatchLost:
                break
        else:
            pytest.fail("the full disk never refused a write")

        # An empty job still commits on a full disk: neither ready nor the count may believe it.
        for _ in range(2):
            status, body = await http(csms, "GET", "/health/ready")
            assert status == 503 and "database or disk is full" in body["why"], body
        assert store.failed_batches >= 1
        assert "store writes again" not in caplog.text

        caplog.clear()
        async with open_websocket_url(csms.url("CS-LATE"), subprotocols=["ocpp1.6"]) as ws:
            with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
                await ws.get_message()
        assert closed.value.reason.code == 1011
        assert "CS-LATE" not in csms.server.connections
        lines = [r.getMessage() for r in caplog.records if "CS-LATE" in r.getMessage()]
        assert any("1011" in line and "database or disk is full" in line for line in lines), lines
        assert not any("connection error" in r.getMessage() for r in caplog.records)
    finally:
        # Space back before teardown: a server stopping on a full disk waits on its flush.
        (small_disk / "filler").unlink()
    await store.run(lambda: Station.update(model="after").where(Station.id == "CS-LATE")
                    .execute())
    assert store.failed_batches == 0
    assert "store writes again" in caplog.text
    assert await http(csms, "GET", "/health/ready") == (
        200, {"status": "ready", "stations_online": 0})

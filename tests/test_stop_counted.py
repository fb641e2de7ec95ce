"""The stop's early write of what is counted (TrafficRecorder.counted_write) and the one-
statement upsert of many hourly rows: the rows add up to what one write would store."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from lite_csms.budget import counters
from lite_csms.budget.meter import PAYLOAD, WS
from lite_csms.budget.names import HTTP_SETUP
from lite_csms.db.models import TrafficCounter
from tests.conftest import start_in_process
from tests.test_before_boot import connect
from tests.test_server import BOOT_16, register

HOUR = datetime(2026, 1, 1, 3, tzinfo=UTC)


@pytest.mark.parametrize("stations", [2, 40])  # 8 and 160 rows: row by row, then one JSON
async def test_hourly_upserts_add_up_either_way(nursery, tmp_path, stations) -> None:
    csms = await start_in_process(nursery, tmp_path)
    ids = [f"UP-{n}-é" for n in range(stations)]
    for sid in ids:
        await register(csms, sid)
    buckets = {(sid, HOUR, f"Act{a}", d, WS): [n + a + 1, a]
               for n, sid in enumerate(ids) for a in range(2) for d in ("in", "out")}
    # A station removed while connected: its counts have nowhere to go, and stop nothing.
    gone = {("GONE-1", HOUR, "Act0", "in", WS): [5, 1]}
    await csms.server.store.run(lambda: counters.add_hourly({**buckets, **gone}))
    await csms.server.store.run(lambda: counters.add_hourly({**gone, **buckets}))
    rows = {(r.station_id, r.action, r.direction): (r.bytes, r.messages)
            for r in TrafficCounter.select().where(TrafficCounter.action.startswith("Act"))}
    assert rows == {(sid, action, d): (2 * amount, 2 * messages)
                    for (sid, _, action, d, _), (amount, messages) in buckets.items()}


@pytest.mark.parametrize("early_fails", [False, True])
async def test_counted_write_and_last_write_add_up(nursery, tmp_path, monkeypatch,
                                                   early_fails) -> None:
    csms = await start_in_process(nursery, tmp_path, traffic_flush_interval=3600)
    await register(csms, "EARLY-1")
    station = await connect(csms, "EARLY-1", "ocpp1.6")
    await station.send([2, "boot-1", "BootNotification", BOOT_16])
    await station.next_message()
    traffic = csms.server.traffic
    if early_fails:
        real = counters.add_hourly

        def fail_once(buckets, **_):
            monkeypatch.setattr(counters, "add_hourly", real)
            raise OSError("disk full")

        monkeypatch.setattr(counters, "add_hourly", fail_once)
    traffic.counted_write()  # the set-up rows, already attributed, queued at once
    await csms.server.store.run(traffic.last_write())
    setup = list(TrafficCounter.select().where(TrafficCounter.station == "EARLY-1",
                                               TrafficCounter.action == HTTP_SETUP))
    assert setup and all(r.bytes > 0 for r in setup)
    # Written once: neither lost with a failed early job nor counted twice.
    assert len({(r.direction, r.layer) for r in setup}) == len(setup)
    boot = (TrafficCounter.select()
            .where(TrafficCounter.station == "EARLY-1",
                   TrafficCounter.action == "BootNotification",
                   TrafficCounter.layer == PAYLOAD, TrafficCounter.direction == "in").get())
    sent = len(json.dumps([2, "boot-1", "BootNotification", BOOT_16]))
    assert (boot.bytes, boot.messages) == (sent, 1)
    await station.stream.aclose()

"""The writer's hand-over (db/writer.py): a submitter learns its job's outcome even when
cancelled while it waits, a full queue holds submitters back without losing a job, close()
commits what was queued and refuses what comes after, and the writer starts a job at once."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest
import trio

from lite_csms.db.database import open_database
from lite_csms.db.models import Station
from lite_csms.db.writer import GIL_SWITCH_INTERVAL, StoreWriter, WriterClosed


@pytest.fixture
def db(tmp_path: Path):
    db = open_database(tmp_path / "s.sqlite3")
    yield db
    db.close()


def _ids(path: str) -> set[str]:
    other = sqlite3.connect(path)
    try:
        return {r[0] for r in other.execute("SELECT id FROM station")}
    finally:
        other.close()


async def test_a_cancelled_submitter_still_waits_for_its_commit(db) -> None:
    writer = StoreWriter(db)
    release = threading.Event()
    outcome: list[object] = []

    def slow() -> str:
        release.wait(5)
        Station.create(id="SLOW")
        return "stored"

    async def submit(scope_box: list[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            scope_box.append(scope)
            outcome.append(await writer.run(slow))
        outcome.append(("cancelled afterwards", scope.cancelled_caught))

    async with trio.open_nursery() as nursery:
        await nursery.start(writer.serve)
        scopes: list[trio.CancelScope] = []
        nursery.start_soon(submit, scopes)
        await trio.testing.wait_all_tasks_blocked()
        scopes[0].cancel()
        await trio.sleep(0.05)
        assert outcome == []  # still waiting: the job is under way
        release.set()
        with trio.fail_after(5):
            while len(outcome) < 2:
                await trio.sleep(0.01)
        writer.close()
    # run() returned its value although the scope was cancelled; the cancellation then
    # took effect at the next checkpoint, after the outcome was known.
    assert outcome[0] == "stored"
    assert "SLOW" in _ids(db.database)


async def test_a_full_queue_holds_submitters_back_and_loses_nothing(db) -> None:
    writer = StoreWriter(db, max_batch=4, queue_size=2)
    done: list[int] = []

    async def submit(i: int) -> None:
        await writer.run(lambda: Station.create(id=f"Q{i}"))
        done.append(i)

    async with trio.open_nursery() as nursery:
        await nursery.start(writer.serve)
        async with trio.open_nursery() as submitters:
            for i in range(40):
                submitters.start_soon(submit, i)
        writer.close()
    assert sorted(done) == list(range(40))
    assert {f"Q{i}" for i in range(40)} <= _ids(db.database)
    assert writer.batches >= 40 / 6  # never more than max_batch + queue_size in flight


async def test_close_commits_what_was_queued_and_refuses_the_rest(db) -> None:
    writer = StoreWriter(db)
    results: dict[str, object] = {}

    async def submit(name: str) -> None:
        try:
            results[name] = await writer.run(lambda: Station.create(id=name).id)
        except WriterClosed as exc:
            results[name] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit, "BEFORE")
        await trio.testing.wait_all_tasks_blocked()
        writer.close()  # before the writer even started: the queued job still commits
        await nursery.start(writer.serve)
        await submit("AFTER")
    assert results["BEFORE"] == "BEFORE" and isinstance(results["AFTER"], WriterClosed)
    assert _ids(db.database) == {"BEFORE"}


async def test_an_idle_writer_starts_at_once_and_restores_the_switch_interval(db) -> None:
    writer = StoreWriter(db)
    before = sys.getswitchinterval()
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.serve)
        assert sys.getswitchinterval() == min(before, GIL_SWITCH_INTERVAL)
        await writer.run(lambda: None)  # the thread is up and idle
        started = time.perf_counter()
        seen: list[float] = []
        await writer.run(lambda: seen.append(time.perf_counter()))
        # No batch window: the job ran as soon as the thread could take it.
        assert seen[0] - started < 0.05
        writer.close()
    assert sys.getswitchinterval() == before


async def test_a_failing_job_alone_in_its_batch_stores_nothing_and_the_next_one_commits(
        db) -> None:
    writer = StoreWriter(db)

    def half_then_fail() -> None:
        Station.create(id="HALF")
        raise ValueError("after its first write")

    async with trio.open_nursery() as nursery:
        await nursery.start(writer.serve)
        with pytest.raises(ValueError, match="after its first write"):
            await writer.run(half_then_fail)
        assert writer.batches == 1
        await writer.run(lambda: Station.create(id="NEXT"))
        writer.close()
    assert writer.batches == 2 and writer.lost_batches == 0
    assert _ids(db.database) == {"NEXT"}

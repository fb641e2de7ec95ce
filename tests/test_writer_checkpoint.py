"""Keeping the WAL checkpoint and the full collections off the answer path (issue 12, p99):
the writer checkpoints between batches, after the answers are on their way and only when no
job waits, SQLite's own checkpoint inside a commit is only a far bound while it serves, and
the server freezes its start-up heap (db/writer.py, net/server.py)."""

from __future__ import annotations

import gc
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import peewee as pw
import pytest
import trio

from lite_csms.db import writer as writer_module
from lite_csms.db.database import PRAGMAS, open_database
from lite_csms.db.models import ALL_MODELS, Station, database_proxy
from lite_csms.db.writer import WRITER_AUTOCHECKPOINT, StoreWriter
from tests.conftest import start_in_process


@pytest.fixture
def db(tmp_path: Path):
    db = open_database(tmp_path / "s.sqlite3")
    yield db
    db.close()


def _wal_generation(path: str) -> int:
    """The WAL header's checkpoint sequence number: SQLite raises it each time it starts
    the WAL over, which it does only after a checkpoint copied every frame."""
    with open(path + "-wal", "rb") as wal:
        return int.from_bytes(wal.read(16)[12:16], "big")


@asynccontextmanager
async def serving(writer: StoreWriter) -> AsyncIterator[None]:
    """The writer serving, closed however the block ends (a failed assertion included:
    its shielded thread would otherwise wait for jobs forever)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.serve)
        try:
            yield
        finally:
            writer.close()


def _autocheckpoint(db) -> int:
    return int(db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0])


async def _create_then_wait(writer: StoreWriter, station_id: str,
                            counter: Callable[[], int]) -> None:
    """Store one station, then wait until `counter` moves: what the writer does after the
    answer (a checkpoint, if no next job is queued by then)."""
    before = counter()
    await writer.run(lambda: Station.create(id=station_id))
    with trio.fail_after(5):
        while counter() == before:
            await trio.sleep(0.001)


async def test_the_writer_checkpoints_between_batches_and_the_wal_starts_over(
        db, monkeypatch) -> None:
    monkeypatch.setattr(writer_module, "CHECKPOINT_INTERVAL", 0.0)
    writer = StoreWriter(db)
    before = _autocheckpoint(db)
    generations = set()
    async with serving(writer):
        # SQLite checkpoints inside a commit only past the far bound while the writer serves.
        assert await writer.run(lambda: _autocheckpoint(db)) == WRITER_AUTOCHECKPOINT
        for n in range(12):
            await _create_then_wait(writer, f"S{n}", lambda: writer.checkpoints)
            generations.add(_wal_generation(db.database))
    assert _autocheckpoint(db) == before
    # Each checkpoint copied the whole WAL, so each next commit started it over.
    assert len(generations) == 12
    with sqlite3.connect(db.database) as other:
        assert other.execute("SELECT count(*) FROM station").fetchone()[0] == 12


async def test_no_checkpoint_while_jobs_wait(
        db, monkeypatch) -> None:
    monkeypatch.setattr(writer_module, "CHECKPOINT_INTERVAL", 0.0)
    writer = StoreWriter(db)
    inside, release = threading.Event(), threading.Event()

    def slow() -> None:
        inside.set()
        release.wait(5)
        Station.create(id="SLOW")

    async with serving(writer):
        async with trio.open_nursery() as submitting:
            submitting.start_soon(writer.run, slow)
            await trio.to_thread.run_sync(inside.wait, 5)
            for n in range(10):
                submitting.start_soon(writer.run, lambda n=n: Station.create(id=f"Q{n}"))
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        # The slow batch ended with ten jobs waiting: no checkpoint then; after the batch of
        # ten, nothing waited.
        with trio.fail_after(5):
            while writer.checkpoints < 1:
                await trio.sleep(0.001)
        assert (writer.batches, writer.checkpoints) == (2, 1)


async def test_no_checkpoint_before_the_interval(db, monkeypatch) -> None:
    monkeypatch.setattr(writer_module, "CHECKPOINT_INTERVAL", 60.0)
    writer = StoreWriter(db)
    async with serving(writer):
        for n in range(5):
            await writer.run(lambda n=n: Station.create(id=f"S{n}"))
    assert (writer.batches, writer.checkpoints) == (5, 0)


async def test_an_answer_does_not_wait_for_the_checkpoint(db, monkeypatch) -> None:
    monkeypatch.setattr(writer_module, "CHECKPOINT_INTERVAL", 0.0)
    hold, done = threading.Event(), threading.Event()
    real = StoreWriter._checkpoint_if_due

    def held_checkpoint(self: StoreWriter) -> None:
        hold.wait(10)  # a checkpoint on a very slow disk
        real(self)
        done.set()

    monkeypatch.setattr(StoreWriter, "_checkpoint_if_due", held_checkpoint)
    writer = StoreWriter(db)
    async with serving(writer):
        await writer.run(lambda: Station.create(id="FIRST"))
        # Answered while its checkpoint is still held.
        assert not done.is_set()
        hold.set()
        await trio.to_thread.run_sync(done.wait, 10)
    assert writer.checkpoints == 1


async def test_an_in_memory_database_has_nothing_to_checkpoint() -> None:
    db = pw.SqliteDatabase(":memory:", check_same_thread=False, thread_safe=False)
    db.connect()
    previous = database_proxy.obj
    database_proxy.initialize(db)
    try:
        db.create_tables(ALL_MODELS)
        writer = StoreWriter(db)
        async with serving(writer):
            await writer.run(lambda: Station.create(id="MEM"))
            assert writer.checkpoints == 0
        assert Station.select().count() == 1
    finally:
        database_proxy.initialize(previous)
        db.close()


async def test_the_start_up_heap_is_frozen_while_the_server_serves(tmp_path: Path) -> None:
    before = gc.get_freeze_count()
    async with trio.open_nursery() as nursery:
        csms = await start_in_process(nursery, tmp_path)
        assert gc.get_freeze_count() > before + 1000
        # What is made afterwards is still collected: a cycle dropped now is freed by a
        # collection.

        class Cycle:
            me: object = None

        one = Cycle()
        one.me = one
        gone = threading.Event()
        weakref.finalize(one, gone.set)
        del one
        gc.collect()
        assert gone.is_set()
        csms.server.stop()
    # A server run in process gives its frozen objects back to the collector at its end.
    assert gc.get_freeze_count() == before


class _FailingCheckpoints:
    """The writer's connection, except that a checkpoint fails as on a broken disk."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self._real = real
        self.attempts = 0

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql.startswith("PRAGMA wal_checkpoint"):
            self.attempts += 1
            raise sqlite3.OperationalError("disk I/O error")
        return self._real.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


async def test_failing_checkpoints_give_one_log_line_and_commits_go_on(
        db, monkeypatch, caplog) -> None:
    monkeypatch.setattr(writer_module, "CHECKPOINT_INTERVAL", 0.0)
    failing = _FailingCheckpoints(db.connection())
    monkeypatch.setattr(db, "connection", lambda: failing)
    writer = StoreWriter(db)
    async with serving(writer):
        for n in range(3):
            await _create_then_wait(writer, f"S{n}", lambda: failing.attempts)
    assert failing.attempts >= 3 and writer.checkpoints == 0
    lines = [r for r in caplog.records if "WAL checkpoint failed" in r.getMessage()]
    assert len(lines) == 1 and "disk I/O error" in lines[0].getMessage()
    with sqlite3.connect(db.database) as other:
        assert other.execute("SELECT count(*) FROM station").fetchone()[0] == 3


async def test_a_wal_grown_behind_a_long_read_shrinks_once_the_read_ends(db, monkeypatch) -> None:
    # An operator's read held the WAL: it grew past the limit, and must not keep that size.
    monkeypatch.setattr(writer_module, "CHECKPOINT_INTERVAL", 0.0)
    db.execute_sql("CREATE TABLE filler (data BLOB)")
    reader = sqlite3.connect(db.database)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM station").fetchone()
    writer = StoreWriter(db)
    blob, limit = b"x" * (1 << 20), 4 << 20

    def smaller_limit() -> int:
        # The writer's connection (the one that commits) has the store's limit; a smaller
        # one here keeps the test short.
        found = int(db.execute_sql("PRAGMA journal_size_limit").fetchone()[0])
        db.execute_sql(f"PRAGMA journal_size_limit = {limit}")
        return found

    async with serving(writer):
        assert await writer.run(smaller_limit) == PRAGMAS["journal_size_limit"] > 0
        for _ in range(limit // len(blob) + 4):
            await writer.run(lambda: db.execute_sql("INSERT INTO filler VALUES (?)", (blob,)))
        assert Path(db.database + "-wal").stat().st_size > limit
        reader.rollback()
        reader.close()
        for n in range(2):  # a checkpoint copies everything; the next commit starts over
            await _create_then_wait(writer, f"W{n}", lambda: writer.checkpoints)
        await writer.run(lambda: Station.create(id="W-last"))
        assert Path(db.database + "-wal").stat().st_size <= limit

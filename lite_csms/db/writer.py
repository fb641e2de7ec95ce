"""The one writer to SQLite, with group commit.

Handlers submit short synchronous jobs. The writer's own thread takes whatever is queued,
runs the batch in one IMMEDIATE transaction (each job in its own savepoint, so one failing job
does not undo the others), commits once, and only then wakes each submitter. A station's
handler therefore answers only after its own data is durable, while fifty stations share a
single fsync.

The hand-over is as cheap as it can be, since every durable message pays it: a job goes into
a thread-safe queue the thread blocks on (an idle writer starts at once, no batch window),
the submitting task sleeps without a cancel scope or an event, and one call into trio per
batch wakes every submitter of that batch (docs/PERFORMANCE.md).

The WAL is checkpointed by the writer's thread between batches, once their answers are on
their way and no job is waiting, not by SQLite inside a COMMIT: there the answers of that
batch, and every job queued behind it, waited for the checkpoint's copying and its fsyncs,
the slowest commits of a steady load. SQLite's own checkpoint stays as a bound for a writer
that is never idle (WRITER_AUTOCHECKPOINT). Durability is the same: a commit is durable once
its WAL frames are synced, and the checkpoint syncs the database file before the WAL is
reused (synchronous=FULL).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import peewee as pw
import trio

log = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds a thread waiting for the GIL waits before it asks the holder to let go (Python's
# default is 0.005), while the writer serves.
GIL_SWITCH_INTERVAL = 0.0005

# Seconds between the writer's own checkpoints while commits come in: each copies whatever
# was committed since the last (at 500 status reports a second about 3,200 WAL pages), and
# none is made while nothing is written. A job that arrives during a checkpoint waits for
# it, and its cost is mostly the database file's fsync, not the pages: at 0.5 s (10 in a
# 5-s run at 500/s, 2-14 ms each) 0.8-1.4 % of the calls waited for one, the size of the
# p99; at 2 s, 0.3-0.6 % (docs/PERFORMANCE.md, "The tail at 500/s").
CHECKPOINT_INTERVAL = 2.0
# WAL pages (4 KiB each) past which SQLite checkpoints inside a commit after all: only a
# writer with jobs waiting after every batch for that long gets there (SQLite's default,
# in force before, is 1,000 pages).
WRITER_AUTOCHECKPOINT = 10_000


@dataclass(slots=True)
class _Job(Generic[T]):
    work: Callable[[], T]
    task: trio.lowlevel.Task | None = None
    value: Any = None
    error: BaseException | None = None


# A job queued with StoreWriter.submit.
Submitted = _Job


class WriterClosed(RuntimeError):
    pass


def _cannot_abort(_: object) -> trio.lowlevel.Abort:
    # The commit happens regardless, and the submitter must learn its outcome before
    # deciding anything else about the data: a shield, without a cancel scope per job.
    return trio.lowlevel.Abort.FAILED


class StoreWriter:
    def __init__(
        self, db: pw.SqliteDatabase, *, max_batch: int = 256, queue_size: int = 1024
    ) -> None:
        self._db = db
        self._max_batch = max_batch
        # Submitted and not yet answered, the batch being committed included; past the limit
        # a submitter waits for room, as on a full channel.
        self._limit = queue_size + max_batch
        self._in_flight = 0
        self._room = trio.lowlevel.ParkingLot()
        # None is the writer thread's signal to stop, once everything before it is committed.
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._closed = False
        self._token: trio.lowlevel.TrioToken | None = None
        # Set once the writer's thread has stopped: wait_stopped().
        self._stopped = threading.Event()
        self.batches = 0
        self.jobs = 0
        # Group commits lost in a row, and the cause of the last: the writer is back only
        # once a commit that wrote something is stored. A batch that wrote nothing (a
        # read, a readiness probe) commits even on a full disk and proves nothing.
        self.failed_batches = 0
        self.failure: str | None = None
        self.lost_batches = 0
        # Told each group commit's duration in seconds (BEGIN to COMMIT, its jobs and fsync
        # included) and whether it was stored; called on the writer's thread.
        self.on_commit: Callable[[float, bool], None] | None = None
        # The WAL checkpoints between batches (not for an in-memory database): stored commits
        # since the last, and when the next may run (time.monotonic()).
        self._checkpointing = False
        self._checkpoint_failing = False
        self._commits_since_checkpoint = 0
        self._next_checkpoint = 0.0
        self.checkpoints = 0

    @property
    def queued(self) -> int:
        """Jobs waiting for the next group commit."""
        return self._jobs.qsize()

    async def run(self, work: Callable[[], T]) -> T:
        """Run `work` inside the next group commit; return once that commit is durable.

        Raises WriterClosed after close(), and Cancelled only before the job is queued."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._in_flight >= self._limit and not self._closed:
            await self._room.park()
        if self._closed:
            raise WriterClosed("the store writer has stopped")
        job: _Job[T] = _Job(work, trio.lowlevel.current_task())
        self._in_flight += 1
        self._jobs.put(job)
        await trio.lowlevel.wait_task_rescheduled(_cannot_abort)
        if job.error is not None:
            raise job.error
        return job.value

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit batches until `close()`; cancellation alone does not stop it.

        Shielded because connections write their last state (offline, last seen) while the
        server shuts down; a writer cancelled first would leave them waiting forever.
        """
        self._token = trio.lowlevel.current_trio_token()
        # The writer's thread gives up the GIL for every SQLite call (the fsync included) and
        # must win it back from a busy trio thread each time: Python's default lets it wait
        # up to 5 ms per call, which an answer waiting for its commit then waits too.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, GIL_SWITCH_INTERVAL))
        # No job runs yet: the connection is this thread's until the writer's starts.
        automatic = self._take_over_checkpoints()
        task_status.started()
        try:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._commit_until_closed,
                                              thread_name="lite-csms store writer")
        finally:
            sys.setswitchinterval(interval)
            if automatic is not None:
                self._checkpointing = False
                self._pragma(f"wal_autocheckpoint = {automatic}")

    def _take_over_checkpoints(self) -> int | None:
        """Checkpoint between batches from now on; SQLite's automatic checkpoint only as a
        bound. Returns the connection's setting to restore, or None (in-memory, or the
        connection cannot say)."""
        if not _is_file(self._db):
            return None
        row = self._pragma("wal_autocheckpoint")
        if not row or self._pragma(f"wal_autocheckpoint = {WRITER_AUTOCHECKPOINT}") is None:
            return None
        self._checkpointing = True
        self._next_checkpoint = time.monotonic() + CHECKPOINT_INTERVAL
        return int(row[0])

    def _pragma(self, text: str) -> tuple[Any, ...] | None:
        try:
            return self._db.execute_sql(f"PRAGMA {text}").fetchone() or ()
        except (pw.InterfaceError, pw.DatabaseError, sqlite3.Error) as exc:
            log.warning("PRAGMA %s failed: %s", text, exc)
            return None

    def _checkpoint_if_due(self) -> None:
        """On the writer's thread, between batches: a PASSIVE checkpoint of the WAL when
        commits came in since the last one, CHECKPOINT_INTERVAL has passed and no job waits.
        With no other writer it copies everything, so SQLite starts the WAL over at the next
        commit and the file stays the size it was."""
        if (not self._checkpointing or not self._commits_since_checkpoint
                or not self._jobs.empty() or time.monotonic() < self._next_checkpoint):
            return
        try:
            self._db.connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            # SQLite's automatic checkpoint still bounds the WAL; the next one retries. One
            # line per run of failures, not one per half second.
            if not self._checkpoint_failing:
                log.warning("WAL checkpoint failed: %s", describe(exc))
            self._checkpoint_failing = True
        else:
            if self._checkpoint_failing:
                log.info("WAL checkpoints work again")
            self._checkpoint_failing = False
            self.checkpoints += 1
        self._commits_since_checkpoint = 0
        self._next_checkpoint = time.monotonic() + CHECKPOINT_INTERVAL

    def submit(self, work: Callable[[], object]) -> Submitted:
        """Queue `work` for the next group commit without waiting for it: the server's last
        writes at a stop, made durable by close() and wait_stopped(). No task learns its
        outcome: `work` logs its own errors (a lost commit counts in lost_batches). The
        returned job's `error` is set, on the writer's thread, once its batch is over, if
        it raised or its commit was lost: a job queued after it can read it then."""
        if self._closed:
            raise WriterClosed("the store writer has stopped")
        self._in_flight += 1
        job: _Job[object] = _Job(work)
        self._jobs.put(job)
        return job

    def wait_stopped(self, timeout: float) -> bool:
        """After close(): block the calling thread, and the trio loop with it, until every
        job queued before close() is committed (or lost) and the writer's thread has
        stopped; False if `timeout` seconds passed first. For the server's very last step
        only: nothing else runs meanwhile, so the writer's thread never waits for the GIL
        (it gives the GIL up at every row it writes, and a busy trio thread made it wait
        up to GIL_SWITCH_INTERVAL each time)."""
        return self._stopped.wait(timeout)

    def _commit_until_closed(self) -> None:
        """The writer's thread: one batch per turn, everything queued up to max_batch."""
        try:
            self._commit_batches()
        finally:
            self._stopped.set()

    def _commit_batches(self) -> None:
        jobs = self._jobs
        while True:
            first = jobs.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            try:
                self._commit_batch(batch)
            except BaseException as exc:
                for job in batch:
                    if job.error is None:
                        job.error = RuntimeError(f"the store writer failed: {exc!r}")
                        job.value = None
                raise
            finally:
                assert self._token is not None
                self._token.run_sync_soon(self._deliver, batch)
            if stop:
                return
            # Not kept until the next batch: a job's closure may hold much (a traffic
            # flush holds every station's rows).
            first = job = batch = None  # type: ignore[assignment]
            self._checkpoint_if_due()

    def _deliver(self, batch: list[_Job[Any]]) -> None:
        """In trio: wake every submitter of a committed (or lost) batch."""
        self._in_flight -= len(batch)
        for job in batch:
            if job.task is not None:
                trio.lowlevel.reschedule(job.task)
        if self._room:
            self._room.unpark(count=len(batch))

    def close(self) -> None:
        """No new jobs; the writer's thread stops once those queued are committed."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        self._room.unpark_all()

    def _commit_batch(self, batch: list[_Job[Any]]) -> None:
        self.batches += 1
        self.jobs += len(batch)
        started = time.perf_counter()
        changes = self._changes()
        lost = self._run_batch(batch)
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - started, lost is None)
        if lost is None:
            wrote = self._changes() > changes
            # A batch of reads leaves the WAL as it was: nothing to checkpoint after it.
            if wrote:
                self._commits_since_checkpoint += 1
            if self.failed_batches and wrote:
                log.warning("store writes again after %d failed group commits",
                            self.failed_batches)
                self.failed_batches = 0
                self.failure = None
            return
        self.failed_batches += 1
        self.failure = describe(lost)
        self.lost_batches += 1
        self._roll_back_quietly()
        # A job that ran before the loss got no error of its own, yet its writes are gone too.
        for job in batch:
            if job.error is None:
                job.error = BatchLost(lost)
                job.value = None
        log.error("group commit of %d jobs failed, nothing of it stored: %s", len(batch),
                  describe(lost))

    def _run_batch(self, batch: list[_Job[Any]]) -> BaseException | None:
        """Run the jobs in one IMMEDIATE transaction; the error that lost it, or None.

        Raw statements rather than peewee's context managers: after SQLITE_FULL or an I/O error
        SQLite may already have rolled the whole transaction back, and peewee's own ROLLBACK
        then fails with "no transaction is active", hiding the cause. A job that runs after
        such a rollback would run in autocommit mode and store its data outside the batch.
        """
        db = self._db
        try:
            db.execute_sql("BEGIN IMMEDIATE")
        except Exception as exc:
            return exc
        # Handlers that open db.atomic() themselves nest as savepoints inside the batch.
        db.push_transaction(_BatchMarker())
        try:
            # The savepoints go straight to sqlite3: through peewee each cost more than a
            # status report's own statements.
            conn = db.connection()
            # A job alone in its batch needs no savepoint (the commonest batch at moderate
            # load): if it fails, the whole transaction is rolled back instead.
            alone = len(batch) == 1
            for job in batch:
                if not alone:
                    conn.execute('SAVEPOINT "job"')
                try:
                    job.value = job.work()
                except Exception as exc:
                    job.error = exc
                    if not conn.in_transaction:
                        return exc
                    if alone:
                        conn.execute("ROLLBACK")
                        return None
                    conn.execute('ROLLBACK TO SAVEPOINT "job"')
                if not alone:
                    conn.execute('RELEASE SAVEPOINT "job"')
            db.execute_sql("COMMIT")
        except Exception as exc:
            return exc
        finally:
            db.pop_transaction()
        return None

    def _changes(self) -> int:
        """Rows changed on the writer's connection since it opened (sqlite3_total_changes)."""
        try:
            return int(self._db.connection().total_changes)
        except Exception:  # the connection cannot open: the batch will say why
            return 0

    def _in_transaction(self) -> bool:
        return bool(self._db.connection().in_transaction)

    def _roll_back_quietly(self) -> None:
        if not self._in_transaction():
            return  # SQLite rolled back by itself (SQLITE_FULL, SQLITE_IOERR, ...)
        try:
            self._db.execute_sql("ROLLBACK")
        except Exception as exc:  # the connection is unusable; the cause is logged already
            log.error("rollback after a failed group commit failed: %s", exc)


class _BatchMarker(pw._transaction):  # type: ignore[misc]
    """Stands on peewee's transaction stack while a batch runs: a nested db.atomic() in a job
    becomes a savepoint rather than a second BEGIN."""

    def __init__(self) -> None:  # no database needed: it is never entered or left
        pass


class BatchLost(RuntimeError):
    """The job ran (or would have) in a group commit that was not stored."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the group commit was not stored: {describe(cause)}")
        self.cause = cause


def _is_file(db: pw.SqliteDatabase) -> bool:
    """Whether the database is a file (an in-memory one has no WAL to checkpoint)."""
    name = str(db.database or "")
    return name not in ("", ":memory:") and "mode=memory" not in name \
        and not name.startswith("file::memory:")


def describe(exc: BaseException) -> str:
    """SQLite's own words for the root cause ("database or disk is full", "disk I/O error")."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        inner = exc.__cause__ or exc.__context__
        assert inner is not None
        if not isinstance(inner, sqlite3.Error | pw.DatabaseError):
            break
        exc = inner
    return str(exc) or type(exc).__name__

"""The one writer to SQLite, with group commit.

Handlers submit short synchronous jobs. The writer drains whatever is queued, runs the batch in
one IMMEDIATE transaction on a worker thread (each job in its own savepoint, so one failing job
does not undo the others), commits once, and only then wakes each submitter. A station's
handler therefore answers only after its own data is durable, while fifty stations share a
single fsync.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import peewee as pw
import trio

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(slots=True)
class _Job(Generic[T]):
    work: Callable[[], T]
    done: trio.Event = field(default_factory=trio.Event)
    value: Any = None
    error: BaseException | None = None


class WriterClosed(RuntimeError):
    pass


class StoreWriter:
    def __init__(
        self, db: pw.SqliteDatabase, *, max_batch: int = 256, queue_size: int = 1024
    ) -> None:
        self._db = db
        self._max_batch = max_batch
        self._send, self._receive = trio.open_memory_channel[_Job[Any]](queue_size)
        self._thread_limiter = trio.CapacityLimiter(1)
        self.batches = 0
        self.jobs = 0

    async def run(self, work: Callable[[], T]) -> T:
        """Run `work` inside the next group commit; return once that commit is durable."""
        job: _Job[T] = _Job(work)
        try:
            await self._send.send(job)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise WriterClosed("the store writer has stopped") from None
        # Shielded: the commit happens regardless, and the caller must learn its outcome
        # before deciding anything else about the data.
        with trio.CancelScope(shield=True):
            await job.done.wait()
        if job.error is not None:
            raise job.error
        return job.value

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit batches until `close()`; cancellation alone does not stop it.

        Shielded because connections write their last state (offline, last seen) while the
        server shuts down; a writer cancelled first would leave them waiting forever.
        """
        task_status.started()
        with trio.CancelScope(shield=True):
            await self._commit_until_closed()

    async def _commit_until_closed(self) -> None:
        async with self._receive:
            async for first in self._receive:
                batch = [first]
                while len(batch) < self._max_batch:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                await trio.to_thread.run_sync(
                    self._commit_batch, batch, limiter=self._thread_limiter
                )
                for job in batch:
                    job.done.set()

    def close(self) -> None:
        self._send.close()

    def _commit_batch(self, batch: list[_Job[Any]]) -> None:
        self.batches += 1
        self.jobs += len(batch)
        try:
            with self._db.atomic("IMMEDIATE"):
                for job in batch:
                    try:
                        with self._db.atomic():
                            job.value = job.work()
                    except Exception as exc:
                        job.error = exc
        except Exception as exc:
            log.error("group commit of %d jobs failed: %s", len(batch), exc)
            for job in batch:
                job.error = job.error or exc

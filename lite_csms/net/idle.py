"""Idle stations' readers parked on an epoll set of the server's own, watched by one task.

An idle station's reader waits for its socket to become readable. trio's `wait_readable`
parks it four coroutines deep, with a closure and a registration record: about 1.7 KB for
every idle station, made again after every message it reads. Here a parked reader is one
coroutine of trio's (`wait_task_rescheduled`), a `partial` and a dict entry (about 0.6 KB),
and one task of the server's takes the events of every idle socket from a second epoll set,
which is itself one descriptor in trio's (docs/PERFORMANCE.md, "Memory per station").

Registrations are one-shot: an event disarms the socket in the set until its reader parks
again, and parking re-arms it (one `epoll_ctl`, as trio's own wait costs). A closed socket
leaves the set by itself (the kernel's rule for a descriptor closed everywhere). Linux only,
like the epoll set trio uses here; elsewhere `wait_readable` is trio's.
"""

from __future__ import annotations

import contextlib
import select
from functools import partial

import trio

# EPOLLHUP and EPOLLERR are reported without asking: a reset or an end wakes the reader too.
_ARMED = getattr(select, "EPOLLIN", 0) | getattr(select, "EPOLLONESHOT", 0)


class IdleWatch:
    """`run()` in a nursery that outlives every connection; `wait_readable(fd)` from a reader.

    While `run()` is not running (before it starts, after it ends), `wait_readable` is
    trio's. When it ends, the readers still parked are woken: each reads, finds nothing,
    and waits again the usual way.
    """

    def __init__(self) -> None:
        self._epoll: select.epoll | None = None
        self._parked: dict[int, trio.lowlevel.Task] = {}
        self._scope: trio.CancelScope | None = None
        # While held (the server's fast exit): the descriptors of parked readers that had an
        # event, not woken.
        self._held: set[int] | None = None
        # How many times the set was polled: events come in batches, never in a spin.
        self.polls = 0

    @property
    def parked(self) -> int:
        """How many readers are parked here now."""
        return len(self._parked)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Wake the readers whose sockets have events, until stop() or cancellation."""
        if not hasattr(select, "epoll"):
            task_status.started()
            return
        epoll = select.epoll()
        self._epoll = epoll
        try:
            with trio.CancelScope() as self._scope:
                task_status.started()
                while True:
                    await trio.lowlevel.wait_readable(epoll.fileno())
                    held = self._held
                    self.polls += 1
                    for fd, _events in epoll.poll(0):
                        if held is not None and fd in self._parked:
                            held.add(fd)
                            continue
                        task = self._parked.pop(fd, None)
                        if task is not None:
                            trio.lowlevel.reschedule(task)
        finally:
            self._epoll = None
            parked, self._parked = self._parked, {}
            for task in parked.values():
                trio.lowlevel.reschedule(task)
            epoll.close()

    def hold(self) -> None:
        """From now on a parked reader whose socket has an event stays parked, its descriptor
        noted in `ready`: the server's fast exit ends those connections in the books without
        running their tasks (10,000 wakes cost about 0.3 s of CPU). release() wakes them."""
        if self._held is None:
            self._held = set()

    @property
    def ready(self) -> set[int] | frozenset[int]:
        """The descriptors of the readers held with an event (hold())."""
        return self._held if self._held is not None else frozenset()

    def release(self) -> None:
        """Wake the readers held with an event, and wake readers again from now on."""
        held, self._held = self._held, None
        for fd in held or ():
            if (task := self._parked.pop(fd, None)) is not None:
                trio.lowlevel.reschedule(task)

    def stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def wait_readable(self, fd: int) -> None:
        """Return once `fd` is readable (data, the peer's FIN, a reset), like trio's
        `wait_readable`; a cancellation point. One reader per descriptor."""
        epoll = self._epoll
        if epoll is None:
            await trio.lowlevel.wait_readable(fd)
            return
        if fd in self._parked:
            raise trio.BusyResourceError("another task is already reading this socket")
        try:
            epoll.modify(fd, _ARMED)
        except FileNotFoundError:  # ENOENT: not in the set yet, or taken out by _abort
            epoll.register(fd, _ARMED)
        self._parked[fd] = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(partial(self._abort, fd))

    def _abort(self, fd: int, _raise_cancel: object) -> trio.lowlevel.Abort:
        # Out of the set, so that a late event finds no reader to wake. Not merely an empty
        # mask: the kernel reports a hang-up or an error whatever the mask, and without
        # the one-shot flag it would report it at every poll while the descriptor stays
        # open (a closing connection's linger), the watch spinning. A closed descriptor has
        # left the set already.
        if self._parked.pop(fd, None) is not None and self._epoll is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)
        return trio.lowlevel.Abort.SUCCEEDED

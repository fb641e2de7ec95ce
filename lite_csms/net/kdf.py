"""Password checks during a reconnect storm: a cache that spares the KDF, and a queue that sheds.

A station's password check costs a scrypt run (~40 ms, 16 MiB). After a cell outage every
station reconnects at once with the password it used a minute ago, so a process remembers
which (station, password) pairs it verified, against which stored hash (docs/SECURITY.md).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import trio

from lite_csms import passwords

T = TypeVar("T")

# Entries are ~200 B each: 50,000 stations cost ~10 MB.
CACHE_ENTRIES = 50_000
# A queued check gives up this long before its handshake's deadline, to answer 503 in time.
ANSWER_MARGIN = 0.5
# A credential not presented again within a day is checked again with the KDF.
CACHE_TTL = 24 * 3600.0


class CredentialCache:
    """(station id, password) pairs verified by this process, keyed by HMAC-SHA256 under a
    random per-process key, so the cache holds no password and its keys are no offline oracle.

    An entry remembers the stored hash it was verified against; once the password is changed
    (CLI `station set-password`), the stored hash differs and the entry misses.
    """

    def __init__(self, entries: int = CACHE_ENTRIES, ttl: float = CACHE_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._max = entries
        self._ttl = ttl
        self._clock = clock
        self.hits = 0

    def _tag(self, station_id: str, password: str) -> bytes:
        # The station id has no NUL (it is printable), so the pair is unambiguous.
        message = station_id.encode() + b"\0" + password.encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def knows(self, station_id: str, password: str) -> bool:
        """Whether this pair was verified lately, against whatever hash: a hint, no proof."""
        return self._tag(station_id, password) in self._entries

    def verified(self, station_id: str, password: str, stored_hash: str) -> bool:
        """True if this pair was verified against exactly `stored_hash` within the TTL."""
        tag = self._tag(station_id, password)
        entry = self._entries.get(tag)
        if entry is None:
            return False
        hashed, at = entry
        if self._clock() - at > self._ttl or not hmac.compare_digest(hashed, stored_hash):
            del self._entries[tag]
            return False
        self._entries.move_to_end(tag)
        self.hits += 1
        return True

    def remember(self, station_id: str, password: str, stored_hash: str) -> None:
        tag = self._tag(station_id, password)
        self._entries[tag] = (stored_hash, self._clock())
        self._entries.move_to_end(tag)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class Overloaded(Exception):
    """The KDF queue is too long for this handshake to be served before its deadline."""

    def __init__(self, wait: float, come_back: float | None = None) -> None:
        super().__init__(f"password checks are queued for ~{wait:.1f} s")
        self.wait = wait
        self.come_back = wait if come_back is None else come_back

    @property
    def retry_after(self) -> int:
        """Whole seconds until the slot KdfQueue.book kept for this client (RFC 9110 10.2.3)."""
        return max(1, math.ceil(self.come_back))


class Refused(Exception):
    """The gate said no when the check's turn came: the caller must wait `wait` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"refused for {wait:.1f} s")
        self.wait = wait


# Asked on the trio thread when a check's turn comes: seconds to wait, or None to go ahead.
Gate = Callable[[], "float | None"]


class KdfQueue:
    """Runs KDF work in threads, `at_once` at a time, and refuses work it cannot finish in time.

    The estimate is (checks ahead / at_once + 1) * the measured KDF time (a moving average;
    50 ms until the first check is measured). Work whose estimate exceeds the caller's
    remaining deadline (its handshake's) raises Overloaded before any KDF runs.
    """

    def __init__(self, at_once: int, seed: float = 0.05) -> None:
        self.limiter = trio.CapacityLimiter(at_once)
        self.seconds = seed
        self.runs = 0
        # Until when the KDF's time is promised to clients told to come back (trio clock).
        self._booked_until = 0.0

    def book(self, wait: float) -> float:
        """Seconds until a refused client should come back: the first time after `wait` that
        no earlier refused client was promised. Each promise takes one check's share of the
        KDF, so a storm's refused clients return spread over the time the KDF needs for
        them, rather than all after the same few seconds to be refused again (each refusal
        costs a handshake). A little jitter keeps a second's arrivals apart."""
        now = trio.current_time()
        start = max(now + wait, self._booked_until)
        self._booked_until = start + self.seconds / self.limiter.total_tokens
        return start - now + random.uniform(0, 0.5)

    def estimate(self) -> float:
        stats = self.limiter.statistics()
        ahead = stats.tasks_waiting + stats.borrowed_tokens
        return (ahead / stats.total_tokens + 1) * self.seconds

    async def run(self, fn: Callable[..., T], *args: object, gate: Gate | None = None) -> T:
        """`fn(*args)` in a worker thread. Raises Overloaded when the wait would outlast the
        current deadline (checked on arrival, and ANSWER_MARGIN before the deadline while
        queued, leaving time to answer 503), and Refused when `gate` refuses once the turn
        comes (a guesser blocked while it queued). A cancelled caller (peer gone) leaves the
        queue at once; a check already running is finished, at most one KDF time."""
        deadline = trio.current_effective_deadline()
        wait = self.estimate()
        if trio.current_time() + wait > deadline:
            raise Overloaded(wait, self.book(wait))
        acquired = False
        with trio.move_on_at(deadline - ANSWER_MARGIN):
            await self.limiter.acquire()
            acquired = True
        if not acquired:
            wait = self.estimate()
            raise Overloaded(wait, self.book(wait))
        try:
            # Not abandoned on cancel: the slot stays taken exactly while a KDF runs.
            value, elapsed = await trio.to_thread.run_sync(_timed, gate, fn, *args)
        finally:
            self.limiter.release()
        # The first measurement replaces the seed; later ones move the average.
        self.seconds = elapsed if self.runs == 0 else 0.7 * self.seconds + 0.3 * elapsed
        self.runs += 1
        return value


def _timed(gate: Gate | None, fn: Callable[..., T], *args: object) -> tuple[T, float]:
    if gate is not None and (wait := trio.from_thread.run_sync(gate)) is not None:
        raise Refused(wait)
    started = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - started


async def verify(queue: KdfQueue, password: str, stored_hash: str,
                 gate: Gate | None = None) -> bool:
    # Looked up at call time, so tests can count the checks that really run.
    return await queue.run(lambda: passwords.verify(password, stored_hash), gate=gate)

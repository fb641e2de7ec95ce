"""Connection caps, and the descriptor limit under them (docs/SECURITY.md, "Limits").

Every connection is counted from accept() until its descriptor is closed, by source (an IPv4
address or an IPv6 /64, as the guess throttle keys them), and while its handshake runs. One
over a cap is refused before its HTTP request is read: a raw `503 Service Unavailable` with
Retry-After, our FIN, and the descriptor closed. Connections already admitted are never
touched. A station is counted as connected, all and by source, from the moment its
authenticated handshake is let past the caps on connected stations (connect()) until it is
replaced or closed.
"""

from __future__ import annotations

import logging
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("lite_csms.net")

# Descriptors kept for everything that is not a station connection: stdio, the SQLite file,
# its WAL and shared memory, the log, the admin port and its clients, trio's wake-up pipe,
# the epoll descriptor, the spare descriptor of the accept loop, imports at run time.
DESCRIPTOR_RESERVE = 64
# Refusals whose 503 is still being written at once; beyond this a refusal is a bare close,
# so a flood cannot pin descriptors in polite refusals.
POLITE_REFUSALS = 32
# How long a refused peer has to take the 503 before the descriptor is closed anyway.
REFUSAL_LINGER = 0.5
# Retry-After of a refused connection: this, plus up to as much again of jitter, so that the
# refused part of a storm does not come back all at once.
RETRY_AFTER = 5
# At most one refusal line per this many seconds; the others are summed into it.
LOG_EVERY = 10.0
NR_OPEN = "/proc/sys/fs/nr_open"


def raise_descriptor_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit, as servers do; returns (before, after).

    An unlimited hard limit is taken as the kernel's fs.nr_open. Never raises: a limit that
    cannot be changed stays as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:
        try:
            with open(NR_OPEN) as fh:
                target = int(fh.read())
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            return soft, soft
        return soft, target
    return soft, soft


def effective_cap(max_connections: int, descriptors: int) -> int:
    """Station connections allowed at once: `max_connections` (0 = no cap of its own), but
    never closer than DESCRIPTOR_RESERVE to the descriptor limit; at least 1."""
    room = max(1, descriptors - DESCRIPTOR_RESERVE)
    return room if max_connections <= 0 else max(1, min(max_connections, room))


class RateLimitedLog:
    """One warning for the first event, then at most one per `every` s with the count since."""

    def __init__(self, every: float = LOG_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._last = -float("inf")
        self._missed = 0

    def warn(self, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._last < self._every:
            self._missed += 1
            return
        if self._missed:
            message += " (and %d more like it in the last %.0f s)"
            args = (*args, self._missed, now - self._last)
        self._last, self._missed = now, 0
        log.warning(message, *args)


@dataclass(frozen=True, slots=True)
class Caps:
    """`connections`: stations connected at once (past their password check); `handshakes`:
    in progress at once (0 = no cap); `per_source`: stations connected from one source (0 = no
    cap); `handshakes_per_source`: handshakes from one source at once (0 = no cap of its own),
    never more than half of `handshakes`; `descriptors`: connections of any kind at once, the
    bound that keeps the descriptor limit out of reach (None = connections + handshakes)."""
    connections: int
    handshakes: int
    per_source: int
    descriptors: int | None = None
    handshakes_per_source: int = 0

    @property
    def total(self) -> int:
        if self.descriptors is not None:
            return self.descriptors
        return self.connections + (self.handshakes or self.connections)

    @property
    def source_handshakes(self) -> int:
        """A source's share of the handshakes (0 = no cap): half of them at most, so one
        address, idle sockets alone, can never hold every slot a new station needs."""
        shares = [n for n in (self.handshakes_per_source,
                              self.handshakes and max(1, self.handshakes // 2)) if n]
        return min(shares, default=0)


@dataclass(slots=True)
class Slot:
    """One admitted connection's place in the counts: its source, whether its handshake is
    still counted, and whether it is counted as a connected station."""
    source: str
    handshaking: bool = True
    connected: bool = False


class ConnectionLimits:
    """Counts of open connections, by source, in handshake and connected; refusal() decides at
    accept(), connect() once the station is authenticated."""

    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self.open = 0
        self.handshaking = 0
        self.connected = 0
        self.refusing = 0
        self.refused = 0
        self.by_source: dict[str, int] = {}
        self.handshakes_by_source: dict[str, int] = {}
        self.connected_by_source: dict[str, int] = {}
        self.log = RateLimitedLog()

    def refusal(self, source: str) -> str | None:
        """Why a new connection from `source` must be refused, or None to admit it."""
        caps = self.caps
        # The caps on connected stations (all, and per source) are applied after the password
        # check (connect), where it is known whether the station replaces a connection of its
        # own: after a cell outage every station's old connection is still open, and a cap
        # applied here would keep the whole cell out until they time out. Here only sums are
        # bounded: of everything, and of a source's stations and its share of handshakes.
        if self.open >= caps.total:
            return f"{self.open} connections open, the cap is {caps.total}"
        if caps.handshakes and self.handshaking >= caps.handshakes:
            return f"{self.handshaking} handshakes running, the cap is {caps.handshakes}"
        share = caps.source_handshakes
        running = self.handshakes_by_source.get(source, 0)
        if share and running >= share:
            return f"{running} handshakes from {source}, its share is {share}"
        held = self.by_source.get(source, 0)
        if caps.per_source and held >= caps.per_source + (share or caps.per_source):
            return (f"{held} connections from {source}, the cap per source is "
                    f"{caps.per_source} stations and {share or caps.per_source} handshakes")
        return None

    def connect(self, slot: Slot, *, replaces: bool) -> str | None:
        """Count `slot` as a connected station, or say why it must not be connected now. A
        station that `replaces` a connection of its own is always counted. Check and count are
        one step: no await between them lets a burst past the cap."""
        if slot.connected:
            return None
        caps = self.caps
        if not replaces:
            if self.connected >= caps.connections:
                return f"{self.connected} stations connected, the cap is {caps.connections}"
            held = self.connected_by_source.get(slot.source, 0)
            if caps.per_source and held >= caps.per_source:
                return (f"{held} stations connected from {slot.source}, the cap per source "
                        f"is {caps.per_source}")
        slot.connected = True
        self.connected += 1
        _add(self.connected_by_source, slot.source, 1)
        return None

    def admit(self, source: str) -> Slot:
        self.open += 1
        self.handshaking += 1
        _add(self.by_source, source, 1)
        _add(self.handshakes_by_source, source, 1)
        return Slot(source)

    def handshake_over(self, slot: Slot) -> None:
        if slot.handshaking:
            slot.handshaking = False
            self.handshaking -= 1
            _add(self.handshakes_by_source, slot.source, -1)

    def disconnected(self, slot: Slot) -> None:
        """`slot` no longer counts as a connected station (replaced, or closed): a replaced
        connection may take seconds to close, and its station is already counted anew."""
        if slot.connected:
            slot.connected = False
            self.connected -= 1
            _add(self.connected_by_source, slot.source, -1)

    def release(self, slot: Slot) -> None:
        self.handshake_over(slot)
        self.disconnected(slot)
        self.open -= 1
        _add(self.by_source, slot.source, -1)


def _add(counts: dict[str, int], key: str, delta: int) -> None:
    left = counts.get(key, 0) + delta
    if left:
        counts[key] = left
    else:
        del counts[key]


# The body of every 503 a cap causes, at accept() or after the password.
AT_CAPACITY_BODY = b"the server is at its connection limit\n"


def cap_retry_after() -> int:
    """Retry-After (s) of a connection a cap refused: RETRY_AFTER plus jitter."""
    return RETRY_AFTER + random.randint(0, RETRY_AFTER)


def refusal_response() -> bytes:
    """The raw 503 written to a connection refused at accept(), before its request is read."""
    body = AT_CAPACITY_BODY
    return (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: %d\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (cap_retry_after(), len(body), body))

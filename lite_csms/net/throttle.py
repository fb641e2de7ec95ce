"""Password guessing, throttled per source address and per station id (docs/SECURITY.md).

Rules, all in memory, per process:
- A source (an IPv4 address, or an IPv6 /64) gets FREE_FAILURES wrong passwords; each further
  one doubles its wait, from 1 s up to MAX_DELAY. While it waits it is answered 429 with
  Retry-After before any KDF runs. The source is asked again when a queued check's turn comes
  (KdfQueue's gate), so a burst of parallel guesses costs at most FREE_FAILURES plus the KDF
  slots, while a storm of right passwords from one address (a carrier NAT) is never capped.
- A station id that collected STATION_FREE_FAILURES failures (from any sources) is under
  attack: a wrong password for it blocks its source at once and is answered 429. The right
  password is still checked and let in, so an attacker cannot lock a station out.
- Both tables are LRU-bounded and forget a record FORGET_AFTER seconds after its last failure.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

FREE_FAILURES = 5
STATION_FREE_FAILURES = 10
BASE_DELAY = 1.0
MAX_DELAY = 60.0
FORGET_AFTER = 15 * 60.0
TABLE_ENTRIES = 10_000


def source_key(host: str) -> str:
    """The throttled unit for a peer host: the address itself, or its /64 for IPv6, since one
    subscriber gets a whole /64."""
    if ":" not in host and "[" not in host and "]" not in host:
        # An IPv4 address is its own key (ip_address takes only the canonical dotted quad,
        # whose str is the same text), and a name stays as it is: no parse per connection.
        return host
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def host_of(peer: str) -> str:
    """"host:port" or "[v6]:port" (listener.peer_of) → host."""
    return peer.rsplit(":", 1)[0].strip("[]") if ":" in peer else peer


@dataclass(slots=True)
class Record:
    failures: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0


def delay_for(failures: int, free: int) -> float:
    """0 within the free failures, then 1, 2, 4, … seconds up to MAX_DELAY."""
    if failures < free:
        return 0.0
    return min(MAX_DELAY, BASE_DELAY * 2 ** min(failures - free, 16))


class _Table:
    def __init__(self, entries: int, clock: Callable[[], float]) -> None:
        self._records: OrderedDict[str, Record] = OrderedDict()
        self._max = entries
        self._clock = clock

    def get(self, key: str) -> Record | None:
        record = self._records.get(key)
        if record is None:
            return None
        if self._clock() - record.last_failure > FORGET_AFTER:
            del self._records[key]
            return None
        return record

    def get_or_add(self, key: str) -> Record:
        record = self.get(key)
        if record is None:
            record = self._records[key] = Record()
        self._records.move_to_end(key)
        while len(self._records) > self._max:
            self._records.popitem(last=False)
        return record

    def __len__(self) -> int:
        return len(self._records)


class GuessThrottle:
    def __init__(self, entries: int = TABLE_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.sources = _Table(entries, clock)
        self.stations = _Table(entries, clock)

    def source_wait(self, source: str) -> float | None:
        """Seconds the source must wait before its next password check, or None if it may go."""
        record = self.sources.get(source)
        if record is None:
            return None
        now = self._clock()
        if record.blocked_until > now:
            return record.blocked_until - now
        return None

    def under_attack(self, station_id: str) -> float | None:
        """Seconds the station stays under attack, or None."""
        record = self.stations.get(station_id)
        if record is None or record.blocked_until <= self._clock():
            return None
        return record.blocked_until - self._clock()

    def failed(self, source: str, station_id: str) -> float | None:
        """Count a wrong password; returns the source's wait from now on, or None if it may try
        again at once (and should get 401)."""
        now = self._clock()
        station = self.stations.get_or_add(station_id)
        attacked = station.blocked_until > now
        station.failures += 1
        station.last_failure = now
        station.blocked_until = now + delay_for(station.failures, STATION_FREE_FAILURES)
        record = self.sources.get_or_add(source)
        record.failures = max(record.failures + 1, FREE_FAILURES if attacked else 0)
        record.last_failure = now
        wait = delay_for(record.failures, FREE_FAILURES)
        record.blocked_until = max(record.blocked_until, now + wait)
        return wait or None

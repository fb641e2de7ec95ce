"""Live meters in, hourly rows out: the accounting's only contact with the store.

Meters are read once a flush interval and when their connection closes, never per message,
and the sums go to SQLite as one upsert per (station, hour, action, direction, layer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import trio

from lite_csms.budget import counters
from lite_csms.budget.meter import IN, IP, OUT, PAYLOAD, SETUP_ACTIONS, ConnectionMeter, Flow
from lite_csms.budget.names import REFUSED_HANDSHAKE
from lite_csms.db.writer import StoreWriter
from lite_csms.ocppj import timestamps

log = logging.getLogger("lite_csms.budget")

# Refused handshakes whose id was not looked up (a source blocked before the database) are
# charged for at most this many distinct ids per flush; the flush drops unknown ids.
UNCONFIRMED_IDS = 1000


@dataclass(slots=True)
class LiveConnection:
    station_id: str
    protocol: str
    meter: ConnectionMeter
    opened_at: datetime
    close_reason: str | None = None


class TrafficRecorder:
    def __init__(self, store: StoreWriter, *, retention_days: int = 62,
                 clock: Callable[[], datetime] = timestamps.now_utc) -> None:
        self._store = store
        self._clock = clock
        self._retention = timedelta(days=retention_days)
        self._live: dict[int, LiveConnection] = {}
        self._buckets: dict[counters.BucketKey, list[int]] = {}
        self._closed: list[counters.ConnectionTotals] = []
        self._last_rollup: datetime | None = None
        self._interval: float | None = None
        # Bytes by (direction, layer) since the start, as of the last collection: /metrics.
        self.totals: dict[tuple[str, str], int] = {}
        self._refused: dict[int, str] = {}
        self._unconfirmed: set[str] = set()

    def opened(self, station_id: str, protocol: str, meter: ConnectionMeter) -> LiveConnection:
        live = LiveConnection(station_id, protocol, meter, self._clock())
        self._live[id(meter)] = live
        return live

    def refused(self, station_id: str, meter: ConnectionMeter, *, confirmed: bool) -> None:
        """Charge a refused handshake's bytes to `station_id` once its connection is gone, as
        one pseudo-action, (refused-handshake), at every layer it crossed (ws: the HTTP
        request and answer; tls; ip). In memory like all counts, and written with the next
        flush, which keeps only ids the database knows. `confirmed`: the id was looked up
        and exists; unconfirmed ids are bounded by UNCONFIRMED_IDS per flush."""
        if not confirmed:
            if (station_id not in self._unconfirmed
                    and len(self._unconfirmed) >= UNCONFIRMED_IDS):
                return
            self._unconfirmed.add(station_id)
        self._refused[id(meter)] = station_id

    def closed(self, meter: ConnectionMeter) -> None:
        """The connection is gone (its close frames included): take its last counts."""
        refused = self._refused.pop(id(meter), None)
        if refused is not None:
            self._add(refused, [Flow(REFUSED_HANDSHAKE, f.direction, f.layer, f.bytes)
                                for f in meter.collect()])
            return
        live = self._live.pop(id(meter), None)
        if live is None:
            return  # never became a station's connection (refused, bad handshake)
        self._add(live.station_id, meter.collect())
        totals = meter.totals
        self._closed.append(counters.ConnectionTotals(
            station_id=live.station_id, opened_at=live.opened_at, closed_at=self._clock(),
            protocol=live.protocol, tls=meter.tls, tls_resumed=meter.tls_resumed,
            setup_ip={a: meter.setup_ip.get(a, 0) for a in SETUP_ACTIONS},
            ip_in=totals.get((IN, IP), 0), ip_out=totals.get((OUT, IP), 0),
            payload_in=totals.get((IN, PAYLOAD), 0), payload_out=totals.get((OUT, PAYLOAD), 0),
            retransmitted=meter.retransmitted_at_close, close_reason=live.close_reason,
        ))

    def _add(self, station_id: str, flows: list[Flow]) -> None:
        hour = self._clock().replace(minute=0, second=0, microsecond=0)
        for flow in flows:
            key = (station_id, hour, flow.action, flow.direction, flow.layer)
            bucket = self._buckets.setdefault(key, [0, 0])
            bucket[0] += flow.bytes
            bucket[1] += flow.messages
            total = (flow.direction, flow.layer)
            self.totals[total] = self.totals.get(total, 0) + flow.bytes

    def collect(self) -> None:
        for live in list(self._live.values()):
            self._add(live.station_id, live.meter.collect())

    async def flush(self) -> None:
        self.collect()
        buckets, self._buckets = self._buckets, {}
        closed, self._closed = self._closed, []
        self._unconfirmed.clear()
        now = self._clock()
        rollup_before = None
        if self._last_rollup is None or now - self._last_rollup >= timedelta(hours=1):
            self._last_rollup = now
            rollup_before = (now - self._retention).replace(hour=0, minute=0, second=0,
                                                            microsecond=0)

        # Written even when nothing moved: reports say "as of" this instant, and a quiet
        # station's figures are as current as a busy one's.
        def write() -> None:
            counters.add_hourly(buckets)
            counters.add_connections(closed)
            counters.mark_flushed(now, self._interval)
            if rollup_before is not None:
                counters.roll_up(rollup_before)

        try:
            await self._store.run(write)
        except BaseException:
            # Put the counts back so the next flush writes them.
            for key, (amount, messages) in buckets.items():
                bucket = self._buckets.setdefault(key, [0, 0])
                bucket[0] += amount
                bucket[1] += messages
            self._closed.extend(closed)
            raise

    async def run(self, interval: float) -> None:
        self._interval = interval
        while True:
            await trio.sleep(interval)
            try:
                await self.flush()
            except Exception as exc:  # a failed flush must not end the server; retry later
                log.exception("traffic flush failed: %s", exc)

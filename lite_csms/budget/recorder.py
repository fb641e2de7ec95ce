"""Live meters in, hourly rows out: the accounting's only contact with the store.

Meters are read once a flush interval and when their connection closes, never per message,
and the sums go to SQLite as one upsert per (station, hour, action, direction, layer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import trio

from lite_csms.budget import counters
from lite_csms.budget.meter import IN, IP, OUT, PAYLOAD, SETUP_ACTIONS, ConnectionMeter, Flow
from lite_csms.budget.names import REFUSED_HANDSHAKE
from lite_csms.db.writer import StoreWriter, Submitted, WriterClosed
from lite_csms.ocppj import timestamps

log = logging.getLogger("lite_csms.budget")

# A refused handshake is charged at most this many bytes per direction and layer: a charger's
# upgrade with Basic auth and the 401 are a few hundred bytes each, while an attacker can pad
# the request to 16 kB (docs/SECURITY.md, "Refused handshakes cost the station's data budget").
REFUSAL_BYTES = 1024
# At most this many refused handshakes are charged per station and clock hour: a wrong password
# shows in the owner's report, and an outsider can add at most 2 x 2 x REFUSAL_BYTES an hour at
# the billed ip layer (3.0 MB in a 31-day month, 12 % of the default 25 MB cap).
REFUSALS_PER_HOUR = 2
# Stations whose traffic one store job of a flush writes (TrafficRecorder.flush).
FLUSH_CHUNK = 500
# A meter's totals read for each connection row.
_IN_IP, _OUT_IP, _IN_PAYLOAD, _OUT_PAYLOAD = (IN, IP), (OUT, IP), (IN, PAYLOAD), (OUT, PAYLOAD)


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
        # Refusals charged per station in the clock hour `_refusal_hour`.
        self._refusal_hour: datetime | None = None
        self._refusals: dict[str, int] = {}
        # The stop's early jobs (counted_write, ended_write) and what each carries, for
        # last_write().
        self._early: list[tuple[Submitted, dict[counters.BucketKey, list[int]],
                                list[counters.ConnectionTotals]]] = []
        # The clock hour of the last rows and the start of the next (_hour).
        self._hour: datetime | None = None
        self._next_hour: datetime | None = None

    def opened(self, station_id: str, protocol: str, meter: ConnectionMeter) -> LiveConnection:
        live = LiveConnection(station_id, protocol, meter, self._clock())
        self._live[id(meter)] = live
        return live

    def refused(self, station_id: str, meter: ConnectionMeter) -> bool:
        """Charge a refused handshake's bytes to `station_id` once its connection is gone, as
        one pseudo-action, (refused-handshake), at every layer it crossed (ws: the HTTP
        request and answer; tls; ip), each direction and layer capped at REFUSAL_BYTES, and
        at most REFUSALS_PER_HOUR per station and clock hour. The caller passes only refusals
        of a station's own credential, checked and found wrong (net/server.py). In memory
        like all counts, and written with the next flush. Returns whether it is charged."""
        hour = self._clock().replace(minute=0, second=0, microsecond=0)
        if hour != self._refusal_hour:
            self._refusal_hour, self._refusals = hour, {}
        charged = self._refusals.get(station_id, 0)
        if charged >= REFUSALS_PER_HOUR:
            return False
        self._refusals[station_id] = charged + 1
        self._refused[id(meter)] = station_id
        return True

    def closed(self, meter: ConnectionMeter) -> None:
        """The connection is gone (its close frames included): take its last counts."""
        refused = self._refused.pop(id(meter), None)
        if refused is not None:
            moved: dict[tuple[str, str], int] = {}
            for f in meter.collect():
                moved[f.direction, f.layer] = moved.get((f.direction, f.layer), 0) + f.bytes
            self._add(refused, [Flow(REFUSED_HANDSHAKE, direction, layer,
                                     min(amount, REFUSAL_BYTES))
                                for (direction, layer), amount in moved.items()])
            return
        live = self._live.pop(id(meter), None)
        if live is None:
            return  # never became a station's connection (refused, bad handshake)
        now = self._clock()
        self._ended(live, now, self._hour_of(now))

    def _ended(self, live: LiveConnection, now: datetime, hour: datetime) -> None:
        """A station's connection has ended (`live`, popped): its last rows and its
        connection row."""
        meter = live.meter
        self._add(live.station_id, meter.collect(), hour)
        totals = meter.totals
        setup = meter.setup_ip
        self._closed.append(counters.ConnectionTotals(
            live.station_id, live.opened_at, now, live.protocol, meter.tls, meter.tls_resumed,
            {a: setup.get(a, 0) for a in SETUP_ACTIONS},
            totals.get(_IN_IP, 0), totals.get(_OUT_IP, 0), totals.get(_IN_PAYLOAD, 0),
            totals.get(_OUT_PAYLOAD, 0), meter.retransmitted_at_close, live.close_reason))

    def open_connections(self) -> list[LiveConnection]:
        return list(self._live.values())

    def close_now(self, lives: list[LiveConnection], reason: str) -> None:
        """The process exits with these connections still open (the server's stop): take
        their last counts now, as closed() does when one ends (its hourly rows and its
        connection row, `reason` as its close reason unless it has one)."""
        now = self._clock()
        hour = self._hour_of(now)
        for live in lives:
            if self._live.pop(id(live.meter), None) is not live:
                continue  # closed meanwhile
            if live.close_reason is None:
                live.close_reason = reason
            live.meter.finish_now()
            self._ended(live, now, hour)

    def live_of(self, meter: ConnectionMeter) -> LiveConnection | None:
        """The open connection `meter` counts, if it is still open in the books."""
        return self._live.get(id(meter))

    def _hour_of(self, now: datetime) -> datetime:
        """The clock hour `now` falls in: worked out once an hour, not once a connection
        (a stop ends 10,000 within a second)."""
        hour = self._hour
        if hour is None or not hour <= now < self._next_hour:  # type: ignore[operator]
            hour = self._hour = now.replace(minute=0, second=0, microsecond=0)
            self._next_hour = hour + timedelta(hours=1)
        return hour

    def _add(self, station_id: str, flows: list[Flow], hour: datetime | None = None) -> None:
        if not flows:
            return
        if hour is None:
            hour = self._hour_of(self._clock())
        buckets, totals = self._buckets, self.totals
        for flow in flows:
            key = (station_id, hour, flow.action, flow.direction, flow.layer)
            bucket = buckets.get(key)
            if bucket is None:
                buckets[key] = [flow.bytes, flow.messages]
            else:
                bucket[0] += flow.bytes
                bucket[1] += flow.messages
            total = (flow.direction, flow.layer)
            totals[total] = totals.get(total, 0) + flow.bytes

    def collect(self) -> None:
        hour = self._hour_of(self._clock())
        for live in list(self._live.values()):
            self._add(live.station_id, live.meter.collect(), hour)

    def counted_write(self) -> None:
        """At the start of the server's stop (its fast exit): what is counted already (the
        buckets and connection rows since the last flush, and the rows the live meters have
        attributed, their set-up) submitted at once as one store job, without a new
        attribution, so that the writer's thread writes it while the stop waits for the
        close answers, and last_write() carries only the rest. Not marked flushed. The rows
        are additive upserts: the two jobs add up to the one they replace; if this one is
        lost, last_write()'s job writes its rows too (it runs after it, on the same thread)."""
        hour = self._hour_of(self._clock())
        for live in self._live.values():
            if flows := live.meter.take_emitted():
                self._add(live.station_id, flows, hour)
        self.ended_write()

    def ended_write(self) -> None:
        """During the server's stop (its fast exit): what is counted and not yet submitted
        (the rows of connections that ended, or that close_now() ended in the books) as one
        store job, queued at once, so that the writer's thread writes it while the trio
        thread ends the next ones. Not marked flushed; additive, like counted_write()'s job,
        and written again by last_write()'s job if it is lost. Raises WriterClosed (the rows
        are then left to last_write())."""
        buckets, self._buckets = self._buckets, {}
        closed, self._closed = self._closed, []
        if not buckets and not closed:
            return

        def write() -> None:
            counters.add_hourly(buckets, exiting=True)
            counters.add_connections(closed, exiting=True)

        try:
            self._early.append((self._store.submit(write), buckets, closed))
        except WriterClosed:
            self._buckets, self._closed = buckets, closed  # left to last_write()
            raise

    def last_write(self) -> Callable[[], None]:
        """Everything counted (the live meters collected), taken out as one store job for
        the server's stop to submit (StoreWriter.submit), marked flushed. The roll-up waits
        for the next start's first flush."""
        self.collect()
        buckets, self._buckets = self._buckets, {}
        closed, self._closed = self._closed, []
        now, interval = self._clock(), self._interval
        early, self._early = self._early, []

        def write() -> None:
            rows, ended = buckets, closed
            lost = [(taken, ends) for job, taken, ends in early if job.error is not None]
            if lost:
                # An early job failed or its commit was lost: its rows go here.
                rows, ended = {}, []
                for more, more_ended in [*lost, (buckets, closed)]:
                    _merge(rows, more)
                    ended += more_ended
            try:
                counters.add_hourly(rows, exiting=True)
                counters.add_connections(ended, exiting=True)
                counters.mark_flushed(now, interval)
            except Exception as exc:
                log.warning("the last traffic counts cannot be stored: %s", exc)
                raise

        return write

    async def flush(self, *, live: bool = True) -> None:
        """Write the counts. `live=False` (the server's stop, while connections are still
        ending) writes only what ended connections left, and does not mark the counts
        flushed: the live ones are not in it."""
        if live:
            lives = list(self._live.values())
            # FLUSH_CHUNK stations' rows at a time, each chunk but the last in a job of its
            # own: every station's rows at once were megabytes of short-lived objects whose
            # freed blocks stayed with the process (docs/PERFORMANCE.md, "Memory per
            # station"). The rows are additive upserts: the chunks add up to one write.
            for start in range(0, len(lives), FLUSH_CHUNK):
                for one in lives[start:start + FLUSH_CHUNK]:
                    if self._live.get(id(one.meter)) is one:  # not closed meanwhile
                        self._add(one.station_id, one.meter.collect())
                if start + FLUSH_CHUNK < len(lives):
                    chunk, self._buckets = self._buckets, {}
                    await self._write(chunk, [], partial(counters.add_hourly, chunk))
        buckets, self._buckets = self._buckets, {}
        closed, self._closed = self._closed, []
        now = self._clock()
        rollup_before = None
        if live and (self._last_rollup is None
                     or now - self._last_rollup >= timedelta(hours=1)):
            self._last_rollup = now
            rollup_before = (now - self._retention).replace(hour=0, minute=0, second=0,
                                                            microsecond=0)

        # Written even when nothing moved: reports say "as of" this instant, and a quiet
        # station's figures are as current as a busy one's.
        def write() -> None:
            counters.add_hourly(buckets)
            counters.add_connections(closed)
            if not live:
                return
            counters.mark_flushed(now, self._interval)
            if rollup_before is not None:
                counters.roll_up(rollup_before)

        await self._write(buckets, closed, write)

    async def _write(self, buckets: dict[counters.BucketKey, list[int]],
                     closed: list[counters.ConnectionTotals], job: Callable[[], None]) -> None:
        try:
            await self._store.run(job)
        except BaseException:
            # Put the counts back so the next flush writes them.
            _merge(self._buckets, buckets)
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


def _merge(into: dict[counters.BucketKey, list[int]],
           more: dict[counters.BucketKey, list[int]]) -> None:
    """Add `more`'s [bytes, messages] to `into`, key by key (new lists: `more` is left as
    it is)."""
    for key, (amount, messages) in more.items():
        bucket = into.get(key)
        if bucket is None:
            into[key] = [amount, messages]
        else:
            bucket[0] += amount
            bucket[1] += messages

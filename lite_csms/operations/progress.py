"""A running session's progress, with a live reading fetched only when someone asks.

Billing needs the start and stop readings and, for disputes, the samples; none of it live. So
the budget policy has stations deliver their samples with the stop, and a fresh reading is
fetched on demand: TriggerMessage MeterValues for the session's EVSE (1.6 connectorId, 2.x
evse; OCPP 1.6 §5.17, 2.0.1 F06), then the MeterValues that follows, stored like any other
(handlers/live_meter.py ties it to the running session).

The rules:
- At most one TriggerMessage per transaction per `progress_min_interval` seconds (60), sent
  or refused alike. An ask within that window sends nothing: it gets the stored reading, and
  waits for the fetch under way, if any. A refresh-happy page costs at most one exchange pair
  a minute per session, about 1 kB without deflate (docs/DATA-BUDGET.md).
- The asker waits at most `wait` seconds (default `progress_wait`, 5; at most
  `progress_max_wait`, 30) for the station's MeterValues. A reading that comes later is still
  stored, and the window's next asker sees it.
- The answer always comes from the store, with `refresh` saying what this ask did: fetched
  (a reading arrived in time), rate-limited (inside the window), refused (the station
  answered the TriggerMessage other than Accepted, or with a CALLERROR), timeout (no reading
  in time), requested (wait=0: sent, not waited for), offline (not connected, or not yet
  spoken on this connection: nothing is sent or queued), ended (the session is over: its
  stop reading is final), not-requested (fresh not asked). `stale` is true unless the
  reading shown was fetched in this ask or in the window's fetch, or the session has ended;
  `age_s` says how old it is by the station's clock.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from lite_csms.config import Settings
from lite_csms.db.writer import StoreWriter
from lite_csms.handlers import live_meter
from lite_csms.net.commands import CommandSender, StationOffline
from lite_csms.net.connection import StationConnection
from lite_csms.ocppj import timestamps
from lite_csms.operations import catalogue

log = logging.getLogger("lite_csms.progress")


@dataclass(eq=False, slots=True)
class _Fetch:
    """One TriggerMessage MeterValues and what came of it."""

    started: float
    done: trio.Event = field(default_factory=trio.Event)
    reading: trio.Event = field(default_factory=trio.Event)
    outcome: str = "timeout"
    detail: str | None = None
    command_id: int | None = None

    @property
    def fresh(self) -> bool:
        return self.reading.is_set()


class ProgressService:
    def __init__(self, store: StoreWriter, commands: CommandSender,
                 connections: Mapping[str, StationConnection], settings: Settings) -> None:
        self._store = store
        self._commands = commands
        self._connections = connections
        self._settings = settings
        self._fetches: dict[int, _Fetch] = {}
        self._watchers: dict[tuple[str, int], set[_Fetch]] = defaultdict(set)
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Hold the nursery fetches run in: a fetch outlives the ask that started it, so that
        the TriggerMessage CALL is never cancelled halfway (one CALL at a time per station)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def seen(self, station_id: str, evse_id: int) -> None:
        """Meter values from this station's EVSE were stored: wake the fetches waiting."""
        for fetch in self._watchers.get((station_id, evse_id), ()):
            fetch.reading.set()

    async def progress(self, tx_id: int, *, fresh: bool, wait: float | None = None,
                       requested_by: str = "api") -> dict[str, Any] | None:
        """The session's progress (shape: live_meter.progress plus refresh, stale, detail,
        command_id, next_fetch_in_s); None when there is no such transaction."""
        wait = self._settings.progress_wait if wait is None else wait
        wait = min(max(wait, 0.0), self._settings.progress_max_wait)
        found = await self._read(tx_id)
        if found is None:
            return None
        if not found["running"]:
            return self._answer(found, "ended", stale=False)
        if not fresh:
            fetch = self._recent(tx_id)
            return self._answer(found, "not-requested", fetch=fetch,
                                stale=fetch is None or not fetch.fresh)
        fetch = self._recent(tx_id)
        if fetch is not None:
            with trio.move_on_after(wait):
                await fetch.done.wait()
            return self._answer(await self._read(tx_id) or found, "rate-limited", fetch=fetch,
                                stale=not fetch.fresh)
        connection = self._connections.get(found["station"])
        if connection is None or not connection.spoke.is_set() or self._nursery is None:
            return self._answer(found, "offline", stale=True,
                                detail=f"station {found['station']} is not connected")
        fetch = _Fetch(trio.current_time())
        self._fetches[tx_id] = fetch
        self._nursery.start_soon(self._fetch, fetch, connection, found["evse"], requested_by)
        with trio.move_on_after(wait):
            await fetch.done.wait()
        outcome = "fetched" if fetch.fresh else (
            fetch.outcome if fetch.done.is_set() else "requested" if wait == 0 else "timeout")
        detail = None
        if outcome == "requested":
            detail = "asked the station; its reading is stored when it arrives"
        elif outcome == "timeout" and fetch.detail is None:
            detail = f"no reading within {wait:g} s: the stored one is shown"
        return self._answer(await self._read(tx_id) or found, outcome, fetch=fetch,
                            stale=not fetch.fresh, detail=detail)

    async def _read(self, tx_id: int) -> dict[str, Any] | None:
        return await self._store.run(partial(live_meter.progress, tx_id, timestamps.now_utc()))

    def _recent(self, tx_id: int) -> _Fetch | None:
        now = trio.current_time()
        window = self._settings.progress_min_interval
        for key in [k for k, f in self._fetches.items() if now - f.started >= window]:
            del self._fetches[key]
        return self._fetches.get(tx_id)

    def _answer(self, found: dict[str, Any], refresh: str, *, stale: bool,
                fetch: _Fetch | None = None, detail: str | None = None) -> dict[str, Any]:
        next_in = 0.0
        if fetch is not None:
            elapsed = trio.current_time() - fetch.started
            next_in = max(0.0, self._settings.progress_min_interval - elapsed)
            detail = detail or fetch.detail
        return {**found, "refresh": refresh, "stale": stale, "detail": detail,
                "command_id": None if fetch is None else fetch.command_id,
                "next_fetch_in_s": round(next_in, 1)}

    async def _fetch(self, fetch: _Fetch, connection: StationConnection, evse_id: int,
                     requested_by: str) -> None:
        station_id = connection.station_id
        watch = (station_id, evse_id)
        self._watchers[watch].add(fetch)
        try:
            request = catalogue.trigger(connection.ctx.version, "MeterValues", evse_id or None)
            try:
                sent = await self._commands.send(station_id, request.action, request.payload,
                                                 requested_by=requested_by)
            except StationOffline as exc:
                fetch.outcome, fetch.detail = "offline", str(exc)
                return
            fetch.command_id = sent.command_id
            status = (sent.result or {}).get("status") if sent.status == "answered" else None
            if status != "Accepted":
                fetch.outcome = "refused"
                fetch.detail = (f"TriggerMessage answered {status}" if status is not None else
                                f"TriggerMessage {sent.status}: {sent.error_code or ''} "
                                f"{sent.error_description or ''}".rstrip())
                log.info("%s: live reading refused: %s", station_id, fetch.detail)
                return
            with trio.move_on_after(self._settings.progress_max_wait):
                await fetch.reading.wait()
            if fetch.fresh:
                fetch.outcome = "fetched"
            else:
                fetch.detail = (f"TriggerMessage accepted, but no MeterValues within "
                                f"{self._settings.progress_max_wait:g} s")
                log.info("%s: %s", station_id, fetch.detail)
        finally:
            watchers = self._watchers[watch]
            watchers.discard(fetch)
            if not watchers:
                del self._watchers[watch]
            fetch.done.set()

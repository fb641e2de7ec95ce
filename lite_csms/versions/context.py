"""What a message handler knows about the station that sent the message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from lite_csms.config import Settings
from lite_csms.db import reader as db_reader
from lite_csms.db.writer import StoreWriter
from lite_csms.ocppj import timestamps
from lite_csms.ocppj.versions import Version

T = TypeVar("T")


@dataclass(slots=True)
class StationContext:
    station_id: str
    version: Version
    store: StoreWriter
    settings: Settings
    # "accepted" once the station may send more than BootNotification.
    registration: str
    # What an Accepted BootNotification answer says when `heartbeat_source` is not set (None:
    # the server's heartbeat_interval).
    heartbeat_interval: int | None = None
    # While pending: the requests our own CALLs asked this station for (provisioning.may_send).
    # Shared and empty until the first one: most stations are never asked while pending.
    solicited: set[str] | frozenset[str] = frozenset()
    # Told the EVSE (1.6: connector) whenever meter values from it are stored, so that a
    # progress request waiting for a triggered reading wakes (operations/progress.py).
    meter_seen: Callable[[int], None] | None = None
    # Reads the interval afresh at each BootNotification (the budget policy's boot_interval,
    # which `budget explain` shows too), so an operator's setting accepted on this very
    # connection is answered at the next boot.
    heartbeat_source: Callable[[], Awaitable[int]] | None = None
    # 2.x block I: told the EVSE whose meter values may have changed a session's running cost
    # (a CostUpdated may be due), and a transaction's cost a TransactionEventResponse carried
    # (operations/cost_updates.py).
    cost_changed: Callable[[int], None] | None = None
    cost_told: Callable[[int, int], None] | None = None
    # Committed state read beside the writer (db/reader.py); None: reads go through the writer.
    reader: db_reader.StoreReader | None = None

    async def read(self, work: Callable[[], T]) -> T:
        """A read-only store function, not queued behind the writer's group commit."""
        return await db_reader.read(self.store, self.reader, work)

    def solicit(self, request: str) -> None:
        """Note a request our CALL asked for, which a pending station may then send."""
        if not isinstance(self.solicited, set):
            self.solicited = set(self.solicited)
        self.solicited.add(request)

    def now(self) -> datetime:
        return timestamps.now_utc()

    async def boot_interval(self, status: str) -> int:
        """The interval of a BootNotification answer (seconds): for Accepted the heartbeat;
        for Pending and Rejected the server's boot_retry_interval, when to boot again (never
        the policy's heartbeat, which would keep a station accepted meanwhile away for hours)."""
        if status != "Accepted":
            return self.settings.boot_retry_interval
        if self.heartbeat_source is not None:
            self.heartbeat_interval = await self.heartbeat_source()
        return (self.settings.heartbeat_interval if self.heartbeat_interval is None
                else self.heartbeat_interval)

    def saw_meter_values(self, evse_id: int) -> None:
        if self.meter_seen is not None:
            self.meter_seen(evse_id)

    def running_cost_may_change(self, evse_id: int) -> None:
        if self.cost_changed is not None:
            self.cost_changed(evse_id)

    def told_cost(self, tx_id: int, cost: int) -> None:
        if self.cost_told is not None:
            self.cost_told(tx_id, cost)


Handler = Callable[[StationContext, dict[str, Any]], Awaitable[dict[str, Any]]]

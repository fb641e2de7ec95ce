"""What a message handler knows about the station that sent the message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from lite_csms.config import Settings
from lite_csms.db import reader as db_reader
from lite_csms.db.writer import StoreWriter
from lite_csms.ocppj import timestamps
from lite_csms.ocppj.versions import Version

T = TypeVar("T")


class StationHooks(Protocol):
    """What the server's services are told about a station's messages."""

    def meter_seen(self, station_id: str, evse_id: int) -> None:
        """Meter values from this EVSE (1.6: connector) were stored: a progress request
        waiting for a triggered reading wakes (operations/progress.py)."""

    async def heartbeat_for(self, station_id: str, version: Version) -> int:
        """The heartbeat interval (s) an Accepted BootNotification answer gives."""
        ...

    def cost_changed(self, station_id: str, evse_id: int) -> None:
        """2.x block I: the meter values of this EVSE may have changed a session's running
        cost, a CostUpdated may be due (operations/cost_updates.py)."""

    def cost_told(self, tx_id: int, cost: int) -> None:
        """A TransactionEventResponse carried this transaction's cost."""


@dataclass(slots=True)
class StationContext:
    station_id: str
    version: Version
    store: StoreWriter
    settings: Settings
    # "accepted" once the station may send more than BootNotification.
    registration: str
    # What an Accepted BootNotification answer says without `hooks` (None:
    # the server's heartbeat_interval).
    heartbeat_interval: int | None = None
    # While pending: the requests our own CALLs asked this station for (provisioning.may_send).
    # Shared and empty until the first one: most stations are never asked while pending.
    solicited: set[str] | frozenset[str] = frozenset()
    # The server's services a handler tells about this station (one object shared by every
    # station: no callables bound per station, docs/PERFORMANCE.md "Memory per station").
    hooks: StationHooks | None = None
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
        if self.hooks is not None:
            # The budget policy's boot_interval, read afresh at each BootNotification (which
            # `budget explain` shows too), so an operator's setting accepted on this very
            # connection is answered at the next boot.
            self.heartbeat_interval = await self.hooks.heartbeat_for(self.station_id,
                                                                     self.version)
        return (self.settings.heartbeat_interval if self.heartbeat_interval is None
                else self.heartbeat_interval)

    def saw_meter_values(self, evse_id: int) -> None:
        if self.hooks is not None:
            self.hooks.meter_seen(self.station_id, evse_id)

    def running_cost_may_change(self, evse_id: int) -> None:
        if self.hooks is not None:
            self.hooks.cost_changed(self.station_id, evse_id)

    def told_cost(self, tx_id: int, cost: int) -> None:
        if self.hooks is not None:
            self.hooks.cost_told(tx_id, cost)


Handler = Callable[[StationContext, dict[str, Any]], Awaitable[dict[str, Any]]]

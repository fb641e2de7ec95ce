"""What a message handler knows about the station that sent the message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lite_csms.config import Settings
from lite_csms.db.writer import StoreWriter
from lite_csms.ocppj import timestamps
from lite_csms.ocppj.versions import Version


@dataclass(slots=True)
class StationContext:
    station_id: str
    version: Version
    store: StoreWriter
    settings: Settings
    # "accepted" once the station may send more than BootNotification.
    registration: str
    # Set by the budget policy: what BootNotification answers say, so a reconnect does not
    # undo the heartbeat interval the policy chose.
    heartbeat_interval: int | None = None
    # While pending: the requests our own CALLs asked this station for (provisioning.may_send).
    solicited: set[str] = field(default_factory=set)
    # Told the EVSE (1.6: connector) whenever meter values from it are stored, so that a
    # progress request waiting for a triggered reading wakes (operations/progress.py).
    meter_seen: Callable[[int], None] | None = None

    def now(self) -> datetime:
        return timestamps.now_utc()

    def saw_meter_values(self, evse_id: int) -> None:
        if self.meter_seen is not None:
            self.meter_seen(evse_id)


Handler = Callable[[StationContext, dict[str, Any]], Awaitable[dict[str, Any]]]

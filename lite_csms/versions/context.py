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

    def now(self) -> datetime:
        return timestamps.now_utc()


Handler = Callable[[StationContext, dict[str, Any]], Awaitable[dict[str, Any]]]

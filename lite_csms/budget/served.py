"""The settings the running server was started with, as far as they change what stations
are told: recorded in the database at start-up (`server_setting`), so that the CLI, a
separate process that cannot see serve's flags, explains what the server really answers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from lite_csms.config import Settings
from lite_csms.db.models import ServerSetting

# What a station is answered or sent depends on these (the BootNotification interval, the
# policy's level and keepalive); the explicit heartbeat is recorded as its own key.
RECORDED = ("heartbeat_interval", "boot_retry_interval", "budget_policy", "budget_cap",
            "budget_cycle_day", "budget_warn_ratio", "nat_timeout", "tcp_keepalive_idle")
EXPLICIT_HEARTBEAT = "heartbeat_interval_explicit"


@dataclass(frozen=True, slots=True)
class Served:
    settings: Settings
    # When the server recorded them (its start); None: no server ever did, so `settings` is
    # the CLI's own view (config file, environment).
    started_at: datetime | None


def record(settings: Settings, at: datetime) -> None:
    """Runs in the store writer at start-up: replace what an earlier run recorded."""
    values = {name: str(getattr(settings, name)) for name in RECORDED}
    values[EXPLICIT_HEARTBEAT] = str("heartbeat_interval" in settings.explicit)
    for key, value in values.items():
        (ServerSetting.insert(key=key, value=value, updated_at=at)
         .on_conflict(conflict_target=[ServerSetting.key],
                      update={ServerSetting.value: value, ServerSetting.updated_at: at})
         .execute())


def overlay(settings: Settings) -> Served:
    """`settings` with what the running server recorded in their place, where it did."""
    rows = {row.key: row for row in ServerSetting.select()}
    known = [name for name in RECORDED if name in rows]
    if not known:
        return Served(settings, None)
    changed = {}
    for name in known:
        kind = type(getattr(settings, name))
        raw = rows[name].value
        changed[name] = raw == "True" if kind is bool else kind(raw)
    explicit = set(settings.explicit)
    if EXPLICIT_HEARTBEAT in rows:
        explicit.discard("heartbeat_interval")
        if rows[EXPLICIT_HEARTBEAT].value == "True":
            explicit.add("heartbeat_interval")
    started = max(rows[name].updated_at for name in known)
    return Served(dataclasses.replace(settings, **changed, explicit=frozenset(explicit)),
                  started)

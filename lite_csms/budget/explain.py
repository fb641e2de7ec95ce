"""What the budget policy did to a station and why, next to where the station stands now.

`changes` is the log (moves, and applications on a new connection that sent something), each
with every setting's outcome: sent (and the answer), skipped (already held, refused before)
or yielded (operator-owned, or the server's configured heartbeat), and why. `policy` is what
the policy would do with each setting now, with the refusals and operator-owned keys behind it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from lite_csms.budget import policy, usage
from lite_csms.config import Settings
from lite_csms.db.models import PolicyChange

DEFAULT_LIMIT = 50


def _settings(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def changes(station_id: str, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """The station's latest `limit` policy changes, oldest first."""
    newest = (PolicyChange.select().where(PolicyChange.station == station_id)
              .order_by(PolicyChange.at.desc(), PolicyChange.id.desc()).limit(limit))
    return [{"at": c.at, "from_level": c.from_level, "to_level": c.to_level,
             "reason": c.reason, "settings": _settings(c.settings)}
            for c in reversed(list(newest))]


def explanation(station_id: str, settings: Settings, now: datetime,
                limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    return {"station": station_id,
            "budget": usage.effective_budget(station_id, settings).as_dict(),
            "usage": usage.station_usage(station_id, settings, now).as_dict(),
            "policy": policy.current_plan(station_id, settings),
            "changes": changes(station_id, limit)}

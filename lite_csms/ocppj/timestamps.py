"""OCPP date-time parsing, lenient where real chargers are sloppy.

RFC 3339 requires an offset, but many 1.6 chargers omit it or send a space instead of "T".
We read a missing offset as UTC rather than refuse the charger's meter data.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> datetime:
    """An aware UTC datetime; raises ValueError. Cached: the schema's date-time check reads
    each timestamp and its handler reads it again (datetimes are immutable)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def is_valid(text: object) -> bool:
    if not isinstance(text, str) or len(text) > 64 or len(text) < 10:
        return False
    try:
        parse(text)
    except (ValueError, OverflowError):
        # "0001-01-01T00:00:00+01:00" parses, but lies before the first representable UTC instant.
        return False
    return True


def format_utc(moment: datetime) -> str:
    """Seconds precision and a "Z": the shortest form every charger accepts."""
    utc = moment.astimezone(UTC)
    if utc.year < 1000:  # strftime's %Y does not pad; isoformat would
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    # isoformat is strftime's text here at a third of the cost (a boot answer's currentTime).
    return utc.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def now_utc() -> datetime:
    return datetime.now(UTC)

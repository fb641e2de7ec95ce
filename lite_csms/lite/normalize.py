"""The documented normalization (codecs/SPEC.md section 6.6): what an OCPP-J message becomes
after one lite round trip, computed on the JSON side without encoding anything."""

from __future__ import annotations

from typing import Any

from lite_csms.lite.payload import normalize_timestamp
from lite_csms.lite.tables import Table, table


def _payload(value: Any, t: Table, key: str | None, raw: bool) -> Any:
    if isinstance(value, dict):
        return {k: _payload(v, t, k, raw or k in t.raw_keys) for k, v in value.items()}
    if isinstance(value, list):
        return [_payload(v, t, key, raw) for v in value]
    if type(value) is str and not raw and key in t.datetime_keys:
        if value not in t.enum_number.get(key, {}):
            return normalize_timestamp(value)
    return value


def normalize(message: list[Any], protocol: str) -> list[Any]:
    """The message with every date-time field that the lite link converts rewritten in UTC
    with "Z" (same instant, same fraction digits); everything else is unchanged. Object
    member order is not part of the result's meaning (the wire sorts keys)."""
    t = table(protocol)
    out = list(message)
    if out and out[0] in (2, 6) and len(out) == 4:
        out[3] = _payload(out[3], t, None, False)
    elif out and out[0] == 3 and len(out) == 3:
        out[2] = _payload(out[2], t, None, False)
    return out

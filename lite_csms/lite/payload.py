"""OCPP-J payload values <-> the lite link's compact values (codecs/SPEC.md section 6).

`compact` turns a JSON value (dicts, lists, str, int, float, bool, None) into the value the
CBOR writer encodes: table keys become integers, enum values their index, timestamps epoch
seconds, canonical UUIDs tag 37, uppercase hex byte strings. `expand` is its inverse and
refuses what no encoder produces. Every rule depends only on the nearest enclosing map key
(arrays pass it through), never on the action, so a CALLRESULT decodes without knowing the
CALL it answers.
"""

from __future__ import annotations

import calendar
import re
import time
import uuid
from typing import Any

from lite_csms.lite.cbor import UINT64_MAX, Tag
from lite_csms.lite.tables import Table

TAG_DECIMAL_FRACTION = 4
TAG_UUID = 37
# 9999-12-31T23:59:59Z: the last second a four-digit year can write.
MAX_EPOCH = 253402300799

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX = re.compile(r"(?:[0-9A-F]{2}){4,}")
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):(\d{2}))",
    # SPEC 6.3: ASCII digits only; without the flag \d takes full-width digits too.
    re.ASCII)


class CompactError(ValueError):
    """A value the lite link cannot carry (encoding) or no encoder produces (decoding)."""


# ---- timestamps -----------------------------------------------------------------------------
def timestamp_to_compact(text: str) -> int | Tag | None:
    """Epoch seconds, or tag 4 [-digits, epoch * 10**digits + fraction]; None if not a
    timestamp the lite link converts (then it travels as text, unchanged)."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, _zone, sign, off_h, off_m = match.group(7, 8, 9, 10, 11)
    if not (year >= 1 and 1 <= month <= 12 and hour <= 23 and minute <= 59 and second <= 59):
        return None
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    epoch = calendar.timegm((year, month, day, hour, minute, second))
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            return None
        offset = (int(off_h) * 60 + int(off_m)) * 60
        epoch -= offset if sign == "+" else -offset
    if not 0 <= epoch <= MAX_EPOCH:
        return None
    if fraction is None:
        return epoch
    mantissa = epoch * 10 ** len(fraction) + int(fraction)
    if mantissa > UINT64_MAX:
        return None  # SPEC 6.3: too late an instant for that many digits; it stays text
    return Tag(TAG_DECIMAL_FRACTION, [-len(fraction), mantissa])


def _format_epoch(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


def timestamp_from_compact(value: Any) -> str:
    if type(value) is int:
        if not 0 <= value <= MAX_EPOCH:
            raise CompactError(f"timestamp {value} is outside 1970..9999")
        return _format_epoch(value) + "Z"
    if isinstance(value, Tag) and value.number == TAG_DECIMAL_FRACTION:
        pair = value.value
        if (not isinstance(pair, list) or len(pair) != 2 or type(pair[0]) is not int
                or type(pair[1]) is not int or not -9 <= pair[0] <= -1 or pair[1] < 0):
            raise CompactError("a fractional timestamp is tag 4 [exponent -1..-9, mantissa]")
        digits = -pair[0]
        seconds, fraction = divmod(pair[1], 10 ** digits)
        if seconds > MAX_EPOCH:
            raise CompactError(f"timestamp {seconds} is outside 1970..9999")
        return f"{_format_epoch(seconds)}.{fraction:0{digits}d}Z"
    raise CompactError("a date-time key holds an integer, a tag 4 or a text string")


def normalize_timestamp(text: str) -> str:
    """What a date-time field's text becomes after a lite round trip."""
    value = timestamp_to_compact(text)
    return text if value is None else timestamp_from_compact(value)


# ---- payloads -------------------------------------------------------------------------------
def _string(value: str, key: str | None, raw: bool, t: Table) -> Any:
    if not raw and key is not None:
        numbers = t.enum_number.get(key)
        if numbers is not None and value in numbers:
            return numbers[value]
        if key in t.datetime_keys:
            stamp = timestamp_to_compact(value)
            if stamp is not None:
                return stamp
    if _UUID.fullmatch(value):
        return Tag(TAG_UUID, uuid.UUID(value).bytes)
    if _HEX.fullmatch(value):
        return bytes.fromhex(value)
    return value


def compact(value: Any, t: Table, key: str | None = None, raw: bool = False) -> Any:
    """A JSON value as its compact form under map key `key` (None at the top).

    `raw` is true inside a raw key's value (customData, any-typed data, CALLERROR details):
    there keys are still numbered but no enum or timestamp rule applies, so vendor values
    round-trip whatever they are. Raises CompactError for an integer where the table expects
    an enum or a timestamp (schema-invalid, and a decoder would misread it) and for values
    JSON cannot hold.
    """
    kind = type(value)
    if kind is str:
        return _string(value, key, raw, t)
    if kind is dict:
        out: dict[Any, Any] = {}
        for name, item in value.items():
            if type(name) is not str:
                raise CompactError("object keys are strings")
            number = t.key_number.get(name)
            out[name if number is None else number] = compact(
                item, t, name, raw or name in t.raw_keys)
        return out
    if kind is list:
        return [compact(item, t, key, raw) for item in value]
    if kind is int:
        if not raw and key is not None and (key in t.enum_number or key in t.datetime_keys):
            raise CompactError(f"integer {value} where {key!r} expects a string")
        return value
    if kind is float or kind is bool or value is None:
        return value
    raise CompactError(f"{kind.__name__} is not a JSON value")


# SPEC 7: text a decoder may produce from the tables and conversions for one message (key
# names, enum values, timestamps, UUIDs, hex strings, in UTF-8 bytes): without it, one-byte
# enum indexes in a 64 KiB body would expand to megabytes of OCPP-J.
MAX_EXPANSION = 65536


class ExpansionTooLarge(CompactError):
    """A body whose expansion passes MAX_EXPANSION (answered with close 1009)."""


class Expansion:
    """The expansion budget of one message."""

    __slots__ = ("left",)

    def __init__(self, limit: int = MAX_EXPANSION) -> None:
        self.left = limit

    def spend(self, text: str) -> str:
        self.left -= len(text.encode()) if not text.isascii() else len(text)
        if self.left < 0:
            raise ExpansionTooLarge(
                f"the message expands past {MAX_EXPANSION} bytes of names and values")
        return text


def expand(value: Any, t: Table, key: str | None = None, raw: bool = False,
           budget: Expansion | None = None) -> Any:
    """The JSON value for a compact one; raises CompactError for forms no encoder makes, and
    ExpansionTooLarge when the text it produces passes the message's `budget`."""
    if budget is None:
        budget = Expansion()
    kind = type(value)
    if kind is dict:
        out: dict[str, Any] = {}
        for number, item in value.items():
            if type(number) is int:
                if not 0 <= number < len(t.keys):
                    raise CompactError(f"unknown key number {number}")
                name = budget.spend(t.keys[number])
            elif number in t.key_number:
                # Would allow two spellings of one key in one map.
                raise CompactError(f"key {number!r} must be sent as its number")
            else:
                name = number
            out[name] = expand(item, t, name, raw or name in t.raw_keys, budget)
        return out
    if kind is list:
        return [expand(item, t, key, raw, budget) for item in value]
    if kind is int:
        if not raw and key is not None:
            values = t.enums.get(key)
            if values is not None:
                if not 0 <= value < len(values):
                    raise CompactError(f"unknown value number {value} for {key!r}")
                return budget.spend(values[value])
            if key in t.datetime_keys:
                return budget.spend(timestamp_from_compact(value))
        return value
    if kind is Tag:
        if value.number == TAG_UUID:
            if type(value.value) is not bytes or len(value.value) != 16:
                raise CompactError("tag 37 must hold a 16-byte string")
            return budget.spend(str(uuid.UUID(bytes=value.value)))
        if not raw and key in t.datetime_keys:
            return budget.spend(timestamp_from_compact(value))
        raise CompactError(f"tag {value.number} is allowed only on a date-time key")
    if kind is bytes:
        if len(value) < 4:
            raise CompactError("a byte string carries at least 4 bytes (8 hex digits)")
        return budget.spend(value.hex().upper())
    return value

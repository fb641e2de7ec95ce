"""Numbers the store can hold, checked after schema validation and before any handler runs.

A schema says "integer" or "number" but sets no bounds, while SQLite holds signed 64-bit
integers and finite doubles. A value outside that is refused with PropertyConstraintViolation
instead of being acknowledged and then lost (a NaN that INSERT OR IGNORE drops) or crashing
the handler (an integer that overflows SQLite's INTEGER).

Rules (docs/DEVIATIONS.md repeats them for operators):
- every integer, wherever it is, lies in [-2**63, 2**63 - 1];
- every float is finite;
- a float where the schema wants an integer (JSON Schema allows 3.0) becomes that int;
- connectorId, evseId and an EVSE's id name a place in the store, seqNo an order: never
  negative.
"""

from __future__ import annotations

import math
import re
from typing import Any

from lite_csms.ocppj.versions import ErrorKind

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# connectorId and evseId become connector rows: a negative one would invent a phantom
# connector. seqNo orders a transaction's events and counts their gaps, from 0 up: a negative
# one would break the order and could push the gap count past 64 bits.
_NON_NEGATIVE = frozenset({"connectorId", "evseId", "seqNo"})

# OCPP 1.6 sampled values are strings holding a decimal number (Part 2, SampledValue).
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


class UnstorableValue(ValueError):
    """A value the store cannot hold faithfully; answered PropertyConstraintViolation.

    `path` is where it sits in the payload ("meterValue[0].sampledValue[1].value").
    """

    kind = ErrorKind.PROPERTY

    def __init__(self, path: str, value: object, reason: str) -> None:
        shown = repr(value)
        super().__init__(f"{path or 'payload'}: {shown[:40]} {reason}")
        self.path = path
        self.value = value


def check_int(path: str, value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise UnstorableValue(path, value, "is outside the signed 64-bit range")
    return value


def check_float(path: str, value: float) -> float:
    if not math.isfinite(value):
        raise UnstorableValue(path, value, "is not a finite number")
    return value


def decimal(path: str, text: str) -> float:
    """A 1.6 decimal string as a finite float. Raises UnstorableValue ("NaN", "1,5", "1e400")."""
    if not _DECIMAL.fullmatch(text):
        raise UnstorableValue(path, text, "is not a decimal number")
    return check_float(path, float(text))


def scaled(path: str, value: float, multiplier: int) -> float:
    """value * 10^multiplier (2.x unitOfMeasure), refused when it leaves the finite doubles.

    Float powers keep a hostile multiplier (10**10**9) from costing seconds of CPU.
    """
    try:
        result = value * 10.0 ** multiplier
    except OverflowError:
        raise UnstorableValue(path, value, f"* 10^{multiplier} overflows") from None
    if value != 0 and result == 0:
        raise UnstorableValue(path, value, f"* 10^{multiplier} underflows to 0")
    return check_float(path, result)


def check_payload(schema: dict[str, Any], payload: dict[str, Any]) -> list[str]:
    """Walk a schema-valid payload with its schema; raise UnstorableValue at the first bad number.

    Mutates the payload in one way only: an integral float where the schema wants an integer
    becomes an int, so the store never keeps 3.0 as a connector id. Returns the paths so
    converted ("meterValue[0].evseId"), for the caller to record.
    """
    # The common flat payload (a status report, a heartbeat's answer) has nothing to check:
    # strings, booleans, nulls and non-negative 64-bit integers pass every rule above.
    for value in payload.values():
        kind = type(value)
        if kind is str or kind is bool or value is None or (
                kind is int and 0 <= value <= INT64_MAX):
            continue
        break
    else:
        return []
    converted: list[str] = []
    _walk(schema, schema.get("definitions", {}), payload, "", converted)
    return converted


def _resolve(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        return definitions.get(ref.rsplit("/", 1)[1], {})
    return node


def _walk(node: dict[str, Any] | None, definitions: dict[str, Any], value: Any,
          path: str, converted: list[str]) -> Any:
    node = _resolve(node, definitions) if node is not None else None
    if isinstance(value, dict):
        properties = node.get("properties", {}) if node is not None else {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            sub = properties.get(key)
            fixed = _walk(sub, definitions, item, where, converted)
            if fixed is not item:
                value[key] = fixed
            # Only where the schema defines the field: a vendor's customData is its own business.
            evse_id = key == "id" and path.endswith("evse")
            if sub is not None and (key in _NON_NEGATIVE or evse_id):
                _non_negative(where, value[key])
        return value
    if isinstance(value, list):
        items = node.get("items") if node is not None else None
        for index, item in enumerate(value):
            fixed = _walk(items, definitions, item, f"{path}[{index}]", converted)
            if fixed is not item:
                value[index] = fixed
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return check_int(path, value)
    if isinstance(value, float):
        check_float(path, value)
        if node is not None and node.get("type") == "integer":
            fixed = check_int(path, int(value))
            converted.append(path)
            return fixed
    return value


def _non_negative(path: str, value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise UnstorableValue(path, value, "must not be negative")

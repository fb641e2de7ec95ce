"""Lenient inbound validation: accept the deviations real chargers are known to send.

On a schema failure the known repair for that failure is applied on the failing path and the
payload is validated again, at most MAX_REPAIRS times. What is accepted (docs/DEVIATIONS.md):

- over-long string (maxLength): kept whole; only the copy being validated is shortened;
- number where a string is wanted: coerced to its JSON text exactly as written (3.40 stays
  "3.40"), except for id tokens and transaction ids, where "0012" sent as 12 would name
  someone else;
- null for an optional property: read as absent (a required one is still refused);
- enum value in the wrong letter case: the one member equal ignoring case;
- unknown property: ignored (kept in the payload, never read);
- integral float where an integer is wanted (1.6's draft-04 schemas refuse `5000.0`; 2.x's
  accept it, and the session records it there under the same kind): the integer.

Nothing else is repaired: a missing required field, a string where a number is wanted, an
unknown enum value or a bad timestamp still gets the spec's CALLERROR. Billing values are
numbers, timestamps and ids, and none of these repairs invents one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from lite_csms.ocppj import schemas
from lite_csms.ocppj.versions import Version

MAX_REPAIRS = 32
EXAMPLE_LENGTH = 80

OVERLONG = "over-long string"
NUMBER_AS_STRING = "number as string"
NULL_OPTIONAL = "null for optional field"
ENUM_CASE = "enum value case"
UNKNOWN_PROPERTY = "unknown property"
INTEGRAL_FLOAT = "integral float"

# A number here may have lost leading zeros on the way ("0012" sent as 12): never coerced.
_NO_COERCE = frozenset({"idTag", "parentIdTag", "idToken", "transactionId"})


@dataclass(frozen=True, slots=True)
class Deviation:
    """One accepted deviation: its kind, where ("meterValue[].sampledValue[].unit"), an example."""

    kind: str
    path: str
    example: str


class _Unrepairable(Exception):
    pass


# The exact JSON text of the number at a path of the payload, when the raw frame is at hand.
ExactText = Callable[[list[Any]], str | None]


def validate(
    version: Version, action: str, payload: dict[str, Any], *, response: bool = False,
    exact: ExactText | None = None,
) -> tuple[dict[str, Any], tuple[Deviation, ...], schemas.SchemaViolation | None]:
    """Return (payload to handle, deviations accepted, violation left or None).

    `response`: the payload is a station's answer (CALLRESULT) to our `action`, checked
    against the response schema with the same repairs. The payload returned is a repaired
    copy when anything was repaired, else `payload` itself. `exact` gives a number's text
    as the frame wrote it, for the number-as-string repair (else orjson's shortest form).
    Raises schemas.UnknownAction.
    """
    exc = schemas.failure(version, action, payload, response=response)
    if exc is None:
        return payload, (), None
    root = schemas.schema(version, action, response)
    handled = copy.deepcopy(payload)
    checked = copy.deepcopy(payload)
    found: dict[tuple[str, str], Deviation] = {}
    for _ in range(MAX_REPAIRS):
        try:
            deviation = _repair(root, exc, handled, checked, exact)
        except (_Unrepairable, LookupError, TypeError, ValueError):
            # A path this module cannot follow is no reason to fail the connection: refuse.
            return payload, (), schemas.violation(exc)
        found.setdefault((deviation.kind, deviation.path), deviation)
        next_exc = schemas.failure(version, action, checked, response=response)
        if next_exc is None:
            return handled, tuple(found.values()), None
        exc = next_exc
    return payload, (), schemas.violation(exc)


def _repair(root: dict[str, Any], exc: Any, handled: dict[str, Any],
            checked: dict[str, Any], exact: ExactText | None = None) -> Deviation:
    """Repair the failure at exc.path and the same failure at every sibling list entry.

    Sibling entries share the failing field's schema, so a charger that writes "kwh" in every
    sampled value costs one repair and one re-validation, not one per sample.
    """
    path = _indexed(checked, exc.path[1:])  # fastjsonschema's paths start with "data"
    rule, value, definition = exc.rule, exc.value, exc.rule_definition
    shown = _path_text(path)
    targets = list(_siblings(checked, path))
    if rule == "maxLength" and isinstance(value, str):
        for target in targets:
            found = _get(checked, target)
            if isinstance(found, str) and len(found) > definition:
                _set(checked, target, found[:definition])
        return Deviation(OVERLONG, shown, _example(value))
    if rule == "additionalProperties" and isinstance(value, dict):
        allowed = set(_schema_at(root, path).get("properties", {}))
        extra = sorted(set(value) - allowed)
        if not extra:
            raise _Unrepairable
        for target in targets:
            found = _get(checked, target)
            for key in set(found) - allowed if isinstance(found, dict) else ():
                found.pop(key)
        return Deviation(UNKNOWN_PROPERTY, _path_text([*path, extra[0]]),
                         _example(", ".join(extra)))
    if rule == "type" and value is None and path and isinstance(path[-1], str):
        if path[-1] in _schema_at(root, path[:-1]).get("required", []):
            raise _Unrepairable
        for target in targets:
            if _get(checked, target) is None:
                for payload in (handled, checked):
                    _get(payload, target[:-1]).pop(target[-1])
        return Deviation(NULL_OPTIONAL, shown, "null")
    if (rule == "type" and definition == "string" and _is_number(value)
            and _field_name(path) not in _NO_COERCE):
        if orjson.dumps(value) == b"null":  # a non-finite float has no JSON text
            raise _Unrepairable
        for target in targets:
            found = _get(checked, target)
            if _is_number(found) and orjson.dumps(found) != b"null":
                _set_both(handled, checked, target, _number_text(found, target, exact))
        return Deviation(NUMBER_AS_STRING, shown, _example(_number_text(value, path, exact)))
    if rule == "type" and definition == "integer" and _is_integral_float(value):
        for target in targets:
            found = _get(checked, target)
            if _is_integral_float(found):
                _set_both(handled, checked, target, int(found))
        return Deviation(INTEGRAL_FLOAT, shown, _example(repr(value)))
    if rule == "enum" and isinstance(value, str) and isinstance(definition, list):
        if _case_match(definition, value) is None:
            raise _Unrepairable
        for target in targets:
            found = _get(checked, target)
            if isinstance(found, str) and found not in definition:
                match = _case_match(definition, found)
                if match is not None:
                    _set_both(handled, checked, target, match)
        return Deviation(ENUM_CASE, shown, _example(value))
    raise _Unrepairable


def _number_text(value: Any, path: list[Any], exact: ExactText | None) -> str:
    """The number as the station wrote it ("3.40", all 20 digits of a serial number); orjson's
    form only when the frame's text is not at hand."""
    text = exact(path) if exact is not None else None
    return text if text is not None else orjson.dumps(value).decode()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integral_float(value: Any) -> bool:
    return isinstance(value, float) and value.is_integer()  # False for inf and NaN


def _case_match(members: list[Any], value: str) -> str | None:
    matches = [m for m in members if isinstance(m, str) and m.lower() == value.lower()]
    return matches[0] if len(matches) == 1 else None


def _siblings(payload: Any, path: list[Any]) -> Iterator[list[Any]]:
    """Every existing path equal to `path` but for its list indexes."""
    if not path:
        yield []
        return
    head, rest = path[0], path[1:]
    if isinstance(head, int) and isinstance(payload, list):
        for index, item in enumerate(payload):
            for tail in _siblings(item, rest):
                yield [index, *tail]
    elif isinstance(head, str) and isinstance(payload, dict) and head in payload:
        for tail in _siblings(payload[head], rest):
            yield [head, *tail]


def _set_both(handled: Any, checked: Any, path: list[Any], value: Any) -> None:
    _set(handled, path, value)
    _set(checked, path, value)


def _indexed(payload: Any, raw: list[Any]) -> list[Any]:
    """fastjsonschema spells list indexes as strings ("0"); make them ints."""
    path: list[Any] = []
    for part in raw:
        if isinstance(payload, list):
            part = int(part)
        path.append(part)
        payload = payload[part]
    return path


def _field_name(path: list[Any]) -> str:
    for part in reversed(path):
        if isinstance(part, str):
            return part
    return ""


def _path_text(path: list[Any]) -> str:
    text = ""
    for part in path:
        text += "[]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(payload)"


def _example(value: str) -> str:
    return value if len(value) <= EXAMPLE_LENGTH else value[:EXAMPLE_LENGTH - 1] + "…"


def _get(payload: Any, path: list[Any]) -> Any:
    for part in path:
        payload = payload[part]
    return payload


def _set(payload: Any, path: list[Any], value: Any) -> None:
    _get(payload, path[:-1])[path[-1]] = value


def _schema_at(root: dict[str, Any], path: list[Any]) -> dict[str, Any]:
    """The (dereferenced) schema node that describes the value at `path`."""
    definitions = root.get("definitions", {})

    def deref(node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref", "")
        return definitions.get(ref.rsplit("/", 1)[1], {}) if ref.startswith("#/") else node

    node = deref(root)
    for part in path:
        if isinstance(part, int):
            node = deref(node.get("items", {}))
        else:
            node = deref(node.get("properties", {}).get(part, {}))
    return node

"""Payload validation against the OCA JSON schemas shipped in the `ocpp` package (MIT).

Schemas are compiled with fastjsonschema on first use and cached; docs/BENCHMARKS.md has the
measurement behind that choice.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Any

import fastjsonschema
import orjson

from lite_csms.ocppj import timestamps
from lite_csms.ocppj.versions import ErrorKind, Version

_PACKAGE_DIR = {
    Version.OCPP16: "v16",
    Version.OCPP201: "v201",
    Version.OCPP21: "v21",
}

_RULE_TO_KIND = {
    "required": ErrorKind.OCCURRENCE,
    "minItems": ErrorKind.OCCURRENCE,
    "maxItems": ErrorKind.OCCURRENCE,
    "type": ErrorKind.TYPE,
    "additionalProperties": ErrorKind.FORMAT,
}


@dataclass(frozen=True, slots=True)
class SchemaViolation:
    kind: ErrorKind
    description: str


class UnknownAction(LookupError):
    pass


def _schema_resource(version: Version, action: str, response: bool) -> Traversable:
    folder = importlib.resources.files("ocpp") / _PACKAGE_DIR[version] / "schemas"
    if response:
        return folder / f"{action}Response.json"
    if version is Version.OCPP16:
        return folder / f"{action}.json"
    request = folder / f"{action}Request.json"
    return request if request.is_file() else folder / f"{action}.json"


@functools.cache
def known_actions(version: Version) -> frozenset[str]:
    folder = importlib.resources.files("ocpp") / _PACKAGE_DIR[version] / "schemas"
    names = [entry.name[:-5] for entry in folder.iterdir() if entry.name.endswith(".json")]
    actions = {n for n in names if not n.endswith("Response")}
    if version is not Version.OCPP16:
        # 2.1's SEND-only messages (NotifyPeriodicEventStream) have no "Request" suffix.
        actions = {n.removesuffix("Request") for n in actions}
    return frozenset(actions)


@functools.cache
def schema(version: Version, action: str, response: bool) -> dict[str, Any]:
    """The OCA schema as a dict (do not mutate it). Raises UnknownAction."""
    if action not in known_actions(version):
        raise UnknownAction(action)
    resource = _schema_resource(version, action, response)
    if not resource.is_file():
        raise UnknownAction(f"{action} has no {'response' if response else 'request'} schema")
    loaded: dict[str, Any] = orjson.loads(resource.read_bytes())
    # The OCA schemas carry $id URNs that fastjsonschema would try to resolve remotely.
    loaded.pop("$id", None)
    return loaded


@functools.cache
def _compiled(version: Version, action: str, response: bool) -> Callable[[Any], Any]:
    return fastjsonschema.compile(schema(version, action, response),
                                  formats={"date-time": timestamps.is_valid})


def failure(
    version: Version, action: str, payload: dict[str, Any], *, response: bool
) -> fastjsonschema.JsonSchemaValueException | None:
    """The first schema failure (with .path, .rule, .rule_definition), or None."""
    try:
        _compiled(version, action, response)(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        return exc
    except (OverflowError, ValueError):
        # The compiled `multipleOf` check turns the number into an int: 1e400 (read as inf)
        # raises there instead of failing the rule. Name the value the store cannot hold.
        found = _non_finite(payload, "data")
        if found is None:
            raise
        return fastjsonschema.JsonSchemaValueException(
            f"{found[0]} must be a finite number", found[1], found[0], None, "finite")
    return None


def _non_finite(value: Any, path: str) -> tuple[str, float] | None:
    """The first float in `value` that is not finite, with its fastjsonschema-style path."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    items: Iterable[tuple[str, Any]] = ()
    if isinstance(value, dict):
        items = ((f"{path}.{key}", item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    for where, item in items:
        found = _non_finite(item, where)
        if found is not None:
            return found
    return None


def violation(exc: fastjsonschema.JsonSchemaValueException) -> SchemaViolation:
    return SchemaViolation(_RULE_TO_KIND.get(exc.rule or "", ErrorKind.PROPERTY), exc.message)


def validate(
    version: Version, action: str, payload: dict[str, Any], *, response: bool
) -> SchemaViolation | None:
    """Return what is wrong with the payload, or None. Raises UnknownAction."""
    exc = failure(version, action, payload, response=response)
    return None if exc is None else violation(exc)

"""Payload validation against the OCA JSON schemas shipped in the `ocpp` package (MIT).

Schemas are compiled with fastjsonschema on first use and cached; docs/BENCHMARKS.md has the
measurement behind that choice.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass
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


def _schema_file_name(version: Version, action: str, response: bool) -> str:
    if version is Version.OCPP16:
        return f"{action}Response.json" if response else f"{action}.json"
    return f"{action}{'Response' if response else 'Request'}.json"


@functools.cache
def known_actions(version: Version) -> frozenset[str]:
    folder = importlib.resources.files("ocpp") / _PACKAGE_DIR[version] / "schemas"
    names = [entry.name for entry in folder.iterdir() if entry.name.endswith(".json")]
    if version is Version.OCPP16:
        return frozenset(n[:-5] for n in names if not n.endswith("Response.json"))
    return frozenset(n[: -len("Request.json")] for n in names if n.endswith("Request.json"))


@functools.cache
def _compiled(version: Version, action: str, response: bool) -> Callable[[Any], Any]:
    if action not in known_actions(version):
        raise UnknownAction(action)
    resource = (
        importlib.resources.files("ocpp")
        / _PACKAGE_DIR[version]
        / "schemas"
        / _schema_file_name(version, action, response)
    )
    schema = orjson.loads(resource.read_bytes())
    # The OCA schemas carry $id URNs that fastjsonschema would try to resolve remotely.
    schema.pop("$id", None)
    return fastjsonschema.compile(schema, formats={"date-time": timestamps.is_valid})


def validate(
    version: Version, action: str, payload: dict[str, Any], *, response: bool
) -> SchemaViolation | None:
    """Return what is wrong with the payload, or None. Raises UnknownAction."""
    check = _compiled(version, action, response)
    try:
        check(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        kind = _RULE_TO_KIND.get(exc.rule or "", ErrorKind.PROPERTY)
        return SchemaViolation(kind, exc.message)
    return None

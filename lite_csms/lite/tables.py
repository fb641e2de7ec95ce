"""The per-version lite tables (codecs/SPEC.md section 5), loaded from package data.

The files in lite_csms/lite/data/ are byte-identical copies of codecs/tables/, written by
tools/lite_tables.py; shipping them inside the package makes an installed wheel work without
the repository. tests/test_lite_tables.py checks the two copies agree.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from dataclasses import dataclass

PROTOCOLS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")


@dataclass(frozen=True, slots=True)
class Table:
    """Names and their numbers for one OCPP version; a name's number is its list index."""

    protocol: str
    actions: tuple[str, ...]
    error_codes: tuple[str, ...]
    keys: tuple[str, ...]
    enums: dict[str, tuple[str, ...]]
    datetime_keys: frozenset[str]
    raw_keys: frozenset[str]
    action_number: dict[str, int]
    error_number: dict[str, int]
    key_number: dict[str, int]
    enum_number: dict[str, dict[str, int]]


def _index(names: tuple[str, ...]) -> dict[str, int]:
    return {name: i for i, name in enumerate(names)}


@functools.cache
def table(protocol: str) -> Table:
    """The table for a plain OCPP protocol name ("ocpp1.6", "ocpp2.0.1", "ocpp2.1").

    Raises KeyError for any other name.
    """
    if protocol not in PROTOCOLS:
        raise KeyError(protocol)
    resource = importlib.resources.files("lite_csms.lite") / "data" / f"{protocol}.json"
    raw = json.loads(resource.read_text(encoding="utf-8"))
    actions = tuple(raw["actions"])
    errors = tuple(raw["error_codes"])
    keys = tuple(raw["keys"])
    enums = {k: tuple(v) for k, v in raw["enums"].items()}
    return Table(
        protocol=protocol, actions=actions, error_codes=errors, keys=keys, enums=enums,
        datetime_keys=frozenset(raw["datetime_keys"]), raw_keys=frozenset(raw["raw_keys"]),
        action_number=_index(actions), error_number=_index(errors), key_number=_index(keys),
        enum_number={k: _index(v) for k, v in enums.items()},
    )

"""Lite link tables (codecs/SPEC.md section 5): generated from the OCA schemas, append-only."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lite_csms.lite.tables import PROTOCOLS, table
from lite_csms.ocppj import schemas
from lite_csms.ocppj.versions import Version, known_error_codes
from tests.conftest import REPO


def _tool(name: str) -> ModuleType:
    tools = str(REPO / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gen = _tool("lite_tables")


def _committed(protocol: str) -> dict:
    return json.loads((REPO / "codecs" / "tables" / f"{protocol}.json").read_text())


def test_regenerating_changes_nothing_and_package_copy_is_identical() -> None:
    for protocol, text in gen.generate_all().items():
        published = (REPO / "codecs" / "tables" / f"{protocol}.json").read_text()
        packaged = (REPO / "lite_csms" / "lite" / "data" / f"{protocol}.json").read_text()
        assert text == published, f"{protocol}: run tools/lite_tables.py"
        assert packaged == published


def _published(protocol: str) -> dict | None:
    """The table as published on the main branch, when there is one and it has the table.

    Published means merged: a branch may renumber freely until then, never after.
    """
    try:
        text = subprocess.run(["git", "show", f"main:codecs/tables/{protocol}.json"],
                              cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return json.loads(text)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_published_number_ever_changes(protocol: str) -> None:
    first = _published(protocol)
    if first is None:
        pytest.skip("no published table on a main branch yet")
    now = _committed(protocol)
    for name in ("actions", "error_codes", "keys"):
        assert now[name][:len(first[name])] == first[name], name
    for key, values in first["enums"].items():
        assert now["enums"][key][:len(values)] == values, key
    for name in ("datetime_keys", "raw_keys"):
        assert set(first[name]) <= set(now[name]), name
    assert set(first["enums"]) <= set(now["enums"])


def test_generator_appends_and_never_renumbers() -> None:
    committed = _committed("ocpp1.6")
    # An older table with a different order and missing names: every old number stays.
    older = dict(committed)
    older["keys"] = list(reversed(committed["keys"][:30]))
    older["actions"] = committed["actions"][:5][::-1]
    older["enums"] = {k: v[:1] for k, v in committed["enums"].items()}
    out = gen.generate("ocpp1.6", older, None)
    assert out["keys"][:30] == older["keys"]
    assert sorted(out["keys"]) == sorted(committed["keys"])
    assert out["actions"][:5] == older["actions"]
    for key, values in older["enums"].items():
        assert out["enums"][key][:1] == values


def test_generator_refuses_to_change_the_class_of_a_published_key() -> None:
    committed = _committed("ocpp1.6")
    tampered = dict(committed, datetime_keys=[*committed["datetime_keys"], "connectorId"])
    with pytest.raises(SystemExit, match="date-time class"):
        gen.generate("ocpp1.6", tampered, None)


def test_every_action_property_and_error_code_has_a_number() -> None:
    for protocol in PROTOCOLS:
        t = table(protocol)
        version = Version(protocol)
        assert set(t.actions) == schemas.known_actions(version)
        assert set(t.error_codes) == known_error_codes(version)
        _actions, usages = gen.schema_facts(protocol)
        assert set(t.keys) == set(usages)
        assert len(set(t.keys)) == len(t.keys)


def test_frequent_names_get_one_byte_numbers() -> None:
    for protocol, names in (("ocpp1.6", ["timestamp", "status", "connectorId", "value"]),
                            ("ocpp2.0.1", ["timestamp", "measurand", "seqNo", "idToken"])):
        t = table(protocol)
        assert all(t.key_number[n] < 24 for n in names), protocol
    assert table("ocpp2.0.1").action_number["TransactionEvent"] < 24


def test_21_reuses_201_numbers() -> None:
    a, b = table("ocpp2.0.1"), table("ocpp2.1")
    assert b.keys[:len(a.keys)] == a.keys
    assert b.actions[:len(a.actions)] == a.actions
    assert b.error_codes[:len(a.error_codes)] == a.error_codes
    shared = set(a.enums) & set(b.enums)
    assert shared and all(b.enums[k][:len(a.enums[k])] == a.enums[k] for k in shared)


def test_ambiguous_keys_get_no_enum_or_datetime_class() -> None:
    # 2.1 types `priority` as an enum in one schema and an integer in another, and
    # `startTime` as date-time and integer: an integer on the wire would be ambiguous.
    t = table("ocpp2.1")
    assert "priority" not in t.enums and "startTime" not in t.datetime_keys
    assert "startTime" in table("ocpp1.6").datetime_keys
    for protocol in PROTOCOLS:
        t = table(protocol)
        assert not set(t.enums) & t.datetime_keys
        assert not (set(t.enums) | t.datetime_keys) & t.raw_keys
    assert {"customData", "data"} <= table("ocpp2.0.1").raw_keys


def test_tables_are_read_from_package_data_not_the_repository(tmp_path: Path) -> None:
    # An installed wheel has no codecs/ folder: the package must carry its own copy.
    import importlib.resources
    data = importlib.resources.files("lite_csms.lite") / "data"
    assert all((data / f"{p}.json").is_file() for p in PROTOCOLS)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"lite_csms.lite" = ["data/*.json", "data/*.zdict"]' in pyproject

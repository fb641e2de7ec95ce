"""Generate the lite-link tables (codecs/SPEC.md section 5) from the OCA JSON schemas.

    python tools/lite_tables.py           # write codecs/tables/*.json and the package copies
    python tools/lite_tables.py --check   # exit 1 if regenerating would change any file

The schemas are the ones shipped in the installed `ocpp` package (v16, v201, v21); nothing is
retyped. Numbering is append-only: the committed table is read first and every name, value
and flag in it keeps its number; only names the schemas add are appended. A key's class
(enum, date-time, raw) can never change once published; if the schemas disagree with the
committed table, this tool stops instead of renumbering (a new protocol table is needed then).
The first generation orders names by frequency in tools/lite_corpus.py, then by how often
the schemas use them, so the commonest get the one-byte numbers 0..23.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lite_corpus import CORPUS  # tools/ is on sys.path when this file is run

from lite_csms.ocppj.versions import Version, known_error_codes

ROOT = Path(__file__).resolve().parent.parent
OUT_DIRS = [ROOT / "codecs" / "tables", ROOT / "lite_csms" / "lite" / "data"]
FOLDER = {"ocpp1.6": "v16", "ocpp2.0.1": "v201", "ocpp2.1": "v21"}
# 2.1 starts from 2.0.1's numbering, so the names the two share keep one number.
BASE = {"ocpp2.1": "ocpp2.0.1"}
SPEC = "lite1"
NUMERIC = {"integer", "number"}


@dataclass
class Usage:
    """Everything the schemas say about one property name, across the whole version."""

    count: int = 0
    enum_values: list[str] = field(default_factory=list)
    datetime: bool = False
    numeric: bool = False
    raw: bool = False


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _types(node: dict[str, Any]) -> set[str]:
    t = node.get("type")
    return {t} if isinstance(t, str) else set(t or ())


def _is_open(node: dict[str, Any]) -> bool:
    """Arbitrary JSON may appear here: no type at all, or an object that allows extra keys."""
    types = _types(node)
    if not types:
        return "enum" not in node
    return "object" in types and node.get("additionalProperties", True) is not False


def _note_value(usage: Usage, node: dict[str, Any]) -> None:
    """What a property's direct value (or an array's direct item) can be."""
    for value in node.get("enum", ()):
        if value not in usage.enum_values:
            usage.enum_values.append(value)
    if node.get("format") == "date-time":
        usage.datetime = True
    if _types(node) & NUMERIC:
        usage.numeric = True


def _walk(node: dict[str, Any], root: dict[str, Any], usages: dict[str, Usage],
          seen: set[str]) -> None:
    node = _resolve(node, root)
    for name, sub in node.get("properties", {}).items():
        usage = usages.setdefault(name, Usage())
        usage.count += 1
        target = _resolve(sub, root)
        _note_value(usage, target)
        if _is_open(target):
            usage.raw = True
        # A key's context reaches through arrays (arrays of arrays too), not into objects.
        item = target
        while "array" in _types(item) and isinstance(item.get("items"), dict):
            item = _resolve(item["items"], root)
            _note_value(usage, item)
            if _is_open(item):
                usage.raw = True
        _walk(item, root, usages, seen)


def schema_facts(protocol: str) -> tuple[list[str], dict[str, Usage]]:
    folder = importlib.resources.files("ocpp") / FOLDER[protocol] / "schemas"
    files = sorted(e.name for e in folder.iterdir() if e.name.endswith(".json"))
    actions: set[str] = set()
    usages: dict[str, Usage] = {}
    for name in files:
        stem = name[:-5]
        if not stem.endswith("Response"):
            actions.add(stem.removesuffix("Request") if protocol != "ocpp1.6" else stem)
        schema = json.loads((folder / name).read_text(encoding="utf-8"))
        _walk(schema, schema, usages, set())
    return sorted(actions), usages


def _corpus_counts(protocol: str) -> tuple[Counter[str], Counter[str]]:
    keys: Counter[str] = Counter()
    actions: Counter[str] = Counter()

    def count(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                keys[k] += 1
                count(v)
        elif isinstance(value, list):
            for v in value:
                count(v)

    for action, _response, payload in CORPUS[protocol]:
        actions[action] += 1
        count(payload)
    return keys, actions


def _append(existing: list[str], names: list[str]) -> list[str]:
    have = set(existing)
    return existing + [n for n in names if n not in have]


def generate(protocol: str, committed: dict[str, Any] | None,
             base: dict[str, Any] | None) -> dict[str, Any]:
    actions, usages = schema_facts(protocol)
    corpus_keys, corpus_actions = _corpus_counts(protocol)
    start = committed or base or {}

    def by_frequency(names: list[str] | set[str], corpus: Counter[str],
                     schema: dict[str, int]) -> list[str]:
        return sorted(names, key=lambda n: (-corpus[n], -schema.get(n, 0), n))

    key_names = by_frequency(set(usages), corpus_keys, {k: u.count for k, u in usages.items()})
    table_keys = _append(list(start.get("keys", [])), key_names)
    table_actions = _append(list(start.get("actions", [])),
                            by_frequency(actions, corpus_actions, {}))
    errors = _append(list(start.get("error_codes", [])),
                     sorted(known_error_codes(Version(protocol))))

    raw = {k for k, u in usages.items() if u.raw}
    enum_keys = {k for k, u in usages.items()
                 if u.enum_values and not u.numeric and k not in raw}
    datetime_keys = {k for k, u in usages.items()
                     if u.datetime and not u.numeric and k not in raw and k not in enum_keys}
    old_enums: dict[str, list[str]] = dict(start.get("enums", {}))
    frozen = set(committed.get("keys", [])) if committed else set()
    # A base table lends its numbers, not its classes: the classes come from these schemas.
    if committed is None and base is not None:
        old_enums = {k: v for k, v in old_enums.items() if k in enum_keys}
    for name, now, then in (
        ("enum", enum_keys, set(old_enums)),
        ("date-time", datetime_keys, set(start.get("datetime_keys", [])) if committed else set()),
        ("raw", raw, set(start.get("raw_keys", [])) if committed else set()),
    ):
        changed = {k for k in frozen if (k in now) != (k in then)}
        if changed:
            raise SystemExit(f"{protocol}: the schemas change the {name} class of published "
                             f"keys {sorted(changed)}; a new table version is needed")
    enums = {k: _append(old_enums.get(k, []), usages[k].enum_values) for k in sorted(enum_keys)}
    return {
        "spec": SPEC,
        "protocol": protocol,
        "source": f"OCA JSON schemas in the ocpp package, folder {FOLDER[protocol]}",
        "actions": table_actions,
        "error_codes": errors,
        "keys": table_keys,
        "enums": enums,
        "datetime_keys": sorted(datetime_keys),
        "raw_keys": sorted(raw),
    }


def render(table: dict[str, Any]) -> str:
    return json.dumps(table, indent=1, ensure_ascii=False) + "\n"


def committed_table(protocol: str) -> dict[str, Any] | None:
    path = OUT_DIRS[0] / f"{protocol}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def generate_all() -> dict[str, str]:
    """protocol -> rendered table, appending to the committed tables."""
    out: dict[str, str] = {}
    tables: dict[str, dict[str, Any]] = {}
    for protocol in FOLDER:
        base = tables.get(BASE.get(protocol, ""))
        tables[protocol] = generate(protocol, committed_table(protocol), base)
        out[protocol] = render(tables[protocol])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a file would change")
    args = parser.parse_args()
    files = {folder / f"{protocol}.json": text
             for protocol, text in generate_all().items() for folder in OUT_DIRS}
    return write_generated(files, check=args.check)


def write_generated(files: dict[Path, str], *, check: bool) -> int:
    """Write each generated file whose text differs (or, with `check`, only say so); one
    line per such file; 1 if `check` found any, else 0. Shared with lite_vectors.py."""
    stale = [path for path, text in files.items()
             if not path.is_file() or path.read_text(encoding="utf-8") != text]
    for path in stale:
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[path], encoding="utf-8")
        print(f"{'stale' if check else 'wrote'} {path.relative_to(ROOT)}")
    return 1 if check and stale else 0

if __name__ == "__main__":
    raise SystemExit(main())

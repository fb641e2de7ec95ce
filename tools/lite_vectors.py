"""Write the lite-link test vectors, codecs/vectors/<protocol>.json (codecs/SPEC.md section 9).

    python tools/lite_vectors.py           # (re)write the three files
    python tools/lite_vectors.py --check   # exit 1 if a file would change

For every action of the version, both directions, two messages built deterministically from
the OCA schema in the installed `ocpp` package: "minimal" (required properties only) and
"full" (every property, strings at their maximum length up to 64 characters). Then the
typical messages of tools/lite_corpus.py, edge cases, and invalid frames with the answer each
requires. Valid vectors carry the message, its normalized form when that differs, and the
frame in hex; encoding the message must give exactly that hex.

Hook for zstd: when codecs/dict/<protocol>-<id>.zdict files exist, a few typical messages are
added compressed with each dictionary, marked "decode_only" (zstd output may differ between
zstd versions and levels; any conforming decoder must decode them).
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
from pathlib import Path
from typing import Any

from lite_corpus import CORPUS  # tools/ is on sys.path when this file is run
from lite_tables import write_generated

from lite_csms.lite import (
    LiteFrameError,
    cbor,
    decode_frame,
    encode_frame,
    load_dictionaries,
    normalize,
)
from lite_csms.lite.tables import table
from lite_csms.ocppj.versions import Version

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "codecs" / "vectors"
DICT_DIR = ROOT / "codecs" / "dict"
FOLDER = {"ocpp1.6": "v16", "ocpp2.0.1": "v201", "ocpp2.1": "v21"}
STAMP = "2026-05-01T12:15:00Z"
TEXT = "Lite-link vector text, long enough to fill any maximum length up to 64."


# ---- messages from the schemas ----------------------------------------------------------------
def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _example(node: dict[str, Any], root: dict[str, Any], full: bool, name: str) -> Any:
    node = _resolve(node, root)
    if "enum" in node:
        values = node["enum"]
        return values[-1] if full else values[0]
    kind = node.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = node.get("properties", {})
        required = node.get("required", [])
        names = list(props) if full else [n for n in props if n in required]
        return {n: _example(props[n], root, full, n) for n in names}
    if kind == "array":
        count = max(node.get("minItems", 1), 2 if full else 1)
        count = min(count, node.get("maxItems", count))
        return [_example(node["items"], root, full, name) for _ in range(count)]
    if kind == "string":
        if node.get("format") == "date-time":
            return "2026-05-01T12:15:00.250Z" if full else STAMP
        limit = node.get("maxLength", 64)
        text = TEXT[:min(limit, 64)] if full else name[:limit]
        return text
    if kind == "integer":
        return max(node.get("minimum", 0), min(node.get("maximum", 1_000_000), 4711))
    if kind == "number":
        return 229.8 if full else 10.5
    if kind == "boolean":
        return full
    return {"note": "any JSON"} if full else "any"


def _schema(protocol: str, action: str, response: bool) -> dict[str, Any] | None:
    folder = importlib.resources.files("ocpp") / FOLDER[protocol] / "schemas"
    names = [f"{action}Response.json"] if response else [f"{action}Request.json",
                                                        f"{action}.json"]
    for name in names:
        path = folder / name
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    return None


def schema_messages(protocol: str) -> list[tuple[str, list[Any]]]:
    out = []
    for number, action in enumerate(table(protocol).actions):
        for response in (False, True):
            schema = _schema(protocol, action, response)
            if schema is None:
                continue
            for full in (False, True):
                payload = _example(schema, schema, full, action)
                message_id = str(100 + number)
                kind = 6 if action == "NotifyPeriodicEventStream" else 2
                message = [3, message_id, payload] if response else [
                    kind, message_id, action, payload]
                label = f"{action}{'Response' if response else ''} {'full' if full else 'minimal'}"
                out.append((label, message))
    return out


# ---- edge cases -----------------------------------------------------------------------------
def edge_messages(protocol: str) -> list[tuple[str, list[Any]]]:
    v16 = protocol == "ocpp1.6"
    out: list[tuple[str, list[Any]]] = [
        ("empty payload", [2, "0", "Heartbeat", {}]),
        ("largest integer message id", [2, "18446744073709551615", "Heartbeat", {}]),
        ("decimal id with a leading zero travels as text", [2, "007", "Heartbeat", {}]),
        ("UUID message id", [2, "c0ffee00-0000-4000-8000-000000000001", "Heartbeat", {}]),
        ("text message id", [2, "msg-19", "Heartbeat", {}]),
        ("action not in the table travels as text", [2, "5", "VendorThing", {}]),
        ("CALLERROR", [4, "77", "NotImplemented",
                       "no such action", {}]),
        ("CALLERROR with details", [4, "78", "InternalError", "store failed",
                                    {"status": 5, "at": "2026-05-01T12:15:00+02:00"}]),
        ("CALLERROR with a code not in the table", [4, "79", "VendorError", "", {}]),
    ]
    stamps = [("fractional seconds", "2026-05-01T12:15:00.123Z"),
              ("offset +02:00 is normalized to UTC", "2026-05-01T14:15:00+02:00"),
              ("nine fraction digits", "2026-05-01T12:15:00.000000001Z"),
              ("no zone stays text", "2026-05-01T12:15:00"),
              ("epoch zero", "1970-01-01T00:00:00Z"),
              ("year 9999", "9999-12-31T23:59:59Z")]
    for label, stamp in stamps:
        out.append((f"timestamp: {label}", [3, "9", {"currentTime": stamp}]))
    if v16:
        out += [
            ("non-ASCII text", [2, "11", "DataTransfer",
                                {"vendorId": "Ladesäule Köln", "data": "東京 ⚡ Grüße"}]),
            ("id token as hex bytes", [2, "12", "Authorize", {"idTag": "04A2B3C4D5E6F7"}]),
            ("odd-length or lowercase hex stays text",
             [2, "13", "Authorize", {"idTag": "04a2b3c4d5"}]),
            ("large integers", [2, "14", "StartTransaction", {
                "connectorId": 1, "idTag": "ABC", "meterStart": 18446744073709551615,
                "timestamp": STAMP, "reservationId": -9223372036854775808}]),
            ("maximum length strings", [2, "15", "BootNotification", {
                "chargePointVendor": "V" * 20, "chargePointModel": "M" * 20,
                "firmwareVersion": "F" * 50}]),
            ("status value outside the enum stays text",
             [3, "16", {"status": "NotAStatus"}]),
        ]
    else:
        out += [
            ("non-ASCII text", [2, "11", "DataTransfer",
                                {"vendorId": "Ladesäule Köln", "data": "東京 ⚡ Grüße"}]),
            ("any-typed data keeps numbers and vendor keys", [2, "12", "DataTransfer", {
                "vendorId": "com.example", "data": {
                    "big": 18446744073709551615, "neg": -9223372036854775808,
                    "half": 1.5, "single": 7360.25, "double": 0.1, "tiny": 5e-324,
                    "status": 3, "timestamp": "not a time", "flags": [True, False, None]}}]),
            ("customData vendor keys are raw", [2, "13", "Heartbeat", {
                "customData": {"vendorId": "com.example", "status": 7,
                               "timestamp": "2026-05-01T12:15:00+02:00"}}]),
            ("id token as hex bytes and transaction UUID", [2, "14", "TransactionEvent", {
                "eventType": "Started", "timestamp": "2026-05-01T12:15:00.5Z",
                "triggerReason": "Authorized", "seqNo": 0,
                "transactionInfo": {"transactionId": "9f3b2c1e-5a44-4d0b-b3a1-0c2d9e8f7a61"},
                "idToken": {"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"}}]),
            ("upper-case UUID stays text", [2, "15", "TransactionEvent", {
                "eventType": "Ended", "timestamp": STAMP, "triggerReason": "StopAuthorized",
                "seqNo": 4294967296,
                "transactionInfo": {"transactionId": "9F3B2C1E-5A44-4D0B-B3A1-0C2D9E8F7A61"}}]),
            ("fractional numbers", [2, "16", "MeterValues", {"evseId": 1, "meterValue": [
                {"timestamp": STAMP, "sampledValue": [
                    {"value": 0.5}, {"value": 229.8}, {"value": -1.0}, {"value": 65504.0},
                    {"value": 1e300}, {"value": 3.4028234663852886e38}]}]}]),
            ("maximum length strings", [2, "17", "BootNotification", {
                "reason": "PowerUp", "chargingStation": {"model": "M" * 20,
                                                         "vendorName": "V" * 50}}]),
            ("certificate at its maximum length", [2, "18", "CertificateSigned", {
                "certificateChain": "A" * 10000}]),
        ]
    if protocol == "ocpp2.1":
        out += [
            ("SEND", [6, "20", "NotifyPeriodicEventStream",
                      {"id": 1, "pending": 0, "basetime": STAMP, "data": [{"t": 0.5, "v": "1"}]}]),
            ("CALLRESULTERROR", [5, "21", "FormatViolation", "bad result", {}]),
        ]
    return out


# ---- invalid frames -------------------------------------------------------------------------
def _h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def invalid_frames(protocol: str) -> list[tuple[str, bytes]]:
    t = table(protocol)
    hb = t.action_number["Heartbeat"]
    call = _h("84 02 07") + bytes([hb])  # [2, 7, Heartbeat, ...
    frames = [
        ("empty frame", b""),
        ("unknown format byte", _h("02 84 02 07 00 a0")),
        ("body is not an array", _h("00 a0")),
        ("message id is a float", _h("00 84 02 f9 3c00 00 a0")),
        ("message id is an empty text", _h("00 84 02 60 00 a0")),
        ("indefinite-length outer array", _h("00 9f 02 07 00 a0 ff")),
        ("trailing bytes after the body", b"\x00" + call + _h("a0 00")),
        ("indefinite-length payload map", b"\x00" + call + _h("bf ff")),
        ("indefinite-length text", b"\x00" + call + _h("a1 7f ff")),
        ("tag 0 (date string) is not allowed", b"\x00" + call + _h("a1 06 c0 61 78")),
        ("tag 2 (bignum) is not allowed", b"\x00" + call + _h("a1 07 c2 41 01")),
        ("tag 4 outside a date-time key", b"\x00" + call + _h("a1 63 78 78 78 c4 82 20 01")),
        ("nested 33 levels deep", b"\x00" + call + _h("a1 63 78 78 78") + b"\x81" * 30
         + _h("a0")),
        ("map claims 1025 pairs", b"\x00" + call + _h("b9 0401")),
        ("array claims 2^32 items", b"\x00" + call + _h("a1 63 78 78 78 9b 0000000100000000")),
        ("text claims 2^32 bytes", b"\x00" + call + _h("a1 63 78 78 78 7a ffffffff 61")),
        ("invalid UTF-8", b"\x00" + call + _h("a1 63 78 78 78 62 c3 28")),
        ("duplicate key", b"\x00" + call + _h("a2 63 78 78 78 01 63 78 78 78 02")),
        ("key sent as text although it has a number",
         b"\x00" + call + _h("a1") + _text(t.keys[0]) + _h("01")),
        ("unknown key number", b"\x00" + call + _h("a1 19 270f 01")),
        ("unknown enum number", b"\x00" + call + _h("a1")
         + _uint(t.key_number["status"]) + _h("19 270f")),
        ("timestamp after 9999", b"\x00" + call + _h("a1")
         + _uint(t.key_number["timestamp"]) + _h("1b 0000003afff44180")),
        ("tag 37 with 15 bytes", b"\x00" + call + _h("a1 63 78 78 78 d8 25 4f")
         + bytes(15)),
        ("byte string shorter than 4 bytes", b"\x00" + call + _h("a1 63 78 78 78 42 0102")),
        ("NaN", b"\x00" + call + _h("a1 63 78 78 78 f9 7e00")),
        ("undefined", b"\x00" + call + _h("a1 63 78 78 78 f7")),
        ("negative key", b"\x00" + call + _h("a1 20 01")),
        ("unknown action number", _h("00 84 02 07 19 270f a0")),
        ("CALL with 3 elements", _h("00 83 02 07") + bytes([hb])),
        ("message type 9", _h("00 83 09 07 a0")),
        ("broken CALLRESULT is dropped", _h("00 83 03 07 a1 19 270f 01")),
        ("CALLERROR with an unknown code number is dropped", _h("00 85 04 07 19 270f 60 a0")),
        ("zstd frame declares 2^32 bytes", _h("01 e0 0000000001000000")),
        ("zstd frame with an unknown dictionary", _h("01 21 fe 05 00 00 00")),
        ("zstd frame with a checksum", _h("01 24 05 00 00 00")),
        ("zstd frame that is not single-segment", _h("01 00 00 00 00 00")),
        ("zstd header cut short", _h("01 61 07")),
        ("zstd frame that does not decompress", _h("01 20 05 ff ff ff ff ff")),
    ]
    frames.append(("payload expands past 65536 bytes of names and values",
                   b"\x00" + call + _expanding(t)))
    if protocol != "ocpp2.1":
        frames.append(("SEND does not exist before 2.1", _h("00 84 06 07") + bytes([hb])
                       + _h("a0")))
    return frames


def _expanding(t: Any) -> bytes:
    """A small payload whose enum indexes expand past SPEC 7's 65 536 bytes: the key with
    the longest enum value, holding arrays of that value's index (about 3 kB of body)."""
    key = max(t.enums, key=lambda k: max(len(v) for v in t.enums[k]))
    values = t.enums[key]
    index = max(range(len(values)), key=lambda i: len(values[i]))
    repeat = 65536 // len(values[index]) + 1
    rows = [[index] * 1000 for _ in range(repeat // 1000)] + [[index] * (repeat % 1000)]
    return cbor.dumps({t.key_number[key]: rows})


def _uint(n: int) -> bytes:
    return bytes([n]) if n < 24 else bytes([0x18, n]) if n < 256 else b"\x19" + n.to_bytes(2)


def _text(s: str) -> bytes:
    raw = s.encode()
    assert len(raw) < 24
    return bytes([0x60 + len(raw)]) + raw


def answer(error: LiteFrameError, protocol: str) -> dict[str, Any]:
    if error.close_code is not None:
        return {"close": error.close_code}
    if error.answerable:
        return {"callerror": {"id": error.message_id,
                              "code": error.error_code(Version(protocol))}}
    return {"drop": True}


# ---- the file -------------------------------------------------------------------------------
def _valid(label: str, message: list[Any], protocol: str) -> dict[str, Any]:
    frame = encode_frame(message, protocol=protocol)
    entry: dict[str, Any] = {"name": label, "message": message, "hex": frame.hex()}
    normal = normalize(message, protocol)
    if normal != message:
        entry["normalized"] = normal
    assert decode_frame(frame, protocol=protocol) == normal, label
    return entry


def vectors(protocol: str) -> dict[str, Any]:
    valid = [_valid(label, m, protocol) for label, m in schema_messages(protocol)]
    for n, (action, response, payload) in enumerate(CORPUS[protocol]):
        message = [3, "19", payload] if response else [2, "19", action, payload]
        valid.append(_valid(f"typical {n}: {action}{'Response' if response else ''}",
                            message, protocol))
    valid += [_valid(f"edge: {label}", m, protocol) for label, m in edge_messages(protocol)]
    for dictionary in load_dictionaries(protocol, DICT_DIR).values():
        for n, (action, response, payload) in enumerate(CORPUS[protocol]):
            message = [3, "19", payload] if response else [2, "19", action, payload]
            frame = encode_frame(message, protocol=protocol, dictionary=dictionary)
            if frame[0] != 0x01:
                continue  # stayed plain: not shorter compressed
            valid.append({"name": f"zstd dictionary {dictionary.dict_id}: typical {n}: "
                                  f"{action}{'Response' if response else ''}",
                          "message": message, "normalized": normalize(message, protocol),
                          "hex": frame.hex(), "decode_only": True})
    invalid = []
    for label, frame in invalid_frames(protocol):
        try:
            decode_frame(frame, protocol=protocol)
        except LiteFrameError as exc:
            invalid.append({"name": label, "hex": frame.hex(), "answer": answer(exc, protocol),
                            "why": exc.description})
        else:
            raise AssertionError(f"{protocol}: {label} decoded")
    return {"spec": "lite1", "protocol": protocol, "valid": valid, "invalid": invalid}


def render(data: dict[str, Any]) -> str:
    """One vector per line: diffs stay readable and the files stay small."""
    def line(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    head = ",\n".join(f" {line(k)}: {line(v)}" for k, v in data.items()
                      if k not in ("valid", "invalid"))
    valid = ",\n".join(f"  {line(v)}" for v in data["valid"])
    invalid = ",\n".join(f"  {line(v)}" for v in data["invalid"])
    return f'{{\n{head},\n "valid": [\n{valid}\n ],\n "invalid": [\n{invalid}\n ]\n}}\n'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    files = {OUT / f"{protocol}.json": render(vectors(protocol)) for protocol in FOLDER}
    return write_generated(files, check=args.check)

if __name__ == "__main__":
    raise SystemExit(main())

"""Lite link test vectors (codecs/vectors/): every vector both ways, and the files are current.

A valid vector encodes to exactly its hex and decodes to its normalized message; an invalid one
gets exactly the answer it names. cbor2, an independent CBOR implementation, must read every
valid body to the same data items our strict reader gives (and refuse nothing we accept).
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import cbor2
import pytest

from lite_csms.lite import LiteFrameError, decode_frame, encode_frame, load_dictionaries
from lite_csms.lite import cbor as lite_cbor
from lite_csms.lite.tables import PROTOCOLS
from lite_csms.ocppj.versions import Version
from tests.conftest import REPO
from tests.test_lite_tables import _tool

vec = _tool("lite_vectors")


def _load(protocol: str) -> dict:
    return json.loads((REPO / "codecs" / "vectors" / f"{protocol}.json").read_text())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_vector_files_are_current(protocol: str) -> None:
    text = (REPO / "codecs" / "vectors" / f"{protocol}.json").read_text()
    assert vec.render(vec.vectors(protocol)) == text, "run tools/lite_vectors.py"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_valid_vectors_both_ways(protocol: str) -> None:
    data = _load(protocol)
    assert data["protocol"] == protocol and data["spec"] == "lite1"
    names = set()
    dictionaries = load_dictionaries(protocol, REPO / "codecs" / "dict")
    for v in data["valid"]:
        frame = bytes.fromhex(v["hex"])
        expected = v.get("normalized", v["message"])
        assert decode_frame(frame, protocol=protocol, dictionaries=dictionaries) == expected, \
            v["name"]
        if not v.get("decode_only"):
            assert encode_frame(v["message"], protocol=protocol).hex() == v["hex"], v["name"]
        names.add(v["name"])
    assert len(names) == len(data["valid"])
    # Every published dictionary has decode-only vectors (SPEC section 9).
    for dict_id in dictionaries:
        assert any(n.startswith(f"zstd dictionary {dict_id}:") for n in names)


def _plain(value):
    """cbor2's and our reader's results in one shape, for comparison."""
    if isinstance(value, lite_cbor.Tag) and value.number == 4:
        # cbor2 decodes a decimal fraction itself, whatever the tag_hook says.
        return Decimal(value.value[1]).scaleb(value.value[0])
    if isinstance(value, lite_cbor.Tag) and value.number == 37:
        return uuid.UUID(bytes=value.value)  # cbor2 decodes tag 37 itself, too
    if isinstance(value, (lite_cbor.Tag, cbor2.CBORTag)):
        return ("tag", value.tag if isinstance(value, cbor2.CBORTag) else value.number,
                _plain(value.value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cbor2_reads_every_valid_body_alike(protocol: str) -> None:
    for v in _load(protocol)["valid"]:
        frame = bytes.fromhex(v["hex"])
        if frame[0] != 0:
            continue
        ours = lite_cbor.loads(frame[1:], tags=frozenset({4, 37}))
        # tag_hook keeps every tag as a plain CBORTag (cbor2 would turn 37 into a UUID).
        theirs = cbor2.loads(frame[1:], tag_hook=lambda _decoder, tag: tag)
        assert _plain(ours) == _plain(theirs), v["name"]
        # Deterministic: the data item has exactly one encoding, the one in the vector.
        assert lite_cbor.dumps(ours) == frame[1:]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_invalid_vectors_get_their_answer(protocol: str) -> None:
    data = _load(protocol)
    assert len(data["invalid"]) >= 35
    for v in data["invalid"]:
        with pytest.raises(LiteFrameError) as caught:
            decode_frame(bytes.fromhex(v["hex"]), protocol=protocol)
        exc = caught.value
        answer = v["answer"]
        if "close" in answer:
            assert exc.close_code == answer["close"], v["name"]
        elif "callerror" in answer:
            assert exc.close_code is None and exc.answerable, v["name"]
            assert exc.message_id == answer["callerror"]["id"], v["name"]
            assert exc.error_code(Version(protocol)) == answer["callerror"]["code"], v["name"]
        else:
            assert answer == {"drop": True}
            assert exc.close_code is None and not exc.answerable, v["name"]


def test_vectors_cover_every_action_both_directions() -> None:
    from lite_csms.lite.tables import table
    for protocol in PROTOCOLS:
        names = {v["name"] for v in _load(protocol)["valid"]}
        for action in table(protocol).actions:
            assert f"{action} minimal" in names and f"{action} full" in names, action
            has_response = vec._schema(protocol, action, True) is not None
            assert (f"{action}Response full" in names) == has_response, action

"""Lite link codec (lite_csms/lite): API, compression with a dictionary, encoding rules."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from lite_csms.lite import (
    FORMAT_CBOR,
    FORMAT_ZSTD,
    LITE_SUBPROTOCOLS,
    LiteDictionary,
    LiteEncodeError,
    cbor,
    decode_frame,
    encode_frame,
    lite_subprotocol,
    load_dictionaries,
    normalize,
)
from lite_csms.lite.frame import zstd_header
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
from lite_corpus import CORPUS


def _messages(protocol: str) -> list[list]:
    out = []
    for n, (action, response, payload) in enumerate(CORPUS[protocol]):
        out.append([3, str(n), payload] if response else [2, str(n), action, payload])
    return out


def tiny_dictionary(protocol: str, dict_id: int = 1) -> LiteDictionary:
    """A dictionary trained in the test from the typical messages (the real ones come from
    the trainer, issue 10 item 2)."""
    samples = []
    for i in range(40):
        for m in _messages(protocol):
            m = list(m)
            m[1] = str(i * 100 + int(m[1]))
            samples.append(encode_frame(m, protocol=protocol)[1:])
    trained = zstandard.train_dictionary(1024, samples, dict_id=dict_id, level=19)
    return LiteDictionary(protocol, trained.as_bytes())


def test_subprotocol_names() -> None:
    assert LITE_SUBPROTOCOLS == {"ocpp1.6.lite1": "ocpp1.6", "ocpp2.0.1.lite1": "ocpp2.0.1",
                                 "ocpp2.1.lite1": "ocpp2.1"}
    assert lite_subprotocol("ocpp2.0.1") == "ocpp2.0.1.lite1"
    with pytest.raises(KeyError):
        lite_subprotocol("ocpp2.0")


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
def test_dictionary_frames_round_trip_and_shrink(protocol: str) -> None:
    dictionary = tiny_dictionary(protocol)
    plain_total = packed_total = 0
    for message in _messages(protocol):
        plain = encode_frame(message, protocol=protocol)
        packed = encode_frame(message, protocol=protocol, dictionary=dictionary)
        # Compressed only when that is shorter; otherwise the plain frame, byte for byte.
        assert len(packed) <= len(plain)
        assert packed == plain or packed[0] == FORMAT_ZSTD
        assert decode_frame(packed, protocol=protocol,
                            dictionaries={dictionary.dict_id: dictionary}) == normalize(
                                message, protocol)
        plain_total += len(plain)
        packed_total += len(packed)
    assert packed_total < plain_total * 0.8


def test_zstd_frame_header_is_what_the_spec_requires() -> None:
    dictionary = tiny_dictionary("ocpp2.0.1", dict_id=5)
    message = _messages("ocpp2.0.1")[9]  # a TransactionEvent Updated
    frame = encode_frame(message, protocol="ocpp2.0.1", dictionary=dictionary)
    assert frame[0] == FORMAT_ZSTD
    descriptor = frame[1]
    assert descriptor & 0x20 and not descriptor & 0x04 and not descriptor & 0x08
    assert descriptor & 0x03 == 1  # one-byte dictionary id
    dict_id, size = zstd_header(frame[1:])
    assert dict_id == 5
    assert size == len(encode_frame(message, protocol="ocpp2.0.1")) - 1


def test_tiny_messages_stay_plain_with_a_dictionary() -> None:
    dictionary = tiny_dictionary("ocpp1.6")
    frame = encode_frame([2, "1", "Heartbeat", {}], protocol="ocpp1.6", dictionary=dictionary)
    assert frame[0] == FORMAT_CBOR


def test_dictionary_of_another_version_is_refused() -> None:
    with pytest.raises(LiteEncodeError):
        encode_frame([2, "1", "Heartbeat", {}], protocol="ocpp2.0.1",
                     dictionary=tiny_dictionary("ocpp1.6"))


def test_load_dictionaries_by_file_name(tmp_path: Path) -> None:
    dictionary = tiny_dictionary("ocpp1.6", dict_id=3)
    (tmp_path / "ocpp1.6-3.zdict").write_bytes(dictionary.data)
    (tmp_path / "ocpp2.0.1-3.zdict").write_bytes(dictionary.data)  # other version: ignored
    found = load_dictionaries("ocpp1.6", tmp_path)
    assert list(found) == [3] and found[3].protocol == "ocpp1.6"
    (tmp_path / "ocpp1.6-4.zdict").write_bytes(dictionary.data)  # name says 4, content 3
    with pytest.raises(ValueError, match="holds dictionary id 3"):
        load_dictionaries("ocpp1.6", tmp_path)


def test_packaged_dictionaries_are_the_published_ones() -> None:
    published = sorted(p.name for p in (REPO / "codecs").glob("dict/*.zdict"))
    packaged = sorted(p.name for p in (REPO / "lite_csms" / "lite" / "data").glob("*.zdict"))
    assert published == packaged
    for name in published:
        assert (REPO / "codecs" / "dict" / name).read_bytes() == (
            REPO / "lite_csms" / "lite" / "data" / name).read_bytes()


@pytest.mark.parametrize(("message_id", "first_bytes"), [
    ("0", "8402 00"), ("23", "8402 17"), ("24", "8402 1818"),
    ("18446744073709551615", "8402 1bffffffffffffffff"),
    ("007", "8402 63303037"), ("c0ffee00-0000-4000-8000-000000000001", "8402 d82550c0ffee00"),
])
def test_message_id_forms(message_id: str, first_bytes: str) -> None:
    frame = encode_frame([2, message_id, "Heartbeat", {}], protocol="ocpp1.6")
    assert frame[1:].hex().startswith(first_bytes.replace(" ", ""))
    assert decode_frame(frame, protocol="ocpp1.6")[1] == message_id


@pytest.mark.parametrize("message", [
    [2, "x" * 37, "Heartbeat", {}],
    [2, "", "Heartbeat", {}],
    [2, 7, "Heartbeat", {}],
    [2, "1", "StatusNotification", {"status": 3}],  # integer where an enum is expected
    [3, "1", {"currentTime": 1777637700}],          # integer where a timestamp is expected
    [2, "1", "MeterValues", {"connectorId": 2**64}],
    [2, "1", "MeterValues", {"connectorId": float("nan")}],
    [2, "1", "Heartbeat", {"x": {1, 2}}],
    [2, "1", "DataTransfer", {"vendorId": "\ud800"}],  # a lone surrogate is not UTF-8
    [5, "1", "FormatViolation", "", {}],            # 2.1 only
    [3, "1"],
])
def test_unrepresentable_messages_raise_encode_error(message: list) -> None:
    with pytest.raises(LiteEncodeError):
        encode_frame(message, protocol="ocpp1.6")


def test_encode_refuses_what_a_receiver_must_refuse() -> None:
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(LiteEncodeError, match="deeper"):
        encode_frame([2, "1", "DataTransfer", {"vendorId": "v", "data": deep}],
                     protocol="ocpp2.0.1")
    with pytest.raises(LiteEncodeError, match="items"):
        encode_frame([2, "1", "DataTransfer", {"vendorId": "v", "data": list(range(1025))}],
                     protocol="ocpp2.0.1")


def test_key_order_does_not_change_the_bytes() -> None:
    a = {"connectorId": 1, "errorCode": "NoError", "status": "Available", "vendorId": "x"}
    b = dict(reversed(list(a.items())))
    assert encode_frame([2, "1", "StatusNotification", a], protocol="ocpp1.6") == \
        encode_frame([2, "1", "StatusNotification", b], protocol="ocpp1.6")


@pytest.mark.parametrize(("sent", "received"), [
    ("2026-05-01T12:15:00Z", "2026-05-01T12:15:00Z"),
    ("2026-05-01T14:15:00+02:00", "2026-05-01T12:15:00Z"),
    ("2026-05-01T12:15:00+00:00", "2026-05-01T12:15:00Z"),
    ("2026-05-01T12:15:00-00:00", "2026-05-01T12:15:00Z"),
    ("2026-05-01T00:15:00.120-03:30", "2026-05-01T03:45:00.120Z"),
    ("2026-05-01T12:15:00.000Z", "2026-05-01T12:15:00.000Z"),
    ("2026-05-01T12:15:00", "2026-05-01T12:15:00"),          # no zone: text, unchanged
    ("2026-05-01t12:15:00z", "2026-05-01t12:15:00z"),        # lower case: text, unchanged
    ("2026-02-30T12:15:00Z", "2026-02-30T12:15:00Z"),        # no such day: text
    ("2026-05-01T23:59:60Z", "2026-05-01T23:59:60Z"),        # leap second: text
    ("1969-12-31T23:59:59Z", "1969-12-31T23:59:59Z"),        # before 1970: text
    ("2026-05-01T12:15:00.1234567891Z", "2026-05-01T12:15:00.1234567891Z"),  # 10 digits
])
def test_timestamp_normalization(sent: str, received: str) -> None:
    for protocol in ("ocpp1.6", "ocpp2.0.1"):
        message = [3, "1", {"currentTime": sent}]
        decoded = decode_frame(encode_frame(message, protocol=protocol), protocol=protocol)
        assert decoded[2]["currentTime"] == received
        assert normalize(message, protocol)[2]["currentTime"] == received


def test_whole_second_timestamp_is_a_plain_integer() -> None:
    frame = encode_frame([3, "1", {"currentTime": "2026-05-01T12:15:00Z"}], protocol="ocpp1.6")
    # a1 0b 1a 69f49944: {11: 1777637700}, currentTime is key 11 in 1.6
    assert frame.hex().endswith("a10b1a69f49944")


def test_raw_values_keep_their_type_under_table_key_names() -> None:
    message = [2, "1", "Heartbeat", {"customData": {
        "vendorId": "v", "status": 7, "timestamp": "2026-05-01T14:15:00+02:00"}}]
    decoded = decode_frame(encode_frame(message, protocol="ocpp2.0.1"), protocol="ocpp2.0.1")
    assert decoded == message


def test_hex_and_uuid_rules_are_lossless_anywhere() -> None:
    payload = {"vendorId": "ABCDEF0123", "messageId": "0123456789abcdef0123456789ABCDEF",
               "data": "c0ffee00-0000-4000-8000-000000000001"}
    message = [2, "1", "DataTransfer", payload]
    frame = encode_frame(message, protocol="ocpp1.6")
    assert bytes.fromhex("abcdef0123") in frame  # 10 hex digits -> 5 bytes
    assert bytes.fromhex("d82550c0ffee00") in frame  # tag 37 + 16 bytes
    assert decode_frame(frame, protocol="ocpp1.6") == message


SPEC_EXAMPLES = [
    ("ocpp1.6", [2, "19", "Heartbeat", {}], "00 84 02 13 03 a0"),
    ("ocpp1.6", [3, "19", {"currentTime": "2026-05-01T12:15:00Z"}],
     "00 83 03 13 a1 0b 1a 69f49944"),
    ("ocpp1.6", [2, "20", "StatusNotification", {
        "connectorId": 1, "errorCode": "NoError", "status": "Charging",
        "timestamp": "2026-05-01T12:15:00Z"}],
     "00 84 02 14 06 a4 | 00 18 2e | 06 1a 69f49944 | 07 01 | 12 06"),
    ("ocpp1.6", [2, "21", "Authorize", {"idTag": "04A2B3C4D5E6F7"}],
     "00 84 02 15 00 a1 08 47 04a2b3c4d5e6f7"),
    ("ocpp2.0.1", [4, "23", "FormatViolation", "bad key", {}],
     "00 85 04 17 00 67 626164206b6579 a0"),
    ("ocpp2.0.1", [2, "24", "DataTransfer", {"vendorId": "com.example", "data": {"status": 5}}],
     "00 84 02 18 18 12 a2 18 33 6b 636f6d2e6578616d706c65 18 63 a1 0d 05"),
]


@pytest.mark.parametrize(("protocol", "message", "spaced"), SPEC_EXAMPLES)
def test_spec_worked_examples(protocol: str, message: list, spaced: str) -> None:
    """The byte-level examples of codecs/SPEC.md section 10 are what the encoder writes."""
    frame = encode_frame(message, protocol=protocol)
    assert frame.hex() == spaced.replace(" ", "").replace("|", "")
    assert decode_frame(frame, protocol=protocol) == message
    spec = (REPO / "codecs" / "SPEC.md").read_text()
    assert spaced in spec or frame.hex() in _listed_hex(spec)


def _listed_hex(spec: str) -> set[str]:
    """The hex of each annotated listing in SPEC.md: per line, the hex tokens before the
    first double space."""
    found = set()
    for block in spec.split("```")[1::2]:
        parts = []
        for line in block.splitlines():
            tokens = line.strip().split("  ")[0].split()
            if tokens and all(re.fullmatch(r"[0-9a-f]+", t) for t in tokens):
                parts.append("".join(tokens))
        found.add("".join(parts))
    return found


def test_spec_transaction_event_example() -> None:
    message = [2, "22", "TransactionEvent", {
        "eventType": "Updated", "timestamp": "2026-05-01T12:15:00.250Z",
        "triggerReason": "MeterValuePeriodic", "seqNo": 17,
        "transactionInfo": {"transactionId": "9f3b2c1e-5a44-4d0b-b3a1-0c2d9e8f7a61"},
        "meterValue": [{"timestamp": "2026-05-01T12:15:00Z", "sampledValue": [
            {"value": 15234.5, "measurand": "Energy.Active.Import.Register"}]}]}]
    spec = (REPO / "codecs" / "SPEC.md").read_text()
    assert encode_frame(message, protocol="ocpp2.0.1").hex() in _listed_hex(spec)


_CBOR_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64 - 1), st.binary(max_size=8),
              st.text(max_size=8), st.floats(allow_nan=False, allow_infinity=False),
              st.binary(min_size=16, max_size=16).map(lambda b: cbor.Tag(37, b))),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.integers(0, 2**64 - 1), st.text(max_size=4)), inner,
                        max_size=4)),
    max_leaves=20)


@settings(max_examples=100, deadline=None, database=None)
@given(_CBOR_VALUES)
def test_whatever_the_writer_writes_the_reader_reads_back(value: object) -> None:
    data = cbor.dumps(value)
    back = cbor.loads(data, tags=frozenset({37}))
    assert back == value and cbor.dumps(back) == data

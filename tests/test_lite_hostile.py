"""Lite link, issue 10 item 8: hostile frames get the answer codecs/SPEC.md section 8 defines,
memory stays bounded, and nothing but LiteFrameError ever comes out of the decoder."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import cbor2
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lite_csms.lite import (
    CLOSE_INVALID,
    CLOSE_TOO_BIG,
    CLOSE_UNKNOWN_DICTIONARY,
    LiteDictionary,
    LiteFrameError,
    decode_frame,
    encode_frame,
)
from lite_csms.lite.tables import table
from lite_csms.ocppj.versions import Version

P = "ocpp2.0.1"
HB = table(P).action_number["Heartbeat"]


def _error(frame: bytes, protocol: str = P, **kw) -> LiteFrameError:
    with pytest.raises(LiteFrameError) as caught:
        decode_frame(frame, protocol=protocol, **kw)
    return caught.value


def _peak(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        try:
            run()
        except LiteFrameError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _call_prefix() -> bytes:
    return bytes([0x00, 0x84, 0x02, 0x07, HB])  # [2, 7, Heartbeat, ...


def _magicless(data: bytes, **params) -> bytes:
    cctx = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters(
        format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_checksum=False, **params))
    return cctx.compress(data)


# ---- zstd ---------------------------------------------------------------------------------
def test_huge_declared_content_size_closes_1009_before_decompressing() -> None:
    # A real frame: 1 MiB of zeros compresses to a few dozen bytes; its header declares 1 MiB.
    frame = b"\x01" + zstandard.ZstdCompressor(
        compression_params=zstandard.ZstdCompressionParameters(
            format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_checksum=False,
            write_content_size=True)).compress(bytes(1 << 20))
    assert zstandard.frame_content_size(b"\x28\xb5\x2f\xfd" + frame[1:]) == 1 << 20
    error = _error(frame)
    assert error.close_code == CLOSE_TOO_BIG
    assert _peak(lambda: decode_frame(frame, protocol=P)) < 64 * 1024


def test_forged_content_size_header_closes_1009() -> None:
    # Single-segment, 8-byte content size of 2**40: rejected from the header alone.
    frame = bytes([0x01, 0xE0]) + (1 << 40).to_bytes(8, "little") + b"\x00" * 8
    assert _error(frame).close_code == CLOSE_TOO_BIG


def test_content_size_that_lies_is_invalid_and_bounded() -> None:
    # Declares 300 bytes but the blocks inflate to 60000: zstd stops at the declared window.
    honest = _magicless(bytes(60000), write_content_size=True)
    descriptor = honest[0]
    assert descriptor & 0x20  # single segment
    fcs_size = (1, 2, 4, 8)[descriptor >> 6]
    lying = bytes([0x60 | (descriptor & 0x1F)]) + (300 - 256).to_bytes(2, "little") \
        + honest[1 + fcs_size:]
    frame = b"\x01" + lying
    assert _error(frame).close_code == CLOSE_INVALID
    assert _peak(lambda: decode_frame(frame, protocol=P)) < 256 * 1024


def test_frame_without_content_size_is_invalid() -> None:
    frame = b"\x01" + _magicless(b"\x84\x02\x07\x03\xa0" * 10, write_content_size=False)
    assert _error(frame).close_code == CLOSE_INVALID


def test_unknown_dictionary_id_closes_4010() -> None:
    samples = [encode_frame([2, str(i), "Heartbeat", {"customData": {"vendorId": f"v{i}"}}],
                            protocol=P)[1:] * 4 for i in range(300)]
    trained = zstandard.train_dictionary(2048, samples, dict_id=77)
    ours = LiteDictionary(P, trained.as_bytes())
    frame = encode_frame([2, "1", "BootNotification", {
        "reason": "PowerUp", "chargingStation": {"model": "m" * 20, "vendorName": "v" * 40}}],
        protocol=P, dictionary=ours)
    assert frame[0] == 0x01
    assert _error(frame, dictionaries={}).close_code == CLOSE_UNKNOWN_DICTIONARY
    assert decode_frame(frame, protocol=P, dictionaries={77: ours})[2] == "BootNotification"


def test_zstd_followed_by_more_bytes_or_a_second_frame_is_invalid() -> None:
    body = encode_frame([2, "1", "Heartbeat", {}], protocol=P)[1:] * 3
    one = _magicless(body, write_content_size=True)
    for tail in (b"\x00", one):
        assert _error(b"\x01" + one + tail).close_code == CLOSE_INVALID


def test_oversize_frame_closes_1009() -> None:
    assert _error(b"\x00" + bytes(65536)).close_code == CLOSE_TOO_BIG


# ---- CBOR ---------------------------------------------------------------------------------
def test_trailing_bytes_get_format_violation_under_the_id() -> None:
    frame = encode_frame([2, "41", "Heartbeat", {}], protocol=P) + b"\xf6"
    error = _error(frame)
    assert (error.message_id, error.error_code(Version.OCPP201)) == ("41", "FormatViolation")
    error16 = _error(encode_frame([2, "41", "Heartbeat", {}], protocol="ocpp1.6") + b"\x00",
                     protocol="ocpp1.6")
    assert error16.error_code(Version.OCPP16) == "FormationViolation"


@pytest.mark.parametrize("tag", [0, 1, 2, 3, 5, 21, 24, 32, 36, 55799, 2**32])
def test_every_other_tag_is_refused(tag: int) -> None:
    body = cbor2.dumps(cbor2.CBORTag(tag, "x"))
    frame = _call_prefix() + b"\xa1\x63xxx" + body
    error = _error(frame)
    assert error.answerable and error.message_id == "7"
    assert error.error_code(Version.OCPP201) == "FormatViolation"


@pytest.mark.parametrize("head", [b"\x5f\x41a\xff", b"\x7f\x61a\xff", b"\x9f\xff", b"\xbf\xff"])
def test_indefinite_lengths_are_refused(head: bytes) -> None:
    error = _error(_call_prefix() + b"\xa1\x63xxx" + head)
    assert error.answerable and error.kind is not None


def test_indefinite_outer_array_closes_1007() -> None:
    assert _error(b"\x00\x9f\x02\x07\x03\xa0\xff").close_code == CLOSE_INVALID


def test_depth_bomb_is_refused_without_recursion_error() -> None:
    bomb = _call_prefix() + b"\xa1\x63xxx" + b"\x81" * 60000
    error = _error(bomb[:65536])
    assert error.message_id == "7" and "deeper" in error.description


@pytest.mark.parametrize("count", [1025, 2**16, 2**32 - 1, 2**64 - 1])
def test_item_count_bombs_are_refused_before_allocating(count: int) -> None:
    head = b"\x9b" + count.to_bytes(8, "big")
    frame = _call_prefix() + b"\xa1\x63xxx" + head + b"\x00" * 16
    error = _error(frame)
    assert error.message_id == "7"
    assert _peak(lambda: decode_frame(frame, protocol=P)) < 64 * 1024


def test_string_length_bomb_is_refused_before_allocating() -> None:
    frame = _call_prefix() + b"\xa1\x63xxx\x7b" + (2**63).to_bytes(8, "big") + b"a"
    assert _error(frame).message_id == "7"
    assert _peak(lambda: decode_frame(frame, protocol=P)) < 64 * 1024


def test_unknown_key_number_is_format_violation_for_a_call_and_dropped_for_a_result() -> None:
    unknown = len(table(P).keys) + 5
    key = b"\x19" + unknown.to_bytes(2, "big")
    call = _error(_call_prefix() + b"\xa1" + key + b"\x01")
    assert call.answerable and call.error_code(Version.OCPP201) == "FormatViolation"
    result = _error(b"\x00\x83\x03\x07\xa1" + key + b"\x01")
    assert not result.answerable and result.close_code is None


def test_unknown_action_number_is_not_implemented() -> None:
    frame = b"\x00\x84\x02\x07\x19\x03\xe8\xa0"
    error = _error(frame)
    assert error.error_code(Version.OCPP201) == "NotImplemented" and error.message_id == "7"


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    for frame in (data, b"\x00" + data, b"\x01" + data):
        try:
            message = decode_frame(frame, protocol=P)
        except LiteFrameError as exc:
            assert exc.close_code is not None or exc.message_id is not None
        else:
            assert isinstance(message, list) and isinstance(message[1], str)


_GOOD = encode_frame([2, "123", "TransactionEvent", {
    "eventType": "Updated", "timestamp": "2026-05-01T12:15:00.5Z", "triggerReason": "Authorized",
    "seqNo": 3, "transactionInfo": {"transactionId": "9f3b2c1e-5a44-4d0b-b3a1-0c2d9e8f7a61"},
    "idToken": {"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"},
    "meterValue": [{"timestamp": "2026-05-01T12:15:00Z",
                    "sampledValue": [{"value": 1.5, "measurand": "Voltage"}]}]}], protocol=P)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.integers(1, len(_GOOD) - 1), st.integers(0, 255), st.integers(0, len(_GOOD)))
def test_mutated_frames_never_raise_anything_else(where: int, byte: int, cut: int) -> None:
    frame = bytearray(_GOOD)
    frame[where] = byte
    for candidate in (bytes(frame), bytes(frame[:cut])):
        try:
            decode_frame(candidate, protocol=P)
        except LiteFrameError:
            pass

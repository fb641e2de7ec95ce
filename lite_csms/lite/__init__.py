"""The lite link: compact CBOR + zstd frames for OCPP-J (codecs/SPEC.md), sans-IO.

Public API: `encode_frame`, `decode_frame`, `LiteFrameError` (carries the answer a bad frame
gets), `LiteEncodeError`, `LiteDictionary`, `load_dictionaries`, `LITE_SUBPROTOCOLS`,
`lite_subprotocol`, `normalize`.
"""

from lite_csms.lite.frame import (
    CLOSE_INVALID,
    CLOSE_TOO_BIG,
    CLOSE_UNKNOWN_DICTIONARY,
    CLOSE_UNSUPPORTED,
    FORMAT_CBOR,
    FORMAT_ZSTD,
    LITE_SUBPROTOCOLS,
    MAX_BODY,
    MAX_FRAME,
    LiteDictionary,
    LiteEncodeError,
    LiteFrameError,
    decode_body,
    decode_frame,
    encode_body,
    encode_frame,
    lite_subprotocol,
    load_dictionaries,
)
from lite_csms.lite.normalize import normalize

__all__ = [
    "CLOSE_INVALID", "CLOSE_TOO_BIG", "CLOSE_UNKNOWN_DICTIONARY", "CLOSE_UNSUPPORTED",
    "FORMAT_CBOR", "FORMAT_ZSTD", "LITE_SUBPROTOCOLS", "MAX_BODY", "MAX_FRAME",
    "LiteDictionary", "LiteEncodeError", "LiteFrameError", "decode_body", "decode_frame",
    "encode_body", "encode_frame", "lite_subprotocol", "load_dictionaries", "normalize",
]

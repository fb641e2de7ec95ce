"""The lite link on a live connection: binary frames <-> the OCPP-J text the session reads.

A lite frame (codecs/SPEC.md) decodes to the same message list a JSON frame parses to. It is
handed to the RPC session as that list written out as JSON, so framing checks, lenient
repairs, validation, handlers and accounting see exactly what an OCPP-J station would have
sent; the session's own text is turned back into a lite frame on the way out. The cost is one
orjson round trip per message, a few microseconds against the CBOR and zstd work.

The codec holds no per-connection state: one per OCPP version per process, its dictionaries
loaded once and shared by every connection (an idle lite station costs no compression window).
"""

from __future__ import annotations

import functools
import json
import logging

import orjson

from lite_csms.lite import (
    LITE_SUBPROTOCOLS,
    LiteDictionary,
    LiteEncodeError,
    LiteFrameError,
    decode_frame,
    encode_frame,
    load_dictionaries,
)
from lite_csms.ocppj.framing import CallError, encode
from lite_csms.ocppj.versions import ErrorKind, Version, error_code

log = logging.getLogger("lite_csms.net")

__all__ = ["LITE_SUBPROTOCOLS", "LiteCodec", "LiteEncodeError", "LiteFrameError", "close_reason",
           "codec_for", "lite_name", "refusal_text"]
# RFC 6455 5.5: a close frame's reason fits a 125-byte control frame after its 2-byte code.
MAX_CLOSE_REASON = 123


def lite_name(version: Version) -> str:
    """"ocpp2.0.1" -> "ocpp2.0.1.lite1": the subprotocol a lite station offers."""
    return f"{version.value}.lite1"


class LiteCodec:
    """Frames of one OCPP version. `decode` raises LiteFrameError (its answer: close code,
    CALLERROR or drop, SPEC section 8); `encode` raises LiteEncodeError."""

    def __init__(self, version: Version, dictionaries: dict[int, LiteDictionary]) -> None:
        self.version = version
        self.protocol = version.value
        self.dictionaries = dictionaries
        # Our frames use the newest published dictionary (ids only grow); a station that
        # lacks it closes with 4010 and needs the newer dictionary file.
        self.outbound = dictionaries[max(dictionaries)] if dictionaries else None

    def decode(self, frame: bytes) -> str:
        """The OCPP-J text of one binary message."""
        message = decode_frame(frame, protocol=self.protocol, dictionaries=self.dictionaries)
        try:
            return orjson.dumps(message).decode()
        except orjson.JSONEncodeError:
            # An integer beyond 64 bits, which CBOR carries and orjson does not write: the
            # standard writer keeps it, and the session judges it as it would in JSON text.
            return json.dumps(message, ensure_ascii=False, separators=(",", ":"))

    def encode(self, text: str) -> bytes:
        """The lite frame for a message the session wrote."""
        return encode_frame(orjson.loads(text), protocol=self.protocol,
                            dictionary=self.outbound)


@functools.cache
def codec_for(version: Version) -> LiteCodec:
    dictionaries = load_dictionaries(version.value)
    log.info("lite link for %s: dictionaries %s", version.value,
             sorted(dictionaries) or "none (plain CBOR frames)")
    return LiteCodec(version, dictionaries)


def refusal_text(error: LiteFrameError, version: Version) -> str:
    """The CALLERROR a frame that cannot be decoded gets, as OCPP-J text (`error.answerable`)."""
    code = error.error_code(version) or error_code(version, ErrorKind.GENERIC)
    return encode(CallError(error.message_id or "-1", code, error.description))


def close_reason(description: str) -> str:
    """`description` cut to what a close frame can carry (whole UTF-8 characters)."""
    return description.encode()[:MAX_CLOSE_REASON].decode(errors="ignore")

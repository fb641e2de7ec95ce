"""Lite-link frames: one binary WebSocket message <-> one OCPP-J message list (sans-IO).

codecs/SPEC.md is the normative text; section numbers below refer to it. A decoded message
is exactly the list the JSON path produces (`[2, "19", "Heartbeat", {}]`), so validation,
handlers and accounting downstream see no difference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zstandard

from lite_csms.lite import cbor
from lite_csms.lite.cbor import Tag
from lite_csms.lite.payload import (
    TAG_DECIMAL_FRACTION,
    TAG_UUID,
    CompactError,
    ExpansionTooLarge,
    compact,
    expand,
)
from lite_csms.lite.tables import PROTOCOLS, Table, table
from lite_csms.ocppj.versions import ErrorKind, Version, error_code

# Section 3: the first byte of every binary frame.
FORMAT_CBOR = 0x00
FORMAT_ZSTD = 0x01
# Section 7 limits.
MAX_FRAME = 65536
MAX_BODY = 65536
MAX_MESSAGE_ID = 36
# Section 7 close codes.
CLOSE_UNSUPPORTED = 1003  # a text frame on a lite connection (sent by the I/O layer)
CLOSE_INVALID = 1007
CLOSE_TOO_BIG = 1009
CLOSE_UNKNOWN_DICTIONARY = 4010

# Section 2: one lite subprotocol per OCPP version.
LITE_SUBPROTOCOLS: dict[str, str] = {f"{p}.lite1": p for p in PROTOCOLS}
DEFAULT_LEVEL = 19

CALL, CALLRESULT, CALLERROR, CALLRESULTERROR, SEND = 2, 3, 4, 5, 6
_TYPES = {"ocpp1.6": frozenset({2, 3, 4}), "ocpp2.0.1": frozenset({2, 3, 4}),
          "ocpp2.1": frozenset({2, 3, 4, 5, 6})}
_DECIMAL_ID = re.compile(r"0|[1-9][0-9]{0,19}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DICT_FILE = re.compile(r"(ocpp[0-9.]+)-([0-9]+)\.zdict")


def lite_subprotocol(protocol: str) -> str:
    """"ocpp2.0.1" -> "ocpp2.0.1.lite1"."""
    if protocol not in PROTOCOLS:
        raise KeyError(protocol)
    return f"{protocol}.lite1"


class LiteEncodeError(ValueError):
    """A message the lite link cannot carry (section 7): a limit, an integer where the table
    expects an enum or timestamp, an id longer than 36 characters, a non-JSON value."""


class LiteFrameError(Exception):
    """An inbound frame that cannot be decoded, with the answer section 8 requires.

    - `close_code` set: close the WebSocket with it (no CALLERROR; the id was unreadable, the
      frame oversize or its dictionary unknown);
    - else, `answerable`: send CALLERROR `message_id`, `error_code(version)`, `description`;
    - else: drop the frame with one log line (a broken CALLRESULT or CALLERROR is never
      answered, OCPP-J Part 4).
    """

    def __init__(self, description: str, *, close_code: int | None = None,
                 kind: ErrorKind | None = None, message_id: str | None = None,
                 answerable: bool = False) -> None:
        super().__init__(description)
        self.description = description
        self.close_code = close_code
        self.kind = kind
        self.message_id = message_id
        self.answerable = answerable

    def error_code(self, version: Version) -> str | None:
        return None if self.kind is None else error_code(version, self.kind)


class LiteDictionary:
    """One published zstd dictionary (section 4.3). Built once per process and shared by
    every connection: a compressor and a decompressor, no per-connection window."""

    def __init__(self, protocol: str, data: bytes, *, level: int = DEFAULT_LEVEL) -> None:
        self.protocol = protocol
        self.data = data
        self._dict = zstandard.ZstdCompressionDict(data)
        self.dict_id = self._dict.dict_id()
        if not 1 <= self.dict_id <= 0xFFFF:
            raise ValueError(f"dictionary id {self.dict_id} is outside 1..65535")
        self.level = level
        self._compressor: zstandard.ZstdCompressor | None = None
        self._decompressor: zstandard.ZstdDecompressor | None = None

    def compress(self, body: bytes) -> bytes:
        if self._compressor is None:
            params = zstandard.ZstdCompressionParameters.from_level(
                self.level, source_size=MAX_BODY, format=zstandard.FORMAT_ZSTD1_MAGICLESS,
                write_content_size=True, write_checksum=False, write_dict_id=True)
            self._compressor = zstandard.ZstdCompressor(dict_data=self._dict,
                                                        compression_params=params)
        return self._compressor.compress(body)

    def decompressobj(self) -> Any:
        if self._decompressor is None:
            self._decompressor = zstandard.ZstdDecompressor(
                dict_data=self._dict, format=zstandard.FORMAT_ZSTD1_MAGICLESS)
        return self._decompressor.decompressobj()


_PLAIN_ZSTD = zstandard.ZstdDecompressor(format=zstandard.FORMAT_ZSTD1_MAGICLESS)


def load_dictionaries(protocol: str, folder: Path | None = None) -> dict[int, LiteDictionary]:
    """Every `<protocol>-<id>.zdict` in `folder` (default: the package's data folder, a copy of
    codecs/dict/), by id. Raises ValueError when a file's name and content disagree on the id."""
    if folder is None:
        folder = Path(__file__).resolve().parent / "data"
    found: dict[int, LiteDictionary] = {}
    for path in sorted(folder.glob(f"{protocol}-*.zdict")):
        match = _DICT_FILE.fullmatch(path.name)
        if match is None or match.group(1) != protocol:
            continue
        dictionary = LiteDictionary(protocol, path.read_bytes())
        if dictionary.dict_id != int(match.group(2)):
            raise ValueError(f"{path.name} holds dictionary id {dictionary.dict_id}")
        found[dictionary.dict_id] = dictionary
    return found


# ---- encoding -------------------------------------------------------------------------------
def _encode_id(message_id: Any) -> Any:
    if type(message_id) is not str or not 1 <= len(message_id) <= MAX_MESSAGE_ID:
        raise LiteEncodeError("a message id is a string of 1 to 36 characters")
    if _DECIMAL_ID.fullmatch(message_id) and int(message_id) <= cbor.UINT64_MAX:
        return int(message_id)
    if _UUID.fullmatch(message_id):
        return Tag(TAG_UUID, bytes.fromhex(message_id.replace("-", "")))
    return message_id


def _number(name: Any, numbers: dict[str, int], what: str) -> Any:
    if type(name) is not str or not name:
        raise LiteEncodeError(f"{what} must be a non-empty string")
    return numbers.get(name, name)


def encode_body(message: list[Any], protocol: str) -> bytes:
    """The CBOR body (section 5) of an OCPP-J message list. Raises LiteEncodeError."""
    t = table(protocol)
    if not isinstance(message, list) or not message or type(message[0]) is not int:
        raise LiteEncodeError("a message is a list starting with its type number")
    kind = message[0]
    if kind not in _TYPES[protocol]:
        raise LiteEncodeError(f"message type {kind} does not exist in {protocol}")
    shape = {CALL: 4, SEND: 4, CALLRESULT: 3}.get(kind, 5)
    if len(message) != shape or not isinstance(message[-1], dict):
        raise LiteEncodeError(f"message type {kind} has {shape} elements, the last an object")
    try:
        out: list[Any] = [kind, _encode_id(message[1])]
        if kind in (CALL, SEND):
            out += [_number(message[2], t.action_number, "an action"), compact(message[3], t)]
        elif kind == CALLRESULT:
            out.append(compact(message[2], t))
        else:
            if type(message[3]) is not str:
                raise LiteEncodeError("an error description is a string")
            out += [_number(message[2], t.error_number, "an error code"), message[3],
                    compact(message[4], t, raw=True)]
        body = cbor.dumps(out)
    except (CompactError, cbor.CborError) as exc:
        raise LiteEncodeError(str(exc)) from None
    if len(body) > MAX_BODY:
        raise LiteEncodeError(f"body of {len(body)} bytes exceeds {MAX_BODY}")
    return body


def encode_frame(message: list[Any], *, protocol: str,
                 dictionary: LiteDictionary | None = None) -> bytes:
    """One binary WebSocket message for an OCPP-J message list.

    `protocol` is the plain OCPP name ("ocpp2.0.1"). With a `dictionary` of that protocol the
    body is zstd-compressed when that is shorter (section 4). Raises LiteEncodeError.
    """
    body = encode_body(message, protocol)
    if dictionary is not None:
        if dictionary.protocol != protocol:
            raise LiteEncodeError(f"dictionary is for {dictionary.protocol}, not {protocol}")
        packed = dictionary.compress(body)
        if len(packed) < len(body):
            return bytes((FORMAT_ZSTD,)) + packed
    frame = bytes((FORMAT_CBOR,)) + body
    if len(frame) > MAX_FRAME:
        raise LiteEncodeError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME}")
    return frame


# ---- decoding -------------------------------------------------------------------------------
_TAGS = frozenset({TAG_DECIMAL_FRACTION, TAG_UUID})


def zstd_header(frame: bytes) -> tuple[int, int]:
    """(dictionary id, content size) from a magicless zstd frame header (section 4.2).

    Raises LiteFrameError: 1007 unless Single_Segment is set, the checksum flag and the
    reserved bit clear and the header complete; 1009 if the content size exceeds MAX_BODY.
    """
    if not frame:
        raise LiteFrameError("zstd frame is empty", close_code=CLOSE_INVALID)
    descriptor = frame[0]
    fcs_flag, single, reserved, checksum, did_flag = (
        descriptor >> 6, descriptor >> 5 & 1, descriptor >> 3 & 1, descriptor >> 2 & 1,
        descriptor & 3)
    if not single or reserved or checksum:
        raise LiteFrameError(
            "zstd frame must be single-segment, without checksum, reserved bit clear",
            close_code=CLOSE_INVALID)
    did_size = (0, 1, 2, 4)[did_flag]
    fcs_size = (1, 2, 4, 8)[fcs_flag]
    if len(frame) < 1 + did_size + fcs_size:
        raise LiteFrameError("zstd frame header is cut short", close_code=CLOSE_INVALID)
    dict_id = int.from_bytes(frame[1:1 + did_size], "little")
    size = int.from_bytes(frame[1 + did_size:1 + did_size + fcs_size], "little")
    if fcs_size == 2:
        size += 256
    if size > MAX_BODY:
        raise LiteFrameError(f"zstd frame declares {size} bytes (limit {MAX_BODY})",
                             close_code=CLOSE_TOO_BIG)
    if size == 0:
        raise LiteFrameError("zstd frame declares an empty body", close_code=CLOSE_INVALID)
    return dict_id, size


def _inflate(frame: bytes, dictionaries: Mapping[int, LiteDictionary]) -> bytes:
    dict_id, size = zstd_header(frame)
    if dict_id == 0:
        stream = _PLAIN_ZSTD.decompressobj()
    elif dict_id in dictionaries:
        stream = dictionaries[dict_id].decompressobj()
    else:
        raise LiteFrameError(f"unknown dictionary {dict_id}",
                             close_code=CLOSE_UNKNOWN_DICTIONARY)
    try:
        body = stream.decompress(frame)
    except zstandard.ZstdError as exc:
        raise LiteFrameError(f"zstd: {exc}", close_code=CLOSE_INVALID) from None
    if not stream.eof or stream.unused_data or len(body) != size:
        raise LiteFrameError("zstd frame is incomplete, followed by bytes, or of another size",
                             close_code=CLOSE_INVALID)
    return body


def _decode_id(raw: Any) -> str | None:
    if type(raw) is int and raw >= 0:
        return str(raw)
    if isinstance(raw, Tag) and raw.number == TAG_UUID:
        if type(raw.value) is bytes and len(raw.value) == 16:
            h = raw.value.hex()
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        return None
    if type(raw) is str and 1 <= len(raw) <= MAX_MESSAGE_ID:
        return raw
    return None


def _salvage(body: bytes, protocol: str, description: str) -> LiteFrameError:
    """The answer for a body that is not well-formed or breaks a limit (section 8)."""
    head = cbor.peek_message_head(body)
    message_id = None if head is None else _decode_id(head[1])
    if head is None or message_id is None or head[0] not in _TYPES[protocol]:
        return LiteFrameError(description, close_code=CLOSE_INVALID)
    return LiteFrameError(description, kind=ErrorKind.FORMAT, message_id=message_id,
                          answerable=head[0] in (CALL, SEND))


def _name(raw: Any, names: tuple[str, ...]) -> str | None:
    if type(raw) is int:
        return names[raw] if 0 <= raw < len(names) else None
    if type(raw) is str and raw:
        return raw
    return None


def decode_body(body: bytes, protocol: str) -> list[Any]:
    """The OCPP-J message list for a CBOR body. Raises LiteFrameError (section 8)."""
    if len(body) > MAX_BODY:
        raise LiteFrameError(f"body exceeds {MAX_BODY} bytes", close_code=CLOSE_TOO_BIG)
    try:
        value = cbor.loads(body, tags=_TAGS)
    except cbor.CborError as exc:
        raise _salvage(body, protocol, f"CBOR: {exc}") from None
    if not isinstance(value, list) or len(value) < 2 or type(value[0]) is not int:
        raise LiteFrameError("a body is an array [type, id, ...]", close_code=CLOSE_INVALID)
    kind, message_id = value[0], _decode_id(value[1])
    if message_id is None:
        raise LiteFrameError("message id cannot be read", close_code=CLOSE_INVALID)
    if kind not in _TYPES[protocol]:
        raise LiteFrameError(f"message type {kind} is not supported on {protocol}",
                             kind=ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED,
                             message_id=message_id, answerable=True)
    return _decode_message(value, kind, message_id, table(protocol))


def _decode_message(value: list[Any], kind: int, message_id: str, t: Table) -> list[Any]:
    answerable = kind in (CALL, SEND)
    shape = {CALL: 4, SEND: 4, CALLRESULT: 3}.get(kind, 5)
    if len(value) != shape or not isinstance(value[-1], dict):
        raise LiteFrameError(f"a message of type {kind} needs {shape} elements, the last a "
                             f"map; this one has {len(value)}",
                             kind=ErrorKind.RPC_FRAMEWORK, message_id=message_id,
                             answerable=answerable)
    try:
        if kind in (CALL, SEND):
            action = _name(value[2], t.actions)
            if action is None:
                raise LiteFrameError(f"unknown action {value[2]!r}",
                                     kind=ErrorKind.NOT_IMPLEMENTED, message_id=message_id,
                                     answerable=answerable)
            return [kind, message_id, action, expand(value[3], t)]
        if kind == CALLRESULT:
            return [kind, message_id, expand(value[2], t)]
        code = _name(value[2], t.error_codes)
        if code is None or type(value[3]) is not str:
            raise CompactError("a CALLERROR carries a known error code and a text description")
        return [kind, message_id, code, value[3], expand(value[4], t, raw=True)]
    except ExpansionTooLarge as exc:
        raise LiteFrameError(str(exc), close_code=CLOSE_TOO_BIG) from None
    except CompactError as exc:
        raise LiteFrameError(str(exc), kind=ErrorKind.FORMAT, message_id=message_id,
                             answerable=answerable) from None


def decode_frame(data: bytes, *, protocol: str,
                 dictionaries: Mapping[int, LiteDictionary] | None = None) -> list[Any]:
    """The OCPP-J message list for one binary WebSocket message.

    `protocol` is the plain OCPP name; `dictionaries` maps dictionary id to the dictionaries
    of that protocol this side has. Raises LiteFrameError with the answer section 8 requires.
    """
    if len(data) > MAX_FRAME:
        raise LiteFrameError(f"frame of {len(data)} bytes exceeds {MAX_FRAME}",
                             close_code=CLOSE_TOO_BIG)
    if not data:
        raise LiteFrameError("empty frame", close_code=CLOSE_INVALID)
    if data[0] == FORMAT_CBOR:
        body = data[1:]
    elif data[0] == FORMAT_ZSTD:
        body = _inflate(data[1:], dictionaries or {})
    else:
        raise LiteFrameError(f"unknown frame format 0x{data[0]:02x}", close_code=CLOSE_INVALID)
    return decode_body(body, protocol)

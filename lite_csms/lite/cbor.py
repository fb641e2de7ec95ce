"""A strict CBOR (RFC 8949) reader and a deterministic writer for the lite link.

Why not cbor2 here: its `loads` ignores trailing bytes, decodes many tags into objects by
default, accepts indefinite lengths and allocates before it knows the input is that long;
the lite link must refuse all four (codecs/SPEC.md section 7). The reader below checks every
length and count against the bytes left and the limits before it allocates anything, and
recurses at most `max_depth` levels. The writer emits RFC 8949 section 4.2.1 core
deterministic encoding, so two implementations encode one message to the same bytes.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

# Same as the JSON path (ocppj/framing.py MAX_NESTING): a message one transport carries, the
# other carries too. The deepest OCA payload nests 13 levels (14 in its frame); customData
# may hold vendor JSON below any of them, so 16 refused schema-valid messages.
MAX_DEPTH = 32
MAX_ITEMS = 1024
UINT64_MAX = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Tag:
    """A CBOR tag the caller allows (the lite link: 4 decimal fraction, 37 UUID)."""

    number: int
    value: Any


class CborError(ValueError):
    """Not well-formed, or outside what the lite link allows. `limit` marks a broken limit."""

    def __init__(self, description: str, *, limit: bool = False) -> None:
        super().__init__(description)
        self.limit = limit


# ---- reading --------------------------------------------------------------------------------
class _Reader:
    __slots__ = ("data", "end", "max_depth", "max_items", "pos", "tags")

    def __init__(self, data: bytes, tags: frozenset[int], max_depth: int,
                 max_items: int) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.tags = tags
        self.max_depth = max_depth
        self.max_items = max_items

    def head(self) -> tuple[int, int, int]:
        """(major type, additional info, argument); indefinite lengths are refused here."""
        if self.pos >= self.end:
            raise CborError("truncated: an item is missing")
        initial = self.data[self.pos]
        self.pos += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, info
        if info == 31:
            raise CborError("indefinite length or break: not allowed")
        if info > 27:
            raise CborError(f"reserved additional information {info}")
        size = 1 << (info - 24)
        if self.pos + size > self.end:
            raise CborError("truncated: an argument is cut short")
        value = int.from_bytes(self.data[self.pos:self.pos + size], "big")
        self.pos += size
        return major, info, value

    def take(self, length: int) -> bytes:
        # Checked before slicing: a declared length never allocates more than the input holds.
        if length > self.end - self.pos:
            raise CborError(f"a string declares {length} bytes, only "
                            f"{self.end - self.pos} remain")
        chunk = self.data[self.pos:self.pos + length]
        self.pos += length
        return chunk

    def count(self, n: int, per_item: int) -> None:
        if n > self.max_items:
            raise CborError(f"{n} items in one array or map (limit {self.max_items})",
                            limit=True)
        if n * per_item > self.end - self.pos:
            raise CborError(f"{n} items declared, only {self.end - self.pos} bytes remain")

    def item(self, depth: int) -> Any:
        major, info, arg = self.head()
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major == 2:
            return self.take(arg)
        if major == 3:
            try:
                return self.take(arg).decode("utf-8")
            except UnicodeDecodeError:
                raise CborError("text string is not valid UTF-8") from None
        if major in (4, 5):
            if depth >= self.max_depth:
                raise CborError(f"nested deeper than {self.max_depth} levels", limit=True)
            if major == 4:
                self.count(arg, 1)
                return [self.item(depth + 1) for _ in range(arg)]
            self.count(arg, 2)
            out: dict[Any, Any] = {}
            for _ in range(arg):
                key = self.item(depth + 1)
                if type(key) not in (int, str):
                    raise CborError("a map key must be an unsigned integer or a text string")
                if key in out:
                    raise CborError(f"duplicate map key {key!r}")
                out[key] = self.item(depth + 1)
            return out
        if major == 6:
            if arg not in self.tags:
                raise CborError(f"tag {arg} is not allowed")
            return Tag(arg, self.item(depth))
        return self.simple(info, arg)

    def simple(self, info: int, arg: int) -> Any:
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info in (25, 26, 27):
            fmt = {25: ">e", 26: ">f", 27: ">d"}[info]
            value = struct.unpack(fmt, arg.to_bytes(struct.calcsize(fmt), "big"))[0]
            if not math.isfinite(value):
                raise CborError("NaN and infinity are not JSON numbers")
            return value
        raise CborError(f"simple value {arg} is not allowed")


def loads(data: bytes, *, tags: frozenset[int] = frozenset(), max_depth: int = MAX_DEPTH,
          max_items: int = MAX_ITEMS) -> Any:
    """Exactly one well-formed data item filling `data`, or CborError.

    Definite lengths only; map keys are unsigned/negative integers or text, never repeated;
    tags only from `tags`; simple values only false, true, null and finite floats. Arrays and
    maps nest at most `max_depth` levels (the outermost is level 1) and hold at most
    `max_items` items (a map's pairs count once).
    """
    reader = _Reader(data, tags, max_depth, max_items)
    value = reader.item(0)
    if reader.pos != reader.end:
        raise CborError(f"{reader.end - reader.pos} trailing bytes after the item")
    return value


def peek_message_head(data: bytes) -> tuple[int, Any] | None:
    """(message type, raw message id) from the start of an undecodable body, or None.

    Reads only the outer array's head and its first two items, with the same strict rules, so
    a frame broken further on can still be answered under its own id.
    """
    reader = _Reader(data, frozenset({37}), 2, MAX_ITEMS)
    try:
        major, _info, length = reader.head()
        if major != 4 or length < 2:
            return None
        type_id = reader.item(1)
        message_id = reader.item(1)
    except CborError:
        return None
    if type(type_id) is not int:
        return None
    return type_id, message_id


# ---- writing --------------------------------------------------------------------------------
def _head(major: int, arg: int) -> bytes:
    if arg < 24:
        return bytes((major << 5 | arg,))
    if arg < 0x100:
        return bytes((major << 5 | 24, arg))
    if arg < 0x10000:
        return bytes((major << 5 | 25,)) + arg.to_bytes(2, "big")
    if arg < 0x100000000:
        return bytes((major << 5 | 26,)) + arg.to_bytes(4, "big")
    return bytes((major << 5 | 27,)) + arg.to_bytes(8, "big")


def _float(value: float) -> bytes:
    """The shortest of half, single and double precision that gives back the same value."""
    if not math.isfinite(value):
        raise CborError("NaN and infinity cannot be sent")
    for code, fmt in ((0xF9, ">e"), (0xFA, ">f")):
        try:
            packed = struct.pack(fmt, value)
        except OverflowError:
            continue
        if struct.unpack(fmt, packed)[0] == value:
            return bytes((code,)) + packed
    return b"\xfb" + struct.pack(">d", value)


def _container(size: int, depth: int) -> None:
    # The receiver's limits (codecs/SPEC.md section 7): never send what a peer must refuse.
    if depth >= MAX_DEPTH:
        raise CborError(f"nested deeper than {MAX_DEPTH} levels", limit=True)
    if size > MAX_ITEMS:
        raise CborError(f"{size} items in one array or map (limit {MAX_ITEMS})", limit=True)


def _write(value: Any, out: list[bytes], depth: int) -> None:
    kind = type(value)
    if kind is str:
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError:
            raise CborError("text is not valid Unicode (a lone surrogate)") from None
        out.append(_head(3, len(raw)))
        out.append(raw)
    elif kind is int:
        if 0 <= value <= UINT64_MAX:
            out.append(_head(0, value))
        elif -UINT64_MAX - 1 <= value < 0:
            out.append(_head(1, -1 - value))
        else:
            raise CborError(f"integer {value} is outside the 64-bit range")
    elif kind is dict:
        _container(len(value), depth)
        out.append(_head(5, len(value)))
        # Deterministic encoding: pairs sorted by the bytes of their encoded keys.
        for key, item in sorted(((dumps(k), v) for k, v in value.items()),
                                key=lambda pair: pair[0]):
            out.append(key)
            _write(item, out, depth + 1)
    elif kind is list:
        _container(len(value), depth)
        out.append(_head(4, len(value)))
        for item in value:
            _write(item, out, depth + 1)
    elif kind is bool:
        out.append(b"\xf5" if value else b"\xf4")
    elif value is None:
        out.append(b"\xf6")
    elif kind is float:
        out.append(_float(value))
    elif kind is bytes:
        out.append(_head(2, len(value)))
        out.append(value)
    elif kind is Tag:
        out.append(_head(6, value.number))
        _write(value.value, out, depth)
    else:
        raise CborError(f"{kind.__name__} has no CBOR form on the lite link")


def dumps(value: Any) -> bytes:
    """Core deterministic CBOR: shortest heads, shortest exact floats, sorted map keys.

    Raises CborError for what has no CBOR form here or breaks the reader's limits (depth,
    items per array or map), so whatever it writes, `loads` reads.
    """
    out: list[bytes] = []
    _write(value, out, 0)
    return b"".join(out)

"""permessage-deflate (RFC 7692) for wsproto: strict negotiation, bounded memory and inflation.

wsproto's own PerMessageDeflate inflates a frame in full before anyone checks its size (a
few kilobytes can inflate to gigabytes), gives its compressor zlib's default memLevel, and
echoes whatever window the client names. This one:
- answers one offer per connection, by RFC 7692 section 7: `server_max_window_bits` at most
  the client's value and ours (section 7.1.2.1 lets a server name it unasked);
  `client_max_window_bits` only when the client offered it (7.1.2.2), at most its value and
  ours; `server_no_context_takeover` and `client_no_context_takeover` honoured as asked;
- compresses with `mem_level` and our window, so a station costs a bounded amount of memory;
- inflates at most `max_message_size` + 1 bytes of a message and then closes with 1009;
- counts the data-frame bytes that crossed the wire each way, for the traffic accounting.
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from lite_csms.budget.meter import frame_header
from lite_csms.config import Settings

log = logging.getLogger("lite_csms.net")

# RFC 7692 section 7.1.2: window bits 8..15. zlib cannot deflate raw with 8 (it silently
# uses 9), so an offer that insists on 8 for our side is declined.
MIN_WINDOW_BITS, MAX_WINDOW_BITS = 8, 15
ZLIB_MIN_WINDOW_BITS = 9
# RFC 7692 7.1.2.1: "a decimal integer value without leading zeroes", ASCII digits only.
_WINDOW_BITS = re.compile(r"[1-9][0-9]?")
# The empty stored block that ends every compressed message (section 7.2.1).
_TAIL = b"\x00\x00\xff\xff"


class OfferError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class DeflateOptions:
    """Our side of the bargain.

    `window_bits` (9..15) is the window our compressor uses and the window we ask of the client
    when it lets us choose; `mem_level` (1..9) sizes our compressor's hash table and buffers
    (zlib needs 2^(window_bits+2) + 2^(mem_level+9) bytes to deflate, 2^window_bits + ~7 KiB
    to inflate). `max_message_size` bounds one inflated message in bytes.
    """

    window_bits: int = 11
    mem_level: int = 4
    level: int = 6
    max_message_size: int = 65536


@dataclass(frozen=True, slots=True)
class Offer:
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    # True: offered without a value ("the client can limit its window; tell it how far").
    client_max_window_bits: int | bool | None = None


def parse_offer(offer: str) -> Offer:
    """One element of Sec-WebSocket-Extensions; raises OfferError on anything RFC 7692 forbids
    (unknown, nameless or repeated parameters; window bits that are not a decimal 8..15
    without leading zeros, section 7.1.2.1), so that the offer is declined."""
    seen: dict[str, str | None] = {}
    for part in offer.split(";")[1:]:
        if not part.strip():
            continue  # an empty element (";;"): nothing offered, nothing malformed
        name, sep, raw = part.strip().partition("=")
        name = name.strip().lower()
        if not name:
            raise OfferError(f"a parameter without a name ({part.strip()[:20]!r})")
        if name in seen:
            raise OfferError(f"repeated parameter {name}")
        value = raw.strip().strip('"') if sep else None
        seen[name] = value
    result: dict[str, bool | int] = {}
    for name, value in seen.items():
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise OfferError(f"{name} takes no value")
            result[name] = True
        elif name in ("server_max_window_bits", "client_max_window_bits"):
            if value is None:
                if name == "server_max_window_bits":
                    raise OfferError("server_max_window_bits needs a value")
                result[name] = True
                continue
            if (_WINDOW_BITS.fullmatch(value) is None
                    or not MIN_WINDOW_BITS <= int(value) <= MAX_WINDOW_BITS):
                raise OfferError(f"{name}={value[:20]!r} is not 8..15")
            result[name] = int(value)
        else:
            raise OfferError(f"unknown parameter {name}")
    return Offer(**result)  # type: ignore[arg-type]


class BoundedPerMessageDeflate(PerMessageDeflate):
    """The server side of permessage-deflate for one connection (one instance each)."""

    def __init__(self, options: DeflateOptions) -> None:
        super().__init__()
        self.options = options
        # Data-frame bytes (header and payload as sent) each way: what crossed the wire.
        self.received_wire = 0
        self.sent_wire = 0
        self.failure: str | None = None
        self._inflated = 0

    def offer(self) -> bool | str:
        raise NotImplementedError("lite-csms only accepts permessage-deflate; it never offers")

    def accept(self, offer: str) -> str | None:
        if self._enabled:
            return None  # the first acceptable offer wins; later ones are alternatives
        try:
            parsed = parse_offer(offer)
        except OfferError as exc:
            log.info("permessage-deflate offer declined: %s", exc)
            return None
        ours = self.options.window_bits
        server_bits = min(parsed.server_max_window_bits or MAX_WINDOW_BITS, ours)
        if server_bits < ZLIB_MIN_WINDOW_BITS:
            log.info("permessage-deflate offer declined: server_max_window_bits=8")
            return None
        client_bits: int | None = None
        if parsed.client_max_window_bits is True:
            client_bits = ours
        elif isinstance(parsed.client_max_window_bits, int):
            client_bits = min(parsed.client_max_window_bits, ours)
        response: list[str] = []
        self.server_no_context_takeover = parsed.server_no_context_takeover
        self.client_no_context_takeover = parsed.client_no_context_takeover
        if parsed.server_no_context_takeover:
            response.append("server_no_context_takeover")
        if parsed.client_no_context_takeover:
            response.append("client_no_context_takeover")
        if parsed.server_max_window_bits is not None or server_bits < MAX_WINDOW_BITS:
            response.append(f"server_max_window_bits={server_bits}")
        self.server_max_window_bits = server_bits
        if client_bits is not None:
            response.append(f"client_max_window_bits={client_bits}")
            # A larger window inflates a smaller one's stream; zlib has no raw 8.
            self._client_max_window_bits = max(client_bits, ZLIB_MIN_WINDOW_BITS)
        self._enabled = True
        return "; ".join(response)

    # ---- inbound ---------------------------------------------------------------------------
    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if rsv.rsv1 and (opcode.iscontrol() or opcode is Opcode.CONTINUATION):
            return CloseReason.PROTOCOL_ERROR
        # A ping may come between two messages or inside a fragmented one: it must not
        # change whether the message around it is compressed (wsproto's own one forgets).
        self._inbound_is_compressible = self._compressible_opcode(opcode)
        if self._inbound_is_compressible:
            self.received_wire += payload_length + frame_header(payload_length, not proto.client)
            if self._inbound_compressed is None:
                self._inbound_compressed = rsv.rsv1
                if rsv.rsv1 and self._decompressor is None:
                    self._decompressor = zlib.decompressobj(-self._client_max_window_bits)
        return RsvBits(True, False, False)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(bytes(data))

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not fin or not self._inbound_is_compressible:
            # A control frame may sit inside a fragmented message: it must not end it.
            return None
        if not self._inbound_compressed:
            self._inbound_compressed = None
            return None
        data = self._inflate(_TAIL)
        self._inbound_compressed = None
        self._inflated = 0
        if self.client_no_context_takeover:
            self._decompressor = None
        return data

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        assert self._decompressor is not None
        limit = self.options.max_message_size
        try:
            # At most one byte past the limit: enough to know, never the whole bomb.
            out = self._decompressor.decompress(data, limit - self._inflated + 1)
        except zlib.error as exc:
            self.failure = f"invalid compressed data: {exc}"
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > limit:
            self.failure = f"message inflates past {limit} bytes"
            return CloseReason.MESSAGE_TOO_BIG
        return out

    # ---- outbound --------------------------------------------------------------------------
    def frame_outbound(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits,
        data: bytes, fin: bool,
    ) -> tuple[RsvBits, bytes]:
        if not self._compressible_opcode(opcode):
            return rsv, data
        if self._compressor is None:
            self._compressor = zlib.compressobj(
                self.options.level, zlib.DEFLATED, -self.server_max_window_bits,
                self.options.mem_level,
            )
        # wsproto's compressor (zlib's default memLevel) is never made: ours exists already.
        rsv, out = super().frame_outbound(proto, opcode, rsv, data, fin)
        self.sent_wire += len(out) + frame_header(len(out), proto.client)
        return rsv, out


def options_from(settings: Settings) -> DeflateOptions | None:
    """The listener's deflate options from the configuration; None when `ws_deflate` is off."""
    if not settings.ws_deflate:
        return None
    return DeflateOptions(window_bits=settings.ws_deflate_window_bits,
                          mem_level=settings.ws_deflate_mem_level,
                          max_message_size=settings.max_message_size)

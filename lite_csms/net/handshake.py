"""Pure decisions about an opening handshake: who is calling, with what protocol and password."""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lite_csms.db.models import STATION_ID_MAX_LENGTH
from lite_csms.lite import LITE_SUBPROTOCOLS
from lite_csms.ocppj.versions import SUPPORTED_SUBPROTOCOLS, Version


class InvalidStationId(ValueError):
    pass


def check_station_id(station_id: str) -> str:
    """OCPP allows up to 48 printable characters; ':' would break Basic auth's user:password."""
    if not station_id:
        raise InvalidStationId("the station id is empty")
    if len(station_id) > STATION_ID_MAX_LENGTH:
        raise InvalidStationId(f"the station id is longer than {STATION_ID_MAX_LENGTH} characters")
    if ":" in station_id:
        raise InvalidStationId("the station id must not contain ':'")
    if not station_id.isprintable() or any(c in station_id for c in "/?#"):
        raise InvalidStationId("the station id must be printable and free of '/', '?' and '#'")
    return station_id


class BareSegment(InvalidStationId):
    """A lone segment with a trailing slash (`/CS-001/`, `/ocpp/`): a pasted station URL or a
    base URL to which no id was appended. It names `candidate` only if that station is
    registered (the server looks it up); otherwise it is refused, never auto-registered."""

    def __init__(self, raw_path: str, candidate: str) -> None:
        super().__init__(f"no station id after {raw_path!r}: append the station id "
                         f"(no station {candidate!r} is registered)")
        self.candidate = candidate


def station_id_from_path(path: str) -> str:
    """The last non-empty segment of the request path, percent-decoded.

    Chargers are configured with a base URL and append their own id, so `/ocpp/CS-001`,
    `/CS-001` and `/anything/CS-001` all name CS-001. People paste URLs by hand, so empty
    segments are ignored: `/ocpp/CS-001/` and `/ocpp//CS-001` (a base URL ending in "/")
    name CS-001 too. A lone segment with a trailing slash raises BareSegment: `/CS-001/` is
    CS-001 when it is registered, while `/ocpp/` must not make up a station "ocpp".
    """
    raw_path = path.split("?", 1)[0].split("#", 1)[0]
    segments = [segment for segment in raw_path.split("/") if segment]
    if not segments:
        raise InvalidStationId("the station id is empty")
    station_id = check_station_id(urllib.parse.unquote(segments[-1]))
    if len(segments) == 1 and raw_path.endswith("/"):
        raise BareSegment(raw_path, station_id)
    return station_id


def choose_subprotocol(proposed: Iterable[str], offered: Sequence[str]) -> Version | None:
    """The client's first proposal that we offer, in the client's order (OCPP-J Part 4)."""
    for candidate in proposed:
        name = candidate.strip()
        if name in offered and name in SUPPORTED_SUBPROTOCOLS:
            return SUPPORTED_SUBPROTOCOLS[name]
    return None


def choose_link(proposed: Iterable[str], offered: Sequence[str], lite: bool
                ) -> tuple[Version, bool] | None:
    """(version, lite?) for the client's first proposal that we offer, in the client's order.

    With `lite`, each offered version is also offered as its lite subprotocol
    ("ocpp1.6.lite1", codecs/SPEC.md section 2); without it a lite proposal is passed over,
    so a station offering "ocpp1.6.lite1, ocpp1.6" gets plain OCPP-J.
    """
    for candidate in proposed:
        name = candidate.strip()
        if name in offered and name in SUPPORTED_SUBPROTOCOLS:
            return SUPPORTED_SUBPROTOCOLS[name], False
        plain = LITE_SUBPROTOCOLS.get(name)
        if lite and plain in offered and plain in SUPPORTED_SUBPROTOCOLS:
            return SUPPORTED_SUBPROTOCOLS[plain], True
    return None


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    username: str
    password: str


def basic_credentials(headers: Iterable[tuple[bytes, bytes]]) -> BasicCredentials | None:
    for name, value in headers:
        if name.lower() != b"authorization":
            continue
        scheme, _, encoded = value.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, sep, password = decoded.partition(":")
        return BasicCredentials(username, password) if sep else None
    return None

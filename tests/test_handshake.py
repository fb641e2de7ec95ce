"""Pure handshake decisions: station id from the path, subprotocol, Basic credentials."""

import base64

import pytest

from lite_csms.net.handshake import (
    InvalidStationId,
    basic_credentials,
    choose_subprotocol,
    station_id_from_path,
)
from lite_csms.ocppj.versions import Version

ALL = ("ocpp2.1", "ocpp2.0.1", "ocpp1.6")


@pytest.mark.parametrize(
    ("path", "station_id"),
    [
        ("/ocpp/CS-001", "CS-001"),
        ("/CS-001", "CS-001"),
        ("/some/base/url/CS-001", "CS-001"),
        ("/ocpp/CS%20001?x=1", "CS 001"),
        # Hand-pasted URLs: a trailing slash, a base URL ending in "/" with the id appended.
        ("/ocpp/CS-001/", "CS-001"),
        ("/ocpp/CS-001//", "CS-001"),
        ("/ocpp//CS-001", "CS-001"),
        ("/ocpp/CS-001/?x=1", "CS-001"),
    ],
)
def test_station_id_is_the_last_segment(path: str, station_id: str) -> None:
    assert station_id_from_path(path) == station_id


@pytest.mark.parametrize("path", ["/ocpp/", "/", "//", "", "/CS-001/", "/ocpp/a%3Ab",
                                  "/ocpp/a%2Fb/", "/ocpp/" + "x" * 49])
def test_bad_station_ids(path: str) -> None:
    with pytest.raises(InvalidStationId):
        station_id_from_path(path)


def test_client_order_wins() -> None:
    assert choose_subprotocol(["ocpp1.6", "ocpp2.0.1"], ALL) is Version.OCPP16
    assert choose_subprotocol(["ocpp2.0", "ocpp2.0.1"], ALL) is Version.OCPP201
    assert choose_subprotocol(["ocpp2.1"], ALL) is Version.OCPP21
    assert choose_subprotocol(["ocpp2.1", "ocpp1.6"], ("ocpp1.6",)) is Version.OCPP16
    assert choose_subprotocol(["ocpp1.5", "wamp"], ALL) is None
    assert choose_subprotocol([], ALL) is None


def _header(raw: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"Host", b"x"), (b"Authorization", b"Basic " + base64.b64encode(raw))]


def test_basic_credentials() -> None:
    creds = basic_credentials(_header(b"CS-001:pa:ss"))
    assert creds is not None and (creds.username, creds.password) == ("CS-001", "pa:ss")
    assert basic_credentials(_header(b"no-colon")) is None
    assert basic_credentials([(b"authorization", b"Basic !!notbase64")]) is None
    assert basic_credentials([(b"Authorization", b"Bearer abc")]) is None
    assert basic_credentials([]) is None

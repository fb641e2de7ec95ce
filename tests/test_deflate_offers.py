"""Malformed permessage-deflate offers against the real server (RFC 7692 section 5): an offer
it cannot accept is declined (101 without the extension), a handshake header it cannot parse
at all is answered 400; never a dropped connection, and one log line each."""

from __future__ import annotations

import logging

import pytest

from tests import rawws
from tests.test_server import register

BAD_OFFERS = [
    "permessage-deflate; client_max_window_bits=" + "9" * 5000,
    "permessage-deflate; =5",
    "permessage-deflate; client_max_window_bits=010",
]


def _head(response: bytes) -> tuple[bytes, list[bytes]]:
    head = response.partition(b"\r\n\r\n")[0].split(b"\r\n")
    return head[0], [line for line in head[1:]
                     if line.lower().startswith(b"sec-websocket-extensions")]


@pytest.mark.parametrize("offer", BAD_OFFERS)
async def test_a_malformed_offer_is_declined(csms, caplog, offer) -> None:
    await register(csms, "DEF-1")
    caplog.set_level(logging.INFO, logger="lite_csms.net")
    stream, response = await rawws.connect(csms.port, "/ocpp/DEF-1", headers=(
        f"Sec-WebSocket-Extensions: {offer}",))
    status, extensions = _head(response)
    assert status.startswith(b"HTTP/1.1 101") and extensions == []
    declined = [r for r in caplog.records if "offer declined" in r.getMessage()]
    assert len(declined) == 1
    await stream.aclose()


async def test_a_header_that_is_not_ascii_is_answered_400(csms, caplog) -> None:
    await register(csms, "DEF-2")
    caplog.set_level(logging.INFO, logger="lite_csms.net")
    stream, response = await rawws.connect(csms.port, "/ocpp/DEF-2", headers=(
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=\u00b2",))
    status, _ = _head(response)
    assert status.startswith(b"HTTP/1.1 400"), response
    refused = [r for r in caplog.records if "refused with 400" in r.getMessage()]
    assert len(refused) == 1 and "not ASCII" in refused[0].getMessage()
    await stream.aclose()
    # The server goes on: a good offer right after is accepted.
    stream, response = await rawws.connect(csms.port, "/ocpp/DEF-2", headers=(
        "Sec-WebSocket-Extensions: permessage-deflate",))
    status, extensions = _head(response)
    assert status.startswith(b"HTTP/1.1 101") and extensions
    await stream.aclose()

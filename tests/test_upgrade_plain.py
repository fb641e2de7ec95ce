"""The short upgrade reader (net/upgrade.py parse_plain) reads what wsproto reads, and its
101 is wsproto's byte for byte; what it does not take goes to h11 as before."""

from __future__ import annotations

import pytest
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, Request
from wsproto.handshake import H11Handshake

from lite_csms.net.upgrade import _plain_101, parse_plain

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def request(*headers: bytes, line: bytes = b"GET /ocpp/CS-1 HTTP/1.1") -> bytes:
    return b"\r\n".join([line, *headers]) + b"\r\n\r\n"


PLAIN = request(b"Host: 127.0.0.1:9000", b"Upgrade: websocket", b"Connection: Upgrade",
                b"Sec-WebSocket-Key: " + KEY, b"Sec-WebSocket-Version: 13",
                b"Sec-WebSocket-Protocol: ocpp2.0.1, ocpp1.6",
                b"Authorization: Basic Q1MtMTpzZWNyZXQ=")


def wsproto_reads(data: bytes) -> tuple[H11Handshake, Request]:
    handshake = H11Handshake(ConnectionType.SERVER)
    handshake.receive_data(data)
    (event,) = list(handshake.events())
    assert isinstance(event, Request)
    return handshake, event


@pytest.mark.parametrize("data", [
    PLAIN,
    PLAIN + b"\x81\x02hi",  # a first frame sent before the 101
    request(b"host: h", b"UPGRADE: WebSocket", b"connection: keep-alive, Upgrade",
            b"sec-websocket-key:  " + KEY + b"  ", b"Sec-WebSocket-Version: 13",
            b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
            b"X-Empty:"),
])
def test_reads_as_wsproto_and_answers_the_same_101(data: bytes) -> None:
    handshake, expected = wsproto_reads(data)
    found = parse_plain(data)
    assert found is not None
    for field in ("host", "target", "extensions", "extra_headers", "subprotocols"):
        assert getattr(found, field) == getattr(expected, field), field
    if not found.extensions:
        sent, trailing = _plain_101(found, "ocpp1.6" if found.subprotocols else None, data)
        assert sent == handshake.send(AcceptConnection(
            subprotocol="ocpp1.6" if found.subprotocols else None))
        assert trailing == handshake._h11_connection.trailing_data[0]


@pytest.mark.parametrize("data", [
    PLAIN[:-2],  # incomplete: h11 reads on
    PLAIN.replace(b"GET", b"POST"),
    PLAIN.replace(b"HTTP/1.1", b"HTTP/1.0"),
    PLAIN.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
    PLAIN.replace(b"Connection: Upgrade", b"Connection: close"),
    PLAIN.replace(b"Host: 127.0.0.1:9000\r\n", b""),
    PLAIN.replace(b"Host: 127.0.0.1:9000", b"Host: a\r\nHost: b"),
    PLAIN.replace(b"Upgrade: websocket", b"Upgrade: websocket\r\n folded"),
    PLAIN.replace(b"Basic", "Bäsic".encode()),
    PLAIN.replace(b"Connection: Upgrade", b"Connection: Upgrade\r\nContent-Length: 0"),
    PLAIN.replace(b"\r\n", b"\n"),
    request(b"Host: h", b"X: " + b"a" * 9000, b"Upgrade: websocket", b"Connection: Upgrade",
            b"Sec-WebSocket-Key: " + KEY, b"Sec-WebSocket-Version: 13"),
])
def test_leaves_anything_else_to_h11(data: bytes) -> None:
    assert parse_plain(data) is None


@pytest.mark.parametrize("host", ["127.1.2.3", "10.0.0.1", "example.org", "[127.0.0.1]",
                                  "::1", "[::ffff:10.1.2.3]", "2001:db8::1", "0127.0.0.1",
                                  "1.2.3", ""])
def test_source_key_as_the_address_parse_gives(host: str) -> None:
    import ipaddress

    from lite_csms.net.throttle import source_key
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        expected = host
    else:
        expected = (str(ipaddress.IPv6Network(f"{address}/64", strict=False))
                    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None
                    else str(address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address)
                             else address))
    assert source_key(host) == expected


def test_format_utc_as_strftime_gives() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from lite_csms.ocppj.timestamps import format_utc
    for moment in (datetime(2026, 11, 30, 1, 2, 3, 999999, tzinfo=UTC),
                   datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))),
                   datetime(999, 5, 6, 7, 8, 9, tzinfo=UTC)):
        assert format_utc(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

"""Frames read and written in net/websocket.py without wsproto (no extension negotiated):
split and joined TCP segments, every length encoding, pings, and the hand-over to wsproto
for anything that is not an ordinary frame, which then answers as it always did."""

from __future__ import annotations

import json
import os
import struct

import pytest
import trio
import trio.testing
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import CloseConnection
from wsproto.frame_protocol import CloseReason as WsCloseReason

from lite_csms.db.models import ConnectorStatusChange, Station
from lite_csms.net.websocket import (
    CloseReason,
    WebSocket,
    _peer_close,
    close_frame,
    frame_header,
    unmask,
)
from tests import rawws
from tests.conftest import CsmsInProcess, start_in_process

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


def _call(message_id: str, action: str, payload: dict) -> bytes:
    return json.dumps([2, message_id, action, payload], ensure_ascii=False).encode()


def _status(connector: int, info: str = "") -> dict:
    payload = {"connectorId": connector, "errorCode": "NoError", "status": "Available",
               "timestamp": f"2026-11-29T10:00:0{connector}Z"}
    if info:
        payload["info"] = info
    return payload


async def _station(csms: CsmsInProcess, station_id: str) -> tuple[trio.SocketStream,
                                                                  bytearray]:
    await csms.server.store.run(lambda: Station.insert_many(
        [{"id": station_id, "registration": "accepted"}]).execute())
    stream, head = await rawws.connect(csms.port, f"/ocpp/{station_id}")
    assert head.startswith(b"HTTP/1.1 101")
    assert b"sec-websocket-extensions" not in head.lower()
    return stream, bytearray()


async def _answer(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, bytes]:
    with trio.fail_after(5):
        received = await rawws.read_frame(stream, buffer)
    assert received is not None
    return received


def test_unmask_and_headers_follow_rfc_6455() -> None:
    mask = b"\x01\x80\xff\x37"
    for size in (0, 1, 3, 4, 5, 125, 126, 70_000):
        data = os.urandom(size)
        assert unmask(data, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert frame_header(1, 125) == b"\x81\x7d"
    assert frame_header(1, 126) == b"\x81\x7e\x00\x7e"
    assert frame_header(2, 65536) == b"\x82\x7f" + struct.pack("!Q", 65536)


async def test_messages_split_joined_and_long_are_answered_in_order(
        nursery: trio.Nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, max_message_size=200_000)
    stream, buffer = await _station(csms, "PLAIN-1")
    # A frame dribbled in byte by byte, then three in one segment: 7-bit, 16-bit and
    # 64-bit lengths.
    for byte in rawws.frame(1, _call("b1", "BootNotification", BOOT)):
        await stream.send_all(bytes([byte]))
    opcode, payload = await _answer(stream, buffer)
    assert opcode == 1 and json.loads(payload)[:2] == [3, "b1"]
    frames = [rawws.frame(1, _call("s1", "StatusNotification", _status(1))),
              rawws.frame(1, _call("s2", "StatusNotification", _status(2, "x" * 50))),
              rawws.frame(1, _call("d1", "DataTransfer",
                                   {"vendorId": "V", "data": "é" * 40_000}))]
    assert len(frames[1]) > 125 + 14 and len(frames[2]) > 65536
    await stream.send_all(b"".join(frames))
    answers = [json.loads((await _answer(stream, buffer))[1]) for _ in frames]
    assert [a[:2] for a in answers] == [[3, "s1"], [3, "s2"], [3, "d1"]]
    infos = sorted(c.info or "" for c in ConnectorStatusChange.select())
    assert infos == ["", "x" * 50]
    assert csms.server.connections["PLAIN-1"].ws.plain
    await stream.aclose()


async def test_pings_are_answered_and_a_fragmented_message_goes_to_wsproto(
        csms: CsmsInProcess) -> None:
    stream, buffer = await _station(csms, "PLAIN-2")
    await stream.send_all(rawws.frame(9, b"ping-1"))
    assert await _answer(stream, buffer) == (10, b"ping-1")
    assert csms.server.connections["PLAIN-2"].ws.plain
    call = _call("h1", "Heartbeat", {})
    await stream.send_all(rawws.frame(1, call[:5], fin=False) + rawws.frame(0, call[5:]))
    opcode, payload = await _answer(stream, buffer)
    assert opcode == 1 and json.loads(payload)[:2] == [3, "h1"]
    # wsproto reads everything after it, pings included.
    await stream.send_all(rawws.frame(9, b"ping-2") + rawws.frame(1, _call("h2", "Heartbeat",
                                                                             {})))
    assert await _answer(stream, buffer) == (10, b"ping-2")
    assert json.loads((await _answer(stream, buffer))[1])[:2] == [3, "h2"]
    assert not csms.server.connections["PLAIN-2"].ws.plain
    await stream.aclose()


def _unmasked(payload: bytes) -> bytes:
    return bytes((0x81, len(payload))) + payload


def _long_form_for_short(payload: bytes) -> bytes:
    mask = os.urandom(4)
    return struct.pack("!BBH", 0x81, 0x80 | 126, len(payload)) + mask + unmask(payload, mask)


@pytest.mark.parametrize(("name", "build", "code"), [
    ("invalid UTF-8", lambda: rawws.frame(1, b"[2,\"x\",\"Heartbeat\",{}]\xff"), 1007),
    ("unmasked", lambda: _unmasked(_call("h", "Heartbeat", {})), 1002),
    ("16-bit length for 25 bytes", lambda: _long_form_for_short(_call("h", "Heartbeat", {})),
     1002),
    ("RSV1 without an extension", lambda: bytes((0xC1,)) + rawws.frame(1, b"{}")[1:], 1002),
    ("over max_message_size", lambda: rawws.frame(1, b" " * 70_000), 1009),
])
async def test_frames_that_are_not_ordinary_close_as_wsproto_closes_them(
        csms: CsmsInProcess, name: str, build, code: int) -> None:
    stream, _ = await _station(csms, f"PLAIN-{code}-{len(name)}")
    await stream.send_all(build())
    assert await rawws.close_code(stream) == code, name
    await stream.aclose()


@pytest.mark.parametrize("name,data,code", [
    ("an unmasked empty ping", b"\x89\x00", 1002),
    ("an unmasked 3-byte text", b"\x81\x03abc", 1002),
    ("a text frame declaring 2**40 bytes", b"\x81\xff" + struct.pack("!Q", 1 << 40)
     + b"\x00\x00\x00\x00", 1009),
    ("a length with the top bit set", b"\x81\xff" + struct.pack("!Q", 1 << 63)
     + b"\x00\x00\x00\x00", 1002),
])
async def test_a_frame_is_judged_as_soon_as_its_header_is_there(
        csms: CsmsInProcess, name: str, data: bytes, code: int) -> None:
    # No more bytes follow: the close must not wait for a payload that never comes.
    stream, buffer = await _station(csms, f"SHORT-{code}-{len(name)}")
    await stream.send_all(rawws.frame(1, _call("b", "BootNotification", BOOT)))
    assert (await _answer(stream, buffer))[0] == 1
    await stream.send_all(data)
    assert await rawws.close_code(stream, 3.0) == code, name
    await stream.aclose()


def _wsproto_reads_close(payload: bytes) -> tuple[tuple[int, str] | None, bytes]:
    """What wsproto makes of a station's close frame: its (code, reason) and the echo it
    sends, or None and its own close frame when it refuses it."""
    proto = Connection(ConnectionType.SERVER)
    proto.receive_data(rawws.frame(8, payload))
    event = next(iter(proto.events()))
    assert isinstance(event, CloseConnection)
    if proto.state is ConnectionState.REMOTE_CLOSING:
        return (int(event.code), event.reason), proto.send(event.response())
    return None, proto.send(event)


@pytest.mark.parametrize("payload", [
    b"", b"\x03", b"\x03\xe8", b"\x03\xe8bye", struct.pack("!H", 1000) + "é".encode() * 61 + b"x",
    *(struct.pack("!H", code) for code in (999, 1004, 1005, 1006, 1015, 1016, 2999, 3000,
                                           4999, 5000, 65535, *range(1000, 1015))),
    b"\x03\xe9\xff", b"\x03\xe9\xc3",
])
def test_a_close_frame_is_read_and_echoed_as_wsproto_does(payload: bytes) -> None:
    expected, echo = _wsproto_reads_close(payload)
    assert _peer_close(payload) == expected
    if expected is not None:
        assert close_frame(*expected) == echo


def test_our_close_frame_is_wsprotos() -> None:
    for code, reason in [(1000, None), (1001, "server shutting down"), (1009, "x" * 200),
                         (1005, None), (1006, "gone"), (4000, "é" * 100), (None, None)]:
        proto = Connection(ConnectionType.SERVER)
        # wsproto sends no code for its own NO_STATUS_RCVD (1005), and 1000 for the int.
        known = WsCloseReason.NO_STATUS_RCVD if code == 1005 else code
        assert close_frame(code, reason) == proto.send(CloseConnection(code=known,
                                                                       reason=reason))


@pytest.mark.parametrize(("name", "payload"), [
    ("a code and a reason", struct.pack("!H", 1000) + "à bientôt".encode()),
    ("a code of the application's", struct.pack("!H", 4001)),
    ("no payload", b""),
])
async def test_a_station_that_closes_is_answered_without_wsproto(
        csms: CsmsInProcess, name: str, payload: bytes) -> None:
    station_id = f"CLOSE-{len(payload)}"
    stream, buffer = await _station(csms, station_id)
    await stream.send_all(rawws.frame(1, _call("b", "BootNotification", BOOT)))
    assert (await _answer(stream, buffer))[0] == 1
    ws = csms.server.connections[station_id].ws
    # An idle plain connection keeps no wsproto frame state (docs/PERFORMANCE.md).
    assert ws._proto is None
    await stream.send_all(rawws.frame(8, payload))
    assert await _answer(stream, buffer) == (8, payload), name
    assert await rawws.closed_by_server(stream)
    code, reason = _peer_close(payload) or (0, "")
    assert ws.closed == CloseReason(code, reason or None)
    assert ws._proto is None
    await stream.aclose()


async def test_after_our_close_wsproto_takes_over_in_the_closing_state() -> None:
    ours, station = trio.testing.memory_stream_pair()
    ws = WebSocket(ours, None, max_message_size=1000, remote="test", path="/",
                   subprotocol=None, plain=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.aclose, 1001, "going")
        with trio.fail_after(5):
            assert await station.receive_some() == close_frame(1001, "going")
        # A fragmented message is not for this module: wsproto reads it and the answer.
        await station.send_all(rawws.frame(1, b"ab", fin=False) + rawws.frame(0, b"cd")
                               + rawws.frame(8, struct.pack("!H", 1001)))
    assert ws.closed == CloseReason(1001, "going")
    assert not ws.plain and ws._proto is not None
    assert ws._proto.state is ConnectionState.CLOSED

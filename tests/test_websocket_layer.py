"""The WebSocket layer (net/websocket.py, net/upgrade.py): what trio-websocket did not do."""

from __future__ import annotations

import json

import trio

from lite_csms.db.models import Station
from tests import rawws
from tests.conftest import CsmsInProcess

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


async def _register(csms: CsmsInProcess, *ids: str) -> None:
    await csms.server.store.run(lambda: Station.insert_many(
        [{"id": i, "registration": "accepted"} for i in ids]).execute())


def _tasks(task: trio.lowlevel.Task) -> int:
    # Not counted: the budget policy's one task for the whole server that takes back
    # settings places held too long; it ends one call_timeout after the last settings.
    return (0 if task.name.endswith("_give_back_late") else 1) + sum(
        _tasks(child) for nursery in task.child_nurseries for child in nursery.child_tasks)


async def test_a_frame_sent_with_the_upgrade_request_is_answered(csms: CsmsInProcess) -> None:
    # RFC 6455 lets no client do this, yet a firmware that writes its BootNotification
    # right behind the request must not lose it: wsproto's server drops such bytes.
    await _register(csms, "EARLY-1")
    stream = await trio.open_tcp_stream("127.0.0.1", csms.port)
    request = ("GET /ocpp/EARLY-1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n")
    boot = json.dumps([2, "b1", "BootNotification", BOOT]).encode()
    await stream.send_all(request.encode() + rawws.frame(1, boot))
    buffer = bytearray()
    with trio.fail_after(5):
        while b"\r\n\r\n" not in buffer:
            buffer += await stream.receive_some(4096)
        assert buffer.startswith(b"HTTP/1.1 101")
        del buffer[:buffer.index(b"\r\n\r\n") + 4]
        opcode, payload = await rawws.read_frame(stream, buffer)  # type: ignore[misc]
    assert opcode == 1
    answer = json.loads(payload)
    assert answer[:2] == [3, "b1"] and answer[2]["status"] == "Accepted"
    await stream.aclose()


def _all_tasks(task: trio.lowlevel.Task) -> list[trio.lowlevel.Task]:
    return [task] + [t for nursery in task.child_nurseries for child in nursery.child_tasks
                     for t in _all_tasks(child)]


def _suspended(task: trio.lowlevel.Task) -> list[tuple[str, dict]]:
    """(function name, locals) of each frame the task is suspended in, outermost first."""
    chain, coro = [], task.coro
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        chain.append((frame.f_code.co_name, dict(frame.f_locals)))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return chain


async def _booted(csms: CsmsInProcess, ids: list[str]) -> list[trio.SocketStream]:
    """Raw stations connected and booted (answered), one stream each."""
    streams = []
    for station_id in ids:
        stream, head = await rawws.connect(csms.port, f"/ocpp/{station_id}")
        assert head.startswith(b"HTTP/1.1 101")
        await stream.send_all(rawws.frame(1, json.dumps([2, "1", "BootNotification",
                                                         BOOT]).encode()))
        with trio.fail_after(5):
            assert (await rawws.read_frame(stream, bytearray()))[0] == 1  # type: ignore[index]
        streams.append(stream)
    return streams


async def test_an_idle_station_waits_on_its_socket_with_nothing_of_the_handshake(
        csms: CsmsInProcess) -> None:
    # What an idle station costs is mostly its suspended frames and what they hold
    # (docs/PERFORMANCE.md, "Memory per station").
    ids = ["FLAT-1", "FLAT-2"]
    await _register(csms, *ids)
    streams = await _booted(csms, ids)
    await trio.sleep(0.3)  # the accepted stations' one-off side tasks end
    readers = [task for task in _all_tasks(trio.lowlevel.current_root_task())
               if any(name == "_read_loop" for name, _ in _suspended(task))]
    assert len(readers) == len(ids)
    for task in readers:
        chain = _suspended(task)
        names = [name for name, _ in chain]
        assert "wait_readable" in names and "receive_some" not in names, names
        assert not task.child_nurseries  # no nursery of its own while idle
        held = [value for _, frame_locals in chain for value in frame_locals.values()]
        kinds = {type(value).__name__ for value in held}
        for leftover in ("HandshakeRequest", "H11Handshake", "Request", "Station"):
            assert leftover not in kinds, (leftover, names)
        # The connection's one scope: the handshake's deadline scope has ended.
        assert len({id(v) for v in held if isinstance(v, trio.CancelScope)}) == 1
    # Woken from that wait, the station is answered as before.
    await streams[0].send_all(rawws.frame(1, json.dumps([2, "2", "Heartbeat", {}]).encode()))
    with trio.fail_after(5):
        opcode, payload = await rawws.read_frame(streams[0], bytearray())  # type: ignore[misc]
    assert opcode == 1 and json.loads(payload)[:2] == [3, "2"]
    for stream in streams:
        await stream.aclose()


async def test_an_idle_station_holds_one_task(csms: CsmsInProcess) -> None:
    # trio-websocket held four per station (its reader, ours, a dispatcher, the handler);
    # memory per idle station is mostly tasks and their frames (docs/PERFORMANCE.md).
    ids = [f"IDLE-{n}" for n in range(20)]
    await _register(csms, *ids)
    root = trio.lowlevel.current_root_task()
    await trio.sleep(0.2)
    before = _tasks(root)
    streams = await _booted(csms, ids)
    with trio.fail_after(5):
        while len(csms.server.connections) < len(ids):
            await trio.sleep(0.05)
    await trio.sleep(0.3)  # the accepted stations' one-off tasks (queued commands) end
    assert _tasks(root) - before == len(ids)
    for stream in streams:
        await stream.aclose()


async def test_calls_on_a_closed_connection_fail_one_after_another(csms: CsmsInProcess) -> None:
    # A station that leaves during its settings: each further CALL of the batch fails as
    # ConnectionClosed (one had raised CallInProgress, an ERROR with a traceback).
    await _register(csms, "GONE-1")
    [stream] = await _booted(csms, ["GONE-1"])
    connection = csms.server.connections["GONE-1"]
    await stream.aclose()
    with trio.fail_after(5):
        while not connection.stopped:
            await trio.sleep(0.01)
    payload = {"key": "HeartbeatInterval", "value": "900"}
    for _ in range(3):
        outcome = await connection.call("ChangeConfiguration", payload)
        assert outcome.code == "ConnectionClosed"  # type: ignore[union-attr]

"""Idle readers parked on the server's own epoll set (net/idle.py): woken by data, an end
or a reset; cancellable; handed back to trio's wait when the watch ends; held (noted, not
woken) in the stop's fast exit. And the stop's close frame that carries our FIN."""

from __future__ import annotations

import socket

import pytest
import trio

from lite_csms.budget.meter import SocketEnd
from lite_csms.db.models import Station
from lite_csms.net.idle import IdleWatch
from tests import rawws
from tests.conftest import CsmsInProcess

BOOT = b'[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'


def _pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    return ours, theirs


async def _parked(watch: IdleWatch, count: int) -> None:
    with trio.fail_after(5):
        while watch.parked != count:
            await trio.sleep(0.001)


async def test_a_parked_reader_wakes_for_data_and_for_the_end(nursery: trio.Nursery) -> None:
    watch = IdleWatch()
    await nursery.start(watch.run)
    ours, theirs = _pair()
    send, receive = trio.open_memory_channel[bytes](10)

    async def reader() -> None:
        while True:
            await watch.wait_readable(ours.fileno())
            data = ours.recv(100)
            await send.send(data)
            if not data:
                return

    async with trio.open_nursery() as readers:
        readers.start_soon(reader)
        with trio.fail_after(5):
            # Each wake disarms the socket, and parking again re-arms it.
            for data in (b"one", b"two"):
                await _parked(watch, 1)
                theirs.send(data)
                assert await receive.receive() == data
            await _parked(watch, 1)
            theirs.close()  # the peer's end wakes it too
            assert await receive.receive() == b""
    assert watch.parked == 0
    ours.close()


async def test_a_cancelled_wait_leaves_nothing_armed(nursery: trio.Nursery) -> None:
    watch = IdleWatch()
    await nursery.start(watch.run)
    ours, theirs = _pair()
    with trio.move_on_after(0.05):
        await watch.wait_readable(ours.fileno())
    assert watch.parked == 0
    theirs.send(b"late")  # disarmed: no reader to wake, nothing goes wrong
    await trio.sleep(0.05)
    with trio.fail_after(5):
        await watch.wait_readable(ours.fileno())  # parks again, and the bytes are there
    assert ours.recv(10) == b"late"
    nursery.start_soon(watch.wait_readable, ours.fileno())
    await _parked(watch, 1)
    with pytest.raises(trio.BusyResourceError):
        await watch.wait_readable(ours.fileno())
    nursery.cancel_scope.cancel()
    await trio.sleep(0)
    ours.close()
    theirs.close()


async def test_a_hang_up_after_a_cancelled_wait_does_not_spin_the_watch(
        nursery: trio.Nursery) -> None:
    # The kernel reports a hang-up whatever the mask: a descriptor left in the set after
    # its reader was cancelled would be reported at every poll while it stays open.
    watch = IdleWatch()
    await nursery.start(watch.run)
    ours, theirs = _pair()
    with trio.move_on_after(0.05):
        await watch.wait_readable(ours.fileno())
    theirs.close()
    ours.shutdown(socket.SHUT_WR)  # both halves closed, our descriptor still open
    before = watch.polls
    await trio.sleep(0.3)
    assert watch.polls - before <= 2
    ours.close()


async def test_readers_parked_when_the_watch_ends_go_back_to_trio() -> None:
    watch = IdleWatch()
    ours, theirs = _pair()
    returned = trio.Event()

    async def reader() -> None:
        await watch.wait_readable(ours.fileno())  # woken when the watch ends: nothing there
        await watch.wait_readable(ours.fileno())  # trio's own wait now
        returned.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(watch.run)
        nursery.start_soon(reader)
        await _parked(watch, 1)
        watch.stop()
        await trio.sleep(0.05)
        assert watch.parked == 0 and not returned.is_set()
        theirs.send(b"x")
        with trio.fail_after(5):
            await returned.wait()
    ours.close()
    theirs.close()


async def test_idle_stations_park_in_the_servers_watch(csms: CsmsInProcess) -> None:
    await csms.server.store.run(lambda: Station.insert_many(
        [{"id": f"IDLE-{i}", "registration": "accepted"} for i in range(3)]).execute())
    streams = []
    for i in range(3):
        stream, head = await rawws.connect(csms.port, f"/ocpp/IDLE-{i}")
        assert head.startswith(b"HTTP/1.1 101")
        await stream.send_all(rawws.frame(1, BOOT))
        buffer = bytearray()
        with trio.fail_after(5):
            assert (await rawws.read_frame(stream, buffer))[0] == 1
        streams.append(stream)
    await _parked(csms.server.idle, 3)
    # A parked station still answers at once.
    await streams[0].send_all(rawws.frame(1, b'[2,"h","Heartbeat",{}]'))
    with trio.fail_after(5):
        assert b'"h"' in (await rawws.read_frame(streams[0], bytearray()))[1]
    await streams[2].aclose()
    await _parked(csms.server.idle, 2)
    for stream in streams[:2]:
        await stream.aclose()


async def test_held_readers_stay_parked_until_released(nursery: trio.Nursery) -> None:
    watch = IdleWatch()
    await nursery.start(watch.run)
    ours, theirs = _pair()
    woke = trio.Event()

    async def reader() -> None:
        await watch.wait_readable(ours.fileno())
        woke.set()

    nursery.start_soon(reader)
    await _parked(watch, 1)
    watch.hold()
    theirs.send(b"answer")
    with trio.fail_after(5):
        while ours.fileno() not in watch.ready:
            await trio.sleep(0.001)
    await trio.sleep(0.05)
    assert not woke.is_set() and watch.parked == 1  # noted, not woken
    watch.release()
    with trio.fail_after(5):
        await woke.wait()
    assert watch.ready == frozenset() and watch.parked == 0
    ours.close()
    theirs.close()


async def test_a_last_send_carries_our_fin_and_the_answer_is_still_read() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    peer = await trio.open_tcp_stream("127.0.0.1", listener.getsockname()[1])
    accepted, _ = await listener.accept()
    end = SocketEnd(trio.SocketStream(accepted))
    assert end.send_now(b"\x88\x02\x03\xe9", fin=True) == 4
    assert end.fin_sent
    with trio.fail_after(5):
        assert await peer.receive_some(100) == b"\x88\x02\x03\xe9"
        assert await peer.receive_some(100) == b""  # our FIN
    await peer.send_all(b"\x88\x82answer")  # the station's close answer, after our FIN
    await trio.sleep(0.05)
    end.take_waiting()
    assert end.bytes_in == 8 and end.bytes_out == 4
    end.release()
    await peer.aclose()
    listener.close()

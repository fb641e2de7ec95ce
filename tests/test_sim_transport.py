"""The simulator's transport seam (tools/stationsim/transport.py and link.py): messages cross
it as OCPP-J lists, the JSON codec keeps what the RPC session must judge by its text, and the
RpcLink answers through any transport."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import trio
import trio.testing

from lite_csms.ocppj.session import CallAnswered, RpcSession, SendReply
from lite_csms.ocppj.versions import Version
from tests.test_simulator import make_station, sim


class MemoryTransport:
    """A Transport in memory: frames the test feeds in, messages the link sent."""

    subprotocol = "ocpp1.6"

    def __init__(self) -> None:
        self.inbound_send, self.inbound = trio.open_memory_channel[list[Any]](10)
        self.sent: list[list[Any]] = []
        self.bytes_sent = self.bytes_received = 0

    async def send(self, messages: Sequence[list[Any]]) -> None:
        self.sent.extend(messages)

    async def receive(self) -> list[Any]:
        try:
            return await self.inbound.receive()
        except trio.EndOfChannel:
            raise sim.TransportClosed(1000, "bye", "closed by the test") from None

    async def ping(self) -> None:
        pass

    async def close(self) -> None:
        await self.inbound_send.aclose()


def test_json_codec_keeps_undecodable_frames_whole() -> None:
    assert sim.decode_json('[2,"7","Heartbeat",{}]') == [2, "7", "Heartbeat", {}]
    assert sim.decode_json(b'[3,"7",{"currentTime":"x"}]') == [3, "7", {"currentTime": "x"}]
    # Not JSON, not an array, nested past OCPP-J's limit, a number only the session's own
    # reader takes: each reaches the session as its exact text.
    for frame in ('[2,"7",', '{"a":1}', "5", "[" * 40 + "]" * 40, '[2,"1","A",{"v":1e400}]'):
        assert sim.decode_json(frame) == sim.Undecodable(frame)
    assert sim.encode_json([2, "1", "Heartbeat", {}]) == '[2,"1","Heartbeat",{}]'


async def test_websocket_transport_counts_the_bytes_of_each_frame() -> None:
    class Socket:
        subprotocol = "ocpp2.0.1"

        def __init__(self) -> None:
            self.frames: list[str] = []

        async def send_message(self, text: str) -> None:
            self.frames.append(text)

        async def get_message(self) -> str:
            return '[3,"1",{"note":"é"}]'

    socket = Socket()
    transport = sim.WebSocketTransport(socket)  # type: ignore[arg-type]
    await transport.send([[2, "1", "Heartbeat", {}], [2, "2", "Heartbeat", {}]])
    assert socket.frames == ['[2,"1","Heartbeat",{}]', '[2,"2","Heartbeat",{}]']
    assert transport.bytes_sent == 2 * len('[2,"1","Heartbeat",{}]')
    assert await transport.receive() == [[3, "1", {"note": "é"}]]
    # Counted in UTF-8 bytes, as they cross the wire: é takes two.
    assert transport.bytes_received == len('[3,"1",{"note":"é"}]') + 1
    assert transport.subprotocol == "ocpp2.0.1"


async def test_rpc_link_answers_and_calls_through_any_transport() -> None:
    station = make_station(Version.OCPP16)
    transport = MemoryTransport()
    link = sim.RpcLink(transport, Version.OCPP16, answer=station._answer_inbound,
                       spawn=station.spawn, log=station.log, call_timeout=5)
    async with trio.open_nursery() as nursery:
        station.attach(link, nursery)
        nursery.start_soon(link.serve)
        await transport.inbound_send.send(
            [[2, "c1", "GetConfiguration", {"key": ["HeartbeatInterval"]}]])
        # A frame that is not JSON reaches the session as it came: the CALLERROR quotes the
        # parser on the exact text, as it did before the transport seam.
        await transport.inbound_send.send([sim.Undecodable('[2,"c2",')])
        await trio.testing.wait_all_tasks_blocked()
        answer, refusal = transport.sent
        assert answer[:2] == [3, "c1"]
        assert answer[2]["configurationKey"][0]["key"] == "HeartbeatInterval"
        [reply] = RpcSession(Version.OCPP16).receive('[2,"c2",', 0.0)
        assert isinstance(reply, SendReply)
        assert refusal == json.loads(reply.text)
        assert refusal[2] == "FormationViolation" and "char 8" in refusal[3]

        async def answer_heartbeat() -> None:
            while len(transport.sent) < 3:
                await trio.sleep(0.01)
            call = transport.sent[2]
            assert call[0] == 2 and call[2] == "Heartbeat"
            answer = [3, call[1], {"currentTime": "2025-01-01T00:00:00Z"}]
            await transport.inbound_send.send([answer])

        nursery.start_soon(answer_heartbeat)
        outcome = await link.call("Heartbeat", {})
        assert isinstance(outcome, CallAnswered)
        assert outcome.payload == {"currentTime": "2025-01-01T00:00:00Z"}
        await transport.close()
    assert link.close_reason == "closed 1000 bye"
    # The session the link keeps is the ordinary one: nothing left outstanding.
    assert isinstance(link.session, RpcSession) and link.session.outstanding_call is None

"""The RPC link: OCPP-J calls over any Transport (see transport.py).

It reads the transport's messages, answers the CSMS's CALLs and pairs our CALLs with their
answers. lite_csms.ocppj.session.RpcSession decides every framing, validation and
correlation question; it reads and writes OCPP-J text, so messages cross into it as JSON
whatever the transport's own encoding is.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from lite_csms.ocppj import framing
from lite_csms.ocppj.framing import Payload
from lite_csms.ocppj.session import (
    CallAnswered,
    CallFailed,
    Event,
    Ignored,
    InboundCall,
    InboundSend,
    InvalidOutbound,
    RpcSession,
    SendReply,
)
from lite_csms.ocppj.versions import ErrorKind, Version

from .transport import Message, Transport, TransportClosed, Undecodable

# The error code of a CALL lost with its connection (not an OCPP code: never on the wire).
CONNECTION_CLOSED = "ConnectionClosed"

FollowUp = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Answer:
    """The station's answer to one CSMS CALL, and the work it starts once the answer is sent
    (a charger answers RemoteStart first, then starts charging)."""

    payload: Payload | None = None
    error: ErrorKind | None = None
    description: str = ""
    then: FollowUp | None = None

    @classmethod
    def ok(cls, payload: Payload, then: FollowUp | None = None) -> Answer:
        return cls(payload=payload, then=then)

    @classmethod
    def refuse(cls, kind: ErrorKind, description: str) -> Answer:
        return cls(error=kind, description=description)


class Link(Protocol):
    """What a station needs from a connection; tests and the traffic simulator substitute it."""

    async def call(self, action: str, payload: Payload) -> CallAnswered | CallFailed: ...


@dataclass(slots=True)
class _Waiter:
    message_id: str
    event: trio.Event = field(default_factory=trio.Event)
    outcome: CallAnswered | CallFailed | None = None


class RpcLink:
    """One connection's worth of OCPP-J: reads messages, answers CALLs, correlates our CALLs.

    The RpcSession decides; this class only moves messages. Inbound CALLs are answered by the
    reader itself because a station's answers never wait on I/O; the work an answer starts
    is handed to `spawn`, so the reader keeps reading while that work awaits its own CALLs.
    """

    def __init__(
        self, transport: Transport, version: Version, *,
        answer: Callable[[InboundCall], Answer], spawn: Callable[[FollowUp, str], None],
        log: Callable[[str], None], call_timeout: float,
    ) -> None:
        self.transport = transport
        self.session = RpcSession(version, call_timeout=call_timeout)
        self._answer = answer
        self._spawn = spawn
        self._log = log
        self._lock = trio.Lock()
        self._waiter: _Waiter | None = None
        self.close_reason: str | None = None

    @property
    def busy(self) -> bool:
        """A CALL of ours is waiting for its answer."""
        return self._lock.locked()

    async def serve(self) -> None:
        """Read until the transport closes; `close_reason` says why it did."""
        try:
            while True:
                for message in await self.transport.receive():
                    text = (message.frame if isinstance(message, Undecodable)
                            else framing.dumps(message))
                    for event in self.session.receive(text, trio.current_time()):
                        await self._on_event(event)
        except TransportClosed as exc:
            self.close_reason = exc.summary
        finally:
            self._settle_waiter(CallFailed("", "", CONNECTION_CLOSED,
                                           self.close_reason or "link closed", {}))

    async def _on_event(self, event: Event) -> None:
        match event:
            case InboundCall():
                answer = self._answer(event)
                await self._send(self._render(event, answer))
                if answer.then is not None:
                    self._spawn(answer.then, event.action)
            case CallAnswered() | CallFailed():
                self._settle_waiter(event)
            case SendReply(text, reason):
                self._log(f"!! answered a bad message with {reason[:120]}")
                await self._send(text)
            case Ignored(reason):
                self._log(f"!! ignored: {reason[:160]}")
            case InboundSend(_, action, _):
                self._log(f"<- SEND {action} (not handled)")

    async def _send(self, text: str) -> None:
        # The session writes OCPP-J text; the transport carries the message in its encoding.
        message: Message = framing.loads(text)
        await self.transport.send([message])

    def _render(self, call: InboundCall, answer: Answer) -> str:
        if answer.error is not None:
            return self.session.refuse(call, answer.error, answer.description)
        try:
            return self.session.answer(call, answer.payload or {})
        except InvalidOutbound as exc:
            # Our bug, never the CSMS's: say so on the wire rather than send an invalid payload.
            self._log(f"!! invalid {call.action} answer: {exc}")
            return self.session.refuse(call, ErrorKind.INTERNAL, "simulator built a bad answer")

    def _settle_waiter(self, outcome: CallAnswered | CallFailed) -> None:
        waiter = self._waiter
        if waiter is None or waiter.outcome is not None:
            return
        if outcome.message_id and outcome.message_id != waiter.message_id:
            return
        waiter.outcome = outcome
        waiter.event.set()

    async def call(self, action: str, payload: Payload) -> CallAnswered | CallFailed:
        """Send a CALL and await its answer; OCPP-J allows one outstanding CALL at a time."""
        async with self._lock:
            if self.close_reason is not None:
                return CallFailed("", action, CONNECTION_CLOSED, self.close_reason, {})
            message_id, text = self.session.start_call(action, payload, trio.current_time())
            waiter = self._waiter = _Waiter(message_id)
            try:
                await self._send(text)
                deadline = self.session.next_deadline()
                assert deadline is not None
                with trio.move_on_at(deadline):
                    await waiter.event.wait()
                return waiter.outcome or self._expired(message_id, action)
            finally:
                self._waiter = None
                if self.session.outstanding_call == (message_id, action):
                    # The send failed or the wait was cancelled (the link went): the call is
                    # lost with it, and must not block the next one on this link.
                    self.session.expire(math.inf)

    def _expired(self, message_id: str, action: str) -> CallFailed:
        for event in self.session.expire(trio.current_time()):
            if isinstance(event, CallFailed):
                return event
        return CallFailed(message_id, action, "Timeout", "no answer in time", {}, timed_out=True)

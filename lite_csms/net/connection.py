"""One station's live connection: one task that reads and answers, plus optional pings.

The RPC session decides; this module only moves text between it and the socket. The reader
answers each CALL before it reads the next message, so a station that floods us is simply
read more slowly, and an idle station costs one suspended task (docs/PERFORMANCE.md). A
handler never waits for the station (it awaits only the store), so answering inline cannot
block an answer the station owes us for longer than one commit.
On a lite connection (codecs/SPEC.md) every frame is binary: it is decoded to the OCPP-J text
the session reads, and the session's text is encoded back (net/lite_link.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import trio

from lite_csms.budget.meter import ConnectionMeter
from lite_csms.handlers import deviations, diagnostics, provisioning
from lite_csms.net.idle import IdleWatch
from lite_csms.net.lite_link import (
    LiteCodec,
    LiteEncodeError,
    LiteFrameError,
    close_reason,
    refusal_text,
)
from lite_csms.net.tally import Tally
from lite_csms.net.websocket import ConnectionClosed, WebSocket
from lite_csms.ocppj import schemas, timestamps
from lite_csms.ocppj.lenient import Deviation
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
from lite_csms.ocppj.values import UnstorableValue
from lite_csms.ocppj.versions import ErrorKind
from lite_csms.versions import ROUTES, StationContext

log = logging.getLogger("lite_csms.net")

# Close codes (RFC 6455): 1003 unsupported data, 1001 going away.
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_REPLACED = 1001
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
# Time given to send the 1001 frame to one station whose turn comes after the shared
# deadline (10,000 stations: the last is scheduled about a second after the first).
GOING_AWAY_SEND = 0.05
# Closes that end a connection as intended; any other ending is worth a warning.
ORDERLY_CLOSE_CODES = frozenset({1000, 1001})


def answer_action(action: str) -> str:
    """How deviations in a station's answer to our `action` are recorded."""
    return f"{action} (answer)"


# Traffic that no valid message explains: garbage, a broken answer, an unknown id.
INVALID_MESSAGE = "(invalid)"


def _action_of(events: list[Event]) -> str:
    for event in events:
        if isinstance(event, InboundCall | InboundSend | CallAnswered | CallFailed):
            return event.action or INVALID_MESSAGE
    return INVALID_MESSAGE


# StationConnection._exit: the server's fast exit (going_away_now).
_EXIT_NONE, _EXIT_WAITS, _EXIT_ANSWERED = 0, 1, 2


class Flag:
    """A trio.Event that costs two slots until someone waits: most are set, or only
    tested, and an idle station holds three (docs/PERFORMANCE.md, "Memory per station")."""

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: trio.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self) -> None:
        if self._set:
            await trio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()


class _SideTask:
    """A connection's side task run in the server's nursery: its scope and its end."""

    __slots__ = ("done", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.done = Flag()


@dataclass(slots=True)
class _Waiter:
    event: trio.Event = field(default_factory=trio.Event)
    outcome: CallAnswered | CallFailed | None = None


class StationConnection:
    __slots__ = ("__weakref__", "_boot_accepted", "_call_lock", "_cancel_early", "_exit",
                 "_helper", "_logged_deviations", "_on_ready", "_scope", "_seen", "_side",
                 "_stopped", "_waiters",
                 "accepted", "booted_before", "close_code", "close_reason", "ctx", "idle", "lite",
                 "lite_dictionary", "meter", "session", "spoke", "station_id", "tally", "ws")

    def __init__(self, ws: WebSocket, ctx: StationContext,
                 meter: ConnectionMeter | None = None, *, booted_before: bool = False,
                 lite: LiteCodec | None = None, tally: Tally | None = None,
                 idle: IdleWatch | None = None) -> None:
        self.ws = ws
        # The server's watch of idle sockets (net/idle.py); None: trio's wait_readable.
        self.idle = idle
        # The server's counts for /metrics (net/tally.py).
        self.tally = tally
        # Set on a lite connection: binary frames only, each one OCPP-J message.
        self.lite = lite
        # The newest dictionary the station has used here: ours to answer with (SPEC 4.3).
        self.lite_dictionary: int | None = None
        self.meter = meter
        self.ctx = ctx
        self.station_id = ctx.station_id
        self.session = RpcSession(ctx.version, call_timeout=ctx.settings.call_timeout,
                                  lenient=ctx.settings.inbound_mode == "lenient")
        # Deviations already logged on this connection: one line each, the counts go to the store.
        # Made at the first deviation: most stations never have one.
        self._logged_deviations: set[tuple[str, str, str]] | None = None
        # POSIX seconds of the last message: a float per message, a datetime when asked.
        self._seen = time.time()
        self._call_lock: trio.Lock | None = None
        # Our CALLs waiting for their answers; made at our first CALL.
        self._waiters: dict[str, _Waiter] | None = None
        self._scope: trio.CancelScope | None = None
        self._cancel_early = False
        self._stopped = Flag()
        # The server's fast exit (going_away_now(exit_next=True)): _EXIT_WAITS, then
        # _EXIT_ANSWERED once the station has answered; _EXIT_NONE otherwise.
        self._exit = _EXIT_NONE
        # run()'s on_ready task, until the station is accepted (_start_on_ready).
        self._on_ready: Callable[[], None] | None = None
        # The server's nursery the side task runs in, and the side task now (continue_aside).
        self._side: trio.Nursery | None = None
        self._helper: _SideTask | None = None
        self.close_reason = "closed"
        # The RFC 6455 code that ended the connection, when a close frame said so.
        self.close_code: int | None = None
        # OCPP has the CSMS wait for the station to speak first (1.6 §4.2, 2.0.1 B01-B03):
        # `spoke` is set once a CALL of this connection has been answered; `accepted` once, in
        # addition, the station is accepted: its BootNotification on this connection was
        # Accepted, or it was accepted by a BootNotification before (`booted_before`) and
        # reconnected without booting. A station that never booted (made by `station add`)
        # waits for its Accepted boot whatever it sends first. Only then do queued commands
        # and automatic settings go out.
        self.spoke = Flag()
        self.accepted = Flag()
        self.booted_before = booted_before
        self._boot_accepted = False
        if lite is not None and booted_before and ctx.registration == "accepted":
            # codecs/SPEC.md 11.1: a lite station reconnects without booting and without a
            # word when nothing changed, so it is ready as soon as its link is open.
            self.spoke.set()
            self.accepted.set()

    async def run(self, on_ready: Callable[[StationConnection], Awaitable[Any]] | None = None,
                  *, side: trio.Nursery | None = None) -> None:
        """Read and answer until the connection ends. `on_ready` runs beside the reader; given
        `side` (a nursery of the server's), it runs there, under a scope this connection
        cancels and awaits when it ends: once it is done, an idle station holds no nursery
        (docs/PERFORMANCE.md, "Memory per station"). Pings need the connection's own."""
        scope = self._scope = trio.CancelScope()
        if self._cancel_early:
            scope.cancel()
        try:
            with scope:
                if self.ctx.settings.ws_ping_interval > 0 or (on_ready is not None
                                                              and side is None):
                    async with trio.open_nursery() as nursery:
                        if on_ready is not None:
                            self._on_ready = partial(nursery.start_soon, self._guard, on_ready)
                        if self.ctx.settings.ws_ping_interval > 0:
                            nursery.start_soon(self._ping_loop, nursery.cancel_scope)
                        # The on_ready task starts once the station is accepted: until then
                        # (and a station that never boots) the connection is one task, which
                        # ends without cancelling anything (docs/PERFORMANCE.md, "Graceful
                        # stop").
                        if self._on_ready is not None and self.accepted.is_set():
                            self._start_on_ready()
                        await self._read_loop(nursery)
                else:
                    if on_ready is not None and side is not None:
                        self._side, helper = side, _SideTask()
                        self._helper = helper
                        self._on_ready = partial(side.start_soon, self._guard_side, on_ready,
                                                 helper)
                        if self.accepted.is_set():
                            self._start_on_ready()
                    # This frame stays suspended for the connection's life: it keeps none.
                    on_ready = side = helper = None
                    await self._read_loop(None)
        finally:
            # As a nursery would: a side task that started ends before the connection does
            # (one that never started, for a station never accepted, has nothing to end).
            self._side = None  # no side task starts from now on (continue_aside)
            helper = self._helper
            if helper is not None and self._on_ready is None and not helper.done.is_set():
                helper.scope.cancel()
                with trio.CancelScope(shield=True):
                    await helper.done.wait()
            self._helper = None
            self._on_ready = None
            self._stopped.set()
        for waiter in (self._waiters or {}).values():
            if waiter.outcome is None:
                waiter.outcome = CallFailed("", "", "ConnectionClosed", self.close_reason, {})
                waiter.event.set()

    @property
    def can_continue_aside(self) -> bool:
        """Whether continue_aside() can start a side task now."""
        return self._side is not None and self._on_ready is None

    def continue_aside(self, task: Callable[[StationConnection], Awaitable[Any]]) -> bool:
        """Start `task(self)` as this connection's side task, as on_ready was: run in the
        server's nursery, cancelled and awaited when the connection ends. For work that
        waits its turn without a task of its own (budget/policy.py: a waiting task is 5 KiB
        that would leave holes in the heap once gone). Call it once the previous side task
        has ended. False when the connection has ended (or runs its side tasks in a nursery
        of its own): `task` does not run."""
        side = self._side
        if side is None or self._on_ready is not None or self._stopped.is_set():
            return False
        helper = self._helper = _SideTask()
        side.start_soon(self._guard_side, task, helper)
        return True

    def start_beside(self, task: Callable[[], Awaitable[Any]]) -> None:
        """Start `task()` in the server's nursery this connection's side tasks run in (not
        tied to this connection). Only while can_continue_aside."""
        assert self._side is not None
        self._side.start_soon(task)

    def _start_on_ready(self) -> None:
        start, self._on_ready = self._on_ready, None
        if start is not None:
            start()

    async def _guard_side(self, task: Callable[[StationConnection], Awaitable[Any]],
                          helper: _SideTask) -> None:
        try:
            with helper.scope:
                await self._guard(task)
        finally:
            helper.done.set()
            if self._helper is helper:
                self._helper = None  # an idle station keeps no scope of its own

    async def _guard(self, task: Callable[[StationConnection], Awaitable[Any]]) -> None:
        try:
            await task(self)
        except Exception as exc:  # a failing side task must not end the station's connection
            log.exception("%s: background task failed: %s", self.station_id, exc)

    @property
    def last_seen(self) -> datetime:
        """When the station's last message arrived (UTC)."""
        return datetime.fromtimestamp(self._seen, UTC)

    async def replace(self) -> None:
        """A newer connection from the same station takes over: stop handling this one.

        Returns once nothing of this connection is handled any more (at most 2 s), so the
        station's messages stay in order. The close handshake is left to this connection's
        own task (`close_replaced`): after a cell outage the old peer is a dead radio that
        never answers it, and the new connection must not wait for that.
        """
        self.close_reason = "replaced by a new connection"
        self.close_code = CLOSE_REPLACED
        if self._scope is None:
            self._cancel_early = True  # run() has not begun: it ends at once
        else:
            self._scope.cancel()
        with trio.move_on_after(2):
            await self._stopped.wait()

    async def close_replaced(self) -> None:
        """Send the old peer 1001 and wait at most 2 s for its answer (RFC 6455 7.1.2)."""
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await self.ws.aclose(CLOSE_REPLACED, "replaced by a new connection")

    @property
    def stopped(self) -> bool:
        """Whether run() has ended: nothing of this connection is handled any more."""
        return self._stopped.is_set()

    @property
    def answered(self) -> bool:
        """Whether run() has ended, or (the server's fast exit) the station has answered our
        close frame: it is then counted at once, its connection left as it is for the exit
        to end in the books."""
        return self._exit == _EXIT_ANSWERED or self._stopped.is_set()

    def going_away_now(self, *, exit_next: bool = False) -> bytes | None:
        """The server stops: write the 1001 Going Away close frame at once, without a task
        (net/websocket.py send_close_now). None when it is out, and the station's answering
        close frame then ends the connection; otherwise what going_away() must still do:
        b"" (this connection takes the usual close) or the rest of the frame.

        `exit_next`: the process exits after the close window without ending connections
        (the server's fast exit). When the frame is out, a reader idle on its socket that
        wakes (the station's answer has arrived) notes the answer and waits for the exit,
        which reads the answer and ends the connection in the books: ending it here, its
        task and frames unwound, cost 0.2-0.3 ms of CPU, seconds for 10,000 stations."""
        self.close_reason = "server shutting down"
        self.close_code = CLOSE_GOING_AWAY
        # With the fast exit nothing of ours follows the frame: our FIN goes with it.
        rest = self.ws.send_close_now(CLOSE_GOING_AWAY, "server shutting down",
                                      fin=exit_next)
        if exit_next and rest is None:
            self._exit = _EXIT_WAITS
        return rest

    def exit_withdrawn(self) -> None:
        """The fast exit did not end the process (its hook returned: a test): a reader that
        wakes from now on ends its connection the usual way."""
        if self._exit == _EXIT_WAITS:
            self._exit = _EXIT_NONE

    async def going_away(self, deadline: float, rest: bytes = b"") -> None:
        """The server stops: send 1001 Going Away (or, given `rest`, the rest of a close frame
        going_away_now() began) and wait for the station's close frame until `deadline`
        (trio time, shared by every station), then close the TCP connection. The frame is
        sent even when the deadline has passed by the time this task runs."""
        self.close_reason = "server shutting down"
        self.close_code = CLOSE_GOING_AWAY
        deadline = max(deadline, trio.current_time() + GOING_AWAY_SEND)
        with trio.CancelScope(shield=True), trio.move_on_at(deadline):
            if rest:
                with contextlib.suppress(ConnectionClosed):
                    await self.ws.finish_close_send(rest)
                return
            await self.ws.aclose(CLOSE_GOING_AWAY, "server shutting down")

    # ---- inbound ---------------------------------------------------------------------------
    async def _read_loop(self, nursery: trio.Nursery | None) -> None:
        ws = self.ws
        try:
            while True:
                if (sock := ws.idle_socket()) is not None:
                    # Idle: park on the socket itself, not deep in the read path.
                    ws.reading = True
                    try:
                        if self.idle is not None:
                            await self.idle.wait_readable(sock.fileno())
                        else:
                            await trio.lowlevel.wait_readable(sock)
                    except (trio.ClosedResourceError, OSError):
                        pass  # get_message() below finds out how it ended
                    finally:
                        ws.reading = False
                    sock = None
                    if self._exit == _EXIT_WAITS:
                        # The server's fast exit: the answer stays in the kernel for the
                        # exit's last reading (going_away_now).
                        self._exit = _EXIT_ANSWERED
                        await trio.sleep_forever()
                # Nothing of a message outlives its handling in this frame, which an idle
                # station keeps suspended.
                if not await self._receive(await ws.get_message()):
                    return
        except ConnectionClosed as exc:
            self._note_close(exc)
        except Exception as exc:
            # A fault of ours must not pass for an orderly close, neither in the log nor to the
            # station (which would otherwise get 1000 Normal Closure): 1011, and why.
            log.exception("%s: internal error on a received message: %s", self.station_id, exc)
            self.close_code = CLOSE_INTERNAL_ERROR
            self.close_reason = (f"closed {CLOSE_INTERNAL_ERROR} internal error "
                                 f"({type(exc).__name__})")
            with trio.move_on_after(2):
                await self.ws.aclose(CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            # The connection's other tasks end with it; with none, no cancellation (each
            # costs a Cancelled raised in this task and theirs).
            if nursery is not None and nursery.child_tasks:
                nursery.cancel_scope.cancel()

    async def _receive(self, message: str | bytes) -> bool:
        """One message; False once we have closed the connection."""
        self._seen = time.time()
        if self.lite is not None:
            return await self._receive_lite(message)
        if isinstance(message, bytes):
            log.warning("%s: binary frame refused (OCPP-J is text)", self.station_id)
            self.close_reason = "binary frame"
            await self.ws.aclose(CLOSE_UNSUPPORTED_DATA, "OCPP-J uses text frames")
            return False
        events = self.session.receive(message, trio.current_time())
        self._count_in(events, message)
        for event in events:
            await self._on_event(event)
        return True

    async def _receive_lite(self, frame: str | bytes) -> bool:
        """One message of a lite connection; False once we have closed the connection."""
        if isinstance(frame, str):
            log.warning("%s: text frame refused (the lite link is binary)", self.station_id)
            self.close_reason = "text frame on a lite connection"
            self.close_code = CLOSE_UNSUPPORTED_DATA
            await self.ws.aclose(CLOSE_UNSUPPORTED_DATA, "the lite link uses binary frames")
            return False
        assert self.lite is not None
        try:
            text = self.lite.decode(frame)
        except LiteFrameError as exc:
            if self.meter is not None:
                self.meter.message(INVALID_MESSAGE, True, frame)
            if self.tally is not None:
                self.tally.inbound(INVALID_MESSAGE)
            return await self._refuse_frame(exc)
        used = self.lite.dictionary_used(frame)
        if used is not None and used > (self.lite_dictionary or 0):
            self.lite_dictionary = used
        events = self.session.receive(text, trio.current_time())
        self._count_in(events, frame)
        for event in events:
            await self._on_event(event)
        return True

    def _count_in(self, events: list[Event], data: str | bytes) -> None:
        action = _action_of(events)
        if self.meter is not None:
            self.meter.message(action, True, data)
        if self.tally is not None:
            self.tally.inbound(action)
            for event in events:
                # Only a CALLERROR the station sent: not an answer we could not read.
                if isinstance(event, CallFailed) and not event.invalid_answer:
                    self.tally.station_error(self.ctx.version, event.action, event.code)

    async def _refuse_frame(self, exc: LiteFrameError) -> bool:
        """The answer codecs/SPEC.md section 8 gives a frame that cannot be decoded."""
        if exc.close_code is not None:
            log.warning("%s: closed with %d: bad lite frame: %s", self.station_id,
                        exc.close_code, exc.description[:200])
            self.close_code = exc.close_code
            self.close_reason = f"closed {exc.close_code} bad lite frame"
            await self.ws.aclose(exc.close_code, close_reason(exc.description))
            return False
        if exc.answerable:
            text = refusal_text(exc, self.ctx.version)
            log.warning("%s: answered bad lite frame %s with %s: %s", self.station_id,
                        exc.message_id, exc.error_code(self.ctx.version),
                        exc.description[:200])
            await self._send(text, INVALID_MESSAGE)
            return True
        failed = None
        if exc.message_id is not None and exc.kind is not None:
            failed = self.session.unreadable_answer(
                exc.message_id, exc.kind, f"the station's answer could not be read: "
                f"{exc.description}")
        log.warning("%s: dropped bad lite frame %s: %s", self.station_id, exc.message_id,
                    exc.description[:200])
        if failed is not None:
            await self._on_event(failed)
        return True

    def _note_close(self, exc: ConnectionClosed) -> None:
        if self.close_code is not None:
            return  # we closed it ourselves and said why
        reason = exc.reason
        self.close_code = reason.code
        self.close_reason = f"closed {reason.code} {reason.reason or ''}".strip()

    async def _on_event(self, event: Event) -> None:
        match event:
            case InboundCall():
                await self._dispatch(event)
            case SendReply(text, reason):
                log.warning("%s: answered bad message with %s", self.station_id, reason[:200])
                await self._send(text, INVALID_MESSAGE)
            case CallAnswered() | CallFailed():
                if isinstance(event, CallAnswered) and event.deviations:
                    await self._record_deviations(answer_action(event.action),
                                                  event.deviations)
                waiter = (None if self._waiters is None
                          else self._waiters.get(event.message_id))
                if waiter is not None:
                    waiter.outcome = event
                    waiter.event.set()
            case Ignored(reason):
                log.warning("%s: ignored message: %s", self.station_id, reason[:200])
            case InboundSend(_, action, payload, found):
                # 2.1 SEND (NotifyPeriodicEventStream) is never answered; it is kept as received.
                await self._record_deviations(action, found)
                try:
                    await self.ctx.store.run(lambda: diagnostics.record_notification(
                        self.station_id, action, payload, None))
                except Exception as exc:  # nothing to answer; the reader must go on
                    log.error("%s: could not keep SEND %s: %s", self.station_id, action, exc)

    async def _dispatch(self, call: InboundCall) -> None:
        # A station that hung up before its answer went out raises ConnectionClosed here,
        # which ends the reader.
        await self._send_answer(await self._answer(call), call)
        self._note_spoken()

    def _note_spoken(self) -> None:
        # After the answer is on the wire, so that our first CALL follows it.
        self.spoke.set()
        if self.ctx.registration == "accepted" and (self.booted_before or self._boot_accepted):
            self.accepted.set()
            self._start_on_ready()

    async def _record_deviations(self, action: str, found: tuple[Deviation, ...]) -> None:
        if not found:
            return
        for deviation in found:
            key = (action, deviation.kind, deviation.path)
            if self._logged_deviations is None:
                self._logged_deviations = set()
            if key not in self._logged_deviations:
                self._logged_deviations.add(key)
                log.info("%s: accepted deviation in %s: %s at %s (%s)", self.station_id, action,
                         deviation.kind, deviation.path, deviation.example[:40])
        at = timestamps.now_utc()
        try:
            await self.ctx.store.run(
                lambda: deviations.record(self.station_id, action, found, at))
        except Exception as exc:  # the counts are for the operator; the message still counts
            log.error("%s: could not record deviations of %s: %s", self.station_id, action, exc)

    async def _answer(self, call: InboundCall) -> str:
        if call.deviations:
            await self._record_deviations(call.action, call.deviations)
        handler = ROUTES[self.ctx.version].get(call.action)
        if handler is None:
            known = call.action in schemas.known_actions(self.ctx.version)
            kind = ErrorKind.NOT_SUPPORTED if known else ErrorKind.NOT_IMPLEMENTED
            log.warning("%s: %s is not handled", self.station_id, call.action)
            return self.session.refuse(call, kind, f"{call.action} is not handled by this CSMS")
        if not provisioning.may_send(self.ctx.registration, call.action, self.ctx.solicited):
            log.warning("%s: %s while %s", self.station_id, call.action, self.ctx.registration)
            return self.session.refuse(call, ErrorKind.SECURITY, "station is not accepted")
        try:
            payload = await handler(self.ctx, call.payload)
            answer = self.session.answer(call, payload)
            if call.action == "BootNotification" and payload.get("status") == "Accepted":
                self._boot_accepted = True
            return answer
        except UnstorableValue as exc:
            # Raised before the store job runs: nothing of this message reached the store.
            log.warning("%s: %s refused: %s", self.station_id, call.action, exc)
            return self.session.refuse(call, exc.kind, str(exc))
        except InvalidOutbound as exc:
            log.error("%s: our %s answer was invalid: %s", self.station_id, call.action, exc)
            return self.session.refuse(call, ErrorKind.INTERNAL, "could not build a valid answer")
        except Exception as exc:
            log.exception("%s: %s failed: %s", self.station_id, call.action, exc)
            return self.session.refuse(call, ErrorKind.INTERNAL, "internal error")

    async def _send(self, text: str, action: str) -> None:
        """Raises LiteEncodeError for a message the lite link cannot carry (see _answer_lite)."""
        data: str | bytes = (text if self.lite is None
                             else self.lite.encode(text, self.lite_dictionary))
        await self.ws.send_message(data)
        if self.meter is not None:
            self.meter.message(action, False, data)
        if self.tally is not None:
            self.tally.outbound(action, text)

    async def _send_answer(self, text: str, call: InboundCall) -> None:
        try:
            await self._send(text, call.action)
        except LiteEncodeError as exc:
            # Valid OCPP that breaks a lite limit (a body over 64 KiB): the station still
            # gets an answer under its id.
            log.error("%s: our %s answer cannot be sent on the lite link: %s",
                      self.station_id, call.action, exc)
            await self._send(refusal_text(LiteFrameError(
                "the answer exceeds the lite link's limits", kind=ErrorKind.INTERNAL,
                message_id=call.message_id, answerable=True), self.ctx.version), call.action)

    async def _ping_loop(self, scope: trio.CancelScope) -> None:
        interval = self.ctx.settings.ws_ping_interval
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(interval) as wait:
                try:
                    await self.ws.ping()
                except ConnectionClosed:
                    return  # the reader has seen the close and ends the connection
            if wait.cancelled_caught:
                log.warning("%s: no pong within %g s", self.station_id, interval)
                self.close_reason = "ping timeout"
                scope.cancel()
                return

    # ---- outbound --------------------------------------------------------------------------
    async def call(self, action: str, payload: dict) -> CallAnswered | CallFailed:
        """Send a CALL and await its answer; one at a time, as OCPP-J requires."""
        if self._call_lock is None:
            self._call_lock = trio.Lock()
        lock = self._call_lock
        try:
            # Uncontended (the usual case: one sender at a time), taken without the
            # scheduler pass `async with` costs; a cancelled caller still sends nothing.
            if lock.locked():
                await lock.acquire()
            else:
                await trio.lowlevel.checkpoint_if_cancelled()
                lock.acquire_nowait()
            try:
                return await self._call_locked(action, payload)
            finally:
                lock.release()
        finally:
            if not lock.locked() and self._call_lock is lock:
                # No CALL under way or waiting: an idle station keeps no lock.
                self._call_lock = None

    async def _call_locked(self, action: str, payload: dict) -> CallAnswered | CallFailed:
        message_id, text = self.session.start_call(action, payload, trio.current_time())
        # Before it goes out: the station may send what we ask for before its answer lands.
        wanted = provisioning.solicited_by(action, payload)
        if wanted is not None:
            self.ctx.solicit(wanted)
        waiter = _Waiter()
        if self._waiters is None:
            self._waiters = {}
        waiters = self._waiters
        waiters[message_id] = waiter
        try:
            try:
                await self._send(text, action)
            except ConnectionClosed as exc:
                self._note_close(exc)
                # No answer can come: the next CALL (a settings batch goes on) fails the
                # same way instead of finding this one still outstanding.
                self.session.expire(math.inf)
                return CallFailed(message_id, action, "ConnectionClosed",
                                  self.close_reason, {})
            except LiteEncodeError as exc:
                log.error("%s: %s cannot be sent on the lite link: %s", self.station_id,
                          action, exc)
                self.session.expire(math.inf)  # never sent: nothing to wait for
                return CallFailed(message_id, action, "InternalError",
                                  f"cannot be sent on the lite link: {exc}", {})
            deadline = self.session.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else trio.current_time()):
                await waiter.event.wait()
            if waiter.outcome is None:
                for event in self.session.expire(trio.current_time()):
                    if isinstance(event, CallFailed):
                        waiter.outcome = event
        finally:
            del waiters[message_id]
            if not waiters and self._waiters is waiters:
                self._waiters = None
        if waiter.outcome is None:
            # The reader ended (the connection broke) between taking the answer and
            # handing it over: the command failed, the server goes on.
            return CallFailed(message_id, action, "ConnectionClosed", self.close_reason, {})
        return waiter.outcome

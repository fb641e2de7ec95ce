"""The OCPP-J RPC state machine for one connection, sans-IO.

Feed it inbound text with `receive`; it returns events. Ask it for outbound text with
`start_call`, `answer` and `refuse`. Time is passed in, never read, so call timeouts are data:
`next_deadline` says when to wake and `expire` turns an overdue call into an event.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from lite_csms.ocppj import framing, lenient, schemas, values
from lite_csms.ocppj.framing import Call, CallError, CallResult, FrameError, Payload, Send
from lite_csms.ocppj.versions import SEND_ACTIONS, ErrorKind, Version, error_code

DEFAULT_CALL_TIMEOUT = 30.0
# A station's error text is kept and printed up to this many characters, then marked.
MAX_KEPT_DESCRIPTION = 512

# The head of an answer frame, `[3,"id"` or `[4,"id"`, read from raw text that may not parse.
_ANSWER_HEAD = re.compile(r'\s*\[\s*([34])\s*,\s*"([^"\\]{1,36})"')


@dataclass(frozen=True, slots=True)
class InboundCall:
    """A schema-valid CALL from the peer; it must be answered once.

    `deviations` lists what lenient mode accepted to make it valid (empty when strictly valid).
    """

    message_id: str
    action: str
    payload: Payload
    deviations: tuple[lenient.Deviation, ...] = ()


@dataclass(frozen=True, slots=True)
class InboundSend:
    """A schema-valid 2.1 SEND from the peer; it is never answered."""

    message_id: str
    action: str
    payload: Payload
    deviations: tuple[lenient.Deviation, ...] = ()


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """A valid answer to our CALL; `deviations` lists what lenient mode accepted in it."""

    message_id: str
    action: str
    payload: Payload
    deviations: tuple[lenient.Deviation, ...] = ()


@dataclass(frozen=True, slots=True)
class CallFailed:
    """Our CALL got a CALLERROR, an invalid CALLRESULT, or no answer in time."""

    message_id: str
    action: str
    code: str
    description: str
    details: Payload
    timed_out: bool = False
    # The station answered, but its CALLRESULT failed our checks (schema or storable numbers).
    invalid_answer: bool = False


@dataclass(frozen=True, slots=True)
class SendReply:
    """Text the session wants sent now: a CALLERROR for a bad inbound message."""

    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """Inbound text dropped without an answer, as Part 4 requires; worth one log line."""

    reason: str


Event = InboundCall | InboundSend | CallAnswered | CallFailed | SendReply | Ignored


class CallInProgress(RuntimeError):
    """OCPP-J allows one outstanding CALL per direction."""


class InvalidOutbound(ValueError):
    """We were about to send a schema-invalid payload; that is our bug, never the peer's."""


def check_outbound(version: Version, action: str, payload: Payload) -> None:
    """A CALL we send passes its schema and the numeric rules an inbound one must pass
    (ocppj/values.py: the schemas set no bound, so 2**63 would pass them alone).

    Raises InvalidOutbound naming the field, before anything is sent.
    """
    try:
        violation = schemas.validate(version, action, payload, response=False)
    except schemas.UnknownAction:
        raise InvalidOutbound(f"{action} does not exist in {version.value}") from None
    if violation is not None:
        raise InvalidOutbound(f"{action}: {violation.description}")
    try:
        values.check_payload(schemas.schema(version, action, False), payload)
    except values.UnstorableValue as exc:
        raise InvalidOutbound(f"{action}: {exc}") from None


@functools.cache
def _empty_answer_violation(version: Version, action: str) -> schemas.SchemaViolation | None:
    """What is wrong with {} as the answer to `action`: the same every time, so checked once
    (StatusNotification's, MeterValues' and many more answers are {})."""
    return schemas.validate(version, action, {}, response=True)


@dataclass(slots=True)
class _Outstanding:
    message_id: str
    action: str
    deadline: float


def _exact_at(text: str | bytes, index: int) -> lenient.ExactText:
    """A lookup of a number's exact text in the payload at `index` of the frame `text`.

    The frame is read again only when a repair asks, so valid traffic pays nothing.
    """
    read: list[Any] = []

    def at(path: list[Any]) -> str | None:
        if not read:
            frame = framing.exact_numbers(text)
            read.append(frame[index] if isinstance(frame, list) and len(frame) > index
                        else None)
        node = read[0]
        for part in path:
            try:
                node = node[part]
            except (LookupError, TypeError):
                return None
        return node if isinstance(node, str) else None

    return at


def bounded(text: str, limit: int = MAX_KEPT_DESCRIPTION) -> str:
    """`text` cut to `limit` characters, marked with how long it was, for storing and printing."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (truncated from {len(text)} characters)"


def _integral_floats(paths: list[str]) -> list[lenient.Deviation]:
    """2.x schemas take 5.0 for an integer; lenient mode records it like 1.6's repair does."""
    shown = dict.fromkeys(re.sub(r"\[\d+\]", "[]", path) for path in paths)
    return [lenient.Deviation(lenient.INTEGRAL_FLOAT, path, "integral float") for path in shown]


# What every session without an unanswered CALL shares (most of the time, most sessions).
_NONE_UNANSWERED: frozenset[str] = frozenset()


class RpcSession:
    __slots__ = ("_id_prefix", "_last_id", "_outstanding", "_unanswered", "call_timeout",
                 "lenient", "version")

    def __init__(
        self,
        version: Version,
        *,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        id_prefix: str = "",
        lenient: bool = False,
    ) -> None:
        self.version = version
        # For what the station sends, its CALLs and its answers to ours; what we send stays
        # strictly schema-valid.
        self.lenient = lenient
        self.call_timeout = call_timeout
        self._outstanding: _Outstanding | None = None
        self._unanswered: set[str] | frozenset[str] = _NONE_UNANSWERED
        # Short ids save bytes on every CALL; the prefix lets a caller keep ids unique per process.
        self._id_prefix = id_prefix
        self._last_id = 0

    # ---- inbound -------------------------------------------------------------------------
    def receive(self, text: str | bytes, now: float) -> list[Event]:
        try:
            frame = framing.decode(text, self.version)
        except FrameError as exc:
            failed = self._fail_on_broken_answer(text, exc)
            if failed is not None:
                return [failed]
            if not exc.answerable:
                return [Ignored(exc.description)]
            return [self._error_reply(exc.message_id, exc.kind, exc.description)]
        match frame:
            case Call():
                return [self._receive_call(frame, _exact_at(text, 3))]
            case Send():
                return [self._receive_send(frame, _exact_at(text, 3))]
            case CallResult():
                return self._receive_result(frame, _exact_at(text, 2))
            case CallError():
                return self._receive_error(frame)
        raise AssertionError(frame)

    def _fail_on_broken_answer(self, text: str | bytes, exc: FrameError) -> CallFailed | None:
        """Our outstanding CALL, failed at once, when a frame that does not decode is plainly
        its answer: the raw text starts `[3,"<its id>"` or `[4,"<its id>"` (checked on the
        text, since a frame that does not parse has no id to read). Never answered (Part 4).
        Anything else keeps the ordinary path; the CALL then waits for its timeout.
        """
        pending = self._outstanding
        if pending is None:
            return None
        head = text[:80].decode(errors="replace") if isinstance(text, bytes) else text[:80]
        match = _ANSWER_HEAD.match(head)
        if match is None:
            return None
        kind = "CALLERROR" if match.group(1) == "4" else "CALLRESULT"
        return self.unreadable_answer(match.group(2), exc.kind,
                                      f"the station's {kind} could not be read: {exc.description}")

    def unreadable_answer(self, message_id: str, kind: ErrorKind, description: str
                          ) -> CallFailed | None:
        """Our outstanding CALL, failed at once, when an answer under its id arrived that
        cannot be read (here or by a transport below OCPP-J, such as the lite link). Such an
        answer is never answered itself (Part 4). None when `message_id` is not our CALL's.
        """
        pending = self._outstanding
        if pending is None or message_id != pending.message_id:
            return None
        self._outstanding = None
        return CallFailed(pending.message_id, pending.action, error_code(self.version, kind),
                          bounded(description), {}, invalid_answer=True)

    def _receive_call(self, call: Call, exact: lenient.ExactText) -> Event:
        if call.message_id in self._unanswered:
            return Ignored(f"duplicate message id {call.message_id!r} while still unanswered")
        try:
            payload, deviations, violation = self._check_inbound(call.action, call.payload,
                                                                 exact)
        except schemas.UnknownAction:
            return self._error_reply(
                call.message_id, ErrorKind.NOT_IMPLEMENTED, f"unknown action {call.action!r}"
            )
        if violation is not None:
            return self._error_reply(call.message_id, violation.kind, violation.description)
        if not isinstance(self._unanswered, set):
            self._unanswered = set()
        self._unanswered.add(call.message_id)
        return InboundCall(call.message_id, call.action, payload, deviations)

    def _receive_send(self, send: Send, exact: lenient.ExactText) -> Event:
        if (send.action in schemas.known_actions(self.version)
                and send.action not in SEND_ACTIONS.get(self.version, ())):
            return Ignored(f"SEND of {send.action}, which {self.version.value} sends as a "
                           "CALL: not processed")
        try:
            payload, deviations, violation = self._check_inbound(send.action, send.payload,
                                                                 exact)
        except schemas.UnknownAction:
            return Ignored(f"SEND of unknown action {send.action!r}")
        if violation is not None:
            return Ignored(f"invalid SEND {send.action}: {violation.description}")
        return InboundSend(send.message_id, send.action, payload, deviations)

    def _check_inbound(
        self, action: str, payload: Payload, exact: lenient.ExactText | None = None
    ) -> tuple[Payload, tuple[lenient.Deviation, ...], schemas.SchemaViolation | None]:
        """Schema (strict or lenient), then the numbers the store can hold. Raises UnknownAction."""
        return self._check(action, payload, False, exact)

    def _receive_result(self, result: CallResult, exact: lenient.ExactText) -> list[Event]:
        pending = self._take_outstanding(result.message_id)
        if pending is None:
            return [Ignored(f"CALLRESULT for unknown or expired id {result.message_id!r}")]
        payload, deviations, violation = self._check_answer(pending.action, result.payload,
                                                            exact)
        if violation is None:
            return [CallAnswered(pending.message_id, pending.action, payload, deviations)]
        code = error_code(self.version, violation.kind)
        failed = CallFailed(pending.message_id, pending.action, code,
                            bounded(violation.description), {}, invalid_answer=True)
        if self.version is Version.OCPP21:
            reply = framing.encode(
                CallError(pending.message_id, code, violation.description, about_result=True)
            )
            return [failed, SendReply(reply, "invalid CALLRESULT")]
        return [failed]

    def _check_answer(
        self, action: str, payload: Payload, exact: lenient.ExactText | None = None
    ) -> tuple[Payload, tuple[lenient.Deviation, ...], schemas.SchemaViolation | None]:
        """An answer to our CALL passes the same checks as an inbound CALL."""
        return self._check(action, payload, True, exact)

    def _check(
        self, action: str, payload: Payload, response: bool, exact: lenient.ExactText | None
    ) -> tuple[Payload, tuple[lenient.Deviation, ...], schemas.SchemaViolation | None]:
        """Its schema (with the lenient repairs in lenient mode), then the numbers the store
        can hold; integral floats taken as integers are deviations in lenient mode."""
        if self.lenient:
            payload, deviations, violation = lenient.validate(
                self.version, action, payload, response=response, exact=exact)
        else:
            deviations = ()
            violation = schemas.validate(self.version, action, payload, response=response)
        if violation is not None:
            return payload, (), violation
        try:
            converted = values.check_payload(schemas.schema(self.version, action, response),
                                             payload)
        except values.UnstorableValue as exc:
            return payload, (), schemas.SchemaViolation(exc.kind, str(exc))
        if self.lenient and converted:
            deviations = (*deviations, *_integral_floats(converted))
        return payload, deviations, None

    def _receive_error(self, error: CallError) -> list[Event]:
        if error.about_result:
            # 2.1: the peer rejected one of our CALLRESULTs; there is nothing left to correlate.
            return [Ignored(f"peer rejected our CALLRESULT {error.message_id}: {error.code}")]
        pending = self._take_outstanding(error.message_id)
        if pending is None:
            return [Ignored(f"CALLERROR for unknown or expired id {error.message_id!r}")]
        return [CallFailed(pending.message_id, pending.action, error.code[:64],
                           bounded(error.description), error.details)]

    def _take_outstanding(self, message_id: str) -> _Outstanding | None:
        pending = self._outstanding
        if pending is None or pending.message_id != message_id:
            return None
        self._outstanding = None
        return pending

    def _error_reply(self, message_id: str, kind: ErrorKind, description: str) -> SendReply:
        code = error_code(self.version, kind)
        text = framing.encode(CallError(message_id, code, description))
        return SendReply(text, f"{code}: {description}")

    # ---- outbound ------------------------------------------------------------------------
    @property
    def outstanding_call(self) -> tuple[str, str] | None:
        pending = self._outstanding
        return None if pending is None else (pending.message_id, pending.action)

    def start_call(self, action: str, payload: Payload, now: float) -> tuple[str, str]:
        """Return (message id, text) for a new CALL. Raises CallInProgress, InvalidOutbound."""
        if self._outstanding is not None:
            raise CallInProgress(self._outstanding.action)
        check_outbound(self.version, action, payload)
        self._last_id += 1
        message_id = f"{self._id_prefix}{self._last_id}"
        self._outstanding = _Outstanding(message_id, action, now + self.call_timeout)
        return message_id, framing.encode(Call(message_id, action, payload))

    def answer(self, call: InboundCall, payload: Payload) -> str:
        """CALLRESULT text for `call`. Raises InvalidOutbound, leaving the call unanswered."""
        self._require_unanswered(call.message_id)
        violation = (_empty_answer_violation(self.version, call.action) if not payload
                     else schemas.validate(self.version, call.action, payload, response=True))
        if violation is not None:
            raise InvalidOutbound(f"{call.action} response: {violation.description}")
        self._settled(call.message_id)
        return framing.encode(CallResult(call.message_id, payload))

    def refuse(
        self, call: InboundCall, kind: ErrorKind, description: str,
        details: dict[str, Any] | None = None,
    ) -> str:
        """CALLERROR text for `call`."""
        self._require_unanswered(call.message_id)
        self._settled(call.message_id)
        code = error_code(self.version, kind)
        return framing.encode(CallError(call.message_id, code, description, details or {}))

    def _settled(self, message_id: str) -> None:
        unanswered = self._unanswered
        if isinstance(unanswered, set):
            unanswered.discard(message_id)
            if not unanswered:
                self._unanswered = _NONE_UNANSWERED

    def _require_unanswered(self, message_id: str) -> None:
        if message_id not in self._unanswered:
            raise KeyError(f"call {message_id!r} is not awaiting an answer")

    # ---- time ----------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return None if self._outstanding is None else self._outstanding.deadline

    def expire(self, now: float) -> list[Event]:
        pending = self._outstanding
        if pending is None or now < pending.deadline:
            return []
        self._outstanding = None
        return [CallFailed(pending.message_id, pending.action, "Timeout",
                           f"no answer within {self.call_timeout:g} s", {}, timed_out=True)]

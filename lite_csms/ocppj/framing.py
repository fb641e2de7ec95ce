"""OCPP-J message frames: JSON arrays in, typed frames out, and back.

Message types: 2 CALL, 3 CALLRESULT, 4 CALLERROR; OCPP 2.1 adds 5 CALLRESULTERROR and 6 SEND.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from lite_csms.ocppj.versions import ErrorKind, Version

CALL = 2
CALLRESULT = 3
CALLERROR = 4
CALLRESULTERROR = 5
SEND = 6

MAX_MESSAGE_ID_LENGTH = 36
# Part 4 says a message id that cannot be read is answered with "-1".
UNREADABLE_ID = "-1"
MAX_ERROR_DESCRIPTION = 255
# Arrays and objects nested in one frame, the frame's own array counting as 1. The deepest OCA
# payload (2.x ReportChargingProfiles) nests 13 levels, 14 in its frame; 32 leaves a wide margin
# and stays far below what orjson (1024) and the recursive walks after it (journal, values.py)
# can take. No item-count limit: the frame-size limit (max_message_size) already bounds it.
MAX_NESTING = 32

Payload = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Call:
    message_id: str
    action: str
    payload: Payload


@dataclass(frozen=True, slots=True)
class Send:
    """OCPP 2.1 SEND: a CALL that expects no answer."""

    message_id: str
    action: str
    payload: Payload


@dataclass(frozen=True, slots=True)
class CallResult:
    message_id: str
    payload: Payload


@dataclass(frozen=True, slots=True)
class CallError:
    message_id: str
    code: str
    description: str
    details: Payload = field(default_factory=dict)
    # True for 2.1 CALLRESULTERROR: the peer could not process our CALLRESULT.
    about_result: bool = False


Frame = Call | Send | CallResult | CallError


class FrameError(Exception):
    """An inbound text that is not a well-formed frame.

    `message_id` is what the answer must carry: the frame's own id when it could be read,
    else "-1". `answerable` is False where Part 4 forbids answering (a broken CALLRESULT or
    CALLERROR must never be answered with a CALLERROR).
    """

    def __init__(
        self, kind: ErrorKind, description: str, message_id: str = UNREADABLE_ID,
        *, answerable: bool = True,
    ) -> None:
        super().__init__(description)
        self.kind = kind
        self.description = description
        self.message_id = message_id
        self.answerable = answerable


def loads(text: str | bytes) -> Any:
    """Parse JSON; orjson caps nesting at 1024 levels in C, so deep input cannot blow the stack.

    A number too large for a double (1e400) is valid JSON that orjson refuses outright, which
    would cost the frame its message id. Such text is read again with the standard parser, which
    gives inf, so the CALL is answered under its own id with PropertyConstraintViolation
    (ocppj/values.py). The literals NaN and Infinity stay invalid JSON.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "infinity" not in str(exc):
            raise
        try:
            return json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise exc from None


def exact_numbers(text: str | bytes) -> Any:
    """The message read again with every number kept as the text it was written with
    (`3.40` stays "3.40", `91234567890123456789` keeps all its digits), or None when it cannot
    be read so. orjson reads numbers as doubles; this slower path is for the rare repair that
    needs the exact text (lenient number-as-string)."""
    try:
        return json.loads(text, parse_int=str, parse_float=str, parse_constant=str)
    except (ValueError, RecursionError):
        return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


_TYPES_16_201 = frozenset({CALL, CALLRESULT, CALLERROR})
_TYPES_21 = frozenset({CALL, CALLRESULT, CALLERROR, CALLRESULTERROR, SEND})


def _types_for(version: Version) -> frozenset[int]:
    return _TYPES_21 if version is Version.OCPP21 else _TYPES_16_201


def decode(text: str | bytes, version: Version) -> Frame:
    try:
        message = loads(text)
    except orjson.JSONDecodeError as exc:
        raise FrameError(ErrorKind.RPC_FRAMEWORK, f"not valid JSON: {exc}") from None
    if not isinstance(message, list) or not message:
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "a message must be a non-empty JSON array")
    message_id = _read_id(message)
    type_id = message[0]
    if _may_nest_deeper(text) and _nested_deeper(message, MAX_NESTING):
        raise FrameError(ErrorKind.FORMAT,
                         f"nested deeper than {MAX_NESTING} levels of arrays and objects",
                         message_id, answerable=type_id == CALL)
    if type(type_id) is not int:
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "message type id must be an integer", message_id)
    if type_id not in _types_for(version):
        raise FrameError(
            ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED,
            f"message type {type_id} is not supported on {version.value}",
            message_id,
        )
    if message_id == UNREADABLE_ID and not _id_is_literally_minus_one(message):
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "message id could not be read",
                         answerable=type_id in (CALL, SEND))
    if type_id in (CALL, SEND):
        return _decode_call(message, message_id, type_id)
    if type_id == CALLRESULT:
        if len(message) != 3 or not isinstance(message[2], dict):
            raise FrameError(ErrorKind.RPC_FRAMEWORK, "CALLRESULT must be [3, id, {payload}]",
                             message_id, answerable=False)
        return CallResult(message_id, message[2])
    return _decode_error(message, message_id, about_result=type_id == CALLRESULTERROR)


def _may_nest_deeper(text: str | bytes) -> bool:
    """False when the text has too few brackets to nest past MAX_NESTING: every array and
    object opens with one (brackets inside strings only raise the count), so nearly every
    message skips the walk."""
    if isinstance(text, str):
        return text.count("[") + text.count("{") > MAX_NESTING
    return text.count(b"[") + text.count(b"{") > MAX_NESTING


def _nested_deeper(value: Any, limit: int) -> bool:
    """True when arrays and objects nest more than `limit` levels (`value` itself is level 1).

    Iterative, so the check itself cannot exhaust the stack.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if level > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, level + 1) for child in children
                     if isinstance(child, dict | list))
    return False


def _id_is_literally_minus_one(message: list[Any]) -> bool:
    return len(message) > 1 and message[1] == UNREADABLE_ID


def _read_id(message: list[Any]) -> str:
    if len(message) < 2:
        return UNREADABLE_ID
    message_id = message[1]
    if not isinstance(message_id, str) or not message_id:
        return UNREADABLE_ID
    if len(message_id) > MAX_MESSAGE_ID_LENGTH:
        return UNREADABLE_ID
    return message_id


def _decode_call(message: list[Any], message_id: str, type_id: int) -> Call | Send:
    if len(message) != 4:
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "CALL must be [2, id, action, {payload}]",
                         message_id, answerable=type_id == CALL)
    action, payload = message[2], message[3]
    if not isinstance(action, str) or not action:
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "action must be a non-empty string",
                         message_id, answerable=type_id == CALL)
    if not isinstance(payload, dict):
        raise FrameError(ErrorKind.FORMAT, "payload must be a JSON object",
                         message_id, answerable=type_id == CALL)
    if type_id == SEND:
        return Send(message_id, action, payload)
    return Call(message_id, action, payload)


def _decode_error(message: list[Any], message_id: str, *, about_result: bool) -> CallError:
    if len(message) != 5:
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "CALLERROR must have 5 elements",
                         message_id, answerable=False)
    _, _, code, description, details = message
    if not isinstance(code, str) or not isinstance(description, str) or not isinstance(
        details, dict
    ):
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "CALLERROR has fields of the wrong type",
                         message_id, answerable=False)
    return CallError(message_id, code, description, details, about_result=about_result)


def encode(frame: Frame) -> str:
    match frame:
        case Call(message_id, action, payload):
            return dumps([CALL, message_id, action, payload])
        case Send(message_id, action, payload):
            return dumps([SEND, message_id, action, payload])
        case CallResult(message_id, payload):
            return dumps([CALLRESULT, message_id, payload])
        case CallError(message_id, code, description, details, about_result):
            type_id = CALLRESULTERROR if about_result else CALLERROR
            return dumps([type_id, message_id, code, description[:MAX_ERROR_DESCRIPTION], details])
    raise TypeError(f"not a frame: {frame!r}")

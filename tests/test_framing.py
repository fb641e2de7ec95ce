"""OCPP-J framing, without sockets."""

import pytest

from lite_csms.ocppj import framing
from lite_csms.ocppj.framing import Call, CallError, CallResult, FrameError, Send
from lite_csms.ocppj.versions import ErrorKind, Version, error_code

V16, V201, V21 = Version.OCPP16, Version.OCPP201, Version.OCPP21


def test_call_round_trip() -> None:
    call = Call("19223201", "BootNotification", {"reason": "PowerUp"})
    text = framing.encode(call)
    assert text == '[2,"19223201","BootNotification",{"reason":"PowerUp"}]'
    assert framing.decode(text, V201) == call


def test_result_and_error_round_trip() -> None:
    assert framing.decode('[3,"a",{"x":1}]', V16) == CallResult("a", {"x": 1})
    error = framing.decode('[4,"a","NotImplemented","nope",{}]', V16)
    assert error == CallError("a", "NotImplemented", "nope", {})
    assert framing.encode(error) == '[4,"a","NotImplemented","nope",{}]'


@pytest.mark.parametrize("text", ["garbage", "{}", "[]", "42", '"str"', "[2,"])
def test_garbage_gets_rpc_framework_error_with_id_minus_one(text: str) -> None:
    with pytest.raises(FrameError) as info:
        framing.decode(text, V201)
    assert info.value.kind is ErrorKind.RPC_FRAMEWORK
    assert info.value.message_id == "-1"
    assert info.value.answerable


def test_unreadable_message_id() -> None:
    for text in ('[2, 17, "Heartbeat", {}]', '[2, "' + "x" * 37 + '", "Heartbeat", {}]'):
        with pytest.raises(FrameError) as info:
            framing.decode(text, V201)
        assert info.value.message_id == "-1"


def test_unknown_message_type_keeps_the_id() -> None:
    with pytest.raises(FrameError) as info:
        framing.decode('[7,"abc",{}]', V201)
    assert info.value.kind is ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED
    assert info.value.message_id == "abc"
    assert error_code(V201, info.value.kind) == "MessageTypeNotSupported"
    assert error_code(V16, info.value.kind) == "ProtocolError"


def test_types_5_and_6_only_in_21() -> None:
    with pytest.raises(FrameError):
        framing.decode('[6,"s1","NotifyPeriodicEventStream",{}]', V201)
    assert framing.decode('[6,"s1","NotifyPeriodicEventStream",{}]', V21) == Send(
        "s1", "NotifyPeriodicEventStream", {})
    error = framing.decode('[5,"c1","FormatViolation","bad",{}]', V21)
    assert isinstance(error, CallError) and error.about_result
    assert framing.encode(error).startswith("[5,")


def test_broken_result_is_never_answered() -> None:
    with pytest.raises(FrameError) as info:
        framing.decode('[3,"a","not an object"]', V16)
    assert not info.value.answerable
    with pytest.raises(FrameError) as info:
        framing.decode('[4,"a","Code"]', V16)
    assert not info.value.answerable


def test_payload_must_be_object() -> None:
    with pytest.raises(FrameError) as info:
        framing.decode('[2,"a","Heartbeat",[]]', V16)
    assert info.value.kind is ErrorKind.FORMAT
    assert error_code(V16, info.value.kind) == "FormationViolation"
    assert error_code(V201, info.value.kind) == "FormatViolation"


def test_deep_nesting_is_a_parse_error_not_a_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(FrameError) as info:
        framing.decode(deep, V201)
    assert info.value.kind is ErrorKind.RPC_FRAMEWORK


def test_error_description_is_truncated_to_spec_length() -> None:
    text = framing.encode(CallError("a", "GenericError", "x" * 1000))
    assert len(framing.loads(text)[3]) == framing.MAX_ERROR_DESCRIPTION

"""The sans-IO RPC session: validation, correlation, one outstanding CALL, timeouts as data."""

import pytest

from lite_csms.ocppj import framing
from lite_csms.ocppj.session import (
    CallAnswered,
    CallFailed,
    CallInProgress,
    Ignored,
    InboundCall,
    InboundSend,
    InvalidOutbound,
    RpcSession,
    SendReply,
)
from lite_csms.ocppj.versions import ErrorKind, Version

BOOT_16 = {"chargePointVendor": "V", "chargePointModel": "M"}


def reply_of(events: list) -> list:
    assert len(events) == 1 and isinstance(events[0], SendReply), events
    return framing.loads(events[0].text)


def test_valid_call_becomes_an_event_and_is_answered_once() -> None:
    session = RpcSession(Version.OCPP16)
    [event] = session.receive(framing.dumps([2, "m1", "BootNotification", BOOT_16]), 0.0)
    assert event == InboundCall("m1", "BootNotification", BOOT_16)
    answer = {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 300}
    assert framing.loads(session.answer(event, answer)) == [3, "m1", answer]
    with pytest.raises(KeyError):
        session.answer(event, answer)


@pytest.mark.parametrize(
    ("version", "payload", "code"),
    [
        (Version.OCPP16, {"chargePointVendor": "V"}, "OccurenceConstraintViolation"),
        (Version.OCPP16, {**BOOT_16, "chargePointVendor": 5}, "TypeConstraintViolation"),
        (Version.OCPP16, {**BOOT_16, "extra": 1}, "FormationViolation"),
        (Version.OCPP16, {**BOOT_16, "chargePointVendor": "x" * 21}, "PropertyConstraintViolation"),
        (Version.OCPP201, {"reason": "PowerUp"}, "OccurrenceConstraintViolation"),
        (Version.OCPP201, {"reason": "Nope", "chargingStation": {"model": "m", "vendorName": "v"}},
         "PropertyConstraintViolation"),
        (Version.OCPP201, {"reason": "PowerUp", "chargingStation": {"model": "m",
                           "vendorName": "v"}, "x": 1}, "FormatViolation"),
    ],
)
def test_schema_violations_get_the_versions_error_code(version, payload, code) -> None:
    session = RpcSession(version)
    reply = reply_of(session.receive(framing.dumps([2, "m1", "BootNotification", payload]), 0))
    assert reply[:3] == [4, "m1", code]


def test_unknown_action_is_not_implemented() -> None:
    reply = reply_of(RpcSession(Version.OCPP201).receive('[2,"m","Teleport",{}]', 0))
    assert reply[:3] == [4, "m", "NotImplemented"]


def test_garbage_is_answered_and_the_session_goes_on() -> None:
    session = RpcSession(Version.OCPP201)
    assert reply_of(session.receive(b"\x00\x01not json", 0))[:3] == [4, "-1", "RpcFrameworkError"]
    [event] = session.receive('[2,"m2","Heartbeat",{}]', 0)
    assert isinstance(event, InboundCall)


def test_one_outstanding_call_and_correlation() -> None:
    session = RpcSession(Version.OCPP16)
    message_id, text = session.start_call("Reset", {"type": "Soft"}, now=0.0)
    assert framing.loads(text) == [2, message_id, "Reset", {"type": "Soft"}]
    with pytest.raises(CallInProgress):
        session.start_call("ClearCache", {}, now=0.0)
    # An answer to some other id is not ours.
    [ignored] = session.receive('[3,"other",{"status":"Accepted"}]', 1.0)
    assert isinstance(ignored, Ignored)
    [answered] = session.receive(framing.dumps([3, message_id, {"status": "Accepted"}]), 1.0)
    assert answered == CallAnswered(message_id, "Reset", {"status": "Accepted"})
    assert session.outstanding_call is None
    session.start_call("ClearCache", {}, now=2.0)


def test_invalid_result_fails_the_call() -> None:
    session = RpcSession(Version.OCPP16)
    message_id, _ = session.start_call("Reset", {"type": "Soft"}, now=0.0)
    [failed] = session.receive(framing.dumps([3, message_id, {"status": "Maybe"}]), 1.0)
    assert isinstance(failed, CallFailed) and failed.code == "PropertyConstraintViolation"


def test_invalid_result_in_21_is_answered_with_callresulterror() -> None:
    session = RpcSession(Version.OCPP21)
    message_id, _ = session.start_call("ClearCache", {}, now=0.0)
    failed, reply = session.receive(framing.dumps([3, message_id, {"status": 7}]), 1.0)
    assert isinstance(failed, CallFailed)
    assert isinstance(reply, SendReply) and framing.loads(reply.text)[:2] == [5, message_id]


def test_call_error_fails_the_call() -> None:
    session = RpcSession(Version.OCPP201)
    message_id, _ = session.start_call("ClearCache", {}, now=0.0)
    [failed] = session.receive(
        framing.dumps([4, message_id, "NotSupported", "no", {"k": 1}]), 0.5)
    assert failed == CallFailed(message_id, "ClearCache", "NotSupported", "no", {"k": 1})


def test_timeouts_are_data() -> None:
    session = RpcSession(Version.OCPP201, call_timeout=30)
    message_id, _ = session.start_call("ClearCache", {}, now=100.0)
    assert session.next_deadline() == 130.0
    assert session.expire(129.9) == []
    [timed_out] = session.expire(130.0)
    assert isinstance(timed_out, CallFailed) and timed_out.timed_out
    assert session.next_deadline() is None
    # A late answer finds nothing to correlate with.
    [late] = session.receive(framing.dumps([3, message_id, {"status": "Accepted"}]), 131.0)
    assert isinstance(late, Ignored)


def test_outbound_payloads_are_validated() -> None:
    session = RpcSession(Version.OCPP16)
    with pytest.raises(InvalidOutbound):
        session.start_call("Reset", {"type": "Sideways"}, now=0)
    assert session.outstanding_call is None
    [call] = session.receive(framing.dumps([2, "m", "Heartbeat", {}]), 0)
    with pytest.raises(InvalidOutbound):
        session.answer(call, {"currentTime": 12})
    # The call is still waiting for a proper answer.
    text = session.refuse(call, ErrorKind.INTERNAL, "oops")
    assert framing.loads(text)[:3] == [4, "m", "InternalError"]


def test_send_is_never_answered() -> None:
    session = RpcSession(Version.OCPP21)
    stream = {"id": 1, "pending": 0, "basetime": "2026-11-21T10:00:00Z",
              "data": [{"t": 0, "v": "1"}]}
    [event] = session.receive(framing.dumps([6, "s", "NotifyPeriodicEventStream", stream]), 0)
    assert isinstance(event, InboundSend)
    [bad] = session.receive('[6,"s2","NotifyPeriodicEventStream",{"x":1}]', 0)
    assert isinstance(bad, Ignored)
    # Heartbeat is a CALL in 2.1: as a SEND it would go unanswered, so it is not processed.
    [wrong] = session.receive('[6,"s3","Heartbeat",{}]', 0)
    assert isinstance(wrong, Ignored) and "Heartbeat" in wrong.reason


def test_duplicate_unanswered_id_is_ignored() -> None:
    session = RpcSession(Version.OCPP16)
    session.receive('[2,"dup","Heartbeat",{}]', 0)
    [event] = session.receive('[2,"dup","Heartbeat",{}]', 0)
    assert isinstance(event, Ignored)


def test_an_unreadable_answer_to_our_call_fails_it_at_once_and_only_under_its_id() -> None:
    # What a transport below OCPP-J (the lite link) reports when it read the id but not the
    # rest: the CALL fails now, as a broken JSON answer does, instead of at its timeout.
    session = RpcSession(Version.OCPP201)
    message_id, _ = session.start_call("Reset", {"type": "Immediate"}, now=0.0)
    assert session.unreadable_answer("other", ErrorKind.FORMAT, "bad") is None
    assert session.outstanding_call == (message_id, "Reset")
    failed = session.unreadable_answer(message_id, ErrorKind.FORMAT, "unknown key number 9")
    assert failed is not None and failed.invalid_answer
    assert (failed.message_id, failed.code) == (message_id, "FormatViolation")
    assert session.outstanding_call is None
    assert session.unreadable_answer(message_id, ErrorKind.FORMAT, "again") is None

"""The buttons that reach a charger: remote start and stop, availability. Each goes through
the server's one command path (lite_csms/control.py: checked, logged in the command log,
sent, its answer recorded) and returns a sentence for the person who pressed it.

A charger that is offline, slow or refusing is not an error page: the sentence says what
happened and the person tries again. Nothing is queued: a start that reaches a charger an
hour later would surprise whoever stands at it then.
"""

from __future__ import annotations

from lite_csms.control import OperationOutcome, OperationRefused, StationControl

OFFLINE = "The charger is offline: nothing was sent. Try again when it is back."


async def start(control: StationControl, station_id: str, connector: int, token: str,
                who: str) -> str:
    try:
        outcome = await control.remote_start(station_id, connector, token, requested_by=who)
    except OperationRefused as exc:
        return _refused(exc)
    return _said(outcome, "The charger is starting: plug in if you have not.")


async def stop(control: StationControl, station_id: str, tx_id: int, who: str) -> str:
    try:
        outcome = await control.remote_stop(station_id, tx_id, requested_by=who)
    except OperationRefused as exc:
        return _refused(exc)
    return _said(outcome, "The charger is stopping the session.")


async def availability(control: StationControl, station_id: str, connector: int,
                       operative: bool, who: str) -> str:
    try:
        outcome = await control.operate(
            station_id, "change-availability",
            {"connector": connector, "operative": operative}, requested_by=who)
    except OperationRefused as exc:
        return _refused(exc)
    return _said(outcome, "The charger is now " + ("available." if operative
                                                   else "out of service."))


def _refused(exc: OperationRefused) -> str:
    if exc.status == 409:
        return OFFLINE if "offline" in exc.message or "not connected" in exc.message else (
            f"The charger cannot take it now: {exc.message}")
    return f"That was not sent: {exc.message}"


def _said(outcome: OperationOutcome, done: str) -> str:
    if outcome.status == "timeout":
        return "The charger did not answer in time. Reload the page in a moment."
    if outcome.status != "answered" or outcome.invalid_answer:
        return "The charger could not do it (it answered with an error)."
    status = (outcome.result or {}).get("status")
    if status == "Scheduled":
        return done + " It does so once its current session ends."
    if status != "Accepted":
        return f"The charger refused ({status})."
    return done

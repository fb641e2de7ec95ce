"""Answers to the CSMS's calls, shared by every version: the dispatch from an action to its
handler, the CALLERROR for an action the station does not handle, availability changes, and
the progress reports of downloads and uploads. Each version's own answers are in v16.py and
v2.py; the profiles and reports they draw on are in responders.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import datetime

from lite_csms.ocppj import schemas
from lite_csms.ocppj.framing import Payload
from lite_csms.ocppj.session import InboundCall
from lite_csms.ocppj.versions import ErrorKind, error_code

from . import responders
from .link import Answer
from .state import Connector
from .station import ChargingStation, brief

Handler = Callable[[Payload], Answer]


class AnsweringStation(ChargingStation):
    """A ChargingStation that answers the CSMS: `handle_call` looks the action up in the
    version's `handlers()` and says what the answer changed and what it starts."""

    # ---- dispatch ---------------------------------------------------------------------------
    def handlers(self) -> dict[str, Handler]:
        raise NotImplementedError

    def handle_call(self, action: str, payload: Payload) -> Answer:
        """Answer one CSMS-initiated CALL as a charger would.

        State changes that are part of the answer (a new configuration value) happen here;
        anything that needs the wire (starting to charge, a triggered message) is in `then`.
        """
        handler = self.handlers().get(action)
        if handler is not None:
            return handler(payload)
        kind = (ErrorKind.NOT_SUPPORTED if action in schemas.known_actions(self.version)
                else ErrorKind.NOT_IMPLEMENTED)
        return Answer.refuse(kind, f"{action} is not supported by this station")

    def _answer_inbound(self, call: InboundCall) -> Answer:
        try:
            answer = self.handle_call(call.action, call.payload)
        except Exception as exc:
            # A simulator bug must cost one CALLERROR, not the reader task and the link.
            self.log(f"!! {call.action} handler failed: {exc!r}")
            answer = Answer.refuse(ErrorKind.INTERNAL, "simulator error")
        shown: Payload | str = (answer.payload or {}) if answer.error is None else (
            f"CALLERROR {error_code(self.version, answer.error)}")
        self.report.call_received(call.action, call.payload, shown)
        self.log(f"<- {call.action} {brief(call.payload)} => {brief(shown)}")
        return answer

    # ---- firmware, logs, profiles: shared by both versions -----------------------------------
    async def report_progress(self, action: str, statuses: Iterable[str],
                              request_id: int | None, start_after: float = 0.0) -> None:
        """A download, install or upload as a charger reports it: one status per step."""
        await self.clock.sleep(start_after)
        for status in statuses:
            await self.clock.sleep(responders.PROGRESS_STEP_SECONDS)
            payload: Payload = {"status": status}
            if request_id is not None:
                payload["requestId"] = request_id
            await self.call(action, payload)

    def seconds_until(self, timestamp: str) -> float:
        """Simulated seconds until a CSMS-given time (a retrieve date); 0 if it has passed."""
        when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        return max(0.0, (when - self.clock.now()).total_seconds())

    def profile_refused(self, evse: int, profile: Payload, tx_id: object) -> bool:
        """Whether a new charging profile cannot apply: an unknown connector, a TxProfile for
        a transaction not running there, a station-wide maximum on one connector."""
        if evse and evse not in self.connectors:
            return True
        purpose = profile["chargingProfilePurpose"]
        if purpose == "TxProfile":
            tx = self.connectors[evse].transaction if evse else None
            return tx is None or tx_id != profile.get("transactionId")
        return purpose in ("ChargePointMaxProfile", "ChargingStationMaxProfile") and evse != 0

    def composite_limit(self, evse: int, unit: str | None) -> tuple[str, float]:
        unit = unit or self.profiles.unit_for(evse)
        return unit, round(self.profiles.limit(evse, unit), 1)

    # ---- availability: shared by both versions ----------------------------------------------
    def change_availability(self, targets: list[Connector], operative: bool) -> Answer:
        """Shared by both versions: busy connectors change once their session ends."""
        scheduled = False
        for connector in targets:
            if connector.transaction is not None:
                connector.scheduled_operative = operative
                scheduled = True
            else:
                connector.operative = operative
        status = "Scheduled" if scheduled else "Accepted"
        return Answer.ok({"status": status}, then=functools.partial(self._settle_all, targets))

    async def _settle_all(self, targets: list[Connector]) -> None:
        for connector in targets:
            await self.settle(connector)

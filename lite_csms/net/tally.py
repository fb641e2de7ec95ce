"""Counts for /metrics kept on the hot path: plain dict increments on the trio thread.

A prometheus_client labelled Counter costs a lock per increment (about 1.3 µs with the child
cached, 4.6 µs through `.labels()`); these dicts cost about 0.4 µs, and lite_csms/metrics.py
reads them only when Prometheus scrapes (tools/bench_metrics.py, docs/OPERATIONS.md).

Every label stays bounded whatever a peer sends: an action is one the version's schemas
define (the session refuses any other before it gets here) or "(invalid)", and an error code
a station sends is kept only if the version defines it, else "(other)".
"""

from __future__ import annotations

import orjson

from lite_csms.budget.names import IN, OUT
from lite_csms.ocppj.versions import Version, known_error_codes

OTHER_CODE = "(other)"
# A CALLERROR as framing.encode writes it: `[4,"<id>","<code>",...`.
_CALLERROR_HEAD = "[4,"


class Tally:
    """Messages by (action, direction), CALLERRORs by (action, code, direction) and
    handshake outcomes ("accepted", an HTTP status such as "401", "timeout", "peer_left")."""

    __slots__ = ("errors", "handshakes", "messages")

    def __init__(self) -> None:
        self.messages: dict[tuple[str, str], int] = {}
        self.errors: dict[tuple[str, str, str], int] = {}
        self.handshakes: dict[str, int] = {}

    def inbound(self, action: str) -> None:
        key = (action, IN)
        self.messages[key] = self.messages.get(key, 0) + 1

    def outbound(self, action: str, text: str) -> None:
        """One OCPP-J message we sent (before any lite encoding); a CALLERROR is counted
        with its code too."""
        key = (action, OUT)
        self.messages[key] = self.messages.get(key, 0) + 1
        if text.startswith(_CALLERROR_HEAD):
            self._error(action, str(orjson.loads(text)[2]), OUT)

    def station_error(self, version: Version, action: str, code: str) -> None:
        """The station answered our CALL `action` with a CALLERROR."""
        self._error(action, code if code in known_error_codes(version) else OTHER_CODE, IN)

    def _error(self, action: str, code: str, direction: str) -> None:
        key = (action, code, direction)
        self.errors[key] = self.errors.get(key, 0) + 1

    def handshake(self, outcome: str) -> None:
        self.handshakes[outcome] = self.handshakes.get(outcome, 0) + 1

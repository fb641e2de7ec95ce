"""The one narrow interface the admin API and the web page use to reach the running server.

`StationControl` is what they may ask of it: the store (the one writer), a reader that never
waits for the writer, the settings, whether a station is connected, sending an operation or
a raw CALL to a station (the admin API's command path: logged, checked, then sent), a
session's progress, and a station's data budget report. The server provides it
(`CsmsServer.control`, lite_csms/net/control.py); nothing here imports the network layer, so
admin/app.py and the web page never import net/server.py.

Errors: `OperationRefused(status, message)`; `status` is the HTTP status that fits (404 no
such station or transaction, 409 offline or never connected or not accepted, 422 bad
arguments, a refused token). A station's answer, whatever it is, is an `OperationOutcome`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from lite_csms.config import Settings
    from lite_csms.db.reader import StoreReader
    from lite_csms.db.writer import StoreWriter
    from lite_csms.ocppj.versions import Version

DEFAULT_TTL = timedelta(hours=1)
MAX_QUEUE_TTL = timedelta(days=7)


class OperationRefused(Exception):
    """Refused before anything was sent; `status` is the HTTP status that fits."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """A connected station: its OCPP version, its registration (accepted, pending,
    rejected) and whether it has spoken on this connection (only then may the CSMS send)."""

    version: Version
    registration: str
    ready: bool


@dataclass(frozen=True, slots=True)
class OperationOutcome:
    """What came of an operation: command_id (the command log row), action (the OCPP
    action sent), status (answered, error, timeout, queued), result (the station's answer
    payload), error_code/error_description (a CALLERROR, a timeout, a refused answer), and
    invalid_answer (the station answered something the CSMS refuses)."""

    command_id: int
    action: str
    status: str
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error_description: str | None = None
    invalid_answer: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"command_id": self.command_id, "action": self.action, "status": self.status,
                "result": self.result, "error_code": self.error_code,
                "error_description": self.error_description}


class StationControl(Protocol):
    """What the admin API and the web page may ask of the running server."""

    @property
    def store(self) -> StoreWriter:
        """The one writer: `await store.run(job)` runs a synchronous peewee job in the next
        group commit and returns its value."""

    @property
    def reader(self) -> StoreReader | None:
        """Point reads of committed rows that never wait for the writer (None: in-memory)."""

    @property
    def settings(self) -> Settings: ...

    def status(self, station_id: str) -> LinkStatus | None:
        """The station's live connection; None when it is not connected."""

    def online_count(self) -> int:
        """How many stations are connected now."""

    def not_ready(self) -> str | None:
        """Why the server cannot take stations yet (its OCPP-J ports are not bound, the store
        lost its last commits), or None."""

    def metrics_text(self) -> bytes:
        """The Prometheus exposition of the server's counters."""

    async def operate(self, station_id: str, operation: str, args: dict[str, Any], *,
                      requested_by: str, queue: bool = False,
                      ttl: timedelta = DEFAULT_TTL) -> OperationOutcome:
        """Send a named operation (lite_csms/operations/named.py: "remote-start",
        "remote-stop", "reset", ...) with its JSON arguments, as the admin API's
        POST /stations/{id}/commands does: checked (schema, registration, token), logged,
        then sent, or queued for `ttl` when `queue` and the station is offline. Waits for the
        answer (call_timeout). Raises OperationRefused."""

    async def remote_start(self, station_id: str, connector: int, token: str, *,
                           requested_by: str) -> OperationOutcome:
        """RemoteStart on an EVSE (1.6: connector) for a registered id token: 2.x
        RequestStartTransaction, 1.6 RemoteStartTransaction. Raises OperationRefused."""

    async def remote_stop(self, station_id: str, transaction_id: int, *,
                          requested_by: str) -> OperationOutcome:
        """RemoteStop of one of our transaction rows (Transaction.id). Raises
        OperationRefused."""

    async def progress(self, tx_id: int, *, fresh: bool, wait: float | None = None,
                       requested_by: str = "api") -> dict[str, Any] | None:
        """A session's progress (handlers/live_meter.progress plus refresh, stale, detail,
        command_id, next_fetch_in_s, and cost, cost_text, price), fetched from the station on
        demand (TriggerMessage MeterValues, at most once a minute per transaction); None for
        an unknown transaction."""

    async def budget_report(self, station_id: str, month: tuple[int, int] | None = None,
                            by: str | None = None) -> dict[str, Any] | None:
        """The station's data budget report (as GET /stations/{id}/budget: usage against its
        cap, top actions, the breakdown `by` and per-day totals for a chart, and its budget
        settings) for the current cycle or `month` (year, month); None for an unknown
        station."""

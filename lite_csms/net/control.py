"""The server's side of lite_csms/control.py: `StationControl` over a running CsmsServer.

`operate` is the admin API's command path, moved here so that the web page takes the same
one: the station's version (live, else the one it last spoke), the registration check, the
operation's own preparation (a remote start's token, a reservation, a local list), the
outbound schema check, then the command log and the CALL.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from lite_csms.admin import queries
from lite_csms.budget import report
from lite_csms.config import Settings
from lite_csms.control import (
    DEFAULT_TTL,
    MAX_QUEUE_TTL,
    LinkStatus,
    OperationOutcome,
    OperationRefused,
)
from lite_csms.db.reader import StoreReader
from lite_csms.db.writer import StoreWriter
from lite_csms.handlers import local_list, provisioning, reservation
from lite_csms.handlers.authorization import TokenRefused, token_for_remote_start
from lite_csms.net.commands import StationOffline
from lite_csms.ocppj import timestamps
from lite_csms.ocppj.session import InvalidOutbound, check_outbound
from lite_csms.ocppj.versions import SUPPORTED_SUBPROTOCOLS, Version
from lite_csms.operations.args import int_arg
from lite_csms.operations.catalogue import OperationError
from lite_csms.operations.named import build
from lite_csms.sharing import pricing

if TYPE_CHECKING:
    from lite_csms.net.server import CsmsServer


class ServerControl:
    """StationControl for one CsmsServer (see lite_csms/control.py for each method)."""

    def __init__(self, server: CsmsServer) -> None:
        self._server = server

    @property
    def store(self) -> StoreWriter:
        return self._server.store

    @property
    def reader(self) -> StoreReader | None:
        return self._server.reader

    @property
    def settings(self) -> Settings:
        return self._server.settings

    def status(self, station_id: str) -> LinkStatus | None:
        connection = self._server.connections.get(station_id)
        if connection is None:
            return None
        return LinkStatus(connection.ctx.version, connection.ctx.registration,
                          connection.spoke.is_set())

    def online_count(self) -> int:
        return len(self._server.connections)

    def not_ready(self) -> str | None:
        if not self._server.ports:
            return "the OCPP-J ports are not bound yet"
        store = self._server.store
        if store.failed_batches:
            return (f"the store cannot commit: {store.failure} ({store.failed_batches} group "
                    "commits lost in a row)")
        return None

    def metrics_text(self) -> bytes:
        return self._server.metrics.render()

    async def remote_start(self, station_id: str, connector: int, token: str, *,
                           requested_by: str) -> OperationOutcome:
        return await self.operate(station_id, "remote-start",
                                  {"connector": connector, "token": token},
                                  requested_by=requested_by)

    async def remote_stop(self, station_id: str, transaction_id: int, *,
                          requested_by: str) -> OperationOutcome:
        return await self.operate(station_id, "remote-stop", {"transaction": transaction_id},
                                  requested_by=requested_by)

    async def progress(self, tx_id: int, *, fresh: bool, wait: float | None = None,
                       requested_by: str = "api") -> dict[str, Any] | None:
        found = await self._server.progress.progress(tx_id, fresh=fresh, wait=wait,
                                                     requested_by=requested_by)
        if found is None:
            return None
        costed = await self.store.run(partial(pricing.progress_cost, tx_id, timestamps.now_utc()))
        return {**found, **(costed or {})}

    async def budget_report(self, station_id: str, month: tuple[int, int] | None = None,
                            by: str | None = None) -> dict[str, Any] | None:
        return await self.store.run(partial(
            report.station_report, station_id, self.settings, timestamps.now_utc(), month, by))

    async def operate(self, station_id: str, operation: str, args: dict[str, Any], *,
                      requested_by: str, queue: bool = False,
                      ttl: timedelta = DEFAULT_TTL) -> OperationOutcome:
        store, server = self.store, self._server
        protocol = await store.run(partial(queries.station_protocol, station_id))
        if protocol is None:
            raise OperationRefused(404, "not found")
        connection = server.connections.get(station_id)
        version = (connection.ctx.version if connection is not None
                   else SUPPORTED_SUBPROTOCOLS.get(protocol))
        if version is None:
            raise OperationRefused(409, "the station has never connected: its OCPP version "
                                        "is unknown")
        if not isinstance(args, dict) or not isinstance(queue, bool):
            raise OperationRefused(422, "args must be an object and queue true or false")
        if not timedelta(0) < ttl <= MAX_QUEUE_TTL:
            raise OperationRefused(422, f"ttl must be 1 to {int(MAX_QUEUE_TTL.total_seconds())}"
                                        " seconds")
        station_tx_ids: dict[int, str | None] = {}
        if args.get("transaction") is not None:
            try:
                tx_id = int_arg(args, "transaction")
            except OperationError as exc:
                raise OperationRefused(422, str(exc)) from None
            known, station_tx_ids[tx_id] = await store.run(
                partial(queries.station_tx_id, station_id, tx_id))
            if not known:
                raise OperationRefused(404, f"station {station_id} has no transaction {tx_id}")
        registration = (connection.ctx.registration if connection is not None
                        else await store.run(partial(provisioning.registration, station_id)))
        refusal = provisioning.refuse_operation(registration, operation)
        if refusal is not None:
            raise OperationRefused(409, refusal)
        if operation == "remote-start":
            args = await self._remote_start_args(args)
        reservation_id = None
        if operation == "reserve":
            args, reservation_id = await self._reserve_args(station_id, args)
        if operation == "send-local-list":
            full = args.get("full", True)
            if not isinstance(full, bool):
                raise OperationRefused(422, "full must be true or false")
            longest = 20 if version is Version.OCPP16 else None
            args = {**args, "planned": await store.run(
                partial(local_list.plan, station_id, full, longest))}
        try:
            req = build(version, operation, args, station_tx_ids.get,
                        request_id=await store.run(queries.next_request_id))
            # Checked here, before the command is logged or sent: the caller's mistake is
            # refused naming the field, never a CALL the station should not get.
            check_outbound(version, req.action, req.payload)
        except (OperationError, InvalidOutbound) as exc:
            await self._release(reservation_id)
            raise OperationRefused(422, str(exc)) from None
        try:
            outcome = await server.commands.send(
                station_id, req.action, req.payload, requested_by=requested_by, queue=queue,
                ttl=ttl)
        except StationOffline as exc:
            await self._release(reservation_id)
            raise OperationRefused(409, f"{exc}; send with \"queue\": true to queue it"
                                   ) from None
        return OperationOutcome(outcome.command_id, req.action, outcome.status, outcome.result,
                                outcome.error_code, outcome.error_description,
                                outcome.invalid_answer)

    async def _release(self, reservation_id: int | None) -> None:
        if reservation_id is not None:
            await self.store.run(partial(reservation.answered, reservation_id, None))

    async def _reserve_args(self, station_id: str, args: dict[str, Any]
                            ) -> tuple[dict[str, Any], int]:
        expires_in = args.get("expires_in", 3600)
        token = args.get("token")
        if (not isinstance(expires_in, int) or isinstance(expires_in, bool)
                or not 0 < expires_in <= 7 * 24 * 3600):
            raise OperationRefused(422, "expires_in must be 1 to 604800 seconds")
        if not isinstance(token, str) or not token:
            raise OperationRefused(422, "token must be a non-empty string")
        try:
            connector = int_arg(args, "connector", 0)
        except OperationError as exc:
            raise OperationRefused(422, str(exc)) from None
        expires_at = timestamps.now_utc() + timedelta(seconds=expires_in)
        held = await self.store.run(
            partial(reservation.create, station_id, connector, token, expires_at))
        return ({**args, "token": held.token, "reservation_id": held.reservation_id,
                 "token_type": held.token_type, "group": held.group,
                 "expires_at": expires_at}, held.reservation_id)

    async def _remote_start_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """The token as registered; refused (422) if the CSMS would not accept it."""
        token, allow = args.get("token"), args.get("allow_unknown_token", False)
        if not isinstance(token, str) or not token:
            raise OperationRefused(422, "token must be a non-empty string")
        if not isinstance(allow, bool):
            raise OperationRefused(422, "allow_unknown_token must be true or false")
        try:
            spelled = await self.store.run(partial(
                token_for_remote_start, token, timestamps.now_utc(),
                free_charging=self.settings.free_charging, allow_unknown=allow))
        except TokenRefused as exc:
            raise OperationRefused(422, str(exc)) from None
        return {**args, "token": spelled}


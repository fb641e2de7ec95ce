"""Admin HTTP API routes. Every resource needs an API key (`Authorization: Bearer <key>`),
but /openapi.json, /health/* and /metrics."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson
import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lite_csms.admin import budget_routes, keys, queries
from lite_csms.admin.openapi import DOCUMENT
from lite_csms.handlers import local_list, provisioning, reservation
from lite_csms.handlers.authorization import TokenRefused, token_for_remote_start
from lite_csms.metrics import CONTENT_TYPE
from lite_csms.net.commands import StationOffline
from lite_csms.ocppj import timestamps
from lite_csms.ocppj.session import InvalidOutbound, check_outbound
from lite_csms.ocppj.values import INT64_MAX, INT64_MIN
from lite_csms.ocppj.versions import SUPPORTED_SUBPROTOCOLS, Version
from lite_csms.operations.args import int_arg
from lite_csms.operations.catalogue import OperationError
from lite_csms.operations.named import build

if TYPE_CHECKING:
    from lite_csms.net.server import CsmsServer

MAX_BODY = 64 * 1024
# /health/ready: how long the store may take to commit an empty job.
HEALTH_TIMEOUT = 2.0
MAX_QUEUE_TTL = 7 * 24 * 3600


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail))


def _row_id(raw: str) -> int:
    """A row id from the URL; anything a SQLite rowid cannot be names no row: 404."""
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(404, "not found") from None
    if not INT64_MIN <= value <= INT64_MAX:
        raise HTTPException(404, "not found")
    return value


def build_app(server: CsmsServer) -> Starlette:
    store = server.store

    async def caller(request: Request) -> str:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise HTTPException(401, "an API key is required: Authorization: Bearer <key>")
        name = await store.run(partial(keys.check, key.strip(), timestamps.now_utc()))
        if name is None:
            raise HTTPException(401, "unknown or revoked API key")
        return name

    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise HTTPException(413, "request body too large")
        try:
            value = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            raise HTTPException(400, "the body is not valid JSON") from None
        if not isinstance(value, dict):
            raise HTTPException(400, "the body must be a JSON object")
        return value

    async def found(work: Any) -> Any:
        value = await store.run(work)
        if value is None:
            raise HTTPException(404, "not found")
        return value

    async def stations(request: Request) -> Response:
        await caller(request)
        return JsonResponse(await store.run(queries.stations))

    async def station(request: Request) -> Response:
        await caller(request)
        station_id = request.path_params["id"]
        if request.method == "PATCH":
            data = await body(request)
            if set(data) != {"registration"}:
                raise HTTPException(422, "the body must be {\"registration\": \"accepted\", "
                                         "\"pending\" or \"rejected\"}")
            try:
                await found(partial(provisioning.set_registration, station_id,
                                    data["registration"]))
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None
        return JsonResponse(await found(partial(queries.station, station_id)))

    async def station_variables(request: Request) -> Response:
        await caller(request)
        return JsonResponse(await found(partial(queries.device_model_of,
                                                request.path_params["id"])))

    async def tokens(request: Request) -> Response:
        await caller(request)
        if request.method == "GET":
            return JsonResponse(await store.run(queries.tokens))
        data = await body(request)
        try:
            created = await store.run(partial(queries.add_token, data))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return JsonResponse(created, status_code=201)

    async def one_token(request: Request) -> Response:
        await caller(request)
        value = request.path_params["token"]
        if request.method == "GET":
            return JsonResponse(await found(partial(queries.token, value)))
        data = await body(request)
        if set(data) != {"status"}:
            raise HTTPException(422, "the body must be {\"status\": \"Blocked\"} or another "
                                     "token status")
        try:
            return JsonResponse(await found(partial(queries.set_token_status, value,
                                                    data["status"])))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    async def transactions(request: Request) -> Response:
        await caller(request)
        params = request.query_params
        try:
            limit = min(max(int(params.get("limit", "50")), 1), 1000)
        except ValueError:
            raise HTTPException(400, "limit must be an integer") from None
        return JsonResponse(await store.run(partial(
            queries.transactions, params.get("station"), params.get("active") == "true",
            limit)))

    async def transaction(request: Request) -> Response:
        await caller(request)
        tx_id = _row_id(request.path_params["id"])
        return JsonResponse(await found(partial(queries.transaction, tx_id)))

    async def transaction_progress(request: Request) -> Response:
        who = await caller(request)
        tx_id = _row_id(request.path_params["id"])
        params = request.query_params
        fresh = params.get("fresh", "1").lower()
        if fresh not in ("0", "1", "true", "false"):
            raise HTTPException(400, "fresh must be 1 or 0")
        wait = None
        if "wait" in params:
            try:
                wait = float(params["wait"])
            except ValueError:
                raise HTTPException(400, "wait must be a number of seconds") from None
            limit = server.settings.progress_max_wait
            if not 0 <= wait <= limit:
                raise HTTPException(400, f"wait must be 0 to {limit:g} seconds")
        answer = await server.progress.progress(tx_id, fresh=fresh in ("1", "true"), wait=wait,
                                                requested_by=f"api:{who}")
        if answer is None:
            raise HTTPException(404, "not found")
        return JsonResponse(answer)

    async def station_commands(request: Request) -> Response:
        who = await caller(request)
        station_id = request.path_params["id"]
        if request.method == "GET":
            return JsonResponse(await store.run(partial(queries.commands, station_id)))
        return await send_command(station_id, await body(request), who)

    async def send_command(station_id: str, data: dict[str, Any], who: str) -> Response:
        protocol = await found(partial(queries.station_protocol, station_id))
        connection = server.connections.get(station_id)
        version = (connection.ctx.version if connection is not None
                   else SUPPORTED_SUBPROTOCOLS.get(protocol))
        if version is None:
            raise HTTPException(409, "the station has never connected: its OCPP version is "
                                     "unknown")
        args = data.get("args", {})
        queue = data.get("queue", False)
        ttl = data.get("ttl", 3600)
        if not isinstance(args, dict) or not isinstance(queue, bool):
            raise HTTPException(422, "args must be an object and queue true or false")
        if not isinstance(ttl, int) or not 0 < ttl <= MAX_QUEUE_TTL:
            raise HTTPException(422, f"ttl must be 1 to {MAX_QUEUE_TTL} seconds")
        station_tx_ids: dict[int, str | None] = {}
        if args.get("transaction") is not None:
            try:
                tx_id = int_arg(args, "transaction")
            except OperationError as exc:
                raise HTTPException(422, str(exc)) from None
            known, station_tx_ids[tx_id] = await store.run(
                partial(queries.station_tx_id, station_id, tx_id))
            if not known:
                raise HTTPException(404, f"station {station_id} has no transaction {tx_id}")
        registration = (connection.ctx.registration if connection is not None
                        else await store.run(partial(provisioning.registration, station_id)))
        refusal = provisioning.refuse_operation(registration, str(data.get("operation", "")))
        if refusal is not None:
            raise HTTPException(409, refusal)
        if data.get("operation") == "remote-start":
            args = await remote_start_args(args)
        reservation_id = None
        if data.get("operation") == "reserve":
            args, reservation_id = await reserve_args(station_id, args)
        if data.get("operation") == "send-local-list":
            full = args.get("full", True)
            if not isinstance(full, bool):
                raise HTTPException(422, "full must be true or false")
            longest = 20 if version is Version.OCPP16 else None
            args = {**args, "planned": await store.run(
                partial(local_list.plan, station_id, full, longest))}
        try:
            req = build(version, str(data.get("operation", "")), args, station_tx_ids.get,
                        request_id=await store.run(queries.next_request_id))
            # Checked here, before the command is logged or sent: the operator's mistake is
            # a 422 naming the field, never a CALL the station should not get.
            check_outbound(version, req.action, req.payload)
        except (OperationError, InvalidOutbound) as exc:
            if reservation_id is not None:
                await store.run(partial(reservation.answered, reservation_id, None))
            raise HTTPException(422, str(exc)) from None
        try:
            outcome = await server.commands.send(
                station_id, req.action, req.payload, requested_by=f"api:{who}", queue=queue,
                ttl=timedelta(seconds=ttl))
        except StationOffline as exc:
            if reservation_id is not None:
                await store.run(partial(reservation.answered, reservation_id, None))
            raise HTTPException(409, f"{exc}; send with \"queue\": true to queue it") from None
        status = {"queued": 202, "timeout": 504}.get(outcome.status, 200)
        answer = {"command_id": outcome.command_id, "action": req.action,
                  "status": outcome.status, "result": outcome.result,
                  "error_code": outcome.error_code,
                  "error_description": outcome.error_description}
        if outcome.invalid_answer:
            # The station answered something the CSMS cannot accept: a bad gateway, not us.
            status = 502
            answer["error"] = (f"{station_id} answered {req.action} with a payload the CSMS "
                               f"refuses (command {outcome.command_id}): "
                               f"{outcome.error_code}: {outcome.error_description}")
        return JsonResponse(answer, status_code=status)

    async def reserve_args(station_id: str, args: dict[str, Any]
                           ) -> tuple[dict[str, Any], int]:
        expires_in = args.get("expires_in", 3600)
        token = args.get("token")
        if not isinstance(expires_in, int) or not 0 < expires_in <= 7 * 24 * 3600:
            raise HTTPException(422, "expires_in must be 1 to 604800 seconds")
        if not isinstance(token, str) or not token:
            raise HTTPException(422, "token must be a non-empty string")
        try:
            connector = int_arg(args, "connector", 0)
        except OperationError as exc:
            raise HTTPException(422, str(exc)) from None
        expires_at = timestamps.now_utc() + timedelta(seconds=expires_in)
        held = await store.run(
            partial(reservation.create, station_id, connector, token, expires_at))
        return ({**args, "token": held.token, "reservation_id": held.reservation_id,
                 "token_type": held.token_type, "group": held.group,
                 "expires_at": expires_at}, held.reservation_id)

    async def remote_start_args(args: dict[str, Any]) -> dict[str, Any]:
        """The token as registered; refused (422) if the CSMS would not accept it."""
        token, allow = args.get("token"), args.get("allow_unknown_token", False)
        if not isinstance(token, str) or not token:
            raise HTTPException(422, "token must be a non-empty string")
        if not isinstance(allow, bool):
            raise HTTPException(422, "allow_unknown_token must be true or false")
        try:
            spelled = await store.run(partial(
                token_for_remote_start, token, timestamps.now_utc(),
                free_charging=server.settings.free_charging, allow_unknown=allow))
        except TokenRefused as exc:
            raise HTTPException(422, str(exc)) from None
        return {**args, "token": spelled}

    async def command(request: Request) -> Response:
        await caller(request)
        command_id = _row_id(request.path_params["id"])
        return JsonResponse(await found(partial(queries.command, command_id)))

    async def openapi(request: Request) -> Response:
        return JsonResponse(DOCUMENT)

    async def health_live(request: Request) -> Response:
        return JsonResponse({"status": "live"})

    async def health_ready(request: Request) -> Response:
        # No API key: load balancers and systemd probes ask. Ready means the OCPP ports are
        # bound, the last group commit that wrote was stored, and the one writer commits a job
        # within 2 s.
        why = None if server.ports else "the OCPP-J ports are not bound yet"
        if why is None and store.failed_batches:
            # An empty job commits even on a full disk; the writer knows better: it is back
            # once a commit that wrote something is stored (db/writer.py).
            why = (f"the store cannot commit: {store.failure} ({store.failed_batches} group "
                   "commits lost in a row)")
        if why is None:
            with trio.move_on_after(HEALTH_TIMEOUT) as waited:
                try:
                    await store.run(lambda: None)
                except Exception as exc:  # the store's own error names the cause
                    why = f"the store cannot commit: {exc}"
            if waited.cancelled_caught:
                why = f"the store did not commit within {HEALTH_TIMEOUT:g} s"
        if why is not None:
            return JsonResponse({"status": "not ready", "why": why}, status_code=503)
        return JsonResponse({"status": "ready", "stations_online": len(server.connections)})

    async def metrics(request: Request) -> Response:
        # No API key, like /health: only totals (no station id, token or transaction), and it
        # must answer when the store cannot commit, which a key check (a store job) cannot.
        return Response(server.metrics.render(), media_type=CONTENT_TYPE)

    routes = [
        Route("/openapi.json", openapi),
        Route("/metrics", metrics),
        Route("/health/live", health_live),
        Route("/health/ready", health_ready),
        Route("/stations", stations),
        Route("/stations/{id}", station, methods=["GET", "PATCH"]),
        Route("/stations/{id}/variables", station_variables),
        Route("/stations/{id}/commands", station_commands, methods=["GET", "POST"]),
        Route("/commands/{id}", command),
        Route("/tokens", tokens, methods=["GET", "POST"]),
        Route("/tokens/{token}", one_token, methods=["GET", "PATCH"]),
        Route("/transactions", transactions),
        Route("/transactions/{id}", transaction),
        Route("/transactions/{id}/progress", transaction_progress),
        *budget_routes.routes(store, server.settings, caller, body, found, JsonResponse),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})

"""Admin HTTP API routes. Every resource needs an API key (`Authorization: Bearer <key>`),
but /openapi.json, /health/* and /metrics."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

import orjson
import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lite_csms.admin import budget_routes, keys, queries, sharing_routes
from lite_csms.admin.openapi import DOCUMENT
from lite_csms.control import MAX_QUEUE_TTL as MAX_TTL
from lite_csms.control import OperationRefused, StationControl
from lite_csms.handlers import provisioning
from lite_csms.metrics import CONTENT_TYPE
from lite_csms.ocppj import timestamps
from lite_csms.ocppj.values import INT64_MAX, INT64_MIN

MAX_BODY = 64 * 1024
# /health/ready: how long the store may take to commit an empty job.
HEALTH_TIMEOUT = 2.0
MAX_QUEUE_TTL = int(MAX_TTL.total_seconds())


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


def build_app(control: StationControl) -> Starlette:
    """The admin API over the running server's narrow interface (lite_csms/control.py)."""
    store = control.store

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
            limit = control.settings.progress_max_wait
            if not 0 <= wait <= limit:
                raise HTTPException(400, f"wait must be 0 to {limit:g} seconds")
        answer = await control.progress(tx_id, fresh=fresh in ("1", "true"), wait=wait,
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
        ttl = data.get("ttl", 3600)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 < ttl <= MAX_QUEUE_TTL:
            raise HTTPException(422, f"ttl must be 1 to {MAX_QUEUE_TTL} seconds")
        try:
            outcome = await control.operate(
                station_id, str(data.get("operation", "")), data.get("args", {}),
                requested_by=f"api:{who}", queue=data.get("queue", False),
                ttl=timedelta(seconds=ttl))
        except OperationRefused as exc:
            raise HTTPException(exc.status, exc.message) from None
        status = {"queued": 202, "timeout": 504}.get(outcome.status, 200)
        answer = outcome.as_dict()
        if outcome.invalid_answer:
            # The station answered something the CSMS cannot accept: a bad gateway, not us.
            status = 502
            answer["error"] = (f"{station_id} answered {outcome.action} with a payload the "
                               f"CSMS refuses (command {outcome.command_id}): "
                               f"{outcome.error_code}: {outcome.error_description}")
        return JsonResponse(answer, status_code=status)

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
        # An empty job commits even on a full disk; the writer knows better: it is back
        # once a commit that wrote something is stored (db/writer.py).
        why = control.not_ready()
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
        return JsonResponse({"status": "ready", "stations_online": control.online_count()})

    async def metrics(request: Request) -> Response:
        # No API key, like /health: only totals (no station id, token or transaction), and it
        # must answer when the store cannot commit, which a key check (a store job) cannot.
        return Response(control.metrics_text(), media_type=CONTENT_TYPE)

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
        *budget_routes.routes(store, control.settings, caller, body, found, JsonResponse),
        *sharing_routes.routes(control, caller, body, found, JsonResponse),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})

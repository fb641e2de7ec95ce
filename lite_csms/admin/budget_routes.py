"""Admin API for data budgets: usage of every station, one station's report, its settings and
what the budget policy did to it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lite_csms.budget import counters, cycles, explain, memory, overrides, report, usage
from lite_csms.config import Settings
from lite_csms.db.models import Station
from lite_csms.db.writer import StoreWriter
from lite_csms.ocppj import timestamps

Handler = Callable[[Request], Awaitable[Response]]


def _month(request: Request) -> tuple[int, int] | None:
    text = request.query_params.get("month")
    if not text:
        return None
    try:
        return cycles.parse_month(text)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def _at(request: Request) -> datetime:
    text = request.query_params.get("at")
    if not text:
        return timestamps.now_utc()
    try:
        return timestamps.parse(text)
    except ValueError:
        raise HTTPException(400, "at must be an ISO 8601 date-time") from None


def _all(settings: Settings, now: datetime, month: tuple[int, int] | None
         ) -> list[dict[str, Any]]:
    mark = counters.last_flush()
    flushed_at = None if mark is None else mark.flushed_at
    return [report.station_record(u, now, flushed_at=flushed_at)
            for u in usage.all_usage(settings, now, month)]


def _set(station_id: str, settings: Settings, data: dict[str, Any]) -> dict[str, Any] | None:
    if Station.get_or_none(Station.id == station_id) is None:
        return None
    data = dict(data)
    clear = data.pop("clear", False)
    if not isinstance(clear, bool):
        raise overrides.BudgetError("clear must be true or false")
    release = data.pop("release", None)
    keys = None if release is None else overrides.parse_release(release)
    change = overrides.parse_change(data)
    if not change.is_empty() or clear or release is None:
        overrides.apply(station_id, change, clear=clear)
    budget = usage.effective_budget(station_id, settings).as_dict()
    if release is not None:
        budget["released"] = memory.release(station_id, keys)
    return budget


def _explain(station_id: str, settings: Settings, now: datetime) -> dict[str, Any] | None:
    if Station.get_or_none(Station.id == station_id) is None:
        return None
    return explain.explanation(station_id, settings, now)


def routes(store: StoreWriter, settings: Settings, caller: Callable[[Request], Awaitable[str]],
           body: Callable[[Request], Awaitable[dict[str, Any]]],
           found: Callable[[Any], Awaitable[Any]],
           respond: Callable[..., Response]) -> list[Route]:
    """The budget routes, using the app's own key check, body reader and JSON response."""

    async def all_stations(request: Request) -> Response:
        await caller(request)
        month, at = _month(request), _at(request)
        return respond(await store.run(partial(_all, settings, at, month)))

    async def station_budget(request: Request) -> Response:
        await caller(request)
        station_id = request.path_params["id"]
        if request.method == "PUT":
            data = await body(request)
            try:
                return respond(await found(partial(_set, station_id, settings, data)))
            except overrides.BudgetError as exc:
                raise HTTPException(422, str(exc)) from None
        by = request.query_params.get("by") or None
        if by is not None and by not in usage.BREAKDOWNS:
            raise HTTPException(400, f"by must be one of {', '.join(usage.BREAKDOWNS)}")
        month, at = _month(request), _at(request)
        return respond(await found(partial(report.station_report, station_id, settings, at,
                                           month, by)))

    async def station_explain(request: Request) -> Response:
        await caller(request)
        return respond(await found(partial(_explain, request.path_params["id"], settings,
                                           _at(request))))

    return [
        Route("/budget", all_stations),
        Route("/stations/{id}/budget", station_budget, methods=["GET", "PUT"]),
        Route("/stations/{id}/budget/explain", station_explain),
    ]

"""The owner's pages: their stations, one station (price, availability, data budget), their
sessions and monthly statements. Every station route checks the station is theirs first."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lite_csms.ascii_digits import digits
from lite_csms.sharing import owners, pricing, statements
from lite_csms.sharing.money import MoneyError
from lite_csms.web import actions, queries
from lite_csms.web.chart import budget_chart
from lite_csms.web.common import Web, now, see_other, signed_in_as
from lite_csms.web.render import page
from lite_csms.web.security import read_form

NOT_YOURS = "You have no such station."
# Charges listed per page of a statement (about 200 bytes each).
STATEMENT_ROWS = 80


def _set_price(owner_id: int, station_id: str, form: dict[str, str], who: str
               ) -> bool:
    """One store job: the ownership check and the change together. False: not theirs."""
    if not owners.owns(owner_id, station_id):
        return False
    currency = form.get("currency", "").strip()
    pricing.set_tariff(station_id, currency, form.get("per_kwh", "0").strip() or "0",
                       form.get("per_hour", "0").strip() or "0",
                       form.get("session_fee", "0").strip() or "0", updated_by=who)
    return True


def routes(web: Web) -> list[Route]:
    async def home(request: Request) -> Response:
        owner = await signed_in_as(web, request, "owner")
        ids = await web.run(queries.owned_ids, owner["id"])
        data = await web.run(queries.owner_home, owner["id"],
                             {i for i in ids if web.online(i)}, now())
        return page(request, "owner_home.html", me=owner, **data)

    async def station(request: Request) -> Response:
        owner = await signed_in_as(web, request, "owner")
        station_id = request.path_params["id"]
        found = await web.run(queries.owner_station, owner["id"], station_id,
                              web.online(station_id), now(), web.control.settings.currency)
        if found is None:
            raise HTTPException(404, NOT_YOURS)
        report = await web.control.budget_report(station_id, by="day")
        return page(request, "owner_station.html", st=found, budget=report,
                    chart=None if report is None else budget_chart(report))

    async def set_price(request: Request) -> Response:
        owner = await signed_in_as(web, request, "owner")
        station_id = request.path_params["id"]
        form = await read_form(request)
        try:
            ours = await web.run(_set_price, owner["id"], station_id, form,
                                 f"web:owner:{owner['id']}")
        except MoneyError as exc:
            request.session["flash"] = f"The price was not changed: {exc}"
            return see_other(f"/owner/stations/{station_id}")
        if not ours:
            raise HTTPException(404, NOT_YOURS)
        request.session["flash"] = "New price saved. Sessions already running keep theirs."
        return see_other(f"/owner/stations/{station_id}")

    async def availability(request: Request) -> Response:
        owner = await signed_in_as(web, request, "owner")
        station_id = request.path_params["id"]
        form = await read_form(request)
        if not await web.run(owners.owns, owner["id"], station_id):
            raise HTTPException(404, NOT_YOURS)
        connector = form.get("connector", "0")
        if not digits(connector) or int(connector) > queries.MAX_CONNECTOR:
            raise HTTPException(400, "no such connector")
        said = await actions.availability(web.control, station_id, int(connector),
                                          form.get("operative") == "1",
                                          f"web:owner:{owner['id']}")
        request.session["flash"] = said
        return see_other(f"/owner/stations/{station_id}")

    async def sessions(request: Request) -> Response:
        owner = await signed_in_as(web, request, "owner")
        rows = await web.run(queries.owner_sessions, owner["id"], now())
        return page(request, "owner_sessions.html", me=owner, sessions=rows)

    async def months(request: Request) -> Response:
        owner = await signed_in_as(web, request, "owner")
        found = await web.run(queries.owner_months, owner["id"], now())
        return page(request, "statements.html", me=owner, months=found)

    async def statement(request: Request) -> Response:
        owner = await signed_in_as(web, request, "owner")
        try:
            year, month = statements.parse_month(request.path_params["month"])
        except ValueError:
            raise HTTPException(404, "no such month") from None
        settings = web.control.settings
        found = await web.run(statements.statement, owner["id"], year, month,
                              settings.data_price_per_mb, settings.currency)
        if found is None:
            raise HTTPException(404, "no such statement")
        # A busy month lists hundreds of charges: a page at a time keeps it under 30 kB.
        raw = request.query_params.get("page", "1")
        number = int(raw) if digits(raw) and 0 < int(raw) < 10_000 else 1
        charges = found["transactions"]
        pages = max(1, -(-len(charges) // STATEMENT_ROWS))
        shown = charges[(number - 1) * STATEMENT_ROWS:number * STATEMENT_ROWS]
        return page(request, "statement.html", me=owner, st=found, charges=shown,
                    page_number=number, pages=pages)

    return [
        Route("/owner", home),
        Route("/owner/stations/{id}", station),
        Route("/owner/stations/{id}/price", set_price, methods=["POST"]),
        Route("/owner/stations/{id}/availability", availability, methods=["POST"]),
        Route("/owner/sessions", sessions),
        Route("/owner/statements", months),
        Route("/owner/statements/{month}", statement),
    ]

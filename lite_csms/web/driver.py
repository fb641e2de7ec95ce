"""The driver's pages: the QR code's page for one connector, starting and stopping a charge,
a session's progress, and the driver's own sessions."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lite_csms.ascii_digits import digits
from lite_csms.sharing import drivers
from lite_csms.web import actions, queries
from lite_csms.web.common import SignInFirst, Web, now, row_id, see_other, signed_in_as
from lite_csms.web.render import page
from lite_csms.web.security import read_form, signed_in

# What a fetch's outcome (operations/progress.py) means to the driver.
REFRESH_SAID = {
    "fetched": "Just read from the charger.",
    "rate-limited": "The charger is asked at most once a minute: this is its latest reading.",
    "refused": "The charger did not send a reading: this is the latest one.",
    "timeout": "The charger did not answer in time: this is the latest reading.",
    "offline": "The charger is offline: this is the latest reading.",
    "requested": "The charger was asked for a reading: reload in a moment.",
}


def _connector(raw: str) -> int:
    if not digits(raw) or len(raw) > 2:
        raise HTTPException(404, "no such connector")
    return int(raw)


def routes(web: Web) -> list[Route]:
    async def charge_point(request: Request) -> Response:
        station_id = request.path_params["station"]
        evse = _connector(request.path_params["connector"])
        driver_id = signed_in(request, "driver")
        found = await web.run(queries.charge_point, station_id, evse, driver_id, now())
        if found is None:
            raise HTTPException(404, "There is no such charger here. Check the code on it.")
        online = web.online(station_id)
        state = found["state"] if online else "offline"
        return page(request, "charge_point.html", cp=found, state=state,
                    signed_in=driver_id is not None, here=request.url.path)

    async def start(request: Request) -> Response:
        station_id = request.path_params["station"]
        evse = _connector(request.path_params["connector"])
        here = f"/s/{station_id}/{evse}"
        try:
            driver = await signed_in_as(web, request, "driver")
        except SignInFirst:
            return see_other(f"/signin?next={here}")
        await read_form(request)
        found = await web.run(queries.charge_point, station_id, evse, driver["id"], now())
        if found is None:
            raise HTTPException(404, "There is no such charger here.")
        if found["state"] not in ("free", "unknown"):
            said = {"mine": "Your session is already running.",
                    "busy": "Someone is charging here: try again later.",
                    "out": "This connector is out of service."}[found["state"]]
        else:
            token = await web.run(drivers.driver_token, driver["id"])
            said = await actions.start(web.control, station_id, evse, token,
                                       f"web:driver:{driver['id']}")
        request.session["flash"] = said
        return see_other(here)

    async def session(request: Request) -> Response:
        driver = await signed_in_as(web, request, "driver")
        tx_id = row_id(request.path_params["id"])
        found = await web.run(queries.driver_session, driver["id"], tx_id, now())
        if found is None:
            raise HTTPException(404, "You have no such session.")
        note: Any = None
        reading: dict[str, Any] | None = None
        if found["running"] and request.query_params.get("fresh") == "1":
            reading = await web.control.progress(tx_id, fresh=True,
                                                 requested_by=f"web:driver:{driver['id']}")
            note = REFRESH_SAID.get((reading or {}).get("refresh", ""))
            found = await web.run(queries.driver_session, driver["id"], tx_id, now()) or found
        elif found["running"]:
            reading = await web.control.progress(tx_id, fresh=False)
        return page(request, "session.html", s=found, note=note,
                    power_w=(reading or {}).get("power_w"),
                    reading_at=(reading or {}).get("reading_at"))

    async def stop(request: Request) -> Response:
        driver = await signed_in_as(web, request, "driver")
        tx_id = row_id(request.path_params["id"])
        await read_form(request)
        found = await web.run(queries.driver_session, driver["id"], tx_id, now())
        if found is None:
            raise HTTPException(404, "You have no such session.")
        if not found["running"]:
            said = "This session has already ended."
        else:
            said = await actions.stop(web.control, found["station"], tx_id,
                                      f"web:driver:{driver['id']}")
        request.session["flash"] = said
        return see_other(f"/driver/sessions/{tx_id}")

    async def home(request: Request) -> Response:
        driver = await signed_in_as(web, request, "driver")
        sessions = await web.run(queries.driver_sessions, driver["id"], now())
        return page(request, "driver_home.html", me=driver, sessions=sessions)

    return [
        Route("/s/{station}/{connector}", charge_point),
        Route("/s/{station}/{connector}/start", start, methods=["POST"]),
        Route("/driver", home),
        Route("/driver/sessions/{id}", session),
        Route("/driver/sessions/{id}/stop", stop, methods=["POST"]),
    ]

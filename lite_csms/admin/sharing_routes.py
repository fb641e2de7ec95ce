"""Admin API for sharing chargers (lite_csms/sharing/): owners, drivers, one-time codes,
tariffs, a station's owner and QR URL, and owners' monthly statements.

Amounts in bodies are minor units (an integer) or decimal text in major units ("25.50").
Passwords are hashed (scrypt) in a worker thread, never in the store's job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lite_csms import passwords
from lite_csms.ascii_digits import digits
from lite_csms.control import StationControl
from lite_csms.db.models import Driver, IdToken, Owner, Station
from lite_csms.handlers.authorization import check_token, find_token
from lite_csms.ocppj import timestamps
from lite_csms.sharing import codes, drivers, links, logins, owners, pricing, statements
from lite_csms.sharing.money import MoneyError

REFUSED = (logins.LoginError, owners.OwnerError, drivers.DriverError, MoneyError)


def _text(data: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise HTTPException(422, f"{key} must be a non-empty string")
    return value


async def _hash(password: str | None) -> str | None:
    if password is None:
        return None
    try:
        logins.check_password(password)
    except logins.LoginError as exc:
        raise HTTPException(422, str(exc)) from None
    return await trio.to_thread.run_sync(passwords.hash_password, password)


def _row_id(raw: str) -> int:
    """An owner or driver id from the URL; anything else names no row: 404."""
    if not digits(raw) or len(raw) > 18:
        raise HTTPException(404, "not found")
    return int(raw)


def _owner_record(owner_id: int) -> dict[str, Any] | None:
    owner = Owner.get_or_none(Owner.id == owner_id)
    if owner is None:
        return None
    return {**owners.owner_record(owner), "stations": owners.stations_of(owner_id)}


def _driver_record(driver_id: int) -> dict[str, Any] | None:
    driver = Driver.get_or_none(Driver.id == driver_id)
    if driver is None:
        return None
    return {**drivers.driver_record(driver), "sessions": drivers.sessions_of(driver_id, 20)}


def _add_driver(data: dict[str, Any], password_hash: str | None) -> dict[str, Any]:
    tokens = data.get("tokens", [])
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise HTTPException(422, "tokens must be a list of strings")
    try:
        spelled = [check_token(t) for t in tokens]
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    driver = drivers.add_driver(_text(data, "name"), _text(data, "phone"),
                                _text(data, "email"), password_hash)
    for token in spelled:
        if find_token(token) is None:
            IdToken.create(token=token)
        drivers.link_token(token, driver.id)
    return drivers.driver_record(driver)


def _tariff(station_id: str) -> dict[str, Any] | None:
    if Station.get_or_none(Station.id == station_id) is None:
        return None
    price = pricing.tariff_of(station_id)
    return {"station": station_id, "tariff": None if price is None else price.as_dict()}


def _set_owner(station_id: str, owner: Any) -> dict[str, Any] | None:
    if owner is not None and (not isinstance(owner, int) or isinstance(owner, bool)):
        raise HTTPException(422, "owner must be an owner id or null")
    if not owners.set_station_owner(station_id, owner):
        return None
    return {"station": station_id, "owner": owner}


def routes(control: StationControl, caller: Callable[[Request], Awaitable[str]],
           body: Callable[[Request], Awaitable[dict[str, Any]]],
           found: Callable[[Any], Awaitable[Any]],
           respond: Callable[..., Response]) -> list[Route]:
    """The sharing routes, using the app's own key check, body reader and JSON response."""
    store = control.store

    async def refused(work: Any) -> Any:
        try:
            return await found(work)
        except REFUSED as exc:
            raise HTTPException(422, str(exc)) from None

    async def owner_list(request: Request) -> Response:
        await caller(request)
        if request.method == "GET":
            return respond(await store.run(owners.list_owners))
        data = await body(request)
        name = _text(data, "name", required=True)
        password = _text(data, "password")
        generated = None
        if password is None:
            password = generated = passwords.generate()
        password_hash = await _hash(password)
        owner = await refused(partial(owners.add_owner, name, _text(data, "email"),
                                      _text(data, "phone"), password_hash))
        record = await store.run(partial(owners.owner_record, owner))
        if generated is not None:
            record["password"] = generated  # shown once
        return respond(record, status_code=201)

    async def one_owner(request: Request) -> Response:
        await caller(request)
        return respond(await found(partial(_owner_record,
                                           _row_id(request.path_params["id"]))))

    async def owner_password(request: Request) -> Response:
        await caller(request)
        owner_id = _row_id(request.path_params["id"])
        password = _text(await body(request), "password", required=True)
        password_hash = await _hash(password)
        await found(lambda: owners.set_password_hash(owner_id, password_hash) or None)
        return respond({"owner": owner_id, "password": "set"})

    async def owner_statement(request: Request) -> Response:
        await caller(request)
        owner_id = _row_id(request.path_params["id"])
        try:
            year, month = statements.parse_month(request.path_params["month"])
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        settings = control.settings
        return respond(await found(partial(statements.statement, owner_id, year, month,
                                           settings.data_price_per_mb, settings.currency)))

    async def station_owner(request: Request) -> Response:
        await caller(request)
        data = await body(request)
        if set(data) != {"owner"}:
            raise HTTPException(422, "the body must be {\"owner\": <owner id> or null}")
        return respond(await refused(partial(_set_owner, request.path_params["id"],
                                             data["owner"])))

    async def station_tariff(request: Request) -> Response:
        who = await caller(request)
        station_id = request.path_params["id"]
        if request.method == "PUT":
            data = await body(request)
            unknown = set(data) - {"currency", "per_kwh", "per_hour", "session_fee"}
            if unknown:
                raise HTTPException(422, f"unknown field {sorted(unknown)[0]}: give currency, "
                                         "per_kwh, per_hour, session_fee")
            amounts = {k: data.get(k, 0) for k in ("per_kwh", "per_hour", "session_fee")}
            for key, value in amounts.items():
                if not isinstance(value, int | str) or isinstance(value, bool):
                    raise HTTPException(422, f"{key} must be minor units (an integer) or "
                                             "decimal text such as \"25.50\"")
            currency = data.get("currency", control.settings.currency)
            if not isinstance(currency, str):
                raise HTTPException(422, "currency must be an ISO 4217 code such as KES")
            await refused(partial(pricing.set_tariff, station_id, currency,
                                  updated_by=f"api:{who}", **amounts))
        elif request.method == "DELETE":
            await found(partial(_tariff, station_id))
            await store.run(partial(pricing.clear_tariff, station_id))
        return respond(await found(partial(_tariff, station_id)))

    async def station_qr(request: Request) -> Response:
        await caller(request)
        station_id = request.path_params["id"]
        raw = request.query_params.get("connector", "1")
        if not digits(raw) or not 1 <= int(raw) <= 1000:
            raise HTTPException(400, "connector must be 1 or more")
        await found(partial(_tariff, station_id))
        try:
            url = links.driver_page_url(control.settings.public_url, station_id, int(raw))
        except links.NoPublicUrl as exc:
            raise HTTPException(409, str(exc)) from None
        return respond({"station": station_id, "connector": int(raw), "url": url})

    async def driver_list(request: Request) -> Response:
        await caller(request)
        if request.method == "GET":
            return respond(await store.run(drivers.list_drivers))
        data = await body(request)
        password_hash = await _hash(_text(data, "password"))
        return respond(await refused(partial(_add_driver, data, password_hash)),
                       status_code=201)

    async def one_driver(request: Request) -> Response:
        await caller(request)
        return respond(await found(partial(_driver_record,
                                           _row_id(request.path_params["id"]))))

    async def driver_code(request: Request) -> Response:
        await caller(request)
        phone = _text(await body(request), "phone", required=True)
        try:
            code = await store.run(partial(codes.issue, phone, timestamps.now_utc()))
        except logins.LoginError as exc:
            raise HTTPException(422, str(exc)) from None
        except codes.TooManyCodes as exc:
            raise HTTPException(429, str(exc)) from None
        return respond({"phone": logins.phone(phone), "code": code,
                        "expires_in": int(codes.CODE_TTL.total_seconds()),
                        "attempts": codes.MAX_ATTEMPTS}, status_code=201)

    return [
        Route("/owners", owner_list, methods=["GET", "POST"]),
        Route("/owners/{id}", one_owner),
        Route("/owners/{id}/password", owner_password, methods=["PUT"]),
        Route("/owners/{id}/statements/{month}", owner_statement),
        Route("/stations/{id}/owner", station_owner, methods=["PUT"]),
        Route("/stations/{id}/tariff", station_tariff, methods=["GET", "PUT", "DELETE"]),
        Route("/stations/{id}/qr", station_qr),
        Route("/drivers", driver_list, methods=["GET", "POST"]),
        Route("/drivers/codes", driver_code, methods=["POST"]),
        Route("/drivers/{id}", one_driver),
    ]

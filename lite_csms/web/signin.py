"""Sign-in pages: a driver with a one-time code sent to their phone or with a password, an
owner with a password; sign-out. Rules in security.py; failures limited in common.Web."""

from __future__ import annotations

import logging
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lite_csms.sharing import codes, drivers, logins, owners
from lite_csms.web import queries
from lite_csms.web.common import Web, now, safe_next, see_other
from lite_csms.web.render import page
from lite_csms.web.security import client_address, read_form, sign_in

log = logging.getLogger("lite_csms.web")


def _masked(phone: str) -> str:
    return phone[:4] + "•" * max(0, len(phone) - 7) + phone[-3:]


def routes(web: Web) -> list[Route]:
    def limited(request: Request, template: str, *keys: str, **values: Any) -> Response:
        wait = max(web.failures_per_login.retry_after(*keys[:1]),
                   web.failures_per_address.retry_after(*keys[1:]))
        response = page(request, template, status=429, **{
            **values, "error": f"Too many tries. Wait {wait // 60 + 1} minutes and try again."})
        response.headers["Retry-After"] = str(wait)
        return response

    def blocked(login: str, address: str) -> bool:
        return (web.failures_per_login.blocked(login)
                or web.failures_per_address.blocked(address))

    async def driver_signin(request: Request) -> Response:
        values = {"next": safe_next(request.query_params.get("next")), "phone": "",
                  "error": None}
        if request.method == "GET":
            return page(request, "signin.html", **values)
        form = await read_form(request)
        values.update(next=safe_next(form.get("next")), phone=form.get("phone", "")[:32])
        address = client_address(request)
        try:
            phone = logins.phone(values["phone"])
        except logins.LoginError:
            return page(request, "signin.html", status=400, **{
                **values, "error": "Write the number with its country code, like "
                                   "+254712345678."})
        if web.codes_per_address.blocked(address):
            return limited(request, "signin.html", phone, address, **values)
        web.codes_per_address.record(address)
        try:
            code = await web.run(codes.issue, phone, now())
        except codes.TooManyCodes as exc:
            response = page(request, "signin.html", status=429, **{
                **values, "error": f"Too many codes for this number. Try again in "
                                   f"{exc.retry_after // 60 + 1} minutes."})
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        codes.deliver(phone, code)
        request.session["pending_phone"] = phone
        request.session["next"] = values["next"]
        return see_other("/signin/code")

    async def code_page(request: Request) -> Response:
        phone = request.session.get("pending_phone")
        if not isinstance(phone, str):
            return see_other("/signin")
        values = {"phone": _masked(phone), "error": None}
        if request.method == "GET":
            return page(request, "code.html", **values)
        form = await read_form(request)
        address = client_address(request)
        if blocked(phone, address):
            return limited(request, "code.html", phone, address, **values)
        if not await web.run(codes.redeem, phone, form.get("code", "")[:16], now()):
            web.failures_per_login.record(phone)
            web.failures_per_address.record(address)
            log.info("web: a wrong or expired sign-in code for %s from %s", phone, address)
            return page(request, "code.html", status=400, **{
                **values, "error": "That code is wrong or has expired. Check it, or ask "
                                   "for a new one."})
        driver = await web.run(drivers.driver_for_phone, phone)
        if driver.disabled:
            return page(request, "code.html", status=403, **{
                **values, "error": "This account is disabled. Ask the operator."})
        target = safe_next(request.session.get("next"), "/driver")
        sign_in(request, "driver", driver.id, queries.stamp_of(driver))
        return see_other(target)

    async def password_signin(request: Request, role: str, template: str,
                              default: str) -> Response:
        values = {"next": safe_next(request.query_params.get("next"), default), "login": "",
                  "error": None}
        if request.method == "GET":
            return page(request, template, **values)
        form = await read_form(request)
        login = form.get("login", "").strip()[:254]
        values.update(next=safe_next(form.get("next"), default), login=login)
        address = client_address(request)
        key = login.lower()
        if blocked(key, address):
            return limited(request, template, key, address, **values)
        finder = owners.find_owner if role == "owner" else drivers.find_driver
        checker = owners.check_password if role == "owner" else drivers.check_password
        row = await web.run(finder, login)
        password = form.get("password", "")[:1024]
        if row is None:
            # An unknown login costs the same scrypt as a wrong password: no login probing.
            ok = await trio.to_thread.run_sync(_dummy_check, password)
        else:
            ok = await trio.to_thread.run_sync(checker, row, password)
        if not ok:
            web.failures_per_login.record(key)
            web.failures_per_address.record(address)
            log.info("web: a failed %s sign-in for %r from %s", role, login, address)
            return page(request, template, status=400, **{
                **values, "error": "That login and password do not match."})
        sign_in(request, role, row.id, queries.stamp_of(row))
        return see_other(values["next"])

    async def driver_password(request: Request) -> Response:
        return await password_signin(request, "driver", "signin_password.html", "/driver")

    async def owner_signin(request: Request) -> Response:
        return await password_signin(request, "owner", "owner_signin.html", "/owner")

    async def signout(request: Request) -> Response:
        await read_form(request)
        role, uid = request.session.get("role"), request.session.get("uid")
        if role in ("driver", "owner") and isinstance(uid, int):
            await web.run(queries.signed_out, role, uid)
        request.session.clear()
        request.session["flash"] = "You are signed out."
        return see_other("/")

    return [
        Route("/signin", driver_signin, methods=["GET", "POST"]),
        Route("/signin/code", code_page, methods=["GET", "POST"]),
        Route("/signin/password", driver_password, methods=["GET", "POST"]),
        Route("/owner/signin", owner_signin, methods=["GET", "POST"]),
        Route("/signout", signout, methods=["POST"]),
    ]


def _dummy_check(password: str) -> bool:
    from lite_csms import passwords

    passwords.verify(password, passwords.DUMMY_HASH)
    return False

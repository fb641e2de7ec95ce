"""The web app: the driver's and the owner's pages, their session cookie and error pages.

Session cookie (Starlette's SessionMiddleware, signed with itsdangerous): `lite_csms_web`,
HttpOnly, SameSite=Lax, Secure when the server's public URL is https, 14 days from the last
request. The key: secret.py.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lite_csms.control import StationControl
from lite_csms.web import driver, owner, signin
from lite_csms.web.common import SignInFirst, Web, see_other
from lite_csms.web.render import page
from lite_csms.web.secret import session_secret

COOKIE = "lite_csms_web"
COOKIE_AGE = 14 * 24 * 3600
TITLES = {400: "Not understood", 403: "Not allowed", 404: "Not found",
          405: "Not allowed", 413: "Too large", 415: "Not understood"}


def cookie_secure(public_url: str) -> bool:
    """Secure cookies when the page is served over https: a phone on http would otherwise
    never send the cookie back (a test server on 127.0.0.1 is plain http)."""
    return public_url.lower().startswith("https://")


def build_web_app(control: StationControl) -> Starlette:
    """The web app for `control`'s server. Raises OSError when the session key can be
    neither read nor made (secret.py)."""
    web = Web(control)
    settings = control.settings

    async def home(request: Request) -> Response:
        role = request.session.get("role")
        if role in ("driver", "owner"):
            return see_other(f"/{role}")
        return page(request, "home.html")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return page(request, "error.html", status=exc.status_code,
                    title=TITLES.get(exc.status_code, "Something went wrong"),
                    message=exc.detail, back=None)

    async def sign_in_first(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInFirst)
        return see_other(exc.url)

    routes = [Route("/", home), *signin.routes(web), *driver.routes(web),
              *owner.routes(web)]
    middleware = [Middleware(
        SessionMiddleware, secret_key=session_secret(settings), session_cookie=COOKIE,
        max_age=COOKIE_AGE, same_site="lax",
        https_only=cookie_secure(settings.public_url))]
    return Starlette(routes=routes, middleware=middleware, exception_handlers={
        HTTPException: http_error, SignInFirst: sign_in_first})

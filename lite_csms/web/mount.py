"""The web page and the admin API on one port: one process, one listener, two apps.

The web app is a sibling of the admin API rather than routes inside it: the API answers JSON
and wants an API key, the page answers HTML and wants a session cookie and a CSRF token, and
neither's middleware or error pages should touch the other. A request goes to the web app
when its path is one of the page's (WEB_PREFIXES), else to the API as before.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

# Whole segments: the API's /owners and /drivers stay the API's.
WEB_PREFIXES = ("/s", "/owner", "/driver", "/signin", "/signout")


def is_web_path(path: str) -> bool:
    return path == "/" or any(path == p or path.startswith(p + "/") for p in WEB_PREFIXES)


def one_port(admin: ASGIApp, web: ASGIApp) -> ASGIApp:
    """An ASGI app sending web paths to `web`, everything else (and lifespan) to `admin`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_web_path(scope["path"]):
            await web(scope, receive, send)
        else:
            await admin(scope, receive, send)

    return app

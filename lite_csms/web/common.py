"""What every route module shares: the control interface, the limits, who is signed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse

from lite_csms.ascii_digits import digits
from lite_csms.control import StationControl
from lite_csms.ocppj import timestamps
from lite_csms.web import queries
from lite_csms.web.mount import is_web_path
from lite_csms.web.security import Attempts, signed_in

# Sign-in failures: 5 per login and 50 per address in 15 minutes (a phone's one-time code
# has its own 5 tries and 3 codes per 15 minutes: sharing/codes.py). The per-address limits
# are loose because many phones share one carrier NAT address.
FAIL_WINDOW = 15 * 60


@dataclass
class Web:
    control: StationControl
    failures_per_login: Attempts = field(
        default_factory=lambda: Attempts(5, FAIL_WINDOW))
    failures_per_address: Attempts = field(
        default_factory=lambda: Attempts(50, FAIL_WINDOW))
    # Code requests per address: 30 in 15 minutes (each may cost the operator an SMS).
    codes_per_address: Attempts = field(default_factory=lambda: Attempts(30, FAIL_WINDOW))

    async def run(self, job: Any, *args: Any) -> Any:
        return await self.control.store.run(partial(job, *args) if args else job)

    def online(self, station_id: str) -> bool:
        status = self.control.status(station_id)
        return status is not None and status.ready


class SignInFirst(Exception):
    """The page needs someone signed in: redirect to the sign-in page, back here after."""

    def __init__(self, url: str) -> None:
        self.url = url


async def signed_in_as(web: Web, request: Request, role: str) -> dict[str, Any]:
    """The signed-in driver or owner, else SignInFirst. A person disabled or deleted since
    signing in, who signed out, or whose password changed since, is signed out here."""
    uid = signed_in(request, role)
    found = None if uid is None else await web.run(queries.person, role, uid)
    if found is not None and found["stamp"] != request.session.get("stamp"):
        found = None  # signed out elsewhere, or a new password: this cookie is done
    if found is None:
        if uid is not None:
            request.session.clear()
        signin = "/owner/signin" if role == "owner" else "/signin"
        raise SignInFirst(f"{signin}?next={quote(request.url.path)}")
    return found


def safe_next(value: str | None, default: str = "/") -> str:
    """A redirect target from a form or query: one of our own pages, never another site."""
    if (not value or not value.startswith("/") or value.startswith("//") or "\\" in value
            or not is_web_path(value.split("?")[0])):
        return default
    return value


def see_other(url: str) -> RedirectResponse:
    """POST-redirect-GET: 303, so a reload shows the page and never repeats the POST."""
    return RedirectResponse(url, status_code=303)


def row_id(raw: str) -> int:
    if not digits(raw) or len(raw) > 18:
        raise HTTPException(404, "not found")
    return int(raw)


def now() -> datetime:
    return timestamps.now_utc()

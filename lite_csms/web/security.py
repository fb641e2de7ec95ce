"""Who is signed in, the CSRF token every form carries, and sign-in rate limits.

The session is Starlette's signed cookie (itsdangerous): `role` ("driver" or "owner"), `uid`
(the Driver or Owner row) and `csrf`. The rules:
- every POST carries the session's `csrf` field, compared in constant time; a missing or
  wrong one is 403 and changes nothing. With SameSite=Lax on the cookie, another site's form
  cannot even send the cookie on a POST.
- signing in replaces the session (a new csrf token with it); signing out clears it.
- a disabled person's session stops working at their next request (the row is read each time).
- sign-in attempts are limited per login and per client address (`Attempts`).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request

# A form here is a few short fields; anything bigger is not ours.
MAX_FORM = 4096
MAX_FIELDS = 20


def csrf_token(request: Request) -> str:
    """The session's token, made on first use (an anonymous visitor's sign-in form has one)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 16:
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token


async def read_form(request: Request) -> dict[str, str]:
    """The POSTed urlencoded form, after the CSRF check. 403 for a missing or wrong token,
    413 for a body over MAX_FORM, 415 for another content type. A repeated field keeps its
    first value."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the page's form")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise HTTPException(413, "the form is too large")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=MAX_FIELDS,
                          strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "the form could not be read") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    expected = request.session.get("csrf")
    given = fields.get("csrf", "")
    if not isinstance(expected, str) or not expected or not hmac.compare_digest(
            given.encode(), expected.encode()):
        raise HTTPException(403, "this form has expired: go back, reload the page and "
                                 "try again")
    return fields


def sign_in(request: Request, role: str, uid: int, stamp: str) -> None:
    """A fresh session for the person; `stamp` (web/queries.py stamp_of) is checked at each
    request, so it ends at their next sign-out or password change."""
    request.session.clear()
    request.session.update({"role": role, "uid": uid, "stamp": stamp,
                            "csrf": secrets.token_urlsafe(24)})


def signed_in(request: Request, role: str) -> int | None:
    """The signed-in person's row id if they have `role`, else None."""
    if request.session.get("role") != role:
        return None
    uid = request.session.get("uid")
    return uid if isinstance(uid, int) and not isinstance(uid, bool) else None


# A reverse proxy on the same machine (HTTPS in front of the admin port): the address it
# appended to X-Forwarded-For is the client's. From any other peer the header is ignored,
# since anyone can send it.
LOOPBACK = ("127.0.0.1", "::1")


def client_address(request: Request) -> str:
    """The client's address, for the sign-in limits: the peer, or behind a local proxy the
    last address of X-Forwarded-For."""
    peer = request.client.host if request.client else "-"
    forwarded = request.headers.get("x-forwarded-for", "")
    if peer in LOOPBACK and forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()[:64] or peer
    return peer


class Attempts:
    """At most `limit` events per key in a sliding `window` of seconds, in memory.

    Keys are logins (a phone, an email) and client addresses; at most `max_keys` are kept,
    the least recently seen dropped first, so a flood of made-up logins costs bounded memory.
    """

    def __init__(self, limit: int, window: float, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def _events(self, key: str) -> deque[float]:
        now = self._clock()
        events = self._seen.pop(key, None) or deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        self._seen[key] = events
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)
        return events

    def blocked(self, *keys: str) -> bool:
        return any(len(self._events(k)) >= self.limit for k in keys)

    def record(self, *keys: str) -> None:
        for key in keys:
            self._events(key).append(self._clock())

    def retry_after(self, *keys: str) -> int:
        """Seconds until every key is under its limit again."""
        now = self._clock()
        waits = [events[0] + self.window - now for k in keys
                 if len(events := self._events(k)) >= self.limit]
        return max(1, int(max(waits, default=0)) + 1)

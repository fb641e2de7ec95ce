"""Jinja2 templates, autoescaped, and the filters pages use to write numbers for people.

Jinja2 (not string.Template) because every value is escaped unless a template says
otherwise, and pages share one layout; it is Starlette's own templating library.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from lite_csms.sharing.money import format_amount
from lite_csms.web.security import csrf_token

# Shown for a figure there is none of (no price, no reading yet): an en dash.
NONE = "\N{EN DASH}"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
    lstrip_blocks=True, auto_reload=False)


def money(minor: int | None, currency: str | None) -> str:
    if minor is None or not currency:
        return NONE
    return format_amount(minor, currency)


def kwh(wh: float | None) -> str:
    """Energy in kWh with two decimals: 7 400 Wh is "7.40 kWh"."""
    return NONE if wh is None else f"{wh / 1000:.2f} kWh"


def duration(seconds: float | None) -> str:
    """"1 h 05 min", "12 min", "40 s"."""
    if seconds is None:
        return NONE
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min" if minutes else f"{seconds} s"


def when(value: datetime | None) -> str:
    """"29 Nov 18:40 UTC": the server keeps UTC, and says so."""
    if value is None:
        return NONE
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%-d %b %H:%M UTC")


def short(value: datetime | None) -> str:
    """"29 Nov 18:40": for table cells whose column says UTC."""
    return when(value).removesuffix(" UTC")


def day(value: datetime | None) -> str:
    """"1 Dec"."""
    return when(value).rsplit(" ", 2)[0]


def days(count: float) -> str:
    whole = max(0, round(count))
    return f"{whole} day" if whole == 1 else f"{whole} days"


def data_size(count: int | None) -> str:
    """Bytes as a person reads them on a phone bill: 1.2 MB, 830 kB."""
    if count is None:
        return NONE
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f} MB"
    return f"{count / 1000:.0f} kB" if count >= 1000 else f"{count} B"


_ENV.filters.update(money=money, kwh=kwh, duration=duration, when=when, short=short, day=day,
                    days=days, data=data_size)


def page(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """The template rendered with the request's CSRF token, the flash message (shown once)
    and who is signed in. `no-store`: a page may show a person's sessions, and the back
    button must not show them to the next person on a shared phone."""
    flash = request.session.pop("flash", None)
    html = _ENV.get_template(template).render(
        csrf=csrf_token(request), flash=flash, role=request.session.get("role"),
        path=request.url.path, **values)
    return HTMLResponse(html, status_code=status, headers={
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
        # No script, no outside resource: the page needs none, and an injected one runs not.
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                   "img-src data:; form-action 'self'; "
                                   "frame-ancestors 'none'; base-uri 'none'"})

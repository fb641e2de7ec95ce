"""Billing cycles, projections and budget status: pure arithmetic on dates and byte counts.

A cycle with cycle day D runs from day D 00:00 UTC of one month to day D 00:00 UTC of the
next (end exclusive). D is 1 to 28, so every month has it and February needs no special case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

DAY = timedelta(days=1)
# Never scale less than an hour of today: the first minutes after midnight (or after a cycle
# starts) would turn one TCP handshake into megabytes a day.
MIN_TODAY_FRACTION = 1 / 24
# A station's own window (see daily_rate) is at least a day long: its first hours are mostly
# set-up (TCP and TLS handshakes, boot, configuration) and would project to megabytes.
MIN_LIFE_DAYS = 1.0
RATE_WINDOW_DAYS = 7

OK, WARNING, OVER = "ok", "warning", "over"


@dataclass(frozen=True, slots=True)
class Cycle:
    start: datetime
    end: datetime

    @property
    def length_days(self) -> int:
        return (self.end - self.start).days

    @property
    def label(self) -> str:
        last = (self.end - DAY).date()
        return f"{self.start.date().isoformat()}..{last.isoformat()}"

    def days(self) -> list[date]:
        return [(self.start + DAY * i).date() for i in range(self.length_days)]


def _check_day(cycle_day: int) -> None:
    if not 1 <= cycle_day <= 28:
        raise ValueError("cycle day must be 1 to 28")


def _month_after(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def cycle_starting_in(year: int, month: int, cycle_day: int) -> Cycle:
    """The cycle that starts in the given month."""
    _check_day(cycle_day)
    next_year, next_month = _month_after(year, month)
    return Cycle(datetime(year, month, cycle_day, tzinfo=UTC),
                 datetime(next_year, next_month, cycle_day, tzinfo=UTC))


def cycle_containing(moment: datetime, cycle_day: int) -> Cycle:
    moment = moment.astimezone(UTC)
    if moment.day >= cycle_day:
        return cycle_starting_in(moment.year, moment.month, cycle_day)
    year, month = (moment.year - 1, 12) if moment.month == 1 else (moment.year, moment.month - 1)
    return cycle_starting_in(year, month, cycle_day)


def parse_month(text: str) -> tuple[int, int]:
    """'YYYY-MM' as (year, month); ValueError with a readable message otherwise."""
    try:
        year_text, month_text = text.split("-")
        year, month = int(year_text), int(month_text)
    except ValueError:
        raise ValueError(f"month {text!r} is not YYYY-MM") from None
    if len(year_text) != 4 or not 1 <= month <= 12:
        raise ValueError(f"month {text!r} is not YYYY-MM")
    return year, month


def _clamp(cycle: Cycle, now: datetime) -> datetime:
    return min(max(now, cycle.start), cycle.end)


def days_elapsed(cycle: Cycle, now: datetime) -> float:
    return (_clamp(cycle, now) - cycle.start) / DAY


def days_remaining(cycle: Cycle, now: datetime) -> float:
    return (cycle.end - _clamp(cycle, now)) / DAY


def daily_rate(cycle: Cycle, now: datetime, daily: Mapping[date, int],
               since: datetime | None = None) -> float:
    """Bytes a day at which the station is going now.

    The rate is the bytes of a window divided by its length in days. The window is the last
    (up to) 7 complete days of the cycle plus the elapsed part of today, which counts for the
    fraction of the day gone (at least an hour). Fewer than 7 complete days: the window is the
    whole elapsed cycle, so the rate is the cycle's elapsed average. Days with no rows count as
    zero, so a station that went quiet pulls its rate down.

    `since` is the station's first traffic. A window that would reach back before it starts
    there instead, and counts at least a day (MIN_LIFE_DAYS): days before the station existed
    are not quiet days.
    """
    now = _clamp(cycle, now)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    complete = min((today - cycle.start).days, RATE_WINDOW_DAYS)
    if since is not None and since > today - DAY * complete:
        window_bytes = sum(amount for day, amount in daily.items()
                           if since.date() <= day <= today.date())
        return window_bytes / max((now - min(since, now)) / DAY, MIN_LIFE_DAYS)
    fraction = max((now - today) / DAY, MIN_TODAY_FRACTION)
    window_days = [(today - DAY * i).date() for i in range(1, complete + 1)]
    window_bytes = sum(daily.get(day, 0) for day in window_days) + daily.get(today.date(), 0)
    return window_bytes / (complete + fraction)


def project(cycle: Cycle, now: datetime, used: int, daily: Mapping[date, int],
            since: datetime | None = None) -> int:
    """The cycle's end total if the station keeps its current daily rate (see daily_rate;
    `since` is the station's first traffic).

    A finished cycle projects to what it used; one not yet begun projects to zero.
    """
    if now >= cycle.end:
        return used
    if now < cycle.start:
        return 0
    return used + round(daily_rate(cycle, now, daily, since) * days_remaining(cycle, now))


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str
    projected_over: bool
    reason: str


def judge(used: int, projected: int, cap: int, warn_ratio: float) -> Verdict:
    """Status by what an operator can still act on.

    "over": used > cap. "warning": used >= warn_ratio * cap, or the projection exceeds the cap
    (trouble is coming while there is still time to act). "ok" otherwise. `projected_over`
    says separately whether the projection exceeds the cap, whatever the status.
    """
    projected_over = projected > cap
    warn_at = warn_ratio * cap
    if used > cap:
        return Verdict(OVER, projected_over, "used more than the cap")
    if used >= warn_at:
        return Verdict(WARNING, projected_over,
                       f"used {used / cap:.0%} of the cap (warning at {warn_ratio:.0%})")
    if projected_over:
        return Verdict(WARNING, True, "projected to exceed the cap by the cycle's end")
    return Verdict(OK, False, "within the budget")

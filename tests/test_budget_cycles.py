"""Billing cycles, projections and status: pure functions on fixed dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from lite_csms.budget import cycles, units


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_cycle_containing_on_both_sides_of_the_cycle_day() -> None:
    before = cycles.cycle_containing(utc(2026, 3, 4, 23, 59), 5)
    assert (before.start, before.end) == (utc(2026, 2, 5), utc(2026, 3, 5))
    on = cycles.cycle_containing(utc(2026, 3, 5, 0, 0), 5)
    assert (on.start, on.end) == (utc(2026, 3, 5), utc(2026, 4, 5))
    assert before.length_days == 28 and on.length_days == 31


def test_year_boundaries() -> None:
    january = cycles.cycle_containing(utc(2026, 1, 3), 10)
    assert (january.start, january.end) == (utc(2025, 12, 10), utc(2026, 1, 10))
    december = cycles.cycle_starting_in(2025, 12, 1)
    assert december.end == utc(2026, 1, 1) and december.length_days == 31


@pytest.mark.parametrize(("year", "month", "day", "length"), [
    (2026, 1, 28, 31),   # Jan 28 -> Feb 28
    (2026, 2, 28, 28),   # Feb 28 -> Mar 28, not a leap year
    (2028, 2, 28, 29),   # leap year: Feb 29 lies inside
    (2026, 3, 28, 31),   # Mar 28 -> Apr 28
    (2026, 4, 1, 30),
    (2026, 2, 1, 28),
])
def test_month_lengths(year: int, month: int, day: int, length: int) -> None:
    cycle = cycles.cycle_starting_in(year, month, day)
    assert cycle.length_days == length
    assert len(cycle.days()) == length and cycle.days()[0] == date(year, month, day)
    # Every instant of the cycle maps back to it, the first and the last.
    assert cycles.cycle_containing(cycle.start, day) == cycle
    assert cycles.cycle_containing(cycle.end - timedelta(seconds=1), day) == cycle
    assert cycles.cycle_containing(cycle.end, day) != cycle


def test_cycle_day_out_of_range_and_month_parsing() -> None:
    for bad in (0, 29, 31):
        with pytest.raises(ValueError, match="1 to 28"):
            cycles.cycle_starting_in(2026, 1, bad)
    assert cycles.parse_month("2026-02") == (2026, 2)
    for bad in ("2026-13", "26-01", "2026/01", "March"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            cycles.parse_month(bad)


def test_elapsed_and_remaining() -> None:
    cycle = cycles.cycle_starting_in(2026, 2, 1)
    assert cycles.days_elapsed(cycle, utc(2026, 2, 11, 12)) == 10.5
    assert cycles.days_remaining(cycle, utc(2026, 2, 11, 12)) == 17.5
    assert cycles.days_remaining(cycle, utc(2026, 5, 1)) == 0
    assert cycles.days_elapsed(cycle, utc(2025, 5, 1)) == 0


def test_projection_uses_the_last_seven_days_and_today() -> None:
    cycle = cycles.cycle_starting_in(2026, 3, 1)
    # A quiet first week, then 1 MB a day for a week: the quiet week must not count.
    daily = {date(2026, 3, d): 100_000 for d in range(1, 8)}
    daily |= {date(2026, 3, d): 1_000_000 for d in range(8, 15)}
    daily[date(2026, 3, 15)] = 500_000        # half of today gone, at the same pace
    now = utc(2026, 3, 15, 12)
    used = sum(daily.values())
    assert cycles.daily_rate(cycle, now, daily) == pytest.approx(1_000_000)
    remaining = cycles.days_remaining(cycle, now)
    assert remaining == 16.5
    assert cycles.project(cycle, now, used, daily) == used + 16_500_000


def test_projection_falls_back_to_the_elapsed_average() -> None:
    cycle = cycles.cycle_starting_in(2026, 3, 1)
    daily = {date(2026, 3, 1): 2_000_000, date(2026, 3, 2): 0, date(2026, 3, 3): 1_000_000}
    now = utc(2026, 3, 3, 6)                 # 2.25 days elapsed
    rate = cycles.daily_rate(cycle, now, daily)
    assert rate == pytest.approx(3_000_000 / 2.25)
    # Ten minutes into a cycle, one hour is the smallest window scaled.
    early = {date(2026, 3, 1): 4_000}
    assert cycles.daily_rate(cycle, utc(2026, 3, 1, 0, 10), early) == pytest.approx(96_000)


def test_projection_of_finished_and_future_cycles() -> None:
    cycle = cycles.cycle_starting_in(2026, 3, 1)
    daily = {date(2026, 3, 31): 9_000_000}
    assert cycles.project(cycle, utc(2026, 4, 2), 9_000_000, daily) == 9_000_000
    assert cycles.project(cycle, utc(2026, 2, 2), 0, {}) == 0


def test_status_rules() -> None:
    cap = 25_000_000
    ok = cycles.judge(10_000_000, 20_000_000, cap, 0.8)
    assert (ok.status, ok.projected_over) == ("ok", False)
    trend = cycles.judge(10_000_000, 30_000_000, cap, 0.8)
    assert (trend.status, trend.projected_over) == ("warning", True)
    assert "projected" in trend.reason
    threshold = cycles.judge(20_000_000, 20_000_000, cap, 0.8)
    assert (threshold.status, threshold.projected_over) == ("warning", False)
    assert "80%" in threshold.reason
    assert cycles.judge(cap, cap, cap, 0.8).status == "warning"
    over = cycles.judge(cap + 1, cap + 1, cap, 0.8)
    assert (over.status, over.projected_over) == ("over", True)


@pytest.mark.parametrize(("text", "size"), [
    ("25000000", 25_000_000), ("20MB", 20_000_000), ("500kB", 500_000), ("500 KB", 500_000),
    ("1.5GB", 1_500_000_000), ("2MiB", 2_097_152), ("64KiB", 65_536), (".5MB", 500_000),
    (" 7 B ", 7), (12_345, 12_345),
])
def test_parse_size(text: str | int, size: int) -> None:
    assert units.parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "MB", "20 XB", "-5MB", "1,000", "0", "0.0001B", True, 0])
def test_parse_size_refuses(bad: str | int) -> None:
    with pytest.raises(ValueError):
        units.parse_size(bad)


def test_format_size() -> None:
    assert [units.format_size(n) for n in (0, 999, 1000, 806_452, 14_500_000, 25_000_000_000)
            ] == ["0 B", "999 B", "1.0 kB", "806.5 kB", "14.5 MB", "25.0 GB"]

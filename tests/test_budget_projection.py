"""The projection starts at the station's first traffic: a station added mid-cycle."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import peewee as pw
import pytest

from lite_csms import config
from lite_csms.budget import cycles, usage
from lite_csms.db.database import open_database
from lite_csms.db.models import Station, TrafficConnection, TrafficCounter

MB = 1_000_000
CYCLE = cycles.cycle_starting_in(2026, 11, 1)
# Added on the 11th at 06:00; now is the 15th at 12:00: 4.25 days of traffic, 1 MB a day.
ADDED = datetime(2026, 11, 11, 6, tzinfo=UTC)
NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def _daily() -> dict[date, int]:
    """What a station going at 1 MB a day since ADDED has used, per day, up to NOW."""
    days: dict[date, int] = {}
    moment = ADDED
    while moment < NOW:
        step = min(NOW, (moment + timedelta(days=1)).replace(hour=0)) - moment
        days[moment.date()] = days.get(moment.date(), 0) + round(MB * step / timedelta(days=1))
        moment += step
    return days


def test_a_station_added_mid_cycle_is_projected_from_its_first_traffic() -> None:
    daily = _daily()
    used = sum(daily.values())
    assert used == 4.25 * MB
    remaining = cycles.days_remaining(CYCLE, NOW)
    # Going at 1 MB a day since it was added: 1 MB a day for the rest of the cycle.
    assert cycles.project(CYCLE, NOW, used, daily, since=ADDED) == used + round(MB * remaining)
    # Averaged over a 7-day window that began before the station existed, it was not.
    blind = cycles.project(CYCLE, NOW, used, daily)
    assert blind < used + 0.7 * MB * remaining


def test_first_traffic_before_the_window_changes_nothing() -> None:
    daily = {utc(2026, 11, d).date(): MB for d in range(1, 16)}
    used = sum(daily.values())
    assert (cycles.project(CYCLE, NOW, used, daily, since=utc(2026, 10, 20))
            == cycles.project(CYCLE, NOW, used, daily))


def test_the_first_hours_are_not_scaled_into_megabytes() -> None:
    since = utc(2026, 11, 15, 11, 59)
    # Ten kB of handshakes and boot in its first minute: a day's worth, not 14 MB a day.
    rate = cycles.daily_rate(CYCLE, NOW, {NOW.date(): 10_000}, since=since)
    assert rate == 10_000
    # From its second day on, its own average.
    later = cycles.daily_rate(CYCLE, NOW, {utc(2026, 11, 13).date(): 2 * MB,
                                           utc(2026, 11, 14).date(): 2 * MB,
                                           NOW.date(): MB}, since=utc(2026, 11, 13, 12))
    assert later == 5 * MB / 2  # two days since the 13th, 12:00


@pytest.fixture
def store(tmp_path: Path) -> Iterator[pw.SqliteDatabase]:
    db = open_database(tmp_path / "csms.sqlite3")
    yield db
    db.close()


def _counted(station_id: str, daily: dict[date, int], since: datetime = ADDED) -> None:
    for day, amount in daily.items():
        hour = max(since, datetime(day.year, day.month, day.day, tzinfo=UTC))
        TrafficCounter.create(station=station_id, period="hour", period_start=hour,
                              action="Heartbeat", direction="in", layer="ip", bytes=amount)


def test_report_and_policy_project_an_added_station_from_its_first_connection(store) -> None:
    settings = config.load(environ={}, overrides={"budget_cap": 15 * MB})
    Station.create(id="CS-NEW")
    Station.create(id="CS-OLD")
    daily = _daily()
    _counted("CS-NEW", daily)
    # Its first connection opened at ADDED; the counters alone only know the hour.
    TrafficConnection.create(station="CS-NEW", opened_at=ADDED, closed_at=ADDED,
                             protocol="ocpp1.6")
    assert usage.first_traffic("CS-NEW") == ADDED
    assert usage.first_traffic("CS-OLD") is None
    found = usage.station_usage("CS-NEW", settings, NOW)
    remaining = cycles.days_remaining(CYCLE, NOW)
    assert found.used == 4.25 * MB
    assert found.projected == found.used + round(MB * remaining)
    # 20 MB projected against a 15 MB cap: a warning now, while there is time to act.
    assert found.projected_over and found.status == "warning"
    # The same bytes from a station that has been there all cycle project lower.
    _counted("CS-OLD", {**daily, utc(2026, 11, 1).date(): 0}, since=CYCLE.start)
    TrafficConnection.create(station="CS-OLD", opened_at=CYCLE.start, closed_at=CYCLE.start,
                             protocol="ocpp1.6")
    assert usage.station_usage("CS-OLD", settings, NOW).projected < found.projected


def test_counters_alone_give_the_hour_of_first_traffic(store) -> None:
    Station.create(id="CS-LIVE")
    _counted("CS-LIVE", {utc(2026, 11, 14).date(): MB})
    assert usage.first_traffic("CS-LIVE") == utc(2026, 11, 14)

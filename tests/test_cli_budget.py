"""`lite-csms budget`: reports over counter rows written straight into a real SQLite file."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lite_csms.db.database import open_database
from lite_csms.db.models import PolicyChange, Station, TrafficConnection, TrafficCounter
from tests.conftest import run_cli

# March 2026 has 31 days; the report is read as of the middle of the 15th.
AT = "2026-03-15T12:00:00Z"
DAILY_SHARE = 25_000_000 / 31


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def counter(station: str, start: datetime, action: str, direction: str, layer: str,
            amount: int, period: str = "hour", messages: int = 0) -> None:
    TrafficCounter.create(station=station, period=period, period_start=start, action=action,
                          direction=direction, layer=layer, bytes=amount, messages=messages)


def seed() -> None:
    """CS-A: 14.5 MB by 15 March noon, 1 MB a day of late; CS-B: over a 10 MB cap; CS-C: idle.

    Runs in whatever database the models are bound to (a CLI test's file or the server's).
    """
    for sid in ("CS-A", "CS-B", "CS-C"):
        Station.create(id=sid)
    # The previous cycle's last hour: February's total, never March's.
    counter("CS-A", utc(2026, 2, 28, 23), "MeterValues", "in", "ip", 5_000_000)
    # The first hour of the cycle.
    counter("CS-A", utc(2026, 3, 1, 0), "MeterValues", "in", "ip", 1_000_000)
    for day in range(2, 15):
        start = utc(2026, 3, day)
        # Rolled-up days: 600 kB of MeterValues in, 400 kB of Heartbeat answers out.
        counter("CS-A", start, "MeterValues", "in", "ip", 600_000, period="day")
        counter("CS-A", start, "MeterValues", "in", "payload", 300_000, "day", messages=96)
        counter("CS-A", start, "MeterValues", "in", "ws", 330_000, period="day")
        counter("CS-A", start, "Heartbeat", "out", "ip", 400_000, period="day")
        counter("CS-A", start, "Heartbeat", "out", "payload", 100_000, "day", messages=48)
        counter("CS-A", start, "Heartbeat", "out", "ws", 120_000, period="day")
    counter("CS-A", utc(2026, 3, 15, 9), "(tcp-handshake)", "in", "ip", 500_000)
    # After the report's instant: left out of a report "as of" AT.
    counter("CS-A", utc(2026, 3, 15, 13), "MeterValues", "in", "ip", 7_000_000)
    counter("CS-B", utc(2026, 3, 10, 8), "DataTransfer", "out", "ip", 11_000_000)
    TrafficConnection.create(
        station="CS-A", opened_at=utc(2026, 2, 27), closed_at=utc(2026, 2, 28),
        protocol="ocpp1.6", close_reason="february only")
    TrafficConnection.create(
        station="CS-A", opened_at=utc(2026, 2, 28, 22), closed_at=utc(2026, 3, 2, 6),
        protocol="ocpp2.0.1", tls=True, tls_resumed=True, tcp_setup_bytes=180,
        tls_setup_bytes=4_200, http_setup_bytes=650, ip_bytes_in=900_000,
        ip_bytes_out=300_000, close_reason="station closed 1000")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "budget.sqlite3"
    database = open_database(path)
    try:
        seed()
    finally:
        database.close()
    return path


def cli(db: Path, *args: str):
    return run_cli(*args, "--database", str(db))


def report_json(db: Path, *args: str) -> dict:
    result = cli(db, "budget", "report", "--at", AT, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_report_totals_projection_and_status(db: Path) -> None:
    stations = {s["station_id"]: s for s in report_json(db)["stations"]}
    a, b, c = stations["CS-A"], stations["CS-B"], stations["CS-C"]
    assert a["cycle_start"].startswith("2026-03-01") and a["cycle_end"].startswith("2026-04-01")
    # 1 MB on the 1st, 1 MB on each of the 13 rolled-up days, 0.5 MB today: hour and day rows.
    assert a["used"] == 14_500_000 and a["used_pct"] == 58.0
    # Rate: the last 7 complete days (7 MB) plus half of today (0.5 MB) over 7.5 days = 1 MB a
    # day, for the 16.5 days left.
    assert a["projected"] == 14_500_000 + 16_500_000
    assert (a["status"], a["projected_over"]) == ("warning", True)
    assert [t["action"] for t in a["top_actions"]] == [
        "MeterValues", "Heartbeat", "(tcp-handshake)"]
    # 11 MB of a 25 MB cap, in the 5 days 4 hours since its first traffic (the 10th, 08:00;
    # the days before it existed do not count): 2.13 MB a day projects to 46.1 MB, a warning.
    assert (b["used"], b["projected"], b["status"]) == (11_000_000, 46_129_032, "warning")
    assert (c["used"], c["projected"], c["status"], c["top_actions"]) == (0, 0, "ok", [])
    # Biggest consumer first.
    assert [s["station_id"] for s in report_json(db)["stations"]] == ["CS-A", "CS-B", "CS-C"]


def test_cycle_boundary_and_month_selection(db: Path) -> None:
    [feb] = report_json(db, "--station", "CS-A", "--month", "2026-02")["stations"]
    assert feb["used"] == 5_000_000 and feb["cycle_end"].startswith("2026-03-01")
    # A finished cycle projects to what it used; February 2026 has 28 days.
    assert feb["projected"] == 5_000_000 and len(feb["days"]) == 28
    assert feb["days"][-1] == {"day": "2026-02-28", "bytes": 5_000_000}
    assert [t["action"] for t in feb["top_actions"]] == ["MeterValues"]
    # Without --at the counts after AT (the 13:00 row) are included.
    result = cli(db, "budget", "report", "--station", "CS-A", "--month", "2026-03", "--json")
    [march] = json.loads(result.stdout)["stations"]
    assert march["used"] == 21_500_000


def test_station_override_changes_the_cycle_and_status(db: Path) -> None:
    result = cli(db, "budget", "set", "CS-B", "--cap", "10MB", "--cycle-day", "10",
                 "--nat-timeout", "300")
    assert result.returncode == 0, result.stderr
    assert "10.0 MB" in result.stdout and "(this station)" in result.stdout
    [b] = report_json(db, "--station", "CS-B")["stations"]
    assert b["cycle_start"].startswith("2026-03-10") and b["cycle_end"].startswith("2026-04-10")
    assert (b["used"], b["cap"], b["status"]) == (11_000_000, 10_000_000, "over")
    # The row at 2026-03-10 08:00 is in the cycle that starts on the 10th, not the one before.
    [before] = report_json(db, "--station", "CS-B", "--month", "2026-02")["stations"]
    assert before["used"] == 0 and before["cycle_end"].startswith("2026-03-10")


def test_breakdowns(db: Path) -> None:
    def breakdown(by: str) -> list[dict]:
        [a] = report_json(db, "--station", "CS-A", "--by", by)["stations"]
        assert a["by"] == by
        return a["breakdown"]

    actions = {r["action"]: r for r in breakdown("action")}
    assert actions["MeterValues"]["in"] == 1_000_000 + 13 * 600_000
    assert actions["MeterValues"]["messages"] == 13 * 96
    assert actions["Heartbeat"]["out"] == 13 * 400_000 and actions["Heartbeat"]["in"] == 0
    assert sum(r["total"] for r in actions.values()) == 14_500_000
    layers = {r["layer"]: r for r in breakdown("layer")}
    assert layers["payload"]["total"] == 13 * 400_000
    assert layers["ws"]["overhead"] == 13 * 50_000
    assert layers["tls"]["total"] == 0
    assert layers["ip"]["overhead"] == 14_500_000 - 13 * 450_000
    directions = {r["direction"]: r["bytes"] for r in breakdown("direction")}
    assert directions == {"in": 14_500_000 - 13 * 400_000, "out": 13 * 400_000}
    days = breakdown("day")
    assert len(days) == 15 and days[0] == {"day": "2026-03-01", "bytes": 1_000_000}
    assert days[-1] == {"day": "2026-03-15", "bytes": 500_000}
    [conn] = breakdown("connection")
    assert conn["close_reason"] == "station closed 1000" and conn["tls_resumed"] is True
    assert conn["setup"] == 180 + 4_200 + 650 and conn["total"] == 1_200_000


def test_json_and_csv_agree(db: Path) -> None:
    stations = report_json(db)["stations"]
    result = cli(db, "budget", "report", "--at", AT, "--csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["station_id"] for r in rows] == [s["station_id"] for s in stations]
    for row, station in zip(rows, stations, strict=True):
        assert int(row["used"]) == station["used"]
        assert int(row["projected"]) == station["projected"]
        assert row["status"] == station["status"]
        assert row["projected_over"] == json.dumps(station["projected_over"])
    result = cli(db, "budget", "report", "--at", AT, "--csv", "--by", "action")
    by_action = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["station"] for r in by_action} == {"CS-A", "CS-B"}
    json_actions = report_json(db, "--by", "action")["stations"][0]["breakdown"]
    csv_actions = [r for r in by_action if r["station"] == "CS-A"]
    assert [(r["action"], int(r["total"])) for r in csv_actions] == [
        (r["action"], r["total"]) for r in json_actions]
    one = cli(db, "budget", "report", "--at", AT, "--csv", "--station", "CS-A").stdout
    [summary] = list(csv.DictReader(io.StringIO(one)))
    assert int(summary["used"]) == 14_500_000 and summary["status"] == "warning"
    both = cli(db, "budget", "report", "--json", "--csv")
    assert both.returncode == 2


def test_human_report_and_day_chart(db: Path) -> None:
    result = cli(db, "budget", "report", "--at", AT)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Billed layer: ip" in out.splitlines()[0]
    line_a = next(line for line in out.splitlines() if line.startswith("CS-A "))
    for expected in ("14.5 MB", "25.0 MB", "58.0%", "31.0 MB", "warning", "projected"):
        assert expected in line_a
    assert "CS-A top actions: MeterValues 8.8 MB (61%)" in out
    assert "CS-C: no traffic in this cycle" in out
    single = cli(db, "budget", "report", "--at", AT, "--station", "CS-A").stdout
    assert "CS-A by action" in single and "Heartbeat" in single
    chart = [line for line in single.splitlines() if line[:2] == "03"]
    assert len(chart) == 15
    assert chart[0].startswith("03-01 Sun") and chart[-1].startswith("03-15 Sun")
    assert f"daily share {DAILY_SHARE / 1000:.1f} kB" in single
    # Scaled to the widest bar: a 1 MB day fills the 40 columns, 0.5 MB fills half.
    assert chart[0].count("█") == 39 and "│" in chart[0] and "over share" in chart[0]
    assert chart[-1].count("█") == 20 and "over share" not in chart[-1]
    assert chart[-1].index("│") == chart[0].index("│")
    assert "1.0 MB" in chart[0] and "500.0 kB" in chart[-1]


def test_set_persists_validates_and_clears(db: Path) -> None:
    ok = cli(db, "budget", "set", "CS-C", "--cap", "1.5GB", "--warn", "0.9", "--policy", "off",
             "--json")
    assert ok.returncode == 0, ok.stderr
    shown = json.loads(ok.stdout)
    assert shown["cap_bytes"] == 1_500_000_000 and shown["policy_enabled"] is False
    assert shown["cycle_day"] == 1 and "cycle_day" not in shown["overrides"]
    stored = sqlite3.connect(db).execute(
        "SELECT cap_bytes, warn_ratio, policy_enabled, cycle_day FROM station_budget "
        "WHERE station_id = 'CS-C'").fetchone()
    assert stored == (1_500_000_000, 0.9, 0, None)
    assert cli(db, "budget", "set", "CS-C", "--cap", "2MiB", "--json").returncode == 0
    [c] = report_json(db, "--station", "CS-C")["stations"]
    assert c["cap"] == 2 * 1024 * 1024 and c["warn_at"] == round(0.9 * 2 * 1024 * 1024)
    for args, message in [(("--cap", "20XB"), "cap"), (("--cap", "0"), "more than zero"),
                          (("--cycle-day", "31"), "1 to 28"), (("--warn", "1.2"), "between"),
                          (("--nat-timeout", "5"), "10 to 86400"), ((), "nothing to set")]:
        bad = cli(db, "budget", "set", "CS-C", *args)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
        assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    unknown = cli(db, "budget", "set", "NOPE", "--cap", "1MB")
    assert unknown.returncode == 2 and "no station 'NOPE'" in unknown.stderr
    cleared = json.loads(cli(db, "budget", "set", "CS-C", "--clear", "--json").stdout)
    assert cleared["cap_bytes"] == 25_000_000 and cleared["overrides"] == []
    bad_month = cli(db, "budget", "report", "--month", "2026-13")
    assert bad_month.returncode == 2 and "YYYY-MM" in bad_month.stderr


def test_explain_with_and_without_policy_changes(db: Path) -> None:
    quiet = cli(db, "budget", "explain", "CS-A")
    assert quiet.returncode == 0 and "No policy changes recorded" in quiet.stdout
    database = open_database(db)
    try:
        at = datetime.now(UTC) - timedelta(hours=2)
        PolicyChange.create(
            station="CS-A", at=at, from_level="normal", to_level="saver",
            reason="projected 31.0 MB > cap 25.0 MB",
            settings=json.dumps([{"key": "HeartbeatInterval", "value": "3600",
                                  "status": "Accepted"},
                                 {"key": "MeterValueSampleInterval", "value": "900",
                                  "status": "Rejected"}]))
        PolicyChange.create(station="CS-A", at=at + timedelta(hours=1), from_level="saver",
                            to_level="minimal", reason="used 90% of the cap",
                            settings=json.dumps({"HeartbeatInterval": "7200"}))
    finally:
        database.close()
    out = cli(db, "budget", "explain", "CS-A").stdout
    assert "No policy changes" not in out
    assert out.index("normal -> saver") < out.index("saver -> minimal")
    assert "why: projected 31.0 MB > cap 25.0 MB" in out
    assert "sent: HeartbeatInterval=3600 (Accepted)" in out
    assert "sent: MeterValueSampleInterval=900 (Rejected)" in out
    assert "sent: HeartbeatInterval=7200" in out
    data = json.loads(cli(db, "budget", "explain", "CS-A", "--json", "--at", AT).stdout)
    assert [c["to_level"] for c in data["changes"]] == ["saver", "minimal"]
    assert data["changes"][0]["settings"][1]["status"] == "Rejected"
    assert data["usage"]["used"] == 14_500_000 and data["budget"]["cap_bytes"] == 25_000_000
    latest = json.loads(cli(db, "budget", "explain", "CS-A", "--json", "--limit", "1").stdout)
    assert [c["to_level"] for c in latest["changes"]] == ["minimal"]
    assert cli(db, "budget", "explain", "NOPE").returncode == 2

"""The budget policy: levels per version, when it moves a station, and what it sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import trio

from lite_csms import config
from lite_csms.budget import levels, policy
from lite_csms.db.database import open_database
from lite_csms.db.models import PolicyChange, Station, StationBudget, StationSetting, TrafficCounter
from lite_csms.ocppj.versions import Version
from tests.conftest import start_in_process
from tests.test_simulator import sim

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)


def test_levels_hold_concrete_settings_per_version():
    v16 = levels.settings_for(levels.LEAN, Version.OCPP16, nat_timeout=600)
    # The server's TCP keepalive holds the NAT: the charger's ping is asked off, and its
    # ping at 0.9 x nat_timeout is only the fallback where it refuses.
    assert v16["WebSocketPingInterval"] == "0"
    assert levels.choices_for(levels.LEAN, Version.OCPP16, 600)["WebSocketPingInterval"] == (
        "0", "540")
    # Samples at the transaction's end, none live (the register where an empty list is refused).
    assert v16["MeterValuesSampledData"] == ""
    assert v16["StopTxnSampledData"] == "Energy.Active.Import.Register"
    assert int(v16["MeterValueSampleInterval"]) > 0
    v2 = levels.settings_for(levels.MINIMAL, Version.OCPP201, nat_timeout=120)
    assert levels.choices_for(levels.MINIMAL, Version.OCPP201, 120)[
        "OCPPCommCtrlr.WebSocketPingInterval"] == ("0", "108")
    assert v2["SampledDataCtrlr.TxUpdatedInterval"] == "0"
    assert v2["SampledDataCtrlr.TxEndedInterval"] == "0"
    assert "MinimumStatusDuration" not in v2
    normal = levels.settings_for(levels.NORMAL, Version.OCPP201, nat_timeout=600)
    assert normal["SampledDataCtrlr.TxUpdatedInterval"] == "0"
    assert normal["SampledDataCtrlr.TxEndedInterval"] == "900"
    assert levels.keepalive_idle(600) == 540
    # Billing data is never switched off: the register is always sampled.
    for level in levels.LEVELS:
        assert levels.ENERGY in levels.PLANS[level].measurands


def test_choose_tightens_with_the_projection():
    assert levels.choose(1_000, 10_000, 100_000, 0.8)[0] == levels.NORMAL
    assert levels.choose(1_000, 85_000, 100_000, 0.8)[0] == levels.LEAN
    assert levels.choose(1_000, 120_000, 100_000, 0.8)[0] == levels.MINIMAL
    assert levels.choose(81_000, 81_000, 100_000, 0.8)[0] == levels.MINIMAL


def _hour_rows(station_id: str, per_day: int, days: int) -> None:
    for day in range(days):
        TrafficCounter.create(station=station_id, period="hour",
                              period_start=NOW - timedelta(days=day, hours=1),
                              action="MeterValues", direction="in", layer="ip", bytes=per_day)


def test_decide_moves_up_within_a_cycle_and_back_at_a_new_one(tmp_path):
    db = open_database(tmp_path / "p.sqlite3")
    settings = config.load(environ={}, overrides={"budget_cap": 1_000_000})
    Station.create(id="CS-P")
    assert policy.decide("CS-P", settings, NOW) is None  # no traffic: stays normal
    _hour_rows("CS-P", 100_000, 7)  # 100 kB a day for a week: ~1.6 MB by the end
    move = policy.decide("CS-P", settings, NOW)
    assert move is not None and move.to_level == levels.MINIMAL
    assert "1,000,000 B cap" in move.reason
    policy.record_move("CS-P", "normal", move.to_level, move.reason, move.cycle_start, NOW)
    assert policy.decide("CS-P", settings, NOW) is None  # already there; never relaxes
    next_cycle = move.cycle_start + timedelta(days=31)
    back = policy.decide("CS-P", settings, next_cycle + timedelta(hours=1))
    assert back is not None and back.to_level == levels.NORMAL
    assert "new billing cycle" in back.reason
    db.close()


async def test_policy_configures_a_station_and_moves_it(nursery, tmp_path):
    csms = await start_in_process(nursery, tmp_path, budget_policy=True, budget_cap=500_000)
    await csms.server.store.run(lambda: Station.create(id="CS-B"))
    station = sim.make_station(sim.StationOptions(
        url=csms.url("").rstrip("/"), station_id="CS-B", protocol=Version.OCPP16,
        linger=1e9))
    nursery.start_soon(station.run)

    async def held(key: str) -> str | None:
        row = await csms.server.store.run(partial(
            StationSetting.get_or_none, StationSetting.station == "CS-B",
            StationSetting.key == key))
        return None if row is None else row.value

    with trio.fail_after(10):
        while await held("MeterValueSampleInterval") != "900":
            await trio.sleep(0.02)
    # The normal level reached the charger itself, and the boot answer follows it too.
    assert station.config.get("WebSocketPingInterval") == "0"
    assert station.config.get("HeartbeatInterval") == "21600"

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # 450 kB this hour: past the 400 kB warning line of a 500 kB cap, whatever the date.
    await csms.server.store.run(partial(
        TrafficCounter.create, station="CS-B", period="hour", period_start=hour,
        action="MeterValues", direction="in", layer="ip", bytes=450_000))
    moved = await csms.server.policy.evaluate_one("CS-B", csms.server.connections["CS-B"])
    assert moved
    assert station.config.get("MeterValueSampleInterval") == "0"
    assert station.config.get("HeartbeatInterval") == "86400"
    log = await csms.server.store.run(lambda: list(
        PolicyChange.select().where(PolicyChange.station == "CS-B").order_by(PolicyChange.id)))
    # The level applied on connecting (it sent settings), and the move.
    assert sorted((c.from_level, c.to_level) for c in log) == [("normal", "minimal"),
                                                               ("normal", "normal")]
    change = next(c for c in log if c.to_level == "minimal")
    assert '"outcome": "sent", "reason": "level minimal", "status": "Accepted"' in (
        change.settings)
    row = await csms.server.store.run(lambda: StationBudget.get(StationBudget.station == "CS-B"))
    assert row.level == "minimal"
    station.shut_down()

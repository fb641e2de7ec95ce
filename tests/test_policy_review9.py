"""Review of issue 9: the budget policy's ownership, boot intervals, firmware changes and
refusals, against the in-process server on a real SQLite file with raw stations over real
sockets that answer each setting as a stock charger would (tests/test_policy_learns.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
import trio

from lite_csms import config
from lite_csms.budget import explain, memory
from lite_csms.cli import budget_text, main
from lite_csms.db.database import open_database
from lite_csms.db.models import SettingRefusal, Station, TrafficCounter
from lite_csms.ocppj import timestamps
from tests.conftest import CsmsInProcess, run_cli, start_in_process
from tests.test_admin_api import http, new_key
from tests.test_before_boot import calls_until_quiet, connect
from tests.test_policy_learns import PickyStation, gone, keepidle, session, v2_sent, v16_sent
from tests.test_server import BOOT_16, BOOT_201, register

HB16, HB2 = "HeartbeatInterval", "OCPPCommCtrlr.HeartbeatInterval"


async def config_set(csms: CsmsInProcess, api_key: str, station: PickyStation,
                     station_id: str, key: str, value: str) -> dict[str, Any]:
    """`config set ID KEY VALUE` through the admin API; the station answers the CALL."""
    answer: dict[str, Any] = {}

    async def post() -> None:
        answer["http"] = await http(csms, "POST", f"/stations/{station_id}/commands", api_key,
                                    {"operation": "set-config",
                                     "args": {"key": key, "value": value}})

    async with trio.open_nursery() as inner:
        inner.start_soon(post)
        call = await station.next_message()
        assert call[2] in ("ChangeConfiguration", "SetVariables"), call
        await station.answer(call)
    return answer


async def state_of(csms: CsmsInProcess, station_id: str) -> dict[str, Any]:
    return await csms.server.store.run(partial(
        explain.explanation, station_id, csms.server.settings, timestamps.now_utc()))


@pytest.mark.parametrize(("protocol", "boot", "key"), [
    ("ocpp1.6", BOOT_16, HB16), ("ocpp2.0.1", BOOT_201, HB2)])
async def test_a_refused_operator_value_is_not_forced_through_the_boot_answer(
        nursery, tmp_path, protocol, boot, key) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    await register(csms, "OPR-R")
    api_key = await new_key(csms)
    refused = {(key, "5"): "Rejected", (key, "0"): "Rejected"}
    first = [2, "b", "BootNotification", boot]
    station, answer, _ = await session(csms, "OPR-R", protocol, refused, first)
    level_interval = answer["interval"]
    assert level_interval == 21600
    for value in ("5", "0"):
        await config_set(csms, api_key, station, "OPR-R", key, value)
        # A boot on the same connection, and one on the next: the level's interval both times.
        await station.send([2, f"again{value}", "BootNotification", boot])
        again = await station.next_message()
        assert again[2]["interval"] == level_interval
        await gone(csms, station, "OPR-R")
        station, answer, _ = await session(csms, "OPR-R", protocol, refused, first)
        assert answer["interval"] == level_interval
        state = await state_of(csms, "OPR-R")
        # explain and the wire agree, the key stays with the policy, and the refusal shows.
        assert state["policy"]["heartbeat_interval"] == answer["interval"]
        assert state["policy"]["operator_owned"] == []
        decided = {s["key"]: s for s in state["policy"]["settings"]}
        assert decided[key]["outcome"] != "yielded"
        shown = {(r["key"], r["value"]): r for r in state["policy"]["refused"]}
        assert shown[(key, value)]["status"] == "Rejected"
        assert shown[(key, value)]["requested_by"].startswith("api:")
    await gone(csms, station, "OPR-R")


async def test_an_accepted_operator_value_is_answered_at_the_next_boot_on_the_same_link(
        nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    await register(csms, "OPR-A")
    api_key = await new_key(csms)
    first = [2, "b", "BootNotification", BOOT_16]
    station, _, _ = await session(csms, "OPR-A", "ocpp1.6", {}, first)
    await config_set(csms, api_key, station, "OPR-A", HB16, "900")
    await station.send([2, "b2", "BootNotification", BOOT_16])
    again = await station.next_message()
    assert again[2]["interval"] == 900
    state = await state_of(csms, "OPR-A")
    assert state["policy"]["heartbeat_interval"] == 900
    assert [o["key"] for o in state["policy"]["operator_owned"]] == [HB16]
    await gone(csms, station, "OPR-A")


async def boot_once(csms: CsmsInProcess, station_id: str, protocol: str, boot: dict[str, Any]
                    ) -> dict[str, Any]:
    station, answer, _ = await session(csms, station_id, protocol, {},
                                       [2, "b", "BootNotification", boot])
    await gone(csms, station, station_id)
    return answer


@pytest.mark.parametrize(("protocol", "boot"), [("ocpp1.6", BOOT_16),
                                                ("ocpp2.0.1", BOOT_201)])
async def test_pending_and_rejected_boots_retry_at_the_boot_retry_interval(
        nursery, tmp_path, protocol, boot) -> None:
    # An explicit heartbeat too: it is the Accepted answer's, not the retry's.
    csms = await start_in_process(nursery, tmp_path, budget_policy=True, auto_register=True,
                                  heartbeat_interval=60)
    await register(csms, "HELD", registration="pending")
    await register(csms, "BANNED", registration="rejected")
    await register(csms, "OK", registration="accepted")
    for station_id, status in (("HELD", "Pending"), ("BANNED", "Rejected"),
                               ("NEWCOMER", "Pending")):  # the last one is auto-registered
        answer = await boot_once(csms, station_id, protocol, boot)
        assert (answer["status"], answer["interval"]) == (status, 900)
    answer = await boot_once(csms, "OK", protocol, boot)
    assert (answer["status"], answer["interval"]) == ("Accepted", 60)


async def test_boot_retry_interval_is_a_setting_of_its_own(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True,
                                  boot_retry_interval=120)
    await register(csms, "HELD", registration="pending")
    await register(csms, "OK", registration="accepted")
    answer = await boot_once(csms, "HELD", "ocpp1.6", BOOT_16)
    assert (answer["status"], answer["interval"]) == ("Pending", 120)
    answer = await boot_once(csms, "OK", "ocpp1.6", BOOT_16)
    assert (answer["status"], answer["interval"]) == ("Accepted", 21600)  # the policy's


def test_boot_retry_interval_from_file_environment_and_flag(tmp_path) -> None:
    assert config.load(environ={}).boot_retry_interval == 900
    path = tmp_path / "csms.toml"
    path.write_text("boot_retry_interval = 300\n")
    assert config.load(path, environ={}).boot_retry_interval == 300
    env = config.load(environ={"LITE_CSMS_BOOT_RETRY_INTERVAL": "60"})
    assert env.boot_retry_interval == 60
    args = main.build_parser().parse_args(["serve", "--boot-retry-interval", "45"])
    assert main._settings(args).boot_retry_interval == 45


@pytest.mark.parametrize(("protocol", "boot", "sent_of"), [
    ("ocpp1.6", BOOT_16, v16_sent), ("ocpp2.0.1", BOOT_201, v2_sent)])
async def test_a_firmware_change_sends_every_setting_again_once(
        nursery, tmp_path, protocol, boot, sent_of) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    await register(csms, "FW-1")

    def booting(firmware: str) -> list[Any]:
        if protocol == "ocpp1.6":
            return [2, "b", "BootNotification", {**boot, "firmwareVersion": firmware}]
        return [2, "b", "BootNotification", {**boot, "chargingStation": {
            **boot["chargingStation"], "firmwareVersion": firmware}}]

    station, _, calls = await session(csms, "FW-1", protocol, {}, booting("1.0"))
    first = sorted(sent_of(calls))
    assert first  # a charger that accepts everything now holds the whole level
    await gone(csms, station, "FW-1")
    station, _, calls = await session(csms, "FW-1", protocol, {}, booting("1.0"))
    assert calls == []
    await gone(csms, station, "FW-1")
    # The update reset its configuration: every "already held" setting goes out once more.
    station, _, calls = await session(csms, "FW-1", protocol, {}, booting("2.0"))
    assert sorted(sent_of(calls)) == first
    changes = await csms.server.store.run(partial(explain.changes, "FW-1"))
    reasons = [s["reason"] for s in changes[-1]["settings"] if s["outcome"] == "sent"]
    assert len(reasons) == len(first)
    assert all(r.startswith("firmware changed from 1.0 to 2.0") for r in reasons), reasons
    await gone(csms, station, "FW-1")
    station, _, calls = await session(csms, "FW-1", protocol, {}, booting("2.0"))
    assert calls == []  # once: the answers under 2.0 are held again
    await gone(csms, station, "FW-1")


async def test_the_chargers_fallback_ping_sets_the_dead_peer_keepalive(nursery, tmp_path
                                                                      ) -> None:
    """The charger refuses ping 0 but already holds the fallback (540 = 0.9 x 600): its own
    ping keeps the NAT mapping, so the server's TCP keepalive goes back to the dead-peer
    value (nat_timeout), not 540 s on top of the ping."""
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    await register(csms, "KA-1")
    api_key = await new_key(csms)
    first = [2, "b", "BootNotification", BOOT_16]
    station, _, _ = await session(csms, "KA-1", "ocpp1.6", {}, first)
    assert keepidle(csms, "KA-1") == 540  # ping off: the server's probes hold the NAT
    # An operator sets the charger's ping to 540, then hands the key back to the policy.
    await config_set(csms, api_key, station, "KA-1", "WebSocketPingInterval", "540")
    await csms.server.store.run(partial(memory.release, "KA-1", None))
    await gone(csms, station, "KA-1")
    # Now the charger refuses 0: the policy tries it, and the 540 it holds is the fallback.
    refused = {("WebSocketPingInterval", "0"): "Rejected"}
    station, _, calls = await session(csms, "KA-1", "ocpp1.6", refused, first)
    assert v16_sent(calls) == [("WebSocketPingInterval", "0")]
    assert keepidle(csms, "KA-1") == 600
    changes = await csms.server.store.run(partial(explain.changes, "KA-1"))
    ping = [(s["outcome"], s["value"]) for s in changes[-1]["settings"]
            if s["key"] == "WebSocketPingInterval"]
    assert ping == [("sent", "0"), ("skipped", "540")]
    await gone(csms, station, "KA-1")


class NoConfigStation(PickyStation):
    """A charger without ChangeConfiguration: every one gets CALLERROR NotImplemented."""

    async def answer(self, call: list[Any]) -> None:
        if call[2] == "ChangeConfiguration":
            await self.send([4, call[1], "NotImplemented", "not here", {}])
        else:
            await super().answer(call)


async def test_a_key_the_charger_does_not_know_is_not_sent_with_another_value(
        nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True, budget_cap=500_000)
    await register(csms, "KEY-1")
    unknown = {("MinimumStatusDuration", v): "NotSupported" for v in ("0", "60", "300")}
    station, _, calls = await session(csms, "KEY-1", "ocpp1.6", unknown,
                                      [2, "b", "BootNotification", BOOT_16])
    assert ("MinimumStatusDuration", "0") in v16_sent(calls)
    # 450 kB this hour on a 500 kB cap: the station moves to minimal (MinimumStatusDuration
    # 300 there), while connected.
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    await csms.server.store.run(partial(
        TrafficCounter.create, station="KEY-1", period="hour", period_start=hour,
        action="MeterValues", direction="in", layer="ip", bytes=450_000))
    moved_calls: list[list[Any]] = []
    async with trio.open_nursery() as inner:
        inner.start_soon(answer_all, station, moved_calls)
        assert await csms.server.policy.evaluate_one("KEY-1", csms.server.connections["KEY-1"])
        inner.cancel_scope.cancel()
    sent = v16_sent(moved_calls)
    assert sent and all(key != "MinimumStatusDuration" for key, _ in sent), sent
    state = await state_of(csms, "KEY-1")
    decided = {d["key"]: d for d in state["policy"]["settings"]}
    assert decided["MinimumStatusDuration"]["outcome"] == "skipped"
    assert "key unknown to the charger (NotSupported" in decided["MinimumStatusDuration"][
        "reason"]
    await gone(csms, station, "KEY-1")


async def answer_all(station: PickyStation, calls: list[list[Any]]) -> None:
    while True:
        call = await station.next_message(timeout=30)
        calls.append(call)
        await station.answer(call)


async def test_a_charger_without_the_configuration_action_gets_one_call(nursery, tmp_path
                                                                        ) -> None:
    csms = await start_in_process(nursery, tmp_path, budget_policy=True)
    await register(csms, "NOCFG")

    async def connection(firmware: str) -> list[list[Any]]:
        raw = await connect(csms, "NOCFG", "ocpp1.6")
        station = NoConfigStation(raw.stream, {})
        await station.send([2, "b", "BootNotification", {**BOOT_16,
                                                         "firmwareVersion": firmware}])
        assert (await station.next_message())[0] == 3
        calls = await calls_until_quiet(station)
        await gone(csms, station, "NOCFG")
        return calls

    assert len(await connection("1.0")) == 1
    assert await connection("1.0") == []
    state = await state_of(csms, "NOCFG")
    reasons = {d["reason"] for d in state["policy"]["settings"]}
    assert len(reasons) == 1 and reasons.pop().startswith(
        "ChangeConfiguration unsupported: the charger answered it with CALLERROR "
        "NotImplemented under firmware 1.0")
    text = "\n".join(budget_text.plan_lines(state["policy"]))
    assert "refused: the action ChangeConfiguration itself (CALLERROR NotImplemented)" in text
    assert len(await connection("1.1")) == 1  # new firmware: tried once more


async def test_cli_explain_shows_what_the_running_server_answers(nursery, tmp_path) -> None:
    # As `serve --heartbeat-interval 60` loads it; the CLI below sees neither flag.
    csms = await start_in_process(nursery, tmp_path, budget_policy=True, heartbeat_interval=60,
                                  boot_retry_interval=120)
    await register(csms, "CLI-1")
    station, answer, _ = await session(csms, "CLI-1", "ocpp1.6", {},
                                       [2, "b", "BootNotification", BOOT_16])
    assert answer["interval"] == 60
    await gone(csms, station, "CLI-1")
    out = await trio.to_thread.run_sync(partial(
        run_cli, "budget", "explain", "CLI-1", "--database", str(csms.database)))
    assert out.returncode == 0, out.stderr
    assert "Server settings: as the running server was started (" in out.stdout
    assert "heartbeat_interval 60 (explicit), boot_retry_interval 120" in out.stdout
    assert "BootNotification interval 60," in out.stdout
    data = await trio.to_thread.run_sync(partial(
        run_cli, "budget", "explain", "CLI-1", "--json", "--database", str(csms.database)))
    explained = json.loads(data.stdout)
    assert explained["policy"]["heartbeat_interval"] == 60
    assert explained["settings_source"]["source"] == "server"


def test_cli_explain_without_a_server_says_it_shows_the_config_view(tmp_path) -> None:
    database = tmp_path / "quiet.sqlite3"
    db = open_database(database)
    try:
        Station.create(id="CLI-2", protocol="ocpp1.6")
    finally:
        db.close()
    out = run_cli("budget", "explain", "CLI-2", "--database", str(database),
                  env={"LITE_CSMS_HEARTBEAT_INTERVAL": "77"})
    assert out.returncode == 0, out.stderr
    assert "Server settings: the config file/environment view (heartbeat_interval 77 " \
           "(explicit)" in out.stdout
    assert "BootNotification interval 77," in out.stdout


def test_upgrade_v4_gives_old_refusals_their_scope(tmp_path) -> None:
    db = open_database(tmp_path / "old.sqlite3")
    try:
        Station.create(id="OLD", firmware_version="1.0")
        for value, status in (("0", "NotSupported"), ("5", "Rejected")):
            SettingRefusal.create(station="OLD", key=f"K{value}", value=value, status=status,
                                  firmware_version="1.0")
        # As the column's default gives an earlier release's rows: all per value.
        assert {r.scope for r in SettingRefusal.select()} == {"value"}
        memory.upgrade_v4(db)
        memory.upgrade_v4(db)  # idempotent
        scopes = {r.key: r.scope for r in SettingRefusal.select()}
        assert scopes == {"K0": "key", "K5": "value"}
    finally:
        db.close()

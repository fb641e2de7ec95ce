"""`lite-csms remote` and `config` through the admin API, against a simulated 1.6 charger."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, start_csms_process, stop_csms_process


def wait_for(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# The CLI is one path for every version; each operation's per-version CALLs are checked
# through the API (test_management_ops, test_interop_remote), so each CLI flow runs once.
@pytest.mark.parametrize("protocol", ["ocpp1.6"])
def test_remote_start_stop_and_config_from_the_cli(tmp_path: Path, protocol: str) -> None:
    csms = start_csms_process(tmp_path)
    admin_port = csms.admin_port
    simulator = None
    try:
        assert csms.cli("station", "add", "SIM-R", "--no-password").returncode == 0
        assert csms.cli("token", "add", "GUEST-42").returncode == 0
        key_line = csms.cli("apikey", "add", "owner").stdout.splitlines()[0]
        env = {**os.environ, "LITE_CSMS_API_KEY": key_line.split(": ", 1)[1],
               "LITE_CSMS_ADMIN_PORT": str(admin_port)}
        db = sqlite3.connect(csms.database)
        offline = run_cli("remote", "reset", "SIM-R", env=env)
        assert offline.returncode == 2 and "never connected" in offline.stderr
        simulator = subprocess.Popen(
            [sys.executable, str(REPO / "tools" / "station_sim.py"), "--url",
             f"ws://127.0.0.1:{csms.port}/ocpp", "--id", "SIM-R", "--protocol", protocol,
             "--scenario", "boot", "--linger", "inf", "--time-scale", "20"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: db.execute("SELECT count(*) FROM connector").fetchone()[0] == 1)
        started = run_cli("remote", "start", "SIM-R", "--connector", "1", "--token",
                          "GUEST-42", env=env)
        assert started.returncode == 0, started.stderr
        assert '"status": "Accepted"' in started.stdout
        open_tx = 'SELECT id FROM "transaction" WHERE stopped_at IS NULL'
        wait_for(lambda: db.execute(open_tx).fetchone() is not None)
        tx_id = db.execute(open_tx).fetchone()[0]
        stopped = run_cli("remote", "stop", "SIM-R", "--transaction", str(tx_id), env=env)
        assert stopped.returncode == 0 and "Accepted" in stopped.stdout
        wait_for(lambda: db.execute(open_tx).fetchone() is None)
        key = "HeartbeatInterval" if protocol == "ocpp1.6" else "OCPPCommCtrlr.HeartbeatInterval"
        assert run_cli("config", "set", "SIM-R", key, "900", env=env).returncode == 0
        got = run_cli("config", "get", "SIM-R", key, env=env)
        assert got.returncode == 0 and "900" in got.stdout
        no_key = run_cli("remote", "reset", "SIM-R",
                         env={**env, "LITE_CSMS_API_KEY": "lcs_wrong"})
        assert no_key.returncode == 2 and "API key" in no_key.stderr
    finally:
        if simulator is not None:
            simulator.terminate()
            simulator.wait(timeout=10)
        stop_csms_process(csms)


@pytest.mark.parametrize("protocol", ["ocpp2.0.1"])
def test_limits_firmware_and_reports_from_the_cli(tmp_path: Path, protocol: str) -> None:
    csms = start_csms_process(tmp_path)
    admin_port = csms.admin_port
    simulator = None
    try:
        assert csms.cli("station", "add", "SIM-M", "--no-password").returncode == 0
        key_line = csms.cli("apikey", "add", "owner").stdout.splitlines()[0]
        env = {**os.environ, "LITE_CSMS_API_KEY": key_line.split(": ", 1)[1],
               "LITE_CSMS_ADMIN_PORT": str(admin_port)}
        db = sqlite3.connect(csms.database)
        simulator = subprocess.Popen(
            [sys.executable, str(REPO / "tools" / "station_sim.py"), "--url",
             f"ws://127.0.0.1:{csms.port}/ocpp", "--id", "SIM-M", "--protocol", protocol,
             "--scenario", "boot", "--linger", "inf", "--time-scale", "50"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: db.execute("SELECT count(*) FROM connector").fetchone()[0] == 1)

        def remote(*args: str) -> str:
            done = run_cli("remote", *args, env=env)
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        limited = remote("set-limit", "SIM-M", "--connector", "1", "--limit", "20")
        assert "SetChargingProfile" in limited and "Accepted" in limited
        assert db.execute("SELECT evse_id, purpose FROM charging_profile").fetchall() == [
            (1, "TxDefaultProfile")]
        schedule = json.loads(remote("composite-schedule", "SIM-M", "--connector", "1",
                                     "--unit", "A", "--json"))
        assert schedule["action"] == "GetCompositeSchedule"
        assert "20" in json.dumps(schedule["result"])
        assert "Accepted" in remote("clear-limit", "SIM-M", "--connector", "1")
        assert db.execute("SELECT count(*) FROM charging_profile").fetchone() == (0,)
        remote("update-firmware", "SIM-M", "https://fw.example/3.bin")
        remote("get-diagnostics", "SIM-M", "ftp://logs.example/")
        final = "SELECT status FROM maintenance_request ORDER BY id"
        wait_for(lambda: db.execute(final).fetchall() == [("Installed",), ("Uploaded",)])
        if protocol == "ocpp1.6":
            refused = run_cli("remote", "base-report", "SIM-M", env=env)
            assert refused.returncode == 2 and "2.x" in refused.stderr
            return
        assert "Accepted" in remote("base-report", "SIM-M", "--report",
                                    "ConfigurationInventory")
        assert "Accepted" in remote("get-report", "SIM-M", "EVSE.AvailabilityState")
        wait_for(lambda: db.execute("SELECT count(*) FROM device_report WHERE status = "
                                    "'complete'").fetchone() == (2,))
        # The report's Actual values are the station's settings now, as `config get` shows.
        assert db.execute("SELECT value FROM station_setting WHERE key = "
                          "'OCPPCommCtrlr.HeartbeatInterval'").fetchall() == [("300",)]
        assert db.execute("SELECT value FROM device_variable WHERE component = 'EVSE'"
                          ).fetchall() == [("Available",)]
        status = json.loads(remote("transaction-status", "SIM-M", "--json"))
        assert status["result"] == {"messagesInQueue": False}
    finally:
        if simulator is not None:
            simulator.terminate()
            simulator.wait(timeout=10)
        stop_csms_process(csms)


async def test_reset_one_evse_and_schedules_from_the_cli(csms) -> None:
    """`remote reset --evse` and `set-limit --kind/--recurrency/--start/--periods`, through
    the admin API of a server in this trio run, to raw 1.6 and 2.0.1 stations."""
    import trio
    from trio_websocket import open_websocket_url

    from tests.test_admin_api import answer_calls, new_key
    from tests.test_server import BOOT_16, BOOT_201, query, register, rpc

    key = await new_key(csms)
    env = {**os.environ, "LITE_CSMS_API_KEY": key,
           "LITE_CSMS_ADMIN_PORT": str(csms.server.admin_port)}

    async def remote(*args: str) -> subprocess.CompletedProcess[str]:
        return await trio.to_thread.run_sync(lambda: run_cli("remote", *args, env=env))

    schedule = ("--kind", "Recurring", "--recurrency", "Daily", "--start",
                "2026-01-01T07:00Z", "--periods", "0:16,3600:10")
    answers = {"Reset": {"status": "Accepted"}, "SetChargingProfile": {"status": "Accepted"}}
    for station, protocol, boot in (("CLI-E16", "ocpp1.6", BOOT_16),
                                    ("CLI-E201", "ocpp2.0.1", BOOT_201)):
        await register(csms, station)
        async with open_websocket_url(csms.url(station), subprotocols=[protocol]) as ws:
            await rpc(ws, [2, "1", "BootNotification", boot])
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_calls, ws, answers)
                reset = await remote("reset", station, "--evse", "2")
                limited = await remote("set-limit", station, "--connector", "1", *schedule)
                assert limited.returncode == 0, limited.stderr
                bad = await remote("set-limit", station, "--periods", "0:16,later:10")
                assert bad.returncode == 2 and "SECONDS:LIMIT" in bad.stderr
                both = await remote("set-limit", station, "--limit", "6", "--periods", "0:6")
                assert both.returncode == 2
                no_start = await remote("set-limit", station, "--kind", "Recurring",
                                        "--recurrency", "Weekly", "--limit", "6")
                assert no_start.returncode == 2 and "needs a start" in no_start.stderr
                nursery.cancel_scope.cancel()
        if protocol == "ocpp1.6":
            assert reset.returncode == 2 and "cannot target one EVSE" in reset.stderr
        else:
            assert reset.returncode == 0 and "Reset" in reset.stdout
    sent = {(station, action): json.loads(payload) for station, action, payload in query(
        csms, "SELECT station_id, action, payload FROM command")}
    assert ("CLI-E16", "Reset") not in sent
    assert sent[("CLI-E201", "Reset")] == {"type": "OnIdle", "evseId": 2}
    v16 = sent[("CLI-E16", "SetChargingProfile")]["csChargingProfiles"]
    v201 = sent[("CLI-E201", "SetChargingProfile")]["chargingProfile"]
    for profile, schedule_ in ((v16, v16["chargingSchedule"]),
                               (v201, v201["chargingSchedule"][0])):
        assert (profile["chargingProfileKind"], profile["recurrencyKind"]) == (
            "Recurring", "Daily")
        assert schedule_["startSchedule"] == "2026-01-01T07:00:00Z"
        assert [(p["startPeriod"], p["limit"]) for p in schedule_[
            "chargingSchedulePeriod"]] == [(0, 16), (3600, 10)]

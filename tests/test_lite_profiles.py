"""Issue 10, done-when: the station simulator on a lite subprotocol runs a reference profile
against the real server (TLS, SQLite file) with all billing data intact.

tools/traffic_sim.py --lite compares the station's own record of every transaction (meter
start, acknowledged stop, energy) with the rows the server stored. Half a simulated day of
home-share at a high time scale: one charging session and two link drops per version.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import traffic_sim


def _run(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "traffic_sim.py"), "--json", "--lite", *args],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)[0]


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"])
def test_home_share_on_the_lite_link_keeps_billing_intact(protocol: str) -> None:
    result = _run("--profile", "home-share", "--protocol", protocol, "--policy", "on",
                  "--days", "0.5", "--time-scale", "20000")
    # Every connection, reconnects included, ran on the lite subprotocol.
    assert result["subprotocols"] == {f"{protocol}.lite1": result["connections"]}
    assert result["connections"] >= 1 + result["drops"] >= 2
    billing = result["billing"]
    assert billing["problems"] == [] and billing["intact"]
    assert billing["transactions"] == billing["stopped"] == result["sessions"] >= 1
    assert billing["stored_energy_wh"] == billing["energy_wh"] > 0
    # The server's accounting counted the lite frames the station sent and received.
    for layer, difference in result["agreement"].items():
        assert difference <= 2.0, (layer, difference)
    assert {"TransactionEvent", "StartTransaction"} & set(result["server_ip_by_action"])


def test_billing_check_finds_each_kind_of_damage() -> None:
    delivered = [
        {"id": "a", "meter_start_wh": 100, "meter_stop_wh": 600, "energy_wh": 500,
         "stop_reason": "Local"},
        {"id": 7, "meter_start_wh": 0, "meter_stop_wh": None, "energy_wh": None,
         "stop_reason": None},
    ]
    stored = [
        {"id": 1, "station_tx_id": "a", "meter_start_wh": 100.0, "meter_stop_wh": 600.0,
         "energy_wh": 500.0, "stopped_at": "2026-05-01 12:00:00"},
        {"id": 7, "station_tx_id": None, "meter_start_wh": 0.0, "meter_stop_wh": None,
         "energy_wh": None, "stopped_at": None},
    ]
    assert traffic_sim.billing_check(delivered, stored)["intact"]
    damaged = [dict(stored[0], meter_stop_wh=590.0, energy_wh=490.0), stored[1],
               {"id": 9, "station_tx_id": None, "meter_start_wh": 5.0, "meter_stop_wh": None,
                "energy_wh": None, "stopped_at": None}]
    problems = traffic_sim.billing_check(delivered, damaged)["problems"]
    assert len(problems) == 3
    assert any("meter_stop_wh" in p for p in problems)
    assert any("energy_wh" in p for p in problems)
    assert any(p.startswith("transaction 9") for p in problems)
    unstopped = [dict(stored[0], stopped_at=None), stored[1]]
    assert "not stored" in traffic_sim.billing_check(delivered, unstopped)["problems"][0]
    assert traffic_sim.billing_check(delivered, stored[1:])["problems"] == [
        "transaction a: not stored"]

"""tools/traffic_sim.py on a short profile: the station's and the server's counts agree."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def _run(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "traffic_sim.py"), "--json", *args],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)[0]


def test_short_home_share_agrees_within_two_percent():
    # Six simulated hours: four link drops' worth of reconnects and one charging session.
    result = _run("--profile", "home-share", "--protocol", "ocpp1.6", "--policy", "off",
                  "--days", "0.5")
    assert result["sessions"] == 1 and result["drops"] == 2
    # A loaded machine can stall the real-time server past the NAT timeout (a few ms of real
    # time at this acceleration): each such expiry is one more reconnect, counted at both ends.
    assert result["connections"] == 1 + result["drops"] + result["nat_expiries"]
    assert result["tls_resumed"] == result["connections"] - 1
    for layer, difference in result["agreement"].items():
        assert difference <= 2.0, (layer, difference)
    server = result["server"]
    for direction in ("in", "out"):
        assert (server["ip"][direction] > server["tls"][direction] > server["ws"][direction]
                > server["payload"][direction] > 0)
    actions = result["server_ip_by_action"]
    assert {"StartTransaction", "MeterValues", "StopTransaction", "(tls-handshake)"} <= set(actions)


def test_policy_reconfigures_a_2x_station_and_cuts_its_bytes():
    stock = _run("--profile", "home-share", "--protocol", "ocpp2.0.1", "--policy", "off",
                 "--days", "0.5")
    lean = _run("--profile", "home-share", "--protocol", "ocpp2.0.1", "--policy", "on",
                "--days", "0.5")
    assert "SetVariables" in lean["server_ip_by_action"]
    assert "SetVariables" not in stock["server_ip_by_action"]
    assert lean["month_ip_bytes"] < stock["month_ip_bytes"] / 2
    for difference in lean["agreement"].values():
        assert difference <= 2.0

"""The admin API's budget resources over real HTTP, on counter rows written directly."""

from __future__ import annotations

import json

from lite_csms.db.models import PolicyChange
from tests.conftest import CsmsInProcess
from tests.test_admin_api import http, new_key
from tests.test_cli_budget import AT, seed, utc


async def test_budget_of_all_stations_and_one(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    await csms.server.store.run(seed)
    assert (await http(csms, "GET", "/budget"))[0] == 401
    status, listing = await http(csms, "GET", f"/budget?at={AT}", key)
    assert status == 200
    by_id = {s["station_id"]: s for s in listing}
    assert (by_id["CS-A"]["used"], by_id["CS-A"]["projected"]) == (14_500_000, 31_000_000)
    assert by_id["CS-A"]["status"] == "warning" and by_id["CS-A"]["layer"] == "ip"
    assert (by_id["CS-C"]["used"], by_id["CS-C"]["status"]) == (0, "ok")
    status, feb = await http(csms, "GET", "/stations/CS-A/budget?month=2026-02&by=day", key)
    assert status == 200 and feb["used"] == 5_000_000 and feb["projected"] == 5_000_000
    assert len(feb["breakdown"]) == 28 and feb["budget"]["cap_bytes"] == 25_000_000
    status, layers = await http(csms, "GET", f"/stations/CS-A/budget?at={AT}&by=layer", key)
    assert [r["layer"] for r in layers["breakdown"]] == ["payload", "ws", "tls", "ip"]
    assert layers["breakdown"][-1]["total"] == 14_500_000
    status, conns = await http(csms, "GET",
                               "/stations/CS-A/budget?month=2026-03&by=connection", key)
    assert [c["protocol"] for c in conns["breakdown"]] == ["ocpp2.0.1"]
    for query, message in [("by=week", "by must be one of"), ("month=2026-3x", "YYYY-MM"),
                           ("at=yesterday", "ISO 8601")]:
        status, body = await http(csms, "GET", f"/stations/CS-A/budget?{query}", key)
        assert status == 400 and message in body["error"]
    assert await http(csms, "GET", "/stations/NOPE/budget", key) == (
        404, {"error": "not found"})


async def test_put_budget_settings(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    await csms.server.store.run(seed)
    status, budget = await http(csms, "PUT", "/stations/CS-B/budget", key,
                                {"cap": "10MB", "cycle_day": 10, "nat_timeout": 300,
                                 "warn_ratio": 0.75, "policy": "off"})
    assert status == 200
    assert (budget["cap_bytes"], budget["cycle_day"], budget["nat_timeout"]) == (
        10_000_000, 10, 300)
    assert budget["warn_ratio"] == 0.75 and budget["policy_enabled"] is False
    status, usage = await http(csms, "GET", f"/stations/CS-B/budget?at={AT}", key)
    assert status == 200 and usage["status"] == "over"
    assert usage["cycle_start"].startswith("2026-03-10")
    assert (await http(csms, "PUT", "/stations/CS-B/budget", key, {"cap": 2_000_000}))[1][
        "cap_bytes"] == 2_000_000
    for body, message in [({"cap": "lots"}, "cap"), ({"cycle_day": 29}, "1 to 28"),
                          ({"capp": "1MB"}, "unknown budget setting"),
                          ({"policy": "maybe"}, "on or off"), ({"cap": True}, "cap")]:
        status, error = await http(csms, "PUT", "/stations/CS-B/budget", key, body)
        assert status == 422 and message in error["error"], body
    status, error = await http(csms, "PUT", "/stations/CS-B/budget", key, [1])
    assert status == 400
    assert (await http(csms, "PUT", "/stations/NOPE/budget", key, {"cap": "1MB"}))[0] == 404
    status, cleared = await http(csms, "PUT", "/stations/CS-B/budget", key, {"clear": True})
    assert cleared["overrides"] == [] and cleared["cap_bytes"] == 25_000_000


async def test_explain(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    await csms.server.store.run(seed)
    status, quiet = await http(csms, "GET", f"/stations/CS-A/budget/explain?at={AT}", key)
    assert status == 200 and quiet["changes"] == [] and quiet["usage"]["used"] == 14_500_000
    await csms.server.store.run(lambda: PolicyChange.create(
        station="CS-A", at=utc(2026, 3, 12, 8), from_level="normal", to_level="saver",
        reason="projected over the cap",
        settings=json.dumps([{"key": "HeartbeatInterval", "value": "3600",
                              "status": "Accepted"}])))
    status, moved = await http(csms, "GET", "/stations/CS-A/budget/explain", key)
    assert [(c["from_level"], c["to_level"]) for c in moved["changes"]] == [
        ("normal", "saver")]
    assert moved["changes"][0]["settings"][0]["status"] == "Accepted"
    assert (await http(csms, "GET", "/stations/NOPE/budget/explain", key))[0] == 404


async def test_openapi_documents_the_budget(csms: CsmsInProcess) -> None:
    status, doc = await http(csms, "GET", "/openapi.json")
    assert status == 200
    assert {"/budget", "/stations/{id}/budget", "/stations/{id}/budget/explain"} <= set(
        doc["paths"])
    assert set(doc["paths"]["/stations/{id}/budget"]) == {"get", "put"}
    assert "cap" in doc["components"]["schemas"]["BudgetSettings"]["properties"]

"""Sharing through the operator's tools: the CLI (in-process, on a real SQLite file) and
the admin API (a real server, real HTTP), and the narrow interface the API uses."""

from __future__ import annotations

import ast
import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
from trio_websocket import open_websocket_url

from lite_csms.cli import main as cli_main
from lite_csms.cli.main import main
from lite_csms.control import OperationRefused, StationControl
from lite_csms.db.database import open_database
from lite_csms.db.models import Transaction
from lite_csms.handlers import transactions
from lite_csms.net.control import ServerControl
from lite_csms.ocppj.timestamps import format_utc
from tests.conftest import REPO, CsmsInProcess
from tests.test_admin_api import http, new_key
from tests.test_server import BOOT_16, register, rpc


def cli(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--database", str(db)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_owner_tariff_driver_qr_and_statement(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Built once: building the whole parser costs 0.25 s, and parsing leaves it unchanged.
    monkeypatch.setattr(cli_main, "build_parser", functools.cache(cli_main.build_parser))
    db = tmp_path / "cli.sqlite3"
    assert cli(capsys, db, "station", "add", "CS-1")[0] == 0
    code, out, _ = cli(capsys, db, "owner", "add", "Wanjiru K", "--phone", "+254 712 345678")
    assert code == 0 and "owner 1 added" in out
    password = out.split("password: ")[1].split()[0]
    assert len(password) >= 16
    code, out, err = cli(capsys, db, "owner", "add", "Again", "--phone", "+254712345678")
    assert code == 2 and "already has" in err
    assert cli(capsys, db, "owner", "set-password", "+254712345678",
               "--password", "tiny")[0] == 2
    code, out, _ = cli(capsys, db, "owner", "set-password", "1", "--password", "long-enough")
    assert code == 0 and out.strip() == "password set"
    code, out, _ = cli(capsys, db, "station", "set-owner", "CS-1", "+254712345678")
    assert code == 0 and "owner 1" in out
    assert cli(capsys, db, "station", "set-owner", "CS-1", "42")[0] == 2
    code, out, _ = cli(capsys, db, "tariff", "set", "CS-1", "--per-kwh", "25.50",
                       "--per-hour", "10", "--fee", "50", "--currency", "kes")
    assert code == 0 and "KES 25.50/kWh + KES 10.00/h + KES 50.00 per session" in out
    code, _, err = cli(capsys, db, "tariff", "set", "CS-1", "--per-kwh", "0.001")
    assert code == 2 and "decimals" in err
    code, out, _ = cli(capsys, db, "tariff", "show", "CS-1", "--json")
    assert '"per_kwh": 2550' in out and '"currency": "KES"' in out
    code, _, err = cli(capsys, db, "station", "qr", "CS-1")
    assert code == 2 and "public_url" in err
    monkeypatch.setenv("LITE_CSMS_PUBLIC_URL", "https://charge.example.com/")
    code, out, _ = cli(capsys, db, "station", "qr", "CS-1", "--connector", "2")
    assert code == 0 and out.strip() == "https://charge.example.com/s/CS-1/2"
    code, out, _ = cli(capsys, db, "driver", "add", "--name", "Otieno", "--phone",
                       "+254700000001", "--token", "04aabb")
    assert code == 0 and "04aabb" in out
    code, out, _ = cli(capsys, db, "driver", "list")
    assert "Otieno" in out and "+254700000001" in out and "04aabb" in out
    code, out, _ = cli(capsys, db, "driver", "code", "+254700000001")
    assert code == 0 and out.startswith("code: ") and len(out.split()[1]) == 6
    # A session on CS-1, then the month's statement.
    start = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)
    handle = open_database(db)
    try:
        tx_id = transactions.start_v16("CS-1", 1, "04aabb", 0.0, start, None).transaction_id
        transactions.stop_v16("CS-1", tx_id, 2000.0, start + timedelta(hours=1), "Local",
                              None, [])
        assert Transaction.get_by_id(tx_id).driver_id == 1
    finally:
        handle.close()
    code, out, _ = cli(capsys, db, "statement", "1", "2026-11")
    assert code == 0 and "sessions 1" in out and "KES 111.00" in out  # 51 + 10 + 50
    code, _, err = cli(capsys, db, "statement", "1", "2026-13")
    assert code == 2 and "YYYY-MM" in err


async def test_admin_api_sharing(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    await register(csms, "CS-A")
    status, owner = await http(csms, "POST", "/owners", key,
                               {"name": "Wanjiru", "email": "w@example.com"})
    assert status == 201 and owner["id"] == 1 and len(owner["password"]) >= 16
    assert (await http(csms, "POST", "/owners", key, {"name": "X", "email": "w@example.com"})
            )[0] == 422
    assert (await http(csms, "POST", "/owners", key, {"name": "Y", "phone": "0712"}))[0] == 422
    assert (await http(csms, "PUT", "/owners/1/password", key, {"password": "abc"}))[0] == 422
    assert (await http(csms, "PUT", "/owners/1/password", key,
                       {"password": "a-good-one"}))[0] == 200
    assert (await http(csms, "PUT", "/owners/9/password", key,
                       {"password": "a-good-one"}))[0] == 404
    assert (await http(csms, "PUT", "/stations/CS-A/owner", key, {"owner": 1}))[0] == 200
    assert (await http(csms, "PUT", "/stations/CS-A/owner", key, {"owner": 7}))[0] == 422
    assert (await http(csms, "PUT", "/stations/NOPE/owner", key, {"owner": 1}))[0] == 404
    status, tariff = await http(csms, "PUT", "/stations/CS-A/tariff", key,
                                {"currency": "KES", "per_kwh": "25", "session_fee": 5000})
    assert status == 200 and tariff["tariff"]["per_kwh"] == 2500
    assert tariff["tariff"]["session_fee"] == 5000
    for bad in ({"per_kwh": 1.5}, {"per_kwh": "1.234"}, {"currency": "K"}, {"price": 1}):
        assert (await http(csms, "PUT", "/stations/CS-A/tariff", key, bad))[0] == 422, bad
    status, one = await http(csms, "GET", "/owners/1", key)
    assert status == 200 and one["stations"][0]["tariff"]["currency"] == "KES"
    assert (await http(csms, "GET", "/owners/x", key))[0] == 404
    # A superscript two passes str.isdigit() and int() refuses it: a 404, not a 500.
    assert (await http(csms, "GET", "/owners/%C2%B2", key))[0] == 404
    assert (await http(csms, "GET", "/stations/CS-A/qr", key))[0] == 409  # no public_url
    status, driver = await http(csms, "POST", "/drivers", key,
                                {"name": "Otieno", "phone": "+254700000001",
                                 "tokens": ["TAG-1"]})
    assert status == 201 and driver["tokens"] == ["TAG-1"]
    status, code = await http(csms, "POST", "/drivers/codes", key, {"phone": "+254700000001"})
    assert status == 201 and len(code["code"]) == 6 and code["expires_in"] == 600
    for _ in range(2):
        await http(csms, "POST", "/drivers/codes", key, {"phone": "+254700000001"})
    assert (await http(csms, "POST", "/drivers/codes", key,
                       {"phone": "+254700000001"}))[0] == 429
    # A 1.6 session on the owner's station, charged at the station's price.
    async with open_websocket_url(csms.url("CS-A"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "b", "BootNotification", BOOT_16])
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        started = await rpc(ws, [2, "s", "StartTransaction", {
            "connectorId": 1, "idTag": "TAG-1", "meterStart": 1000,
            "timestamp": format_utc(start)}])
        tx_id = started[2]["transactionId"]
        status, progress = await http(csms, "GET", f"/transactions/{tx_id}/progress?fresh=0",
                                      key)
        assert status == 200 and progress["cost_text"] == "KES 50.00"
        await rpc(ws, [2, "e", "StopTransaction", {
            "transactionId": tx_id, "meterStop": 3000,
            "timestamp": format_utc(start + timedelta(hours=1))}])
    month = start.strftime("%Y-%m")
    status, statement = await http(csms, "GET", f"/owners/1/statements/{month}", key)
    assert status == 200 and statement["revenue"] == {"KES": 2 * 2500 + 5000}
    assert statement["transactions"][0]["id"] == tx_id
    assert (await http(csms, "GET", "/owners/1/statements/2026-00", key))[0] == 400
    status, row = await http(csms, "GET", f"/transactions/{tx_id}", key)
    assert (row["cost"], row["currency"], row["cost_text"]) == (10000, "KES", "KES 100.00")
    status, found = await http(csms, "GET", "/drivers/1", key)
    assert status == 200 and found["sessions"][0]["cost"] == 10000
    status, doc = await http(csms, "GET", "/openapi.json")
    for path in ("/owners", "/owners/{id}/statements/{month}", "/stations/{id}/tariff",
                 "/stations/{id}/qr", "/drivers", "/drivers/codes", "/stations/{id}/owner"):
        assert path in doc["paths"], path
    assert "cost" in doc["components"]["schemas"]["Progress"]["properties"]
    assert (await http(csms, "DELETE", "/stations/CS-A/tariff", key))[1]["tariff"] is None


async def test_admin_app_depends_only_on_the_narrow_interface(csms: CsmsInProcess) -> None:
    control = csms.server.control
    assert isinstance(control, ServerControl)
    # Every method the Protocol names is there, and answers.
    names = [n for n in vars(StationControl) if not n.startswith("_")]
    assert {"store", "reader", "settings", "status", "operate", "remote_start",
            "remote_stop", "progress", "budget_report"} <= set(names)
    for name in names:
        assert hasattr(control, name), name
    await register(csms, "CS-C")
    assert control.status("CS-C") is None and control.online_count() == 0
    assert control.not_ready() is None
    report = await control.budget_report("CS-C")
    assert report is not None and report["budget"]["cap_bytes"] > 0
    assert await control.budget_report("NOPE") is None
    # The admin app imports nothing of the network layer, not even for type checking.
    for module in ("app.py", "sharing_routes.py", "budget_routes.py"):
        tree = ast.parse((REPO / "lite_csms" / "admin" / module).read_text())
        imported = {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names}
        assert not any(m.startswith("lite_csms.net") for m in imported), (module, imported)
    with trio.fail_after(5):
        with pytest.raises(OperationRefused) as refused:
            await control.remote_start("CS-C", 1, "NOBODY", requested_by="test")
        assert refused.value.status == 409  # never connected: version unknown

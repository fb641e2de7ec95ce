"""/health/live and /health/ready on the admin port: no API key, 503 with the reason."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from tests.conftest import CsmsInProcess
from tests.test_admin_api import http


async def test_live_and_ready_need_no_key_and_say_why_not(
    csms: CsmsInProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await http(csms, "GET", "/health/live") == (200, {"status": "live"})
    assert await http(csms, "GET", "/health/ready") == (
        200, {"status": "ready", "stations_online": 0})

    async def full(job: Any) -> Any:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(csms.server.store, "run", full)
    status, body = await http(csms, "GET", "/health/ready")
    assert status == 503 and "database or disk is full" in body["why"]
    # Liveness does not depend on the store.
    assert (await http(csms, "GET", "/health/live"))[0] == 200
    monkeypatch.undo()
    monkeypatch.setattr(csms.server, "ports", [])
    status, body = await http(csms, "GET", "/health/ready")
    assert status == 503 and "ports" in body["why"]

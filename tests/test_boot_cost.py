"""The cheaper first boot (issue 12, connect-and-boot rate): what it must keep doing.

A settings batch's outcomes are recorded in one store job that no longer reads who asked
for each command nor deletes refusals a station never had (net/commands.py `_record_all`);
the server raises the collector's young threshold and freezes what start-up made while it
serves (net/server.py). Real SQLite files; the last test runs the server in process.
"""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from pathlib import Path

import trio

from lite_csms.budget import memory
from lite_csms.db.database import open_database
from lite_csms.db.models import Command, SettingRefusal, Station, StationSetting
from lite_csms.net import commands, server
from lite_csms.net.commands import CommandOutcome
from lite_csms.operations.catalogue import Request
from tests.conftest import start_in_process

AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _change(key: str, value: str) -> Request:
    return Request("ChangeConfiguration", {"key": key, "value": value})


def _answered(command_id: int, status: str) -> CommandOutcome:
    return CommandOutcome(command_id, "answered", {"status": status})


def _batch(station_id: str, requested_by: str, answers: list[tuple[str, str, str]]) -> None:
    """Log and record a send_each_on batch as the writer would run its two jobs."""
    requests = [_change(key, value) for key, value, _ in answers]
    ids = commands._create_all(station_id, requests, requested_by, AT)
    outcomes = [_answered(i, status) for i, (_, _, status) in zip(ids, answers, strict=True)]
    commands._record_all(station_id, ids, requests, outcomes, requested_by)


def test_a_batch_without_refusals_stores_every_setting(tmp_path: Path) -> None:
    db = open_database(tmp_path / "csms.sqlite3")
    try:
        Station.insert(id="B-1", registration="accepted").execute()
        _batch("B-1", memory.POLICY, [("HeartbeatInterval", "900", "Accepted"),
                                      ("MinimumStatusDuration", "60", "Accepted")])
        held = {s.key: s.value for s in StationSetting.select()}
        assert held == {"HeartbeatInterval": "900", "MinimumStatusDuration": "60"}
        assert [c.status for c in Command.select()] == ["answered", "answered"]
        assert SettingRefusal.select().count() == 0
    finally:
        db.close()


def test_a_batch_still_forgets_and_learns_refusals(tmp_path: Path) -> None:
    db = open_database(tmp_path / "csms.sqlite3")
    try:
        Station.insert(id="B-2", registration="accepted").execute()
        memory.record_refusals("B-2", {"WebSocketPingInterval": ("0", "Rejected")}, AT)
        memory.record_unsupported("B-2", "ChangeConfiguration", "NotImplemented", AT)
        # One refused, then the value refused before accepted: that refusal and the
        # action's go, the new one stays.
        _batch("B-2", memory.POLICY, [("MinimumStatusDuration", "60", "NotSupported"),
                                      ("WebSocketPingInterval", "0", "Accepted")])
        left = {(r.key, r.value, r.scope) for r in SettingRefusal.select()}
        assert left == {("MinimumStatusDuration", "60", memory.KEY)}
    finally:
        db.close()


def test_a_batch_by_an_operator_claims_its_keys(tmp_path: Path) -> None:
    db = open_database(tmp_path / "csms.sqlite3")
    try:
        Station.insert(id="B-3", registration="accepted").execute()
        # First a refusal of the station's under the policy, then the operator's batch.
        _batch("B-3", memory.POLICY, [("ClockAlignedDataInterval", "900", "Rejected")])
        _batch("B-3", "admin:ops", [("ClockAlignedDataInterval", "900", "Accepted"),
                                    ("MeterValueSampleInterval", "60", "Rejected")])
        owned = memory.owned("B-3")
        assert set(owned) == {"ClockAlignedDataInterval"}
        assert owned["ClockAlignedDataInterval"]["requested_by"] == "admin:ops"
        left = {(r.key, r.value, r.requested_by) for r in SettingRefusal.select()}
        assert left == {("MeterValueSampleInterval", "60", "admin:ops")}
    finally:
        db.close()


async def test_the_collector_is_tuned_while_serving_and_restored_after(nursery, tmp_path
                                                                       ) -> None:
    before = gc.get_threshold()
    async with trio.open_nursery() as inner:
        csms = await start_in_process(inner, tmp_path)
        assert gc.get_threshold() == (server.GC_YOUNG_THRESHOLD, *before[1:])
        # What start-up made is out of the collector's full passes while it serves.
        assert gc.get_freeze_count() > 0
        csms.server.stop()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0

"""Budget figures say when they were last flushed: CLI text and JSON, and the admin API."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import trio

from lite_csms.budget import counters
from lite_csms.db.database import open_database
from lite_csms.db.models import Station
from lite_csms.ocppj import timestamps
from tests.conftest import run_cli, start_in_process
from tests.test_admin_api import http, new_key


def _report(database: Path, *args: str) -> str:
    done = run_cli("budget", "report", "--database", str(database), *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_database_never_flushed_says_so(tmp_path: Path) -> None:
    database = tmp_path / "csms.sqlite3"
    db = open_database(database)
    Station.create(id="CS-Q")
    db.close()
    assert "no flush recorded yet" in _report(database)
    document = json.loads(_report(database, "--json"))
    assert document["flushed_at"] is None
    assert document["stations"][0]["flushed_at"] is None


async def _last_flush(csms) -> datetime | None:
    mark = await csms.server.store.run(counters.last_flush)
    return None if mark is None else mark.flushed_at


async def test_every_flush_moves_the_mark_and_reports_show_it(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, traffic_flush_interval=0.2)
    key = await new_key(csms)
    await csms.server.store.run(lambda: Station.create(id="CS-F"))
    with trio.fail_after(10):
        while (first := await _last_flush(csms)) is None:
            await trio.sleep(0.05)
    # Nothing moved, yet the next flush is recorded: quiet figures are current too.
    with trio.fail_after(10):
        while (second := await _last_flush(csms)) == first:
            await trio.sleep(0.05)
    assert first is not None and second is not None and second > first
    assert timestamps.now_utc() - second < timedelta(seconds=5)

    # The CLI, in another process, reads the mark the running server wrote.
    text = await trio.to_thread.run_sync(_report, csms.database)
    # The server's interval (0.2 s here), not the CLI's own default of 60 s.
    assert "Traffic counts as of " in text and "written every 0.2 s" in text
    document = json.loads(await trio.to_thread.run_sync(_report, csms.database, "--json"))
    from_cli = timestamps.parse(document["flushed_at"])
    assert document["flush_interval_s"] == 0.2
    assert from_cli >= second
    assert timestamps.parse(document["stations"][0]["flushed_at"]) == from_cli

    status, listing = await http(csms, "GET", "/budget", key)
    assert status == 200 and timestamps.parse(listing[0]["flushed_at"]) >= from_cli
    status, one = await http(csms, "GET", "/stations/CS-F/budget", key)
    assert status == 200 and timestamps.parse(one["flushed_at"]) >= from_cli

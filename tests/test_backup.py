"""`lite-csms backup FILE` while a station writes, and the README's restore steps."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

from websockets.sync.client import connect

from lite_csms.db.database import SCHEMA_VERSION
from tests.conftest import run_cli, start_csms_process, stop_csms_process


def _status_storm(url: str, stop: threading.Event, done: list[int]) -> None:
    """Status changes back to back until `stop`, and 50 more after it, so the storm goes on
    past the backup however fast the server answers."""
    with connect(url, subprotocols=["ocpp1.6"]) as ws:
        ws.send(json.dumps([2, "b", "BootNotification",
                            {"chargePointVendor": "Acme", "chargePointModel": "Home-7"}]))
        ws.recv()
        after = 0
        n = 0
        while after < 50:
            after += stop.is_set()
            n += 1
            status = "Charging" if n % 2 else "Available"
            ws.send(json.dumps([2, str(n), "StatusNotification", {
                "connectorId": 1, "errorCode": "NoError", "status": status}]))
            assert json.loads(ws.recv())[0] == 3
            done.append(n)


def test_a_backup_while_serving_is_consistent_and_restores(tmp_path: Path) -> None:
    csms = start_csms_process(tmp_path)
    try:
        assert csms.cli("station", "add", "CS-BK", "--no-password").returncode == 0
        done: list[int] = []
        stop = threading.Event()
        writer = threading.Thread(target=_status_storm, args=(csms.url("CS-BK"), stop, done))
        writer.start()
        while len(done) < 50:
            writer.join(0.01)
        copy = tmp_path / "backup.sqlite3"
        made = csms.cli("backup", str(copy))
        stop.set()
        assert made.returncode == 0, made.stderr
        assert "integrity ok" in made.stdout
        writer.join(30)
        assert not writer.is_alive() and len(done) >= 100
        # FILE exists now: refused, and the copy is left as it is.
        again = csms.cli("backup", str(copy))
        assert again.returncode == 2 and "exists" in again.stderr
        nowhere = tmp_path / "no-such-dir" / "copy.sqlite3"
        missing = csms.cli("backup", str(nowhere))
        assert missing.returncode == 2 and f"cannot write {nowhere}" in missing.stderr
    finally:
        stop_csms_process(csms)
    assert copy.stat().st_mode & 0o777 == 0o600
    # closing(): a connection left open keeps its read lock, which the restore would meet.
    with closing(sqlite3.connect(copy)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert db.execute("SELECT id FROM station").fetchall() == [("CS-BK",)]
        kept = db.execute("SELECT COUNT(*) FROM connector_status_change").fetchone()[0]
    with closing(sqlite3.connect(csms.database)) as db:
        total = db.execute("SELECT COUNT(*) FROM connector_status_change").fetchone()[0]
    # A snapshot from the middle of the storm: some of it, never more than there was.
    assert 0 < kept < total
    # The README's restore: stop the server, put the copy in place of the database and drop
    # the old WAL and shared-memory files, start again.
    for suffix in ("-wal", "-shm"):
        Path(f"{csms.database}{suffix}").unlink(missing_ok=True)
    shutil.copy(copy, csms.database)
    listed = run_cli("station", "list", "--json", "--database", str(csms.database))
    assert [s["id"] for s in json.loads(listed.stdout)] == ["CS-BK"]
    restored = start_csms_process(tmp_path)
    stop_csms_process(restored)

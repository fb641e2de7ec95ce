"""The `lite-csms` command line, run as the operator runs it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lite_csms import passwords
from tests.conftest import run_cli


def cli(db: Path, *args: str):
    return run_cli(*args, "--database", str(db))


def test_station_lifecycle(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite3"
    added = cli(db, "station", "add", "CS-001")
    assert added.returncode == 0
    password = added.stdout.split("password: ")[1].split()[0]
    assert 16 <= len(password) <= 40
    listed = json.loads(cli(db, "station", "list", "--json").stdout)
    assert [s["id"] for s in listed] == ["CS-001"] and listed[0]["password"] is True
    # Only a salted hash is stored, never the password itself: a fast keyed one for a
    # generated password (~140 bits), scrypt for one an operator chose.
    import sqlite3
    stored = sqlite3.connect(db).execute("SELECT password_hash FROM station").fetchone()[0]
    assert password not in stored and stored.startswith("hmac-sha256$")
    assert passwords.verify(password, stored) and not passwords.verify("x" * 24, stored)
    chosen = cli(db, "station", "set-password", "CS-001", "--password", "an operator's choice")
    assert chosen.returncode == 0
    stored = sqlite3.connect(db).execute("SELECT password_hash FROM station").fetchone()[0]
    assert stored.startswith("scrypt$") and passwords.verify("an operator's choice", stored)
    duplicate = cli(db, "station", "add", "CS-001")
    assert duplicate.returncode == 2 and "already exists" in duplicate.stderr
    changed = cli(db, "station", "set-password", "CS-001")
    assert changed.returncode == 0 and password not in changed.stdout
    shown = json.loads(cli(db, "station", "show", "CS-001", "--json").stdout)
    assert shown["id"] == "CS-001" and shown["connectors"] == []
    assert cli(db, "station", "remove", "CS-001").returncode == 0
    assert cli(db, "station", "show", "CS-001").returncode == 2


def test_tokens(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite3"
    assert cli(db, "token", "add", "04A2B3C4", "--expires", "2027-01-01T00:00:00Z").returncode == 0
    assert cli(db, "token", "block", "04A2B3C4").returncode == 0
    [token] = json.loads(cli(db, "token", "list", "--json").stdout)
    assert token["status"] == "Blocked" and token["expires_at"].startswith("2027-01-01")
    assert cli(db, "token", "unblock", "04A2B3C4").returncode == 0
    assert "Accepted" in cli(db, "token", "list").stdout
    assert cli(db, "token", "block", "NOPE").returncode == 2
    assert cli(db, "token", "add", "T", "--expires", "someday").returncode == 2


def test_bad_input_is_one_line_and_nonzero(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite3"
    # An existing database: creating one is announced on stderr, which is not the point here.
    assert cli(db, "token", "add", "T-0").returncode == 0
    cases = [
        (("station", "add", "x" * 49), "longer than 48"),
        (("station", "add", "CS:1"), "must not contain ':'"),
    ]
    for args, message in cases:
        result = cli(db, *args)
        assert result.returncode == 2 and message in result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("port = [")
    result = run_cli("--config", str(bad_config), "station", "list")
    assert result.returncode == 2 and "malformed" in result.stderr
    assert result.stderr.count("\n") == 1
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not sqlite at all" * 64)
    result = cli(junk, "tx", "list")
    assert result.returncode == 2 and "cannot open database" in result.stderr
    result = cli(tmp_path / "missing-dir" / "x.sqlite3", "tx", "list")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    env = {**os.environ, "LITE_CSMS_DATABASE": str(db), "LITE_CSMS_PORT": "nine"}
    result = run_cli("serve", env=env)
    assert result.returncode == 2 and "port" in result.stderr


def test_tx_listing_is_empty_json_on_a_new_database(tmp_path: Path) -> None:
    assert cli(tmp_path / "c.sqlite3", "station", "add", "CS-0").returncode == 0
    result = cli(tmp_path / "c.sqlite3", "tx", "list", "--json")
    assert result.returncode == 0 and json.loads(result.stdout) == []
    assert cli(tmp_path / "c.sqlite3", "tx", "show", "1").returncode == 2


def test_concurrent_cli_writers_wait_instead_of_failing(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "c.sqlite3"
    assert cli(db, "token", "add", "T-0").returncode == 0  # the file exists before the race
    processes = [subprocess.Popen(
        [sys.executable, "-m", "lite_csms", "station", "add", f"CS-{n}", "--database", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
    results = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], results
    assert len(json.loads(cli(db, "station", "list", "--json").stdout)) == 4

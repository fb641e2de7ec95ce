"""`lite-csms station import` and `station export`: bulk provisioning from CSV.

Rules under test (lite_csms/cli/station_csv.py): every line is checked before anything is
written and every bad line is named; importing the same file twice changes nothing; an
existing station's password changes only for a chosen password that does not match, or
with --rotate; generated passwords are shown once; export → import keeps all but passwords.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import sqlite3
import stat
from functools import partial
from pathlib import Path

import pytest
import trio

from lite_csms import passwords
from lite_csms.cli.main import main
from tests import rawws
from tests.conftest import CsmsInProcess, run_cli
from tests.test_server import BOOT_16

CHOSEN = "an operator's own choice"


def cli(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--database", str(db), "station", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, password_hash, registration, security_profile "
                            "FROM station ORDER BY id").fetchall()


def generated(out: str) -> dict[str, str]:
    records = list(csv.reader(io.StringIO(out)))
    assert records[0] == ["id", "password"]
    return dict(records[1:])


def test_import_adds_each_kind_of_row_and_a_second_import_changes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "c.sqlite3"
    source = write(tmp_path / "s.csv",
                   "id,password,registration,security_profile\n"
                   "CS-1,generate,,\n"
                   f"CS-2,{CHOSEN},pending,2\n"
                   "CS-3,none,rejected,1\n"
                   "CS-4,,,\n")
    code, out, err = cli(capsys, db, "import", str(source))
    assert code == 0, err
    assert "4 added, 0 updated, 0 unchanged; 2 generated" in err
    shown = generated(out)
    assert sorted(shown) == ["CS-1", "CS-4"]
    stored = {r[0]: r for r in rows(db)}
    for sid in ("CS-1", "CS-4"):
        assert passwords.is_fast(stored[sid][1])
        assert passwords.verify(shown[sid], stored[sid][1])
    assert stored["CS-2"][1].startswith("scrypt$") and passwords.verify(CHOSEN, stored["CS-2"][1])
    assert stored["CS-2"][2:] == ("pending", 2)
    assert stored["CS-3"][1:] == (None, "rejected", 1)
    assert stored["CS-1"][2:] == ("accepted", None)

    before = rows(db)
    code, out, err = cli(capsys, db, "import", str(source))
    assert code == 0 and out == ""
    assert "0 added, 0 updated, 4 unchanged" in err
    assert rows(db) == before


def test_every_bad_line_is_named_and_nothing_is_imported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "c.sqlite3"
    source = write(tmp_path / "bad.csv",
                   "id,password,security_profile,registration\n"
                   "CS-OK,generate,,\n"
                   "A:1,short,4,maybe\n"
                   "B,generate,,\n"
                   "\n"
                   "B,none,1,\n"
                   "C\n")
    code, out, err = cli(capsys, db, "import", str(source))
    assert code == 2 and out == ""
    assert [line for line in err.splitlines() if "created database" not in line] == [
        "lite-csms: bad.csv line 3, column id: 'A:1': the station id must not contain ':'",
        "lite-csms: bad.csv line 3, column password: a password must have 16 to 40 "
        "characters (it has 5), or be 'generate' or 'none'",
        "lite-csms: bad.csv line 3, column registration: 'maybe' is not one of accepted, "
        "pending, rejected",
        "lite-csms: bad.csv line 3, column security_profile: '4' is not 1, 2 or 3",
        "lite-csms: bad.csv line 6, column id: 'B' is already on line 4",
        "lite-csms: bad.csv line 7: 1 fields, the header has 4",
        "lite-csms: error: 6 error(s) in the file; nothing was imported",
    ]
    assert rows(db) == []

    unknown = write(tmp_path / "unknown.csv", "id,password,owner\nCS-1,generate,me\n")
    code, _, err = cli(capsys, db, "import", str(unknown))
    assert code == 2
    assert "unknown.csv line 1, column 3: unknown column 'owner'" in err
    assert rows(db) == []


def test_existing_passwords_change_only_when_asked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "c.sqlite3"
    first = write(tmp_path / "a.csv", "id,password,security_profile\n"
                                      "CS-1,generate,2\nCS-2,none,\nCS-3,generate,\n")
    assert cli(capsys, db, "import", str(first))[0] == 0
    before = {r[0]: r for r in rows(db)}

    # Without --rotate, "generate" and "none" keep the password; a new chosen one replaces it.
    second = write(tmp_path / "b.csv", f"id,password\nCS-1,none\nCS-2,generate\nCS-3,{CHOSEN}\n")
    code, out, err = cli(capsys, db, "import", str(second))
    assert code == 0 and out == "" and "0 added, 1 updated, 2 unchanged" in err
    after = {r[0]: r for r in rows(db)}
    assert after["CS-1"] == before["CS-1"] and after["CS-2"] == before["CS-2"]
    assert passwords.verify(CHOSEN, after["CS-3"][1])

    code, out, err = cli(capsys, db, "import", "--rotate", str(second))
    assert code == 0 and "2 updated, 1 unchanged" in err
    rotated = {r[0]: r for r in rows(db)}
    assert rotated["CS-1"][1] is None
    assert passwords.verify(generated(out)["CS-2"], rotated["CS-2"][1])
    assert rotated["CS-3"] == after["CS-3"]  # the same chosen password: left alone

    lowered = write(tmp_path / "c.csv", "id,security_profile\nCS-1,1\n")
    code, _, err = cli(capsys, db, "import", str(lowered))
    assert code == 2
    assert "c.csv line 2, column security_profile: lowering CS-1 from 2 to 1 needs --lower" in err
    assert cli(capsys, db, "import", "--lower", str(lowered))[0] == 0
    assert {r[0]: r[3] for r in rows(db)}["CS-1"] == 1


def test_export_round_trips_all_but_passwords_and_output_is_private(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "c.sqlite3"
    source = write(tmp_path / "s.csv", "id,registration,password,security_profile\n"
                                       "CS-b,pending,generate,3\nCS-a,,none,\n")
    assert cli(capsys, db, "import", str(source))[0] == 0
    code, exported, _ = cli(capsys, db, "export")
    assert code == 0
    assert exported == ("id,password,registration,security_profile\n"
                        "CS-a,none,accepted,\nCS-b,,pending,3\n")
    assert "scrypt" not in exported and "hmac" not in exported

    copy = write(tmp_path / "export.csv", exported)
    fresh = tmp_path / "fresh.sqlite3"
    secret = tmp_path / "passwords.csv"
    code, out, err = cli(capsys, fresh, "import", str(copy), "--output", str(secret))
    assert code == 0 and out == "" and f"written to {secret}" in err
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    new_password = generated(secret.read_text())["CS-b"]
    assert [r[::2] + r[3:] for r in rows(fresh)] == [r[::2] + r[3:] for r in rows(db)]
    assert passwords.verify(new_password, rows(fresh)[1][1])
    assert cli(capsys, fresh, "export", str(tmp_path / "again.csv"))[0] == 0
    assert (tmp_path / "again.csv").read_text() == exported


async def test_import_while_the_server_runs_lets_the_stations_in(
        csms: CsmsInProcess, tmp_path: Path) -> None:
    # The CLI is its own process with its own connection, as an operator runs it.
    lines = ["id,password"] + [f"IMP-{n:03d},generate" for n in range(300)]
    source = write(tmp_path / "many.csv", "\n".join(lines) + "\n")
    done = await trio.to_thread.run_sync(partial(
        run_cli, "station", "import", str(source), "--database", str(csms.database)))
    assert done.returncode == 0, done.stderr
    shown = generated(done.stdout)
    assert len(shown) == 300
    for sid in ("IMP-000", "IMP-299"):
        token = base64.b64encode(f"{sid}:{shown[sid]}".encode()).decode()
        stream, response = await rawws.connect(csms.port, f"/ocpp/{sid}",
                                               headers=(f"Authorization: Basic {token}",))
        assert response.startswith(b"HTTP/1.1 101"), response
        await stream.send_all(rawws.frame(1, json.dumps(
            [2, "b", "BootNotification", BOOT_16]).encode()))
        with trio.fail_after(5):
            _, payload = await rawws.read_frame(stream, bytearray())
        assert json.loads(payload)[2]["status"] == "Accepted"
        await stream.aclose()
    assert len(rows(csms.database)) == 300

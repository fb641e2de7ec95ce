"""What an operator meets at the command line: ports, the database in use, errors, pipes."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import trio

from lite_csms import __version__, config
from lite_csms.cli.output import api_error
from tests import rawws
from tests.conftest import run_cli
from tests.test_server import BOOT_16


def lite_csms(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    if cwd is None:  # the directory is part of what the default-database tests check
        return run_cli(*args, env=env)
    return subprocess.run([sys.executable, "-m", "lite_csms", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=env)


class Served:
    """`lite-csms serve` on ports the kernel picks, read back from its log."""

    def __init__(self, tmp_path: Path, database: Path) -> None:
        self.log_path = tmp_path / "first.log"
        self.database = database
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lite_csms", "serve", "--host", "127.0.0.1", "--port", "0",
             "--admin-port", "0", "--database", str(database)],
            stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT, cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "LITE_CSMS_BUDGET_POLICY": "0"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = re.search(r"serving OCPP-J on \S+ port \[(\d+)\]", self.log())
            admin = re.search(r"admin API on http://127.0.0.1:(\d+)", self.log())
            if found and admin:
                self.port, self.admin_port = int(found[1]), int(admin[1])
                return
            assert self.process.poll() is None, self.log()
            time.sleep(0.05)
        self.process.kill()
        raise AssertionError(f"no ports in the log:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)

    def online(self, station_id: str) -> bool:
        with sqlite3.connect(self.database) as db:
            return bool(db.execute("SELECT online FROM station WHERE id = ?",
                                   (station_id,)).fetchone()[0])


async def boot(port: int, station_id: str) -> trio.SocketStream:
    stream, response = await rawws.connect(port, f"/ocpp/{station_id}")
    assert response.startswith(b"HTTP/1.1 101"), response
    await stream.send_all(rawws.frame(1, json.dumps(
        [2, "b", "BootNotification", BOOT_16]).encode()))
    with trio.fail_after(10):
        opcode, _ = await rawws.read_frame(stream, bytearray())
    assert opcode == 1
    return stream


async def test_second_serve_on_a_busy_port_says_so_and_touches_nothing(tmp_path: Path) -> None:
    database = tmp_path / "shared.sqlite3"
    first = Served(tmp_path, database)
    try:
        assert "created database" in first.log()
        assert lite_csms("station", "add", "BUSY-1", "--no-password", "--database",
                         str(database)).returncode == 0
        station = await boot(first.port, "BUSY-1")
        assert first.online("BUSY-1")
        busy = [(["--port", str(first.port), "--admin-port", "0"], f"127.0.0.1:{first.port}"),
                (["--port", "0", "--admin-port", str(first.admin_port)],
                 f"127.0.0.1:{first.admin_port}")]
        for ports, address in busy:
            second = lite_csms("serve", "--host", "127.0.0.1", *ports, "--database",
                               str(database), cwd=tmp_path)
            assert second.returncode == 2, second.stderr
            lines = second.stderr.splitlines()
            assert len(lines) == 1 and address in lines[0], second.stderr
            assert "in use" in lines[0]
            # The running server's station is still online, in the shared database too.
            assert first.online("BUSY-1")
        listing = json.loads(lite_csms("station", "list", "--json", "--database",
                                       str(database)).stdout)
        assert [(s["id"], s["online"]) for s in listing] == [("BUSY-1", True)]
        await station.aclose()
    finally:
        first.stop()


async def test_cli_errors_speak_cli(tmp_path: Path) -> None:
    database = tmp_path / "csms.sqlite3"
    first = Served(tmp_path, database)
    try:
        for sid in ("ERR-1", "ERR-2"):
            assert lite_csms("station", "add", sid, "--no-password", "--database",
                             str(database)).returncode == 0
        key = lite_csms("apikey", "add", "ops", "--database", str(database)
                        ).stdout.splitlines()[0].split(": ", 1)[1]
        env = {**os.environ, "LITE_CSMS_API_KEY": key,
               "LITE_CSMS_ADMIN_PORT": str(first.admin_port)}

        def remote(*args: str) -> str:
            result = lite_csms("remote", *args, env=env)
            assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
            return result.stderr.strip()

        assert remote("reset", "CS-9") == "lite-csms: error: station CS-9 not found"
        stream = await boot(first.port, "ERR-1")
        await stream.aclose()
        deadline = time.monotonic() + 10
        while first.online("ERR-1") and time.monotonic() < deadline:
            await trio.sleep(0.05)
        assert remote("reset", "ERR-1") == ("lite-csms: error: station ERR-1 is offline; add "
                                            "--queue to deliver it when it reconnects")
        # Connected but silent: it has not booted, so nothing may be sent yet.
        silent, _ = await rawws.connect(first.port, "/ocpp/ERR-1")
        await trio.sleep(0.3)
        message = remote("reset", "ERR-1")
        assert "has not sent its first message" in message and "--queue" in message
        assert '"queue"' not in message
        queued = lite_csms("remote", "reset", "ERR-1", "--queue", env=env)
        assert queued.returncode == 0 and "queued" in queued.stdout
        await silent.aclose()
    finally:
        first.stop()


def test_api_words_become_cli_words() -> None:
    assert str(api_error(404, "not found", "CS-9")) == "station CS-9 not found"
    assert str(api_error(409, 'station CS-9 is not connected; send with "queue": true to '
                              "queue it", "CS-9")) == (
        "station CS-9 is offline; add --queue to deliver it when it reconnects")
    assert str(api_error(422, "ttl must be 1 to 86400 seconds", "CS-9")) == (
        "--ttl must be 1 to 86400 seconds")
    assert "--expires-in" in str(api_error(422, "expires_in must be 1 to 604800 seconds"))


def operator_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LITE_CSMS_") and k not in ("XDG_DATA_HOME", "STATE_DIRECTORY")}
    return {**env, "HOME": str(home)}


def test_default_database_does_not_depend_on_the_directory(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    env = operator_env(home)
    default = home / ".local" / "share" / "lite-csms" / "lite-csms.sqlite3"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Root's default is /var/lib/lite-csms; a systemd StateDirectory takes precedence.
        env["STATE_DIRECTORY"] = str(home / "state")
        default = home / "state" / "lite-csms.sqlite3"
    listed = lite_csms("station", "list", cwd=elsewhere, env=env)
    assert listed.returncode == 2 and str(default) in listed.stderr
    assert listed.stderr.count("\n") == 1
    assert not default.exists() and list(elsewhere.iterdir()) == []
    added = lite_csms("station", "add", "CS-1", "--no-password", cwd=tmp_path, env=env)
    assert added.returncode == 0, added.stderr
    assert added.stderr == f"lite-csms: created database {default}\n"
    again = lite_csms("station", "list", "--json", cwd=elsewhere, env=env)
    assert [s["id"] for s in json.loads(again.stdout)] == ["CS-1"] and again.stderr == ""
    assert list(elsewhere.iterdir()) == []


def test_an_earlier_releases_database_in_the_directory_is_pointed_at(tmp_path: Path) -> None:
    env = {**operator_env(tmp_path / "home"), "STATE_DIRECTORY": str(tmp_path / "state")}
    (tmp_path / "old").mkdir()
    assert lite_csms("station", "add", "OLD-1", "--database", "lite-csms.sqlite3",
                     cwd=tmp_path / "old", env=env).returncode == 0
    listed = lite_csms("station", "list", cwd=tmp_path / "old", env=env)
    assert listed.returncode == 2 and listed.stderr.count("\n") == 1
    assert "pass --database lite-csms.sqlite3" in listed.stderr
    # Serving would start an empty database and refuse every station: refused instead.
    served = lite_csms("serve", "--port", "0", "--admin-port", "0", cwd=tmp_path / "old",
                       env=env)
    assert served.returncode == 2 and served.stderr.count("\n") == 1, served.stderr
    assert "pass --database lite-csms.sqlite3 to keep using it" in served.stderr
    assert not (tmp_path / "state" / "lite-csms.sqlite3").exists()


def test_default_database_rules(tmp_path: Path) -> None:
    name = "lite-csms.sqlite3"
    assert config.default_database({"STATE_DIRECTORY": "/srv/state:/other"}, euid=0) == Path(
        "/srv/state") / name
    assert config.default_database({}, euid=0) == Path("/var/lib/lite-csms") / name
    assert config.default_database({"XDG_DATA_HOME": str(tmp_path)}, euid=1000) == (
        tmp_path / "lite-csms" / name)
    assert config.default_database({"XDG_DATA_HOME": "relative"}, euid=1000) == (
        Path.home() / ".local" / "share" / "lite-csms" / name)
    settings = config.load(environ={"XDG_DATA_HOME": str(tmp_path)})
    assert settings.database in (str(tmp_path / "lite-csms" / name),
                                 str(Path("/var/lib/lite-csms") / name))
    assert config.load(environ={"LITE_CSMS_DATABASE": "x.db"}).database == "x.db"


def test_version() -> None:
    result = lite_csms("--version")
    assert result.returncode == 0 and result.stdout == f"lite-csms {__version__}\n"
    # One version for the package and the command: pyproject.toml must agree.
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert project["project"]["version"] == __version__


def test_a_closed_pipe_ends_the_listing_quietly(tmp_path: Path) -> None:
    database = tmp_path / "c.sqlite3"
    assert lite_csms("station", "add", "CS-1", "--database", str(database)).returncode == 0
    for args in (["budget", "report", "--csv"], ["station", "list"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # like `| head` that has already gone
        try:
            result = subprocess.run(
                [sys.executable, "-m", "lite_csms", *args, "--database", str(database)],
                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
        finally:
            os.close(write_end)
        assert result.stderr == "", result.stderr
        assert result.returncode == 141

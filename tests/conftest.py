"""Shared fixtures: a real server on a real socket with a real SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from lite_csms import config
from lite_csms.db.database import open_database
from lite_csms.net.ports import read_ports_file
from lite_csms.net.server import CsmsServer

REPO = Path(__file__).resolve().parent.parent


@dataclass
class CsmsProcess:
    """`lite-csms serve` in a child process, as an operator runs it."""

    port: int
    database: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    admin_port: int | None = None

    def url(self, station_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp/{station_id}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--database", str(self.database))

    def log(self) -> str:
        return self.log_path.read_text()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lite_csms", *args], capture_output=True, text=True,
        timeout=60, env=env,
    )


def start_csms_process(tmp_path: Path, *extra: str,
                       env: dict[str, str] | None = None) -> CsmsProcess:
    """Port 0 and --ports-file: a port picked here and bound later could be taken meanwhile
    by a test on the other worker. `env` adds to (or overrides) the server's environment."""
    database = tmp_path / "csms.sqlite3"
    log_path = tmp_path / "server.log"
    ports_file = tmp_path / "ports.json"
    ports_file.unlink(missing_ok=True)
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "lite_csms", "serve", "--host", "127.0.0.1", "--port", "0",
         "--database", str(database), "--admin-port", "0", "--ports-file", str(ports_file),
         *extra],
        stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp_path,
        # The budget policy would reconfigure every test's station, and a chosen password
        # would be rotated (net/rotation.py); their own tests turn them on.
        env={**os.environ, "PYTHONUNBUFFERED": "1", "LITE_CSMS_BUDGET_POLICY": "0",
             "LITE_CSMS_ROTATE_CHOSEN_PASSWORDS": "0", **(env or {})},
    )
    try:
        ports = read_ports_file(ports_file, alive=lambda: process.poll() is None)
    except (RuntimeError, TimeoutError) as exc:
        process.kill()
        raise RuntimeError(f"{exc}:\n{log_path.read_text()}") from None
    return CsmsProcess(ports["ocpp"][0], database, process, log_path, ports["admin"])


def stop_csms_process(csms: CsmsProcess) -> None:
    csms.process.terminate()
    try:
        csms.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        csms.process.kill()
        csms.process.wait()


@pytest.fixture
def csms_process(tmp_path: Path) -> Iterator[CsmsProcess]:
    csms = start_csms_process(tmp_path)
    yield csms
    stop_csms_process(csms)


@dataclass
class CsmsInProcess:
    server: CsmsServer
    port: int
    database: Path

    def url(self, station_id: str, path: str = "/ocpp/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}{station_id}"


async def start_in_process(
    nursery: trio.Nursery, tmp_path: Path, **overrides: object
) -> CsmsInProcess:
    database = tmp_path / "csms.sqlite3"
    settings = config.load(environ={}, overrides={
        "host": "127.0.0.1", "port": 0, "admin_port": 0, "database": str(database),
        "budget_policy": False, "rotate_chosen_passwords": False, **overrides,
    })
    db = open_database(database)
    server = CsmsServer(settings, db)
    ports = await nursery.start(server.run)
    return CsmsInProcess(server, ports[0], database)


@pytest.fixture
async def csms(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[CsmsInProcess]:
    """The server inside the test's own trio run; its CLI-side database is the same file."""
    yield await start_in_process(nursery, tmp_path)

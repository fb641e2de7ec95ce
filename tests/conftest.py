"""Shared fixtures: a real server on a real socket with a real SQLite file."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from lite_csms import config
from lite_csms.db.database import open_database
from lite_csms.net.server import CsmsServer

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class CsmsProcess:
    """`lite-csms serve` in a child process, as an operator runs it."""

    port: int
    database: Path
    process: subprocess.Popen[bytes]
    log_path: Path

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


# The server's own line naming the port it bound (port 0: the kernel's choice).
SERVING = re.compile(r"serving OCPP-J on \S+ port \[(\d+)")


def start_csms_process(tmp_path: Path, *extra: str) -> CsmsProcess:
    # Port 0, read back from the log: a port picked here and bound later by the child could be
    # taken in between by any other connection on a busy machine.
    database = tmp_path / "csms.sqlite3"
    log_path = tmp_path / "server.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "lite_csms", "serve", "--host", "127.0.0.1", "--port", "0",
         "--database", str(database), "--admin-port", "0", *extra],
        stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp_path,
        # The budget policy would reconfigure every test's station; its own tests turn it on.
        env={**os.environ, "PYTHONUNBUFFERED": "1", "LITE_CSMS_BUDGET_POLICY": "0"},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        if (serving := SERVING.search(log_path.read_text())) is not None:
            port = int(serving.group(1))
            break
        time.sleep(0.05)
    else:
        process.kill()
        raise RuntimeError(f"server did not listen:\n{log_path.read_text()}")
    return CsmsProcess(port, database, process, log_path)


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
        "budget_policy": False, **overrides,
    })
    db = open_database(database)
    server = CsmsServer(settings, db)
    ports = await nursery.start(server.run)
    return CsmsInProcess(server, ports[0], database)


@pytest.fixture
async def csms(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[CsmsInProcess]:
    """The server inside the test's own trio run; its CLI-side database is the same file."""
    yield await start_in_process(nursery, tmp_path)

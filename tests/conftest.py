"""Shared fixtures: a real server on a real socket with a real SQLite file."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from lite_csms import config
from lite_csms.cli.main import main as cli_main
from lite_csms.db import models
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
    """`lite-csms ARGS` with its exit code, stdout and stderr, as a shell would see them.

    Run in this process when nothing here holds the database open (a child's interpreter
    start and imports cost ~0.4 s of CPU a call, the largest share of many CLI tests); in a
    child when an in-process server or the test itself has the models bound to an open
    database, since the CLI rebinds the one global proxy to its own connection, and for
    `serve`, which is about the process (signals are the main thread's). The commands that
    only talk to the admin API never open the database, so they run here in any case."""
    words = [a for a in args if not a.startswith("-")]
    api_only = words[:1] in (["remote"], ["config"]) or words[:2] == ["tx", "progress"]
    bound = models.database_proxy.obj
    if "serve" in args or (not api_only and bound is not None and not bound.is_closed()):
        return subprocess.run(
            [sys.executable, "-m", "lite_csms", *args], capture_output=True, text=True,
            timeout=60, env=env,
        )
    return _run_cli_here(list(args), env)


_cli_lock = threading.Lock()


def _run_cli_here(args: list[str], env: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    out, err = io.StringIO(), io.StringIO()
    result: list[int] = []

    def call() -> None:
        # What the interpreter does for `python -m lite_csms`: SystemExit's code is the exit
        # status, an uncaught exception prints its traceback and exits 1.
        try:
            result.append(cli_main(args))
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                result.append(exc.code or 0)
            else:
                print(exc.code, file=sys.stderr)
                result.append(1)
        except BaseException:
            traceback.print_exc()
            result.append(1)

    with _cli_lock:
        saved = dict(os.environ)
        try:
            if env is not None:
                os.environ.clear()
                os.environ.update(env)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                # Its own thread: the CLI may call trio.run, and the caller may be inside one.
                thread = threading.Thread(target=call)
                thread.start()
                thread.join(timeout=60)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    if thread.is_alive():
        raise subprocess.TimeoutExpired(["lite-csms", *args], 60, out.getvalue(), err.getvalue())
    return subprocess.CompletedProcess(["lite-csms", *args], result[0], out.getvalue(),
                                       err.getvalue())


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


# The slowest tests, slowest first (from `pytest --durations`; a stale entry costs only its
# place in the order). Two workers take tests in collection order, so a long test collected
# late runs alone at the end while the other worker idles; started first, it overlaps the
# many short ones. A module with a module-scoped fixture is named whole, so it stays together.
SLOW_FIRST = (
    "tests/test_storm_settles.py::test_a_storm_of_300_stations_settles_completely",
    "tests/test_cli_remote.py::test_limits_firmware_and_reports_from_the_cli",
    "tests/test_field_month.py::test_lite_link_prices_compose_to_the_wire_within_2_percent",
    "tests/test_field_month.py::test_prices_compose_to_the_wire_within_2_percent",
    "tests/test_nat_keepalive.py::test_server_tcp_keepalive_holds_the_nat_mapping",
    "tests/test_traffic_sim.py::test_policy_reconfigures_a_2x_station_and_cuts_its_bytes",
    "tests/test_simulator.py::test_a_pending_boot_is_retried_until_the_operator_accepts",
    "tests/test_kill9.py::test_kill_9_under_load_loses_nothing_acknowledged",
    "tests/test_interop_remote.py::test_ocpp16_remote_start_and_change_configuration",
    "tests/test_lite_profiles.py::test_home_share_on_the_lite_link_keeps_billing_intact",
    "tests/test_storm_auth.py::test_a_reconnect_storm_of_known_stations_costs_no_kdf",
    "tests/test_interop_remote.py::test_ocpp201_set_variables",
    "tests/test_interop_remote.py::test_queued_command_survives_a_server_restart",
    "tests/test_lite_c.py",
    "tests/test_backup.py::test_a_backup_while_serving_is_consistent_and_restores",
    "tests/test_accounting_short.py::test_four_short_connections_agree_with_the_station_kernel",
    "tests/test_traffic_sim.py::test_short_home_share_agrees_within_two_percent",
    "tests/test_every_message.py::test_every_station_message_is_answered_and_recorded",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        for place, prefix in enumerate(SLOW_FIRST):
            if item.nodeid.startswith(prefix):
                return place
        return len(SLOW_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order

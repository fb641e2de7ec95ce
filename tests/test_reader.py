"""Station lookups read beside the writer, never queued behind a long group commit."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from pathlib import Path

import trio

from lite_csms import passwords
from lite_csms.db.database import open_database
from lite_csms.db.models import Station
from lite_csms.db.reader import StoreReader
from tests import rawws
from tests.conftest import start_in_process


def test_the_reader_returns_the_committed_row_with_python_values(tmp_path: Path) -> None:
    db = open_database(tmp_path / "csms.sqlite3")
    booted = datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC)
    Station.create(id="CS-1", password_hash="x", registration="pending", last_boot_at=booted,
                   security_profile=2)
    reader = StoreReader(tmp_path / "csms.sqlite3")
    try:
        station = reader.station("CS-1")
        assert station is not None
        assert (station.registration, station.last_boot_at, station.security_profile,
                station.online) == ("pending", booted, 2, False)
        assert reader.station("CS-2") is None
        Station.update(registration="accepted").where(Station.id == "CS-1").execute()
        assert reader.station("CS-1").registration == "accepted"
    finally:
        reader.close()
        db.close()


async def test_a_handshake_does_not_wait_for_a_long_group_commit(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path)
    password = passwords.generate()
    await csms.server.store.run(lambda: Station.create(
        id="CS-1", password_hash=passwords.hash_generated(password), registration="accepted"))
    # A group commit that holds the writer for 3 s, as a large traffic flush can.
    nursery.start_soon(csms.server.store.run, lambda: time.sleep(3))
    await trio.sleep(0.2)
    auth = base64.b64encode(f"CS-1:{password}".encode()).decode()
    started = trio.current_time()
    stream, response = await rawws.connect(csms.port, "/ocpp/CS-1",
                                           headers=(f"Authorization: Basic {auth}",))
    assert response.startswith(b"HTTP/1.1 101"), response
    assert trio.current_time() - started < 1.5
    await stream.aclose()

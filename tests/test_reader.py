"""Station lookups read beside the writer, never queued behind a long group commit."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import peewee as pw
import pytest
import trio
from trio_websocket import open_websocket_url

from lite_csms import passwords
from lite_csms.db.database import open_database
from lite_csms.db.models import IdToken, Station
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


def test_run_routes_the_models_to_the_read_connection_and_refuses_writes(tmp_path) -> None:
    db = open_database(tmp_path / "csms.sqlite3")
    Station.create(id="CS-1", registration="accepted")
    reader = StoreReader(tmp_path / "csms.sqlite3")
    try:
        assert reader.run(lambda: Station.get_by_id("CS-1").registration) == "accepted"
        with pytest.raises(pw.OperationalError, match="readonly"):
            reader.run(lambda: Station.create(id="CS-2"))
        # Outside `run` the same models write through the writer's connection again.
        Station.create(id="CS-3")
        assert reader.run(lambda: Station.select().count()) == 2
    finally:
        reader.close()
        db.close()


async def test_authorize_does_not_wait_for_a_long_group_commit(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path)
    await csms.server.store.run(lambda: Station.create(id="CS-1", registration="accepted"))
    await csms.server.store.run(lambda: IdToken.create(token="04A2B3C4", token_key="04a2b3c4"))
    async with open_websocket_url(f"ws://127.0.0.1:{csms.port}/ocpp/CS-1",
                                  subprotocols=["ocpp1.6"]) as ws:
        # The presence row is written just after the 101: the long commit starts once it is
        # in, so that only the Authorize could wait behind it.
        with trio.fail_after(5):
            while not csms.server.reader.run(lambda: Station.get_by_id("CS-1").online):
                await trio.sleep(0.01)
        # A group commit that holds the writer for 2 s, as a large traffic flush can.
        nursery.start_soon(csms.server.store.run, lambda: time.sleep(2))
        await trio.sleep(0.2)
        started = trio.current_time()
        await ws.send_message(json.dumps([2, "1", "Authorize", {"idTag": "04a2b3c4"}]))
        answer = json.loads(await ws.get_message())
        assert answer == [3, "1", {"idTagInfo": {"status": "Accepted"}}]
        assert trio.current_time() - started < 1.0


async def test_both_server_connections_keep_the_configured_page_cache(nursery, tmp_path) -> None:
    csms = await start_in_process(nursery, tmp_path, db_cache_kib=300)

    def cache_size() -> int:
        return Station._meta.database.execute_sql("PRAGMA cache_size").fetchone()[0]

    assert await csms.server.store.run(cache_size) == -300
    assert csms.server.reader.run(cache_size) == -300

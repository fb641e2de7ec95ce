"""Id tokens are case-insensitive (1.6 CiString20; 2.0.1 and 2.1 IdTokenType.idToken).

`04A2B3C4FF` is registered; a station that reads the card as `04a2b3c4ff` presents the same
token on every path: Authorize, start, ConcurrentTx, stop, groups, reservations, local lists,
the admin API and the CLI.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from trio_websocket import open_websocket_url

from lite_csms.db.database import open_database
from lite_csms.db.models import IdToken
from lite_csms.handlers import authorization, local_list, reservation
from lite_csms.ocppj import timestamps
from tests.conftest import REPO, CsmsInProcess, CsmsProcess, run_cli
from tests.test_admin_api import http, new_key
from tests.test_interop import connect
from tests.test_interop import register as register_process
from tests.test_server import BOOT_16, BOOT_201, query, register, rpc

CARD = "04A2B3C4FF"
READ = "04a2b3c4ff"
T = "2026-11-21T{}:00Z"


async def add_token(csms: CsmsInProcess, token: str, **fields: object) -> None:
    await csms.server.store.run(lambda: IdToken.create(token=token, **fields))


async def test_v16_every_lookup_ignores_case(csms: CsmsInProcess) -> None:
    await register(csms, "CASE-16")
    await add_token(csms, "GRP-1")
    await add_token(csms, CARD, group_token="grp-1")
    async with open_websocket_url(csms.url("CASE-16"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "1", "BootNotification", BOOT_16])
        authorized = await rpc(ws, [2, "2", "Authorize", {"idTag": READ}])
        # The group is sent as it is registered, not as the member's row spells it.
        assert authorized[2] == {"idTagInfo": {"status": "Accepted", "parentIdTag": "GRP-1"}}
        started = await rpc(ws, [2, "3", "StartTransaction", {
            "connectorId": 1, "idTag": READ, "meterStart": 0, "timestamp": T.format("08:00")}])
        assert started[2]["idTagInfo"]["status"] == "Accepted"
        # The same card, read the other way, on another connector while the first runs.
        again = await rpc(ws, [2, "4", "StartTransaction", {
            "connectorId": 2, "idTag": CARD, "meterStart": 0, "timestamp": T.format("08:01")}])
        assert again[2]["idTagInfo"]["status"] == "ConcurrentTx"
        stopped = await rpc(ws, [2, "5", "StopTransaction", {
            "transactionId": started[2]["transactionId"], "idTag": "04A2b3c4fF",
            "meterStop": 1000, "timestamp": T.format("09:00")}])
        assert stopped[2]["idTagInfo"]["status"] == "Accepted"
    # The transaction keeps the token as the station sent it: it is the station's record.
    assert query(csms, 'SELECT id_token, auth_status FROM "transaction" ORDER BY id') == [
        (READ, "Accepted"), (CARD, "ConcurrentTx")]


async def test_v16_blocked_in_one_case_is_blocked_in_all(csms: CsmsInProcess) -> None:
    await register(csms, "CASE-16B")
    await add_token(csms, CARD, status="Blocked")
    async with open_websocket_url(csms.url("CASE-16B"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "1", "BootNotification", BOOT_16])
        answer = await rpc(ws, [2, "2", "Authorize", {"idTag": READ}])
    assert answer[2]["idTagInfo"]["status"] == "Blocked"


async def reserve_accepted(csms: CsmsInProcess, station_id: str, token: str) -> int:
    def work() -> int:
        held = reservation.create(station_id, 1, token, timestamps.now_utc() + timedelta(hours=1))
        reservation.answered(held.reservation_id, "Accepted")
        return held.reservation_id

    return await csms.server.store.run(work)


async def test_v16_reservation_consumed_by_the_token_in_another_case(csms: CsmsInProcess
                                                                     ) -> None:
    await register(csms, "CASE-R16")
    await add_token(csms, CARD)
    await add_token(csms, "OTHER-CARD")
    mine = await reserve_accepted(csms, "CASE-R16", READ)
    other = await reserve_accepted(csms, "CASE-R16", CARD)
    # Held for the registered spelling, whatever the operator typed.
    assert query(csms, "SELECT id_token FROM reservation WHERE id = ?", mine) == [(CARD,)]
    async with open_websocket_url(csms.url("CASE-R16"), subprotocols=["ocpp1.6"]) as ws:
        await rpc(ws, [2, "1", "BootNotification", BOOT_16])
        started = await rpc(ws, [2, "2", "StartTransaction", {
            "connectorId": 1, "idTag": READ, "meterStart": 0, "reservationId": mine,
            "timestamp": T.format("08:00")}])
        # Another card naming the other reservation does not use it up.
        await rpc(ws, [2, "3", "StartTransaction", {
            "connectorId": 2, "idTag": "OTHER-CARD", "meterStart": 0, "reservationId": other,
            "timestamp": T.format("08:00")}])
    assert query(csms, "SELECT id, status, transaction_id FROM reservation ORDER BY id") == [
        (mine, "used", started[2]["transactionId"]), (other, "accepted", None)]


async def test_v201_authorize_start_and_reservation_ignore_case(csms: CsmsInProcess) -> None:
    await register(csms, "CASE-201")
    await add_token(csms, CARD)
    held = await reserve_accepted(csms, "CASE-201", CARD)
    token = {"idToken": READ, "type": "ISO14443"}
    async with open_websocket_url(csms.url("CASE-201"), subprotocols=["ocpp2.0.1"]) as ws:
        await rpc(ws, [2, "1", "BootNotification", BOOT_201])
        authorized = await rpc(ws, [2, "2", "Authorize", {"idToken": token}])
        assert authorized[2]["idTokenInfo"]["status"] == "Accepted"
        unknown = await rpc(ws, [2, "3", "Authorize", {
            "idToken": {"idToken": "04A2B3C4F0", "type": "ISO14443"}}])
        assert unknown[2]["idTokenInfo"]["status"] == "Unknown"
        started = await rpc(ws, [2, "4", "TransactionEvent", {
            "eventType": "Started", "timestamp": T.format("10:00"), "triggerReason": "Authorized",
            "seqNo": 0, "transactionInfo": {"transactionId": "TX-CASE"}, "idToken": token,
            "evse": {"id": 1, "connectorId": 1}, "reservationId": held}])
        assert started[2]["idTokenInfo"]["status"] == "Accepted"
    assert query(csms, "SELECT status FROM reservation WHERE id = ?", held) == [("used",)]


async def test_admin_api_and_cli_find_the_token_in_any_case(csms: CsmsInProcess) -> None:
    key = await new_key(csms)
    assert (await http(csms, "POST", "/tokens", key, {"token": CARD}))[0] == 201
    status, body = await http(csms, "POST", "/tokens", key, {"token": READ})
    assert status == 422 and "already registered as '04A2B3C4FF'" in body["error"]
    status, body = await http(csms, "GET", f"/tokens/{READ}", key)
    assert status == 200 and body["token"] == CARD
    status, body = await http(csms, "PATCH", f"/tokens/{READ}", key, {"status": "Blocked"})
    assert status == 200 and body == {**body, "token": CARD, "status": "Blocked"}
    assert (await http(csms, "PATCH", f"/tokens/{READ}", key, {"status": "Gone"}))[0] == 422
    assert (await http(csms, "GET", "/tokens/NO-SUCH", key))[0] == 404
    database = str(csms.database)

    def cli(*args: str):
        return run_cli("token", *args, "--database", database)

    added = cli("add", READ)
    assert added.returncode == 2 and "already registered as '04A2B3C4FF'" in added.stderr
    unblocked = cli("unblock", READ)
    assert unblocked.returncode == 0 and unblocked.stdout.strip() == f"token {CARD} accepted"
    assert cli("block", READ).returncode == 0
    assert query(csms, "SELECT token, status FROM id_token") == [(CARD, "Blocked")]


def legacy_database(tmp_path: Path) -> Path:
    """The previous release's database, holding one token in two spellings."""
    path = tmp_path / "legacy.sqlite3"
    shutil.copy(REPO / "tests" / "data" / "release-0.1.0.sqlite3", path)
    db = sqlite3.connect(path)
    with db:
        db.execute("INSERT INTO id_token (token, token_type, status, expires_at, created_at, "
                   "updated_at) VALUES (?, 'ISO14443', 'Blocked', NULL, ?, ?)",
                   (READ, "2026-11-29T10:31:00.000+00:00", "2026-11-29T10:31:00.000+00:00"))
    db.close()
    return path


def test_upgrade_keeps_both_spellings_and_the_stricter_status(tmp_path: Path) -> None:
    path = legacy_database(tmp_path)
    before = sqlite3.connect(path).execute(
        "SELECT id, token FROM id_token ORDER BY id").fetchall()
    assert [t for _, t in before] == [CARD, "TAG-2", READ]
    # The real upgrade on open; a second open changes nothing.
    open_database(path).close()
    open_database(path).close()
    check = sqlite3.connect(path)
    rows = check.execute("SELECT token, status, token_key FROM id_token ORDER BY id").fetchall()
    # Every row kept; the first registered spelling is the token, and the operator's block
    # of the other spelling holds for it.
    assert rows == [(CARD, "Blocked", CARD.casefold()), ("TAG-2", "Accepted", "tag-2"),
                    (READ, "Blocked", None)]
    indexes = [r[1] for r in check.execute("PRAGMA index_list('id_token')")]
    assert "id_token_token_key" in indexes
    check.close()


async def test_local_list_sends_each_token_once(csms: CsmsInProcess) -> None:
    from lite_csms.db.models import database_proxy

    await register(csms, "CASE-L")
    await add_token(csms, "TAG-A")
    await add_token(csms, CARD)

    def legacy_duplicate() -> None:
        # A second spelling as a schema-2 database could hold it (no key: see upgrade_v3),
        # changed after any list was sent.
        database_proxy.execute_sql(
            "INSERT INTO id_token (token, token_type, status, created_at, updated_at) "
            "VALUES (?, 'ISO14443', 'Accepted', ?, ?)",
            (READ, "2026-11-29T10:31:00.000+00:00", "2099-01-01T00:00:00.000+00:00"))

    await csms.server.store.run(legacy_duplicate)
    full = await csms.server.store.run(lambda: local_list.plan("CASE-L", True, 20))
    assert [e.token for e in full.entries] == [CARD, "TAG-A"]
    sent_at = timestamps.now_utc()
    await csms.server.store.run(lambda: local_list.accepted("CASE-L", full.version, sent_at))

    def block_card() -> None:
        found = authorization.find_token(READ)
        found.status = "Blocked"
        found.save()

    await csms.server.store.run(block_card)
    diff = await csms.server.store.run(lambda: local_list.plan("CASE-L", False, 20))
    assert not diff.full
    assert [(e.token, e.auth.status) for e in diff.entries] == [(CARD, "Blocked")]


async def test_reserve_now_carries_the_registered_token_and_its_group(csms: CsmsInProcess
                                                                      ) -> None:
    import trio

    from tests.test_admin_api import answer_calls

    key = await new_key(csms)
    await add_token(csms, "FLEET-7", token_type="ISO15693")
    await add_token(csms, "MEMBER-1", group_token="fleet-7")
    for station, protocol, boot in (("CASE-RN16", "ocpp1.6", BOOT_16),
                                    ("CASE-RN201", "ocpp2.0.1", BOOT_201)):
        await register(csms, station)
        async with open_websocket_url(csms.url(station), subprotocols=[protocol]) as ws:
            await rpc(ws, [2, "1", "BootNotification", boot])
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_calls, ws, {"ReserveNow": {"status": "Accepted"}})
                status, body = await http(csms, "POST", f"/stations/{station}/commands", key, {
                    "operation": "reserve", "args": {"connector": 1, "token": "member-1"}})
                assert status == 200 and body["result"] == {"status": "Accepted"}
                nursery.cancel_scope.cancel()
            if protocol == "ocpp2.0.1":
                # Authorize names the group as ReserveNow did, type included.
                authorized = await rpc(ws, [2, "2", "Authorize", {
                    "idToken": {"idToken": "member-1", "type": "ISO14443"}}])
                assert authorized[2]["idTokenInfo"]["groupIdToken"] == {
                    "idToken": "FLEET-7", "type": "ISO15693"}
    sent = [json.loads(p) for (p,) in query(
        csms, "SELECT payload FROM command WHERE action = 'ReserveNow' ORDER BY id")]
    assert (sent[0]["idTag"], sent[0]["parentIdTag"]) == ("MEMBER-1", "FLEET-7")
    assert sent[1]["idToken"] == {"idToken": "MEMBER-1", "type": "ISO14443"}
    assert sent[1]["groupIdToken"] == {"idToken": "FLEET-7", "type": "ISO15693"}
    # A member of the group uses the group's reservation, as the station would let it.
    assert query(csms, "SELECT count(*) FROM reservation WHERE id_token = 'MEMBER-1'") == [(2,)]


def test_ocpp_package_charge_point_presents_the_card_in_lower_case(
        csms_process: CsmsProcess) -> None:
    password = register_process(csms_process, "IOP-CASE", CARD)

    async def session() -> tuple[str, str]:
        ws = await connect(csms_process, "IOP-CASE", password, "ocpp1.6")
        cp = ChargePoint16("IOP-CASE", ws)
        listener = asyncio.create_task(cp.start())
        try:
            await cp.call(call16.BootNotification(charge_point_model="M",
                                                  charge_point_vendor="V"))
            auth = await cp.call(call16.Authorize(id_tag=READ))
            start = await cp.call(call16.StartTransaction(
                connector_id=1, id_tag=READ, meter_start=0, timestamp=T.format("08:00")))
            return auth.id_tag_info["status"], start.id_tag_info["status"]
        finally:
            listener.cancel()
            await ws.close()

    assert asyncio.run(session()) == ("Accepted", "Accepted")
    log = csms_process.log()
    boot_line = next(line for line in log.splitlines() if "BootNotification from" in line)
    assert "INFO" in boot_line and "V M" in boot_line and boot_line.endswith(": Accepted")

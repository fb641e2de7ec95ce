"""A chosen station password is replaced with a generated one over OCPP (net/rotation.py).

The server runs in-process on a real socket and SQLite file; each station is the `ocpp`
package's ChargePoint over `websockets` (as in tests/test_interop.py) in a worker thread
with its own asyncio loop, and keeps its password across connections as a charger does.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import trio
import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from lite_csms import passwords
from lite_csms.db.models import Command, SettingRefusal, Station, StationSetting
from lite_csms.net import rotation
from lite_csms.operations import secret
from tests.conftest import CsmsInProcess, start_in_process

CHOSEN = "my-own-chosen-password"  # 22 characters a person picked: scrypt


@dataclass
class Charger:
    """What a charger keeps across connections, and how it answers a new password:
    Accepted (and uses it from its next connection), Rejected, or "silent" (it disconnects
    before answering)."""

    station_id: str
    protocol: str
    password: str = CHOSEN
    answer: str = "Accepted"
    # 1.6: use the AuthorizationKey as sent (hex digits) instead of decoding it.
    literal_hex: bool = False
    firmware: str = "1.0"
    offered: list[str] = field(default_factory=list)


def _v16_class(charger: Charger, called: asyncio.Event) -> type:
    class Station16(ChargePoint16):
        @on("ChangeConfiguration")
        async def change(self, key: str, value: str):
            charger.offered.append(value)
            called.set()
            if charger.answer == "silent":
                await asyncio.Event().wait()
            if key == rotation.KEY_V16 and charger.answer == "Accepted":
                charger.password = value if charger.literal_hex else bytes.fromhex(
                    value).decode()
            return result16.ChangeConfiguration(status=charger.answer)
    return Station16


def _v201_class(charger: Charger, called: asyncio.Event) -> type:
    class Station201(ChargePoint201):
        @on("SetVariables")
        async def set_variables(self, set_variable_data: list, **_: object):
            item = set_variable_data[0]
            charger.offered.append(item["attribute_value"])
            called.set()
            if charger.answer == "silent":
                await asyncio.Event().wait()
            if charger.answer == "Accepted":
                charger.password = item["attribute_value"]
            return result201.SetVariables(set_variable_result=[{
                "attribute_status": charger.answer, "component": item["component"],
                "variable": item["variable"]}])
    return Station201


async def _session(port: int, charger: Charger, password: str, hold: threading.Event | None
                   ) -> str:
    """Connect with `password` and boot. Then wait for the CSMS's CALL (hold None) or until
    `hold` is set, and disconnect. Returns the boot status, or how the handshake ended."""
    token = base64.b64encode(f"{charger.station_id}:{password}".encode()).decode()
    try:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ocpp/{charger.station_id}",
            subprotocols=[charger.protocol], additional_headers={"Authorization":
                                                                 f"Basic {token}"},
            open_timeout=10)
    except websockets.InvalidStatus as exc:
        return f"HTTP {exc.response.status_code}"
    called = asyncio.Event()
    v16 = charger.protocol == "ocpp1.6"
    cp = (_v16_class if v16 else _v201_class)(charger, called)(charger.station_id, ws)
    listener = asyncio.create_task(cp.start())
    try:
        if v16:
            boot = await cp.call(call16.BootNotification(
                charge_point_model="Wallbox-R", charge_point_vendor="Interop",
                firmware_version=charger.firmware))
        else:
            boot = await cp.call(call201.BootNotification(
                charging_station={"model": "Wallbox-R", "vendor_name": "Interop",
                                  "firmware_version": charger.firmware}, reason="PowerUp"))
        if hold is None:
            await asyncio.wait_for(called.wait(), 10)
            await asyncio.sleep(0.05)  # the answer on its way out, as a charger's would be
        else:
            await asyncio.to_thread(hold.wait, 10)
        return str(boot.status)
    finally:
        listener.cancel()
        await ws.close()


async def connect(csms: CsmsInProcess, charger: Charger, password: str | None = None, *,
                  expect_call: bool = True) -> str:
    """One connection with `password` (the charger's own by default). With expect_call it
    ends after the CSMS's CALL; otherwise once the server has decided on this connection."""
    password = charger.password if password is None else password
    if expect_call:
        return await trio.to_thread.run_sync(
            lambda: asyncio.run(_session(csms.port, charger, password, None)))
    hold = threading.Event()
    decided = csms.server.rotation.decided
    result: list[str] = []

    async def client() -> None:
        result.append(await trio.to_thread.run_sync(
            lambda: asyncio.run(_session(csms.port, charger, password, hold))))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client)
        await until(lambda: csms.server.rotation.decided > decided or bool(result))
        hold.set()
    return result[0]


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


async def row(csms: CsmsInProcess, station_id: str) -> Station:
    return await csms.server.store.run(lambda: Station.get(Station.id == station_id))


async def setup(nursery: trio.Nursery, tmp_path: Path, station_id: str, **overrides: object
                ) -> tuple[CsmsInProcess, str]:
    # On by default, but off in the shared fixtures (tests/conftest.py).
    csms = await start_in_process(nursery, tmp_path,
                                  **{"rotate_chosen_passwords": True, **overrides})
    chosen = passwords.hash_password(CHOSEN)
    await csms.server.store.run(lambda: Station.create(
        id=station_id, password_hash=chosen, registration="accepted"))
    return csms, chosen


async def answered(csms: CsmsInProcess, count: int) -> None:
    await until(lambda: sum(csms.server.rotation.outcomes.values()) >= count)


async def test_a_201_station_takes_a_generated_password_and_reconnects_without_a_kdf(
        nursery, tmp_path):
    csms, chosen = await setup(nursery, tmp_path, "ROT-201")
    charger = Charger("ROT-201", "ocpp2.0.1")
    assert await connect(csms, charger) == "Accepted"
    await answered(csms, 1)
    new = charger.offered[0]
    assert charger.password == new != CHOSEN and len(new) == passwords.GENERATED_LENGTH
    station = await row(csms, "ROT-201")
    assert passwords.is_fast(station.password_hash)
    assert passwords.verify(new, station.password_hash)
    assert station.previous_password_hash == chosen and station.pending_password_hash is None
    # The command log has the request without the password; no setting shows it.
    logged = await csms.server.store.run(lambda: [c.payload for c in Command.select()])
    assert len(logged) == 1 and new not in logged[0] and "(redacted)" in logged[0]
    assert await csms.server.store.run(lambda: StationSetting.select().count()) == 0

    # The chosen password still works until the station has used the new one (here it is
    # sent another, which it takes too), at no KDF cost: the cache knows it.
    runs = csms.server.kdf.runs
    assert await connect(csms, charger, CHOSEN) == "Accepted"
    await answered(csms, 2)
    assert csms.server.kdf.runs == runs == 1
    assert charger.password == charger.offered[1]

    # Its newest password gets in with neither a KDF run nor the cache, and ends the window.
    hits = csms.server.credentials.hits
    assert await connect(csms, charger, expect_call=False) == "Accepted"
    assert (csms.server.kdf.runs, csms.server.credentials.hits) == (runs, hits)
    station = await row(csms, "ROT-201")
    assert passwords.verify(charger.password, station.password_hash)
    assert (station.previous_password_hash, station.pending_password_hash) == (None, None)
    assert csms.server.rotation.outcomes == {"Accepted": 2}
    for old in (CHOSEN, charger.offered[0]):
        assert await connect(csms, charger, old, expect_call=False) == "HTTP 401"


async def test_a_16_station_gets_an_authorization_key_in_hex_and_either_form_gets_in(
        nursery, tmp_path):
    csms, chosen = await setup(nursery, tmp_path, "ROT-16")
    charger = Charger("ROT-16", "ocpp1.6", literal_hex=True)
    assert await connect(csms, charger) == "Accepted"
    await answered(csms, 1)
    key = charger.offered[0]
    # Security Whitepaper: 16 to 20 bytes, sent as at most 40 hexadecimal digits.
    assert len(key) == 40 and bytes.fromhex(key).decode().isalnum()
    station = await row(csms, "ROT-16")
    decoded = bytes.fromhex(key).decode()
    assert passwords.verify(decoded, station.password_hash)
    assert station.previous_password_hash == chosen
    # A charger that uses the key undecoded gets in too, with no KDF, and that settles it.
    runs = csms.server.kdf.runs
    assert charger.password == key
    assert await connect(csms, charger, expect_call=False) == "Accepted"
    assert csms.server.kdf.runs == runs
    station = await row(csms, "ROT-16")
    assert passwords.verify(key, station.password_hash)
    assert (station.previous_password_hash, station.pending_password_hash) == (None, None)
    for old in (CHOSEN, decoded):
        assert await connect(csms, charger, old, expect_call=False) == "HTTP 401"
    logged = await csms.server.store.run(lambda: Command.get().payload)
    assert key not in logged and orjson.loads(logged)["key"] == rotation.KEY_V16


async def test_rejected_keeps_the_chosen_password_and_is_not_sent_again_until_new_firmware(
        nursery, tmp_path):
    csms, chosen = await setup(nursery, tmp_path, "ROT-REJ")
    charger = Charger("ROT-REJ", "ocpp1.6", answer="Rejected")
    assert await connect(csms, charger) == "Accepted"
    await answered(csms, 1)
    station = await row(csms, "ROT-REJ")
    assert station.password_hash == chosen
    assert (station.previous_password_hash, station.pending_password_hash) == (None, None)
    refusal = await csms.server.store.run(lambda: SettingRefusal.get())
    assert (refusal.key, refusal.status, refusal.firmware_version) == (
        rotation.KEY_V16, "Rejected", "1.0")

    assert await connect(csms, charger, expect_call=False) == "Accepted"
    assert len(charger.offered) == 1 and csms.server.rotation.outcomes == {"Rejected": 1}

    # New firmware may take it: it is sent once more.
    charger.firmware, charger.answer = "2.0", "Accepted"
    assert await connect(csms, charger) == "Accepted"
    await answered(csms, 2)
    station = await row(csms, "ROT-REJ")
    assert passwords.verify(charger.password, station.password_hash)
    assert await csms.server.store.run(lambda: SettingRefusal.select().count()) == 0


async def test_a_lost_answer_leaves_both_passwords_working(nursery, tmp_path):
    csms, chosen = await setup(nursery, tmp_path, "ROT-LOST")
    charger = Charger("ROT-LOST", "ocpp2.0.1", answer="silent")
    assert await connect(csms, charger) == "Accepted"
    await answered(csms, 1)
    assert csms.server.rotation.outcomes == {rotation.LOST: 1}
    station = await row(csms, "ROT-LOST")
    assert station.password_hash == chosen and station.previous_password_hash is None
    assert len(station.pending_password_hash.split()) == 1
    # It may or may not have stored the first: its chosen one works (and is sent another,
    # lost too), and so does the first one it was sent.
    assert await connect(csms, charger, CHOSEN) == "Accepted"
    await answered(csms, 2)
    assert len((await row(csms, "ROT-LOST")).pending_password_hash.split()) == 2
    runs = csms.server.kdf.runs
    assert await connect(csms, charger, charger.offered[0], expect_call=False) == "Accepted"
    assert csms.server.kdf.runs == runs
    station = await row(csms, "ROT-LOST")
    assert passwords.verify(charger.offered[0], station.password_hash)
    assert (station.previous_password_hash, station.pending_password_hash) == (None, None)
    assert await connect(csms, charger, CHOSEN, expect_call=False) == "HTTP 401"


async def test_unconfirmed_passwords_are_capped(nursery, tmp_path):
    csms, _ = await setup(nursery, tmp_path, "ROT-CAP")
    charger = Charger("ROT-CAP", "ocpp1.6", answer="silent")
    for attempt in (1, 2):  # a 1.6 attempt leaves two hashes pending: the key and its hex
        assert await connect(csms, charger) == "Accepted"
        await answered(csms, attempt)
    assert len((await row(csms, "ROT-CAP")).pending_password_hash.split()) == \
        rotation.MAX_PENDING
    assert await connect(csms, charger, expect_call=False) == "Accepted"
    assert len(charger.offered) == 2
    # Either one sent gets in and settles it.
    first = bytes.fromhex(charger.offered[0]).decode()
    assert await connect(csms, charger, first, expect_call=False) == "Accepted"
    station = await row(csms, "ROT-CAP")
    assert passwords.verify(first, station.password_hash)
    assert station.pending_password_hash is None


async def test_nothing_is_sent_when_the_operator_turned_it_off(nursery, tmp_path):
    csms, chosen = await setup(nursery, tmp_path, "ROT-OFF", rotate_chosen_passwords=False)
    charger = Charger("ROT-OFF", "ocpp2.0.1")
    assert await connect(csms, charger, expect_call=False) == "Accepted"
    assert charger.offered == [] and not csms.server.rotation.outcomes
    assert (await row(csms, "ROT-OFF")).password_hash == chosen


def test_a_password_in_any_settings_request_is_redacted_and_nothing_else_is():
    v16 = {"key": "AuthorizationKey", "value": "41424344"}
    assert secret.redacted("ChangeConfiguration", v16) == {"key": "AuthorizationKey",
                                                           "value": secret.REDACTED}
    assert v16["value"] == "41424344"  # the request itself is sent unchanged
    heartbeat = {"key": "HeartbeatInterval", "value": "300"}
    assert secret.redacted("ChangeConfiguration", heartbeat) is heartbeat
    mixed = {"setVariableData": [
        {"attributeValue": "pw-0123456789abcdef", "component": {"name": "SecurityCtrlr"},
         "variable": {"name": "BasicAuthPassword"}},
        {"attributeValue": "60", "component": {"name": "OCPPCommCtrlr"},
         "variable": {"name": "HeartbeatInterval"}}]}
    assert [d["attributeValue"] for d in secret.redacted("SetVariables", mixed)[
        "setVariableData"]] == [secret.REDACTED, "60"]
    assert secret.writes_secret("SetVariables", mixed)
    assert not secret.writes_secret("SetVariables", {"setVariableData": mixed[
        "setVariableData"][1:]})

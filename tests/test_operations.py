"""Remote operations: valid CALLs for every version, and their effects, against the simulator."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
import trio

from lite_csms.domain import AuthResult
from lite_csms.handlers.local_list import ListEntry, PlannedList
from lite_csms.ocppj.session import RpcSession
from lite_csms.ocppj.versions import Version
from lite_csms.operations import catalogue as ops
from lite_csms.operations import charging, maintenance
from lite_csms.operations.effects import settings_learned
from tests.conftest import REPO, start_in_process
from tests.test_server import query, register

ALL_VERSIONS = list(Version)


def every_request(version: Version) -> list[ops.Request]:
    v2 = version.is_2x
    key = "OCPPCommCtrlr.HeartbeatInterval" if v2 else "HeartbeatInterval"
    return [
        ops.remote_start(version, 1, "GUEST-42", 7),
        ops.remote_stop(version, 12, "TX-1"),
        ops.reset(version, hard=True),
        ops.reset(version, hard=False),
        *([ops.reset(version, hard=True, evse=2)] if v2 else []),
        ops.change_availability(version, 0, operative=False),
        ops.change_availability(version, 2, operative=True),
        ops.unlock(version, 1),
        ops.clear_cache(version),
        ops.trigger(version, "StatusNotification", 1),
        ops.trigger(version, "Heartbeat", None),
        ops.data_transfer(version, "com.example", "ping", {"a": 1} if v2 else "x"),
        ops.get_config(version, [key]),
        ops.set_config(version, key, "900"),
        ops.reserve(version, 1, "GUEST-42", "ISO14443", datetime(2027, 1, 1, tzinfo=UTC), 5),
        ops.reserve(version, 0, "GUEST-42", "Central", datetime(2027, 1, 1, tzinfo=UTC), 6),
        ops.reserve(version, 1, "GUEST-42", "ISO14443", datetime(2027, 1, 1, tzinfo=UTC), 7,
                    ("FLEET-7", "Central")),
        ops.cancel_reservation(version, 5),
        ops.send_local_list(version, PlannedList(3, True, (
            ListEntry("TAG-1", "ISO14443", AuthResult("Accepted")),
            ListEntry("TAG-2", "ISO14443", AuthResult(
                "Blocked", datetime(2027, 1, 1, tzinfo=UTC), "GROUP-1")),
        ))),
        ops.send_local_list(version, PlannedList(4, False, ())),
        ops.get_local_list_version(version),
        *management_requests(version),
    ]


def schedules(version: Version, at: datetime) -> list[ops.Request]:
    """set-limit's Recurring, Relative and several-period profiles."""
    day = [(0, 16.0), (3600, 10.0), (7 * 3600, 32.05)]
    return [
        charging.set_limit(version, 1, None, "A", 14, at, periods=day),
        charging.set_limit(version, 1, None, "A", 15, at, kind="Recurring",
                           recurrency="Daily", periods=day, duration=86400),
        charging.set_limit(version, 0, 11000, "W", 16, at, kind="Recurring",
                           recurrency="Weekly", stack_level=1),
        charging.set_limit(version, 1, None, "W", 17, None, kind="Relative",
                           periods=[(0, 3680), (1800, 7360)]),
        charging.set_limit(version, 2, 6, "A", 18, None, kind="Relative",
                           transaction_id=5 if version is Version.OCPP16 else "TX-5"),
    ]


def management_requests(version: Version) -> list[ops.Request]:
    """Smart charging, firmware, logs and reports: every builder, in every shape it has."""
    at = datetime(2027, 1, 1, tzinfo=UTC)
    requests = [
        charging.set_limit(version, 0, 16, "A", 11, at),
        charging.set_limit(version, 1, 7.2, "W", 12, at, stack_level=2, duration=600),
        charging.set_limit(version, 1, 10.55, "A", 13, at, transaction_id=5 if version
                           is Version.OCPP16 else "TX-5"),
        *schedules(version, at),
        charging.clear_limit(version, 11, None, None, None),
        charging.clear_limit(version, None, 1, "TxDefaultProfile", 0),
        charging.clear_limit(version, None, None, None, None),
        charging.composite_schedule(version, 1, 3600, "W"),
        charging.composite_schedule(version, 0, 60, None),
        maintenance.update_firmware(version, "https://fw.example/1.bin", at, 21, retries=2,
                                    retry_interval=30),
        maintenance.get_diagnostics(version, "ftp://logs.example/", 22),
        maintenance.get_diagnostics(version, "ftp://logs.example/", 23, since=at, until=at),
    ]
    if version.is_2x:
        requests += [
            charging.get_charging_profiles(version, 24, None, None),
            charging.get_charging_profiles(version, 25, 1, "TxProfile"),
            maintenance.update_firmware(version, "https://fw.example/2.bin", at, 26,
                                        signing_certificate="-----BEGIN CERTIFICATE-----",
                                        signature="c2lnbmF0dXJl"),
            maintenance.get_diagnostics(version, "ftp://logs.example/", 27,
                                        log_type="SecurityLog"),
            maintenance.base_report(version, "FullInventory", 28),
            maintenance.base_report(version, "SummaryInventory", 29),
            maintenance.get_report(version, ["OCPPCommCtrlr", "EVSE.AvailabilityState"], 30),
            maintenance.transaction_status(version, None),
            maintenance.transaction_status(version, "TX-5"),
        ]
    return requests


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_every_operation_is_schema_valid(version: Version) -> None:
    for request in every_request(version):
        session = RpcSession(version)
        session.start_call(request.action, request.payload, now=0)  # raises if invalid


def test_keys_and_stops_that_cannot_be_expressed() -> None:
    with pytest.raises(ops.OperationError):
        ops.set_config(Version.OCPP201, "HeartbeatInterval", "60")
    with pytest.raises(ops.OperationError):
        ops.get_config(Version.OCPP201, [])
    with pytest.raises(ops.OperationError):
        ops.remote_stop(Version.OCPP201, 3, None)
    assert ops.get_config(Version.OCPP16, []).payload == {}
    for cannot_build in (
        lambda: maintenance.base_report(Version.OCPP16, "FullInventory", 1),
        lambda: maintenance.get_report(Version.OCPP201, [], 1),
        lambda: maintenance.transaction_status(Version.OCPP16, None),
        lambda: charging.get_charging_profiles(Version.OCPP16, 1, None, None),
        lambda: charging.set_limit(Version.OCPP201, 0, 16, "A", 1, datetime.now(UTC),
                                   transaction_id="TX-1"),
        lambda: charging.set_limit(Version.OCPP201, 1, 16, "kW", 1, datetime.now(UTC)),
        lambda: ops.reset(Version.OCPP16, hard=True, evse=1),
        lambda: ops.reset(Version.OCPP201, hard=True, evse=0),
    ):
        with pytest.raises(ops.OperationError):
            cannot_build()


AT = datetime(2026, 1, 1, 7, tzinfo=UTC)


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"kind": "Recurring", "periods": [(0, 16)]}, "recurrency Daily or Weekly"),
    ({"kind": "Recurring", "recurrency": "Daily", "periods": [(0, 16)], "start": None},
     "needs a start"),
    ({"kind": "Relative", "periods": [(0, 16)]}, "takes no start"),
    ({"recurrency": "Daily", "periods": [(0, 16)]}, "Recurring profiles only"),
    ({"kind": "Dynamic", "periods": [(0, 16)]}, "kind must be"),
    ({"periods": [(60, 16)]}, "first period must start at 0"),
    ({"periods": [(0, 16), (3600, 10), (3600, 8)]}, "increasing order"),
    ({"periods": [(0, 16), (60, -1)]}, "not be negative"),
    ({"periods": []}, "at least one period"),
    ({"periods": [(0, 16)], "limit": 10}, "either limit or periods"),
    ({"kind": "Recurring", "recurrency": "Daily", "periods": [(0, 16), (86400, 8)]},
     "fits in 86400 s"),
    ({"kind": "Recurring", "recurrency": "Daily", "periods": [(0, 16)], "duration": 90000},
     "fits in 86400 s"),
])
def test_schedules_that_cannot_be_built(kwargs: dict, error: str) -> None:
    args = {"limit": None, "start": AT, **kwargs}
    limit, start = args.pop("limit"), args.pop("start")
    for version in ALL_VERSIONS:
        with pytest.raises(ops.OperationError, match=error):
            charging.set_limit(version, 1, limit, "A", 1, start, **args)


def test_set_limit_schedule_from_named_arguments() -> None:
    from lite_csms.operations.named import build

    args = {"connector": 1, "kind": "Recurring", "recurrency": "Daily",
            "start": "2026-01-01T07:00Z", "periods": [{"start": 0, "limit": 16},
                                                      {"start": 3600, "limit": 10.04}]}
    v16 = build(Version.OCPP16, "set-limit", args, lambda _: None, 9).payload
    profile = v16["csChargingProfiles"]
    assert (profile["chargingProfileKind"], profile["recurrencyKind"]) == ("Recurring", "Daily")
    assert profile["chargingSchedule"]["startSchedule"] == "2026-01-01T07:00:00Z"
    assert profile["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 16}, {"startPeriod": 3600, "limit": 10.0}]
    v21 = build(Version.OCPP21, "set-limit", {"kind": "Relative", "limit": 6},
                lambda _: None, 9).payload["chargingProfile"]
    assert v21["chargingProfileKind"] == "Relative"
    assert "startSchedule" not in v21["chargingSchedule"][0]
    absolute = build(Version.OCPP201, "set-limit", {"limit": 6}, lambda _: None, 9).payload
    assert "startSchedule" in absolute["chargingProfile"]["chargingSchedule"][0]
    for bad in ({"periods": [[0, 16]]}, {"periods": [{"start": 0}]},
                {"limit": 6, "periods": [{"start": 0, "limit": 6}]}):
        with pytest.raises(ops.OperationError):
            build(Version.OCPP201, "set-limit", bad, lambda _: None, 9)
    reset = build(Version.OCPP201, "reset", {"evse": 2}, lambda _: None, 9)
    assert reset.payload == {"type": "OnIdle", "evseId": 2}
    with pytest.raises(ops.OperationError, match="cannot target one EVSE"):
        build(Version.OCPP16, "reset", {"evse": 2}, lambda _: None, 9)


def test_settings_learned_from_answers() -> None:
    get16 = ops.get_config(Version.OCPP16, [])
    answer = {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False,
                                    "value": "300"}, {"key": "NumberOfConnectors",
                                                      "readonly": True, "value": "2"}]}
    assert settings_learned(get16, answer) == [("HeartbeatInterval", "300", False),
                                               ("NumberOfConnectors", "2", True)]
    change = ops.set_config(Version.OCPP16, "MeterValueSampleInterval", "900")
    assert settings_learned(change, {"status": "Rejected"}) == []
    assert settings_learned(change, {"status": "Accepted"}) == [
        ("MeterValueSampleInterval", "900", False)]
    set2 = ops.set_config(Version.OCPP201, "OCPPCommCtrlr.HeartbeatInterval", "900")
    result = {"setVariableResult": [{"attributeStatus": "Accepted", "component": {
        "name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}
    assert settings_learned(set2, result) == [("OCPPCommCtrlr.HeartbeatInterval", "900", False)]


async def wait_connected(csms, station_id: str) -> None:
    with trio.fail_after(15):
        while not (station_id in csms.server.connections
                   and csms.server.connections[station_id].accepted.is_set()):
            await trio.sleep(0.05)


async def until(csms, sql: str, expected: list, *args: object) -> None:
    with trio.fail_after(10):
        while query(csms, sql, *args) != expected:
            await trio.sleep(0.05)


@pytest.mark.parametrize(("protocol", "key"), [
    ("ocpp1.6", "HeartbeatInterval"),
    ("ocpp2.0.1", "OCPPCommCtrlr.HeartbeatInterval"),
    ("ocpp2.1", "OCPPCommCtrlr.HeartbeatInterval"),
])
async def test_operations_against_the_simulator(nursery, tmp_path, protocol, key) -> None:
    csms = await start_in_process(nursery, tmp_path)
    station = "SIM-OPS"
    await register(csms, station)
    from lite_csms.db.models import IdToken
    await csms.server.store.run(lambda: IdToken.create(token="GUEST-42"))
    simulator = [sys.executable, str(REPO / "tools" / "station_sim.py"),
                 "--url", f"ws://127.0.0.1:{csms.port}/ocpp", "--id", station,
                 "--protocol", protocol, "--scenario", "boot", "--linger", "inf",
                 "--time-scale", "20"]
    async with trio.open_nursery() as sim_nursery:
        sim_nursery.start_soon(lambda: trio.run_process(
            simulator, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False))
        await wait_connected(csms, station)
        # The boot answer sets the heartbeat interval: change it only after the boot is done.
        await until(csms, "SELECT count(*) FROM connector", [(1,)])
        version = csms.server.connections[station].ctx.version
        send = csms.server.commands.send

        async def run(request: ops.Request) -> dict:
            outcome = await send(station, request.action, request.payload, requested_by="test")
            assert outcome.status == "answered", outcome
            return outcome.result

        changed = await run(ops.set_config(version, key, "900"))
        assert "Accepted" in str(changed)
        await until(csms, "SELECT value FROM station_setting WHERE key = ?", [("900",)], key)
        got = await run(ops.get_config(version, [key]))
        assert "900" in str(got)
        started = await run(ops.remote_start(version, 1, "GUEST-42", 1))
        assert started["status"] == "Accepted"
        await until(csms, 'SELECT count(*) FROM "transaction" WHERE stopped_at IS NULL', [(1,)])
        tx_id, station_tx_id = query(csms, 'SELECT id, station_tx_id FROM "transaction"')[0]
        stopped = await run(ops.remote_stop(version, tx_id, station_tx_id))
        assert stopped["status"] == "Accepted"
        await until(csms, 'SELECT count(*) FROM "transaction" WHERE stopped_at IS NULL', [(0,)])
        assert (await run(ops.unlock(version, 1)))["status"] in ("Unlocked", "UnlockFailed")
        assert (await run(ops.clear_cache(version)))["status"] == "Accepted"
        assert (await run(ops.change_availability(version, 1, operative=False)))[
            "status"] == "Accepted"
        assert (await run(ops.trigger(version, "Heartbeat", None)))["status"] == "Accepted"
        assert (await run(ops.data_transfer(version, "com.example", None, None)))[
            "status"] == "UnknownVendorId"
        sim_nursery.cancel_scope.cancel()
    rows = query(csms, "SELECT count(*), sum(status = 'answered') FROM command")
    assert rows == [(9, 9)]

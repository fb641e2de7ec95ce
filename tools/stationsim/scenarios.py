"""Scenarios: what a station does after it boots, by name (`--scenario`).

Each is an async function of the station; `SCENARIOS` names them for the command line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from lite_csms.ocppj.versions import Version

from .state import ChargePlan, StepFailed
from .station import ChargingStation


async def scenario_boot(station: ChargingStation) -> None:
    """Nothing beyond what every connection does: BootNotification and connector statuses."""


async def scenario_heartbeat(station: ChargingStation) -> None:
    """Let the heartbeat task send N heartbeats at the interval the CSMS gave."""
    await station.wait_heartbeats(station.options.heartbeats)


async def scenario_charge(station: ChargingStation) -> None:
    """One session on connector 1 delivering exactly --energy-wh over --meter-values samples."""
    options = station.options
    connector = station.connectors[1]
    if not connector.is_free:
        raise StepFailed("connector 1 is not available")
    plan = ChargePlan(options.power_w, options.energy_wh, options.meter_values)
    tx = station.new_transaction(connector, options.id_tag, plan)
    try:
        await station.charge(tx)
    finally:
        report = station.report
        report.transaction_id = tx.csms_id if station.version is Version.OCPP16 else (
            tx.station_tx_id)
        report.meter_start_wh = tx.meter_start_wh
        report.meter_stop_wh = tx.register_wh
        report.energy_wh = tx.register_wh - tx.meter_start_wh


SCENARIOS: dict[str, Callable[[ChargingStation], Awaitable[None]]] = {
    "boot": scenario_boot,
    "heartbeat": scenario_heartbeat,
    "charge": scenario_charge,
}

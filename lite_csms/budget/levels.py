"""The budget policy's levels: concrete settings per protocol, and when each applies.

Only what a CSMS controls on an unmodified charger is used: 1.6 configuration keys through
ChangeConfiguration, 2.x variables through SetVariables. Transaction start and stop, and the
meter readings they carry, are never touched: they are what the owner bills from.
"""

from __future__ import annotations

from dataclasses import dataclass

from lite_csms.ocppj.versions import Version

NORMAL, LEAN, MINIMAL = "normal", "lean", "minimal"
LEVELS = (NORMAL, LEAN, MINIMAL)
ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"


@dataclass(frozen=True, slots=True)
class LevelPlan:
    heartbeat: int
    # Fraction of the NAT timeout the WebSocket ping interval takes: pings keep the carrier's
    # NAT mapping alive, and a lost mapping costs a reconnect, dearer than any ping.
    ping_fraction: float
    sample_interval: int
    measurands: tuple[str, ...]
    aligned_interval: int
    min_status_duration: int


PLANS = {
    NORMAL: LevelPlan(3600, 0.9, 300, (ENERGY, POWER), 0, 0),
    LEAN: LevelPlan(21600, 0.9, 900, (ENERGY,), 0, 60),
    # No periodic samples at all: the start and stop readings still bill the session.
    MINIMAL: LevelPlan(86400, 0.95, 0, (ENERGY,), 0, 300),
}

# 1.6 key -> 2.x Component.Variable; None where 2.x has no standard equivalent.
_V2_NAMES = {
    "HeartbeatInterval": "OCPPCommCtrlr.HeartbeatInterval",
    "WebSocketPingInterval": "OCPPCommCtrlr.WebSocketPingInterval",
    "MeterValueSampleInterval": "SampledDataCtrlr.TxUpdatedInterval",
    "MeterValuesSampledData": "SampledDataCtrlr.TxUpdatedMeasurands",
    "ClockAlignedDataInterval": "AlignedDataCtrlr.Interval",
    "MinimumStatusDuration": None,
}


def ping_interval(plan: LevelPlan, nat_timeout: int) -> int:
    return max(10, int(nat_timeout * plan.ping_fraction))


def settings_for(level: str, version: Version, nat_timeout: int) -> dict[str, str]:
    """The settings a station at `level` should hold, keyed as the station names them."""
    plan = PLANS[level]
    v16 = {
        "HeartbeatInterval": str(plan.heartbeat),
        "WebSocketPingInterval": str(ping_interval(plan, nat_timeout)),
        "MeterValueSampleInterval": str(plan.sample_interval),
        "MeterValuesSampledData": ",".join(plan.measurands),
        "ClockAlignedDataInterval": str(plan.aligned_interval),
        "MinimumStatusDuration": str(plan.min_status_duration),
    }
    if version is Version.OCPP16:
        return v16
    return {name: v16[key] for key, name in _V2_NAMES.items() if name is not None}


def heartbeat_for(level: str) -> int:
    """What a BootNotification answer's interval says at this level."""
    return PLANS[level].heartbeat


def choose(used: int, projected: int, cap: int, warn_ratio: float) -> tuple[str, str]:
    """The level for a station, and why, from its cycle's use and projected end total."""
    warn_at = int(cap * warn_ratio)
    if used >= warn_at or projected >= cap:
        return MINIMAL, (f"projected {projected:,} B of a {cap:,} B cap"
                         f" (used {used:,} B)")
    if projected >= warn_at:
        return LEAN, f"projected {projected:,} B passes the warning line of {warn_at:,} B"
    return NORMAL, f"projected {projected:,} B is under the warning line of {warn_at:,} B"

"""The budget policy's levels: concrete settings per protocol, and when each applies.

This module is the one place that says what each level sends: `choices_for` gives, per
setting, the values in order of preference (a later one is sent only where the charger refused
the earlier ones), and `settings_for` the first choices.

Only what a CSMS controls on an unmodified charger is used: 1.6 configuration keys through
ChangeConfiguration, 2.x variables through SetVariables. Transaction start and stop, and the
meter readings they carry, are never touched: they are what the owner bills from.

- **Keepalive.** The server's TCP keepalive keeps the carrier's NAT mapping (104 B a probe
  and its ACK, against 216 B for a WebSocket ping and pong), so every level first asks the
  charger to switch its WebSocket ping off (`0`); where it refuses, its ping at
  0.9 x `nat_timeout` is the fallback (see `keepalive_idle`).
- **Meter samples** are kept for disputes and delivered at the end of the transaction, not
  live: 2.x `SampledDataCtrlr.TxEndedMeasurands`/`TxEndedInterval` with `TxUpdatedInterval`
  0; 1.6 `StopTxnSampledData`, with live `MeterValuesSampledData` emptied where the charger
  accepts it (1.6 has no interval of its own for StopTransaction samples:
  `MeterValueSampleInterval` paces both). A live reading is fetched on demand instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from lite_csms.ocppj.versions import Version

NORMAL, LEAN, MINIMAL = "normal", "lean", "minimal"
LEVELS = (NORMAL, LEAN, MINIMAL)
ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
# Share of the NAT timeout a keepalive interval takes: a probe must land before the mapping
# is forgotten, with room for scheduling and one lost probe's retry to be late.
KEEPALIVE_FRACTION = 0.9
PING_OFF = "0"


@dataclass(frozen=True, slots=True)
class LevelPlan:
    heartbeat: int
    # Seconds between the meter samples kept for disputes (delivered at the transaction's
    # end); 0: none, the start and stop registers alone bill the session.
    sample_interval: int
    measurands: tuple[str, ...]
    aligned_interval: int
    min_status_duration: int


PLANS = {
    # 15-minute register readings, the granularity of most tariffs and grid metering; the
    # heartbeat only keeps the clock (TCP keepalive holds the NAT mapping, every reconnect
    # boots): 4 a day.
    NORMAL: LevelPlan(21600, 900, (ENERGY,), 0, 0),
    LEAN: LevelPlan(86400, 3600, (ENERGY,), 0, 60),
    MINIMAL: LevelPlan(86400, 0, (ENERGY,), 0, 300),
}

HEARTBEAT_KEYS = frozenset({"HeartbeatInterval", "OCPPCommCtrlr.HeartbeatInterval"})
PING_KEYS = frozenset({"WebSocketPingInterval", "OCPPCommCtrlr.WebSocketPingInterval"})


def ping_interval(nat_timeout: int) -> int:
    """The charger's WebSocket ping interval where it refuses to switch it off (seconds)."""
    return max(10, int(nat_timeout * KEEPALIVE_FRACTION))


def keepalive_idle(nat_timeout: int) -> int:
    """The server's TCP_KEEPIDLE that holds a NAT mapping of `nat_timeout` seconds."""
    return max(1, int(nat_timeout * KEEPALIVE_FRACTION))


def choices_for(level: str, version: Version, nat_timeout: int
                ) -> dict[str, tuple[str, ...]]:
    """Per setting (keyed as the station names it), its values in order of preference."""
    plan = PLANS[level]
    interval = str(plan.sample_interval)
    measurands = ",".join(plan.measurands)
    ping = (PING_OFF, str(ping_interval(nat_timeout)))
    if version is Version.OCPP16:
        return {
            "HeartbeatInterval": (str(plan.heartbeat),),
            "WebSocketPingInterval": ping,
            # Paces both the live MeterValues and the samples in StopTransaction.
            "MeterValueSampleInterval": (interval,),
            # Empty: no live samples; a charger that refuses an empty list sends the register.
            "MeterValuesSampledData": ("", ENERGY),
            "StopTxnSampledData": (measurands,),
            "ClockAlignedDataInterval": (str(plan.aligned_interval),),
            "MinimumStatusDuration": (str(plan.min_status_duration),),
        }
    # Where TxUpdatedInterval 0 is refused, live samples at the level's pace are the next best.
    updated = ("0",) if plan.sample_interval == 0 else ("0", interval)
    return {
        "OCPPCommCtrlr.HeartbeatInterval": (str(plan.heartbeat),),
        "OCPPCommCtrlr.WebSocketPingInterval": ping,
        "SampledDataCtrlr.TxUpdatedInterval": updated,
        "SampledDataCtrlr.TxUpdatedMeasurands": (ENERGY,),
        "SampledDataCtrlr.TxEndedMeasurands": (measurands,),
        "SampledDataCtrlr.TxEndedInterval": (interval,),
        "AlignedDataCtrlr.Interval": (str(plan.aligned_interval),),
    }


def settings_for(level: str, version: Version, nat_timeout: int) -> dict[str, str]:
    """The settings a station at `level` should hold, keyed as the station names them: the
    first choice of each (what a charger that accepts everything ends up with)."""
    return {key: values[0] for key, values in choices_for(level, version, nat_timeout).items()}


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

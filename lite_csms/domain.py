"""Version-neutral values that the version modules build from OCPP payloads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

ENERGY_REGISTER = "Energy.Active.Import.Register"

# Prefixes OCPP units may carry; values are stored in the base unit so sums never mix scales.
_UNIT_SCALE = {"kWh": ("Wh", 1000.0), "kW": ("W", 1000.0), "kvarh": ("varh", 1000.0),
               "kvar": ("var", 1000.0), "kVA": ("VA", 1000.0)}


@dataclass(frozen=True, slots=True)
class Sample:
    timestamp: datetime
    measurand: str
    value: float
    unit: str | None = None
    phase: str = ""
    location: str = ""
    context: str = ""

    @classmethod
    def normalised(
        cls, timestamp: datetime, measurand: str, value: float, unit: str | None,
        phase: str = "", location: str = "", context: str = "",
    ) -> Sample:
        if unit in _UNIT_SCALE:
            unit, factor = _UNIT_SCALE[unit]
            value *= factor
        return cls(timestamp, measurand, value, unit, phase, location, context)

    @property
    def is_energy_register(self) -> bool:
        # The total on the outlet, not a per-phase share or an EV-side reading.
        return (self.measurand == ENERGY_REGISTER and self.phase == ""
                and self.location in ("", "Outlet"))


@dataclass(frozen=True, slots=True)
class BootInfo:
    vendor: str
    model: str
    serial_number: str | None = None
    firmware_version: str | None = None
    iccid: str | None = None
    imsi: str | None = None


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Accepted, Blocked, Expired, Invalid, Unknown or ConcurrentTx."""

    status: str
    expires_at: datetime | None = None
    group_token: str | None = None
    # The group's 2.x idToken type: the registered group token's, else Central.
    group_type: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionEvent:
    """A 2.x TransactionEvent, as the domain sees it."""

    event_type: str
    station_tx_id: str
    seq_no: int
    timestamp: datetime
    trigger_reason: str
    offline: bool
    evse_id: int | None
    connector_id: int | None
    id_token: str | None
    id_token_type: str | None
    stopped_reason: str | None
    reservation_id: int | None
    samples: tuple[Sample, ...]

"""Version-neutral values that the version modules build from OCPP payloads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

ENERGY_REGISTER = "Energy.Active.Import.Register"

# Units by their lower-cased name: (the base unit stored, factor). Matched ignoring case, so
# "kwh" and "KWH" scale like "kWh" (2.x units are free text; a charger that writes "kwh" must
# not be billed 1 Wh for 1 kWh). Values are stored in the base unit so sums never mix scales.
_UNIT_SCALE = {
    "wh": ("Wh", 1.0), "kwh": ("Wh", 1e3), "mwh": ("Wh", 1e6),
    "w": ("W", 1.0), "kw": ("W", 1e3),
    "varh": ("varh", 1.0), "kvarh": ("varh", 1e3), "var": ("var", 1.0), "kvar": ("var", 1e3),
    "va": ("VA", 1.0), "kva": ("VA", 1e3),
}
# How OCPP spells them; another spelling of one is accepted and worth telling the vendor.
_CANONICAL = {unit.lower(): unit for unit in
              ("Wh", "kWh", "MWh", "W", "kW", "varh", "kvarh", "var", "kvar", "VA", "kVA")}


def unit_respelled(unit: str | None) -> str | None:
    """The canonical spelling of a unit written otherwise ("kwh" -> "kWh"), else None."""
    if unit is None:
        return None
    canonical = _CANONICAL.get(unit.lower())
    return canonical if canonical is not None and canonical != unit else None


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
        if unit is not None and unit.lower() in _UNIT_SCALE:
            unit, factor = _UNIT_SCALE[unit.lower()]
            value *= factor
        return cls(timestamp, measurand, value, unit, phase, location, context)

    def unit_refusal(self) -> str | None:
        """Why this sample cannot be stored as sent, or None: an energy register reading
        (Energy.Active.*.Register) must be in Wh, kWh or MWh (any case); billing never guesses
        what a register in varh or an unknown unit means. Call on a normalised sample."""
        if (self.measurand.startswith("Energy.Active.") and self.measurand.endswith(".Register")
                and self.unit != "Wh"):
            return f"is not an energy unit (Wh, kWh or MWh) for {self.measurand}"
        return None

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

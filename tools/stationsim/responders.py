"""Station-side state for the simulator's answers to smart-charging and reporting calls.

Free of the station's types, so it can be read alone: the profiles a station holds and the
limit they add up to, and the device-model entries and NotifyReport parts it reports. The
answers themselves are in v16.py and v2.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Payload = dict[str, Any]

# The simulated charger's hardware: 32 A on three phases of 230 V.
MAX_CURRENT_A = 32.0
PHASES = 3
NOMINAL_VOLTAGE = 230.0
# Report parts are small on purpose: a real station splits large reports, and so every
# report of the simulator's few dozen variables arrives in several parts.
ENTRIES_PER_REPORT_PART = 8
FIRMWARE_STEPS = ("Downloading", "Downloaded", "Installing", "Installed")
UPLOAD_STEPS = ("Uploading", "Uploaded")
# Simulated seconds between two progress reports of a download, install or upload.
PROGRESS_STEP_SECONDS = 5.0


def to_unit(limit: float, unit: str, wanted: str) -> float:
    if unit == wanted:
        return limit
    per_amp = NOMINAL_VOLTAGE * PHASES
    return limit * per_amp if wanted == "W" else limit / per_amp


@dataclass(slots=True)
class HeldProfile:
    """One charging profile as the CSMS sent it (1.6 or 2.x shape), on one EVSE/connector."""

    evse: int
    profile: Payload

    @property
    def id(self) -> int:
        return self.profile.get("chargingProfileId", self.profile.get("id"))

    @property
    def purpose(self) -> str:
        return self.profile["chargingProfilePurpose"]

    @property
    def stack_level(self) -> int:
        return self.profile["stackLevel"]

    @property
    def schedule(self) -> Payload:
        found = self.profile["chargingSchedule"]
        # 1.6 has one schedule; 2.x a list of them, of which this station uses the first.
        return found[0] if isinstance(found, list) else found

    def limit(self, unit: str) -> float:
        first = self.schedule["chargingSchedulePeriod"][0]
        return to_unit(float(first["limit"]), self.schedule["chargingRateUnit"], unit)


@dataclass(slots=True)
class ProfileStore:
    held: dict[int, HeldProfile] = field(default_factory=dict)

    def set(self, evse: int, profile: Payload) -> None:
        new = HeldProfile(evse, profile)
        # Same id, or same purpose and stack level on the same EVSE: the new one replaces it.
        for old in list(self.held.values()):
            if old.id == new.id or (old.evse == evse and old.purpose == new.purpose
                                    and old.stack_level == new.stack_level):
                del self.held[old.id]
        self.held[new.id] = new

    def matching(self, *, profile_ids: list[int] | None = None, evse: int | None = None,
                 purpose: str | None = None, stack_level: int | None = None
                 ) -> list[HeldProfile]:
        return [p for p in self.held.values()
                if (profile_ids is None or p.id in profile_ids)
                and (evse is None or p.evse == evse)
                and (purpose is None or p.purpose == purpose)
                and (stack_level is None or p.stack_level == stack_level)]

    def clear(self, **criteria: Any) -> bool:
        """Remove the matching profiles; False when none matched (the answer is Unknown)."""
        found = self.matching(**criteria)
        for profile in found:
            del self.held[profile.id]
        return bool(found)

    def limit(self, evse: int, unit: str) -> float:
        """The limit in force now: per purpose the highest stack level on this EVSE or on the
        whole station wins, and the lowest of those limits holds. A trivial composite: no
        time periods, every profile is taken as active."""
        ceiling = to_unit(MAX_CURRENT_A, "A", unit)
        best: dict[str, HeldProfile] = {}
        for profile in self.held.values():
            if profile.evse not in (0, evse):
                continue
            current = best.get(profile.purpose)
            if current is None or profile.stack_level > current.stack_level:
                best[profile.purpose] = profile
        return min([ceiling, *(p.limit(unit) for p in best.values())])

    def unit_for(self, evse: int) -> str:
        for profile in self.held.values():
            if profile.evse in (0, evse):
                return profile.schedule["chargingRateUnit"]
        return "A"


_DATA_TYPES = {"int": "integer", "bool": "boolean", "list": "MemberList", "text": "string"}


def variable_entry(component: Payload, variable: str, value: str, readonly: bool,
                   kind: str, allowed: frozenset[str] | None = None) -> Payload:
    """One reportData entry: a variable's Actual attribute and its characteristics."""
    traits: Payload = {"dataType": _DATA_TYPES[kind], "supportsMonitoring": False}
    if allowed:
        traits["valuesList"] = ",".join(sorted(allowed))
    if kind == "int":
        traits["minLimit"] = 0
    return {"component": component, "variable": {"name": variable},
            "variableAttribute": [{"type": "Actual", "value": value,
                                   "mutability": "ReadOnly" if readonly else "ReadWrite"}],
            "variableCharacteristics": traits}


def wanted_by(entry: Payload, criteria: list[Payload]) -> bool:
    """Whether a GetReport componentVariable list names this entry."""
    for wanted in criteria:
        component = wanted["component"]
        if component["name"] != entry["component"]["name"]:
            continue
        if "evse" in component and component["evse"] != entry["component"].get("evse"):
            continue
        if "variable" in wanted and wanted["variable"]["name"] != entry["variable"]["name"]:
            continue
        return True
    return False


def report_parts(entries: list[Payload], request_id: int, generated_at: str) -> list[Payload]:
    """NotifyReport payloads for a report: seqNo from 0, tbc on all but the last."""
    chunks = [entries[i:i + ENTRIES_PER_REPORT_PART]
              for i in range(0, len(entries), ENTRIES_PER_REPORT_PART)]
    return [{"requestId": request_id, "generatedAt": generated_at, "seqNo": n,
             "tbc": n < len(chunks) - 1, "reportData": chunk}
            for n, chunk in enumerate(chunks)]

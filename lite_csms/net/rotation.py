"""Replacing a chosen station password with a generated one over OCPP.

A password a person chose is hashed with scrypt (~50 ms a check), so after a restart, when
the credential cache is empty, every such station's first login costs a KDF run: 2,000 of
them take minutes on one core. A generated password is checked with a fast HMAC
(passwords.py). So once a station that logged in with a chosen password is accepted, the
CSMS sends it a generated one: OCPP 2.0.1 A01 (SetVariables SecurityCtrlr.BasicAuthPassword)
and, for 1.6, the Security Whitepaper's ChangeConfiguration AuthorizationKey (the password's
bytes as hex digits, at most 20 bytes). The station then reconnects with it.

No step may lock a station out, whatever is lost or fails (docs/SECURITY.md):
- The new password's hash is stored as *pending* before the CALL goes out. A pending hash is
  accepted at login, so a crash between the send and the answer costs nothing.
- For 1.6 both the password and its hex form are pending: chargers differ on whether they
  decode the key.
- Accepted makes the new hash the password and keeps the chosen one as *previous*. That one
  still gets in (clearing nothing) until the station first logs in with the new one, which
  drops previous and every pending hash.
- A lost answer (timeout, the connection ended) keeps the hashes pending. So does
  RebootRequired: the password takes effect at the next boot. The next connection with the
  chosen password tries again, while fewer than MAX_PENDING are unconfirmed.
- Any other answer (Rejected, UnknownVariable, a CALLERROR) drops this attempt's hashes and
  is remembered, as the budget policy remembers refusals (SettingRefusal, budget/memory.py):
  not sent again until the station boots with other firmware.
Never for security profile 3 (the certificate is the credential and no password is checked)
nor for a station without a password: neither logs in with a chosen password.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import trio

from lite_csms import passwords
from lite_csms.config import Settings
from lite_csms.db.models import SettingRefusal, Station
from lite_csms.db.writer import StoreWriter
from lite_csms.net.commands import CommandOutcome, CommandSender
from lite_csms.net.connection import StationConnection
from lite_csms.ocppj import timestamps
from lite_csms.ocppj.versions import Version

log = logging.getLogger("lite_csms.net")

REQUESTED_BY = "password-rotation"
# Unconfirmed hashes a station may have at once (2 per 1.6 attempt, 1 per 2.x attempt, and
# an accepted password it never used): at most about 3 attempts. Then nothing more is sent
# until a login confirms one, so a charger that accepts and never uses its new password is
# not sent one on every connection forever.
MAX_PENDING = 4
KEY_V16 = "AuthorizationKey"
KEY_V2 = "SecurityCtrlr.BasicAuthPassword"
# The 1.6 key holds 16 to 20 bytes as hex digits: 20 symbols, the most entropy it carries.
LENGTH_V16 = 20
ACCEPTED, REBOOT_REQUIRED, LOST = "Accepted", "RebootRequired", "lost"
# Roles of the stored hash a login matched.
CURRENT, PENDING, PREVIOUS = "current", "pending", "previous"


@dataclass(slots=True)
class Login:
    """Which stored hash a handshake's password matched (filled by the server's check)."""

    role: str | None = None
    hashed: str | None = None

    def matched(self, role: str, hashed: str) -> None:
        self.role, self.hashed = role, hashed

    @property
    def chosen(self) -> bool:
        """The station logged in with a chosen (scrypt) password: a candidate to rotate."""
        return self.hashed is not None and not passwords.is_fast(self.hashed)


def pending_of(station: Station) -> list[str]:
    return (station.pending_password_hash or "").split()


def stored_hashes(station: Station) -> Iterator[tuple[str, str]]:
    """(role, hash) a login may match, the ones to try first first: the password, the
    pending hashes (all fast), then the previous (chosen) one. At most one of them is a
    chosen password's: a rotation replaces the chosen one, and `station set-password`
    clears the others."""
    if station.password_hash is not None:
        yield CURRENT, station.password_hash
    for hashed in pending_of(station):
        yield PENDING, hashed
    if station.previous_password_hash is not None:
        yield PREVIOUS, station.previous_password_hash


def needs_confirming(station: Station, login: Login) -> bool:
    """Whether this login settles a rotation: the station used a pending password, or the
    rotated one while a fallback is still kept."""
    if login.role == PENDING:
        return True
    return (login.role == CURRENT and login.hashed is not None
            and passwords.is_fast(login.hashed)
            and (station.previous_password_hash is not None or bool(pending_of(station))))


def confirm(station_id: str, hashed: str) -> bool:
    """In the writer: the station logged in with `hashed` (a generated password's hash,
    current or pending): it becomes the password and every fallback goes. True if stored
    (False when the row changed meanwhile, e.g. an operator set a new password)."""
    station = Station.get_or_none(Station.id == station_id)
    if station is None or (hashed != station.password_hash
                           and hashed not in pending_of(station)):
        return False
    station.password_hash = hashed
    station.previous_password_hash = None
    station.pending_password_hash = None
    station.save()
    return True


def request_for(version: Version, password: str) -> tuple[str, dict[str, object], list[str]]:
    """The CALL that gives the station `password` (action, payload), and the hashes of
    what it may log in with afterwards, the expected one first."""
    if version is Version.OCPP16:
        key = password.encode().hex().upper()
        return ("ChangeConfiguration", {"key": KEY_V16, "value": key},
                [passwords.hash_generated(password), passwords.hash_generated(key)])
    component, variable = KEY_V2.split(".")
    return ("SetVariables", {"setVariableData": [{
        "attributeType": "Actual", "attributeValue": password,
        "component": {"name": component}, "variable": {"name": variable}}]},
        [passwords.hash_generated(password)])


def key_of(version: Version) -> str:
    return KEY_V16 if version is Version.OCPP16 else KEY_V2


def refusal(station_id: str, key: str) -> SettingRefusal | None:
    """The station's refusal of a new password under its current firmware, if any."""
    station = Station.get_or_none(Station.id == station_id)
    if station is None:
        return None
    return next((row for row in SettingRefusal.select().where(
        SettingRefusal.station == station_id, SettingRefusal.key == key,
        SettingRefusal.requested_by == REQUESTED_BY)
        if row.firmware_version == station.firmware_version), None)


def begin(station_id: str, login_hash: str, key: str, candidates: list[str]) -> str | None:
    """In the writer, before the CALL: add `candidates` to the pending hashes. Returns None
    to go on, or why not (then nothing is stored)."""
    station = Station.get_or_none(Station.id == station_id)
    if station is None:
        return "the station is gone"
    if login_hash not in (station.password_hash, station.previous_password_hash):
        return "its password changed since it logged in"
    found = refusal(station_id, key)
    if found is not None:
        return (f"it refused a new password ({found.status}) under firmware "
                f"{found.firmware_version or '(none)'}; not sent again until that changes")
    pending = pending_of(station)
    if len(pending) >= MAX_PENDING:
        return (f"{len(pending)} passwords sent are unconfirmed; none is sent until it logs "
                "in with one (or `lite-csms station set-password`)")
    station.pending_password_hash = " ".join([*pending, *candidates])
    station.save()
    return None


def finish(station_id: str, login_hash: str, key: str, candidates: list[str], status: str,
           at: datetime) -> None:
    """In the writer, with the answer's `status` (see outcome_status)."""
    station = Station.get_or_none(Station.id == station_id)
    if station is None:
        return
    pending = pending_of(station)
    if status == ACCEPTED and login_hash in (station.password_hash,
                                             station.previous_password_hash):
        new, old = candidates[0], station.password_hash
        kept = [h for h in pending if h != new]
        if old is not None and old != login_hash and old not in kept:
            # An earlier rotation's password it accepted and never used: it may hold it yet.
            kept.append(old)
        station.password_hash = new
        station.previous_password_hash = login_hash
        station.pending_password_hash = " ".join(kept) or None
        station.save()
        SettingRefusal.delete().where(SettingRefusal.station == station_id,
                                      SettingRefusal.key == key,
                                      SettingRefusal.requested_by == REQUESTED_BY).execute()
        return
    if status in (ACCEPTED, REBOOT_REQUIRED, LOST):
        return  # pending until a login uses one (an Accepted above lost a race: the same)
    # Refused: it does not hold them. Remembered under its firmware, as policy refusals are.
    station.pending_password_hash = " ".join(h for h in pending if h not in candidates) or None
    station.save()
    (SettingRefusal.insert(station=station_id, key=key, value="", status=status[:40],
                           firmware_version=station.firmware_version, at=at,
                           requested_by=REQUESTED_BY, scope="key")
     .on_conflict(conflict_target=[SettingRefusal.station, SettingRefusal.key,
                                   SettingRefusal.value],
                  update={SettingRefusal.status: status[:40],
                          SettingRefusal.firmware_version: station.firmware_version,
                          SettingRefusal.at: at, SettingRefusal.requested_by: REQUESTED_BY,
                          SettingRefusal.scope: "key"})
     .execute())


def outcome_status(version: Version, outcome: CommandOutcome) -> str:
    """Accepted, RebootRequired, LOST (no answer we can trust: a timeout, the connection
    ended, an answer that failed validation), or the refusal: the station's status or its
    CALLERROR code."""
    if outcome.status == "answered" and outcome.result is not None:
        if version is Version.OCPP16:
            return str(outcome.result.get("status"))
        results = outcome.result.get("setVariableResult") or [{}]
        return str(results[0].get("attributeStatus"))
    if (outcome.status == "timeout" or outcome.invalid_answer
            or outcome.error_code in ("ConnectionClosed", "InvalidRequest")):
        return LOST
    return str(outcome.error_code or outcome.status)


class PasswordRotation:
    def __init__(self, store: StoreWriter, commands: CommandSender, settings: Settings) -> None:
        self._store = store
        self._commands = commands
        self._settings = settings
        # Accepted connections decided on (rotated, kept, or nothing to do), and the outcome
        # of each rotation sent, by status.
        self.decided = 0
        self.outcomes: Counter[str] = Counter()

    async def on_accepted(self, connection: StationConnection, login: Login) -> str | None:
        """Rotate the station's chosen password, if it logged in with one; returns the
        outcome's status (None when nothing was sent). One log line per rotation."""
        try:
            if not self._settings.rotate_chosen_passwords or not login.chosen:
                return None
            assert login.hashed is not None
            return await self._rotate(connection, login.hashed)
        finally:
            self.decided += 1

    async def _rotate(self, connection: StationConnection, login_hash: str) -> str | None:
        station_id, version = connection.station_id, connection.ctx.version
        key = key_of(version)
        password = passwords.generate(LENGTH_V16 if version is Version.OCPP16
                                      else passwords.GENERATED_LENGTH)
        action, payload, candidates = request_for(version, password)
        why_not = await self._store.run(partial(begin, station_id, login_hash, key,
                                                candidates))
        if why_not is not None:
            log.debug("%s: chosen password kept: %s", station_id, why_not)
            return None
        status = LOST
        try:
            outcome = await self._commands.send_on(connection, action, payload,
                                                   requested_by=REQUESTED_BY)
            status = outcome_status(version, outcome)
        finally:
            # Also when the connection ends mid-call (this task is cancelled then).
            with trio.CancelScope(shield=True):
                await self._store.run(partial(finish, station_id, login_hash, key, candidates,
                                              status, timestamps.now_utc()))
            self.outcomes[status] += 1
            log.info("%s: password rotation (%s %s): %s", station_id, action, key,
                     _SAID.get(status, f"{status}; the chosen password stays, not sent "
                                       "again until its firmware changes"))
        return status


_SAID = {
    ACCEPTED: "Accepted; the chosen password works until it connects with the new one",
    REBOOT_REQUIRED: "RebootRequired; both work until it connects with the new one",
    LOST: "no answer; both work until it connects with one",
}

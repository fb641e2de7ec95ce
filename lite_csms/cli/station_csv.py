"""`lite-csms station import FILE.csv` and `station export [FILE]`: stations in bulk.

The CSV has a header line naming its columns, in any order:

- `id` (required): the station id, checked as the server checks the id in a URL.
- `password`: a password of 16 to 40 characters chosen by the operator (stored as scrypt),
  `generate` (a new password from lite-csms, stored with the fast scheme and shown once),
  `none` (the station connects without a password, like `station add --no-password`), or
  empty: keep the current password; for a new station, `generate`.
- `registration`: accepted, pending or rejected (what its next BootNotification is
  answered); empty keeps it, a new station is accepted.
- `security_profile`: 1, 2 or 3; empty keeps it, a new station follows the server's
  `security_profile_default`.

Rules:
- Everything is checked before anything is written. Any bad line (an unknown or repeated
  column, a bad id, an id twice in the file, a bad value, a lowered profile without
  `--lower`) is reported as `FILE line N, column C: why`, every one of them, and nothing is
  imported (exit 2).
- Idempotent: a station whose stored fields equal the row's is left alone, so importing
  the same file twice changes nothing the second time. `generate` and `none` do not touch an
  existing station's password unless `--rotate` is given; a chosen password replaces the
  stored one only when it does not already match it.
- One write transaction (BEGIN IMMEDIATE) for the whole file, with the database's
  busy_timeout, so a running server's writer waits for it (well under a second for 10,000
  stations) and sees all of the file or none of it. The slow part, scrypt for chosen
  passwords, runs before it, in threads on every core (hashlib.scrypt releases the GIL).
- Generated passwords are written once, as CSV `id,password`, to stdout or to `--output`
  (created with mode 0600, before the commit; removed if the commit fails). The summary goes
  to stderr.

Export writes the same columns; the password column is `none` for a station without a
password and empty otherwise (no password or hash ever leaves the database), so export →
import restores everything but the passwords.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lite_csms import passwords
from lite_csms.cli.output import CliError
from lite_csms.db.models import Station, database_proxy
from lite_csms.handlers.provisioning import REGISTRATIONS
from lite_csms.net import profiles
from lite_csms.net.handshake import InvalidStationId, check_station_id

COLUMNS = ("id", "password", "registration", "security_profile")
GENERATE = "generate"
NO_PASSWORD = "none"
# The whole file in one transaction, written in statements of this many rows (SQLite's
# default limit is 32,766 bound variables per statement).
ROWS_PER_STATEMENT = 500
MIN_PASSWORD, MAX_PASSWORD = 16, 40


@dataclass(slots=True)
class Row:
    line: int
    station_id: str
    password: str  # "", GENERATE, NO_PASSWORD or a chosen password
    registration: str | None
    security_profile: int | None


@dataclass(slots=True)
class Stored:
    password_hash: str | None
    registration: str
    security_profile: int | None


@dataclass(slots=True)
class Plan:
    """What one import writes: new rows, changed fields per station, generated passwords."""

    inserts: list[dict[str, Any]]
    updates: dict[str, dict[str, Any]]
    generated: list[tuple[str, str]]
    unchanged: int
    # The stored state each update was planned against: re-checked inside the transaction.
    seen: dict[str, Stored]


class ImportErrors(CliError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} error(s) in the file; nothing was imported")
        self.errors = errors


# ---- reading and checking -------------------------------------------------------------------
def read_rows(text: Iterable[str], name: str) -> list[Row]:
    """Parse and check every line; raises ImportErrors naming every bad line and column."""
    errors: list[str] = []
    reader = csv.reader(text)
    header_line = _first_record(reader)
    if header_line is None:
        raise ImportErrors([f"{name}: empty file: the first line must name the columns "
                            f"({', '.join(COLUMNS)})"])
    header = [cell.strip().lower() for cell in header_line]
    for index, column in enumerate(header):
        if column not in COLUMNS:
            errors.append(f"{name} line {reader.line_num}, column {index + 1}: unknown column "
                          f"{column!r} (known: {', '.join(COLUMNS)})")
        elif header.index(column) != index:
            errors.append(f"{name} line {reader.line_num}, column {index + 1}: column "
                          f"{column!r} appears twice")
    if "id" not in header:
        errors.append(f"{name} line {reader.line_num}: no 'id' column")
    if errors:
        raise ImportErrors(errors)
    rows: list[Row] = []
    first_seen: dict[str, int] = {}
    for cells in reader:
        line = reader.line_num
        if not cells or all(not cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            errors.append(f"{name} line {line}: {len(cells)} fields, the header has "
                          f"{len(header)}")
            continue
        row = _row(line, dict(zip(header, cells, strict=True)),
                   lambda column, why, line=line: errors.append(
                       f"{name} line {line}, column {column}: {why}"))
        if row is None:
            continue
        if (first := first_seen.setdefault(row.station_id, line)) != line:
            errors.append(f"{name} line {line}, column id: {row.station_id!r} is already on "
                          f"line {first}")
            continue
        rows.append(row)
    if errors:
        raise ImportErrors(errors)
    return rows


def _first_record(reader: Iterator[list[str]]) -> list[str] | None:
    for cells in reader:
        if cells and any(cell.strip() for cell in cells):
            return cells
    return None


def _row(line: int, cells: dict[str, str], bad: Callable[[str, str], None]) -> Row | None:
    ok = True
    # Taken as written, as the server takes it from the URL: an export must round-trip.
    raw_id = cells["id"]
    try:
        station_id = check_station_id(raw_id)
    except InvalidStationId as exc:
        bad("id", f"{raw_id!r}: {exc}")
        ok = False
    # A password is taken as written: spaces may be part of it.
    password = cells.get("password", "")
    if password.strip().lower() in ("", GENERATE, NO_PASSWORD):
        password = password.strip().lower()
    elif not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        bad("password", f"a password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters "
                        f"(it has {len(password)}), or be '{GENERATE}' or '{NO_PASSWORD}'")
        ok = False
    elif not password.isprintable():
        bad("password", "a password must be printable")
        ok = False
    registration = cells.get("registration", "").strip().lower() or None
    if registration is not None and registration not in REGISTRATIONS:
        bad("registration", f"{registration!r} is not one of {', '.join(REGISTRATIONS)}")
        ok = False
    raw_profile = cells.get("security_profile", "").strip()
    profile: int | None = None
    if raw_profile:
        if raw_profile not in ("1", "2", "3"):
            bad("security_profile", f"{raw_profile!r} is not 1, 2 or 3")
            ok = False
        else:
            profile = int(raw_profile)
    if not ok:
        return None
    return Row(line, station_id, password, registration, profile)


# ---- planning ------------------------------------------------------------------------------
def stored_stations() -> dict[str, Stored]:
    query = Station.select(Station.id, Station.password_hash, Station.registration,
                           Station.security_profile).tuples()
    return {sid: Stored(hashed, registration, profile)
            for sid, hashed, registration, profile in query.iterator()}


def plan(rows: list[Row], stored: dict[str, Stored], *, rotate: bool, lower: bool,
         profile_default: int, name: str, workers: int | None = None) -> Plan:
    """What importing `rows` over `stored` writes. Raises ImportErrors for a lowered profile
    without `lower`. Chosen passwords are hashed (and checked against existing hashes) here,
    on `workers` threads."""
    errors = []
    for row in rows:
        old = stored.get(row.station_id)
        if old is None or row.security_profile is None or lower:
            continue
        was = profiles.effective(old.security_profile, profile_default)
        if row.security_profile < was:
            errors.append(f"{name} line {row.line}, column security_profile: lowering "
                          f"{row.station_id} from {was} to {row.security_profile} needs "
                          "--lower")
    if errors:
        raise ImportErrors(errors)
    # scrypt: ~40 ms of one core each; hashlib releases the GIL, so threads use every core.
    chosen_new = [row for row in rows if row.station_id not in stored and _chosen(row)]
    chosen_old = [row for row in rows if row.station_id in stored and _chosen(row)]
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        matches = dict(zip(
            (row.station_id for row in chosen_old),
            pool.map(lambda row: _matches(row.password, stored[row.station_id].password_hash),
                     chosen_old), strict=True))
        rehash = [row for row in chosen_old if not matches[row.station_id]]
        hashes = dict(zip((row.station_id for row in chosen_new + rehash),
                          pool.map(lambda row: passwords.hash_password(row.password),
                                   chosen_new + rehash), strict=True))
    result = Plan([], {}, [], 0, {})
    for row in rows:
        old = stored.get(row.station_id)
        if old is None:
            result.inserts.append({
                "id": row.station_id, "registration": row.registration or "accepted",
                "security_profile": row.security_profile,
                "password_hash": _new_hash(row, hashes, result.generated)})
            continue
        changes: dict[str, Any] = {}
        if row.registration is not None and row.registration != old.registration:
            changes["registration"] = row.registration
        if row.security_profile is not None and row.security_profile != old.security_profile:
            changes["security_profile"] = row.security_profile
        if row.station_id in hashes:
            changes["password_hash"] = hashes[row.station_id]
        elif rotate and row.password == GENERATE:
            changes["password_hash"] = _new_hash(row, hashes, result.generated)
        elif rotate and row.password == NO_PASSWORD and old.password_hash is not None:
            changes["password_hash"] = None
        if changes:
            result.updates[row.station_id] = changes
            result.seen[row.station_id] = old
        else:
            result.unchanged += 1
    return result


def _chosen(row: Row) -> bool:
    return row.password not in ("", GENERATE, NO_PASSWORD)


def _matches(password: str, stored: str | None) -> bool:
    return stored is not None and passwords.verify(password, stored)


def _new_hash(row: Row, hashes: dict[str, str], generated: list[tuple[str, str]]
              ) -> str | None:
    if row.password == NO_PASSWORD:
        return None
    if _chosen(row):
        return hashes[row.station_id]
    password = passwords.generate()
    generated.append((row.station_id, password))
    return passwords.hash_generated(password)


# ---- writing -------------------------------------------------------------------------------
def apply(result: Plan) -> None:
    """One BEGIN IMMEDIATE transaction: every insert and update, or none. Raises CliError
    when a station changed after it was planned (the server auto-registered it, another
    command edited it): nothing is written, and running the import again re-plans."""
    db = database_proxy.obj
    with db.atomic("IMMEDIATE"):
        now = stored_stations()
        moved = sorted([sid for sid in (r["id"] for r in result.inserts) if sid in now]
                       + [sid for sid, old in result.seen.items() if now.get(sid) != old])
        if moved:
            raise CliError(f"{len(moved)} station(s) changed while the import was prepared "
                           f"(first: {moved[0]}); nothing was imported, run it again")
        for start in range(0, len(result.inserts), ROWS_PER_STATEMENT):
            Station.insert_many(result.inserts[start:start + ROWS_PER_STATEMENT]).execute()
        for station_id, changes in result.updates.items():
            Station.update(**changes).where(Station.id == station_id).execute()


def import_file(path: str, *, output: str | None, rotate: bool, lower: bool,
                profile_default: int) -> int:
    """Import the CSV at `path` (see the module's rules); 0, or raises CliError (exit 2)
    after printing every bad line to stderr."""
    name = Path(path).name
    try:
        with open(path, encoding="utf-8-sig", newline="") as text:
            rows = read_rows(text, name)
        result = plan(rows, stored_stations(), rotate=rotate, lower=lower,
                      profile_default=profile_default, name=name)
    except UnicodeDecodeError as exc:
        raise CliError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    except ImportErrors as exc:
        for line in exc.errors:
            print(f"lite-csms: {line}", file=sys.stderr)
        raise
    written = None
    if output is not None and result.generated:
        written = _write_private(output, result.generated)
    try:
        apply(result)
    except BaseException:
        if written is not None:
            written.unlink(missing_ok=True)
        raise
    if output is None and result.generated:
        _write_passwords(sys.stdout, result.generated)
    summary = (f"{name}: {len(result.inserts)} added, {len(result.updates)} updated, "
               f"{result.unchanged} unchanged")
    if result.generated:
        where = f"written to {output}" if written else "on stdout"
        summary += f"; {len(result.generated)} generated password(s) {where}, shown once"
    print(f"lite-csms: {summary}", file=sys.stderr)
    return 0


def _write_passwords(out: IO[str], generated: list[tuple[str, str]]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "password"])
    writer.writerows(generated)


def _write_private(path: str, generated: list[tuple[str, str]]) -> Path:
    """Create (or truncate) `path` with mode 0600 and write the passwords durably."""
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        buffer = io.StringIO()
        _write_passwords(buffer, generated)
        os.write(fd, buffer.getvalue().encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


# ---- export --------------------------------------------------------------------------------
def export_rows() -> Iterator[list[str]]:
    query = (Station.select(Station.id, Station.password_hash, Station.registration,
                            Station.security_profile).order_by(Station.id).tuples())
    for station_id, hashed, registration, profile in query.iterator():
        yield [station_id, NO_PASSWORD if hashed is None else "", registration,
               "" if profile is None else str(profile)]


def export_file(path: str | None) -> int:
    if path is None:
        _export(sys.stdout)
        return 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        count = _export(out)
    print(f"lite-csms: {count} station(s) written to {path}", file=sys.stderr)
    return 0


def _export(out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    count = 0
    for row in export_rows():
        writer.writerow(row)
        count += 1
    return count

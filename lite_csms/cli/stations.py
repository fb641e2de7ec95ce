"""`lite-csms station …`: register, inspect and remove charging stations."""

from __future__ import annotations

import argparse
import sys

from lite_csms import passwords
from lite_csms.cli import sharing, station_csv
from lite_csms.cli.output import CliError, emit, emit_one
from lite_csms.config import Settings
from lite_csms.db.models import Station
from lite_csms.handlers import deviations, provisioning
from lite_csms.net import profiles
from lite_csms.net.handshake import InvalidStationId, check_station_id
from lite_csms.views import connector_rows, station_row

# command: (registration, what the next BootNotification is answered)
BOOT_ANSWERS = {"accept": ("accepted", "Accepted"), "hold": ("pending", "Pending"),
                "reject": ("rejected", "Rejected")}
COLUMNS = ["id", "registration", "online", "protocol", "vendor", "model", "last_seen_at",
           "password_kind"]


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    station = sub.add_parser("station", help="manage charging stations")
    cmds = station.add_subparsers(dest="station_command", required=True)
    add = cmds.add_parser("add", parents=[common], help="register a station; prints its password")
    add.add_argument("station_id")
    add.add_argument("--no-password", action="store_true",
                     help="allow it to connect without a password (for a trusted network only)")
    cmds.add_parser("list", parents=[common], help="list stations").add_argument(
        "--json", action="store_true")
    show = cmds.add_parser("show", parents=[common],
                           help="one station, its connectors and the schema deviations it sent")
    show.add_argument("station_id")
    show.add_argument("--json", action="store_true")
    cmds.add_parser("remove", parents=[common], help="delete a station and its data"
                    ).add_argument("station_id")
    setpw = cmds.add_parser("set-password", parents=[common],
                            help="generate a new password (or set --password)")
    setpw.add_argument("station_id")
    setpw.add_argument("--password", help="use this password instead of a generated one")
    profile = cmds.add_parser(
        "set-profile", parents=[common],
        help="set its OCPP security profile: 1 Basic auth, 2 TLS + Basic auth, 3 TLS + "
             "client certificate (docs/SECURITY.md)")
    profile.add_argument("station_id")
    profile.add_argument("profile", type=int, choices=profiles.PROFILES)
    profile.add_argument("--lower", action="store_true",
                         help="confirm a lower profile than the station has now")
    bulk = cmds.add_parser(
        "import", parents=[common],
        help="add or update stations from a CSV file: id, password (a password, 'generate' "
             "or 'none'), registration, security_profile; all lines or none")
    bulk.add_argument("file")
    bulk.add_argument("--output", help="write the generated passwords here (mode 0600) "
                                       "instead of stdout")
    bulk.add_argument("--rotate", action="store_true",
                      help="give existing stations whose password is 'generate' (or 'none') "
                           "a new one (or none); without it their password is kept")
    bulk.add_argument("--lower", action="store_true",
                      help="allow rows that lower a station's security profile")
    cmds.add_parser("export", parents=[common],
                    help="write every station as import CSV (no passwords) to FILE or stdout"
                    ).add_argument("file", nargs="?")
    cmds.add_parser("accept", parents=[common],
                    help="answer the station's BootNotification Accepted").add_argument(
        "station_id")
    cmds.add_parser("hold", parents=[common],
                    help="answer its BootNotification Pending: configure it before it "
                         "operates").add_argument("station_id")
    cmds.add_parser("reject", parents=[common],
                    help="answer its BootNotification Rejected: it may do nothing else"
                    ).add_argument("station_id")
    sharing.add_station_parsers(cmds, common)


def _valid_id(raw: str) -> str:
    try:
        return check_station_id(raw)
    except InvalidStationId as exc:
        raise CliError(f"invalid station id {raw!r}: {exc}") from None


def _get(station_id: str) -> Station:
    station = Station.get_or_none(Station.id == station_id)
    if station is None:
        raise CliError(f"no station {station_id!r}")
    return station


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    command = args.station_command
    if command == "list":
        emit([station_row(s) for s in Station.select().order_by(Station.id)], COLUMNS,
             as_json=args.json)
        return 0
    if command == "import":
        return station_csv.import_file(
            args.file, output=args.output, rotate=args.rotate, lower=args.lower,
            profile_default=(settings or Settings()).security_profile_default)
    if command == "export":
        return station_csv.export_file(args.file)
    station_id = _valid_id(args.station_id)
    if command in ("set-owner", "qr"):
        return sharing.station_command(args, settings or Settings())
    if command == "add":
        if Station.get_or_none(Station.id == station_id) is not None:
            raise CliError(f"station {station_id!r} already exists")
        password = None if args.no_password else passwords.generate()
        Station.create(id=station_id, registration="accepted",
                       password_hash=password and passwords.hash_generated(password))
        print(f"station {station_id} added")
        if password:
            print(f"password: {password}")
            print("(shown once; the charger sends it as HTTP Basic auth, user = station id)")
    elif command == "show":
        station = _get(station_id)
        record = station_row(station)
        record["connectors"] = connector_rows(station)
        # What lenient mode accepted from this charger: evidence to take to its vendor.
        record["deviations"] = deviations.rows(station_id)
        emit_one(record, as_json=args.json)
    elif command == "remove":
        _get(station_id).delete_instance(recursive=True)
        print(f"station {station_id} removed")
    elif command == "set-password":
        station = _get(station_id)
        password = args.password or passwords.generate()
        if not 16 <= len(password) <= 40:
            raise CliError("a password must have 16 to 40 characters")
        # Generated: ~140 bits, a fast hash suffices; chosen: scrypt (lite_csms/passwords.py).
        station.password_hash = (passwords.hash_password(password) if args.password
                                 else passwords.hash_generated(password))
        # A rotation under way (net/rotation.py) ends here: only this password works now.
        station.previous_password_hash = None
        station.pending_password_hash = None
        station.save()
        print(f"password: {password}" if not args.password else "password set")
    elif command == "set-profile":
        _set_profile(station_id, args.profile, args.lower, settings or Settings())
    elif command in BOOT_ANSWERS:
        registration, answer = BOOT_ANSWERS[command]
        _get(station_id)
        provisioning.set_registration(station_id, registration)
        print(f"station {station_id} {registration}: its next BootNotification is answered "
              f"{answer}")
    return 0


def _set_profile(station_id: str, profile: int, lower: bool, settings: Settings) -> None:
    try:
        old, new = profiles.set_profile(station_id, profile, settings.security_profile_default,
                                        lower=lower)
    except LookupError:
        raise CliError(f"no station {station_id!r}") from None
    except PermissionError as exc:
        raise CliError(f"{exc}: a station at a lower profile is easier to impersonate") from None
    print(f"station {station_id}: security profile {old} -> {new} (from its next connection)")
    if new == profiles.TLS_CERTIFICATE and not settings.tls_client_ca:
        print("lite-csms: warning: tls_client_ca is not set, so this station cannot connect "
              "until it is", file=sys.stderr)

"""`lite-csms owner|driver|tariff|statement …` and `station set-owner|qr`: sharing chargers
(lite_csms/sharing/). Money on the command line is decimal text in major units ("25.50")."""

from __future__ import annotations

import argparse
import sys

from lite_csms import passwords
from lite_csms.cli.output import CliError, emit, emit_one
from lite_csms.config import Settings
from lite_csms.db.models import IdToken, Station
from lite_csms.handlers.authorization import check_token, find_token
from lite_csms.ocppj import timestamps
from lite_csms.sharing import codes, drivers, links, logins, owners, pricing, statements
from lite_csms.sharing.money import MoneyError, format_amount

OWNER_COLUMNS = ["id", "name", "email", "phone", "has_password", "stations"]
DRIVER_COLUMNS = ["id", "name", "phone", "email", "has_password", "tokens"]


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    owner = sub.add_parser("owner", help="manage charger owners (sharing)")
    cmds = owner.add_subparsers(dest="owner_command", required=True)
    add = cmds.add_parser("add", parents=[common],
                          help="add an owner; prints a generated password unless --password")
    add.add_argument("name")
    add.add_argument("--email")
    add.add_argument("--phone", help="international form, e.g. +254712345678")
    add.add_argument("--password", help="at least 8 characters (default: generated)")
    cmds.add_parser("list", parents=[common], help="list owners").add_argument(
        "--json", action="store_true")
    show = cmds.add_parser("show", parents=[common], help="one owner and their stations")
    show.add_argument("owner", help="id, email or phone")
    show.add_argument("--json", action="store_true")
    setpw = cmds.add_parser("set-password", parents=[common],
                            help="generate a new password (or set --password)")
    setpw.add_argument("owner", help="id, email or phone")
    setpw.add_argument("--password")

    driver = sub.add_parser("driver", help="manage drivers (sharing)")
    dcmds = driver.add_subparsers(dest="driver_command", required=True)
    dadd = dcmds.add_parser("add", parents=[common], help="add a driver")
    dadd.add_argument("--name")
    dadd.add_argument("--phone", help="signs in with one-time codes sent to it")
    dadd.add_argument("--email")
    dadd.add_argument("--password", help="a simple account's password (8 or more characters)")
    dadd.add_argument("--token", action="append", default=[],
                      help="an id token (RFID) of theirs; registered if new (repeatable)")
    dcmds.add_parser("list", parents=[common], help="list drivers").add_argument(
        "--json", action="store_true")
    code = dcmds.add_parser("code", parents=[common],
                            help="issue a one-time sign-in code for a phone and print it (no "
                                 "SMS gateway yet: pass it on to the driver)")
    code.add_argument("phone")

    tariff = sub.add_parser("tariff", help="set a station's price (sharing)")
    tcmds = tariff.add_subparsers(dest="tariff_command", required=True)
    tset = tcmds.add_parser("set", parents=[common],
                            help="set the price; sessions already running keep theirs")
    tset.add_argument("station_id")
    tset.add_argument("--per-kwh", default="0", help="price per kWh, e.g. 25.50")
    tset.add_argument("--per-hour", default="0", help="price per hour plugged in")
    tset.add_argument("--fee", default="0", help="fee per session")
    tset.add_argument("--currency", help="ISO 4217, e.g. KES (default: the currency setting)")
    tshow = tcmds.add_parser("show", parents=[common], help="a station's price")
    tshow.add_argument("station_id")
    tshow.add_argument("--json", action="store_true")
    tcmds.add_parser("clear", parents=[common],
                     help="remove the price: later sessions are unpriced").add_argument(
        "station_id")

    statement = sub.add_parser("statement", parents=[common],
                               help="an owner's monthly statement: sessions, energy, revenue, "
                                    "data used and its cost")
    statement.add_argument("owner", help="id, email or phone")
    statement.add_argument("month", help="YYYY-MM (UTC)")
    statement.add_argument("--json", action="store_true")


def add_station_parsers(cmds: argparse._SubParsersAction,
                        common: argparse.ArgumentParser) -> None:
    """`station set-owner` and `station qr`, under `lite-csms station`."""
    owner = cmds.add_parser("set-owner", parents=[common],
                            help="give a station to an owner (or 'none': the operator's)")
    owner.add_argument("station_id")
    owner.add_argument("owner", help="id, email, phone or none")
    qr = cmds.add_parser("qr", parents=[common],
                         help="print the URL of the station's driver page, for its QR code")
    qr.add_argument("station_id")
    qr.add_argument("--connector", type=int, default=1, help="connector (EVSE), default 1")


def _joined(rows: list[dict], key: str, as_json: bool) -> list[dict]:
    """A list column as "a, b" in text listings; JSON keeps the list."""
    return rows if as_json else [{**row, key: ", ".join(row[key]) or "-"} for row in rows]


def _new_password(given: str | None) -> tuple[str, bool]:
    if given is None:
        return passwords.generate(), True
    try:
        return logins.check_password(given), False
    except logins.LoginError as exc:
        raise CliError(str(exc)) from None


def _owner(ref: str) -> owners.Owner:
    found = owners.get_owner(ref)
    if found is None:
        raise CliError(f"no owner {ref!r}")
    return found


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return _run(args, settings)
    except (logins.LoginError, owners.OwnerError, drivers.DriverError, MoneyError,
            ValueError) as exc:
        raise CliError(str(exc)) from None


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "owner":
        return _owner_command(args)
    if args.command == "driver":
        return _driver_command(args)
    if args.command == "tariff":
        return _tariff_command(args, settings)
    if args.command == "statement":
        return _statement(args, settings)
    raise CliError(f"unknown command {args.command}")


def _owner_command(args: argparse.Namespace) -> int:
    command = args.owner_command
    if command == "list":
        emit(_joined(owners.list_owners(), "stations", args.json), OWNER_COLUMNS,
             as_json=args.json)
    elif command == "add":
        password, generated = _new_password(args.password)
        owner = owners.add_owner(args.name, args.email, args.phone,
                                 passwords.hash_password(password))
        print(f"owner {owner.id} added: {owner.name}")
        if generated:
            print(f"password: {password}")
            print("(shown once; the owner signs in to the web page with their email or phone)")
    elif command == "show":
        owner = _owner(args.owner)
        record = owners.owner_record(owner)
        record["stations"] = owners.stations_of(owner.id)
        if not args.json:
            record["stations"] = [{**s, "tariff": (s["tariff"] or {}).get("text", "no price")}
                                  for s in record["stations"]]
        emit_one(record, as_json=args.json)
    elif command == "set-password":
        owner = _owner(args.owner)
        password, generated = _new_password(args.password)
        owners.set_password_hash(owner.id, passwords.hash_password(password))
        print(f"password: {password}" if generated else "password set")
    return 0


def _driver_command(args: argparse.Namespace) -> int:
    command = args.driver_command
    if command == "list":
        emit(_joined(drivers.list_drivers(), "tokens", args.json), DRIVER_COLUMNS,
             as_json=args.json)
    elif command == "code":
        try:
            code = codes.issue(args.phone, timestamps.now_utc())
        except codes.TooManyCodes as exc:
            raise CliError(str(exc)) from None
        print(f"code: {code}")
        print(f"(valid {codes.CODE_TTL.seconds // 60} minutes, {codes.MAX_ATTEMPTS} tries; "
              "the driver signs in on the web page with their phone and this code)")
    elif command == "add":
        if args.password is not None:
            logins.check_password(args.password)
        tokens = [check_token(t) for t in args.token]
        driver = drivers.add_driver(args.name, args.phone, args.email,
                                    None if args.password is None
                                    else passwords.hash_password(args.password))
        for token in tokens:
            if find_token(token) is None:
                IdToken.create(token=token)
            drivers.link_token(token, driver.id)
        print(f"driver {driver.id} added" + (f" with tokens {', '.join(tokens)}"
                                             if tokens else ""))
    return 0


def _tariff_command(args: argparse.Namespace, settings: Settings) -> int:
    command = args.tariff_command
    if Station.get_or_none(Station.id == args.station_id) is None:
        raise CliError(f"no station {args.station_id!r}")
    if command == "set":
        price = pricing.set_tariff(args.station_id, args.currency or settings.currency,
                                   args.per_kwh, args.per_hour, args.fee, updated_by="cli")
        assert price is not None
        print(f"station {args.station_id}: {pricing.describe(price)} (from its next session)")
    elif command == "show":
        price = pricing.tariff_of(args.station_id)
        if args.json:
            emit_one({"station": args.station_id,
                      "tariff": None if price is None else price.as_dict()}, as_json=True)
        else:
            print(f"station {args.station_id}: "
                  + ("no price (sessions are unpriced)" if price is None
                     else pricing.describe(price)))
    elif command == "clear":
        pricing.clear_tariff(args.station_id)
        print(f"station {args.station_id}: no price (from its next session)")
    return 0


def _statement(args: argparse.Namespace, settings: Settings) -> int:
    owner = _owner(args.owner)
    year, month = statements.parse_month(args.month)
    found = statements.statement(owner.id, year, month, settings.data_price_per_mb,
                                 settings.currency)
    assert found is not None
    if args.json:
        emit_one(found, as_json=True)
        return 0
    print(f"statement {found['month']} for owner {owner.id} ({owner.name})")
    print(f"sessions {found['sessions']}, energy {found['energy_wh'] / 1000:.3f} kWh, "
          f"revenue {', '.join(found['revenue_text']) or '0'}")
    print(f"data {found['data_bytes']} bytes, cost {found['data_cost_text']}")
    rows = [{**row, "revenue": ", ".join(format_amount(v, c)
                                         for c, v in sorted(row["revenue"].items())) or "0",
             "data_cost": format_amount(row["data_cost"], settings.currency)}
            for row in found["stations"]]
    emit(rows, ["station", "sessions", "energy_wh", "revenue", "data_bytes", "data_cost"],
         as_json=False)
    return 0


def station_command(args: argparse.Namespace, settings: Settings) -> int:
    """`station set-owner` and `station qr`."""
    try:
        if args.station_command == "set-owner":
            owner_id = None if args.owner.lower() == "none" else _owner(args.owner).id
            if not owners.set_station_owner(args.station_id, owner_id):
                raise CliError(f"no station {args.station_id!r}")
            print(f"station {args.station_id}: owner "
                  + ("none (the operator's)" if owner_id is None else str(owner_id))
                  + " (sessions keep the owner they began under)")
            return 0
        if Station.get_or_none(Station.id == args.station_id) is None:
            raise CliError(f"no station {args.station_id!r}")
        print(links.driver_page_url(settings.public_url, args.station_id, args.connector))
    except (owners.OwnerError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if not settings.public_url.startswith("https://"):
        print("lite-csms: warning: public_url is not https: a driver's sign-in would cross "
              "the network in clear", file=sys.stderr)
    return 0

"""`lite-csms apikey …`: keys for the admin HTTP API."""

from __future__ import annotations

import argparse

from lite_csms.admin import keys
from lite_csms.cli.output import CliError, emit
from lite_csms.db.models import ApiKey
from lite_csms.ocppj import timestamps

COLUMNS = ["name", "created_at", "last_used_at", "revoked_at"]


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    apikey = sub.add_parser("apikey", help="manage admin API keys")
    cmds = apikey.add_subparsers(dest="apikey_command", required=True)
    cmds.add_parser("add", parents=[common], help="create a key; prints it once").add_argument(
        "name")
    cmds.add_parser("list", parents=[common], help="list keys").add_argument(
        "--json", action="store_true")
    cmds.add_parser("revoke", parents=[common], help="revoke a key").add_argument("name")


def run(args: argparse.Namespace) -> int:
    command = args.apikey_command
    if command == "list":
        rows = [{"name": k.name, "created_at": k.created_at, "last_used_at": k.last_used_at,
                 "revoked_at": k.revoked_at} for k in ApiKey.select().order_by(ApiKey.name)]
        emit(rows, COLUMNS, as_json=args.json)
        return 0
    name = args.name
    if not 0 < len(name) <= 64 or not name.isprintable():
        raise CliError("a key name has 1 to 64 printable characters")
    if command == "add":
        if ApiKey.get_or_none(ApiKey.name == name) is not None:
            raise CliError(f"key {name!r} already exists")
        print(f"api key {name}: {keys.create(name)}")
        print("(shown once; send it as 'Authorization: Bearer <key>')")
        return 0
    if not keys.revoke(name, timestamps.now_utc()):
        raise CliError(f"no active key {name!r}")
    print(f"api key {name} revoked")
    return 0

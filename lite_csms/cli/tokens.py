"""`lite-csms token …`: the id tokens (RFID tags and the like) allowed to charge."""

from __future__ import annotations

import argparse

from lite_csms.cli.output import CliError, emit
from lite_csms.db.models import IdToken
from lite_csms.handlers.authorization import check_token, find_token
from lite_csms.ocppj import timestamps
from lite_csms.views import token_row

COLUMNS = ["token", "type", "status", "expires_at", "group"]


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    token = sub.add_parser("token", help="manage id tokens")
    cmds = token.add_subparsers(dest="token_command", required=True)
    add = cmds.add_parser("add", parents=[common], help="allow a token to charge")
    add.add_argument("token")
    add.add_argument("--type", default="ISO14443", help="2.x idToken type (default ISO14443)")
    add.add_argument("--expires", help="expiry, ISO 8601 (e.g. 2027-01-01T00:00:00Z)")
    add.add_argument("--group", help="group (1.6 parentIdTag, 2.x groupIdToken)")
    cmds.add_parser("list", parents=[common], help="list tokens").add_argument(
        "--json", action="store_true")
    cmds.add_parser("block", parents=[common], help="refuse a token").add_argument("token")
    cmds.add_parser("unblock", parents=[common], help="accept a token again").add_argument(
        "token")


def run(args: argparse.Namespace) -> int:
    command = args.token_command
    if command == "list":
        emit([token_row(t) for t in IdToken.select().order_by(IdToken.token)], COLUMNS,
             as_json=args.json)
        return 0
    try:
        value = check_token(args.token)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if command == "add":
        expires = None
        if args.expires:
            try:
                expires = timestamps.parse(args.expires)
            except ValueError:
                raise CliError(f"invalid --expires {args.expires!r}: use ISO 8601") from None
        existing = find_token(value)
        if existing is not None:
            # Id tokens are case-insensitive: 04a2b3c4ff is the token 04A2B3C4FF.
            raise CliError(f"token {value!r} is already registered as {existing.token!r}")
        IdToken.create(token=value, token_type=args.type, expires_at=expires,
                       group_token=args.group)
        print(f"token {value} added")
        return 0
    token = find_token(value)
    if token is None:
        raise CliError(f"no token {value!r}")
    token.status = "Blocked" if command == "block" else "Accepted"
    token.save()
    print(f"token {token.token} {token.status.lower()}")
    return 0

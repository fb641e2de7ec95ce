"""Entry point: `lite-csms serve`, `station`, `token` and `tx`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

import trio

from lite_csms import config
from lite_csms.cli import apikeys, budget, remote, stations, tokens, transactions
from lite_csms.cli.output import CliError
from lite_csms.db.database import DatabaseError, open_database


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: otherwise a subcommand's default None overwrites a value given before it.
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="TOML settings file (env LITE_CSMS_CONFIG)")
    common.add_argument("--database", default=argparse.SUPPRESS,
                        help="SQLite file (default lite-csms.sqlite3)")
    parser = argparse.ArgumentParser(
        prog="lite-csms", parents=[common],
        description="A lightweight, low-bandwidth OCPP-J CSMS on trio and SQLite.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", parents=[common], help="run the OCPP-J server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--heartbeat-interval", type=int)
    serve.add_argument("--auto-register", action="store_true", default=None,
                       help="keep unknown stations as pending instead of refusing them")
    serve.add_argument("--free-charging", action="store_true", default=None,
                       help="accept id tokens the CSMS does not know")
    serve.add_argument("--ws-ping-interval", type=float)
    serve.add_argument("--admin-port", type=int, help="admin HTTP API port (default 9001)")
    serve.add_argument("--log-level")
    serve.add_argument("--inbound-mode", choices=config.INBOUND_MODES,
                       help="lenient (default): accept and record known charger deviations; "
                            "strict: refuse every schema violation")
    stations.add_parsers(sub, common)
    tokens.add_parsers(sub, common)
    transactions.add_parsers(sub, common)
    apikeys.add_parsers(sub, common)
    remote.add_parsers(sub, common)
    budget.add_parsers(sub, common)
    return parser


def _settings(args: argparse.Namespace) -> config.Settings:
    overrides = {"database": getattr(args, "database", None)}
    for name in ("host", "port", "heartbeat_interval", "auto_register", "ws_ping_interval",
                 "log_level", "admin_port", "free_charging", "inbound_mode"):
        overrides[name] = getattr(args, name, None)
    return config.load(getattr(args, "config", None), overrides=overrides)


def _serve(settings: config.Settings) -> int:
    from lite_csms.net.server import CsmsServer

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    db = open_database(settings.database)
    server = CsmsServer(settings, db)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    logging.getLogger("lite_csms").info("stopping on signal %d", signum)
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    finally:
        db.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
        if args.command == "serve":
            return _serve(settings)
        if args.command in ("remote", "config"):
            return remote.run(args, settings)
        db = open_database(settings.database)
        try:
            if args.command == "budget":
                return budget.run(args, settings)
            handler = {"station": stations.run, "token": tokens.run, "tx": transactions.run,
                       "apikey": apikeys.run}
            return handler[args.command](args)
        finally:
            db.close()
    except (config.ConfigError, DatabaseError, CliError) as exc:
        print(f"lite-csms: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"lite-csms: error: {exc.strerror or exc}", file=sys.stderr)
        return 2

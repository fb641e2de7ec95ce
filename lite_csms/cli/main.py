"""Entry point: `lite-csms serve`, `station`, `token`, `tx`, and the sharing commands
`owner`, `driver`, `tariff` and `statement`."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import peewee as pw

from lite_csms import __version__, config
from lite_csms.cli import (
    apikeys,
    backup,
    budget,
    remote,
    sharing,
    stations,
    tokens,
    transactions,
)
from lite_csms.cli.output import CliError
from lite_csms.db.database import DatabaseError, open_database
from lite_csms.net.ports import PortBusy

# 128 + SIGPIPE: what a shell reports for a tool its reader stopped listening to.
EXIT_BROKEN_PIPE = 141


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments get one line on stderr and exit 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        if message.endswith("expected one argument"):
            # argparse reads "-inf" or "-5.x" after an option as another option.
            message += " (a value starting with '-' is written --option=VALUE, e.g. --limit=-1)"
        # "argument --connector: must be ..." reads as "--connector must be ...".
        message = re.sub(r"^argument (--[\w-]+): must be", r"\1 must be", message)
        self.exit(2, f"lite-csms: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: otherwise a subcommand's default None overwrites a value given before it.
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="TOML settings file (env LITE_CSMS_CONFIG)")
    common.add_argument("--database", default=argparse.SUPPRESS,
                        help="SQLite file (env LITE_CSMS_DATABASE; default "
                             "~/.local/share/lite-csms/lite-csms.sqlite3, for root "
                             "/var/lib/lite-csms/lite-csms.sqlite3)")
    parser = OneLineParser(
        prog="lite-csms", parents=[common],
        description="A lightweight, low-bandwidth OCPP-J CSMS on trio and SQLite.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", parents=[common], help="run the OCPP-J server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--heartbeat-interval", type=int)
    serve.add_argument("--boot-retry-interval", type=int,
                       help="seconds a Pending or Rejected station waits before booting "
                            "again (default 900)")
    serve.add_argument("--auto-register", action="store_true", default=None,
                       help="keep unknown stations as pending instead of refusing them")
    serve.add_argument("--free-charging", action="store_true", default=None,
                       help="accept id tokens the CSMS does not know")
    serve.add_argument("--ws-ping-interval", type=float)
    serve.add_argument("--admin-port", type=int, help="admin HTTP API port (default 9001)")
    serve.add_argument("--log-level")
    serve.add_argument("--ports-file", default=None,
                       help="once listening, write the bound ports here as JSON (for --port 0)")
    serve.add_argument("--lite", action=argparse.BooleanOptionalAction, default=None,
                       help="offer the lite link (codecs/SPEC.md) to stations that ask for "
                            "it (default on; env LITE_CSMS_LITE)")
    serve.add_argument("--inbound-mode", choices=config.INBOUND_MODES,
                       help="lenient (default): accept and record known charger deviations; "
                            "strict: refuse every schema violation")
    stations.add_parsers(sub, common)
    tokens.add_parsers(sub, common)
    transactions.add_parsers(sub, common)
    apikeys.add_parsers(sub, common)
    remote.add_parsers(sub, common)
    budget.add_parsers(sub, common)
    backup.add_parsers(sub, common)
    sharing.add_parsers(sub, common)
    return parser


def _settings(args: argparse.Namespace) -> config.Settings:
    overrides = {"database": getattr(args, "database", None)}
    for name in ("host", "port", "heartbeat_interval", "boot_retry_interval",
                 "auto_register", "ws_ping_interval",
                 "log_level", "admin_port", "free_charging", "inbound_mode", "lite"):
        overrides[name] = getattr(args, name, None)
    return config.load(getattr(args, "config", None), overrides=overrides)


def creates_database(args: argparse.Namespace) -> bool:
    """Only `serve`, the `add` commands and `station import` may create the database;
    reading never does."""
    if args.command == "serve":
        return True
    sub = getattr(args, f"{args.command}_command", None)
    return sub in ("add", "import")


def open_store(settings: config.Settings, *, create: bool,
               say: Callable[[str], None]) -> pw.SqliteDatabase:
    """Open the configured database. A missing one is created (with its directory, for the
    default location) only when `create`, and then `say` names it; otherwise it is an error.
    """
    path = Path(settings.database)
    if path.exists():
        return open_database(path)
    # Earlier releases defaulted to the working directory: point at a file left there.
    old = Path(config.DATABASE_NAME)
    hint = (f" ({old.resolve()} is an earlier release's default: pass --database {old})"
            if old.is_file() else "")
    if not create:
        raise CliError(f"database {path} does not exist; give --database or LITE_CSMS_DATABASE, "
                       f"or create it with `lite-csms serve` or `lite-csms station add`{hint}")
    is_default = str(path) == str(config.default_database())
    if is_default and hint:
        # A fresh, empty default would refuse every station the operator registered.
        raise CliError(f"database {path} does not exist and {old.resolve()} is an earlier "
                       f"release's default: pass --database {old} to keep using it, or move it "
                       f"to {path}")
    if is_default:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = open_database(path)
    say(f"created database {path.resolve()}{hint}")
    return db


def _serve(settings: config.Settings, ports_file: str | None = None) -> int:
    import trio

    from lite_csms.net.ports import hold_ports, write_ports_file
    from lite_csms.net.server import CsmsServer

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("lite_csms")
    # The ports first: a second server on them must fail before it touches the database.
    held = hold_ports(settings.host, settings.port,
                      settings.admin_host if settings.admin_enabled else None,
                      settings.admin_port)
    try:
        db = open_store(settings, create=True, say=log.info)
    except BaseException:
        held.close()
        raise
    if ports_file:
        write_ports_file(ports_file, held)
    log.info("database %s", Path(settings.database).resolve())
    server = CsmsServer(settings, db, held)

    def exit_now() -> None:
        # The stop has written the final state and closed the store: every station has its
        # 1001, and the connections left open are the kernel's to close.
        db.close()
        _exit_quietly()

    server.exit_when_durable = exit_now

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                async def on_signals() -> None:
                    async for signum in signals:
                        if server.stopping:
                            log.info("second signal %d: stopping at once", signum)
                            nursery.cancel_scope.cancel()
                            return
                        log.info("stopping on signal %d", signum)
                        server.stop()

                nursery.start_soon(on_signals)
                await server.run()
                nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        db.close()
    _exit_quietly()


def _exit_quietly() -> NoReturn:
    # Everything is durable and the database closed. What the interpreter would still do is
    # free the last connections' objects one by one and collect: seconds after a stop with
    # 10,000 stations (docs/PERFORMANCE.md, "Graceful stop"), and nothing anyone keeps.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _quiet_broken_pipe() -> int:
    # The reader (`| head`) has gone: nothing more can be shown. Point stdout at /dev/null
    # so that the interpreter's final flush does not complain either.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        return _quiet_broken_pipe()
    return code


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
        if args.command == "serve":
            return _serve(settings, args.ports_file)
        if args.command in ("remote", "config"):
            return remote.run(args, settings)
        if args.command == "tx" and args.tx_command == "progress":
            return transactions.progress(args, settings)
        db = open_store(settings, create=creates_database(args),
                        say=lambda line: print(f"lite-csms: {line}", file=sys.stderr))
        try:
            if args.command == "budget":
                return budget.run(args, settings)
            if args.command == "backup":
                return backup.run(args, Path(settings.database))
            if args.command == "station":
                return stations.run(args, settings)
            if args.command in ("owner", "driver", "tariff", "statement"):
                return sharing.run(args, settings)
            handler = {"token": tokens.run, "tx": transactions.run, "apikey": apikeys.run}
            return handler[args.command](args)
        finally:
            db.close()
    except (config.ConfigError, DatabaseError, CliError, PortBusy) as exc:
        print(f"lite-csms: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        print(f"lite-csms: error: {exc.strerror or exc or type(exc).__name__}", file=sys.stderr)
        return 2

"""The command line: flags to StationOptions, a station per version, a run that ends cleanly
on SIGINT or SIGTERM, and the JSON summary. tools/station_sim.py calls `main`."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import TextIO

import trio

from lite_csms.ocppj.versions import SUPPORTED_SUBPROTOCOLS, Version

from .connection import ConnectedStation
from .scenarios import SCENARIOS
from .state import EXIT_INTERRUPTED, Clock, Report, StationOptions
from .v2 import StationV2
from .v16 import StationV16


def make_station(options: StationOptions, *, clock: Clock | None = None,
                 log_stream: TextIO | None = None) -> ConnectedStation:
    cls = StationV16 if options.protocol is Version.OCPP16 else StationV2
    return cls(options, clock=clock, log_stream=log_stream)


# ---- command line ------------------------------------------------------------------------------
def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Simulate an OCPP-J charging station against a CSMS.")
    add = parser.add_argument
    add("--url", required=True, help="CSMS base URL; /<id> is appended, as chargers do")
    add("--id", dest="station_id", required=True, help="charging station id")
    add("--password", help="HTTP Basic auth password (security profile 1)")
    add("--protocol", default="ocpp1.6", choices=sorted(SUPPORTED_SUBPROTOCOLS))
    add("--scenario", default="boot", choices=sorted(SCENARIOS))
    add("--connectors", type=int, default=1, help="connectors (1.6) or EVSEs (2.x)")
    add("--id-tag", default="SIMTAG01", help="the RFID tag the scenario charges with")
    add("--energy-wh", type=_count, default=10_000, help="energy the charge scenario delivers")
    add("--meter-values", type=_count, default=3, help="periodic samples in the charge scenario")
    add("--heartbeats", type=_count, default=3, help="heartbeats the heartbeat scenario waits for")
    add("--power-w", type=_positive, default=7400.0, help="power of remotely started sessions")
    add("--meter-start-wh", type=_count, default=1000, help="energy register at power-up")
    add("--linger", type=float, default=0.0,
        help="simulated seconds to stay connected after the scenario ('inf': until killed)")
    add("--time-scale", type=_positive, default=1.0,
        help="simulated seconds per real second; divides every interval")
    add("--call-timeout", type=_positive, default=30.0, help="real seconds to wait for an answer")
    add("--max-boot-attempts", type=_count, default=0,
        help="give up after this many Pending boots (0: keep trying, as a charger does)")
    add("--lite", action="store_true",
        help="offer the lite link (<protocol>.lite1, codecs/SPEC.md) first, plain OCPP-J after")
    add("--json", dest="json_summary", action="store_true",
        help="print a JSON summary on stdout (log on stderr)")
    return parser


def parse_args(argv: list[str] | None = None) -> StationOptions:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.connectors < 1:
        parser.error("--connectors must be at least 1")
    if args.password is not None and ":" in args.station_id:
        parser.error("a station id with ':' cannot be sent as a Basic auth user name")
    if args.linger < 0:
        parser.error("--linger must not be negative")
    values = vars(args)
    values["protocol"] = SUPPORTED_SUBPROTOCOLS[args.protocol]
    return StationOptions(**values)


async def run_until_signalled(station: ConnectedStation) -> Report:
    """Run the station; SIGINT or SIGTERM ends it with a clean close and a report, which is
    how a `--linger inf` run is meant to end. A second signal stops it at once."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, station, nursery.cancel_scope)
        await station.run()
        nursery.cancel_scope.cancel()
    return station.report


async def _stop_on_signal(station: ConnectedStation, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if station.shutting_down:
                scope.cancel()
                return
            station.report.fail(f"stopped by {signal.Signals(signum).name}", EXIT_INTERRUPTED)
            station.shut_down()


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    log_stream = sys.stderr if options.json_summary else sys.stdout
    station = make_station(options, log_stream=log_stream)
    report = trio.run(run_until_signalled, station)
    if options.json_summary:
        print(json.dumps(report.as_dict(), default=str), flush=True)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())

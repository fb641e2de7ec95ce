#!/usr/bin/env python3
"""Corpus recorder for the lite link's dictionaries: every OCPP-J message of the reference
profiles, both directions, as the station simulator and the real server exchange them.

It runs tools/traffic_sim.py's month runs (a real `lite-csms serve` on 127.0.0.1 with TLS,
the station simulator in accelerated time: sessions with meter values, status changes,
boots after link drops, heartbeats, authorisation, and with the budget policy on the
CSMS's ChangeConfiguration / SetVariables) for every profile, OCPP version and policy
setting, and keeps each message that crosses the station's transport. One more run per
version has an operator work a lingering station through the admin API: TriggerMessage,
GetConfiguration / GetVariables, ChangeConfiguration / SetVariables, a remote start and stop.
Output is JSONL, one message a line: {"protocol", "profile", "policy", "direction",
"message"}; direction is "to_csms" or "to_station"; message is the OCPP-J array.

    python tools/lite_record.py --out /tmp/corpus --protocol ocpp1.6 --profile home-share
    python tools/lite_record.py --out codecs/corpus --compress   # the committed one (~12 min)

Not byte-for-byte reproducible: timestamps come from the wall clock (the server's) and the
accelerated clock (the station's), transaction UUIDs are random, and scheduling under load
moves a few messages. What the dictionaries are trained from is therefore committed
(codecs/corpus/<protocol>.jsonl.zst), and the trainer is deterministic given that file.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import orjson
import trio
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common
import station_sim as sim
import traffic_sim

from lite_csms.budget.client import MeteredLink
from lite_csms.ocppj.versions import Version

PROTOCOLS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")
TO_CSMS, TO_STATION = "to_csms", "to_station"
# The corpus compresses ~40x with a plain zstd level-19 frame; committed files stay small.
CORPUS_LEVEL = 19


class RecordingTransport:
    """A Transport that passes everything through and writes each message to `sink`."""

    def __init__(self, inner: sim.Transport, sink: TextIO, tags: dict[str, Any]) -> None:
        self.inner, self.sink, self.tags = inner, sink, tags

    @property
    def subprotocol(self) -> str | None:
        return self.inner.subprotocol

    @property
    def bytes_sent(self) -> int:
        return self.inner.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self.inner.bytes_received

    def _write(self, direction: str, message: sim.Message) -> None:
        line = {**self.tags, "direction": direction, "message": message}
        self.sink.write(orjson.dumps(line).decode() + "\n")

    async def send(self, messages: Sequence[sim.Message]) -> None:
        await self.inner.send(messages)
        for message in messages:
            self._write(TO_CSMS, message)

    async def receive(self) -> list[sim.Inbound]:
        inbound = await self.inner.receive()
        for message in inbound:
            if not isinstance(message, sim.Undecodable):
                self._write(TO_STATION, message)
        return inbound

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


class RecordingMonth(traffic_sim.MonthRun):
    """A traffic_sim month whose every connection is recorded."""

    sink: TextIO
    tags: dict[str, Any]

    def transport(self, link: MeteredLink) -> sim.Transport:
        return RecordingTransport(super().transport(link), self.sink, self.tags)


def record_run(profile: str, protocol: str, policy: bool, days: float, scale: float,
               sink: TextIO) -> None:
    """One month run (of `days` simulated days) appended to `sink`."""
    station_id = f"SIM-{profile}"
    with tempfile.TemporaryDirectory() as tmp:
        with traffic_sim.running_server(
                Path(tmp), station_id, policy=policy, cap=None,
                nat_timeout=traffic_sim.PROFILES[profile].nat_timeout) as server:
            run = RecordingMonth(traffic_sim.PROFILES[profile], Version(protocol), days, scale,
                                 server, station_id, policy)
            run.sink = sink
            run.tags = {"protocol": protocol, "profile": profile, "policy": policy}
            trio.run(run.run)


# ---- the operator's calls ------------------------------------------------------------------
OPERATOR_STATION = "SIM-operator"
# (operation, args) through the admin API, in order; "{tx}" is the running transaction.
OPERATIONS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "ocpp1.6": [
        ("trigger", {"message": "Heartbeat"}),
        ("trigger", {"message": "StatusNotification", "connector": 1}),
        ("get-config", {"keys": ["HeartbeatInterval", "MeterValueSampleInterval"]}),
        ("set-config", {"key": "MeterValueSampleInterval", "value": "300"}),
        ("remote-start", {"connector": 1, "token": traffic_sim.ID_TAG}),
        ("trigger", {"message": "MeterValues", "connector": 1}),
        ("remote-stop", {"transaction": "{tx}"}),
    ],
    "ocpp2.0.1": [
        ("trigger", {"message": "Heartbeat"}),
        ("trigger", {"message": "StatusNotification", "connector": 1}),
        ("get-config", {"keys": ["OCPPCommCtrlr.HeartbeatInterval",
                                 "AlignedDataCtrlr.Interval"]}),
        ("set-config", {"key": "SampledDataCtrlr.TxUpdatedInterval", "value": "300"}),
        ("remote-start", {"connector": 1, "token": traffic_sim.ID_TAG}),
        ("trigger", {"message": "MeterValues", "connector": 1}),
        ("remote-stop", {"transaction": "{tx}"}),
    ],
}
OPERATIONS["ocpp2.1"] = OPERATIONS["ocpp2.0.1"]


class Api:
    """The admin HTTP API on 127.0.0.1, with a key."""

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", method=method,
            data=None if body is None else orjson.dumps(body),
            headers={"Authorization": f"Bearer {self.key}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return orjson.loads(response.read())


def _recording_station(version: Version, options: sim.StationOptions, sink: TextIO,
                       tags: dict[str, Any]) -> sim.ConnectedStation:
    base = sim.StationV16 if version is Version.OCPP16 else sim.StationV2

    class Recording(base):  # type: ignore[misc, valid-type]
        @asynccontextmanager
        async def _open(self, url: str, subprotocols: Sequence[str], headers: Any
                        ) -> AsyncIterator[sim.Transport]:
            async with sim.open_websocket(url, subprotocols, headers) as transport:
                yield RecordingTransport(transport, sink, tags)

        def dial(self, url: str, subprotocols: Sequence[str], headers: Any) -> Any:
            return self._open(url, subprotocols, headers)

    return Recording(options)


async def _operate(station: sim.ConnectedStation, api: Api, protocol: str) -> None:
    async def send(operation: str, args: dict[str, Any]) -> Any:
        if args.get("transaction") == "{tx}":
            rows = await trio.to_thread.run_sync(
                api.call, "GET", f"/transactions?station={OPERATOR_STATION}&active=true")
            args = {**args, "transaction": rows[0]["id"]}
        return await trio.to_thread.run_sync(
            api.call, "POST", f"/stations/{OPERATOR_STATION}/commands",
            {"operation": operation, "args": args})

    # Until the station has booted, the API answers 409.
    with trio.fail_after(30):
        while True:
            try:
                await send("trigger", {"message": "BootNotification"})
                break
            except urllib.error.HTTPError:
                await trio.sleep(0.2)
    for operation, args in OPERATIONS[protocol]:
        await send(operation, args)
        # A few simulated minutes between them: meter values flow during the session.
        await station.clock.sleep(300)
    await station.clock.sleep(120)


def record_operator(protocol: str, scale: float, sink: TextIO) -> None:
    """A station that lingers while an operator works it through the admin API: triggers,
    configuration reads and writes, a remote start and stop."""
    version = Version(protocol)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env = {**os.environ, "LITE_CSMS_DATABASE": str(workdir / "csms.sqlite3"),
               "LITE_CSMS_HOST": "127.0.0.1", "LITE_CSMS_ADMIN_ENABLED": "1",
               "LITE_CSMS_BUDGET_POLICY": "0", "LITE_CSMS_LOG_LEVEL": "WARNING"}
        traffic_sim._cli(env, "station", "add", OPERATOR_STATION, "--no-password")
        traffic_sim._cli(env, "token", "add", traffic_sim.ID_TAG)
        key = traffic_sim._cli(env, "apikey", "add", "recorder").splitlines()[0]
        with bench_common.serving(env, workdir, 20) as served:
            assert served.admin_port is not None
            api = Api(served.admin_port, key.split(": ", 1)[1].strip())
            options = sim.StationOptions(
                url=f"ws://127.0.0.1:{served.port}/ocpp", station_id=OPERATOR_STATION,
                protocol=version, scenario="boot", linger=math.inf, time_scale=scale)
            tags = {"protocol": protocol, "profile": "operator", "policy": False}
            station = _recording_station(version, options, sink, tags)

            async def run() -> None:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(station.run)
                    await _operate(station, api, protocol)
                    station.shut_down()

            trio.run(run)


def read_corpus(path: Path) -> list[dict[str, Any]]:
    """The lines of a corpus file, plain .jsonl or zstd-compressed .jsonl.zst."""
    data = path.read_bytes()
    if path.suffix == ".zst":
        data = zstandard.ZstdDecompressor().decompress(data)
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def corpus_path(folder: Path, protocol: str, compressed: bool) -> Path:
    return folder / f"{protocol}.jsonl{'.zst' if compressed else ''}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for <protocol>.jsonl")
    parser.add_argument("--protocol", action="append", choices=PROTOCOLS,
                        help="repeatable; default: all three")
    parser.add_argument("--profile", action="append", choices=sorted(traffic_sim.PROFILES),
                        help="repeatable; default: every reference profile")
    parser.add_argument("--days", type=float, default=0.5, help="simulated days per run")
    parser.add_argument("--time-scale", type=float, default=1000.0,
                        help="simulated seconds per real second")
    parser.add_argument("--no-operator", action="store_true",
                        help="leave out the admin-API run (triggers, config, remote start)")
    parser.add_argument("--operator-time-scale", type=float, default=100.0)
    parser.add_argument("--compress", action="store_true",
                        help="write <protocol>.jsonl.zst (zstd level 19, no dictionary)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for protocol in args.protocol or PROTOCOLS:
        with tempfile.TemporaryFile("w+", encoding="utf-8") as sink:
            for profile in args.profile or sorted(traffic_sim.PROFILES):
                for policy in (False, True):
                    record_run(profile, protocol, policy, args.days, args.time_scale, sink)
                    print(f"{protocol} {profile} policy={'on' if policy else 'off'}: "
                          f"{sink.tell():,} bytes so far", file=sys.stderr, flush=True)
            if not args.no_operator:
                record_operator(protocol, args.operator_time_scale, sink)
                print(f"{protocol} operator: {sink.tell():,} bytes so far", file=sys.stderr)
            sink.seek(0)
            data = sink.read().encode()
        target = corpus_path(args.out, protocol, args.compress)
        if args.compress:
            data = zstandard.ZstdCompressor(level=CORPUS_LEVEL).compress(data)
        target.write_bytes(data)
        print(f"{target}: {len(data):,} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

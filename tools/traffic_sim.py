#!/usr/bin/env python3
"""Traffic simulator: a reference month against the real server, bytes counted at both ends.

It starts `lite-csms serve` with TLS on a throwaway certificate, registers a station with a
password (security profile 2), and runs a profile through the station simulator in
accelerated time: sessions, link drops with their reconnects, pings, heartbeats and meter
values, all honouring whatever configuration the CSMS sets. The station counts its own
bytes (its own counting streams and TCP_INFO); the server's accounting is read back from
SQLite. Both are reported per layer, and they must agree within 2%. Billing is checked too:
every transaction the station made must be stored with its meter start, acknowledged stop and
energy (`billing_check`); the command exits 1 when one is not.

    python tools/traffic_sim.py --profile home-share --protocol ocpp1.6 --policy on
    python tools/traffic_sim.py --table          # every profile, version and policy setting
    python tools/traffic_sim.py --lite --table --days 1 --time-scale 3000   # lite, 1.6-2.1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common
import station_sim as sim
import throwaway_tls

from lite_csms.budget import levels
from lite_csms.budget.client import MeteredLink, open_metered
from lite_csms.budget.meter import IN, LAYERS, OUT
from lite_csms.ocppj.versions import Version

DAY = 86400.0
ID_TAG = "SIMTAG01"
LAYER_ORDER = ("ip", "tls", "ws", "payload")
# IP bytes of one server TCP keepalive probe and its ACK (tools/bench_keepalive.py).
KEEPALIVE_PROBE_BYTES = 104
# The charger's stock settings, before any CSMS changes them.
STOCK = {
    sim.HEARTBEAT_INTERVAL: "300",
    sim.SAMPLE_INTERVAL: "60",
    sim.SAMPLED_DATA: ",".join((sim.ENERGY, sim.POWER, sim.CURRENT, sim.VOLTAGE)),
    sim.WS_PING_INTERVAL: "60",
}


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    connectors: int
    sessions_per_day: int
    session_minutes: int
    drops_per_day: int
    nat_timeout: int
    power_w: float = 7400.0


PROFILES = {
    "home-share": Profile("home-share", 1, 2, 150, 4, 600),
    "village-hub": Profile("village-hub", 4, 20, 45, 8, 120, power_w=11000.0),
}


# ---- the server ----------------------------------------------------------------------------
@dataclass
class Server:
    port: int
    database: Path
    client_tls: ssl.SSLContext
    password: str
    process: subprocess.Popen[bytes]


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "lite_csms", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


@contextmanager
def running_server(workdir: Path, station_id: str, *, policy: bool, cap: int | None,
                   nat_timeout: int) -> Iterator[Server]:
    cert_file, key_file, client_tls = throwaway_tls.issue(workdir)
    database = workdir / "csms.sqlite3"
    env = {**os.environ, "LITE_CSMS_DATABASE": str(database), "LITE_CSMS_HOST": "127.0.0.1",
           "LITE_CSMS_TLS_CERT": str(cert_file),
           "LITE_CSMS_TLS_KEY": str(key_file), "LITE_CSMS_ADMIN_ENABLED": "0",
           "LITE_CSMS_BUDGET_POLICY": "1" if policy else "0",
           "LITE_CSMS_NAT_TIMEOUT": str(nat_timeout),
           # Accelerated time: flush often, so the month's last minutes are written too.
           "LITE_CSMS_TRAFFIC_FLUSH_INTERVAL": "0.5", "LITE_CSMS_LOG_LEVEL": "WARNING"}
    if cap is not None:
        env["LITE_CSMS_BUDGET_CAP"] = str(cap)
    password = _station_password(_cli(env, "station", "add", station_id))
    _cli(env, "token", "add", ID_TAG)
    with bench_common.serving(env, workdir, 20) as served:
        yield Server(served.port, database, client_tls, password, served.process)


def _station_password(output: str) -> str:
    for line in output.splitlines():
        if "password" in line.lower():
            return line.rsplit(" ", 1)[-1].strip()
    raise RuntimeError(f"no password in {output!r}")


def server_totals(database: Path, station_id: str) -> dict[str, Any]:
    """The server's accounting as stored: bytes by layer and direction (CSMS's view)."""
    import sqlite3

    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT layer, direction, SUM(bytes) FROM traffic_counter WHERE station_id = ? "
            "GROUP BY layer, direction", (station_id,)).fetchall()
        by_action = db.execute(
            "SELECT action, SUM(bytes) FROM traffic_counter WHERE station_id = ? "
            "AND layer = 'ip' GROUP BY action ORDER BY 2 DESC", (station_id,)).fetchall()
        setup = db.execute(
            "SELECT tls_resumed, COUNT(*), AVG(tcp_setup_bytes), AVG(tls_setup_bytes), "
            "AVG(http_setup_bytes) FROM traffic_connection WHERE station_id = ? "
            "GROUP BY tls_resumed", (station_id,)).fetchall()
        retransmitted = db.execute(
            "SELECT COALESCE(SUM(retransmitted_bytes), 0) FROM traffic_connection "
            "WHERE station_id = ?", (station_id,)).fetchone()[0]
    totals: dict[str, Any] = {layer: {IN: 0, OUT: 0} for layer in LAYERS}
    for layer, direction, amount in rows:
        totals[layer][direction] = int(amount)
    totals["retransmitted"] = int(retransmitted)
    totals["by_action"] = {action: int(amount) for action, amount in by_action}
    totals["setup"] = {("resumed" if resumed else "full"): {
        "connections": count, "tcp": round(tcp), "tls": round(tls), "http": round(http)}
        for resumed, count, tcp, tls, http in setup}
    return totals


# ---- the station ---------------------------------------------------------------------------
class MeteredWs:
    """The station's WebSocket with its OCPP messages (text, or lite frames) tallied on its
    own meter."""

    def __init__(self, link: MeteredLink) -> None:
        self._link = link

    async def get_message(self) -> str | bytes:
        message = await self._link.ws.get_message()
        self._link.meter.message("(station)", True, message)
        return message

    async def send_message(self, message: str | bytes) -> None:
        await self._link.ws.send_message(message)
        self._link.meter.message("(station)", False, message)

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        await self._link.ws.aclose(code, reason)


class TrafficStation:
    """Session and boot calls wait out a dropped link and go again once reconnected, as a
    charger queues its transaction messages; the boot itself goes on the new link."""

    ready: trio.Event
    booting: bool

    async def call(self, action: str, payload: sim.Payload) -> sim.Payload:
        while True:
            if not self.booting:
                await self.ready.wait()
            try:
                return await super().call(action, payload)  # type: ignore[misc]
            except sim.LinkLost:
                if self.booting:
                    raise
                await trio.sleep(0)


class TrafficV16(TrafficStation, sim.StationV16):
    pass


class TrafficV2(TrafficStation, sim.StationV2):
    pass


@dataclass
class Tally:
    connections: int = 0
    resumed: int = 0
    drops: int = 0
    nat_expiries: int = 0
    # Server TCP keepalive probes that held the NAT (modelled: see MonthRun._nat_watch).
    keepalive_probes: int = 0
    sessions: int = 0
    sessions_skipped: int = 0
    # Drops (and the final close) that could not wait for the exchange in flight (1 s real).
    drops_mid_exchange: int = 0
    # Payload bytes the station's kernel sent a second time (tcpi_bytes_retrans).
    retransmitted: int = 0
    # Connections by the subprotocol the server picked ("ocpp2.0.1.lite1", "ocpp1.6", ...).
    subprotocols: dict[str, int] = field(default_factory=dict)
    station: dict[str, dict[str, int]] = field(
        default_factory=lambda: {layer: {IN: 0, OUT: 0} for layer in LAYERS})

    def add(self, totals: dict[tuple[str, str], int]) -> None:
        for (direction, layer), amount in totals.items():
            self.station[layer][direction] += amount


class MonthRun:
    def __init__(self, profile: Profile, version: Version, days: float, scale: float,
                 server: Server, station_id: str, policy: bool = False, lite: bool = False
                 ) -> None:
        self.profile, self.version, self.days = profile, version, days
        self.policy = policy
        # Offer the lite link first (codecs/SPEC.md), plain OCPP-J after.
        self.lite = lite
        self.server, self.station_id = server, station_id
        self.clock = sim.Clock(scale)
        options = sim.StationOptions(
            url=f"wss://127.0.0.1:{server.port}/ocpp", station_id=station_id,
            protocol=version, password=server.password, connectors=profile.connectors,
            power_w=profile.power_w, time_scale=scale)
        cls = TrafficV16 if version is Version.OCPP16 else TrafficV2
        self.station = cls(options, clock=self.clock,
                           log_stream=sys.stderr if os.environ.get("TRAFFIC_SIM_LOG") else None)
        self.station.ready, self.station.booting = trio.Event(), False
        for key, value in STOCK.items():
            self.station.config.set(key, value)
        self.tally = Tally()
        self._teardowns: trio.Nursery | None = None
        self._pinging = False
        self._dropping = False
        self._drop = trio.Event()
        self._finished = False

    async def run(self) -> Tally:
        self.clock.anchor()
        loop_done = trio.Event()
        # Links that have ended finish their teardown here while the station reconnects.
        async with trio.open_nursery() as teardowns:
            self._teardowns = teardowns
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._connection_loop, loop_done)
                nursery.start_soon(self._sessions, nursery)
                nursery.start_soon(self._drops)
                await self.clock.sleep(self.days * DAY)
                # Sessions still charging stop while the link is up, so that every stop the
                # station made is one the server acknowledged (the billing check below).
                for tx in self.station.transactions():
                    tx.request_stop("Local")
                with trio.move_on_after(30):
                    while self.station.transactions():
                        await trio.sleep(0.01)
                self._finished = True
                self._drop.set()
                # The link in hand, even one still connecting, closes normally: cutting it
                # off would leave bytes the server counted and the station did not.
                with trio.move_on_after(30):
                    await loop_done.wait()
                nursery.cancel_scope.cancel()
        return self.tally

    # ---- the link ---------------------------------------------------------------------------
    async def _connection_loop(self, done: trio.Event) -> None:
        try:
            await self._connections()
        finally:
            done.set()

    async def _connections(self) -> None:
        session: ssl.SSLSession | None = None
        headers = sim.basic_auth_headers(self.station_id, self.server.password)
        while not self._finished:
            async with trio.open_nursery() as conn:
                link = await open_metered(
                    conn, "127.0.0.1", self.server.port, f"/ocpp/{self.station_id}",
                    (sim.lite_offer(self.version.value) if self.lite
                     else [self.version.value]), ssl_context=self.server.client_tls,
                    session=session, extra_headers=headers)
                self.tally.connections += 1
                picked = link.ws.subprotocol or "(none)"
                self.tally.subprotocols[picked] = self.tally.subprotocols.get(picked, 0) + 1
                self._dropping = False
                self.tally.resumed += link.meter.tls_resumed
                transport = self.transport(link)
                rpc = sim.RpcLink(transport, self.version,
                                  answer=self.station._answer_inbound,
                                  spawn=self.station.spawn, log=self.station.log,
                                  call_timeout=30)
                self.station.attach(rpc, conn)
                conn.start_soon(self._read, rpc)
                self.station.booting = True
                await self.station.boot("PowerUp")
                self.station.booting = False
                self.station.ready.set()
                conn.start_soon(self.station.heartbeat_loop)
                conn.start_soon(self._ping_loop, link)
                conn.start_soon(self._nat_watch, link)
                await self._drop.wait()
                self._drop = trio.Event()
                self.station.ready = trio.Event()
                session = link.session or session
                # The link goes between exchanges (new calls wait for `ready`, no new pings),
                # so that both ends' applications have read the same messages: an answer cut
                # off in flight crosses the wire but only the server's upper layers count it.
                self._dropping = True
                with trio.move_on_after(1) as waiting:
                    while rpc.busy or self._pinging:
                        await trio.sleep(0.001)
                self.tally.drops_mid_exchange += waiting.cancelled_caught
                if self._finished:
                    with trio.move_on_after(5):
                        await link.ws.aclose()
                else:
                    # The radio link is gone: no close frame, just the socket's end.
                    assert link.meter.plain is not None
                    await trio.aclose_forcefully(link.meter.plain)
                conn.cancel_scope.cancel()
            self.station.detach()
            self._teardowns.start_soon(self._count, link)

    def transport(self, link: MeteredLink) -> sim.Transport:
        """The station's transport on a metered link: OCPP-J, or the lite link when the server
        picked it. The corpus recorder (tools/lite_record.py) wraps it to keep every message."""
        plain = sim.LITE_SUBPROTOCOLS.get(link.ws.subprotocol or "")
        if plain is not None:
            return sim.LiteTransport(MeteredWs(link), plain)  # type: ignore[arg-type]
        return sim.WebSocketTransport(MeteredWs(link))  # type: ignore[arg-type]

    async def _count(self, link: MeteredLink) -> None:
        """A link's bytes, once its FINs have crossed; the last kernel reading counts them."""
        await link.finish()
        link.meter.collect()
        self.tally.add(link.meter.totals)
        self.tally.retransmitted += link.meter.retransmitted_at_close

    async def _read(self, rpc: sim.RpcLink) -> None:
        try:
            await rpc.serve()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the link was dropped on purpose

    async def _ping_loop(self, link: MeteredLink) -> None:
        """WebSocket pings on a fixed grid of WebSocketPingInterval."""
        due = self.clock.elapsed()
        while True:
            interval = self.station.config.seconds(sim.WS_PING_INTERVAL)
            if interval <= 0:
                await self.station.config.changed.wait()
                continue
            due = max(due + interval, self.clock.elapsed() - interval)
            with self.clock.move_on_after(due - self.clock.elapsed()) as timer:
                await self.station.config.changed.wait()
            if timer.cancelled_caught and not self._dropping:
                self._pinging = True
                try:
                    with trio.move_on_after(10):
                        await link.ws.ping()
                except ConnectionClosed:
                    return  # the link is going; the connection loop handles it
                finally:
                    self._pinging = False
            else:
                due = self.clock.elapsed()

    async def _nat_watch(self, link: MeteredLink) -> None:
        """A carrier NAT forgets a mapping idle for nat_timeout; the charger then reconnects.

        Idle time is judged in real seconds scaled, with 20 ms of real slack for scheduling
        jitter, so only a configuration that leaves the link quiet too long trips it.

        With the policy on and the station's ping off, the server's TCP keepalive holds the
        mapping: a probe after 0.9 x nat_timeout of silence. Kernel timers run in real
        seconds and cannot be accelerated, so the probe is modelled here: counted, priced at
        its measured 104 B (tools/bench_keepalive.py), and taken as traffic by the NAT.
        """
        meter = link.meter
        nat = self.profile.nat_timeout
        keepalive = levels.keepalive_idle(nat) if self.policy else None
        seen, quiet_since = -1, self.clock.elapsed()
        slack = 0.02 * self.clock.scale
        while True:
            await self.clock.sleep(nat / 10)
            if self._dropping:
                return  # the link is already going; its quiet wait for the drop is no expiry
            moved = 0 if meter.plain is None else meter.plain.bytes_in + meter.plain.bytes_out
            now = self.clock.elapsed()
            pinging = self.station.config.seconds(sim.WS_PING_INTERVAL) > 0
            if moved != seen:
                seen, quiet_since = moved, now
            elif keepalive is not None and not pinging and now - quiet_since >= keepalive:
                self.tally.keepalive_probes += 1
                quiet_since = now
            elif now - quiet_since > nat + slack:
                # A drop already on its way (its reconnect still booting) is the same one.
                self.tally.nat_expiries += not self._drop.is_set()
                self._drop.set()
                return

    async def _drops(self) -> None:
        count = self.profile.drops_per_day
        for day in range(math.ceil(self.days)):
            for k in range(count):
                await self.clock.sleep_until(day * DAY + (k + 0.25) * DAY / count)
                if self._finished:
                    return
                self.tally.drops += not self._drop.is_set()
                self._drop.set()

    # ---- sessions ---------------------------------------------------------------------------
    async def _sessions(self, nursery: trio.Nursery) -> None:
        count = self.profile.sessions_per_day
        for day in range(math.ceil(self.days)):
            for k in range(count):
                await self.clock.sleep_until(day * DAY + (k + 0.5) * DAY / count)
                connector = self.station.free_connector(None)
                if connector is None or self._finished:
                    self.tally.sessions_skipped += 1
                    continue
                tx = self.station.new_transaction(connector, ID_TAG,
                                                  sim.ChargePlan(self.profile.power_w))
                self.tally.sessions += 1
                nursery.start_soon(self._session, tx)

    async def _session(self, tx: sim.SimTransaction) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._stop_after, tx)
            try:
                await self.station.charge(tx)
            except sim.SimFailure as exc:
                self.station.log(f"!! session failed: {exc}")
            nursery.cancel_scope.cancel()

    async def _stop_after(self, tx: sim.SimTransaction) -> None:
        await self.clock.sleep(self.profile.session_minutes * 60)
        tx.request_stop("Local")


# ---- reporting -----------------------------------------------------------------------------
def run_month(profile: Profile, version: Version, *, policy: bool, days: float, scale: float,
              cap: int | None = None, lite: bool = False) -> dict[str, Any]:
    station_id = f"SIM-{profile.name}"
    with tempfile.TemporaryDirectory() as tmp:
        with running_server(Path(tmp), station_id, policy=policy, cap=cap,
                            nat_timeout=profile.nat_timeout) as server:
            run = MonthRun(profile, version, days, scale, server, station_id, policy, lite)
            started = time.monotonic()
            tally = trio.run(run.run)
            elapsed = time.monotonic() - started
        # Read once the server has stopped: a graceful stop flushes the last counts, where a
        # fixed wait for the flush interval comes up short on a loaded machine.
        if server.process.returncode != 0:
            raise RuntimeError("the server did not stop gracefully:\n"
                               + (Path(tmp) / "server.log").read_text()[-2000:])
        seen_by_server = server_totals(server.database, station_id)
        billing = billing_check(run.station.report.transactions,
                                stored_transactions(server.database, station_id))
    month = 30 / days
    result = {
        "profile": profile.name, "protocol": version.value, "lite": lite, "policy": policy,
        "days": days,
        "time_scale": scale, "real_seconds": round(elapsed, 1),
        "connections": tally.connections, "tls_resumed": tally.resumed,
        "drops": tally.drops, "nat_expiries": tally.nat_expiries,
        "drops_mid_exchange": tally.drops_mid_exchange,
        "sessions": tally.sessions, "sessions_skipped": tally.sessions_skipped,
        "subprotocols": tally.subprotocols,
        "station": tally.station,
        "server": {layer: seen_by_server[layer] for layer in LAYERS},
        "setup_ip_bytes": seen_by_server["setup"],
        "server_ip_by_action": seen_by_server["by_action"],
        "retransmitted": {"station": tally.retransmitted,
                          "server": seen_by_server["retransmitted"]},
        "keepalive_probes": tally.keepalive_probes,
        "modelled_keepalive_ip_bytes": tally.keepalive_probes * KEEPALIVE_PROBE_BYTES,
        # Measured bytes plus the modelled keepalive probes, which neither end's counters see
        # in accelerated time.
        "month_ip_bytes": round((_both(seen_by_server["ip"])
                                 + tally.keepalive_probes * KEEPALIVE_PROBE_BYTES) * month),
        "billing": billing,
        "agreement": {layer: _difference(*_comparable(layer, tally, seen_by_server))
                      for layer in LAYER_ORDER},
    }
    return result


def stored_transactions(database: Path, station_id: str) -> list[dict[str, Any]]:
    """The server's transactions of one station as stored (meter readings in Wh)."""
    import sqlite3

    with sqlite3.connect(database) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            'SELECT id, station_tx_id, meter_start_wh, meter_stop_wh, energy_wh, stopped_at '
            'FROM "transaction" WHERE station_id = ? ORDER BY id', (station_id,)).fetchall()
    return [dict(row) for row in rows]


def billing_check(delivered: list[dict[str, Any]], stored: list[dict[str, Any]]
                  ) -> dict[str, Any]:
    """The station's own record of its transactions against the server's rows.

    `delivered`: the simulator's report (id = the CSMS's transactionId on 1.6, the station's
    transactionId on 2.x; a stop is recorded only once the CSMS acknowledged it). Billing is
    intact when every one is stored once, with the same meter start, and, when stopped, the
    same meter stop, energy = stop - start and a stop time; and the server holds no other.
    Returns counts and one line per mismatch in "problems".
    """
    by_id: dict[str, dict[str, Any]] = {}
    for row in stored:
        key = str(row["station_tx_id"] if row["station_tx_id"] is not None else row["id"])
        by_id[key] = row
    problems: list[str] = []
    seen: set[str] = set()
    for tx in delivered:
        key = str(tx["id"])
        seen.add(key)
        row = by_id.get(key)
        if row is None:
            problems.append(f"transaction {key}: not stored")
            continue
        if row["meter_start_wh"] != tx["meter_start_wh"]:
            problems.append(f"transaction {key}: meter start {row['meter_start_wh']} stored, "
                            f"{tx['meter_start_wh']} sent")
        if tx["stop_reason"] is None:
            continue
        if row["stopped_at"] is None:
            problems.append(f"transaction {key}: stop acknowledged but not stored")
            continue
        for field_name in ("meter_stop_wh", "energy_wh"):
            if row[field_name] != tx[field_name]:
                problems.append(f"transaction {key}: {field_name} {row[field_name]} stored, "
                                f"{tx[field_name]} delivered")
    problems += [f"transaction {key}: stored, unknown to the station"
                 for key in by_id if key not in seen]
    stopped = [tx for tx in delivered if tx["stop_reason"] is not None]
    return {"transactions": len(delivered), "stopped": len(stopped),
            "energy_wh": sum(tx["energy_wh"] for tx in stopped),
            "stored_energy_wh": sum(row["energy_wh"] or 0 for row in stored
                                    if row["stopped_at"] is not None),
            "intact": not problems, "problems": problems}


def _comparable(layer: str, tally: Tally, server: dict[str, Any]
                ) -> tuple[dict[str, int], dict[str, int]]:
    """The two ends' counts of one layer, on what both can see.

    A retransmitted segment crosses the wire twice and the sender's kernel counts it twice,
    but the receiver's counts its payload once (tcpi_bytes_received): at IP level each end
    is compared without its own retransmitted payload, reported beside as "retransmitted".
    On loopback these are tail-loss probes, when the machine is loaded enough to hold back
    an ACK for a few milliseconds.
    """
    station, theirs = dict(tally.station[layer]), dict(server[layer])
    if layer == "ip":
        station[IN] -= tally.retransmitted
        theirs[OUT] -= server["retransmitted"]
    return station, theirs


def _both(directions: dict[str, int]) -> int:
    return directions.get(IN, 0) + directions.get(OUT, 0)


def _difference(station: dict[str, int], server: dict[str, int]) -> float:
    """Relative difference of the two ends' totals (both directions), in percent."""
    ours, theirs = _both(server), _both(station)
    return 0.0 if theirs == 0 else round(100 * abs(ours - theirs) / theirs, 3)


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = ["| profile | protocol | policy | IP MB/month | TLS | WS | payload | "
             "connections (resumed) | station vs server (IP) | billing |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        scale = 30 / r["days"]
        mb = {layer: _both(r["server"][layer]) * scale / 1e6 for layer in LAYER_ORDER}
        lines.append(
            f"| {r['profile']} | {r['protocol']}{' lite' if r.get('lite') else ''} | "
            f"{'on' if r['policy'] else 'off'} | "
            f"{mb['ip']:.2f} | {mb['tls']:.2f} | {mb['ws']:.2f} | {mb['payload']:.2f} | "
            f"{r['connections']} ({r['tls_resumed']}) | {r['agreement']['ip']:.2f}% | "
            f"{_billing_cell(r['billing'])} |")
    return "\n".join(lines)


def _billing_cell(billing: dict[str, Any]) -> str:
    state = "intact" if billing["intact"] else f"{len(billing['problems'])} problems"
    return f"{state}: {billing['stopped']} stopped, {billing['energy_wh'] / 1000:.1f} kWh"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="home-share")
    parser.add_argument("--protocol", choices=["ocpp1.6", "ocpp2.0.1", "ocpp2.1"],
                        default="ocpp1.6")
    parser.add_argument("--policy", choices=["on", "off"], default="on")
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--time-scale", type=float, default=20000.0,
                        help="simulated seconds per real second")
    parser.add_argument("--cap", type=int, help="monthly cap in bytes (default: server's)")
    parser.add_argument("--table", action="store_true",
                        help="run both profiles, 1.6 and 2.0.1 (and 2.1 with --lite), "
                        "policy off and on")
    parser.add_argument("--lite", action="store_true",
                        help="the station offers the lite link (codecs/SPEC.md) first")
    parser.add_argument("--json", action="store_true", help="print the full results as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        # The lite link exists for every version; its table covers 2.1 as well.
        versions = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1") if args.lite else ("ocpp1.6",
                                                                          "ocpp2.0.1")
        runs = [(p, v, pol) for p in PROFILES for v in versions for pol in (False, True)]
    else:
        runs = [(args.profile, args.protocol, args.policy == "on")]
    results = []
    for profile, protocol, policy in runs:
        result = run_month(PROFILES[profile], Version(protocol), policy=policy,
                           days=args.days, scale=args.time_scale, cap=args.cap,
                           lite=args.lite)
        results.append(result)
        print(f"{profile} {protocol} policy={'on' if policy else 'off'}: "
              f"{result['month_ip_bytes'] / 1e6:.2f} MB/month at IP, "
              f"ends differ by {result['agreement']['ip']:.2f}%, billing "
              f"{'intact' if result['billing']['intact'] else 'BROKEN'} "
              f"({result['billing']['stopped']} transactions, "
              f"{result['billing']['energy_wh']} Wh) "
              f"({result['real_seconds']} s)", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2) if args.json else markdown_table(results))
    problems = [line for r in results for line in r["billing"]["problems"]]
    for line in problems:
        print(f"billing: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

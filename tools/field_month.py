#!/usr/bin/env python3
"""Field-paced month: every kind of exchange priced on the wire, then composed into a month.

It starts the real `lite-csms serve` (TLS on a throwaway certificate, a temporary SQLite
file, the budget policy on) and a third-party charger: the `ocpp` package's ChargePoint over
`websockets` (permessage-deflate offered, as that client does by default), OCPP 1.6 or 2.0.1.
The charger honours what the CSMS sets (ChangeConfiguration / SetVariables and the
BootNotification interval) and records it. At field pace (a pause after every exchange, long
enough that delayed ACKs go out on their own) it prices each kind of exchange once or a few
times, from outside lite-csms: the charger's own kernel counters (TCP_INFO of its socket) and,
as root with tcpdump installed, a loopback capture.

The month is then composed from the profile's counts with the settings the charger actually
received: heartbeats, WebSocket pings, meter samples, reconnects (TLS resumed when the gap is
within the ticket lifetime the charger was told), the server's TCP keepalive probes in the
idle gaps (their idle time read from the kernel's timer on the server's socket), sessions
with the samples they deliver at their end.

    python tools/field_month.py                      # home-share and village-hub, 1.6 and 2.0.1
    python tools/field_month.py --profile home-share --protocol ocpp1.6 --json
    python tools/field_month.py --profile home-share --cap 1MB
    python tools/field_month.py --profile home-share --link lite     # the lite link

`--link lite` puts the same charger on the lite link (codecs/SPEC.md): it offers
`<protocol>.lite1` first and the run fails unless the server picks it; a small adapter
(`LiteSocket`) turns each OCPP-J text the ChargePoint writes into a lite frame (with the
newest published dictionary of the protocol, if any) and each frame it receives back into
text; its CALLs are numbered by a counter, as lite firmware would (`--lite-ids uuid` keeps
the package's UUIDs). No permessage-deflate is offered there: the codec compresses each
frame already, and a deflate window costs the server memory for every idle station. The lite
charger also sends a short upgrade request (`--headers minimal`: no User-Agent, no
extension offer). Bytes are still counted only by the kernel and tcpdump; the frame sizes the
adapter records are kept beside each window for the estimates of batching and cumulative
acknowledgement only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import math
import os
import shutil
import sqlite3
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from lite_csms.budget import tcpinfo
from lite_csms.net import listener

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_accounting
import bench_common
import throwaway_tls

from lite_csms.budget import cycles, levels
from lite_csms.budget.units import parse_size
from lite_csms.db.database import open_database
from lite_csms.db.models import StationBudget
from lite_csms.lite import decode_frame, encode_frame, lite_subprotocol, load_dictionaries

DAY = 86400
MONTH_DAYS = 30
ID_TAG = "FIELD001"
ENERGY, POWER = "Energy.Active.Import.Register", "Power.Active.Import"
CURRENT, VOLTAGE = "Current.Import", "Voltage"
UNITS = {ENERGY: "Wh", POWER: "W", CURRENT: "A", VOLTAGE: "V"}
# Our neutral name for each setting -> (1.6 key, 2.x Component.Variable).
SETTING_NAMES: dict[str, tuple[str | None, str | None]] = {
    "heartbeat": ("HeartbeatInterval", "OCPPCommCtrlr.HeartbeatInterval"),
    "ping": ("WebSocketPingInterval", "OCPPCommCtrlr.WebSocketPingInterval"),
    "sample_interval": ("MeterValueSampleInterval", "SampledDataCtrlr.TxUpdatedInterval"),
    "sampled": ("MeterValuesSampledData", "SampledDataCtrlr.TxUpdatedMeasurands"),
    "ended": ("StopTxnSampledData", "SampledDataCtrlr.TxEndedMeasurands"),
    "ended_interval": (None, "SampledDataCtrlr.TxEndedInterval"),
    "aligned_interval": ("ClockAlignedDataInterval", "AlignedDataCtrlr.Interval"),
    "aligned": ("MeterValuesAlignedData", "AlignedDataCtrlr.Measurands"),
    "min_status": ("MinimumStatusDuration", None),
    # Held (a charger knows the standard keys) but not used by the month: clock-aligned
    # data is off at every level, and the start reading goes with every start.
    "ended_aligned": ("StopTxnAlignedData", "AlignedDataCtrlr.TxEndedMeasurands"),
    "ended_aligned_interval": (None, "AlignedDataCtrlr.TxEndedInterval"),
    "started": (None, "SampledDataCtrlr.TxStartedMeasurands"),
}
# A charger's settings before any CSMS touches them (as in tools/traffic_sim.py).
STOCK = {"heartbeat": "300", "ping": "60", "sample_interval": "60",
         "sampled": ",".join((ENERGY, POWER, CURRENT, VOLTAGE)), "ended": "",
         "ended_interval": "0", "aligned_interval": "0", "aligned": ENERGY, "min_status": "0",
         "ended_aligned": "", "ended_aligned_interval": "0", "started": ENERGY}
STOCK_V2 = {**STOCK, "ended": ENERGY}


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    connectors: int
    sessions_per_day: int
    session_minutes: int
    drops_per_day: int
    nat_timeout: int
    status_changes_per_session: int = 4
    power_w: float = 7400.0

    @property
    def statuses_after_boot(self) -> int:
        # The charger itself (connector 0) and each connector.
        return self.connectors + 1


PROFILES = {
    "home-share": Profile("home-share", 1, 2, 150, 4, 600),
    "village-hub": Profile("village-hub", 4, 20, 45, 8, 120, power_w=11000.0),
}


# ---- the charger's configuration -----------------------------------------------------------
class ChargerConfig:
    """What the charger holds, keyed by our neutral names, and every request it received."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.v16 = protocol == "ocpp1.6"
        self.values = dict(STOCK if self.v16 else STOCK_V2)
        self.received: list[dict[str, Any]] = []
        self.last_inbound = 0.0
        names = {pair[0 if self.v16 else 1]: key for key, pair in SETTING_NAMES.items()}
        self._by_name = {name: key for name, key in names.items() if name is not None}

    def apply(self, action: str, name: str, value: str) -> bool:
        """Store a setting the charger knows; False for one it does not."""
        self.last_inbound = time.monotonic()
        key = self._by_name.get(name)
        self.received.append({"action": action, "name": name, "value": value,
                              "accepted": key is not None})
        if key is None:
            return False
        self.values[key] = value
        return True

    def seconds(self, key: str) -> int:
        try:
            return int(float(self.values[key]))
        except ValueError:
            return 0

    def measurands(self, key: str) -> list[str]:
        return [m.strip() for m in self.values[key].split(",") if m.strip()]

    def name_of(self, key: str) -> str | None:
        return SETTING_NAMES[key][0 if self.v16 else 1]


class Charger16(ChargePoint16):  # type: ignore[misc]
    config: ChargerConfig

    @on("ChangeConfiguration")  # type: ignore[misc]
    def change_configuration(self, key: str, value: str, **_: Any) -> Any:
        known = self.config.apply("ChangeConfiguration", key, value)
        return result16.ChangeConfiguration(status="Accepted" if known else "NotSupported")

    @on("GetConfiguration")  # type: ignore[misc]
    def get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        self.config.last_inbound = time.monotonic()
        held = {self.config.name_of(k): v for k, v in self.config.values.items()}
        wanted = key or [name for name in held if name]
        return result16.GetConfiguration(
            configuration_key=[{"key": k, "readonly": False, "value": held[k]}
                               for k in wanted if k in held],
            unknown_key=[k for k in wanted if k not in held] or None)


class Charger201(ChargePoint201):  # type: ignore[misc]
    config: ChargerConfig

    @on("SetVariables")  # type: ignore[misc]
    def set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in set_variable_data:
            name = f"{item['component']['name']}.{item['variable']['name']}"
            known = self.config.apply("SetVariables", name, str(item["attribute_value"]))
            results.append({"attribute_status": "Accepted" if known else "UnknownVariable",
                            "component": item["component"], "variable": item["variable"]})
        return result201.SetVariables(set_variable_result=results)


class ResumingContext(ssl.SSLContext):
    """A client context that offers the session saved from the last connection, which
    asyncio's TLS transport has no parameter for."""

    offer: ssl.SSLSession | None = None

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname,
                                session=session or self.offer)


# ---- windows on the wire -------------------------------------------------------------------
@dataclass
class Window:
    """One priced exchange: IP bytes both directions between two readings of the charger's
    socket (the pause after the exchange included)."""

    kind: str
    port: int
    started: float
    ended: float
    kernel: int
    segments: int
    tcpdump: int | None = None
    # Exchanges of the kind the window holds (keepalive probes: all those of a quiet span).
    count: int = 1
    # Lite frames' bytes (format byte on, WebSocket header off) sent and received in the
    # window, as the adapter wrote and read them; None on the JSON link. Not a price.
    frames_out: int | None = None
    frames_in: int | None = None


class LiteError(RuntimeError):
    """The lite link was asked for and not had: the server picked another subprotocol, or a
    frame arrived that the lite link does not carry."""


class LiteSocket:
    """The charger's websockets connection as the ChargePoint sees it on the lite link: it
    writes and reads OCPP-J text; binary lite frames (codecs/SPEC.md) cross the wire.

    `send(text)` sends encode_frame(json.loads(text)) with the newest dictionary we hold;
    `recv()` returns the JSON text of decode_frame(frame). Raises LiteError on a text frame.

    With `counter_ids` the ChargePoint's UUID message ids (16 raw bytes a message each way on
    the lite link) go out as a counter ("1", "2": a CBOR integer, SPEC section 3), as lite
    firmware numbers its CALLs; the answers get the ChargePoint's id back.
    """

    def __init__(self, ws: Any, protocol: str, counter_ids: bool = True) -> None:
        self.ws = ws
        self.protocol = protocol
        self.dictionaries = load_dictionaries(protocol)
        self.dictionary = self.dictionaries[max(self.dictionaries)] if self.dictionaries else None
        self.bytes_out = self.bytes_in = 0
        self.counter_ids = counter_ids
        self._ids = itertools.count(1)
        self._pending: dict[str, str] = {}

    async def send(self, text: str) -> None:
        message = json.loads(text)
        if self.counter_ids and message[0] == 2:
            number = str(next(self._ids))
            self._pending[number] = message[1]
            message[1] = number
        frame = encode_frame(message, protocol=self.protocol, dictionary=self.dictionary)
        self.bytes_out += len(frame)
        await self.ws.send(frame)

    async def recv(self) -> str:
        frame = await self.ws.recv()
        if isinstance(frame, str):
            raise LiteError(f"a text frame on the lite link: {frame[:80]!r}")
        self.bytes_in += len(frame)
        message = decode_frame(frame, protocol=self.protocol, dictionaries=self.dictionaries)
        if message[0] in (3, 4) and message[1] in self._pending:
            message[1] = self._pending.pop(message[1])
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def net_ip(counters: tcpinfo.TcpCounters, family: int) -> int:
    """The charger's IP bytes both ways, less what its kernel sent a second time."""
    received, sent = bench_accounting.kernel_ip_bytes(counters, family)
    header = tcpinfo.segment_header(family, counters.timestamps)
    return received + sent - counters.bytes_retrans - counters.segs_retrans * header


@dataclass
class Link:
    ws: Any
    cp: Any
    held: bench_accounting.HeldSocket
    listener: asyncio.Task[None]
    port: int
    resumed: bool
    deflate: str
    opened: float
    subprotocol: str = ""
    lite: LiteSocket | None = None
    # The HTTP upgrade as websockets wrote and read it (bytes before TLS): explains the
    # handshake price, is not one.
    upgrade: tuple[int, int] = (0, 0)
    request_headers: tuple[str, ...] = ()

    def frames(self) -> tuple[int | None, int | None]:
        return (None, None) if self.lite is None else (self.lite.bytes_out, self.lite.bytes_in)

    def ip(self) -> tuple[int, int]:
        """IP bytes and segments so far, both directions (SYN options included), without
        the charger's retransmissions: loopback loses nothing, but its microsecond RTT lets
        a tail-loss probe fire while a busy server still holds its delayed ACK."""
        counters = self.held.read()
        return net_ip(counters, self.held.family), counters.segs_in + counters.segs_out


class FieldCharger:
    """The third-party charger at field pace; every exchange it makes is a Window."""

    def __init__(self, protocol: str, profile: Profile, url: str, station_id: str,
                 password: str, tls: ResumingContext, pace: float,
                 compression: bool = True, link: str = "json",
                 headers: str | None = None, counter_ids: bool = True) -> None:
        self.protocol, self.profile, self.url = protocol, profile, url
        self.station_id, self.password, self.tls, self.pace = station_id, password, tls, pace
        self.link = link
        # The lite link never offers permessage-deflate (see the module docstring).
        self.compression = compression and link == "json"
        self.headers = headers or ("minimal" if link == "lite" else "stock")
        self.counter_ids = counter_ids
        self.config = ChargerConfig(protocol)
        self.windows: list[Window] = []
        self.connections: list[dict[str, Any]] = []
        self.ticket_lifetime: int | None = None
        self.boot_interval: int | None = None
        self._tx = 0
        self._seq = 0

    @property
    def v16(self) -> bool:
        return self.protocol == "ocpp1.6"

    async def settle(self, link: Link) -> None:
        """The field pause: wait, then until neither side has moved a byte for a while."""
        await asyncio.sleep(self.pace)
        while True:
            before = link.ip()[0]
            await asyncio.sleep(0.15)
            if link.ip()[0] == before and time.monotonic() - self.config.last_inbound > 0.3:
                return

    async def window(self, link: Link, kind: str, exchange: Callable[[], Awaitable[Any]]
                     ) -> Any:
        before, segs = link.ip()
        out, into = link.frames()
        started = time.time()
        answer = await exchange()
        await self.settle(link)
        after, segs_after = link.ip()
        self.windows.append(self._window(link, kind, started, after - before,
                                         segs_after - segs, out, into))
        return answer

    def _window(self, link: Link, kind: str, started: float, kernel: int, segments: int,
                out: int | None, into: int | None) -> Window:
        now_out, now_in = link.frames()
        window = Window(kind, link.port, started, time.time(), kernel, segments)
        if out is not None and into is not None and now_out is not None and now_in is not None:
            window.frames_out, window.frames_in = now_out - out, now_in - into
        return window

    # ---- connections ----------------------------------------------------------------------
    async def connect(self, resume: bool) -> Link:
        """TCP, TLS (resumed with the last ticket when `resume`) and the HTTP upgrade."""
        auth = base64.b64encode(f"{self.station_id}:{self.password}".encode()).decode()
        self.tls.offer = self.tls.offer if resume else None
        lite = lite_subprotocol(self.protocol) if self.link == "lite" else None
        # A lite charger offers plain OCPP-J after the lite subprotocol (SPEC section 2).
        offer = [lite, self.protocol] if lite else [self.protocol]
        options: dict[str, Any] = {}
        if self.headers == "minimal":
            options["user_agent_header"] = None
        started = time.time()
        ws = await websockets.connect(
            f"{self.url}/{self.station_id}", subprotocols=offer, ssl=self.tls,
            additional_headers={"Authorization": f"Basic {auth}"}, ping_interval=None,
            compression="deflate" if self.compression else None, **options)
        adapter = None
        if lite:
            if ws.subprotocol != lite:
                await ws.close()
                raise LiteError(f"asked for {lite}, the server picked {ws.subprotocol!r}")
            adapter = LiteSocket(ws, self.protocol, self.counter_ids)
        held = bench_accounting.HeldSocket(ws.transport)
        cp = (Charger16 if self.v16 else Charger201)(self.station_id, adapter or ws)
        cp.config = self.config
        listener = asyncio.create_task(cp.start())
        tls_object = ws.transport.get_extra_info("ssl_object")
        link = Link(ws, cp, held, listener, held.port, bool(tls_object.session_reused),
                    ws.response.headers.get("Sec-WebSocket-Extensions", ""), started,
                    ws.subprotocol or "", adapter,
                    (len(ws.request.serialize()), len(ws.response.serialize())),
                    tuple(ws.request.headers.keys()))
        await self.settle(link)
        total, segs = link.ip()
        kind = "handshake-resumed" if link.resumed else "handshake-full"
        self.windows.append(Window(kind, link.port, started, time.time(), total, segs))
        return link

    async def drop(self, link: Link) -> int:
        """The radio link goes: no WebSocket close, the socket just closes. Returns the
        connection's whole IP total once both FINs are through."""
        before, segs = link.ip()
        started = time.time()
        session = link.ws.transport.get_extra_info("ssl_object").session
        if session is not None:
            self.tls.offer = session
            self.ticket_lifetime = session.ticket_lifetime_hint
        link.listener.cancel()
        link.ws.transport.abort()
        await link.ws.wait_closed()
        final = await link.held.finish()
        total = net_ip(final, link.held.family)
        self.windows.append(Window("teardown", link.port, started, time.time(),
                                   total - before, final.segs_in + final.segs_out - segs))
        self.connections.append({"port": link.port, "resumed": link.resumed,
                                 "deflate": link.deflate, "subprotocol": link.subprotocol,
                                 "upgrade_request": link.upgrade[0],
                                 "upgrade_response": link.upgrade[1],
                                 "request_headers": link.request_headers, "kernel": total})
        return total

    # ---- exchanges ------------------------------------------------------------------------
    async def boot(self, link: Link, kind: str = "boot") -> None:
        async def exchange() -> Any:
            if self.v16:
                return await link.cp.call(call16.BootNotification(
                    charge_point_model="Wallbox-1", charge_point_vendor="FieldBench",
                    firmware_version="1.0.0"))
            return await link.cp.call(call201.BootNotification(
                charging_station={"model": "Wallbox-1", "vendor_name": "FieldBench",
                                  "firmware_version": "1.0.0"}, reason="PowerUp"))
        answer = await self.window(link, kind, exchange)
        assert answer.status == "Accepted", answer
        self.boot_interval = int(answer.interval)
        # The BootNotification answer's interval is the charger's heartbeat from now on.
        self.config.values["heartbeat"] = str(answer.interval)

    async def status(self, link: Link, kind: str, n: int, status: str) -> None:
        now = _iso(datetime.now(UTC))
        if self.v16:
            message: Any = call16.StatusNotification(
                connector_id=n % (self.profile.connectors + 1), error_code="NoError",
                status=status, timestamp=now)
        else:
            status = {"Preparing": "Occupied", "Charging": "Occupied",
                      "Finishing": "Occupied"}.get(status, status)
            message = call201.StatusNotification(
                timestamp=now, connector_status=status,
                evse_id=n % self.profile.connectors + 1, connector_id=1)
        await self.window(link, kind, lambda: link.cp.call(message))

    async def reconnect_statuses(self, link: Link, kind: str = "status-after-boot") -> None:
        """The status reports after a boot, priced by position: the first finds only the
        boot in the deflate window, the later ones the report before them."""
        for n in range(self.profile.statuses_after_boot):
            await self.status(link, f"{kind}#{n + 1}", n, "Available")

    async def heartbeat(self, link: Link) -> None:
        message = call16.Heartbeat() if self.v16 else call201.Heartbeat()
        await self.window(link, "heartbeat", lambda: link.cp.call(message))

    async def ping(self, link: Link) -> None:
        async def exchange() -> None:
            await (await link.ws.ping())
        await self.window(link, "ping", exchange)

    async def session(self, link: Link, seconds: int, samples: int) -> None:
        """A charging session of `seconds` (simulated: its timestamps end now), with its status
        changes, `samples` live samples and the stop with what the level delivers at its end."""
        begin = datetime.now(UTC) - timedelta(seconds=seconds)
        tx = _Tx(begin, 1_000_000.0 + 50_000 * self._tx, self.profile.power_w)
        self._tx += 1
        statuses = ("Preparing", "Charging", "Finishing", "Available")
        changes = self.profile.status_changes_per_session
        await self.status(link, "status-change", 1, statuses[0])
        await self.start(link, tx)
        for n in range(1, changes - 2):
            await self.status(link, "status-change", 1, statuses[min(n, 1)])
        interval = self.config.seconds("sample_interval")
        if interval <= 0 or not self.config.measurands("sampled"):
            # The level sends no live samples: none may sit in the window before the stop.
            samples = 0
        for k in range(1, samples + 1):
            # The first sample of a session finds other messages in the deflate window; the
            # later ones find the sample before them, and compress much better.
            await self.sample(link, tx, k * interval, "sample-first" if k == 1 else "sample")
        await self.stop(link, tx, seconds)
        for status in statuses[-2:][: max(0, changes - 1)]:
            await self.status(link, "status-change", 1, status)

    async def start(self, link: Link, tx: _Tx) -> None:
        before, segs = link.ip()
        out, into = link.frames()
        started = time.time()
        if self.v16:
            await link.cp.call(call16.Authorize(id_tag=ID_TAG))
            await self.settle(link)
            answer = await link.cp.call(call16.StartTransaction(
                connector_id=1, id_tag=ID_TAG, meter_start=round(tx.start_wh),
                timestamp=_iso(tx.begin)))
            tx.id = answer.transaction_id
        else:
            token = {"id_token": ID_TAG, "type": "ISO14443"}
            await link.cp.call(call201.Authorize(id_token=token))
            await self.settle(link)
            tx.id = f"FIELD-{self._tx}-{int(time.time())}"
            await link.cp.call(call201.TransactionEvent(
                event_type="Started", timestamp=_iso(tx.begin), trigger_reason="Authorized",
                seq_no=self._next_seq(), transaction_info={
                    "transaction_id": tx.id, "charging_state": "Charging"},
                id_token=token, evse={"id": 1, "connector_id": 1},
                meter_value=[self._reading(tx, 0, [ENERGY], "Transaction.Begin")]))
        await self.settle(link)
        after, segs_after = link.ip()
        self.windows.append(self._window(link, "start", started, after - before,
                                         segs_after - segs, out, into))

    async def sample(self, link: Link, tx: _Tx, at: int, kind: str) -> None:
        measurands = self.config.measurands("sampled")
        reading = self._reading(tx, at, measurands, "Sample.Periodic")
        if self.v16:
            message: Any = call16.MeterValues(connector_id=1, transaction_id=tx.id,
                                              meter_value=[reading])
        else:
            message = call201.TransactionEvent(
                event_type="Updated", timestamp=reading["timestamp"],
                trigger_reason="MeterValuePeriodic", seq_no=self._next_seq(),
                transaction_info={"transaction_id": tx.id}, meter_value=[reading])
        await self.window(link, kind, lambda: link.cp.call(message))

    def ended_samples(self, seconds: int) -> tuple[int, list[str]]:
        """How many samples the level delivers at the end of a session of `seconds`, and of
        what: 1.6 StopTxnSampledData every MeterValueSampleInterval, 2.x TxEndedMeasurands
        every TxEndedInterval."""
        measurands = self.config.measurands("ended")
        interval = self.config.seconds("sample_interval" if self.v16 else "ended_interval")
        if not measurands or interval <= 0:
            return 0, measurands
        return seconds // interval, measurands

    async def stop(self, link: Link, tx: _Tx, seconds: int) -> None:
        count, measurands = self.ended_samples(seconds)
        interval = self.config.seconds("sample_interval" if self.v16 else "ended_interval")
        data = [self._reading(tx, k * interval, measurands, "Sample.Periodic")
                for k in range(1, count + 1)]
        end = tx.begin + timedelta(seconds=seconds)
        if self.v16:
            stop_wh = round(tx.energy_at(seconds))
            message: Any = call16.StopTransaction(
                meter_stop=stop_wh, timestamp=_iso(end), transaction_id=tx.id,
                reason="EVDisconnected", transaction_data=data or None)
        else:
            final = self._reading(tx, seconds, [ENERGY], "Transaction.End")
            message = call201.TransactionEvent(
                event_type="Ended", timestamp=_iso(end), trigger_reason="EVCommunicationLost",
                seq_no=self._next_seq(), transaction_info={
                    "transaction_id": tx.id, "stopped_reason": "EVDisconnected"},
                evse={"id": 1, "connector_id": 1}, meter_value=[*data, final])
        await self.window(link, f"stop:{seconds}", lambda: link.cp.call(message))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq - 1

    def _reading(self, tx: _Tx, at: int, measurands: list[str], context: str
                 ) -> dict[str, Any]:
        values = {ENERGY: tx.energy_at(at), POWER: tx.power_w, CURRENT: 32.0, VOLTAGE: 230.0}
        sampled = []
        for measurand in measurands:
            value = round(values.get(measurand, 0.0), 1)
            if self.v16:
                sampled.append({"value": f"{value:g}", "context": context,
                                "measurand": measurand, "unit": UNITS.get(measurand, "Wh")})
            else:
                sampled.append({"value": value, "context": context, "measurand": measurand})
        return {"timestamp": _iso(tx.begin + timedelta(seconds=at)), "sampled_value": sampled}


@dataclass
class _Tx:
    begin: datetime
    start_wh: float
    power_w: float
    id: Any = None

    def energy_at(self, seconds: float) -> float:
        return self.start_wh + self.power_w * seconds / 3600


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the server ----------------------------------------------------------------------------
@dataclass
class Server:
    port: int
    database: Path
    passwords: dict[str, str]
    tls: ResumingContext
    env: dict[str, str]


def _cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "lite_csms", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=True).stdout


def _password(output: str) -> str:
    return next(line.split(": ", 1)[1] for line in output.splitlines()
                if line.startswith("password: "))


@contextmanager
def running_server(workdir: Path, stations: dict[str, dict[str, Any]], nat_timeout: int
                   ) -> Iterator[Server]:
    """`lite-csms serve` with TLS and the budget policy on; `stations` maps each id to the
    StationBudget values it starts with (a level, or a NAT timeout of its own)."""
    tls = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    cert_file, key_file, _ = throwaway_tls.issue(workdir, tls)
    database = workdir / "csms.sqlite3"
    env = {**os.environ, "LITE_CSMS_DATABASE": str(database), "LITE_CSMS_HOST": "127.0.0.1",
           "LITE_CSMS_TLS_CERT": str(cert_file),
           "LITE_CSMS_TLS_KEY": str(key_file), "LITE_CSMS_ADMIN_ENABLED": "0",
           "LITE_CSMS_BUDGET_POLICY": "1", "LITE_CSMS_NAT_TIMEOUT": str(nat_timeout),
           "LITE_CSMS_LOG_LEVEL": "WARNING", "LITE_CSMS_TRAFFIC_FLUSH_INTERVAL": "1"}
    passwords = {sid: _password(_cli(env, "station", "add", sid)) for sid in stations}
    _cli(env, "token", "add", ID_TAG)
    db = open_database(database)
    try:
        for sid, values in stations.items():
            if values:
                StationBudget.insert(station=sid, **values).execute()
    finally:
        db.close()
    # Ahead of other work on the machine: an answer later than the charger's delayed-ACK
    # timer (40 ms) adds a bare ACK that a server with a core to itself would not cause.
    with bench_common.serving(env, workdir, 30, priority=-10) as served:
        yield Server(served.port, database, passwords, tls, env)


def server_keepalive_idle(server_port: int, client_port: int) -> float | None:
    """Seconds until the server socket's keepalive timer fires, from /proc/net/tcp (the
    kernel's view, readable from outside the server process); None if none is armed."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        local, remote, timer = fields[1], fields[2], fields[5]
        if (int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port):
            kind, when = timer.split(":")
            # 2: the keepalive timer; `when` is in clock ticks.
            return int(when, 16) / os.sysconf("SC_CLK_TCK") if int(kind, 16) == 2 else None
    return None


def billing_rows(database: Path, station_id: str) -> list[dict[str, Any]]:
    with sqlite3.connect(database) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT meter_start_wh, meter_stop_wh, energy_wh, stopped_at "
                          "FROM \"transaction\" WHERE station_id = ?", (station_id,)).fetchall()
    return [dict(row) for row in rows]


# ---- tcpdump -------------------------------------------------------------------------------
def read_packets(path: Path, server_port: int) -> list[tuple[float, int, int]]:
    """(time, client port, IP length) of every IPv4 packet of the server's port."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data, 0)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    link_header = {1: 14, 113: 16, 276: 20}[struct.unpack_from(endian + "I", data, 20)[0]]
    packets = []
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, captured, _ = struct.unpack_from(endian + "IIII", data, offset)
        ip = data[offset + 16 + link_header: offset + 16 + captured]
        offset += 16 + captured
        if len(ip) < 24 or ip[0] >> 4 != 4:
            continue
        tcp = ip[(ip[0] & 0x0F) * 4:]
        source, destination = struct.unpack_from("!HH", tcp, 0)
        client = source if destination == server_port else destination
        stamp = seconds + fraction / (1e9 if nano else 1e6)
        packets.append((stamp, client, struct.unpack_from("!H", ip, 2)[0]))
    return packets


def attribute_capture(windows: list[Window], packets: list[tuple[float, int, int]]) -> None:
    for window in windows:
        window.tcpdump = sum(length for stamp, port, length in packets
                             if port == window.port and window.started <= stamp < window.ended)


# ---- pricing -------------------------------------------------------------------------------
@dataclass
class Pricing:
    protocol: str
    profile: str
    level: str
    pace: float
    deflate: str
    settings_received: list[dict[str, Any]]
    settings: dict[str, str]
    ticket_lifetime: int | None
    keepalive_idle: float | None
    windows: list[Window]
    connections: list[dict[str, Any]]
    billing: list[dict[str, Any]]
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The subprotocol the server picked ("ocpp2.0.1.lite1" on the lite link).
    subprotocol: str = ""
    # "stock": after a lost link a BootNotification and a status report per connector, and
    # heartbeats on their grid whatever else was sent. "lite": codecs/SPEC.md 11.1, nothing
    # after a lost link until something changes, and no heartbeat within an interval of
    # another message (OCPP 1.6 section 4.6, 2.0.1 G02).
    firmware: str = "stock"

    def price(self, kind: str) -> float:
        return float(self.prices[kind]["kernel"])


def summarise(windows: list[Window]) -> dict[str, dict[str, Any]]:
    """IP bytes per kind of exchange, by the charger's kernel and by tcpdump: the median
    (an answer that comes late, on a busy machine, costs an extra bare ACK of 52 B; the
    median is the exchange as a healthy server answers it), the mean, the range."""
    kinds: dict[str, list[Window]] = {}
    for window in windows:
        kinds.setdefault(window.kind, []).append(window)
    prices = {}
    for kind, group in kinds.items():
        kernel = [w.kernel / w.count for w in group for _ in range(w.count)]
        dumped = [w.tcpdump / w.count for w in group if w.tcpdump is not None
                  for _ in range(w.count)]
        prices[kind] = {
            "n": len(kernel), "kernel": statistics.median(kernel),
            "mean": statistics.fmean(kernel), "min": min(kernel), "max": max(kernel),
            "tcpdump": statistics.median(dumped) if len(dumped) == len(kernel) else None}
        if all(w.frames_out is not None for w in group):
            # Lite frame bytes of the median window's kind (for estimates, not for prices).
            prices[kind]["frames_out"] = statistics.median(w.frames_out or 0 for w in group)
            prices[kind]["frames_in"] = statistics.median(w.frames_in or 0 for w in group)
    return prices


async def price_exchanges(charger: FieldCharger, server: Server, *, repeats: int,
                          stop_lengths: list[int], resumed: int, full: int,
                          keepalive: bool) -> float | None:
    """Every kind of exchange at field pace; returns the keepalive idle the server set on
    the charger's link (read from the kernel), if any."""
    # The first connection is a one-off (the policy's settings, a cold server): its status
    # reports are kept apart from the reconnects'.
    link = await charger.connect(resume=False)
    await charger.boot(link, "boot+settings")
    idle_left = server_keepalive_idle(server.port, link.port)
    # The policy sets the idle time just after answering the boot: the timer then had its
    # full length, give or take the boot's round trip.
    idle = None if idle_left is None else idle_left + (time.time() - charger.windows[-1].started)
    await charger.reconnect_statuses(link, "first-status")
    await charger.drop(link)
    # Every session on a reconnect of its own, `repeats` times over: its deflate context
    # then holds a boot and status reports, not the session before it, as in a month where
    # hours and a reconnect separate two sessions; and a late answer does not set a price.
    for n, resume in enumerate([True] * max(resumed, repeats) + [False] * full):
        link = await charger.connect(resume=resume)
        await charger.boot(link)
        await charger.reconnect_statuses(link)
        if n == 0:
            # The steady traffic of a long-lived link, on a reconnect as in the month.
            for _ in range(repeats):
                await charger.heartbeat(link)
                await charger.ping(link)
        if resume and n < repeats:
            for k, seconds in enumerate(stop_lengths):
                await charger.session(link, seconds, samples=repeats + 1 if k == n == 0 else 1)
        await charger.drop(link)
    if keepalive:
        await price_keepalive(charger, server)
    return None if idle is None else round(idle)


async def price_keepalive(charger: FieldCharger, server: Server, quiet: float = 6.0) -> None:
    """TCP keepalive probes: a second station whose NAT timeout (2 s) makes the server's
    keepalive fire within seconds; the link is left quiet and every probe and its ACK count."""
    probe = FieldCharger(charger.protocol, charger.profile, charger.url, KEEPALIVE_STATION,
                         server.passwords[KEEPALIVE_STATION], server.tls, charger.pace,
                         charger.compression, charger.link, charger.headers,
                         charger.counter_ids)
    saved = server.tls.offer
    link = await probe.connect(resume=False)
    await probe.boot(link)
    before, segs = link.ip()
    started = time.time()
    await asyncio.sleep(quiet)
    after, segs_after = link.ip()
    probes = (segs_after - segs) // 2
    if probes:
        charger.windows.append(Window("keepalive-probe", link.port, started, time.time(),
                                      after - before, segs_after - segs, count=probes))
    await probe.drop(link)
    server.tls.offer = saved


KEEPALIVE_STATION = "FIELD-KA"


@contextmanager
def ahead_of_other_work() -> Iterator[None]:
    """The charger's own process ahead of other work while it prices, as the server is: its
    late answer to a server CALL adds a bare ACK just as a late server does. Root only."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, before)


def run_pricing(protocol: str, profile: Profile, *, level: str = levels.NORMAL,
                pace: float = 0.4, repeats: int = 3, stop_lengths: list[int] | None = None,
                resumed: int = 2, full: int = 1, keepalive: bool = True,
                capture: bool = True, compression: bool = True, link: str = "json",
                headers: str | None = None, counter_ids: bool = True,
                middlebox_compat: bool = True,
                validate: Callable[..., Awaitable[Any]] | None = None,
                workdir: Path | None = None) -> tuple[Pricing, Any]:
    """Price every kind of exchange against a fresh server; `validate` (if given) then runs
    on the same server and charger, and its result is returned beside the pricing."""
    lengths = stop_lengths or [profile.session_minutes * 60]
    station_id = f"FIELD-{profile.name}"
    stations: dict[str, dict[str, Any]] = {
        station_id: {} if level == levels.NORMAL else {"level": level}}
    if keepalive:
        stations[KEEPALIVE_STATION] = {"nat_timeout": 2}
    with tempfile.TemporaryDirectory() as tmp, ahead_of_other_work():
        work = workdir or Path(tmp)
        with running_server(work, stations, profile.nat_timeout) as server, \
                _capture(server.port, work, capture) as pcap:
            if not middlebox_compat:
                # RFC 8446 D.4: without it the charger sends no dummy ChangeCipherSpec and
                # no 32 B legacy session id, which the server would echo.
                server.tls.options &= ~ssl.OP_ENABLE_MIDDLEBOX_COMPAT
            charger = FieldCharger(protocol, profile, f"wss://127.0.0.1:{server.port}/ocpp",
                                   station_id, server.passwords[station_id], server.tls, pace,
                                   compression, link, headers, counter_ids)

            async def main() -> tuple[float | None, Any, int, int]:
                idle = await price_exchanges(charger, server, repeats=repeats,
                                             stop_lengths=lengths, resumed=resumed,
                                             full=full, keepalive=keepalive)
                marks = len(charger.windows), len(charger.connections)
                extra = None if validate is None else await validate(charger)
                return idle, extra, *marks

            idle, extra, priced, connected = asyncio.run(main())
            time.sleep(1.5)  # the server's last flush of the transaction rows
            billing = billing_rows(server.database, station_id)
        if pcap is not None and pcap.exists():
            attribute_capture(charger.windows, read_packets(pcap, server.port))
    pricing = Pricing(protocol, profile.name, level, pace,
                      charger.connections[0]["deflate"] if charger.connections else "",
                      charger.config.received, dict(charger.config.values),
                      charger.ticket_lifetime, idle, charger.windows[:priced],
                      charger.connections[:connected], billing,
                      subprotocol=charger.connections[0]["subprotocol"]
                      if charger.connections else "")
    pricing.prices = summarise(pricing.windows)
    return pricing, extra


@contextmanager
def _capture(port: int, workdir: Path, wanted: bool) -> Iterator[Path | None]:
    if not wanted or shutil.which("tcpdump") is None or os.geteuid() != 0:
        yield None
        return
    with bench_accounting.capture(port, workdir) as path:
        yield path


# ---- the month -----------------------------------------------------------------------------
@dataclass
class Counts:
    """How often each kind of exchange happens in a stretch of time."""

    handshake_full: int = 0
    handshake_resumed: int = 0
    boots: int = 0
    # Status reports after those boots, and how many reports each boot is followed by.
    statuses_after_boot: int = 0
    statuses_per_boot: int = 0
    teardowns: int = 0
    settings: int = 0
    heartbeats: int = 0
    pings: int = 0
    probes: int = 0
    nat_expiries: int = 0
    # The first live sample of each session, and the others.
    first_samples: int = 0
    samples: int = 0
    status_changes: int = 0
    sessions: dict[int, int] = field(default_factory=dict)


def heartbeat_times(interval: int, month: int, spoken: list[float], *, skip: bool
                    ) -> list[float]:
    """When heartbeats go: every `interval` s from the last one; with `skip`, a heartbeat
    falls due only after `interval` s without any other message (`spoken`, sorted)."""
    if interval <= 0:
        return []
    if not skip:
        return [k * interval for k in range(1, month // interval + 1)]
    beats: list[float] = []
    last, i = 0.0, 0
    while True:
        due = last + interval
        while i < len(spoken) and spoken[i] <= due:
            last = max(last, spoken[i])
            i += 1
        if last + interval > due:
            continue  # something was sent meanwhile: the heartbeat waits for its interval
        if due > month:
            return beats
        beats.append(due)
        last = due


def month_counts(profile: Profile, pricing: Pricing, days: int = MONTH_DAYS) -> Counts:
    """The profile's month as counts, with the settings the charger received.

    Heartbeats and pings go on a fixed grid of their intervals all month (a stock charger
    may skip a heartbeat after other traffic and pay less; the lite firmware does); samples
    every sample interval within a session; the server's keepalive probes fill every gap of
    the timeline longer than its idle time; a gap the NAT outlives costs an extra reconnect.
    """
    settings = pricing.settings
    c = Counts()
    month = days * DAY
    heartbeat = int(settings["heartbeat"])
    ping = int(float(settings["ping"]))
    interval = int(float(settings["sample_interval"]))
    live = [m for m in settings["sampled"].split(",") if m]
    events: list[float] = []
    # When the charger sends something (its first boot, each session's start and end, live
    # samples): a lite charger's heartbeat is due only after an interval without any.
    spoken: list[float] = [0.0]
    if ping > 0:
        c.pings = month // ping
        events += [k * ping for k in range(1, c.pings + 1)]
    lifetime = pricing.ticket_lifetime or 0
    last_handshake = 0.0
    c.handshake_full, c.settings = 1, 1
    c.boots, c.statuses_after_boot = 1, profile.statuses_after_boot
    c.statuses_per_boot = profile.statuses_after_boot
    events.append(0.0)
    length = profile.session_minutes * 60
    for day in range(days):
        for k in range(profile.drops_per_day):
            at = day * DAY + (k + 0.25) * DAY / profile.drops_per_day
            events.append(at)
            if at - last_handshake < lifetime:
                c.handshake_resumed += 1
            else:
                c.handshake_full += 1
            last_handshake = at
            c.teardowns += 1
            if pricing.firmware == "stock":
                c.boots += 1
                c.statuses_after_boot += profile.statuses_after_boot
        for k in range(profile.sessions_per_day):
            begin = day * DAY + (k + 0.5) * DAY / profile.sessions_per_day
            c.sessions[length] = c.sessions.get(length, 0) + 1
            c.status_changes += profile.status_changes_per_session
            events += [begin, begin + length]
            spoken += [begin, begin + length]
            if interval > 0 and live:
                times = [begin + j * interval for j in range(1, length // interval + 1)
                         if j * interval < length]
                c.first_samples += bool(times)
                c.samples += max(0, len(times) - 1)
                events += times
                spoken += times
    beats = heartbeat_times(heartbeat, month, sorted(spoken), skip=pricing.firmware == "lite")
    c.heartbeats = len(beats)
    events += beats
    # A session that runs past the month's end has its traffic counted; its gaps are not.
    events = sorted(at for at in events if at <= month)
    idle = pricing.keepalive_idle
    for gap in (b - a for a, b in itertools.pairwise(events)):
        probes = 0 if not idle or gap <= 0 else math.ceil(gap / idle) - 1
        silence = gap if probes == 0 else idle
        c.probes += probes
        if silence is not None and silence > profile.nat_timeout:
            c.nat_expiries += 1
    # A NAT that forgot the link costs a reconnect (resumed: the ticket is hours old at most).
    c.handshake_resumed += c.nat_expiries
    if pricing.firmware == "stock":
        c.boots += c.nat_expiries
        c.statuses_after_boot += c.nat_expiries * profile.statuses_after_boot
    return c


def compose(counts: Counts, pricing: Pricing) -> dict[str, float]:
    """Bytes per kind of exchange for the counts, at the prices measured."""
    p = pricing.prices

    def at(kind: str) -> float:
        return float(p[kind]["kernel"]) if kind in p else 0.0

    boot = at("boot")
    handshake_full = at("handshake-full")
    rows = {
        "WebSocket pings": counts.pings * at("ping"),
        "TCP keepalive probes": counts.probes * at("keepalive-probe"),
        "meter samples": counts.first_samples * at("sample-first") + counts.samples * at("sample"),
        "reconnect handshakes": (counts.handshake_full * handshake_full
                                 + counts.handshake_resumed * at("handshake-resumed")),
        "heartbeats": counts.heartbeats * at("heartbeat"),
        "boot and status": (counts.boots * boot
                            + counts.statuses_after_boot / max(1, counts.statuses_per_boot)
                            * sum(at(f"status-after-boot#{k + 1}")
                                  for k in range(counts.statuses_per_boot))
                            + counts.status_changes * at("status-change")),
        "start and stop": sum(n * (at("start") + at(f"stop:{length}"))
                              for length, n in counts.sessions.items()),
        "settings on first connect": counts.settings * max(0.0, at("boot+settings") - boot),
        "teardown of dropped links": counts.teardowns * at("teardown"),
    }
    return rows


def describe(counts: Counts, pricing: Pricing, profile: Profile, charger_v16: bool
             ) -> dict[str, str]:
    s = pricing.settings
    ping = int(float(s["ping"]))
    sampled = [m for m in s["sampled"].split(",") if m]
    interval = int(float(s["sample_interval"]))
    ended = [m for m in s["ended"].split(",") if m]
    ended_interval = interval if charger_v16 else int(float(s["ended_interval"]))
    length = profile.session_minutes * 60
    at_end = length // ended_interval if ended and ended_interval > 0 else 0
    settings_bytes = compose(counts, pricing)["settings on first connect"]
    return {
        "WebSocket pings": f"every {ping} s" if ping > 0 else "off",
        "TCP keepalive probes": (f"idle {pricing.keepalive_idle:.0f} s, {counts.probes} probes"
                                 if pricing.keepalive_idle else "none"),
        "meter samples": (f"every {interval} s, {len(sampled)} measurands"
                          if interval > 0 and sampled else "none live"),
        "reconnect handshakes": (f"{counts.handshake_full} full, {counts.handshake_resumed} "
                                 f"resumed (ticket {pricing.ticket_lifetime} s)"),
        "heartbeats": f"every {s['heartbeat']} s",
        "boot and status": (f"{counts.boots} boots, {counts.statuses_after_boot} + "
                            f"{counts.status_changes} status"),
        "start and stop": (f"{sum(counts.sessions.values())} sessions, "
                           + (f"{at_end} samples of {len(ended)} measurands at the end"
                              if at_end else "the stop reading at the end")),
        "settings on first connect": (f"{len(pricing.settings_received)} settings, "
                                      f"{settings_bytes:.0f} B"),
        "teardown of dropped links": f"{counts.teardowns} drops",
    }


def month(profile: Profile, pricing: Pricing) -> dict[str, Any]:
    counts = month_counts(profile, pricing)
    rows = compose(counts, pricing)
    return {"counts": asdict(counts), "rows": rows, "total": sum(rows.values()),
            "notes": describe(counts, pricing, profile, pricing.protocol == "ocpp1.6")}


# ---- levers the lite link could add (item 6 of issue 10): estimates from measured prices ----
# TLS 1.3 with an AEAD: a 5 B record header, the inner content type and a 16 B tag.
TLS_RECORD = 22
# The WebSocket header on the charger's short frame: 2 B and the 4 B mask.
WS_OUT = 6
# A cumulative acknowledgement riding on a later answer: an integer message id in CBOR.
ACK_FIELD = 3


def lite_levers(pricing: Pricing, counts: Counts) -> dict[str, dict[str, float]]:
    """What batching and cumulative acknowledgement would save, from this run's prices.

    Each exchange's fixed cost is its kernel price less the lite frames it carried (TCP/IP
    headers of its segments, two TLS records, two WebSocket headers). A batch (BootNotification
    and the status reports after it in one frame, answered in one frame) pays one fixed cost
    instead of one per message. A StatusNotification acknowledged cumulatively (it carries no
    billing data) costs its request segment and the server's bare ACK instead of a whole
    exchange, plus the id on a later answer. Bytes per event and per month; {} on the JSON link.
    """
    p = pricing.prices
    if "status-change" not in p or "frames_out" not in p["status-change"]:
        return {}
    header = p["keepalive-probe"]["kernel"] / 2 if "keepalive-probe" in p else 52.0

    def fixed(kind: str) -> float:
        return float(p[kind]["kernel"] - p[kind]["frames_out"] - p[kind]["frames_in"])

    after_boot = [f"status-after-boot#{k + 1}" for k in range(counts.statuses_per_boot)]
    # The batch's frames hold one CBOR array of messages each way: 1 B more a direction.
    batch = sum(fixed(kind) for kind in after_boot if kind in p) - 2
    reconnects = counts.statuses_after_boot / max(1, counts.statuses_per_boot)
    status = p["status-change"]
    unanswered = 2 * header + TLS_RECORD + WS_OUT + status["frames_out"] + ACK_FIELD
    ack = status["kernel"] - unanswered
    return {
        "batch boot and status": {"per_event": batch, "events": reconnects,
                                  "month": batch * reconnects},
        "cumulative ack of status changes": {"per_event": ack, "events": counts.status_changes,
                                             "month": ack * counts.status_changes},
        "fixed cost of one exchange": {"per_event": fixed("status-change"), "events": 0,
                                       "month": 0.0},
    }


# ---- the model against the wire ------------------------------------------------------------
async def short_run(charger: FieldCharger, session_seconds: int) -> tuple[Counts, int]:
    """A short run of its own after the pricing, on the same server: a resumed reconnect with
    heartbeats, a ping and a session, then a full one with a heartbeat, each dropped. Returns
    what it did, as counts for the model, and the IP bytes the charger's kernel counted for
    its connections (SYN to the last FIN)."""
    plan = Counts()
    wire = 0
    for resume, heartbeats in ((True, 2), (False, 1)):
        link = await charger.connect(resume=resume)
        if link.resumed:
            plan.handshake_resumed += 1
        else:
            plan.handshake_full += 1
        await charger.boot(link)
        await charger.reconnect_statuses(link)
        plan.boots += 1
        plan.statuses_after_boot += charger.profile.statuses_after_boot
        plan.statuses_per_boot = charger.profile.statuses_after_boot
        for _ in range(heartbeats):
            await charger.heartbeat(link)
            plan.heartbeats += 1
        if resume:
            await charger.ping(link)
            plan.pings += 1
            await charger.session(link, session_seconds, samples=2)
            plan.first_samples += 1
            plan.samples += 1
            plan.status_changes += charger.profile.status_changes_per_session
            plan.sessions[session_seconds] = 1
        wire += await charger.drop(link)
        plan.teardowns += 1
    return plan, wire


# ---- the cap -------------------------------------------------------------------------------
def hold_under_cap(months: dict[str, float], cap: int, warn_ratio: float = 0.8,
                   evaluate_every: int = 900) -> dict[str, Any]:
    """Run the policy's choice through a 30-day cycle: the station starts at normal, spends
    each level's month per day, and every `evaluate_every` seconds the policy's own
    projection (lite_csms.budget.cycles) and choice (levels.choose) may tighten it."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    cycle = cycles.Cycle(start, start + timedelta(days=MONTH_DAYS))
    level, used = levels.NORMAL, 0.0
    daily: dict[Any, int] = {}
    seconds_at = dict.fromkeys(levels.LEVELS, 0)
    moves = []
    for step in range(MONTH_DAYS * DAY // evaluate_every):
        now = start + timedelta(seconds=step * evaluate_every)
        projected = cycles.project(cycle, now, round(used), daily, start)
        chosen, reason = levels.choose(round(used), projected, cap, warn_ratio)
        if levels.LEVELS.index(chosen) > levels.LEVELS.index(level):
            moves.append({"day": round(step * evaluate_every / DAY, 2), "to": chosen,
                          "reason": reason})
            level = chosen
        spent = months[level] / MONTH_DAYS / DAY * evaluate_every
        used += spent
        daily[now.date()] = daily.get(now.date(), 0) + round(spent)
        seconds_at[level] += evaluate_every
    return {"cap": cap, "total": used, "under_cap": used <= cap, "moves": moves,
            "days_at": {lvl: s / DAY for lvl, s in seconds_at.items() if s}}


# ---- output --------------------------------------------------------------------------------
def _mb(amount: float) -> str:
    return f"{amount / 1e6:.2f}"


def month_table(results: list[dict[str, Any]]) -> str:
    protocols = [r["protocol"] for r in results]
    rows = list(results[0]["month"]["rows"])
    lines = ["| MB/month | " + " | ".join(protocols) + " |",
             "|---|" + "---:|" * len(protocols)]
    for row in rows:
        cells = [f"{_mb(r['month']['rows'][row])} ({r['month']['notes'][row]})"
                 for r in results]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{_mb(r['month']['total'])}**"
                                               for r in results) + " |")
    return "\n".join(lines)


def price_table(results: list[dict[str, Any]]) -> str:
    kinds: list[str] = []
    for r in results:
        kinds += [k for k in r["prices"] if k not in kinds]
    header = " | ".join(f"{r['protocol']} kernel | tcpdump" for r in results)
    lines = [f"| exchange (IP bytes, both directions) | {header} |",
             "|---|" + "---:|---:|" * len(results)]
    for kind in kinds:
        cells = []
        for r in results:
            price = r["prices"].get(kind)
            if price is None:
                cells += ["-", "-"]
                continue
            spread = ("" if price["min"] == price["max"]
                      else f" ({price['min']:.0f}-{price['max']:.0f})")
            cells.append(f"{price['kernel']:.0f}{spread}")
            cells.append("-" if price["tcpdump"] is None else f"{price['tcpdump']:.0f}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def result_of(pricing: Pricing, profile: Profile) -> dict[str, Any]:
    return {"profile": profile.name, "protocol": pricing.protocol, "level": pricing.level,
            "pace": pricing.pace, "deflate": pricing.deflate,
            "subprotocol": pricing.subprotocol,
            "settings_received": pricing.settings_received, "settings": pricing.settings,
            "ticket_lifetime": pricing.ticket_lifetime,
            "keepalive_idle": pricing.keepalive_idle, "prices": pricing.prices,
            "connections": pricing.connections, "billing": pricing.billing,
            "windows": [asdict(w) for w in pricing.windows],
            "month": month(profile, pricing),
            "levers": lite_levers(pricing, month_counts(profile, pricing))}


def tcp_timestamps() -> bool:
    """Whether this network namespace's TCP puts timestamps (12 B) on every segment."""
    return bool(listener.tcp_timestamps())


def rerun_with_timestamps(on: bool, argv: list[str] | None) -> int:
    """Run this command again in a network namespace of its own, with only loopback, where
    TCP timestamps are set as asked: the host's own setting is left alone."""
    args = list(sys.argv[1:] if argv is None else argv)
    script = (f"ip link set lo up && sysctl -qw net.ipv4.tcp_timestamps={int(on)} "
              '&& exec "$@"')
    command = ["unshare", "-n", "sh", "-c", script, "sh", sys.executable,
               str(Path(__file__).resolve()), *args]
    try:
        return subprocess.run(command, check=False).returncode
    except FileNotFoundError:
        print("--tcp-timestamps needs unshare (util-linux) and root", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), action="append")
    parser.add_argument("--protocol", choices=["ocpp1.6", "ocpp2.0.1"], action="append")
    parser.add_argument("--pace", type=float, default=0.4,
                        help="real seconds of quiet after each exchange")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cap", help="price every level and show where the policy holds the "
                                      "station under this cap (e.g. 1MB)")
    parser.add_argument("--compression", choices=["on", "off"], default="on",
                        help="whether the charger offers permessage-deflate (default on, as "
                             "the websockets client does)")
    parser.add_argument("--link", choices=["json", "lite"], default="json",
                        help="OCPP-J text frames (default), or the lite link: the charger "
                             "offers <protocol>.lite1 first and the run fails unless it is "
                             "picked; no permessage-deflate is offered there")
    parser.add_argument("--headers", choices=["stock", "minimal"],
                        help="the charger's upgrade request as websockets writes it, or without "
                             "User-Agent (default: minimal on the lite link, stock on json)")
    parser.add_argument("--lite-ids", choices=["counter", "uuid"], default="counter",
                        help="message ids on the lite link: a counter, as lite firmware would "
                             "number its CALLs (default), or the ocpp package's UUIDs")
    parser.add_argument("--middlebox-compat", choices=["on", "off"], default="on",
                        help="the charger's TLS 1.3 middlebox compatibility mode (OpenSSL's "
                             "default, on): off sends no dummy ChangeCipherSpec or session id")
    parser.add_argument("--tcp-timestamps", choices=["host", "on", "off"], default="host",
                        help="TCP timestamps (12 B a segment) as the host has them, or on/off "
                             "in a network namespace of the run's own (root; unshare -n)")
    parser.add_argument("--firmware", choices=["stock", "lite"],
                        help="how the charger behaves (default: lite on the lite link, stock "
                             "on json): stock boots and reports every connector after each "
                             "link drop and heartbeats on a fixed grid; lite follows "
                             "codecs/SPEC.md 11.1 (silent reconnect, no heartbeat after other "
                             "traffic within the interval)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save", type=Path, help="also write the full results as JSON here")
    args = parser.parse_args(argv)
    firmware = args.firmware or ("lite" if args.link == "lite" else "stock")
    if args.tcp_timestamps != "host" and tcp_timestamps() != (args.tcp_timestamps == "on"):
        return rerun_with_timestamps(args.tcp_timestamps == "on", argv)
    print(f"TCP timestamps: {'on' if tcp_timestamps() else 'off'}", file=sys.stderr)
    profiles = args.profile or list(PROFILES)
    protocols = args.protocol or ["ocpp1.6", "ocpp2.0.1"]
    output: dict[str, Any] = {"profiles": {}, "tcp_timestamps": tcp_timestamps(),
                              "link": args.link, "firmware": firmware}
    options = {"compression": args.compression == "on", "link": args.link,
               "headers": args.headers, "counter_ids": args.lite_ids == "counter",
               "middlebox_compat": args.middlebox_compat == "on"}
    for name in profiles:
        profile = PROFILES[name]
        results, caps = [], {}
        for protocol in protocols:
            pricing, _ = run_pricing(protocol, profile, pace=args.pace, repeats=args.repeats,
                                     **options)
            pricing.firmware = firmware
            results.append(result_of(pricing, profile))
            print(f"{name} {protocol}: {_mb(results[-1]['month']['total'])} MB/month "
                  f"(subprotocol {pricing.subprotocol}, "
                  f"deflate: {pricing.deflate or 'not negotiated'})", file=sys.stderr)
            if args.cap:
                by_level = {levels.NORMAL: results[-1]}
                for level in (levels.LEAN, levels.MINIMAL):
                    priced, _ = run_pricing(protocol, profile, level=level, pace=args.pace,
                                            repeats=args.repeats, **options)
                    priced.firmware = firmware
                    by_level[level] = result_of(priced, profile)
                held = hold_under_cap({lvl: r["month"]["total"] for lvl, r in by_level.items()},
                                      parse_size(args.cap))
                held["months"] = {lvl: r["month"]["total"] for lvl, r in by_level.items()}
                held["billing"] = {lvl: r["billing"] for lvl, r in by_level.items()}
                held["levels"] = by_level
                caps[protocol] = held
        output["profiles"][name] = {"results": results, "cap": caps}
        if not args.json:
            print(f"\n## {name} (policy on, normal level unless capped)\n")
            print(month_table(results))
            print()
            print(price_table(results))
            for r in results:
                if r["levers"]:
                    print(f"\n{r['protocol']} on the lite link, estimated from these prices:")
                for lever, e in r["levers"].items():
                    if e["events"]:
                        print(f"  {lever}: {e['per_event']:.0f} B each, {e['events']:.0f} a "
                              f"month, {_mb(e['month'])} MB/month saved")
                    else:
                        print(f"  {lever}: {e['per_event']:.0f} B")
            for r in results:
                upgrades = {(c["upgrade_request"], c["upgrade_response"])
                            for c in r["connections"]}
                print(f"{r['protocol']}: HTTP upgrade request / response bytes "
                      + ", ".join(f"{a} / {b}" for a, b in sorted(upgrades)))
            for protocol, held in caps.items():
                months = ", ".join(f"{lvl} {_mb(total)}" for lvl, total in held["months"].items())
                days = ", ".join(f"{lvl} {d:.2f} days" for lvl, d in held["days_at"].items())
                moves = "; ".join(f"day {m['day']}: to {m['to']} ({m['reason']})"
                                  for m in held["moves"]) or "none"
                verdict = "under" if held["under_cap"] else "OVER"
                print(f"\n{protocol}, cap {args.cap}: MB/month by level: {months}.\n"
                      f"  The policy holds the station at {days}; moves: {moves}.\n"
                      f"  Month: {_mb(held['total'])} MB, {verdict} the cap.")
                for lvl, rows in held["billing"].items():
                    complete = all(r["meter_start_wh"] is not None
                                   and r["meter_stop_wh"] is not None for r in rows)
                    print(f"  {lvl}: {len(rows)} sessions billed, start and stop readings "
                          f"stored: {complete}")
    if args.save:
        args.save.write_text(json.dumps(output, indent=2, default=str))
    if args.json:
        print(json.dumps(output, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

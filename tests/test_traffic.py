"""Traffic accounting: every layer measured on real sockets, server and station agreeing."""

from __future__ import annotations

import importlib.util
import json
import socket
import ssl
from types import ModuleType

import peewee as pw
import trio

from lite_csms.budget import tcpinfo
from lite_csms.budget.apportion import apportion
from lite_csms.budget.client import MeteredLink, open_metered
from lite_csms.budget.meter import IP, PAYLOAD, TLS, WS, frame_header
from lite_csms.db.models import Station, TrafficConnection, TrafficCounter
from tests.conftest import REPO, CsmsInProcess, start_in_process

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "Lite"}


def test_apportion_is_exact_and_proportional():
    shares = apportion(1000, {"a": 1, "b": 2, "c": 0, "d": 7})
    assert sum(shares.values()) == 1000
    assert shares == {"a": 100, "b": 200, "c": 0, "d": 700}
    odd = apportion(10, {"a": 1, "b": 1, "c": 1})
    assert sum(odd.values()) == 10 and sorted(odd.values()) == [3, 3, 4]
    assert apportion(5, {"a": 0}) == {"a": 0}


def test_frame_headers_follow_rfc6455():
    assert frame_header(125, masked=False) == 2
    assert frame_header(126, masked=False) == 4
    assert frame_header(70000, masked=True) == 14


def test_handshake_counts_syn_options():
    server = tcpinfo.handshake_bytes(socket.AF_INET, True, server_side=True)
    client = tcpinfo.handshake_bytes(socket.AF_INET, True, server_side=False)
    # What one side sends the other receives.
    assert (server.bytes_in, server.bytes_out) == (client.bytes_out, client.bytes_in)
    assert server.bytes_out == 20 + 20 + 20  # SYN-ACK: IPv4, TCP, 20 bytes of options


async def _station(csms: CsmsInProcess, station_id: str) -> None:
    await csms.server.store.run(lambda: Station.create(id=station_id))


async def _exchange(link: MeteredLink, count: int) -> None:
    """A boot then heartbeats, each CALL and its answer tallied on the station's meter."""
    for n in range(count):
        action, payload = ("BootNotification", BOOT) if n == 0 else ("Heartbeat", {})
        text = json.dumps([2, f"m{n}", action, payload])
        await link.ws.send_message(text)
        link.meter.message(action, False, text)
        answer = await link.ws.get_message()
        link.meter.message(action, True, answer)


async def _run_station(csms: CsmsInProcess, nursery: trio.Nursery, station_id: str,
                       messages: int, context: ssl.SSLContext | None = None,
                       session: ssl.SSLSession | None = None
                       ) -> tuple[dict[tuple[str, str], int], ssl.SSLSession | None, bool]:
    link = await open_metered(nursery, "127.0.0.1", csms.port, f"/ocpp/{station_id}",
                              ["ocpp1.6"], ssl_context=context, session=session)
    await _exchange(link, messages)
    resumable = link.session
    await link.ws.aclose()
    await link.finish()
    link.meter.collect()
    with trio.fail_after(5):
        while station_id in csms.server.connections:
            await trio.sleep(0.01)
    # The listener reads the last counters after the close frames; give it that moment.
    await trio.sleep(0.05)
    await csms.server.traffic.flush()
    return dict(link.meter.totals), resumable, link.meter.tls_resumed


def _server_totals(station_id: str) -> dict[tuple[str, str], int]:
    rows = (TrafficCounter
            .select(TrafficCounter.direction, TrafficCounter.layer,
                    pw.fn.SUM(TrafficCounter.bytes).alias("total"))
            .where(TrafficCounter.station == station_id)
            .group_by(TrafficCounter.direction, TrafficCounter.layer))
    return {(r.direction, r.layer): r.total for r in rows}


def _assert_agree(station: dict[tuple[str, str], int], server: dict[tuple[str, str], int],
                  layers: tuple[str, ...]) -> None:
    for direction in ("in", "out"):
        for layer in layers:
            ours, theirs = server.get((direction, layer), 0), station.get((direction, layer), 0)
            assert theirs > 0, (direction, layer)
            assert abs(ours - theirs) <= 0.02 * theirs, (direction, layer, ours, theirs)


async def test_plain_connection_is_counted_at_every_layer(nursery, tmp_path):
    csms = await start_in_process(nursery, tmp_path, traffic_flush_interval=3600)
    await _station(csms, "CS-T")
    station, _, _ = await _run_station(csms, nursery, "CS-T", 60)
    server = _server_totals("CS-T")
    # Payload and frames are exact: both ends count the same text.
    assert server[("in", PAYLOAD)] == station[("in", PAYLOAD)]
    assert server[("out", PAYLOAD)] == station[("out", PAYLOAD)]
    assert server[("in", WS)] > server[("in", PAYLOAD)]
    assert server[("in", IP)] > server[("in", WS)]
    assert ("in", TLS) not in server
    _assert_agree(station, server, (PAYLOAD, WS, IP))
    heartbeat = (TrafficCounter.select()
                 .where(TrafficCounter.action == "Heartbeat", TrafficCounter.layer == PAYLOAD,
                        TrafficCounter.direction == "in").get())
    assert heartbeat.messages == 59
    actions = {r.action for r in TrafficCounter.select(TrafficCounter.action).distinct()}
    assert {"(tcp-handshake)", "(http-upgrade)", "BootNotification"} <= actions
    connection = TrafficConnection.get(TrafficConnection.station == "CS-T")
    assert connection.tcp_setup_bytes > 0 and connection.http_setup_bytes > 0
    assert connection.ip_bytes_in == server[("in", IP)]
    assert not connection.tls


def _load_tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_tls_contexts = _load_tool("throwaway_tls").issue


async def test_tls_is_counted_and_resumes_with_a_ticket(nursery, tmp_path):
    cert_file, key_file, client = _tls_contexts(tmp_path)
    csms = await start_in_process(nursery, tmp_path, traffic_flush_interval=3600,
                                  tls_cert=str(cert_file), tls_key=str(key_file))
    await _station(csms, "CS-S")
    first, session, resumed = await _run_station(csms, nursery, "CS-S", 5, client)
    assert not resumed and session is not None
    second, _, resumed = await _run_station(csms, nursery, "CS-S", 5, client, session)
    assert resumed
    server = _server_totals("CS-S")
    station = {key: first.get(key, 0) + second.get(key, 0) for key in first.keys() | second}
    assert server[("in", TLS)] > server[("in", WS)]
    _assert_agree(station, server, (PAYLOAD, WS, TLS, IP))
    full, quick = (TrafficConnection.select().where(TrafficConnection.station == "CS-S")
                   .order_by(TrafficConnection.id))
    assert full.tls and not full.tls_resumed and quick.tls_resumed
    # No certificate crosses the wire on resumption.
    assert quick.tls_setup_bytes < full.tls_setup_bytes


async def test_plain_client_cannot_talk_to_a_tls_port(nursery, tmp_path):
    cert_file, key_file, _ = _tls_contexts(tmp_path)
    csms = await start_in_process(nursery, tmp_path, tls_cert=str(cert_file),
                                  tls_key=str(key_file), handshake_timeout=2)
    stream = await trio.open_tcp_stream("127.0.0.1", csms.port)
    await stream.send_all(b"GET /ocpp/CS-1 HTTP/1.1\r\nHost: x\r\n\r\n")
    with trio.fail_after(5):
        while await stream.receive_some(4096):
            pass  # the server answers nothing usable and hangs up
    await stream.aclose()
    assert csms.server.connections == {}


async def test_a_flush_writes_its_stations_in_chunks_that_add_up(nursery, tmp_path,
                                                                 monkeypatch):
    # A flush writes FLUSH_CHUNK stations' rows per store job (all at once left megabytes
    # of freed blocks behind); every live station's counts are still written, once.
    from lite_csms.budget import recorder
    from tests.test_before_boot import connect
    from tests.test_server import BOOT_16, register

    monkeypatch.setattr(recorder, "FLUSH_CHUNK", 2)
    csms = await start_in_process(nursery, tmp_path, traffic_flush_interval=3600)
    stations = {}
    for n in range(5):
        await register(csms, f"CHUNK-{n}")
        station = stations[f"CHUNK-{n}"] = await connect(csms, f"CHUNK-{n}", "ocpp1.6")
        await station.send([2, f"boot-{n}", "BootNotification", BOOT_16])
        await station.next_message()
    jobs = 0
    run = csms.server.store.run

    async def counted(job):
        nonlocal jobs
        jobs += 1
        return await run(job)

    monkeypatch.setattr(csms.server.store, "run", counted)
    await csms.server.traffic.flush()
    assert jobs == 3  # 2 + 2 stations, then the last with the connections and the mark
    await csms.server.traffic.flush()  # nothing new: nothing counted twice
    for n in range(5):
        boot = len(json.dumps([2, f"boot-{n}", "BootNotification", BOOT_16]))
        row = (TrafficCounter.select()
               .where(TrafficCounter.station == f"CHUNK-{n}",
                      TrafficCounter.action == "BootNotification",
                      TrafficCounter.layer == PAYLOAD, TrafficCounter.direction == "in")
               .get())
        assert (row.bytes, row.messages) == (boot, 1)
    for station in stations.values():
        await station.stream.aclose()

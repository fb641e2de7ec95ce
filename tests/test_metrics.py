"""/metrics on the admin port: scraped after real stations talk over real sockets."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import ConnectionRejected, open_websocket_url

from lite_csms.ocppj.versions import Version
from tests.conftest import CsmsInProcess, start_in_process
from tests.test_server import BOOT_16, BOOT_201, basic, register, rpc

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=20) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


async def scrape(csms: CsmsInProcess) -> Samples:
    url = f"http://127.0.0.1:{csms.server.admin_port}/metrics"
    status, content_type, text = await trio.to_thread.run_sync(_get, url)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_scrape_counts_a_real_stations_exchange(csms: CsmsInProcess) -> None:
    await register(csms, "MET-1")
    await register(csms, "MET-2", "a long enough password")
    before = await scrape(csms)
    assert value(before, "lite_csms_stations_online", version="ocpp1.6", link="json") == 0
    commits = value(before, "lite_csms_store_commit_seconds_count")

    async with open_websocket_url(csms.url("MET-1"), subprotocols=["ocpp1.6"]) as ws16, \
            open_websocket_url(csms.url("MET-2"), subprotocols=["ocpp2.0.1"],
                               extra_headers=[basic("MET-2", "a long enough password")]) as ws2:
        assert (await rpc(ws16, [2, "1", "BootNotification", BOOT_16]))[0] == 3
        assert (await rpc(ws16, [2, "2", "Heartbeat", {}]))[0] == 3
        assert (await rpc(ws16, [2, "3", "Heartbeat", {}]))[0] == 3
        # A schema violation and an unknown action: CALLERRORs we send.
        assert (await rpc(ws16, [2, "4", "Authorize", {}]))[2] == "OccurenceConstraintViolation"
        assert (await rpc(ws16, [2, "5", "NoSuchThing", {}]))[2] == "NotImplemented"
        assert (await rpc(ws2, [2, "1", "BootNotification", BOOT_201]))[0] == 3
        during = await scrape(csms)
        # The station refuses our CALL: a CALLERROR we receive, with a code 1.6 has not.
        async with trio.open_nursery() as nursery:
            async def refuse() -> None:
                call = json.loads(await ws16.get_message())
                await ws16.send_message(json.dumps([4, call[1], "WeirdCode", "no", {}]))
                call = json.loads(await ws16.get_message())
                await ws16.send_message(json.dumps([4, call[1], "NotSupported", "no", {}]))

            nursery.start_soon(refuse)
            for _ in range(2):
                outcome = await csms.server.commands.send("MET-1", "ClearCache", {},
                                                          requested_by="test")
                assert outcome.status == "error"
    with trio.fail_after(10):
        while csms.server.connections:
            await trio.sleep(0.02)
    await csms.server.traffic.flush()
    after = await scrape(csms)

    assert value(during, "lite_csms_stations_online", version="ocpp1.6", link="json") == 1
    assert value(during, "lite_csms_stations_online", version="ocpp2.0.1", link="json") == 1
    assert value(after, "lite_csms_stations_online", version="ocpp1.6", link="json") == 0
    grew = {name_labels: after.get(name_labels, 0) - before.get(name_labels, 0)
            for name_labels in after}
    assert grew[("lite_csms_messages_total",
                 frozenset({"action": "Heartbeat", "direction": "in"}.items()))] == 2
    assert grew[("lite_csms_messages_total",
                 frozenset({"action": "Heartbeat", "direction": "out"}.items()))] == 2
    assert value(after, "lite_csms_messages_total", action="BootNotification",
                 direction="in") == 2
    assert value(after, "lite_csms_messages_total", action="ClearCache", direction="out") == 2
    # A CALL the session refuses (schema, unknown action) names no action the store trusts.
    assert value(after, "lite_csms_messages_total", action="(invalid)", direction="in") == 2
    assert value(after, "lite_csms_callerrors_total", action="(invalid)",
                 code="OccurenceConstraintViolation", direction="out") == 1
    assert value(after, "lite_csms_callerrors_total", action="(invalid)",
                 code="NotImplemented", direction="out") == 1
    # A code the version does not define is not a label value an attacker can choose.
    assert value(after, "lite_csms_callerrors_total", action="ClearCache", code="(other)",
                 direction="in") == 1
    assert value(after, "lite_csms_callerrors_total", action="ClearCache",
                 code="NotSupported", direction="in") == 1
    assert not any("WeirdCode" in str(labels) for _, labels in after)
    assert value(after, "lite_csms_handshakes_total", outcome="accepted") == 2
    assert value(after, "lite_csms_kdf_checks_total") == 1
    assert value(after, "lite_csms_store_commit_seconds_count") > commits
    assert value(after, "lite_csms_store_batches_total", outcome="committed") > 0
    for layer in ("payload", "ws", "ip"):
        assert value(after, "lite_csms_traffic_bytes_total", direction="in", layer=layer) > 0
        assert value(after, "lite_csms_traffic_bytes_total", direction="out", layer=layer) > 0
    # The stacked layers: each carries at least the one above it.
    assert (value(after, "lite_csms_traffic_bytes_total", direction="in", layer="ip")
            > value(after, "lite_csms_traffic_bytes_total", direction="in", layer="ws")
            > value(after, "lite_csms_traffic_bytes_total", direction="in", layer="payload"))
    assert value(after, "process_open_fds") > 0


async def test_refused_handshakes_and_cache_hits_are_counted(csms: CsmsInProcess) -> None:
    await register(csms, "MET-3", "the right password")
    for password in ("wrong", "the right password", "the right password"):
        try:
            async with open_websocket_url(csms.url("MET-3"), subprotocols=["ocpp1.6"],
                                          extra_headers=[basic("MET-3", password)]):
                pass
        except ConnectionRejected as exc:
            assert exc.status_code == 401
    try:
        async with open_websocket_url(csms.url("NOBODY"), subprotocols=["ocpp1.6"]):
            pass
    except ConnectionRejected as exc:
        assert exc.status_code == 401
    samples = await scrape(csms)
    assert value(samples, "lite_csms_handshakes_total", outcome="401") == 2
    assert value(samples, "lite_csms_handshakes_total", outcome="accepted") == 2
    # The second right login came from the cache, without a second scrypt run.
    assert value(samples, "lite_csms_credential_cache_hits_total") == 1
    assert value(samples, "lite_csms_kdf_checks_total") == 2


async def test_metrics_answer_while_the_store_cannot_commit(csms: CsmsInProcess,
                                                            monkeypatch) -> None:
    async def full(job: object) -> object:
        raise OSError("database or disk is full")

    monkeypatch.setattr(csms.server.store, "run", full)
    samples = await scrape(csms)
    assert value(samples, "lite_csms_info", release=__import__("lite_csms").__version__) == 1
    monkeypatch.undo()


def test_registries_are_per_server(tmp_path) -> None:
    # Many servers in one process (as in this suite): the global registry would refuse the
    # second server's families, and one server's counts must not show in another's scrape.
    from lite_csms import config
    from lite_csms.db.database import open_database
    from lite_csms.net.server import CsmsServer

    settings = config.load(environ={}, overrides={"database": str(tmp_path / "m.sqlite3")})
    db = open_database(tmp_path / "m.sqlite3")
    try:
        one, two = CsmsServer(settings, db), CsmsServer(settings, db)
    finally:
        db.close()
    one.tally.inbound("Heartbeat")
    one.tally.station_error(Version.OCPP16, "Reset", "NotSupported")
    one.store.on_commit(0.003, True)  # type: ignore[misc]
    one_text, two_text = one.metrics.render().decode(), two.metrics.render().decode()
    assert 'lite_csms_messages_total{action="Heartbeat",direction="in"} 1.0' in one_text
    assert "Heartbeat" not in two_text
    assert 'code="NotSupported"' in one_text
    assert "lite_csms_store_commit_seconds_count 1.0" in one_text
    assert 'lite_csms_store_commit_seconds_bucket{le="0.0025"} 0.0' in one_text
    assert 'lite_csms_store_commit_seconds_bucket{le="0.005"} 1.0' in one_text
    assert 'lite_csms_store_commit_seconds_bucket{le="+Inf"} 1.0' in one_text
    assert "lite_csms_store_commit_seconds_count 0.0" in two_text


async def test_refusals_at_accept_and_open_connections_are_scraped(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    # Two handshakes are this source's share of the four (at most half of max_handshakes).
    csms = await start_in_process(nursery, tmp_path, max_connections_per_source=2,
                                  max_handshakes=4)
    # Two connections that never send their request: open and in their handshake.
    idle = [await trio.open_tcp_stream("127.0.0.1", csms.port, local_address="127.0.0.61")
            for _ in range(2)]
    limits = csms.server.listener.limits
    with trio.fail_after(5):
        while limits.open < 2:
            await trio.sleep(0.01)
    # Over the cap per source: refused at accept() with 503 before its request is read.
    over = await trio.open_tcp_stream("127.0.0.1", csms.port, local_address="127.0.0.61")
    answer = b""
    with trio.fail_after(5):
        while chunk := await over.receive_some(4096):
            answer += chunk
    await over.aclose()
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    samples = await scrape(csms)
    assert value(samples, "lite_csms_handshakes_total", outcome="503") == 1
    assert value(samples, "lite_csms_connections_open") == 2
    assert value(samples, "lite_csms_handshakes_running") == 2
    for stream in idle:
        await stream.aclose()
    with trio.fail_after(5):
        while limits.open:
            await trio.sleep(0.01)
    samples = await scrape(csms)
    assert value(samples, "lite_csms_connections_open") == 0
    assert value(samples, "lite_csms_handshakes_running") == 0

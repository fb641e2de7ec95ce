#!/usr/bin/env python3
"""What keeping a link alive costs on the wire: TCP keepalive, WebSocket ping, Heartbeat.

Real time, real TLS, one in-process server and one metered station on 127.0.0.1. Each
method runs for --seconds at one-second intervals; the station's own TCP_INFO gives the IP
bytes, both directions, per keepalive.

    python tools/bench_keepalive.py --seconds 10
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import tempfile
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throwaway_tls

from lite_csms import config
from lite_csms.budget import tcpinfo
from lite_csms.budget.client import MeteredLink, open_metered
from lite_csms.db.database import open_database
from lite_csms.db.models import Station
from lite_csms.net.server import CsmsServer

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "Lite"}


def _ip_total(link: MeteredLink) -> int:
    counters = tcpinfo.read(link.meter.sock)
    assert counters is not None, "TCP_INFO is needed (Linux)"
    ip = tcpinfo.ip_bytes(counters, link.meter.family)
    return ip.bytes_in + ip.bytes_out


async def _connect(nursery: trio.Nursery, port: int, client_tls: ssl.SSLContext
                   ) -> MeteredLink:
    link = await open_metered(nursery, "127.0.0.1", port, "/ocpp/CS-K", ["ocpp1.6"],
                              ssl_context=client_tls)
    await link.ws.send_message(json.dumps([2, "b", "BootNotification", BOOT]))
    await link.ws.get_message()
    await trio.sleep(0.5)  # let the last acknowledgements settle before measuring
    return link


async def measure(seconds: int, workdir: Path) -> dict[str, float]:
    cert_file, key_file, client_tls = throwaway_tls.issue(workdir)
    results: dict[str, float] = {}
    for method in ("tcp-keepalive", "ws-ping", "heartbeat"):
        database = workdir / f"{method}.sqlite3"
        keepalive = 1 if method == "tcp-keepalive" else 3600
        settings = config.load(environ={}, overrides={
            "host": "127.0.0.1", "port": 0, "database": str(database), "admin_enabled": False,
            "tls_cert": str(cert_file), "tls_key": str(key_file), "budget_policy": False,
            "tcp_keepalive_idle": keepalive, "tcp_keepalive_interval": keepalive})
        db = open_database(database)
        Station.create(id="CS-K")
        async with trio.open_nursery() as nursery:
            server = CsmsServer(settings, db)
            port = (await nursery.start(server.run))[0]
            link = await _connect(nursery, port, client_tls)
            before = _ip_total(link)
            for n in range(seconds):
                await trio.sleep(1)
                if method == "ws-ping":
                    await link.ws.ping()
                elif method == "heartbeat":
                    await link.ws.send_message(json.dumps([2, f"h{n}", "Heartbeat", {}]))
                    await link.ws.get_message()
            await trio.sleep(0.5)
            results[method] = (_ip_total(link) - before) / seconds
            await link.ws.aclose()
            await link.finish()
            nursery.cancel_scope.cancel()
        db.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = trio.run(measure, args.seconds, Path(tmp))
    print("| keepalive | IP bytes each, both directions (TLS on) |")
    print("| --- | ---: |")
    for method, cost in results.items():
        print(f"| {method} | {cost:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

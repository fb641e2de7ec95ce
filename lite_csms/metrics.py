"""/metrics: the server's counts in the Prometheus text format (prometheus_client).

One CollectorRegistry per server, never the library's global one: tests run many servers in
one process. Most families are read from counts the server keeps anyway (net/tally.py, the
store writer, the traffic recorder, the KDF queue and credential cache) when Prometheus
scrapes, so the hot path pays a dict increment, not a lock. Only the commit latency is a
histogram, observed once per group commit into plain bucket counts. Every label is
bounded: no station id, token or transaction appears (docs/OPERATIONS.md lists the families).

prometheus_client is imported at the first scrape, not at start: 2.7 MB of a server's idle
RSS that an operator without Prometheus need not pay (docs/PERFORMANCE.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lite_csms import __version__
from lite_csms.budget.names import DIRECTIONS, LAYERS
from lite_csms.ocppj.versions import SUPPORTED_SUBPROTOCOLS

if TYPE_CHECKING:
    from lite_csms.net.server import CsmsServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LINKS = ("json", "lite")
# A group commit is one fsync (synchronous=FULL): ~1 ms on an SSD, tens on a busy VPS disk.
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServerMetrics:
    """The counts of one server; `render()` is the body of GET /metrics."""

    def __init__(self, server: CsmsServer) -> None:
        self._server = server
        # Per bucket of COMMIT_BUCKETS, then +Inf: commits that took at most that long.
        self.commit_buckets = [0] * (len(COMMIT_BUCKETS) + 1)
        self.commit_sum = 0.0
        self._registry: Any = None
        server.store.on_commit = self._observe_commit

    def _observe_commit(self, seconds: float, stored: bool) -> None:
        # Called on the writer's thread; a lost increment under a race is one sample.
        index = next((i for i, bound in enumerate(COMMIT_BUCKETS) if seconds <= bound),
                     len(COMMIT_BUCKETS))
        self.commit_buckets[index] += 1
        self.commit_sum += seconds

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.process_collector import ProcessCollector

        if self._registry is None:
            registry = CollectorRegistry(auto_describe=True)
            registry.register(_collector(self._server, self))
            # RSS, open descriptors against their limit, CPU seconds: what a small VPS
            # runs out of.
            ProcessCollector(registry=registry)
            self._registry = registry
        return generate_latest(self._registry)


def _collector(server: CsmsServer, metrics: ServerMetrics) -> Any:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector

    class ServerCollector(Collector):
        def __init__(self) -> None:
            self._server = server

        def describe(self) -> Iterator[Metric]:
            # The same families collect() yields; read without side effects.
            return self.collect()

        def collect(self) -> Iterator[Metric]:
            server = self._server
            info = GaugeMetricFamily("lite_csms_info", "The running lite-csms release",
                                     labels=["release"])
            info.add_metric([__version__], 1)
            yield info
            yield self._online()
            tally = server.tally
            messages = CounterMetricFamily(
                "lite_csms_messages", "OCPP-J messages by action and direction (in: from the "
                "station; out: to it); \"(invalid)\" for frames no action explains",
                labels=["action", "direction"])
            for (action, direction), count in sorted(tally.messages.items()):
                messages.add_metric([action, direction], count)
            yield messages
            errors = CounterMetricFamily(
                "lite_csms_callerrors", "CALLERRORs by action, error code and direction (out: we "
                "refused the station's CALL; in: the station refused ours)",
                labels=["action", "code", "direction"])
            for (action, code, direction), count in sorted(tally.errors.items()):
                errors.add_metric([action, code, direction], count)
            yield errors
            handshakes = CounterMetricFamily(
                "lite_csms_handshakes", "WebSocket handshakes by outcome: accepted, the HTTP "
                "status of a refusal (400, 401, 404, 429, 503; 503 also at accept() over a "
                "connection cap), closed_at_accept (over a cap, closed without an answer), "
                "timeout, peer_left, incomplete",
                labels=["outcome"])
            for outcome, count in sorted(tally.handshakes.items()):
                handshakes.add_metric([outcome], count)
            yield handshakes
            limits = server.listener.limits
            yield GaugeMetricFamily("lite_csms_connections_open",
                                    "OCPP-J connections open now, handshakes included "
                                    "(counted against the connection caps)", value=limits.open)
            yield GaugeMetricFamily("lite_csms_handshakes_running",
                                    "OCPP-J connections in their handshake now",
                                    value=limits.handshaking)
            yield from self._store()
            yield _commit_histogram(metrics, HistogramMetricFamily)
            yield from self._traffic()
            yield from self._passwords()

        def _online(self) -> Metric:
            online = GaugeMetricFamily("lite_csms_stations_online",
                                       "Stations connected now, by OCPP version and link",
                                       labels=["version", "link"])
            counts = Counter((c.ctx.version.value, "lite" if c.lite is not None else "json")
                             for c in self._server.connections.values())
            for version in SUPPORTED_SUBPROTOCOLS:
                for link in LINKS:
                    online.add_metric([version, link], counts.get((version, link), 0))
            return online

        def _store(self) -> Iterator[Metric]:
            store = self._server.store
            batches = CounterMetricFamily("lite_csms_store_batches",
                                          "SQLite group commits by outcome", labels=["outcome"])
            batches.add_metric(["committed"], store.batches - store.lost_batches)
            batches.add_metric(["lost"], store.lost_batches)
            yield batches
            yield CounterMetricFamily("lite_csms_store_jobs", "Store jobs run in group commits",
                                      value=store.jobs)
            yield GaugeMetricFamily("lite_csms_store_queued",
                                    "Store jobs waiting for the next group commit",
                                    value=store.queued)
            yield GaugeMetricFamily("lite_csms_store_failing_batches",
                                    "Group commits lost in a row (0 once one commits again)",
                                    value=store.failed_batches)

        def _traffic(self) -> Iterator[Metric]:
            traffic = CounterMetricFamily(
                "lite_csms_traffic_bytes", "Bytes with stations by direction and layer, as the "
                "data-budget accounting counted them (payload, ws, tls, ip; docs/DATA-BUDGET.md); "
                "updated each traffic_flush_interval and when a connection closes",
                labels=["direction", "layer"])
            totals = self._server.traffic.totals
            for direction in DIRECTIONS:
                for layer in LAYERS:
                    traffic.add_metric([direction, layer], totals.get((direction, layer), 0))
            yield traffic

        def _passwords(self) -> Iterator[Metric]:
            server = self._server
            limiter = server.kdf.limiter.statistics()
            yield GaugeMetricFamily("lite_csms_kdf_queued",
                                    "Password checks (scrypt) waiting for a slot",
                                    value=limiter.tasks_waiting)
            yield GaugeMetricFamily("lite_csms_kdf_running", "Password checks running now",
                                    value=limiter.borrowed_tokens)
            yield CounterMetricFamily("lite_csms_kdf_checks", "Password checks run",
                                      value=server.kdf.runs)
            yield GaugeMetricFamily("lite_csms_kdf_seconds",
                                    "Moving average of one password check, seconds",
                                    value=server.kdf.seconds)
            yield CounterMetricFamily("lite_csms_credential_cache_hits",
                                      "Handshakes let in by a recently verified credential, "
                                      "without a KDF run", value=server.credentials.hits)
            yield GaugeMetricFamily("lite_csms_credential_cache_entries",
                                    "Credentials remembered as verified",
                                    value=len(server.credentials))

    return ServerCollector()


def _commit_histogram(metrics: ServerMetrics, family: Any) -> Any:
    cumulative, buckets = 0, []
    bounds = [*(repr(b) for b in COMMIT_BUCKETS), "+Inf"]
    for bound, count in zip(bounds, metrics.commit_buckets, strict=True):
        cumulative += count
        buckets.append((bound, cumulative))
    return family("lite_csms_store_commit_seconds",
                  "Duration of one SQLite group commit (BEGIN to COMMIT, its jobs and fsync), "
                  "committed or lost", buckets=buckets, sum_value=metrics.commit_sum)

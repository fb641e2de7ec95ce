"""What /metrics costs per message: our dict tally against prometheus_client counters.

Times the calls the server makes for one inbound and one outbound message (a Heartbeat and
its CALLRESULT), each way, and compares them with a message's whole inbound decode path
(`RpcSession.receive` of a Heartbeat), so the figure reads as a share of real work.

    python tools/bench_metrics.py [--number 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench_common import machine_summary, markdown_table
from prometheus_client import CollectorRegistry, Counter

from lite_csms.net.tally import Tally
from lite_csms.ocppj.session import RpcSession
from lite_csms.ocppj.versions import Version

ANSWER = '[3,"1",{"currentTime":"2026-11-29T16:00:00.000Z"}]'


def best(fn: Callable[[], None], number: int, repeat: int) -> float:
    """Best µs per call of `fn` over `repeat` runs of `number` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - started) / number)
    return min(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n, r = args.number, args.repeat

    tally = Tally()

    def ours() -> None:
        tally.inbound("Heartbeat")
        tally.outbound("Heartbeat", ANSWER)

    counter = Counter("m", "messages", ["action", "direction"], registry=CollectorRegistry())
    children: dict[tuple[str, str], object] = {}

    def cached_child() -> None:
        # The child looked up per message by key, as a connection would have to.
        for key in (("Heartbeat", "in"), ("Heartbeat", "out")):
            child = children.get(key)
            if child is None:
                child = children[key] = counter.labels(*key)
            child.inc()  # type: ignore[attr-defined]

    def through_labels() -> None:
        counter.labels("Heartbeat", "in").inc()
        counter.labels("Heartbeat", "out").inc()

    def nothing() -> None:
        pass

    session = RpcSession(Version.OCPP16)
    ids = iter(range(10**9))

    def decode() -> None:
        session.receive(f'[2,"{next(ids)}","Heartbeat",{{}}]', 0.0)

    baseline = best(nothing, n, r)
    rows = []
    decode_us = best(decode, n // 4, r) - baseline
    for name, fn in (("net/tally.py dicts (the server's choice)", ours),
                     ("prometheus_client, child cached per key", cached_child),
                     ("prometheus_client, .labels() each time", through_labels)):
        pair = best(fn, n, r) - baseline
        rows.append((name, round(pair / 2, 2), f"{pair / 2 / decode_us:.1%}"))
    print(machine_summary(["prometheus-client"]))
    print(f"\nRpcSession.receive of a 1.6 Heartbeat: {decode_us:.2f} µs\n")
    print(markdown_table(["counting", "µs per message", "of one Heartbeat decode"], rows))


if __name__ == "__main__":
    main()

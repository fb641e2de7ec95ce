"""tools/bench_compare.py at toy scale against both real servers: every figure is measured for
both sides (lite-csms alone for TLS and deflate), and each ratio is the one its values give."""

from __future__ import annotations

import json
import math
import statistics
import sys
import time

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import bench_compare

TOY = ["--repetitions", "1", "--duration", "0.3", "--throughput-stations", "4,2",
       "--rates", "20", "--open-stations", "3", "--boot-stations", "3",
       "--idle-stations", "3", "--variant-stations", "2", "--idle-seconds", "0.1",
       "--quiet-window", "0.05"]


def test_toy_run_reports_every_figure_for_both_sides(tmp_path, capsys) -> None:
    out = tmp_path / "figures.json"
    calls_out = tmp_path / "calls.json"
    bench_compare.main([*TOY, "--workdir", str(tmp_path), "--json", str(out),
                        "--calls", str(calls_out)])
    report = capsys.readouterr().out
    result = json.loads(out.read_text())
    expected = bench_compare.figures(bench_compare.parse_args(TOY))
    assert list(result["figures"]) == [figure.key for figure in expected]
    assert not [p for p in result["problems"] if "rows written" in p]
    for figure in expected:
        entry = result["figures"][figure.key]
        lite, peer = entry["lite-csms"], entry["peer"]
        assert len(lite) == 1 and all(math.isfinite(v) for v in lite), figure.key
        if figure.lite_only:
            assert peer == [] and entry["ratio"] is None
            continue
        assert len(peer) == 1 and all(math.isfinite(v) for v in peer), figure.key
        if statistics.median(peer) == 0:
            # The peer's CPU for three boots can be under one clock tick: no ratio then.
            assert figure.key == "cpu_per_boot" and entry["ratio"] is None
            continue
        assert entry["ratio"] == statistics.median(lite) / statistics.median(peer)
        row = next(line for line in report.splitlines() if line.startswith(f"| {figure.label} |"))
        assert row.endswith(f"| {entry['ratio']:.2f} |")
    for key in ("throughput_4", "throughput_2", "boot_rate", "p50_20", "p99_20", "startup",
                "cpu_per_call_4"):
        assert min(result["figures"][key]["lite-csms"] + result["figures"][key]["peer"]) > 0
    assert min(result["figures"]["idle_rss"]["peer"]) > 10  # MiB: a Python process at least
    # Every call answered was a durable row: the per-run notes count both.
    calls = [line for line in result["notes"] if "back to back" in line]
    assert len(calls) == 4
    # --calls: every call of each open run, in the order they were due, with its latency.
    runs = json.loads(calls_out.read_text())
    assert sorted(run["side"] for run in runs) == ["lite-csms", "peer"]
    for run in runs:
        dues = [due for due, _, _ in run["calls"]]
        assert run["rate"] == 20 and len(dues) == 6 and dues == sorted(dues) and dues[0] == 0
        assert all(ms > 0 and 0 <= n < 3 for _, ms, n in run["calls"])
        # The run's first due time on the clock the server shares, to match its trace.
        assert 0 < run["start"] < time.monotonic()

#!/usr/bin/env python3
"""The lite link's price in CPU, memory and bytes (issue 10 targets), for docs/LITE.md.

a) --cost: encode and decode time per message over the committed corpus
   (codecs/corpus/<protocol>.jsonl.zst), per protocol: the lite frame with the published
   dictionary and the plain CBOR frame, next to orjson dumps/loads and the schema validation
   the server does for every message anyway. Each message is timed `--repeat` times in a
   row; its figure is the median of those. The table gives the median and the 95th
   percentile over the messages, in microseconds.
b) --memory: the server's VmRSS with N idle, booted 1.6 stations, on the lite subprotocol,
   on OCPP-J with permessage-deflate (the server's setting: window 11, memLevel 4) and on
   OCPP-J without. Each setting is a fresh `lite-csms serve` on a temporary SQLite file
   (127.0.0.1, port 0). The stations are raw `websockets` clients in this process: each
   boots (Accepted), sends `--messages` more calls so that deflate windows hold data as in
   the field, then stays idle. Per station = (RSS with N - RSS with 0) / N; "with 0" is read
   after one station has come and gone, so imports, compiled schemas and the shared zstd
   contexts are in the baseline.
c) --actions: bytes per message for every action of 1.6, 2.0.1 and 2.1, both directions,
   from the test vectors (codecs/vectors/<protocol>.json): the "typical" message where the
   vectors have one, else the "minimal" one (required properties only); the "full" one
   (every property, strings long) beside it.

    python tools/bench_lite.py --cost [--repeat 7]
    python tools/bench_lite.py --memory [--stations 300,1000] [--messages 10]
    python tools/bench_lite.py --actions
    python tools/bench_lite.py --cost --memory --actions --write   # into docs/LITE.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import textwrap
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common
import bench_deflate
import websockets
from lite_record import PROTOCOLS, corpus_path, read_corpus
from lite_train import DEFLATE_MEM_LEVEL, DEFLATE_WBITS, Sample, encode_corpus

from lite_csms.lite import (
    LiteDictionary,
    LiteEncodeError,
    decode_frame,
    encode_frame,
    load_dictionaries,
)
from lite_csms.ocppj import schemas
from lite_csms.ocppj.versions import Version

ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = ROOT / "codecs" / "corpus"
VECTOR_DIR = ROOT / "codecs" / "vectors"
DOC = ROOT / "docs" / "LITE.md"
PACKAGES = ["zstandard", "orjson", "fastjsonschema", "websockets", "wsproto"]
MACHINE_NOTE = ("one run on a shared machine: 2 cores, with other jobs such as test suites "
                "and simulators running beside it, so figures carry noise of tens of percent")


# ---- a) cost per message -------------------------------------------------------------------
def _time_us(call: Callable[[], Any], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        call()
        runs.append(time.perf_counter_ns() - started)
    return statistics.median(runs) / 1000


def _validate(version: Version, sample: Sample) -> Callable[[], Any]:
    message = sample.message
    if message[0] in (2, 6):
        return lambda: schemas.failure(version, message[2], message[3], response=False)
    action = sample.action.removesuffix(" result")
    return lambda: schemas.failure(version, action, message[2], response=True)


def cost_rows(protocol: str, repeat: int) -> list[list[Any]]:
    """[operation, messages, median µs, p95 µs] for one protocol's corpus."""
    version = Version(protocol)
    samples, _ = encode_corpus(read_corpus(corpus_path(CORPUS_DIR, protocol, True)), protocol)
    dictionaries = load_dictionaries(protocol)
    dictionary = dictionaries[max(dictionaries)]
    timings: dict[str, list[float]] = {}

    def add(name: str, call: Callable[[], Any]) -> None:
        call()  # warm: first use compiles schemas and allocates zstd contexts
        timings.setdefault(name, []).append(_time_us(call, repeat))

    for s in samples:
        m = s.message
        packed = encode_frame(m, protocol=protocol, dictionary=dictionary)
        plain = encode_frame(m, protocol=protocol)
        text = orjson.dumps(m)
        add("lite encode, with dictionary", lambda m=m: encode_frame(
            m, protocol=protocol, dictionary=dictionary))
        add("lite decode, with dictionary", lambda f=packed: decode_frame(
            f, protocol=protocol, dictionaries=dictionaries))
        add("lite encode, plain CBOR", lambda m=m: encode_frame(m, protocol=protocol))
        add("lite decode, plain CBOR", lambda f=plain: decode_frame(f, protocol=protocol))
        add("orjson dumps (OCPP-J)", lambda m=m: orjson.dumps(m))
        add("orjson loads (OCPP-J)", lambda t=text: orjson.loads(t))
        add("schema validation (both links)", _validate(version, s))
    return [[name, len(values), statistics.median(values),
             statistics.quantiles(values, n=20)[-1]] for name, values in timings.items()]


def _fill(text: str) -> str:
    return textwrap.fill(text, width=92, break_on_hyphens=False)


def cost_section(repeat: int) -> str:
    parts = ["## Cost per message", "",
             _fill("Made by `python tools/bench_lite.py --cost --write`. Every message of the "
             "committed corpus (codecs/corpus/), timed "
             f"{repeat} times in a row; a message's figure is the median of those, and the "
             "table gives the median and the 95th percentile over the messages, in "
             "microseconds of one core. \"with dictionary\" is the frame as the server sends it "
             "(zstd level 19 with the published dictionary, kept only when shorter); "
             "\"plain CBOR\" is the frame without zstd. For scale: orjson and the schema "
             "validation (fastjsonschema, compiled OCA schemas) that every message gets on "
             "either link. On a live connection the server also turns a decoded lite message "
             "into OCPP-J text for the session and back (lite_csms/net/lite_link.py): one "
             "orjson dumps and one loads more per message."), ""]
    for protocol in PROTOCOLS:
        print(f"cost: {protocol}", file=sys.stderr, flush=True)
        parts += [f"### {protocol}", "", bench_common.markdown_table(
            ["operation", "messages", "median µs", "p95 µs"], cost_rows(protocol, repeat)), ""]
    parts += [_fill(
        "Reading: the lite codec is pure Python (lite_csms/lite/cbor.py, payload.py). Its "
        "cost is the walk that builds compact CBOR (integer keys, enums, epoch timestamps); "
        "the encoder also decodes its own body once, so that it never sends what a peer "
        "must refuse. zstd with the dictionary adds a few microseconds. The p95 rows are "
        "the large messages: StopTransaction with its samples, SetVariables, "
        "TransactionEvent with many readings. A station sending one message a minute costs "
        "well under a millisecond of server CPU a minute on either link."), "",
        _fill(f"Measured with ({MACHINE_NOTE}):"), "", bench_common.machine_summary(PACKAGES),
        ""]
    return "\n".join(parts)


# ---- b) memory per idle station ------------------------------------------------------------
LINKS = ("lite", "deflate", "plain")


class LiteWs:
    """A station's calls as lite frames (codecs/SPEC.md) over a `websockets` connection."""

    def __init__(self, ws: Any, protocol: str, dictionary: LiteDictionary) -> None:
        self.ws, self.protocol, self.dictionary = ws, protocol, dictionary
        self.dictionaries = {dictionary.dict_id: dictionary}

    async def send(self, text: str) -> None:
        await self.ws.send(encode_frame(json.loads(text), protocol=self.protocol,
                                        dictionary=self.dictionary))

    async def recv(self) -> str:
        frame = await self.ws.recv()
        return json.dumps(decode_frame(frame, protocol=self.protocol,
                                       dictionaries=self.dictionaries))


async def connect_idle(port: int, ids: list[str], messages: int, link: str,
                       dictionary: LiteDictionary) -> list[Any]:
    """Each station connects, boots (Accepted), makes `messages` more calls, stays open."""
    gate = asyncio.Semaphore(bench_deflate.CONCURRENT_HANDSHAKES)
    callers = asyncio.Semaphore(bench_deflate.CONCURRENT_CALLERS)
    steps = bench_deflate.sequence(max(0, messages - 5))[:messages]
    connections: list[Any] = []
    offer = ["ocpp1.6.lite1"] if link == "lite" else ["ocpp1.6"]

    async def one(sid: str) -> None:
        async with gate:
            ws = await websockets.connect(
                f"ws://{bench_deflate.HOST}:{port}/ocpp/{sid}", subprotocols=offer,
                open_timeout=bench_deflate.CALL_TIMEOUT, ping_interval=None,
                compression="deflate" if link == "deflate" else None)
        connections.append(ws)
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        if ws.subprotocol != offer[0] or ("permessage-deflate" in extensions) != (
                link == "deflate"):
            raise RuntimeError(f"{sid}: got {ws.subprotocol} / {extensions!r}")
        rpc = bench_deflate.Link(LiteWs(ws, "ocpp1.6", dictionary) if link == "lite" else ws)
        async with callers:
            answer = await rpc.call("BootNotification", bench_deflate.boot())
            if answer.get("status") != "Accepted":
                raise RuntimeError(f"{sid}: boot {answer}")
            for action, payload in steps:
                await rpc.call(action, payload)

    await asyncio.gather(*(one(sid) for sid in ids))
    return connections


@dataclass(frozen=True, slots=True)
class MemoryRow:
    link: str
    stations: int
    baseline_kib: int
    loaded_kib: int

    @property
    def per_station(self) -> float:
        return (self.loaded_kib - self.baseline_kib) / self.stations


def measure_memory(workdir: Path, link: str, stations: int, messages: int) -> MemoryRow:
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    database = run_dir / "csms.sqlite3"
    ids = bench_deflate.register(database, stations + 1)
    env = {"LITE_CSMS_WS_DEFLATE": "1" if link == "deflate" else "0",
           "LITE_CSMS_WS_DEFLATE_WINDOW_BITS": str(DEFLATE_WBITS),
           "LITE_CSMS_WS_DEFLATE_MEM_LEVEL": str(DEFLATE_MEM_LEVEL)}
    dictionary = max(load_dictionaries("ocpp1.6").items())[1]
    print(f"memory: {link}, {stations} stations", file=sys.stderr, flush=True)

    async def run(server: bench_deflate.Server) -> tuple[int, int]:
        warm = await connect_idle(server.port, ids[-1:], messages, link, dictionary)
        for ws in warm:
            await ws.close()
        await asyncio.sleep(1.5)
        baseline = server.rss_kib()
        connections = await connect_idle(server.port, ids[:stations], messages, link,
                                         dictionary)
        await asyncio.sleep(2.0)
        loaded = server.rss_kib()
        await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)
        return baseline, loaded

    with bench_deflate.serve(run_dir, database, env) as server:
        time.sleep(1.0)
        baseline, loaded = asyncio.run(run(server))
    return MemoryRow(link, stations, baseline, loaded)


def memory_section(workdir: Path, counts: Sequence[int], messages: int) -> str:
    rows = [measure_memory(workdir, link, n, messages) for n in counts for link in LINKS]
    plain = {r.stations: r.per_station for r in rows if r.link == "plain"}
    label = {"lite": "lite (ocpp1.6.lite1)",
             "deflate": f"OCPP-J, deflate (window {DEFLATE_WBITS}, memLevel {DEFLATE_MEM_LEVEL})",
             "plain": "OCPP-J, no deflate"}
    table = bench_common.markdown_table(
        ["link", "stations", "RSS with 0 MiB", "RSS with N MiB", "per station KiB",
         "over OCPP-J without deflate KiB"],
        [[label[r.link], r.stations, r.baseline_kib / 1024, r.loaded_kib / 1024,
          r.per_station, "-" if r.link == "plain" else
          f"{r.per_station - plain[r.stations]:+.1f}"] for r in rows])
    base = {link: statistics.fmean(r.baseline_kib for r in rows if r.link == link)
            for link in LINKS}
    shared = (f" The shared part shows in the baseline instead: RSS with 0 stations is "
              f"{base['lite'] - base['plain']:+,.0f} KiB on the lite server against the "
              "OCPP-J one without deflate (mean of the rows), once per process.")
    return "\n".join([
        "## Memory per idle lite station", "",
        _fill("Made by `python tools/bench_lite.py --memory --write`. The real `lite-csms serve` "
        "on a temporary SQLite file; N 1.6 stations, raw `websockets` clients, each "
        f"booted (Accepted) and then {messages} more calls (StatusNotifications and "
        "MeterValues), then idle; the server's VmRSS before (after one station came and "
        "went) and with the N connected. Per station = (RSS with N - RSS with 0) / N. A "
        "fresh server per row."), "", table, "",
        _fill("The lite link keeps no compression state per connection: the zstd dictionary, its "
        "compression and decompression contexts are loaded once per process and shared "
        "(lite_csms/lite/frame.py `LiteDictionary`, lite_csms/net/lite_link.py `codec_for`), "
        "so an idle lite station costs what an idle OCPP-J station without deflate costs. "
        "permessage-deflate keeps a deflate and an inflate window per connection, "
        "which zlib sizes at about 31 KiB for our window 11 / memLevel 4 (docs/DATA-BUDGET.md, "
        "`tools/bench_deflate.py`: 27 KiB more per station than deflate off, at 1,000 "
        "stations)." + shared), "",
        _fill(f"Measured with ({MACHINE_NOTE}):"), "", bench_common.machine_summary(PACKAGES),
        ""])


# ---- c) every action -----------------------------------------------------------------------
def deflate_fresh(text: bytes) -> int:
    """One message in a fresh permessage-deflate stream (no earlier context), the trailing
    00 00 ff ff not sent (RFC 7692 section 7.2.1)."""
    stream = zlib.compressobj(6, zlib.DEFLATED, -DEFLATE_WBITS, DEFLATE_MEM_LEVEL)
    return len(stream.compress(text) + stream.flush(zlib.Z_SYNC_FLUSH)) - 4


def _sizes(message: list[Any], protocol: str, dictionary: LiteDictionary) -> list[int]:
    text = orjson.dumps(message)
    return [len(text), deflate_fresh(text), len(encode_frame(message, protocol=protocol)),
            len(encode_frame(message, protocol=protocol, dictionary=dictionary))]


def action_rows(protocol: str) -> list[list[Any]]:
    """One row per action and direction, in the vector file's order."""
    vectors = json.loads((VECTOR_DIR / f"{protocol}.json").read_text(encoding="utf-8"))
    dictionaries = load_dictionaries(protocol)
    dictionary = dictionaries[max(dictionaries)]
    typical: dict[str, list[Any]] = {}
    examples: dict[str, dict[str, list[Any]]] = {}
    for vector in vectors["valid"]:
        name = vector["name"]
        if name.startswith("typical"):
            typical.setdefault(name.split(": ", 1)[1], vector["message"])
        elif name.endswith((" minimal", " full")) and not name.startswith("edge"):
            action, kind = name.rsplit(" ", 1)
            examples.setdefault(action, {})[kind] = vector["message"]
    rows = []
    for action, kinds in sorted(examples.items()):
        source = "typical" if action in typical else "minimal"
        message = typical.get(action, kinds["minimal"])
        try:
            full = _sizes(kinds["full"], protocol, dictionary)
        except LiteEncodeError:
            full = ["-"] * 4
        rows.append([action, source, *_sizes(message, protocol, dictionary),
                     full[0], full[3]])
    return rows


def actions_section() -> str:
    parts = ["## Every action", "", _fill(
        "Made by `python tools/bench_lite.py --actions --write` from the test vectors "
        "(codecs/vectors/). One row per message of every action of the version, both "
        "directions (a CALL is named after its action, its CALLRESULT \"...Response\"). The "
        "example is the vectors' \"typical\" message (realistic values, as in the corpus) "
        "where there is one, else \"minimal\" (required properties only, short values). "
        "Bytes are the payload of one WebSocket message, without WebSocket, TLS or TCP "
        "overhead: JSON is the OCPP-J text; deflate is that text as the first message of a "
        f"fresh permessage-deflate stream (zlib level 6, window {DEFLATE_WBITS}, memLevel "
        f"{DEFLATE_MEM_LEVEL}, as lite_csms/net/deflate.py; no earlier message in its "
        "window); CBOR is the lite frame without zstd; CBOR + dict the lite frame with the "
        "published dictionary, kept only when shorter. The two \"full\" columns are the "
        "vectors' message with every property, strings up to 64 characters: an upper "
        "bound rather than a field figure."), "", _fill(
        "With context takeover, as chargers run it, deflate does far better on later "
        "messages of a connection, because they repeat what the window already holds: "
        "see \"Bytes per message\" above, the corpus means per action with context "
        "takeover. This table is the one-message worst case for "
        "deflate and the every-message case for the lite link, which keeps no context. "
        "A fresh deflate stream barely shrinks short messages and grows the shortest by "
        "2 B; the lite frame is smaller than the JSON for every action of every version, "
        "in both directions (tests/test_bench_lite.py asserts it)."), ""]
    for protocol in PROTOCOLS:
        dictionaries = load_dictionaries(protocol)
        name = f"{protocol}-{max(dictionaries)}.zdict"
        rows = action_rows(protocol)
        totals = [sum(r[i] for r in rows) / len(rows) for i in range(2, 6)]
        parts += [f"### {protocol} ({len(rows)} messages, dictionary {name})", "",
                  bench_common.markdown_table(
                      ["message", "example", "JSON", "deflate, fresh", "CBOR", "CBOR + dict",
                       "full: JSON", "full: CBOR + dict"],
                      [*rows, ["mean", "", *totals, "", ""]], label_columns=2), ""]
    return "\n".join(parts)


# ---- docs/LITE.md ----------------------------------------------------------------------------
def write_section(text: str, doc: Path = DOC) -> None:
    """Replace the section headed by `text`'s first line in docs/LITE.md, or append it."""
    heading = text.split("\n", 1)[0]
    old = doc.read_text(encoding="utf-8")
    start = old.find(heading + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + 1)
        new = old[:start] + text.rstrip("\n") + "\n" + ("" if end < 0 else old[end:])
    doc.write_text(new.rstrip("\n") + "\n", encoding="utf-8")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cost", action="store_true", help="encode/decode µs per message")
    parser.add_argument("--memory", action="store_true", help="server RSS per idle station")
    parser.add_argument("--actions", action="store_true", help="bytes for every action")
    parser.add_argument("--write", action="store_true",
                        help="replace the sections in docs/LITE.md instead of printing")
    parser.add_argument("--repeat", type=int, default=7, help="timings per message")
    parser.add_argument("--stations", default="300,1000", help="comma-separated N")
    parser.add_argument("--messages", type=int, default=10,
                        help="calls after the boot, before going idle")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sections = []
    if args.actions:
        sections.append(actions_section())
    if args.cost:
        sections.append(cost_section(args.repeat))
    if args.memory:
        counts = [int(n) for n in args.stations.split(",")]
        with tempfile.TemporaryDirectory() as tmp:
            sections.append(memory_section(Path(tmp), counts, args.messages))
    if not sections:
        print("nothing to do: give --cost, --memory and/or --actions", file=sys.stderr)
        return 2
    for text in sections:
        if args.write:
            write_section(text)
        else:
            print(text)
    if args.write:
        print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

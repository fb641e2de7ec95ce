#!/usr/bin/env python3
"""Trains the lite link's zstd dictionaries (codecs/dict/) from the recorded corpus.

Each corpus message (tools/lite_record.py) is encoded to its compact CBOR body
(lite_csms.lite.encode_body, no zstd); every fifth message is held out. For each dictionary
size in SIZES and each COVER parameter set in GRID a dictionary is trained on the rest with
fixed parameters on one thread, and scored by the mean lite frame size of the held-out
messages. The smallest size within SIZE_SLACK of the best score wins: a dictionary lives in
a charger's RAM for as long as the link is up.

Published dictionaries never change. A dictionary is codecs/dict/<protocol>-<id>.zdict
(the id is also the zstd dictionary id in its header, per protocol, counting from 1), with
<protocol>-<id>.json beside it: its digest, the training parameters, the corpus digest and
the zstandard / libzstd versions. A copy goes to lite_csms/lite/data/, where the server
loads it. The trainer refuses to overwrite a published id; --new-id publishes under the
next free id instead.

    python tools/lite_train.py                      # train and publish id 1 of every protocol
    python tools/lite_train.py --check              # retrain; must equal the published bytes
    python tools/lite_train.py --new-id --protocol ocpp2.1
    python tools/lite_train.py --report             # bytes per message into docs/LITE.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import textwrap
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common
from lite_record import PROTOCOLS, corpus_path, read_corpus

from lite_csms.lite import LiteDictionary, LiteEncodeError, encode_body, encode_frame

ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = ROOT / "codecs" / "corpus"
DICT_DIR = ROOT / "codecs" / "dict"
DATA_DIR = ROOT / "lite_csms" / "lite" / "data"
DOC = ROOT / "docs" / "LITE.md"

SIZES = (1024, 2048, 4096)
# COVER segment size k and dmer size d tried at each size; f and accel stay zstd's defaults.
GRID = ((64, 6), (128, 8), (256, 8))
SIZE_SLACK = 0.03
HOLD_OUT_EVERY = 5
# The level the dictionary's entropy tables are tuned for: the compression level
# lite_csms.lite uses (frame.DEFAULT_LEVEL).
LEVEL = 19
# permessage-deflate as lite_csms/net/deflate.py runs it.
DEFLATE_WBITS, DEFLATE_MEM_LEVEL = 11, 4

Encoder = Callable[[list[Any], str], bytes]


@dataclass(frozen=True, slots=True)
class Sample:
    action: str  # the CALL's action; "<action> result" for its CALLRESULT
    direction: str
    message: list[Any]
    body: bytes


def label(message: list[Any], calls: dict[str, str]) -> str:
    """The action a message belongs to; a CALLRESULT/CALLERROR is named after its CALL."""
    if message[0] in (2, 6):
        calls[message[1]] = message[2]
        return str(message[2])
    action = calls.pop(message[1], "?")
    return f"{action} {'result' if message[0] == 3 else 'error'}"


def encode_corpus(lines: Iterable[dict[str, Any]], protocol: str,
                  encoder: Encoder = encode_body) -> tuple[list[Sample], int]:
    """(samples, messages the encoder refused) for the corpus lines of `protocol`.

    A reply pairs with the latest CALL of that id in the other direction (ids restart with
    every connection, so the pairing is kept per direction of the CALL)."""
    samples: list[Sample] = []
    refused = 0
    calls = {"to_csms": {}, "to_station": {}}  # type: dict[str, dict[str, str]]
    other = {"to_csms": "to_station", "to_station": "to_csms"}
    for line in lines:
        if line["protocol"] != protocol:
            continue
        message, direction = line["message"], line["direction"]
        name = label(message, calls[direction] if message[0] in (2, 6)
                     else calls[other[direction]])
        try:
            body = encoder(message, protocol)
        except LiteEncodeError:
            refused += 1
            continue
        samples.append(Sample(name, direction, message, body))
    return samples, refused


def split(samples: Sequence[Sample]) -> tuple[list[Sample], list[Sample]]:
    """(training, held out): every HOLD_OUT_EVERY-th message, in corpus order, is held out."""
    training = [s for i, s in enumerate(samples) if i % HOLD_OUT_EVERY != HOLD_OUT_EVERY - 1]
    held = [s for i, s in enumerate(samples) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
    return training, held


def train(samples: Sequence[bytes], size: int, k: int, d: int, dict_id: int) -> bytes:
    """One dictionary with fixed COVER parameters: no search, one thread, every sample used
    for training (split_point 1.0), so the same inputs and libzstd give the same bytes."""
    trained = zstandard.train_dictionary(size, list(samples), k=k, d=d, split_point=1.0,
                                         dict_id=dict_id, level=LEVEL, steps=1, threads=1)
    return trained.as_bytes()


def frame_sizes(held: Sequence[Sample], protocol: str, dictionary: LiteDictionary | None
                ) -> list[int]:
    return [len(encode_frame(s.message, protocol=protocol, dictionary=dictionary))
            for s in held]


@dataclass
class Choice:
    data: bytes
    size: int
    k: int
    d: int
    trials: list[dict[str, Any]]


def choose(protocol: str, training: Sequence[Sample], held: Sequence[Sample], dict_id: int
           ) -> Choice:
    """Train every size and parameter set; keep the smallest size within SIZE_SLACK of the
    best held-out mean (ties: the earlier grid entry)."""
    bodies = [s.body for s in training]
    trials: list[dict[str, Any]] = []
    best_per_size: dict[int, tuple[float, bytes, int, int]] = {}
    for size in SIZES:
        for k, d in GRID:
            data = train(bodies, size, k, d, dict_id)
            mean = statistics.fmean(frame_sizes(held, protocol, LiteDictionary(protocol, data)))
            trials.append({"size": size, "k": k, "d": d, "held_out_mean_bytes": round(mean, 2)})
            if size not in best_per_size or mean < best_per_size[size][0]:
                best_per_size[size] = (mean, data, k, d)
    best = min(mean for mean, *_ in best_per_size.values())
    for size in SIZES:
        mean, data, k, d = best_per_size[size]
        if mean <= best * (1 + SIZE_SLACK):
            return Choice(data, size, k, d, trials)
    raise AssertionError("unreachable: the best size is within its own slack")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def published_ids(protocol: str, folder: Path = DICT_DIR) -> list[int]:
    ids = []
    for path in folder.glob(f"{protocol}-*.zdict"):
        tail = path.stem[len(protocol) + 1:]
        if tail.isdigit():
            ids.append(int(tail))
    return sorted(ids)


class AlreadyPublished(Exception):
    """A dictionary file of that id exists: published dictionaries never change."""


def dict_paths(protocol: str, dict_id: int, folder: Path = DICT_DIR) -> tuple[Path, Path]:
    stem = f"{protocol}-{dict_id}"
    return folder / f"{stem}.zdict", folder / f"{stem}.json"


def publish(protocol: str, dict_id: int, data: bytes, metadata: dict[str, Any], *,
            folder: Path = DICT_DIR, data_dir: Path | None = DATA_DIR) -> Path:
    """Write the dictionary, its metadata and the package copy. Raises AlreadyPublished if
    any of them exists: nothing is written then."""
    zdict, meta = dict_paths(protocol, dict_id, folder)
    targets = [zdict, meta] + ([data_dir / zdict.name] if data_dir is not None else [])
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise AlreadyPublished(f"{', '.join(existing)} already published; "
                               "use --new-id to publish under the next free id")
    folder.mkdir(parents=True, exist_ok=True)
    zdict.write_bytes(data)
    meta.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    if data_dir is not None:
        (data_dir / zdict.name).write_bytes(data)
    return zdict


def metadata(protocol: str, dict_id: int, choice: Choice, corpus: Path, samples: int,
             training: int, refused: int) -> dict[str, Any]:
    table = ROOT / "codecs" / "tables" / f"{protocol}.json"
    return {
        "protocol": protocol, "dict_id": dict_id, "file": f"{protocol}-{dict_id}.zdict",
        "bytes": len(choice.data), "sha256": sha256(choice.data),
        "trainer": "tools/lite_train.py",
        "params": {"algorithm": "fastCover (ZDICT_optimizeTrainFromBuffer_fastCover)",
                   "dict_size": choice.size, "k": choice.k, "d": choice.d, "f": 20,
                   "accel": 1, "split_point": 1.0, "steps": 1, "threads": 1, "level": LEVEL},
        "zstandard": zstandard.__version__,
        "libzstd": ".".join(map(str, zstandard.ZSTD_VERSION)),
        "corpus": {"file": str(corpus.relative_to(ROOT)) if corpus.is_relative_to(ROOT)
                   else str(corpus), "sha256": sha256(corpus.read_bytes()),
                   "messages": samples, "training": training, "held_out": samples - training,
                   "refused_by_encoder": refused, "hold_out": f"every {HOLD_OUT_EVERY}th"},
        "table_sha256": sha256(table.read_bytes()) if table.exists() else None,
        "rule": f"smallest of {list(SIZES)} B within {SIZE_SLACK:.0%} of the best held-out "
                "mean frame size",
        "trials": choice.trials,
    }


# ---- the byte table -----------------------------------------------------------------------
def deflate_sizes(samples: Sequence[Sample]) -> list[int]:
    """permessage-deflate with context takeover, one stream per direction and connection
    (RFC 7692: the trailing 00 00 ff ff is not sent). A connection starts with the
    station's first CALL: message ids count from 1 again on every connection."""
    streams: dict[str, Any] = {}
    sizes = []
    for s in samples:
        if s.direction == "to_csms" and s.message[0] == 2 and s.message[1] == "1":
            streams.clear()
        if s.direction not in streams:
            streams[s.direction] = zlib.compressobj(6, zlib.DEFLATED, -DEFLATE_WBITS,
                                                    DEFLATE_MEM_LEVEL)
        stream = streams[s.direction]
        out = stream.compress(orjson.dumps(s.message)) + stream.flush(zlib.Z_SYNC_FLUSH)
        sizes.append(len(out) - 4)
    return sizes


def byte_rows(samples: Sequence[Sample], protocol: str, dictionary: LiteDictionary
              ) -> list[list[Any]]:
    """Mean bytes per message by action: JSON, deflate, compact CBOR frame, with dictionary."""
    deflated = deflate_sizes(samples)
    by_action: dict[str, list[tuple[int, int, int, int]]] = {}
    for s, deflate in zip(samples, deflated, strict=True):
        by_action.setdefault(s.action, []).append((
            len(orjson.dumps(s.message)), deflate,
            len(encode_frame(s.message, protocol=protocol)),
            len(encode_frame(s.message, protocol=protocol, dictionary=dictionary))))
    rows = []
    for action in sorted(by_action, key=lambda a: (-len(by_action[a]), a)):
        sizes = by_action[action]
        rows.append([action, len(sizes), *_means(sizes)])
    everything = [row for sizes in by_action.values() for row in sizes]
    rows.append(["all messages", len(samples), *_means(everything)])
    return rows


def _means(rows: Sequence[tuple[int, ...]]) -> list[float]:
    return [statistics.fmean(column) for column in zip(*rows, strict=True)]


def report(protocols: Sequence[str], corpus_dir: Path, dict_dir: Path = DICT_DIR) -> str:
    parts = ["## Bytes per message", "", textwrap.fill(
        "Made by `python tools/lite_train.py --report` from the committed corpus "
        "(codecs/corpus/). Each figure is the mean payload bytes per message, without "
        "WebSocket, TLS or TCP overhead. JSON is the OCPP-J text. deflate is "
        "permessage-deflate with context takeover (zlib level 6, window 2^"
        f"{DEFLATE_WBITS}, memLevel {DEFLATE_MEM_LEVEL}, as in lite_csms/net/deflate.py), "
        "with one stream per direction that starts afresh on each connection. CBOR is the "
        "lite frame without compression: the format byte and the compact CBOR body. "
        "CBOR + dict is the lite frame with the published dictionary (zstd level 19, used "
        "only when it is shorter). A result row is the CALLRESULT to that action. Every "
        "message is measured, training and held-out alike; the held-out means are in "
        "codecs/dict/*.json.", width=92), ""]
    for protocol in protocols:
        path = corpus_path(corpus_dir, protocol, compressed=True)
        samples, _ = encode_corpus(read_corpus(path), protocol)
        ids = published_ids(protocol, dict_dir)
        if not ids:
            continue
        zdict, _ = dict_paths(protocol, ids[-1], dict_dir)
        dictionary = LiteDictionary(protocol, zdict.read_bytes())
        parts += [f"### {protocol} (dictionary {zdict.name}, {len(dictionary.data):,} B)", "",
                  bench_common.markdown_table(
                      ["message", "count", "JSON", "deflate", "CBOR", "CBOR + dict"],
                      byte_rows(samples, protocol, dictionary)), ""]
    parts += ["Measured with:", "", bench_common.machine_summary(["zstandard"]), ""]
    return "\n".join(parts)


def write_report(text: str, doc: Path = DOC) -> None:
    """Replace the "## Bytes per message" section of docs/LITE.md (or start the file)."""
    head = "# The lite link\n\n"
    old = doc.read_text(encoding="utf-8") if doc.exists() else head
    start = old.find("## Bytes per message")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + 1)
        new = old[:start] + text + ("" if end < 0 else old[end:])
    doc.write_text(new.rstrip("\n") + "\n", encoding="utf-8")


# ---- command line -------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", action="append", choices=PROTOCOLS,
                        help="repeatable; default: all three")
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR,
                        help="folder of <protocol>.jsonl.zst")
    parser.add_argument("--dict-dir", type=Path, default=DICT_DIR,
                        help="where published dictionaries live (default codecs/dict)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR,
                        help="the package copy (default lite_csms/lite/data)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--new-id", action="store_true",
                      help="publish under the next free id instead of id 1")
    mode.add_argument("--check", action="store_true",
                      help="retrain from the corpus the metadata names; compare bytes")
    mode.add_argument("--report", action="store_true",
                      help="bytes per message by action into docs/LITE.md")
    return parser.parse_args(argv)


def train_protocol(protocol: str, corpus: Path, dict_id: int) -> tuple[Choice, dict[str, Any]]:
    samples, refused = encode_corpus(read_corpus(corpus), protocol)
    training, held = split(samples)
    choice = choose(protocol, training, held, dict_id)
    return choice, metadata(protocol, dict_id, choice, corpus, len(samples), len(training),
                            refused)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    protocols = args.protocol or list(PROTOCOLS)
    if args.report:
        write_report(report(protocols, args.corpus, args.dict_dir))
        print(f"wrote {DOC}", file=sys.stderr)
        return 0
    status = 0
    for protocol in protocols:
        corpus = corpus_path(args.corpus, protocol, compressed=True)
        ids = published_ids(protocol, args.dict_dir)
        if args.check:
            for dict_id in ids:
                zdict, meta_path = dict_paths(protocol, dict_id, args.dict_dir)
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                choice, _ = train_protocol(protocol, ROOT / meta["corpus"]["file"], dict_id)
                same = choice.data == zdict.read_bytes()
                print(f"{zdict.name}: {'reproduced' if same else 'DIFFERS'}", file=sys.stderr)
                status |= not same
            continue
        dict_id = (ids[-1] + 1 if ids else 1) if args.new_id else 1
        try:
            # Refuse before training: a published id is never trained again.
            for path in dict_paths(protocol, dict_id, args.dict_dir):
                if path.exists():
                    raise AlreadyPublished(f"{path} already published; use --new-id")
            choice, meta = train_protocol(protocol, corpus, dict_id)
            path = publish(protocol, dict_id, choice.data, meta, folder=args.dict_dir,
                           data_dir=args.data_dir)
        except AlreadyPublished as exc:
            print(f"refused: {exc}", file=sys.stderr)
            status = 1
            continue
        held = [t["held_out_mean_bytes"] for t in choice.trials
                if (t["size"], t["k"], t["d"]) == (choice.size, choice.k, choice.d)]
        print(f"{path.name}: {choice.size} B (k={choice.k}, d={choice.d}), held-out mean "
              f"{held[0]} B per message", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())

"""The lite link's published zstd dictionaries (codecs/dict/, tools/lite_train.py)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
import trio
import zstandard

from lite_csms.lite import LiteDictionary, encode_frame, load_dictionaries
from lite_csms.lite.frame import FORMAT_ZSTD, zstd_header
from lite_csms.ocppj.versions import Version
from tests.conftest import REPO, run_cli, start_in_process

TOOLS = REPO / "tools"
DICT_DIR = REPO / "codecs" / "dict"
DATA_DIR = REPO / "lite_csms" / "lite" / "data"
PROTOCOLS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")


def load_tool(name: str) -> ModuleType:
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sim = load_tool("station_sim")
trainer = load_tool("lite_train")
recorder = load_tool("lite_record")


def published() -> list[Path]:
    return sorted(DICT_DIR.glob("*.zdict"))


def test_every_protocol_has_a_published_dictionary() -> None:
    names = {p.name.rsplit("-", 1)[0] for p in published()}
    assert names == set(PROTOCOLS)


@pytest.mark.parametrize("path", published(), ids=lambda p: p.name)
def test_a_published_dictionary_is_what_its_metadata_says(path: Path) -> None:
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    data = path.read_bytes()
    protocol, dict_id = path.stem.rsplit("-", 1)
    # The file never changed since it was published.
    assert hashlib.sha256(data).hexdigest() == meta["sha256"]
    assert len(data) == meta["bytes"] <= meta["params"]["dict_size"]
    assert (meta["protocol"], meta["dict_id"], meta["file"]) == (protocol, int(dict_id),
                                                                 path.name)
    # The id in the zstd header is the one in the name: frames name it (SPEC section 4).
    assert zstandard.ZstdCompressionDict(data).dict_id() == int(dict_id)
    # The server loads the package copy: it must be the same bytes.
    assert (DATA_DIR / path.name).read_bytes() == data
    loaded = load_dictionaries(protocol)
    assert loaded[int(dict_id)].data == data
    corpus = REPO / meta["corpus"]["file"]
    assert hashlib.sha256(corpus.read_bytes()).hexdigest() == meta["corpus"]["sha256"]


# ---- fresh messages from the simulator against the real server --------------------------------
class RecordingStation:
    """Mixed into a simulator station: its transport keeps every message both ways."""

    lines: list[str]

    @asynccontextmanager
    async def _recording_dial(self, url: str, subprotocols: Any, headers: Any) -> Any:
        async with sim.open_websocket(url, subprotocols, headers) as transport:
            yield recorder.RecordingTransport(transport, self, {"protocol": "?"})

    def dial(self, url: str, subprotocols: Any, headers: Any) -> Any:
        return self._recording_dial(url, subprotocols, headers)

    def write(self, text: str) -> None:
        self.lines.append(text)


async def fresh_messages(nursery: trio.Nursery, tmp_path: Path, version: Version
                         ) -> list[list[Any]]:
    csms = await start_in_process(nursery, tmp_path, free_charging=True)
    env = {**os.environ, "LITE_CSMS_DATABASE": str(csms.database)}
    added = await trio.to_thread.run_sync(
        lambda: run_cli("station", "add", "CS-DICT", "--no-password", env=env))
    assert added.returncode == 0, added.stderr
    base = sim.StationV16 if version is Version.OCPP16 else sim.StationV2
    cls = type("Recording", (RecordingStation, base), {})
    station = cls(sim.StationOptions(
        url=f"ws://127.0.0.1:{csms.port}/ocpp", station_id="CS-DICT", protocol=version,
        scenario="charge", meter_values=3, energy_wh=4000, time_scale=1000))
    station.lines = []
    with trio.fail_after(20):
        report = await station.run()
    assert report.ok, report.error
    return [orjson.loads(line)["message"] for line in station.lines if line.strip()]


@pytest.mark.parametrize("version", [Version.OCPP16, Version.OCPP201, Version.OCPP21])
async def test_the_dictionary_shrinks_fresh_simulator_messages(
        nursery: trio.Nursery, tmp_path: Path, version: Version) -> None:
    protocol = version.value
    messages = await fresh_messages(nursery, tmp_path, version)
    actions = {m[2] for m in messages if m[0] == 2}
    assert {"BootNotification", "StatusNotification"} <= actions
    dictionaries = load_dictionaries(protocol)
    dictionary = dictionaries[max(dictionaries)]
    plain = zstandard.ZstdCompressor(level=19)
    with_dict = [encode_frame(m, protocol=protocol, dictionary=dictionary) for m in messages]
    cbor_only = [encode_frame(m, protocol=protocol) for m in messages]
    zstd_only = [len(plain.compress(f[1:])) + 1 for f in cbor_only]
    assert sum(map(len, with_dict)) < sum(map(len, cbor_only))
    assert sum(map(len, with_dict)) < sum(zstd_only)
    # The big ones (boot, meter data) go compressed, naming this dictionary.
    biggest = max(range(len(messages)), key=lambda i: len(cbor_only[i]))
    assert with_dict[biggest][0] == FORMAT_ZSTD
    assert zstd_header(with_dict[biggest][1:])[0] == dictionary.dict_id
    assert len(with_dict[biggest]) < len(cbor_only[biggest]) * 0.8


# ---- the trainer ---------------------------------------------------------------------------
def small_corpus(folder: Path, protocol: str, lines: int) -> Path:
    """The first `lines` of the committed corpus, as a corpus of its own."""
    full = recorder.read_corpus(recorder.corpus_path(REPO / "codecs" / "corpus", protocol,
                                                     True))
    text = b"".join(orjson.dumps(line) + b"\n" for line in full[:lines])
    folder.mkdir(parents=True, exist_ok=True)
    path = recorder.corpus_path(folder, protocol, True)
    path.write_bytes(zstandard.ZstdCompressor().compress(text))
    return path


def test_the_trainer_never_overwrites_a_published_dictionary(tmp_path: Path) -> None:
    small_corpus(tmp_path / "corpus", "ocpp1.6", 600)
    dicts, data = tmp_path / "dict", tmp_path / "data"
    data.mkdir()
    argv = ["--protocol", "ocpp1.6", "--corpus", str(tmp_path / "corpus"),
            "--dict-dir", str(dicts), "--data-dir", str(data)]
    assert trainer.main(argv) == 0
    first = (dicts / "ocpp1.6-1.zdict").read_bytes()
    meta = json.loads((dicts / "ocpp1.6-1.json").read_text())
    assert zstandard.ZstdCompressionDict(first).dict_id() == 1 == meta["dict_id"]
    assert (data / "ocpp1.6-1.zdict").read_bytes() == first
    # Same command again: refused, nothing touched.
    (dicts / "ocpp1.6-1.zdict").write_bytes(first)  # same bytes, fresh mtime to compare
    before = (dicts / "ocpp1.6-1.zdict").stat().st_mtime_ns
    assert trainer.main(argv) == 1
    assert (dicts / "ocpp1.6-1.zdict").stat().st_mtime_ns == before
    with pytest.raises(trainer.AlreadyPublished):
        trainer.publish("ocpp1.6", 1, b"other", {}, folder=dicts, data_dir=data)
    assert (dicts / "ocpp1.6-1.zdict").read_bytes() == first
    # --new-id publishes beside it, with its own id in the header.
    assert trainer.main([*argv, "--new-id"]) == 0
    second = (dicts / "ocpp1.6-2.zdict").read_bytes()
    assert zstandard.ZstdCompressionDict(second).dict_id() == 2
    assert LiteDictionary("ocpp1.6", second).dict_id == 2
    # Training is reproducible: --check retrains both and finds the same bytes.
    assert trainer.main([*argv[:-4], "--dict-dir", str(dicts), "--check"]) == 0
    (dicts / "ocpp1.6-2.zdict").write_bytes(second[:-1] + bytes([second[-1] ^ 1]))
    assert trainer.main([*argv[:-4], "--dict-dir", str(dicts), "--check"]) == 1

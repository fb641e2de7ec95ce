"""tools/bench_lite.py: the every-action byte table covers every action of every version, both
directions, and its figures are what the codecs produce; sections replace only themselves."""

from __future__ import annotations

import sys
import zlib

import orjson
import pytest

from lite_csms.lite import load_dictionaries
from lite_csms.ocppj import schemas
from lite_csms.ocppj.versions import Version
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import bench_lite


def _messages(version: Version) -> set[str]:
    names = set()
    for action in schemas.known_actions(version):
        names.add(action)
        try:
            schemas.schema(version, action, True)
            names.add(f"{action}Response")
        except schemas.UnknownAction:
            pass  # 2.1's SEND-only messages have no response
    return names


@pytest.mark.parametrize("version", list(Version))
def test_every_action_both_directions_has_a_row(version: Version) -> None:
    rows = bench_lite.action_rows(version.value)
    assert {row[0] for row in rows} == _messages(version)
    assert len(rows) == len({row[0] for row in rows})
    for _name, source, json_bytes, deflated, cbor_bytes, packed, *_ in rows:
        assert source in ("typical", "minimal")
        assert 0 < packed <= cbor_bytes < json_bytes
        assert deflated > 0


def test_figures_are_the_codecs_own() -> None:
    text = orjson.dumps([2, "19", "Heartbeat", {}])
    stream = zlib.decompressobj(-bench_lite.DEFLATE_WBITS)
    deflated = zlib.compressobj(6, zlib.DEFLATED, -11, 4)
    wire = deflated.compress(text) + deflated.flush(zlib.Z_SYNC_FLUSH)
    assert bench_lite.deflate_fresh(text) == len(wire) - 4
    assert stream.decompress(wire[:-4] + b"\x00\x00\xff\xff") == text
    dictionary = max(load_dictionaries("ocpp1.6").items())[1]
    message = [2, "7", "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                              "status": "Available"}]
    sizes = bench_lite._sizes(message, "ocpp1.6", dictionary)
    assert sizes[0] == len(orjson.dumps(message))
    assert sizes[2] < sizes[0]


def test_write_section_replaces_only_its_own(tmp_path) -> None:
    doc = tmp_path / "LITE.md"
    doc.write_text("# The lite link\n\n## A\n\nold a\n\n## B\n\nkeep b\n", encoding="utf-8")
    bench_lite.write_section("## A\n\nnew a\n", doc)
    bench_lite.write_section("## C\n\nnew c\n", doc)
    assert doc.read_text(encoding="utf-8") == (
        "# The lite link\n\n## A\n\nnew a\n\n## B\n\nkeep b\n\n## C\n\nnew c\n")


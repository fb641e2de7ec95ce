"""The C implementation of the lite link (codecs/c/), built here and run against every vector.

codecs/c/ is written from codecs/SPEC.md alone; these tests are the evidence that the SPEC
suffices. gcc and libzstd's zstd.h are required: without them the tests FAIL (CI installs
libzstd-dev in .ci/run), never skip. The C program encodes JSON messages to frames and
decodes frames to JSON; the JSON it writes is parsed and compared here, strictly (an int
is not a float), against each vector's normalized message.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lite_csms.lite import LiteFrameError, decode_frame, load_dictionaries
from tests.conftest import REPO

C_DIR = REPO / "codecs" / "c"
DICT_DIR = REPO / "codecs" / "dict"
PROTOCOLS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")
SOURCES = ("lite.c", "lite_json.c", "lite_tables.c", "lite_zstd.c", "lite_vec.c")
CFLAGS = ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2"]


def _build(tmp_path_factory: pytest.TempPathFactory, *defines: str) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.fail("gcc is required to build codecs/c (apt-get install gcc)")
    if not Path("/usr/include/zstd.h").exists():
        pytest.fail("zstd.h is required to build codecs/c (apt-get install libzstd-dev)")
    out = tmp_path_factory.mktemp("litec") / "lite_vec"
    built = subprocess.run(
        [gcc, *CFLAGS, *defines, "-o", str(out), *(str(C_DIR / s) for s in SOURCES),
         "-lzstd", "-lm"],
        capture_output=True, text=True, timeout=60,
    )
    assert built.returncode == 0, f"codecs/c does not build warning-free:\n{built.stderr}"
    return out


@pytest.fixture(scope="module")
def lite_vec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory)


def _vectors(protocol: str) -> dict:
    return json.loads((REPO / "codecs" / "vectors" / f"{protocol}.json").read_text())


def _run(binary: Path, args: list[str], lines: list[str]) -> list[str]:
    done = subprocess.run([str(binary), *args], input="".join(x + "\n" for x in lines),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert len(out) == len(lines)
    return out


def _strict(a: object, b: object) -> bool:
    """Equal with the JSON types kept apart: 1, 1.0 and True are three different values."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strict(a[k], b[k]) for k in a)  # type: ignore[union-attr]
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_strict, a, b))  # type: ignore[arg-type]
    return a == b


def test_tables_are_generated_from_codecs_tables(tmp_path: Path) -> None:
    out = tmp_path / "lite_tables.c"
    subprocess.run([sys.executable, str(C_DIR / "gen_tables.py"), str(out)], check=True)
    assert out.read_text() == (C_DIR / "lite_tables.c").read_text(), "run codecs/c/gen_tables.py"


def test_lite_vec_passes_every_vector_file(lite_vec: Path) -> None:
    _all_vectors_pass(lite_vec)


def test_low_ram_build_passes_every_vector_file(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """-DLITE_ZSTD_NO_DDICT keeps no digested dictionary; it must decode the same."""
    _all_vectors_pass(_build(tmp_path_factory, "-DLITE_ZSTD_NO_DDICT"))


def _all_vectors_pass(lite_vec: Path) -> None:
    files = [str(REPO / "codecs" / "vectors" / f"{p}.json") for p in PROTOCOLS]
    done = subprocess.run([str(lite_vec), *files], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    for protocol in PROTOCOLS:
        data = _vectors(protocol)
        n_enc = sum(1 for v in data["valid"] if not v.get("decode_only"))
        n_dec, n_inv = len(data["valid"]), len(data["invalid"])
        assert (f"{protocol}: encode {n_enc}/{n_enc}, decode {n_dec}/{n_dec}, "
                f"invalid {n_inv}/{n_inv}") in done.stdout.splitlines()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_c_encodes_every_valid_message_to_its_bytes(lite_vec: Path, protocol: str) -> None:
    valid = [v for v in _vectors(protocol)["valid"] if not v.get("decode_only")]
    got = _run(lite_vec, ["--encode", protocol], [json.dumps(v["message"]) for v in valid])
    wrong = [v["name"] for v, h in zip(valid, got, strict=True) if h != v["hex"]]
    assert not wrong


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_c_decodes_every_valid_frame_to_its_message(lite_vec: Path, protocol: str) -> None:
    valid = _vectors(protocol)["valid"]
    got = _run(lite_vec, ["--decode", protocol, str(DICT_DIR)], [v["hex"] for v in valid])
    for v, line in zip(valid, got, strict=True):
        assert line.startswith("OK "), (v["name"], line)
        assert _strict(json.loads(line[3:]), v.get("normalized", v["message"])), v["name"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_c_gives_every_invalid_frame_its_answer(lite_vec: Path, protocol: str) -> None:
    invalid = _vectors(protocol)["invalid"]
    got = _run(lite_vec, ["--decode", protocol, str(DICT_DIR)], [v["hex"] for v in invalid])
    for v, line in zip(invalid, got, strict=True):
        answer = v["answer"]
        words = line.split(" ")
        if "close" in answer:
            assert words[:2] == ["CLOSE", str(answer["close"])], (v["name"], line)
        elif "callerror" in answer:
            want = answer["callerror"]
            cols = line.split("\t")
            assert cols[0] == "CALLERROR" and cols[1] == want["code"], (v["name"], line)
            assert json.loads(cols[2]) == want["id"], (v["name"], line)
        else:
            assert words[0] == "DROP", (v["name"], line)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_c_compressed_frames_decode_in_c_and_in_python(lite_vec: Path, protocol: str) -> None:
    """The optional sender side: C compresses with dictionary 1 (a CDict); both decoders agree."""
    valid = [v for v in _vectors(protocol)["valid"] if not v.get("decode_only")]
    frames = _run(lite_vec, ["--compress", protocol, str(DICT_DIR)], [v["hex"] for v in valid])
    assert sum(map(len, frames)) < 0.8 * sum(len(v["hex"]) for v in valid)
    for v, f in zip(valid, frames, strict=True):
        assert len(f) <= len(v["hex"]) and (f.startswith("01") or f == v["hex"])
    decoded = _run(lite_vec, ["--decode", protocol, str(DICT_DIR)], frames)
    dictionaries = load_dictionaries(protocol, DICT_DIR)
    for v, f, line in zip(valid, frames, decoded, strict=True):
        want = v.get("normalized", v["message"])
        assert _strict(json.loads(line[3:]), want), v["name"]
        assert decode_frame(bytes.fromhex(f), protocol=protocol, dictionaries=dictionaries) == want


def test_c_zstd_header_and_trailer_rules(lite_vec: Path) -> None:
    """SPEC 4.1 and 4.2 beyond the vectors: nothing after the frame, exact content size."""
    vectors = _vectors("ocpp2.0.1")["valid"]
    msg = next(v["message"] for v in vectors if v["name"] == "typical 9: TransactionEvent")
    plain = _run(lite_vec, ["--encode", "ocpp2.0.1"], [json.dumps(msg)])[0]
    frame = _run(lite_vec, ["--compress", "ocpp2.0.1", str(DICT_DIR)], [plain])[0]
    assert frame.startswith("012101")  # FHD 0x21: single segment, 1-byte dictionary id 1
    body_len = len(plain) // 2 - 1
    assert int(frame[6:8], 16) == body_len < 256
    lies = [
        frame + "00",  # a byte after the frame
        frame[:-2],  # the frame ends early
        frame[:6] + f"{body_len + 1:02x}" + frame[8:],  # declares one byte more than it holds
        frame[:6] + "00" + frame[8:],  # declares 0 bytes
        "012102" + frame[6:],  # dictionary 2 is not published
    ]
    got = _run(lite_vec, ["--decode", "ocpp2.0.1", str(DICT_DIR)], [frame, *lies])
    assert got[0].startswith("OK ") and _strict(json.loads(got[0][3:]), msg)
    assert [" ".join(g.split(" ")[:2]) for g in got[1:]] == [
        "CLOSE 1007", "CLOSE 1007", "CLOSE 1007", "CLOSE 1007", "CLOSE 4010"]


# The Python reference's error kinds, spelled as the C program spells its CALLERROR codes.
_KIND_CODE = {
    "format": ("FormationViolation", "FormatViolation"),
    "not_implemented": ("NotImplemented", "NotImplemented"),
    "rpc_framework": ("FormationViolation", "RpcFrameworkError"),
    "message_type_not_supported": ("ProtocolError", "MessageTypeNotSupported"),
}


def _python_answer(frame: bytes, protocol: str, dictionaries: object) -> tuple:
    try:
        return ("OK", decode_frame(frame, protocol=protocol, dictionaries=dictionaries))
    except LiteFrameError as e:
        if e.close_code:
            return ("CLOSE", e.close_code)
        if e.answerable:
            code = _KIND_CODE[e.kind.value][0 if protocol == "ocpp1.6" else 1]
            return ("CALLERROR", code, e.message_id)
        return ("DROP",)


def _c_answer(line: str) -> tuple:
    if line.startswith("OK "):
        return ("OK", json.loads(line[3:]))
    if line.startswith("CALLERROR\t"):
        cols = line.split("\t")
        return ("CALLERROR", cols[1], json.loads(cols[2]))
    if line.startswith("CLOSE "):
        return ("CLOSE", int(line.split(" ")[1]))
    return (line.split(" ")[0],)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_c_and_python_give_the_same_answer_to_damaged_frames(
    lite_vec: Path, protocol: str
) -> None:
    """Differential: 1,500 plain frames damaged at random (fixed seed), and faults combined in
    one frame (SPEC 8's order of checks), answered alike by C and by the reference.

    zstd frames are left out: without a checksum, whether damaged compressed data is caught
    depends on the libzstd version (1.5.4 lets some through that 1.5.7 refuses)."""
    rng = random.Random(protocol)
    base = [bytes.fromhex(v["hex"]) for v in _vectors(protocol)["valid"]
            if not v.get("decode_only")]
    frames = [bytes.fromhex(h) for h in (
        "00830907a000",  # type 9 and a trailing byte: closed, not answered
        "008302070300",  # 3 elements and a trailing byte: the profile error wins
        "0084020719270fa119270f01",  # unknown action and unknown key: the action wins
        "0084200703a0",  # message type -1
        "0084020760a0",  # empty action text
        "0084020703a11834a106c482201b00000004238dfcad",  # tag 4 inside customData (raw)
    )]
    for _ in range(1500):
        b = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            if op < 0.6 and len(b) > 1:
                b[rng.randrange(1, len(b))] = rng.randrange(256)
            elif op < 0.75 and len(b) > 2:
                del b[rng.randrange(2, len(b))]
            else:
                b.insert(rng.randrange(1, len(b) + 1), rng.randrange(256))
        frames.append(bytes(b))
    got = _run(lite_vec, ["--decode", protocol, str(DICT_DIR)], [f.hex() for f in frames])
    dictionaries = load_dictionaries(protocol, DICT_DIR)
    differ = [(f.hex(), _python_answer(f, protocol, dictionaries), _c_answer(line))
              for f, line in zip(frames, got, strict=True)
              if _python_answer(f, protocol, dictionaries) != _c_answer(line)]
    assert not differ
    kinds = {_c_answer(line)[0] for line in got}
    assert {"OK", "CALLERROR", "DROP", "CLOSE"} <= kinds  # the damage reaches every answer


def test_c_keeps_a_nul_in_a_message_id_and_never_encodes_an_oversize_frame(
    lite_vec: Path,
) -> None:
    """An id may hold U+0000 (the review's fuzzing found C cutting it there); a plain frame
    carries at most 65,535 body bytes, so a 65,536-byte body is refused, as in Python."""
    frames = ["0084026100" + "03a0", "0084036161a1" + "63787878" + "00"]
    got = _run(lite_vec, ["--decode", "ocpp1.6", str(DICT_DIR)], frames)
    for frame, line in zip(frames, got, strict=True):
        assert _c_answer(line) == _python_answer(bytes.fromhex(frame), "ocpp1.6", {}), line
    # [3, "1", {"xxx": "<text>"}]: "xxx" is no key of the table, so it stays text.
    # The frame is 00 83 03 01 a1 63 "xxx" 79 <2-byte length> <text>: 12 bytes and the text.
    for frame_size in (65536, 65537):
        message = json.dumps([3, "1", {"xxx": "a" * (frame_size - 12)}])
        [line] = _run(lite_vec, ["--encode", "ocpp1.6"], [message])
        if frame_size == 65536:
            assert len(bytes.fromhex(line)) == 65536
        else:
            assert not all(c in "0123456789abcdef" for c in line), line[:80]

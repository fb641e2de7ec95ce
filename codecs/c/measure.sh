#!/usr/bin/env bash
# Measures the C lite implementation: code size (-Os, x86_64), stack per message (stack
# painting), zstd context sizes. Usage: codecs/c/measure.sh [ZSTD_SOURCE_DIR]
# With a zstd source tree (github.com/facebook/zstd, lib/ inside), it also builds a
# decompression-only libzstd for a small target and runs every vector against it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
CF="-std=c99 -pedantic -Wall -Wextra -Werror"

echo "== code size, gcc -Os -c, x86_64 ($(gcc -dumpfullversion))"
for f in lite.c lite_json.c lite_zstd.c; do gcc $CF -Os -c "$here/$f" -o "$tmp/${f%.c}.o"; done
for p in ocpp1.6 ocpp2.0.1 ocpp2.1; do
    python3 "$here/gen_tables.py" --only "$p" "$tmp/tables_$p.c"
    gcc $CF -Os -I"$here" -c "$tmp/tables_$p.c" -o "$tmp/tables_$p.o" 2>/dev/null ||
        gcc -std=c99 -Os -I"$here" -c "$tmp/tables_$p.c" -o "$tmp/tables_$p.o"
done
(cd "$tmp" && size lite.o lite_json.o lite_zstd.o tables_*.o)

echo "== stack frames, gcc -Os -fstack-usage (the recursive ones run once per nesting level)"
(cd "$tmp" && for f in lite.c lite_json.c lite_zstd.c; do gcc -std=c99 -Os -fstack-usage -c "$here/$f" -o /dev/null; done
 cat ./*.su | sort -t$'\t' -k2 -nr | head -8)

echo "== stack high-water per message (-Os, painted), per protocol over its typical messages"
gcc $CF -Os -o "$tmp/lite_vec" "$here"/lite.c "$here"/lite_json.c "$here"/lite_tables.c \
    "$here"/lite_zstd.c "$here"/lite_vec.c -lzstd -lm
for p in ocpp1.6 ocpp2.0.1 ocpp2.1; do
    python3 - "$repo/codecs/vectors/$p.json" > "$tmp/typical.jsonl" <<'PY'
import json, sys
for v in json.load(open(sys.argv[1]))["valid"]:
    if v["name"].startswith("typical") or "certificate" in v["name"]:
        print(json.dumps(v["message"], ensure_ascii=False))
PY
    "$tmp/lite_vec" --stack "$p" "$repo/codecs/dict" < "$tmp/typical.jsonl" > "$tmp/out.txt" 2> "$tmp/zstd.txt"
    python3 - "$p" "$tmp/out.txt" "$tmp/typical.jsonl" <<'PY'
import json, sys
rows = [list(map(int, l.split())) for l in open(sys.argv[2])]
msgs = [json.loads(l) for l in open(sys.argv[3])]
typ = [r for r, m in zip(rows, msgs) if len(json.dumps(m)) < 5000]
big = [r for r, m in zip(rows, msgs) if len(json.dumps(m)) >= 5000]
def show(label, rs):
    print(f"  {sys.argv[1]} {label}: {len(rs)} messages; max encode stack {max(r[0] for r in rs)} B,"
          f" max decode stack {max(r[1] for r in rs)} B, max JSON {max(r[2] for r in rs)} B,"
          f" max tokens {max(r[3] for r in rs)}, max frame {max(r[4] for r in rs)} B,"
          f" max body {max(r[5] for r in rs)} B")
show("typical", typ)
if big: show("10,000-char certificate", big)
PY
done
cat "$tmp/zstd.txt"

echo "== no allocation per message: heap calls for 1 and for 200 decodes (valgrind)"
if command -v valgrind >/dev/null; then
    line=$(python3 -c "import json;v=json.load(open('$repo/codecs/vectors/ocpp2.0.1.json'));print(next(x['hex'] for x in v['valid'] if x.get('decode_only')))")
    for n in 1 200; do
        for _ in $(seq "$n"); do echo "$line"; done > "$tmp/in.txt"
        valgrind "$tmp/lite_vec" --decode ocpp2.0.1 "$repo/codecs/dict" < "$tmp/in.txt" 2>&1 >/dev/null |
            grep "total heap usage" | sed "s/^==[0-9]*== /  $n decodes: /"
    done
fi

echo "== cost per message, -O2: the typical 2.0.1 messages of the vectors, 5,000 rounds through"
echo "   the filters (encode: JSON in, hex frame out; decode: hex frame in, JSON out, I/O included)"
gcc $CF -O2 -o "$tmp/lite_vec_o2" "$here"/lite.c "$here"/lite_json.c "$here"/lite_tables.c \
    "$here"/lite_zstd.c "$here"/lite_vec.c -lzstd -lm
python3 - "$repo/codecs/vectors/ocpp2.0.1.json" "$tmp" <<'PY'
import json, subprocess, sys, time
vectors, tmp = json.load(open(sys.argv[1]))["valid"], sys.argv[2]
typical = [v for v in vectors if v["name"].startswith("typical")]
rounds = 5000 // len(typical) + 1
messages = "".join(json.dumps(v["message"]) + "\n" for v in typical) * rounds
frames = "".join(v["hex"] + "\n" for v in typical) * rounds
count = len(typical) * rounds
for mode, feed in (("--encode", messages), ("--decode", frames)):
    args = [f"{tmp}/lite_vec_o2", mode, "ocpp2.0.1"] + ([] if mode == "--encode" else [sys.argv[1].rsplit("/vectors/", 1)[0] + "/dict"])
    start = time.perf_counter()
    subprocess.run(args, input=feed, capture_output=True, text=True, check=True)
    print(f"  {mode[2:]}: {(time.perf_counter() - start) / count * 1e6:.1f} us a message over {count}")
PY

if [ $# -ge 1 ]; then
    z="$1/lib"
    echo "== decompression-only libzstd from $z (-Os, x86_64), small literal buffer"
    ZF="-Os -DZSTD_DISABLE_ASM -DZSTD_LEGACY_SUPPORT=0 -DHUF_FORCE_DECOMPRESS_X1 \
        -DZSTD_FORCE_DECOMPRESS_SEQUENCES_SHORT -DZSTD_NO_INLINE -DZSTD_STRIP_ERROR_STRINGS \
        -DZSTD_NO_TRACE -DZSTD_DECODER_INTERNAL_BUFFER=1024 -DDEBUGLEVEL=0"
    mkdir -p "$tmp/z"
    for f in common/entropy_common.c common/error_private.c common/fse_decompress.c \
             common/zstd_common.c decompress/huf_decompress.c decompress/zstd_ddict.c \
             decompress/zstd_decompress.c decompress/zstd_decompress_block.c common/xxhash.c; do
        gcc $ZF -c "$z/$f" -o "$tmp/z/$(basename "${f%.c}").o"
    done
    size -t "$tmp"/z/*.o | tail -1 | awk '{print "  total text " $1 " B (xxhash.o, unused without checksums, included)"}'
    gcc -std=c99 -Os -DLITE_ZSTD_NO_DDICT -I"$z" -o "$tmp/lite_vec_small" "$here"/lite.c "$here"/lite_json.c \
        "$here"/lite_tables.c "$here"/lite_zstd.c "$here"/lite_vec.c "$tmp"/z/*.o -lzstd -lm 2>/dev/null
    "$tmp/lite_vec_small" "$repo"/codecs/vectors/*.json | sed 's/^/  /'
    echo '[2,"1","Heartbeat",{}]' | "$tmp/lite_vec_small" --stack ocpp2.0.1 "$repo/codecs/dict" 2>&1 >/dev/null | sed 's/^/  /'
fi

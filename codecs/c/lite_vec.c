/* lite_vec: runs codecs/vectors/<protocol>.json against this C implementation, and
 * offers the codec as line filters for other tests.
 *
 *   lite_vec [--dict DIR] FILE...        every vector of each file; prints pass/fail counts
 *   lite_vec --encode PROTO               stdin: one JSON message a line -> hex frame | ERROR why
 *   lite_vec --decode PROTO DIR           stdin: one hex frame a line -> OK json | CLOSE code |
 *                                         CALLERROR<TAB>code<TAB>"id"<TAB>why | DROP | NOSPACE
 *   lite_vec --compress PROTO DIR         stdin: hex format-00 frames -> the shorter of 00 / 01
 *   lite_vec --stack PROTO DIR            stdin: JSON messages -> stack bytes used per message
 *
 * DIR holds <protocol>-<id>.zdict. The per-message buffers are static, as firmware has them. */
#include "lite_zstd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define MAX_TOK 8192
static lite_tok g_tok[MAX_TOK], g_tok2[MAX_TOK];
static uint32_t g_idx[2 * MAX_TOK];
static uint8_t g_frame[LITE_MAX_MESSAGE + 16];
static uint8_t g_body[LITE_MAX_BODY];
static uint16_t g_scratch[LITE_MAX_BODY / 2 + 1];
static char g_json[1 << 20];
static uint8_t *g_dicts[LITE_MAX_DICTS];

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static int load_dicts(lite_zstd *z, const char *dir, const char *proto, int compress) {
    int id, n = 0;
    for (id = 1; id <= LITE_MAX_DICTS; id++) {
        char path[1024];
        size_t len;
        sprintf(path, "%.900s/%s-%d.zdict", dir, proto, id);
        g_dicts[id - 1] = (uint8_t *)read_file(path, &len);
        if (!g_dicts[id - 1]) break;
        if (lite_zstd_add(z, g_dicts[id - 1], len, compress) != (uint32_t)id) {
            fprintf(stderr, "%s: not a dictionary with id %d\n", path, id);
            return -1;
        }
        n++;
    }
    return n;
}

static void free_dicts(lite_zstd *z) {
    int i;
    lite_zstd_free(z);
    for (i = 0; i < LITE_MAX_DICTS; i++) {
        free(g_dicts[i]);
        g_dicts[i] = NULL;
    }
}

static int unhex(const char *s, size_t n, uint8_t *out, size_t cap, size_t *len) {
    size_t i;
    if (n % 2 || n / 2 > cap) return -1;
    for (i = 0; i < n; i += 2) {
        unsigned v;
        if (sscanf(s + i, "%2x", &v) != 1) return -1;
        out[i / 2] = (uint8_t)v;
    }
    *len = n / 2;
    return 0;
}

static void put_hex(const uint8_t *b, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) printf("%02x", b[i]);
}

/* ---- structural JSON equality (objects unordered; int and float are different types) */

static const lite_tok *member(const char *js, const lite_tok *o, const char *key, size_t klen) {
    uint32_t m, i = 1;
    for (m = 0; m < o->count; m++) {
        const lite_tok *k = o + i;
        if (k->len == klen && memcmp(js + k->start, key, klen) == 0) return k + 1;
        i += 1 + k[1].span;
    }
    return NULL;
}

static int json_equal(const char *ja, const lite_tok *a, const char *jb, const lite_tok *b) {
    uint32_t m, i;
    if (a->type != b->type) return 0;
    switch (a->type) {
    case LITE_J_STR:
        return a->len == b->len && memcmp(ja + a->start, jb + b->start, a->len) == 0;
    case LITE_J_NUM:
        if (a->isfloat != b->isfloat) return 0;
        if (!a->isfloat) return a->len == b->len && memcmp(ja + a->start, jb + b->start, a->len) == 0;
        return strtod(ja + a->start, NULL) == strtod(jb + b->start, NULL);
    case LITE_J_ARR:
        if (a->count != b->count) return 0;
        for (m = 0, i = 1; m < a->count; m++) {
            if (!json_equal(ja, a + i, jb, b + i)) return 0;
            i += a[i].span;
        }
        return 1;
    case LITE_J_OBJ:
        if (a->count != b->count) return 0;
        for (m = 0, i = 1; m < a->count; m++) {
            const lite_tok *bv = member(jb, b, ja + a[i].start, a[i].len);
            if (!bv || !json_equal(ja, a + i + 1, jb, bv)) return 0;
            i += 1 + a[i + 1].span;
        }
        return 1;
    default: return 1;
    }
}

static long decode_hex(const lite_table *t, lite_zstd *z, const char *hex, size_t hlen, lite_answer *ans,
                       size_t *jlen) {
    size_t flen;
    if (unhex(hex, hlen, g_frame, sizeof g_frame, &flen)) return -1;
    return lite_decode_frame(t, z, g_frame, flen, g_body, g_scratch, sizeof g_scratch / 2, g_json,
                             sizeof g_json, jlen, ans);
}

static int run_file(const char *path, const char *dictdir) {
    size_t len, jlen, blen;
    char *js = read_file(path, &len), dir[1024];
    lite_tok *tok, *root, *valid, *invalid, *pv;
    const lite_table *t;
    lite_zstd z;
    long ntok;
    const char *err;
    char proto[32];
    int enc_ok = 0, enc_n = 0, dec_ok = 0, dec_n = 0, inv_ok = 0, inv_n = 0;
    uint32_t m, i;
    if (!js) { fprintf(stderr, "%s: cannot read\n", path); return 1; }
    tok = malloc(sizeof *tok * (len / 2 + 16)); /* the vector file, not a message: heap is fine */
    ntok = lite_json_parse(js, len, tok, len / 2 + 16, &err);
    if (ntok < 0) { fprintf(stderr, "%s: %s\n", path, err); return 1; }
    root = tok;
    pv = (lite_tok *)member(js, root, "protocol", 8);
    valid = (lite_tok *)member(js, root, "valid", 5);
    invalid = (lite_tok *)member(js, root, "invalid", 7);
    if (!pv || !valid || !invalid || pv->len >= sizeof proto) { fprintf(stderr, "%s: not a vector file\n", path); return 1; }
    memcpy(proto, js + pv->start, pv->len);
    proto[pv->len] = 0;
    t = lite_table_find(proto);
    if (!t) { fprintf(stderr, "%s: unknown protocol %s\n", path, proto); return 1; }
    if (!dictdir) {
        const char *slash = strrchr(path, '/');
        sprintf(dir, "%.*s/../dict", slash ? (int)(slash - path) : 1, slash ? path : ".");
        dictdir = dir;
    }
    if (lite_zstd_init(&z) || load_dicts(&z, dictdir, proto, 0) < 1) {
        fprintf(stderr, "%s: no dictionary for %s in %s\n", path, proto, dictdir);
        return 1;
    }
    for (m = 0, i = 1; m < valid->count; m++, i += valid[i].span) {
        const lite_tok *v = valid + i, *name = member(js, v, "name", 4), *msg = member(js, v, "message", 7);
        const lite_tok *norm = member(js, v, "normalized", 10), *hex = member(js, v, "hex", 3);
        const lite_tok *only = member(js, v, "decode_only", 11);
        lite_answer ans;
        long rc, n2;
        if (!only || only->type != LITE_J_TRUE) {
            enc_n++;
            rc = lite_encode(t, js, msg, (size_t)msg->span, g_idx, sizeof g_idx / 4, g_frame, sizeof g_frame, &blen, &err);
            if (rc == 0 && blen * 2 == hex->len) {
                char *h = g_json;
                size_t k;
                for (k = 0; k < blen; k++) sprintf(h + 2 * k, "%02x", g_frame[k]);
                if (memcmp(h, js + hex->start, hex->len) == 0) enc_ok++;
                else printf("FAIL encode %s: %.*s: bytes differ\n", proto, (int)name->len, js + name->start);
            } else {
                printf("FAIL encode %s: %.*s: %s\n", proto, (int)name->len, js + name->start, rc ? err : "length differs");
            }
        }
        dec_n++;
        rc = decode_hex(t, &z, js + hex->start, hex->len, &ans, &jlen);
        if (rc != LITE_OK) {
            printf("FAIL decode %s: %.*s: answer %ld (%s)\n", proto, (int)name->len, js + name->start, rc, ans.why ? ans.why : "");
            continue;
        }
        n2 = lite_json_parse(g_json, jlen, g_tok2, MAX_TOK, &err);
        if (n2 > 0 && json_equal(js, norm ? norm : msg, g_json, g_tok2)) dec_ok++;
        else printf("FAIL decode %s: %.*s: JSON differs\n", proto, (int)name->len, js + name->start);
    }
    for (m = 0, i = 1; m < invalid->count; m++, i += invalid[i].span) {
        const lite_tok *v = invalid + i, *name = member(js, v, "name", 4), *hex = member(js, v, "hex", 3);
        const lite_tok *want = member(js, v, "answer", 6), *x;
        lite_answer ans;
        long rc = decode_hex(t, &z, js + hex->start, hex->len, &ans, &jlen);
        int ok = 0;
        inv_n++;
        if ((x = member(js, want, "close", 5)) != NULL)
            ok = rc == LITE_CLOSE && ans.close_code == atoi(js + x->start);
        else if ((x = member(js, want, "callerror", 9)) != NULL) {
            const lite_tok *id = member(js, x, "id", 2), *code = member(js, x, "code", 4);
            ok = rc == LITE_CALLERROR && ans.id_len == id->len && memcmp(ans.id, js + id->start, id->len) == 0 &&
                 strlen(ans.code) == code->len && memcmp(ans.code, js + code->start, code->len) == 0;
        } else if (member(js, want, "drop", 4))
            ok = rc == LITE_DROP;
        if (ok) inv_ok++;
        else printf("FAIL invalid %s: %.*s: got kind %ld close %d code %s (%s)\n", proto, (int)name->len,
                    js + name->start, rc, ans.close_code, ans.code ? ans.code : "-", ans.why ? ans.why : "");
    }
    printf("%s: encode %d/%d, decode %d/%d, invalid %d/%d\n", proto, enc_ok, enc_n, dec_ok, dec_n, inv_ok, inv_n);
    free_dicts(&z);
    free(tok);
    free(js);
    return enc_ok == enc_n && dec_ok == dec_n && inv_ok == inv_n ? 0 : 1;
}

static char g_line[4 << 20];

/* Stack painting, as on firmware: fill a region below the caller's frame with a pattern,
 * run the codec from the same caller, then count the bytes still holding the pattern.
 * Called through a volatile pointer so the compiler neither inlines nor merges frames. */
#define PROBE 65536
static volatile uintptr_t g_painted;
static size_t stack_probe(int paint) {
    volatile uint8_t a[PROBE];
    size_t i;
    if (paint) {
        for (i = 0; i < PROBE; i++) a[i] = 0xA5;
        g_painted = (uintptr_t)a; /* read back after return: outside C's rules, on purpose */
        return 0;
    }
    for (i = 0; i < PROBE && ((volatile uint8_t *)g_painted)[i] == 0xA5; i++) continue;
    return PROBE - i;
}
static size_t (*volatile g_probe)(int) = stack_probe;

/* stdin: JSON messages. Per line: encode stack, decode stack (of the frame compressed with
 * the newest dictionary when shorter), JSON bytes, tokens, frame bytes, body bytes. */
static int stack_report(const char *proto, const char *dictdir) {
    const lite_table *t = lite_table_find(proto);
    lite_zstd z;
    static uint8_t plain[LITE_MAX_MESSAGE + 16];
    int warm = 1;
    if (!t || lite_zstd_init(&z) || load_dicts(&z, dictdir, proto, 1) < 1) return 2;
    while (fgets(g_line, sizeof g_line, stdin)) {
        size_t n = strlen(g_line), plen, flen, jlen, enc_stack, dec_stack;
        const char *err;
        lite_answer ans;
        long nt;
        int rc;
        while (n && g_line[n - 1] == '\n') g_line[--n] = 0;
        if (warm) { /* the first calls resolve library symbols lazily, on the stack: not ours */
            char tmp[64] = "[2,\"1\",\"Heartbeat\",{\"x\":1.5}]";
            nt = lite_json_parse(tmp, strlen(tmp), g_tok, MAX_TOK, &err);
            lite_encode(t, tmp, g_tok, (size_t)nt, g_idx, 64, plain, sizeof plain, &plen, &err);
            lite_decode_frame(t, &z, plain, plen, g_body, g_scratch, 64, g_json, sizeof g_json, &jlen, &ans);
            flen = lite_compress(&z, z.id[z.n - 1], plain, plen, g_frame, sizeof g_frame);
            warm = 0;
        }
        g_probe(1);
        nt = lite_json_parse(g_line, n, g_tok, MAX_TOK, &err);
        rc = nt < 0 ? -1 : lite_encode(t, g_line, g_tok, (size_t)nt, g_idx, sizeof g_idx / 4, plain,
                                       sizeof plain, &plen, &err);
        enc_stack = g_probe(0);
        if (rc) { printf("ERROR %s\n", err); continue; }
        flen = lite_compress(&z, z.id[z.n - 1], plain, plen, g_frame, sizeof g_frame);
        g_probe(1);
        rc = lite_decode_frame(t, &z, g_frame, flen, g_body, g_scratch, sizeof g_scratch / 2, g_json,
                               sizeof g_json, &jlen, &ans);
        dec_stack = g_probe(0);
        printf("%lu %lu %lu %ld %lu %lu %d\n", (unsigned long)enc_stack, (unsigned long)dec_stack,
               (unsigned long)n, nt, (unsigned long)flen, (unsigned long)(plen - 1), rc);
    }
    fprintf(stderr, "zstd %s: DCtx %lu B, DDict %lu B, dictionary %lu B\n", ZSTD_versionString(),
            (unsigned long)ZSTD_sizeof_DCtx(z.dctx), (unsigned long)ZSTD_sizeof_DDict(z.ddict[0]),
            (unsigned long)z.dict_len[0]);
    fprintf(stderr, "zstd compression (optional for a station): CCtx %lu B, CDict %lu B\n",
            (unsigned long)ZSTD_sizeof_CCtx(z.cctx), (unsigned long)ZSTD_sizeof_CDict(z.cdict[0]));
    free_dicts(&z);
    return 0;
}

static int filter(const char *mode, const char *proto, const char *dictdir) {
    const lite_table *t = lite_table_find(proto);
    lite_zstd z;
    if (!t) { fprintf(stderr, "unknown protocol %s\n", proto); return 2; }
    if (lite_zstd_init(&z)) return 2;
    if (dictdir && load_dicts(&z, dictdir, proto, strcmp(mode, "--compress") == 0) < 1) {
        fprintf(stderr, "no dictionary for %s in %s\n", proto, dictdir);
        return 2;
    }
    while (fgets(g_line, sizeof g_line, stdin)) {
        size_t n = strlen(g_line), blen, jlen;
        const char *err;
        lite_answer ans;
        while (n && (g_line[n - 1] == '\n' || g_line[n - 1] == '\r')) g_line[--n] = 0;
        if (strcmp(mode, "--encode") == 0) {
            long nt = lite_json_parse(g_line, n, g_tok, MAX_TOK, &err);
            if (nt < 0 || lite_encode(t, g_line, g_tok, (size_t)nt, g_idx, sizeof g_idx / 4, g_frame,
                                      sizeof g_frame, &blen, &err)) {
                printf("ERROR %s\n", err);
                continue;
            }
            put_hex(g_frame, blen);
            putchar('\n');
        } else if (strcmp(mode, "--compress") == 0) {
            static uint8_t out[LITE_MAX_MESSAGE + 16];
            size_t olen;
            if (unhex(g_line, n, g_frame, sizeof g_frame, &blen) ||
                (olen = lite_compress(&z, z.id[z.n - 1], g_frame, blen, out, sizeof out)) == 0) {
                printf("ERROR cannot compress\n");
                continue;
            }
            put_hex(out, olen);
            putchar('\n');
        } else {
            long rc = decode_hex(t, &z, g_line, n, &ans, &jlen);
            if (rc == LITE_OK) printf("OK %.*s\n", (int)jlen, g_json);
            else if (rc == LITE_CLOSE) printf("CLOSE %d %s\n", ans.close_code, ans.why);
            else if (rc == LITE_CALLERROR) {
                size_t k;
                printf("CALLERROR\t%s\t\"", ans.code); /* the id as a JSON string: it may hold anything */
                for (k = 0; k < ans.id_len; k++) {
                    char c = ans.id[k];
                    if (c == '"' || c == '\\') printf("\\%c", c);
                    else if ((unsigned char)c < 0x20) printf("\\u%04x", (unsigned)(unsigned char)c);
                    else putchar(c);
                }
                printf("\"\t%s\n", ans.why);
            }
            else if (rc == LITE_DROP) printf("DROP %s\n", ans.why);
            else printf("NOSPACE %s\n", ans.why ? ans.why : "bad hex");
        }
    }
    free_dicts(&z);
    return 0;
}

int main(int argc, char **argv) {
    int i, rc = 0;
    const char *dictdir = NULL;
    if (argc >= 3 && strcmp(argv[1], "--encode") == 0) return filter(argv[1], argv[2], NULL);
    if (argc >= 4 && strcmp(argv[1], "--stack") == 0) return stack_report(argv[2], argv[3]);
    if (argc >= 4 && (strcmp(argv[1], "--decode") == 0 || strcmp(argv[1], "--compress") == 0))
        return filter(argv[1], argv[2], argv[3]);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dict") == 0 && i + 1 < argc) { dictdir = argv[++i]; continue; }
        rc |= run_file(argv[i], dictdir);
    }
    if (argc < 2) {
        fprintf(stderr, "usage: lite_vec [--dict DIR] FILE... | --encode PROTO | --decode PROTO DIR | --compress PROTO DIR\n");
        return 2;
    }
    return rc;
}

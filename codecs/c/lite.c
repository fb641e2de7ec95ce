/* lite.c: lite1 bodies (codecs/SPEC.md sections 5, 6, 7, 8) <-> OCPP-J JSON text.
 * A hand-written CBOR writer and a two-pass reader: pass 1 checks the CBOR profile (5.1)
 * and the limits (7) without meaning; pass 2 applies the tables and writes JSON. The
 * passes are separate because section 8 ranks a profile error below the frame checks
 * (readable id, message type, element count, action) and above the payload rules. */
#include "lite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EPOCH 253402300799ULL /* 9999-12-31T23:59:59Z */

const lite_table *lite_table_find(const char *protocol) {
    if (strcmp(protocol, "ocpp1.6") == 0) return &lite_table_ocpp16;
    if (strcmp(protocol, "ocpp2.0.1") == 0) return &lite_table_ocpp201;
    if (strcmp(protocol, "ocpp2.1") == 0) return &lite_table_ocpp21;
    return NULL;
}

/* Binary search of a name in a table's name-sorted index; -1 when absent. */
static long find_name(const char *const *names, const uint16_t *sorted, uint16_t n,
                      const char *s, size_t len) {
    long lo = 0, hi = (long)n - 1;
    while (lo <= hi) {
        long mid = (lo + hi) / 2;
        const char *m = names[sorted[mid]];
        size_t ml = strlen(m);
        int c = memcmp(m, s, ml < len ? ml : len);
        if (c == 0) c = ml < len ? -1 : (ml > len ? 1 : 0);
        if (c == 0) return sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* ---------------------------------------------------------------- shared text rules */

/* Characters (code points) of valid UTF-8: OCPP-J counts an id's length in characters. */
static size_t utf8_chars(const char *s, size_t n) {
    size_t i, c = 0;
    for (i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static int is_hexdigit_lower(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
static int is_hexdigit_upper(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }
static unsigned hexval(char c) {
    return (unsigned)(c <= '9' ? c - '0' : (c >= 'a' ? c - 'a' + 10 : c - 'A' + 10));
}

/* SPEC 6.4: canonical lower-case UUID, 8-4-4-4-12. */
static int is_uuid(const char *s, size_t n) {
    size_t i;
    if (n != 36) return 0;
    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return 0;
        } else if (!is_hexdigit_lower(s[i])) {
            return 0;
        }
    }
    return 1;
}

/* SPEC 6.4: ^([0-9A-F]{2}){4,}$ */
static int is_upper_hex(const char *s, size_t n) {
    size_t i;
    if (n < 8 || n % 2) return 0;
    for (i = 0; i < n; i++)
        if (!is_hexdigit_upper(s[i])) return 0;
    return 1;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    int64_t era;
    unsigned yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d) {
    int64_t era;
    unsigned doe, yoe, doy, mp;
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int digits(const char *s, size_t n, unsigned *v) {
    size_t i;
    *v = 0;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        *v = *v * 10 + (unsigned)(s[i] - '0');
    }
    return 1;
}

/* SPEC 6.3: parse a convertible timestamp. Returns 1 with the epoch seconds, fraction
 * digits *n (0 = none) and fraction value *f; 0 when the text stays text. */
static int parse_ts(const char *s, size_t len, uint64_t *epoch, unsigned *n, uint64_t *f) {
    unsigned y, mo, d, h, mi, se, oh = 0, om = 0, dim;
    static const unsigned mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    size_t p = 19;
    int64_t e, sign = 0;
    if (len < 20) return 0;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || s[10] != 'T' || !digits(s + 11, 2, &h) || s[13] != ':' ||
        !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se))
        return 0;
    *n = 0;
    *f = 0;
    if (s[p] == '.') {
        p++;
        while (p < len && s[p] >= '0' && s[p] <= '9' && *n < 10) {
            *f = *f * 10 + (uint64_t)(s[p] - '0');
            (*n)++;
            p++;
        }
        if (*n < 1 || *n > 9) return 0;
    }
    if (p + 1 == len && s[p] == 'Z') {
        sign = 0;
    } else if (p + 6 == len && (s[p] == '+' || s[p] == '-') && digits(s + p + 1, 2, &oh) &&
               s[p + 3] == ':' && digits(s + p + 4, 2, &om)) {
        sign = s[p] == '+' ? 1 : -1;
        if (oh > 23 || om > 59) return 0;
    } else {
        return 0;
    }
    if (mo < 1 || mo > 12 || d < 1) return 0;
    dim = mdays[mo - 1] + (mo == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)));
    if (d > dim || h > 23 || mi > 59 || se > 59) return 0;
    e = days_from_civil((int64_t)y, mo, d) * 86400 + (int64_t)(h * 3600 + mi * 60 + se) -
        sign * (int64_t)(oh * 3600 + om * 60);
    if (e < 0 || (uint64_t)e > MAX_EPOCH) return 0;
    *epoch = (uint64_t)e;
    return 1;
}

/* ---------------------------------------------------------------- CBOR writer */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    const char *err;
} wbuf;

static void w_raw(wbuf *w, const void *src, size_t n) {
    if (w->err) return;
    if (w->cap - w->n < n) { w->err = "output buffer too small"; return; }
    memcpy(w->p + w->n, src, n);
    w->n += n;
}

static void w_head(wbuf *w, unsigned major, uint64_t v) {
    uint8_t b[9];
    size_t n, i;
    if (v < 24) { b[0] = (uint8_t)(major << 5 | v); n = 1; }
    else if (v <= 0xFF) { b[0] = (uint8_t)(major << 5 | 24); n = 2; }
    else if (v <= 0xFFFF) { b[0] = (uint8_t)(major << 5 | 25); n = 3; }
    else if (v <= 0xFFFFFFFFULL) { b[0] = (uint8_t)(major << 5 | 26); n = 5; }
    else { b[0] = (uint8_t)(major << 5 | 27); n = 9; }
    for (i = 1; i < n; i++) b[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    w_raw(w, b, n);
}

/* Exact half-precision form of d, if any (SPEC 5.1: the shortest exact float). */
static int to_half(double d, uint16_t *h) {
    double a = fabs(d), m;
    uint16_t sign = signbit(d) ? 0x8000 : 0;
    int e;
    if (a == 0) { *h = sign; return 1; }
    frexp(a, &e); /* a = f * 2^e, f in [0.5, 1): unbiased exponent e - 1 */
    e -= 1;
    if (e > 15) return 0;
    if (e >= -14) {
        m = ldexp(a, 10 - e);
        if (m != floor(m)) return 0;
        *h = (uint16_t)(sign | (uint16_t)((e + 15) << 10) | (uint16_t)((unsigned)m - 1024));
        return 1;
    }
    m = ldexp(a, 24);
    if (m != floor(m) || m >= 1024) return 0;
    *h = (uint16_t)(sign | (uint16_t)m);
    return 1;
}

static void w_float(wbuf *w, double d) {
    uint8_t b[9];
    uint16_t h;
    float f = 0; /* converting a double beyond the float range is undefined: test first */
    if (fabs(d) <= 3.4028234663852886e38) f = (float)d;
    if (to_half(d, &h)) {
        b[0] = 0xF9; b[1] = (uint8_t)(h >> 8); b[2] = (uint8_t)h;
        w_raw(w, b, 3);
    } else if (fabs(d) <= 3.4028234663852886e38 && (double)f == d) {
        uint32_t u;
        memcpy(&u, &f, 4);
        b[0] = 0xFA; b[1] = (uint8_t)(u >> 24); b[2] = (uint8_t)(u >> 16);
        b[3] = (uint8_t)(u >> 8); b[4] = (uint8_t)u;
        w_raw(w, b, 5);
    } else {
        uint64_t u;
        int i;
        memcpy(&u, &d, 8);
        b[0] = 0xFB;
        for (i = 0; i < 8; i++) b[1 + i] = (uint8_t)(u >> (56 - 8 * i));
        w_raw(w, b, 9);
    }
}

/* ---------------------------------------------------------------- encoder */

typedef struct {
    const lite_table *t;
    const char *js;
    const lite_tok *tok;
    uint32_t *idx;
    size_t nidx, sp;
    wbuf w;
} enc;

static int fail(enc *e, const char *why) {
    if (!e->w.err) e->w.err = why;
    return -1;
}

/* JSON integer text -> CBOR integer; SPEC 6.5: -2^64 .. 2^64-1. */
static int enc_int(enc *e, const char *s, size_t n) {
    int neg = s[0] == '-';
    size_t i = (size_t)neg;
    uint64_t v = 0;
    if (neg && n == 21 && memcmp(s, "-18446744073709551616", 21) == 0) {
        w_head(&e->w, 1, UINT64_MAX);
        return 0;
    }
    for (; i < n; i++) {
        unsigned dgt = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - dgt) / 10) return fail(e, "integer outside -2^64 .. 2^64-1");
        v = v * 10 + dgt;
    }
    if (neg && v != 0) w_head(&e->w, 1, v - 1);
    else w_head(&e->w, 0, v);
    return 0;
}

static int enc_float(enc *e, const char *s, size_t n) {
    char buf[64];
    double d;
    if (n >= sizeof buf) return fail(e, "number text too long");
    memcpy(buf, s, n);
    buf[n] = 0;
    d = strtod(buf, NULL);
    if (!isfinite(d)) return fail(e, "number is not finite");
    w_float(&e->w, d);
    return 0;
}

static void enc_text_plain(enc *e, const char *s, size_t n) {
    size_t i;
    if (is_uuid(s, n)) {
        uint8_t b[16];
        size_t k = 0;
        for (i = 0; i < 36; i++) {
            if (s[i] == '-') continue;
            if (k % 2 == 0) b[k / 2] = (uint8_t)(hexval(s[i]) << 4);
            else b[k / 2] |= (uint8_t)hexval(s[i]);
            k++;
        }
        w_head(&e->w, 6, 37);
        w_head(&e->w, 2, 16);
        w_raw(&e->w, b, 16);
        return;
    }
    if (is_upper_hex(s, n)) {
        w_head(&e->w, 2, n / 2);
        for (i = 0; i < n; i += 2) {
            uint8_t b = (uint8_t)(hexval(s[i]) << 4 | hexval(s[i + 1]));
            w_raw(&e->w, &b, 1);
        }
        return;
    }
    w_head(&e->w, 3, n);
    w_raw(&e->w, s, n);
}

static void enc_text(enc *e, const char *s, size_t n, long key, int raw) {
    int cls = key >= 0 && !raw ? e->t->key_class[key] : LITE_KEY_PLAIN;
    if (cls == LITE_KEY_ENUM) {
        unsigned i, first = e->t->enum_first[key], cnt = e->t->enum_count[key];
        for (i = 0; i < cnt; i++) {
            const char *v = e->t->values[first + i];
            if (strlen(v) == n && memcmp(v, s, n) == 0) {
                w_head(&e->w, 0, i);
                return;
            }
        }
    } else if (cls == LITE_KEY_DATETIME) {
        uint64_t epoch, f, p10 = 1;
        unsigned nd, i;
        if (parse_ts(s, n, &epoch, &nd, &f)) {
            if (nd == 0) {
                w_head(&e->w, 0, epoch);
                return;
            }
            for (i = 0; i < nd; i++) p10 *= 10;
            /* 9 digits near year 9999 overflow a uint64 mantissa: such text stays text */
            if (epoch <= (UINT64_MAX - f) / p10) {
                w_head(&e->w, 6, 4);
                w_head(&e->w, 4, 2);
                w_head(&e->w, 1, nd - 1);
                w_head(&e->w, 0, epoch * p10 + f);
                return;
            }
        }
    }
    enc_text_plain(e, s, n);
}

/* Key number of an object member's name, or -1 for a name the table lacks. */
static long key_number(enc *e, uint32_t ki) {
    const lite_tok *k = &e->tok[ki];
    return find_name(e->t->keys, e->t->keys_sorted, e->t->n_keys, e->js + k->start, k->len);
}

/* Deterministic order (SPEC 5.1): numbered keys ascending, then text by length, bytes. */
static int key_cmp(enc *e, const uint32_t *a, const uint32_t *b) {
    const lite_tok *ka, *kb;
    int c;
    if (a[1] != UINT32_MAX || b[1] != UINT32_MAX) {
        if (a[1] == b[1]) return 0;
        return a[1] < b[1] ? -1 : 1;
    }
    ka = &e->tok[a[0]];
    kb = &e->tok[b[0]];
    if (ka->len != kb->len) return ka->len < kb->len ? -1 : 1;
    c = memcmp(e->js + ka->start, e->js + kb->start, ka->len);
    return c;
}

static int enc_value(enc *e, uint32_t ti, long key, int raw, int depth);

static int enc_object(enc *e, uint32_t ti, int raw, int depth) {
    const lite_tok *o = &e->tok[ti];
    uint32_t i, m, j, base = (uint32_t)e->sp;
    if (o->count > LITE_MAX_ITEMS) return fail(e, "more than 1024 pairs in one map");
    if (e->nidx - e->sp < 2 * (size_t)o->count) return fail(e, "sort scratch too small");
    for (m = 0, i = ti + 1; m < o->count; m++) {
        uint32_t *slot = e->idx + base + 2 * m;
        long kn = key_number(e, i);
        slot[0] = i;
        slot[1] = kn < 0 ? UINT32_MAX : (uint32_t)kn;
        i += 1 + e->tok[i + 1].span;
    }
    e->sp += 2 * (size_t)o->count;
    for (m = 1; m < o->count; m++) { /* insertion sort: maps are small */
        uint32_t cur[2];
        cur[0] = e->idx[base + 2 * m];
        cur[1] = e->idx[base + 2 * m + 1];
        for (j = m; j > 0; j--) {
            int c = key_cmp(e, e->idx + base + 2 * (j - 1), cur);
            if (c == 0) return fail(e, "duplicate key");
            if (c < 0) break;
            e->idx[base + 2 * j] = e->idx[base + 2 * (j - 1)];
            e->idx[base + 2 * j + 1] = e->idx[base + 2 * (j - 1) + 1];
        }
        e->idx[base + 2 * j] = cur[0];
        e->idx[base + 2 * j + 1] = cur[1];
    }
    w_head(&e->w, 5, o->count);
    for (m = 0; m < o->count; m++) {
        uint32_t k = e->idx[base + 2 * m];
        uint32_t kn = e->idx[base + 2 * m + 1];
        long key = kn == UINT32_MAX ? -1 : (long)kn;
        int sub_raw = raw || (key >= 0 && e->t->key_class[key] == LITE_KEY_RAW);
        if (key >= 0) {
            w_head(&e->w, 0, kn);
        } else {
            w_head(&e->w, 3, e->tok[k].len);
            w_raw(&e->w, e->js + e->tok[k].start, e->tok[k].len);
        }
        if (enc_value(e, k + 1, key, sub_raw, depth + 1)) return -1;
    }
    e->sp = base;
    return e->w.err ? -1 : 0;
}

static int enc_value(enc *e, uint32_t ti, long key, int raw, int depth) {
    const lite_tok *v = &e->tok[ti];
    const char *s = e->js + v->start;
    int cls = key >= 0 && !raw ? e->t->key_class[key] : LITE_KEY_PLAIN;
    uint32_t i, m;
    switch (v->type) {
    case LITE_J_OBJ:
        if (depth > LITE_MAX_DEPTH) return fail(e, "nested deeper than 32 levels");
        return enc_object(e, ti, raw, depth);
    case LITE_J_ARR:
        if (depth > LITE_MAX_DEPTH) return fail(e, "nested deeper than 32 levels");
        if (v->count > LITE_MAX_ITEMS) return fail(e, "more than 1024 items in one array");
        w_head(&e->w, 4, v->count);
        for (m = 0, i = ti + 1; m < v->count; m++, i += e->tok[i].span)
            if (enc_value(e, i, key, raw, depth + 1)) return -1;
        return 0;
    case LITE_J_STR: enc_text(e, s, v->len, key, raw); return 0;
    case LITE_J_NUM:
        if (v->isfloat) return enc_float(e, s, v->len);
        if (cls == LITE_KEY_ENUM) return fail(e, "an integer under an enum key");
        if (cls == LITE_KEY_DATETIME) return fail(e, "an integer under a date-time key");
        return enc_int(e, s, v->len);
    case LITE_J_TRUE: w_head(&e->w, 7, 21); return 0;
    case LITE_J_FALSE: w_head(&e->w, 7, 20); return 0;
    default: w_head(&e->w, 7, 22); return 0;
    }
}

/* SPEC 5.3 */
static int enc_id(enc *e, const lite_tok *v) {
    const char *s = e->js + v->start;
    size_t n = v->len, i;
    uint64_t x = 0;
    if (v->type != LITE_J_STR) return fail(e, "message id is not a string");
    if (n < 1 || utf8_chars(s, n) > LITE_MAX_ID) return fail(e, "message id must have 1 to 36 characters");
    if (n <= 20 && (s[0] != '0' || n == 1)) {
        for (i = 0; i < n; i++) {
            unsigned d = (unsigned)(s[i] - '0');
            if (s[i] < '0' || s[i] > '9' || x > (UINT64_MAX - d) / 10) break;
            x = x * 10 + d;
        }
        if (i == n) {
            w_head(&e->w, 0, x);
            return 0;
        }
    }
    if (is_uuid(s, n)) {
        enc_text_plain(e, s, n);
        return 0;
    }
    w_head(&e->w, 3, n);
    w_raw(&e->w, s, n);
    return 0;
}

static void enc_name(enc *e, const lite_tok *v, const char *const *names, const uint16_t *sorted,
                     uint16_t n) {
    long k = find_name(names, sorted, n, e->js + v->start, v->len);
    if (k >= 0) {
        w_head(&e->w, 0, (uint64_t)k);
    } else {
        w_head(&e->w, 3, v->len);
        w_raw(&e->w, e->js + v->start, v->len);
    }
}

int lite_encode(const lite_table *t, const char *json, const lite_tok *tok, size_t ntok,
                uint32_t *idx, size_t nidx, uint8_t *out, size_t cap, size_t *out_len,
                const char **err) {
    enc e;
    const lite_tok *a = &tok[0];
    uint32_t el[5], i, m;
    long type;
    e.t = t; e.js = json; e.tok = tok; e.idx = idx; e.nidx = nidx; e.sp = 0;
    e.w.p = out; e.w.n = 0; e.w.cap = cap; e.w.err = 0;
    (void)ntok;
    if (a->type != LITE_J_ARR || a->count < 3 || a->count > 5) {
        fail(&e, "an OCPP-J message is an array of 3 to 5 elements");
        goto done;
    }
    for (m = 0, i = 1; m < a->count; m++, i += tok[i].span) el[m] = i;
    if (tok[el[0]].type != LITE_J_NUM || tok[el[0]].isfloat || tok[el[0]].len != 1) {
        fail(&e, "message type must be 2 .. 6");
        goto done;
    }
    type = json[tok[el[0]].start] - '0';
    if (!((type >= 2 && type <= 4) || (t->is_21 && (type == 5 || type == 6)))) {
        fail(&e, "message type not of this protocol");
        goto done;
    }
    {
        static const uint8_t want[7] = {0, 0, 4, 3, 5, 5, 4};
        uint32_t last = el[a->count - 1];
        if (a->count != want[type] || tok[last].type != LITE_J_OBJ) {
            fail(&e, "wrong number of elements, or the payload is not an object");
            goto done;
        }
        if ((type == 2 || type == 6) && (tok[el[2]].type != LITE_J_STR || tok[el[2]].len == 0)) {
            fail(&e, "an action must be a non-empty string");
            goto done;
        }
        if ((type == 4 || type == 5) && (tok[el[2]].type != LITE_J_STR || tok[el[2]].len == 0 ||
                                         tok[el[3]].type != LITE_J_STR)) {
            fail(&e, "an error code must be a non-empty string, the description a string");
            goto done;
        }
    }
    w_raw(&e.w, "\0", 1); /* format 00: plain */
    w_head(&e.w, 4, a->count);
    w_head(&e.w, 0, (uint64_t)type);
    if (enc_id(&e, &tok[el[1]])) goto done;
    if (type == 2 || type == 6) {
        enc_name(&e, &tok[el[2]], t->actions, t->actions_sorted, t->n_actions);
        enc_value(&e, el[3], -1, 0, 2);
    } else if (type == 3) {
        enc_value(&e, el[2], -1, 0, 2);
    } else {
        enc_name(&e, &tok[el[2]], t->errors, t->errors_sorted, t->n_errors);
        w_head(&e.w, 3, tok[el[3]].len);
        w_raw(&e.w, json + tok[el[3]].start, tok[el[3]].len);
        enc_value(&e, el[4], -1, 1, 2); /* SPEC 6.6: details are raw */
    }
    if (!e.w.err && e.w.n > LITE_MAX_MESSAGE) fail(&e, "frame larger than 65536 bytes (a plain body up to 65535)");
done:
    *out_len = e.w.n;
    if (err) *err = e.w.err;
    return e.w.err ? -1 : 0;
}

/* ---------------------------------------------------------------- CBOR reader */

typedef struct {
    const uint8_t *b;
    size_t pos, len;
} rd;

typedef struct {
    unsigned major, ai;
    uint64_t v; /* argument: value, length, count, tag, or float bits */
} head;

/* Reads one head; 0 ok, -1 cut short or reserved/indefinite additional information. */
static int r_head(rd *r, head *h) {
    uint8_t ib;
    size_t n, i;
    if (r->pos >= r->len) return -1;
    ib = r->b[r->pos++];
    h->major = ib >> 5;
    h->ai = ib & 31;
    if (h->ai < 24) { h->v = h->ai; return 0; }
    if (h->ai > 27) return -1; /* 28-30 reserved, 31 indefinite: not allowed */
    n = (size_t)1 << (h->ai - 24);
    if (r->len - r->pos < n) return -1;
    h->v = 0;
    for (i = 0; i < n; i++) h->v = h->v << 8 | r->b[r->pos++];
    return 0;
}

static double half_to_double(uint16_t h) {
    int e = (h >> 10) & 31;
    double m = h & 1023, d;
    if (e == 0) d = ldexp(m, -24);
    else if (e == 31) d = m == 0 ? HUGE_VAL : NAN;
    else d = ldexp(m + 1024, e - 25);
    return (h & 0x8000) ? -d : d;
}

static double float_value(const head *h) {
    if (h->ai == 25) return half_to_double((uint16_t)h->v);
    if (h->ai == 26) {
        uint32_t u = (uint32_t)h->v;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    {
        uint64_t u = h->v;
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
}

static int utf8_ok(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k, j;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { k = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { k = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 3; cp = c & 0x07; }
        else return 0;
        if (n - i <= k) return 0;
        for (j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* ---- pass 1: the CBOR profile (5.1) and limits (7) */

typedef struct {
    rd r;
    uint16_t *keys; /* body offsets of the keys of the open maps */
    size_t nkeys, sp;
    const char *why;
    int nospace;
} wf;

static int wf_bad(wf *c, const char *why) {
    if (!c->why) c->why = why;
    return -1;
}

/* Same key? Integers by value (non-shortest forms are equal), text by bytes. */
static int same_key(const uint8_t *b, size_t len, size_t x, size_t y) {
    rd rx, ry;
    head hx, hy;
    rx.b = ry.b = b; rx.len = ry.len = len; rx.pos = x; ry.pos = y;
    r_head(&rx, &hx);
    r_head(&ry, &hy);
    if (hx.major != hy.major || hx.v != hy.v) return 0;
    if (hx.major != 3) return 1;
    return memcmp(b + rx.pos, b + ry.pos, (size_t)hx.v) == 0;
}

static int wf_item(wf *c, int depth) {
    head h;
    uint64_t i;
    if (r_head(&c->r, &h)) {
        if (c->r.pos > 0 && c->r.pos <= c->r.len && (c->r.b[c->r.pos - 1] & 31) == 31)
            return wf_bad(c, "CBOR: indefinite length or break: not allowed");
        return wf_bad(c, "CBOR: item cut short or reserved additional information");
    }
    switch (h.major) {
    case 0: case 1: return 0;
    case 2: case 3:
        if (h.v > c->r.len - c->r.pos) return wf_bad(c, "CBOR: a string is longer than the bytes left");
        if (h.major == 3 && !utf8_ok(c->r.b + c->r.pos, (size_t)h.v))
            return wf_bad(c, "CBOR: text string is not valid UTF-8");
        c->r.pos += (size_t)h.v;
        return 0;
    case 4: case 5: {
        size_t base = c->sp;
        if (depth + 1 > LITE_MAX_DEPTH) return wf_bad(c, "CBOR: nested deeper than 32 levels");
        if (h.v > LITE_MAX_ITEMS) return wf_bad(c, "CBOR: more than 1024 items in one array or map");
        if (h.v > c->r.len - c->r.pos) return wf_bad(c, "CBOR: more items than bytes left");
        for (i = 0; i < h.v; i++) {
            if (h.major == 5) {
                size_t at = c->r.pos, k;
                head kh;
                rd peek = c->r;
                if (r_head(&peek, &kh) == 0 && kh.major != 0 && kh.major != 1 && kh.major != 3)
                    return wf_bad(c, "CBOR: a map key is an integer or text");
                if (wf_item(c, depth + 1)) return -1;
                for (k = base; k < c->sp; k++)
                    if (same_key(c->r.b, c->r.len, c->keys[k], at)) return wf_bad(c, "CBOR: duplicate map key");
                if (c->sp >= c->nkeys) { c->nospace = 1; return wf_bad(c, "key scratch too small"); }
                c->keys[c->sp++] = (uint16_t)at;
            }
            if (wf_item(c, depth + 1)) return -1;
        }
        c->sp = base;
        return 0;
    }
    case 6:
        if (h.v != 4 && h.v != 37) return wf_bad(c, "CBOR: tag not allowed");
        return wf_item(c, depth);
    default:
        if (h.ai == 20 || h.ai == 21 || h.ai == 22) return 0;
        if (h.ai >= 25 && h.ai <= 27) {
            if (!isfinite(float_value(&h))) return wf_bad(c, "CBOR: NaN and infinity are not JSON numbers");
            return 0;
        }
        return wf_bad(c, "CBOR: simple value not allowed");
    }
}

/* ---- pass 2: meaning (SPEC 6), JSON out */

typedef struct {
    char *p;
    size_t n, cap;
    int full;
} jout;

static void j_raw(jout *o, const char *s, size_t n) {
    if (o->cap - o->n < n) { o->full = 1; return; }
    memcpy(o->p + o->n, s, n);
    o->n += n;
}
static void j_c(jout *o, char c) { j_raw(o, &c, 1); }
static void j_u64(jout *o, uint64_t v) {
    char b[21];
    int i = 20;
    b[20] = 0;
    do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    j_raw(o, b + i, (size_t)(20 - i));
}

static void j_str(jout *o, const uint8_t *s, size_t n) {
    size_t i;
    j_c(o, '"');
    for (i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') { j_c(o, '\\'); j_c(o, (char)c); }
        else if (c < 0x20) {
            char b[6] = {'\\', 'u', '0', '0', 0, 0};
            b[4] = (char)('0' + (c >> 4));
            b[5] = "0123456789abcdef"[c & 15];
            j_raw(o, b, 6);
        } else j_c(o, (char)c);
    }
    j_c(o, '"');
}

static void j_float(jout *o, double d) {
    char b[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) { /* the shortest text that reads back the same */
        sprintf(b, "%.*g", prec, d);
        if (strtod(b, NULL) == d) break;
    }
    j_raw(o, b, strlen(b));
    if (!strpbrk(b, ".eE")) j_raw(o, ".0", 2);
}

/* n decimal digits of v, zero-padded, at b */
static void put_digits(char *b, uint64_t v, unsigned n) {
    while (n--) {
        b[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

static void j_ts(jout *o, uint64_t epoch, unsigned nd, uint64_t frac) {
    char b[32]; /* "YYYY-MM-DDTHH:MM:SS.FFFFFFFFFZ" */
    int y;
    unsigned m, d, s = (unsigned)(epoch % 86400), n = 19;
    civil_from_days((int64_t)(epoch / 86400), &y, &m, &d);
    memcpy(b, "0000-00-00T00:00:00", 19);
    put_digits(b, (uint64_t)y, 4);
    put_digits(b + 5, m, 2);
    put_digits(b + 8, d, 2);
    put_digits(b + 11, s / 3600, 2);
    put_digits(b + 14, s / 60 % 60, 2);
    put_digits(b + 17, s % 60, 2);
    if (nd) {
        b[n++] = '.';
        put_digits(b + n, frac, nd);
        n += nd;
    }
    b[n++] = 'Z';
    j_c(o, '"');
    j_raw(o, b, n);
    j_c(o, '"');
}

typedef struct {
    const lite_table *t;
    rd r;
    jout o;
    const char *why;
    size_t spent;  /* SPEC 7: text produced from the tables and conversions so far */
    int too_big;   /* ... past LITE_MAX_EXPANSION: the answer is close 1009 */
} dec;

static int d_bad(dec *d, const char *why) {
    if (!d->why) d->why = why;
    return -1;
}

static int d_spend(dec *d, size_t n) {
    d->spent += n;
    if (d->spent <= LITE_MAX_EXPANSION) return 0;
    d->too_big = 1;
    return d_bad(d, "the message expands past 65536 bytes of names and values");
}

static void j_hex(jout *o, const uint8_t *s, size_t n, int uuid) {
    static const char hx[] = "0123456789ABCDEF", lx[] = "0123456789abcdef";
    size_t i;
    j_c(o, '"');
    for (i = 0; i < n; i++) {
        if (uuid && (i == 4 || i == 6 || i == 8 || i == 10)) j_c(o, '-');
        j_c(o, (uuid ? lx : hx)[s[i] >> 4]);
        j_c(o, (uuid ? lx : hx)[s[i] & 15]);
    }
    j_c(o, '"');
}

/* Pass 1 has vouched for well-formedness, so heads here never fail. */
static int d_value(dec *d, long key, int raw) {
    head h;
    uint64_t i;
    int cls = key >= 0 && !raw ? d->t->key_class[key] : LITE_KEY_PLAIN;
    r_head(&d->r, &h);
    switch (h.major) {
    case 0:
        if (cls == LITE_KEY_ENUM) {
            if (h.v >= d->t->enum_count[key]) return d_bad(d, "unknown enum value number");
            {
                const char *v = d->t->values[d->t->enum_first[key] + h.v];
                if (d_spend(d, strlen(v))) return -1;
                j_str(&d->o, (const uint8_t *)v, strlen(v));
            }
        } else if (cls == LITE_KEY_DATETIME) {
            if (h.v > MAX_EPOCH) return d_bad(d, "timestamp outside 1970..9999");
            if (d_spend(d, 20)) return -1; /* YYYY-MM-DDTHH:MM:SSZ */
            j_ts(&d->o, h.v, 0, 0);
        } else {
            j_u64(&d->o, h.v);
        }
        return 0;
    case 1:
        if (cls == LITE_KEY_ENUM || cls == LITE_KEY_DATETIME)
            return d_bad(d, "a negative integer under an enum or date-time key");
        j_c(&d->o, '-');
        if (h.v == UINT64_MAX) j_raw(&d->o, "18446744073709551616", 20);
        else j_u64(&d->o, h.v + 1);
        return 0;
    case 2:
        if (h.v < 4) return d_bad(d, "a byte string carries at least 4 bytes");
        if (d_spend(d, 2 * (size_t)h.v)) return -1;
        j_hex(&d->o, d->r.b + d->r.pos, (size_t)h.v, 0);
        d->r.pos += (size_t)h.v;
        return 0;
    case 3:
        j_str(&d->o, d->r.b + d->r.pos, (size_t)h.v);
        d->r.pos += (size_t)h.v;
        return 0;
    case 4:
        j_c(&d->o, '[');
        for (i = 0; i < h.v; i++) {
            if (i) j_c(&d->o, ',');
            if (d_value(d, key, raw)) return -1;
        }
        j_c(&d->o, ']');
        return 0;
    case 5:
        j_c(&d->o, '{');
        for (i = 0; i < h.v; i++) {
            head kh;
            long k = -1;
            if (i) j_c(&d->o, ',');
            r_head(&d->r, &kh);
            if (kh.major == 0) {
                if (kh.v >= d->t->n_keys) return d_bad(d, "unknown key number");
                k = (long)kh.v;
                if (d_spend(d, strlen(d->t->keys[k]))) return -1;
                j_str(&d->o, (const uint8_t *)d->t->keys[k], strlen(d->t->keys[k]));
            } else if (kh.major == 3) {
                const char *s = (const char *)d->r.b + d->r.pos;
                if (find_name(d->t->keys, d->t->keys_sorted, d->t->n_keys, s, (size_t)kh.v) >= 0)
                    return d_bad(d, "a key sent as text although it has a number");
                j_str(&d->o, d->r.b + d->r.pos, (size_t)kh.v);
                d->r.pos += (size_t)kh.v;
            } else {
                return d_bad(d, "unknown key number (negative)");
            }
            j_c(&d->o, ':');
            if (d_value(d, k, raw || (k >= 0 && d->t->key_class[k] == LITE_KEY_RAW))) return -1;
        }
        j_c(&d->o, '}');
        return 0;
    case 6:
        if (h.v == 37) {
            head b;
            r_head(&d->r, &b);
            if (b.major != 2 || b.v != 16) return d_bad(d, "tag 37 must hold a 16-byte string");
            if (d_spend(d, 36)) return -1;
            j_hex(&d->o, d->r.b + d->r.pos, 16, 1);
            d->r.pos += 16;
            return 0;
        } else {
            head a, ex, mant;
            uint64_t p10 = 1;
            unsigned k;
            if (cls != LITE_KEY_DATETIME) return d_bad(d, "tag 4 is allowed only on a date-time key");
            r_head(&d->r, &a);
            if (a.major != 4 || a.v != 2) return d_bad(d, "tag 4 holds [exponent, mantissa]");
            r_head(&d->r, &ex);
            if (ex.major != 1 || ex.v > 8) return d_bad(d, "tag 4 exponent must be -1 .. -9");
            r_head(&d->r, &mant);
            if (mant.major != 0) return d_bad(d, "tag 4 mantissa must be a non-negative integer");
            for (k = 0; k <= ex.v; k++) p10 *= 10;
            if (mant.v / p10 > MAX_EPOCH) return d_bad(d, "timestamp outside 1970..9999");
            if (d_spend(d, 21 + (size_t)ex.v + 1)) return -1; /* ...SS.FZ, n digits */
            j_ts(&d->o, mant.v / p10, (unsigned)ex.v + 1, mant.v % p10);
            return 0;
        }
    default:
        if (h.ai == 20) j_raw(&d->o, "false", 5);
        else if (h.ai == 21) j_raw(&d->o, "true", 4);
        else if (h.ai == 22) j_raw(&d->o, "null", 4);
        else j_float(&d->o, float_value(&h));
        return 0;
    }
}

/* SPEC 5.3: reads a message id into buf; 0 when readable. */
static int read_id(rd *r, char *buf, size_t *len) {
    head h;
    if (r_head(r, &h)) return -1;
    if (h.major == 0) {
        jout o;
        o.p = buf; o.n = 0; o.cap = LITE_MAX_ID; o.full = 0;
        j_u64(&o, h.v);
        buf[o.n] = 0;
        *len = o.n;
        return 0;
    }
    if (h.major == 3) {
        if (h.v < 1 || h.v > 4 * LITE_MAX_ID || h.v > r->len - r->pos) return -1;
        if (!utf8_ok(r->b + r->pos, (size_t)h.v)) return -1;
        if (utf8_chars((const char *)r->b + r->pos, (size_t)h.v) > LITE_MAX_ID) return -1;
        memcpy(buf, r->b + r->pos, (size_t)h.v);
        buf[h.v] = 0;
        *len = (size_t)h.v;
        r->pos += (size_t)h.v;
        return 0;
    }
    if (h.major == 6 && h.v == 37) {
        head b;
        char tmp[40];
        jout o;
        if (r_head(r, &b) || b.major != 2 || b.v != 16 || r->len - r->pos < 16) return -1;
        o.p = tmp; o.n = 0; o.cap = sizeof tmp; o.full = 0;
        j_hex(&o, r->b + r->pos, 16, 1);
        memcpy(buf, tmp + 1, 36);
        buf[36] = 0;
        *len = 36;
        r->pos += 16;
        return 0;
    }
    return -1;
}

static const char *code_format(const lite_table *t) { return t->is_16 ? "FormationViolation" : "FormatViolation"; }

static int answer(lite_answer *a, int kind, int close, const char *code, const char *why) {
    a->kind = kind;
    a->close_code = close;
    a->code = code;
    if (!a->why) a->why = why;
    return kind;
}

int lite_decode_body(const lite_table *t, const uint8_t *body, size_t body_len,
                     uint16_t *scratch, size_t scratch_slots, char *out, size_t cap,
                     size_t *out_len, lite_answer *ans) {
    rd pre;
    head ah, th;
    int prefix_ok, type_ok, well;
    int64_t type = -1;
    wf c;
    dec d;
    uint64_t i;
    memset(ans, 0, sizeof *ans);
    *out_len = 0;
    if (body_len > LITE_MAX_BODY) return answer(ans, LITE_CLOSE, 1009, 0, "body larger than 65536 bytes");
    /* The frame prefix: array head, message type, id (SPEC 8 "readable"). */
    pre.b = body; pre.pos = 0; pre.len = body_len;
    prefix_ok = r_head(&pre, &ah) == 0 && ah.major == 4 && ah.v >= 2 && r_head(&pre, &th) == 0 &&
                (th.major == 0 || th.major == 1) && read_id(&pre, ans->id, &ans->id_len) == 0;
    if (prefix_ok) type = th.major == 0 && th.v <= 6 ? (int64_t)th.v : -1;
    type_ok = type >= 2 && type <= 6 && (t->is_21 || type <= 4);

    c.r.b = body; c.r.pos = 0; c.r.len = body_len; c.keys = scratch; c.nkeys = scratch_slots;
    c.sp = 0; c.why = 0; c.nospace = 0;
    well = wf_item(&c, 0) == 0;
    if (well && c.r.pos != body_len) { well = 0; c.why = "CBOR: trailing bytes after the item"; }
    if (c.nospace) return answer(ans, LITE_NOSPACE, 0, 0, c.why);
    if (!well) {
        if (!prefix_ok || !type_ok) return answer(ans, LITE_CLOSE, 1007, 0, c.why);
        if (type == 2 || type == 6) return answer(ans, LITE_CALLERROR, 0, code_format(t), c.why);
        return answer(ans, LITE_DROP, 0, 0, c.why);
    }
    if (!prefix_ok) return answer(ans, LITE_CLOSE, 1007, 0, "a body is an array [type, id, ...] with a readable id");
    if (!type_ok)
        return answer(ans, LITE_CALLERROR, 0, t->is_16 ? "ProtocolError" : "MessageTypeNotSupported",
                      "message type not supported on this protocol");
    {
        static const uint8_t want[7] = {0, 0, 4, 3, 5, 5, 4};
        int last_is_map;
        rd look = pre;
        head x;
        int call = type == 2 || type == 6;
        /* walk to the last element to see it is a map: skip items with pass-1 guarantees */
        d.t = t; d.r = pre; d.why = 0; d.spent = 0; d.too_big = 0;
        if (ah.v != want[type]) {
            if (call) return answer(ans, LITE_CALLERROR, 0, t->is_16 ? "FormationViolation" : "RpcFrameworkError",
                                    "wrong number of elements");
            return answer(ans, LITE_DROP, 0, 0, "wrong number of elements");
        }
        for (i = 2; i + 1 < ah.v; i++) { /* the items between the id and the payload */
            size_t depth_items = 1;
            while (depth_items) {
                r_head(&look, &x);
                depth_items--;
                if (x.major == 2 || x.major == 3) look.pos += (size_t)x.v;
                else if (x.major == 4) depth_items += (size_t)x.v;
                else if (x.major == 5) depth_items += 2 * (size_t)x.v;
                else if (x.major == 6) depth_items++;
            }
        }
        r_head(&look, &x);
        last_is_map = x.major == 5;
        if (!last_is_map) {
            if (call) return answer(ans, LITE_CALLERROR, 0, t->is_16 ? "FormationViolation" : "RpcFrameworkError",
                                    "the payload is not a map");
            return answer(ans, LITE_DROP, 0, 0, "the payload or details are not a map");
        }
        /* now decode for real: [type,"id",...] */
        d.o.p = out; d.o.n = 0; d.o.cap = cap; d.o.full = 0;
        j_c(&d.o, '[');
        j_u64(&d.o, (uint64_t)type);
        j_c(&d.o, ',');
        j_str(&d.o, (const uint8_t *)ans->id, ans->id_len);
        j_c(&d.o, ',');
        if (call) {
            r_head(&d.r, &x);
            if (x.major == 0) {
                if (x.v >= t->n_actions) return answer(ans, LITE_CALLERROR, 0, "NotImplemented", "unknown action number");
                j_str(&d.o, (const uint8_t *)t->actions[x.v], strlen(t->actions[x.v]));
            } else if (x.major == 3) {
                if (x.v == 0) return answer(ans, LITE_CALLERROR, 0, "NotImplemented", "unknown action ''");
                j_str(&d.o, d.r.b + d.r.pos, (size_t)x.v);
                d.r.pos += (size_t)x.v;
            } else { /* as the reference does: an action of another type is no known action */
                return answer(ans, LITE_CALLERROR, 0, "NotImplemented", "unknown action (not a number or text)");
            }
            j_c(&d.o, ',');
            if (d_value(&d, -1, 0)) return d.too_big ? answer(ans, LITE_CLOSE, 1009, 0, d.why)
                                               : answer(ans, LITE_CALLERROR, 0, code_format(t), d.why);
        } else if (type == 3) {
            if (d_value(&d, -1, 0)) return answer(ans, d.too_big ? LITE_CLOSE : LITE_DROP, d.too_big ? 1009 : 0, 0, d.why);
        } else {
            head dh;
            r_head(&d.r, &x);
            if (x.major == 0 && x.v < t->n_errors) {
                j_str(&d.o, (const uint8_t *)t->errors[x.v], strlen(t->errors[x.v]));
            } else if (x.major == 3 && x.v > 0) {
                j_str(&d.o, d.r.b + d.r.pos, (size_t)x.v);
                d.r.pos += (size_t)x.v;
            } else {
                return answer(ans, LITE_DROP, 0, 0, "a CALLERROR carries a known error code and a text description");
            }
            r_head(&d.r, &dh);
            if (dh.major != 3) return answer(ans, LITE_DROP, 0, 0, "a CALLERROR carries a text description");
            j_c(&d.o, ',');
            j_str(&d.o, d.r.b + d.r.pos, (size_t)dh.v);
            d.r.pos += (size_t)dh.v;
            j_c(&d.o, ',');
            if (d_value(&d, -1, 1)) return answer(ans, d.too_big ? LITE_CLOSE : LITE_DROP, d.too_big ? 1009 : 0, 0, d.why);
        }
        j_c(&d.o, ']');
        if (d.o.full) return answer(ans, LITE_NOSPACE, 0, 0, "JSON output buffer too small");
        *out_len = d.o.n;
    }
    return answer(ans, LITE_OK, 0, 0, 0);
}

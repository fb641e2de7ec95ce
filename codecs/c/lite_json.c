/* lite_json.c: a minimal in-place JSON tokenizer (RFC 8259) for the encoder's input.
 * Strings are unescaped into the buffer itself (the result is never longer), so the
 * encoder copies string bytes straight into CBOR. No allocation: tokens are the caller's. */
#include "lite.h"

#include <string.h>

#define JSON_MAX_DEPTH LITE_MAX_DEPTH /* bounds the recursion; deeper cannot be encoded anyway */

typedef struct {
    char *s;
    size_t pos, len;
    lite_tok *tok;
    size_t ntok, used;
    const char *err;
} jp;

static void ws(jp *p) {
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static long newtok(jp *p, uint8_t type) {
    lite_tok *t;
    if (p->used >= p->ntok) {
        p->err = "JSON: too many tokens";
        return -1;
    }
    t = &p->tok[p->used];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->start = (uint32_t)p->pos;
    return (long)p->used++;
}

static int hex4(const char *s, unsigned *v) {
    int i;
    *v = 0;
    for (i = 0; i < 4; i++) {
        char c = s[i];
        *v <<= 4;
        if (c >= '0' && c <= '9') *v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') *v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') *v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    return 0;
}

static size_t put_utf8(char *d, unsigned cp) {
    if (cp < 0x80) { d[0] = (char)cp; return 1; }
    if (cp < 0x800) { d[0] = (char)(0xC0 | (cp >> 6)); d[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | (cp >> 12)); d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    d[0] = (char)(0xF0 | (cp >> 18)); d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* p->pos at the opening quote; the unescaped bytes are written from the quote on. */
static int string(jp *p, long ti) {
    size_t w = p->pos, r = p->pos + 1;
    p->tok[ti].start = (uint32_t)w;
    while (r < p->len && p->s[r] != '"') {
        unsigned char c = (unsigned char)p->s[r];
        if (c < 0x20) { p->err = "JSON: control character in a string"; return -1; }
        if (c != '\\') { p->s[w++] = p->s[r++]; continue; }
        if (r + 1 >= p->len) break;
        c = (unsigned char)p->s[r + 1];
        r += 2;
        switch (c) {
        case '"': p->s[w++] = '"'; break;
        case '\\': p->s[w++] = '\\'; break;
        case '/': p->s[w++] = '/'; break;
        case 'b': p->s[w++] = '\b'; break;
        case 'f': p->s[w++] = '\f'; break;
        case 'n': p->s[w++] = '\n'; break;
        case 'r': p->s[w++] = '\r'; break;
        case 't': p->s[w++] = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (r + 4 > p->len || hex4(p->s + r, &cp)) { p->err = "JSON: bad \\u escape"; return -1; }
            r += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (r + 6 > p->len || p->s[r] != '\\' || p->s[r + 1] != 'u' || hex4(p->s + r + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF) {
                    p->err = "JSON: lone surrogate";
                    return -1;
                }
                r += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                p->err = "JSON: lone surrogate";
                return -1;
            }
            w += put_utf8(p->s + w, cp); /* 6 input bytes >= 3 output bytes: never overtakes r */
            break;
        }
        default: p->err = "JSON: bad escape"; return -1;
        }
    }
    if (r >= p->len) { p->err = "JSON: unterminated string"; return -1; }
    p->tok[ti].len = (uint32_t)(w - p->pos);
    p->pos = r + 1;
    return 0;
}

static int value(jp *p, int depth);

static int number(jp *p, long ti) {
    size_t b = p->pos;
    const char *s = p->s;
    if (p->pos < p->len && s[p->pos] == '-') p->pos++;
    if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') { p->err = "JSON: bad number"; return -1; }
    if (s[p->pos] == '0') p->pos++;
    else while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    if (p->pos < p->len && s[p->pos] == '.') {
        p->tok[ti].isfloat = 1;
        p->pos++;
        if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') { p->err = "JSON: bad number"; return -1; }
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    }
    if (p->pos < p->len && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
        p->tok[ti].isfloat = 1;
        p->pos++;
        if (p->pos < p->len && (s[p->pos] == '+' || s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') { p->err = "JSON: bad number"; return -1; }
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    }
    p->tok[ti].len = (uint32_t)(p->pos - b);
    return 0;
}

static int literal(jp *p, const char *word, long ti) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) { p->err = "JSON: bad literal"; return -1; }
    p->pos += n;
    p->tok[ti].len = (uint32_t)n;
    return 0;
}

static int container(jp *p, long ti, int depth, char close) {
    p->pos++;
    ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) { p->pos++; return 0; }
    for (;;) {
        if (close == '}') {
            long k;
            ws(p);
            if (p->pos >= p->len || p->s[p->pos] != '"') { p->err = "JSON: object key expected"; return -1; }
            if ((k = newtok(p, LITE_J_STR)) < 0 || string(p, k)) return -1;
            p->tok[k].span = 1;
            ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') { p->err = "JSON: ':' expected"; return -1; }
            p->pos++;
        }
        if (value(p, depth + 1)) return -1;
        p->tok[ti].count++;
        ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') { p->pos++; continue; }
        if (p->pos < p->len && p->s[p->pos] == close) { p->pos++; return 0; }
        p->err = "JSON: ',' or end of container expected";
        return -1;
    }
}

static int value(jp *p, int depth) {
    long ti;
    int rc;
    char c;
    ws(p);
    if (p->pos >= p->len) { p->err = "JSON: value expected"; return -1; }
    if (depth > JSON_MAX_DEPTH) { p->err = "JSON: nested too deep"; return -1; }
    c = p->s[p->pos];
    switch (c) {
    case '{': ti = newtok(p, LITE_J_OBJ); break;
    case '[': ti = newtok(p, LITE_J_ARR); break;
    case '"': ti = newtok(p, LITE_J_STR); break;
    case 't': ti = newtok(p, LITE_J_TRUE); break;
    case 'f': ti = newtok(p, LITE_J_FALSE); break;
    case 'n': ti = newtok(p, LITE_J_NULL); break;
    default: ti = newtok(p, LITE_J_NUM); break;
    }
    if (ti < 0) return -1;
    switch (c) {
    case '{': rc = container(p, ti, depth, '}'); break;
    case '[': rc = container(p, ti, depth, ']'); break;
    case '"': rc = string(p, ti); break;
    case 't': rc = literal(p, "true", ti); break;
    case 'f': rc = literal(p, "false", ti); break;
    case 'n': rc = literal(p, "null", ti); break;
    default: rc = number(p, ti); break;
    }
    p->tok[ti].span = (uint32_t)(p->used - (size_t)ti);
    return rc;
}

long lite_json_parse(char *json, size_t len, lite_tok *tok, size_t ntok, const char **err) {
    jp p;
    p.s = json; p.pos = 0; p.len = len; p.tok = tok; p.ntok = ntok; p.used = 0; p.err = 0;
    if (value(&p, 1) == 0) {
        ws(&p);
        if (p.pos == p.len) return (long)p.used;
        p.err = "JSON: trailing characters";
    }
    if (err) *err = p.err;
    return -1;
}

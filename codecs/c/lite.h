/* lite.h: the lite link (codecs/SPEC.md, lite1) for C99 firmware.
 *
 * Encoder: one OCPP-J message as JSON text -> one lite frame (format 00, plain CBOR).
 * Decoder: one lite frame (format 00 or 01) -> the OCPP-J message as JSON text, or the
 * answer SPEC section 8 requires (close code, CALLERROR, drop).
 * No malloc: every buffer is the caller's. zstd (format 01) lives in lite_zstd.c.
 */
#ifndef LITE_H
#define LITE_H

#include <stddef.h>
#include <stdint.h>

#define LITE_MAX_MESSAGE 65536u /* SPEC 7: binary message, format byte included */
#define LITE_MAX_BODY 65536u    /* SPEC 7: decoded body */
#define LITE_MAX_DEPTH 32       /* SPEC 7: nesting, the message array is level 1 */
#define LITE_MAX_ITEMS 1024u    /* SPEC 7: items of one array, pairs of one map */
#define LITE_MAX_EXPANSION 65536u /* SPEC 7: text the payload rules produce per message */
#define LITE_MAX_ID 36u         /* SPEC 7: message id text, in characters (up to 4 bytes each) */

/* One protocol's tables (SPEC 5.5), generated into lite_tables.c. */
enum { LITE_KEY_PLAIN = 0, LITE_KEY_ENUM = 1, LITE_KEY_DATETIME = 2, LITE_KEY_RAW = 3 };
typedef struct lite_table {
    const char *protocol;
    int is_16; /* 1.6 spells error codes differently (SPEC 8) */
    int is_21; /* types 5 and 6 exist (SPEC 5.2) */
    const char *const *actions;
    const uint16_t *actions_sorted;
    uint16_t n_actions;
    const char *const *errors;
    const uint16_t *errors_sorted;
    uint16_t n_errors;
    const char *const *keys;
    const uint16_t *keys_sorted;
    uint16_t n_keys;
    const uint8_t *key_class;
    const uint16_t *enum_first;
    const uint8_t *enum_count;
    const char *const *values;
} lite_table;

extern const lite_table lite_table_ocpp16, lite_table_ocpp201, lite_table_ocpp21;
/* "ocpp1.6", "ocpp2.0.1" or "ocpp2.1" -> its table, else NULL. */
const lite_table *lite_table_find(const char *protocol);

/* ---- decoding (SPEC 3, 5, 6, 8) ---- */
enum { LITE_OK = 0, LITE_CLOSE = 1, LITE_CALLERROR = 2, LITE_DROP = 3, LITE_NOSPACE = 4 };

typedef struct lite_answer {
    int kind;               /* LITE_OK ... LITE_NOSPACE */
    int close_code;         /* LITE_CLOSE: 1003, 1007, 1009 or 4010 */
    char id[4 * LITE_MAX_ID + 1]; /* LITE_CALLERROR: the CALL's id, as decoded (UTF-8) */
    size_t id_len;          /* its length in bytes (an id may hold U+0000) */
    const char *code;       /* LITE_CALLERROR: the error code, spelled per version */
    const char *why;        /* one line for the log */
} lite_answer;

/* Decode a CBOR body (no format byte) into JSON text in out[0..cap).
 * scratch: uint16 slots for duplicate-key checks; body_len / 2 + 1 always suffice.
 * Returns the answer kind; on LITE_OK *out_len is the JSON length (no NUL written).
 * LITE_NOSPACE means out or scratch is too small (a local limit, not the peer's fault). */
int lite_decode_body(const lite_table *t, const uint8_t *body, size_t body_len,
                     uint16_t *scratch, size_t scratch_slots, char *out, size_t cap,
                     size_t *out_len, lite_answer *ans);

/* ---- encoding (SPEC 5, 6) ---- */
typedef struct lite_tok {
    uint8_t type;   /* LITE_J_* */
    uint8_t isfloat;
    uint32_t start; /* offset in the JSON text (strings: unescaped bytes in place) */
    uint32_t len;
    uint32_t count; /* members (objects) or elements (arrays) */
    uint32_t span;  /* tokens in this value's subtree, itself included */
} lite_tok;
enum { LITE_J_OBJ = 1, LITE_J_ARR, LITE_J_STR, LITE_J_NUM, LITE_J_TRUE, LITE_J_FALSE, LITE_J_NULL };

/* Tokenize JSON text in place (string escapes are resolved into the buffer itself).
 * Returns the number of tokens, or -1 on bad JSON / too many tokens (*err says which). */
long lite_json_parse(char *json, size_t len, lite_tok *tok, size_t ntok, const char **err);

/* Encode one OCPP-J message (a JSON array, tokenized above) as a format-00 frame.
 * idx: uint32 scratch for sorting map members; ntok slots always suffice.
 * Returns 0, or -1 with *err (the message breaks a rule or a limit, or out is too small). */
int lite_encode(const lite_table *t, const char *json, const lite_tok *tok, size_t ntok,
                uint32_t *idx, size_t nidx, uint8_t *out, size_t cap, size_t *out_len,
                const char **err);

#endif

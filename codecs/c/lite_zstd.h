/* lite_zstd.h: lite1 frames (SPEC 3 and 4): the format byte, zstd magicless frames with
 * a shared dictionary. One decompression context and the digested dictionaries serve
 * every connection; nothing is kept per connection or per message. */
#ifndef LITE_ZSTD_H
#define LITE_ZSTD_H

#include "lite.h"

#define LITE_MAX_DICTS 4

typedef struct lite_zstd {
    struct ZSTD_DCtx_s *dctx;
    struct ZSTD_CCtx_s *cctx; /* only for lite_compress */
    int n;
    uint32_t id[LITE_MAX_DICTS];
    struct ZSTD_DDict_s *ddict[LITE_MAX_DICTS];
    struct ZSTD_CDict_s *cdict[LITE_MAX_DICTS]; /* NULL unless lite_zstd_add(..., compress=1) */
    const void *dict[LITE_MAX_DICTS]; /* the .zdict bytes, for LITE_ZSTD_NO_DDICT */
    size_t dict_len[LITE_MAX_DICTS];
} lite_zstd;

/* Built with -DLITE_ZSTD_NO_DDICT, the decoder keeps no digested dictionary (a DDict holds
 * its own ~27 KiB of entropy tables): each frame re-reads the dictionary's tables into the
 * one decompression context (ZSTD_decompress_usingDict), trading microseconds for RAM. */

/* 0 ok, -1 out of memory. */
int lite_zstd_init(lite_zstd *z);
void lite_zstd_free(lite_zstd *z);
/* Adds a published dictionary (the .zdict bytes, referenced, not copied: keep them alive).
 * compress=1 also digests it for compression. Returns its id, or 0 on error. */
uint32_t lite_zstd_add(lite_zstd *z, const void *dict, size_t len, int compress);

/* Decodes one binary WebSocket message (format byte first) to JSON text in out.
 * body_buf: LITE_MAX_BODY bytes for format 01 (unused for format 00).
 * Returns the answer kind (lite.h); see lite_decode_body for scratch and out. */
int lite_decode_frame(const lite_table *t, lite_zstd *z, const uint8_t *msg, size_t len,
                      uint8_t *body_buf, uint16_t *scratch, size_t scratch_slots, char *out,
                      size_t cap, size_t *out_len, lite_answer *ans);

/* Compresses a format-00 frame with dictionary dict_id into out as format 01, and keeps
 * the shorter of the two (SPEC 3). Returns the length written to out, 0 on error. */
size_t lite_compress(lite_zstd *z, uint32_t dict_id, const uint8_t *frame, size_t len,
                     uint8_t *out, size_t cap);

#endif

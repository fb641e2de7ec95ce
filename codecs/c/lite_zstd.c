/* lite_zstd.c: the frame layer of lite1 (SPEC 3, 4, 7, 8). The zstd frame header is
 * checked by hand, from the SPEC's rules, before libzstd sees a byte. */
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_d_format / ZSTD_c_format: the magicless format */
#include "lite_zstd.h"

#include <string.h>
#include <zstd.h>

int lite_zstd_init(lite_zstd *z) {
    memset(z, 0, sizeof *z);
    z->dctx = ZSTD_createDCtx();
    if (!z->dctx) return -1;
    if (ZSTD_isError(ZSTD_DCtx_setParameter(z->dctx, ZSTD_d_format, ZSTD_f_zstd1_magicless))) return -1;
    return 0;
}

void lite_zstd_free(lite_zstd *z) {
    int i;
    for (i = 0; i < z->n; i++) {
        ZSTD_freeDDict(z->ddict[i]);
        ZSTD_freeCDict(z->cdict[i]);
    }
    ZSTD_freeDCtx(z->dctx);
    ZSTD_freeCCtx(z->cctx);
    memset(z, 0, sizeof *z);
}

uint32_t lite_zstd_add(lite_zstd *z, const void *dict, size_t len, int compress) {
    uint32_t id = ZSTD_getDictID_fromDict(dict, len);
    if (id == 0 || z->n >= LITE_MAX_DICTS) return 0;
    z->dict[z->n] = dict;
    z->dict_len[z->n] = len;
#ifndef LITE_ZSTD_NO_DDICT
    z->ddict[z->n] = ZSTD_createDDict_advanced(dict, len, ZSTD_dlm_byRef, ZSTD_dct_fullDict,
                                               ZSTD_defaultCMem);
    if (!z->ddict[z->n]) return 0;
#endif
    z->cdict[z->n] = NULL;
    if (compress) {
        z->cdict[z->n] = ZSTD_createCDict_byReference(dict, len, 19);
        if (!z->cdict[z->n]) return 0;
    }
    z->id[z->n++] = id;
    return id;
}

static int closed(lite_answer *a, int code, const char *why) {
    memset(a, 0, sizeof *a);
    a->kind = LITE_CLOSE;
    a->close_code = code;
    a->why = why;
    return LITE_CLOSE;
}

int lite_decode_frame(const lite_table *t, lite_zstd *z, const uint8_t *msg, size_t len,
                      uint8_t *body_buf, uint16_t *scratch, size_t scratch_slots, char *out,
                      size_t cap, size_t *out_len, lite_answer *ans) {
    static const size_t id_size[4] = {0, 1, 2, 4}, fcs_size[4] = {1, 2, 4, 8};
    const uint8_t *f;
    size_t flen, hlen, i, r;
    uint8_t fhd;
    uint32_t dict_id = 0;
    uint64_t fcs = 0;
    ZSTD_DDict *dd = NULL;
    int known = 0;
    const void *dict = NULL;
    size_t dict_len = 0;
    *out_len = 0;
    if (len == 0) return closed(ans, 1007, "empty frame");
    if (len > LITE_MAX_MESSAGE) return closed(ans, 1009, "binary message larger than 65536 bytes");
    if (msg[0] == 0x00)
        return lite_decode_body(t, msg + 1, len - 1, scratch, scratch_slots, out, cap, out_len, ans);
    if (msg[0] != 0x01) return closed(ans, 1007, "unknown frame format");
    /* SPEC 4.2: FHD | Dictionary_ID | Frame_Content_Size, all checked before decompressing */
    f = msg + 1;
    flen = len - 1;
    if (flen < 1) return closed(ans, 1007, "zstd frame header is cut short");
    fhd = f[0];
    if (!(fhd & 0x20) || (fhd & 0x04) || (fhd & 0x08))
        return closed(ans, 1007, "zstd frame must be single-segment, without checksum, reserved bit clear");
    hlen = 1 + id_size[fhd & 3] + fcs_size[fhd >> 6];
    if (flen < hlen) return closed(ans, 1007, "zstd frame header is cut short");
    for (i = 0; i < id_size[fhd & 3]; i++) dict_id |= (uint32_t)f[1 + i] << (8 * i);
    for (i = 0; i < fcs_size[fhd >> 6]; i++) fcs |= (uint64_t)f[1 + id_size[fhd & 3] + i] << (8 * i);
    if (fcs_size[fhd >> 6] == 2) fcs += 256;
    if (fcs > LITE_MAX_BODY) return closed(ans, 1009, "zstd frame declares more than 65536 bytes");
    if (fcs == 0) return closed(ans, 1007, "zstd frame declares 0 bytes");
    known = dict_id == 0;
    if (dict_id != 0) {
        for (i = 0; i < (size_t)z->n; i++)
            if (z->id[i] == dict_id) {
                dd = z->ddict[i];
                dict = z->dict[i];
                dict_len = z->dict_len[i];
                known = 1;
            }
        if (!known) return closed(ans, 4010, "unknown dictionary");
    }
    /* One frame and nothing after it (libzstd would read a second frame as more data):
     * walk the block headers (RFC 8878 3.1.1.2) to where the last block ends. */
    for (i = hlen;;) {
        uint32_t bh, bsize;
        if (flen - i < 3) return closed(ans, 1007, "zstd frame ends early");
        bh = (uint32_t)f[i] | (uint32_t)f[i + 1] << 8 | (uint32_t)f[i + 2] << 16;
        if ((bh >> 1 & 3) == 3) return closed(ans, 1007, "zstd block type reserved");
        bsize = (bh >> 1 & 3) == 1 ? 1 : bh >> 3; /* an RLE block stores one byte */
        if (flen - i - 3 < bsize) return closed(ans, 1007, "zstd frame ends early");
        i += 3 + bsize;
        if (bh & 1) break;
    }
    if (i != flen) return closed(ans, 1007, "bytes follow the zstd frame");
#ifdef LITE_ZSTD_NO_DDICT
    (void)dd;
    r = ZSTD_decompress_usingDict(z->dctx, body_buf, (size_t)fcs, f, flen, dict, dict_len);
#else
    (void)dict;
    (void)dict_len;
    if (ZSTD_isError(ZSTD_DCtx_refDDict(z->dctx, dd))) return closed(ans, 1007, "zstd: cannot use the dictionary");
    r = ZSTD_decompressDCtx(z->dctx, body_buf, (size_t)fcs, f, flen);
    ZSTD_DCtx_refDDict(z->dctx, NULL);
#endif
    if (ZSTD_isError(r) || r != fcs) return closed(ans, 1007, "zstd: frame does not decompress");
    return lite_decode_body(t, body_buf, (size_t)fcs, scratch, scratch_slots, out, cap, out_len, ans);
}

size_t lite_compress(lite_zstd *z, uint32_t dict_id, const uint8_t *frame, size_t len,
                     uint8_t *out, size_t cap) {
    ZSTD_CDict *cd = NULL;
    size_t r, i;
    for (i = 0; i < (size_t)z->n; i++)
        if (z->id[i] == dict_id) cd = z->cdict[i];
    if (!cd || len < 1 || frame[0] != 0x00 || cap < len) return 0;
    if (!z->cctx) {
        z->cctx = ZSTD_createCCtx();
        if (!z->cctx) return 0;
        ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_format, ZSTD_f_zstd1_magicless);
        ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_contentSizeFlag, 1);
        ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 0);
        ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_dictIDFlag, 1);
    }
    ZSTD_CCtx_refCDict(z->cctx, cd);
    out[0] = 0x01;
    r = ZSTD_compress2(z->cctx, out + 1, cap - 1, frame + 1, len - 1);
    ZSTD_CCtx_refCDict(z->cctx, NULL);
    if (!ZSTD_isError(r) && r + 1 < len) return r + 1;
    memcpy(out, frame, len); /* plain is shorter: keep it */
    return len;
}

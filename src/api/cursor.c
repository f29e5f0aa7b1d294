/* DRF's cursor strings: decoding as DRF 3.14's decode_cursor (with the peer's ASCII integers
 * and checked position) and encoding as its encode_cursor, byte for byte. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "percent.h"
#include "cursor.h"
#include "dmj/query.h"
#include "dmj/time.h"
#include "number.h"

/* Decoded cursor text up to this size is decoded on the stack; longer (legal, if odd:
 * padding fields, leading zeros) goes to the heap. */
#define CURSOR_STACK_BYTES 512

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* CPython 3.11 binascii.a2b_base64(s, strict_mode=False): characters outside the alphabet
 * are skipped; '=' counts as padding only from the third place of a quad on, and the pad
 * that completes a quad ends the input; a partial quad at the end is an error. `out` has
 * room for len * 3 / 4 bytes. */
static int a2b_base64(const unsigned char *s, size_t len, unsigned char *out, size_t *out_len)
{
    size_t n = 0;
    unsigned quad = 0, pads = 0;
    unsigned char left = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c == '=') {
            /* As CPython: pads only count (and only then increment) from the third place. */
            if (quad >= 2 && quad + ++pads >= 4)
                goto done;
            continue;
        }
        int v = b64val(c);
        if (v < 0)
            continue;
        pads = 0;
        switch (quad) {
        case 0:
            left = (unsigned char)v;
            quad = 1;
            break;
        case 1:
            out[n++] = (unsigned char)((left << 2) | (v >> 4));
            left = (unsigned char)(v & 0x0f);
            quad = 2;
            break;
        case 2:
            out[n++] = (unsigned char)((left << 4) | (v >> 2));
            left = (unsigned char)(v & 0x03);
            quad = 3;
            break;
        default:
            out[n++] = (unsigned char)((left << 6) | v);
            quad = 0;
            break;
        }
    }
    if (quad != 0)
        return DMJ_EBADCURSOR; /* "Incorrect padding" or one character too many */
done:
    *out_len = n;
    return 0;
}

/* unquote_plus to bytes, in place; returns the new length. Which text those bytes stand for
 * after UTF-8 decoding does not matter here: o, r and p accept only ASCII, and a key is
 * "o", "r" or "p" exactly when its bytes are. */
static size_t unquote_in_place(unsigned char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n;)
        s[k++] = dmj_percent_next(s, n, &i, true, NULL); /* k <= i: read before written */
    return k;
}

static bool all_ascii(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= 0x80)
            return false;
    }
    return true;
}

/* The first value of each of o, r, p, decoded (parse_qs, keep_blank_values=True). */
struct tokens {
    const unsigned char *v[3];
    size_t len[3];
};

static void split_tokens(unsigned char *qs, size_t len, struct tokens *t)
{
    size_t pos = 0;
    while (pos < len) {
        unsigned char *f = qs + pos;
        unsigned char *amp = memchr(f, '&', len - pos);
        size_t flen = amp ? (size_t)(amp - f) : len - pos;
        pos += flen + 1;
        if (flen == 0)
            continue;
        unsigned char *eq = memchr(f, '=', flen);
        size_t klen = eq ? (size_t)(eq - f) : flen;
        klen = unquote_in_place(f, klen);
        if (klen != 1)
            continue;
        int which = f[0] == 'o' ? 0 : f[0] == 'r' ? 1 : f[0] == 'p' ? 2 : -1;
        if (which < 0 || t->v[which])
            continue;
        if (eq) {
            unsigned char *val = eq + 1;
            t->v[which] = val;
            t->len[which] = unquote_in_place(val, (size_t)(f + flen - val));
        } else {
            t->v[which] = f + flen; /* a bare key is an empty value */
            t->len[which] = 0;
        }
    }
}

static int decode_tokens(unsigned char *qs, size_t len, struct dmj_cursor *c)
{
    struct tokens t = {{NULL, NULL, NULL}, {0, 0, 0}};
    split_tokens(qs, len, &t);
    long long v = 0;
    bool over = false;

    memset(c, 0, sizeof *c);
    if (t.v[0]) {
        if (!all_ascii(t.v[0], t.len[0]) ||
            dmj_parse_int((const char *)t.v[0], t.len[0], &v, &over) != 0 || v < 0)
            return DMJ_EBADCURSOR;
        c->offset = v > DMJ_CURSOR_OFFSET_CUTOFF ? DMJ_CURSOR_OFFSET_CUTOFF : (uint64_t)v;
    }
    if (t.v[1]) {
        if (!all_ascii(t.v[1], t.len[1]) ||
            dmj_parse_int((const char *)t.v[1], t.len[1], &v, &over) != 0)
            return DMJ_EBADCURSOR;
        c->reverse = v != 0;
    }
    if (t.v[2]) {
        if (t.len[2] > DMJ_CURSOR_POSITION_MAX || !all_ascii(t.v[2], t.len[2]) ||
            dmj_time_parse_django((const char *)t.v[2], t.len[2], &c->position_us) != 0)
            return DMJ_EBADCURSOR;
        memcpy(c->position, t.v[2], t.len[2]);
        c->position[t.len[2]] = '\0';
        c->position_len = t.len[2];
        c->has_position = true;
    }
    return 0;
}

int dmj_cursor_decode(const char *value, size_t len, struct dmj_cursor *out)
{
    const unsigned char *s = (const unsigned char *)value;
    if (len && !value)
        return DMJ_EBADCURSOR;
    /* encoded.encode('ascii') */
    if (!all_ascii(s, len))
        return DMJ_EBADCURSOR;

    unsigned char stack[CURSOR_STACK_BYTES];
    unsigned char *buf = stack;
    size_t cap = len / 4 * 3 + 3;
    if (cap > sizeof stack) {
        buf = malloc(cap);
        if (!buf)
            return -ENOMEM;
    }
    size_t n = 0;
    struct dmj_cursor c;
    int rc = a2b_base64(s, len, buf, &n);
    if (!rc && !all_ascii(buf, n)) /* .decode('ascii') */
        rc = DMJ_EBADCURSOR;
    if (!rc)
        rc = decode_tokens(buf, n, &c);
    if (buf != stack)
        free(buf);
    if (rc)
        return rc;
    *out = c;
    return 0;
}

/* ---- encoding ------------------------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The offset token, "o=" and its decimal digits, by hand: printf cost a third of a link. */
static int add_offset_token(struct dmj_buf *out, uint64_t offset)
{
    char text[2 + 20];
    char *end = text + sizeof text, *p = end;
    do {
        *--p = (char)('0' + offset % 10);
        offset /= 10;
    } while (offset);
    *--p = '=';
    *--p = 'o';
    return dmj_buf_add(out, p, (size_t)(end - p));
}

int dmj_cursor_encode(const struct dmj_cursor *c, struct dmj_buf *out)
{
    /* urlencode({o, r, p}) is written past the end of `out` first, its base64 after it,
     * and the base64 then moved down over it: no allocation besides out's own. */
    size_t start = out->len;
    int rc = 0;
    if (c->offset != 0)
        rc = add_offset_token(out, c->offset);
    if (!rc && c->reverse)
        rc = dmj_buf_adds(out, out->len > start ? "&r=1" : "r=1");
    if (!rc && c->has_position) {
        size_t plen =
            c->position_len > DMJ_CURSOR_POSITION_MAX ? DMJ_CURSOR_POSITION_MAX : c->position_len;
        rc = dmj_buf_adds(out, out->len > start ? "&p=" : "p=");
        if (!rc)
            rc = dmj_query_add_quoted(out, c->position, plen);
    }
    size_t qlen = out->len - start;
    if (!rc && qlen == 0)
        return 0; /* no tokens: the empty cursor */
    size_t blen = (qlen + 2) / 3 * 4;
    if (!rc)
        rc = dmj_buf_reserve(out, blen);
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return rc;
    }
    const unsigned char *q = (const unsigned char *)out->data + start;
    char *b = out->data + start + qlen;
    size_t k = 0;
    for (size_t i = 0; i < qlen; i += 3) {
        unsigned v = (unsigned)q[i] << 16;
        if (i + 1 < qlen)
            v |= (unsigned)q[i + 1] << 8;
        if (i + 2 < qlen)
            v |= q[i + 2];
        b[k++] = B64[(v >> 18) & 63];
        b[k++] = B64[(v >> 12) & 63];
        b[k++] = i + 1 < qlen ? B64[(v >> 6) & 63] : '=';
        b[k++] = i + 2 < qlen ? B64[v & 63] : '=';
    }
    memmove(out->data + start, b, blen);
    out->len = start + blen;
    out->data[out->len] = '\0';
    return 0;
}

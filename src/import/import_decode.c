/* The byte stages in front of the JSON parser: gzip detection and inflation, then the undoing
 * of PostgreSQL's COPY text escapes, each streaming across feeds of any size. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "hex.h"
#include "dmj/error.h"

#include "import_impl.h"

#define SLICE (256u * 1024u) /* bytes handed to the next stage at once */

/* ---- the COPY-escape stage -------------------------------------------------------- */

/* Undoes PostgreSQL's COPY text escaping (a backslash and one of b f n r t v, 1-3 octal
 * digits, x and 1-2 hex digits, or any other character standing for itself), except that a
 * backslash before '"', '/' or 'u' refuses the input (`pg_bad`; the stage stops there): COPY
 * never writes those (it doubles every backslash of the text), and they are JSON's own string
 * escapes, so the input is plain JSON, which undoing would alter (\u00e9 into u00e9). */
static size_t pg_unescape(struct dmj__import_decoder *d, const unsigned char *p, size_t len,
                          unsigned char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        switch (d->pg) {
        case PG_NORMAL:
            if (c == '\\')
                d->pg = PG_BACKSLASH;
            else
                out[n++] = c;
            if (c == '\n')
                d->pg_line++;
            continue;
        case PG_OCTAL:
            if (c >= '0' && c <= '7' && d->pg_digits < 3) {
                d->pg_value = d->pg_value * 8 + (c - '0');
                if (++d->pg_digits == 3) {
                    out[n++] = (unsigned char)d->pg_value;
                    d->pg = PG_NORMAL;
                }
                continue;
            }
            out[n++] = (unsigned char)d->pg_value;
            break; /* this byte is not part of the escape: an ordinary one */
        case PG_HEX:
            if (dmj_hex_value((unsigned char)c) >= 0 && d->pg_digits < 2) {
                d->pg_value = d->pg_value * 16 + (unsigned)dmj_hex_value((unsigned char)c);
                if (++d->pg_digits == 2) {
                    out[n++] = (unsigned char)d->pg_value;
                    d->pg = PG_NORMAL;
                }
                continue;
            }
            if (d->pg_digits == 0)
                out[n++] = 'x'; /* "\x" without digits is a plain x */
            else
                out[n++] = (unsigned char)d->pg_value;
            break;
        case PG_BACKSLASH:
            d->pg = PG_NORMAL;
            switch (c) {
            case 'b':
                out[n++] = '\b';
                break;
            case 'f':
                out[n++] = '\f';
                break;
            case 'n':
                out[n++] = '\n';
                break;
            case 'r':
                out[n++] = '\r';
                break;
            case 't':
                out[n++] = '\t';
                break;
            case 'v':
                out[n++] = '\v';
                break;
            case 'x':
                d->pg = PG_HEX;
                d->pg_digits = 0;
                d->pg_value = 0;
                break;
            case '"':
            case '/':
            case 'u':
                d->pg_bad = c;
                return n;
            default:
                if (c >= '0' && c <= '7') {
                    d->pg = PG_OCTAL;
                    d->pg_digits = 1;
                    d->pg_value = c - '0';
                } else {
                    out[n++] = c;
                }
            }
            continue;
        }
        /* the byte after a finished octal or hex escape, in the ordinary state */
        d->pg = c == '\\' ? PG_BACKSLASH : PG_NORMAL;
        if (c != '\\')
            out[n++] = c;
        if (c == '\n')
            d->pg_line++;
    }
    return n;
}

/* The escape pending at the end of the input. */
static size_t pg_flush(struct dmj__import_decoder *d, unsigned char *out)
{
    size_t n = 0;
    if (d->pg == PG_OCTAL || (d->pg == PG_HEX && d->pg_digits > 0))
        out[n++] = (unsigned char)d->pg_value;
    else if (d->pg == PG_HEX)
        out[n++] = 'x';
    else if (d->pg == PG_BACKSLASH)
        out[n++] = '\\';
    d->pg = PG_NORMAL;
    return n;
}

static int unescape_feed(struct dmj__import_decoder *d, const unsigned char *p, size_t len)
{
    if (!d->pg_copy)
        return d->sink(d->ctx, p, len);
    while (len > 0) {
        size_t take = len < SLICE ? len : SLICE;
        size_t n = pg_unescape(d, p, take, d->pgout);
        int rc = d->sink(d->ctx, d->pgout, n);
        if (rc != 0)
            return rc;
        if (d->pg_bad) {
            snprintf(d->why, sizeof d->why,
                     "\\%c is JSON's escape, which COPY text never holds: this is not "
                     "PostgreSQL COPY text (drop --pg-copy)",
                     d->pg_bad);
            d->why_field = "pg-copy";
            d->why_line = d->pg_line;
            return DMJ_EINVAL;
        }
        p += take;
        len -= take;
    }
    return 0;
}

static const unsigned char bom[3] = {0xef, 0xbb, 0xbf};

/* Drops a UTF-8 byte order mark at the start of the text (some editors write one). */
static int text_feed(struct dmj__import_decoder *d, const unsigned char *p, size_t len)
{
    while (!d->bom_done && len > 0) {
        if (*p == bom[d->bom_seen]) {
            p++;
            len--;
            d->bom_done = ++d->bom_seen == 3;
            continue;
        }
        /* not a mark after all: what was held back is text */
        d->bom_done = true;
        int rc = unescape_feed(d, bom, d->bom_seen);
        if (rc != 0)
            return rc;
    }
    return len > 0 ? unescape_feed(d, p, len) : 0;
}

/* ---- the gzip stage --------------------------------------------------------------- */

static int inflate_feed(struct dmj__import_decoder *d, const unsigned char *p, size_t len)
{
    d->z.next_in = (unsigned char *)p;
    d->z.avail_in = (uInt)len;
    bool more_output = false; /* zlib may hold output back when the last round filled zout */
    while (d->z.avail_in > 0 || more_output) {
        if (d->z_ended) {
            if (d->z.avail_in == 0)
                break;
            /* Another member follows (concatenated gzip files, as `cat a.gz b.gz`). */
            if (inflateReset(&d->z) != Z_OK)
                return -ENOMEM;
            d->z_ended = false;
        }
        d->z.next_out = d->zout;
        d->z.avail_out = SLICE;
        int zr = inflate(&d->z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
            snprintf(d->why, sizeof d->why, "%s", d->z.msg ? d->z.msg : "corrupt data");
            return DMJ_EINVAL;
        }
        if (zr == Z_STREAM_END)
            d->z_ended = true;
        size_t produced = SLICE - d->z.avail_out;
        more_output = d->z.avail_out == 0;
        int rc = text_feed(d, d->zout, produced);
        if (rc != 0)
            return rc;
        if (zr == Z_BUF_ERROR && produced == 0)
            break;
    }
    return 0;
}

static int start_stream(struct dmj__import_decoder *d, const unsigned char *head, size_t n)
{
    if (n == 2 && head[0] == 0x1f && head[1] == 0x8b) {
        memset(&d->z, 0, sizeof d->z);
        if (inflateInit2(&d->z, 16 + MAX_WBITS) != Z_OK)
            return -ENOMEM;
        d->z_ready = true;
        d->zout = malloc(SLICE);
        if (!d->zout)
            return -ENOMEM;
        d->gz = GZ_INFLATE;
        return inflate_feed(d, head, n);
    }
    d->gz = GZ_PLAIN;
    return text_feed(d, head, n);
}

int dmj__import_decoder_init(struct dmj__import_decoder *d, bool pg_copy,
                             int (*sink)(void *ctx, const unsigned char *p, size_t len), void *ctx)
{
    memset(d, 0, sizeof *d);
    d->pg_copy = pg_copy;
    d->pg_line = 1;
    d->sink = sink;
    d->ctx = ctx;
    if (pg_copy) {
        /* An escape pending from the previous slice may add one byte to the next. */
        d->pgout = malloc(SLICE + 16);
        if (!d->pgout)
            return -ENOMEM;
    }
    return 0;
}

void dmj__import_decoder_dispose(struct dmj__import_decoder *d)
{
    if (d->z_ready)
        inflateEnd(&d->z);
    free(d->zout);
    free(d->pgout);
    d->zout = d->pgout = NULL;
    d->z_ready = false;
}

int dmj__import_decoder_feed(struct dmj__import_decoder *d, const unsigned char *p, size_t len)
{
    if (d->gz == GZ_DETECT) {
        /* The first two bytes decide between gzip and text; they may come one at a time. */
        while (len > 0 && d->n_magic < 2) {
            d->magic[d->n_magic++] = *p++;
            len--;
        }
        if (d->n_magic < 2)
            return 0;
        int rc = start_stream(d, d->magic, 2);
        if (rc != 0)
            return rc;
    }
    if (len == 0)
        return 0;
    return d->gz == GZ_INFLATE ? inflate_feed(d, p, len) : text_feed(d, p, len);
}

int dmj__import_decoder_finish(struct dmj__import_decoder *d)
{
    int rc = 0;
    if (d->gz == GZ_DETECT && d->n_magic > 0) {
        d->gz = GZ_PLAIN;
        rc = text_feed(d, d->magic, d->n_magic);
    }
    if (rc == 0 && d->gz == GZ_INFLATE && !d->z_ended) {
        snprintf(d->why, sizeof d->why, "truncated input");
        return DMJ_EINVAL;
    }
    if (rc == 0 && !d->bom_done && d->bom_seen > 0) {
        d->bom_done = true;
        rc = unescape_feed(d, bom, d->bom_seen);
    }
    if (rc == 0 && d->pg_copy) {
        unsigned char tail[2];
        size_t n = pg_flush(d, tail);
        if (n > 0)
            rc = d->sink(d->ctx, tail, n);
    }
    return rc;
}

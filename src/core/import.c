/* The import parser: gzip and COPY-escape decoding, then yajl's SAX callbacks that find the
 * records in NDJSON, arrays, API pages and fixtures documents, with line numbers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl_parse.h>
#include <zlib.h>

#include "dmj/buf.h"
#include "dmj/import.h"
#include "dmj/store.h"

#include "import_impl.h"

#define SLICE (256u * 1024u)           /* bytes handed to each decoding stage at once */
#define RECORD_MAX (16u * 1024u * 1024u) /* text of one record's known fields */
#define MAX_FRAMES 8

/* What an open JSON container is to the importer. */
enum frame {
    FR_TOPOBJ,   /* a top-level object: a record, or an API page / fixtures document */
    FR_RECORDS,  /* an array whose elements are records */
    FR_RECORD,   /* a record inside such an array */
    FR_FIELDARR, /* the array value of a list field (scopes...) */
};

enum gz_state { GZ_DETECT, GZ_PLAIN, GZ_INFLATE, GZ_DONE };

enum pg_state { PG_NORMAL, PG_BACKSLASH, PG_OCTAL, PG_HEX };

struct dmj_import {
    struct dmj_import_options o;
    yajl_handle yajl;
    int failed; /* sticky: the first fatal error */
    struct dmj_import_error err;

    /* container tracking */
    uint8_t frames[MAX_FRAMES];
    int8_t frame_kind[MAX_FRAMES];
    int depth;
    unsigned skip;       /* depth inside a value being skipped */
    int pending;         /* field the next value belongs to, -1 for an ignored key */
    int pending_kind;    /* container kind a key of a top-level object named, or -1 */
    bool top_container;  /* the top-level object turned out to be a page or fixtures */
    bool saw_value;      /* yajl got a non-blank byte (an empty input is zero records) */
    struct dmj__import_fields fl;
    struct dmj_import_record rec;

    /* line counting within the slice yajl is parsing */
    const unsigned char *chunk;
    size_t chunk_len;
    size_t counted;
    uint64_t line;
    bool resync; /* skip_invalid after a syntax error: drop bytes up to the next newline */

    /* gzip */
    enum gz_state gz;
    unsigned char magic[2];
    size_t n_magic;
    z_stream z;
    bool z_ready;
    bool z_ended; /* the last member ended cleanly */
    unsigned char *zout;

    /* COPY text escapes */
    enum pg_state pg;
    unsigned pg_digits;
    unsigned pg_value;
    unsigned char *pgout;

    uint64_t count, skipped, bytes_in;
};

/* ---- errors and lines ------------------------------------------------------------- */

static uint64_t cur_line(struct dmj_import *imp)
{
    size_t off = yajl_get_bytes_consumed(imp->yajl);
    if (off > imp->chunk_len)
        off = imp->chunk_len;
    const unsigned char *p = imp->chunk + imp->counted, *end = imp->chunk + off;
    while (p < end) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        imp->line++;
        p = nl + 1;
    }
    if (off > imp->counted)
        imp->counted = off;
    return imp->line;
}

static void set_error(struct dmj_import_error *e, uint64_t line, const char *field,
                      const char *reason)
{
    e->line = line;
    snprintf(e->field, sizeof e->field, "%s", field);
    snprintf(e->reason, sizeof e->reason, "%s", reason);
}

/* A bad record: skipped when asked to, else fatal. Returns the yajl callback result. */
static int bad_record(struct dmj_import *imp, const struct dmj_import_error *e)
{
    if (imp->o.skip_invalid) {
        imp->skipped++;
        if (imp->o.skipped)
            imp->o.skipped(imp->o.ctx, e);
        return 1;
    }
    imp->err = *e;
    imp->failed = DMJ_EINVAL;
    return 0;
}

static int fatal(struct dmj_import *imp, int rc, const char *field, const char *reason)
{
    set_error(&imp->err, imp->line, field, reason);
    imp->failed = rc;
    return 0;
}

/* ---- records ---------------------------------------------------------------------- */

static void begin_record(struct dmj_import *imp, int container_kind)
{
    for (int i = 0; i < DMJ__F_COUNT; i++)
        imp->fl.f[i].type = DMJ__V_NONE;
    imp->fl.n_elems = 0;
    dmj_buf_reset(&imp->fl.arena);
    imp->fl.line = cur_line(imp);
    imp->fl.container_kind = container_kind;
    imp->pending = -1;
}

static int finish_record(struct dmj_import *imp)
{
    struct dmj_import_error e;
    if (dmj__import_build(&imp->fl, &imp->o, &imp->rec, &e) != 0)
        return bad_record(imp, &e);
    imp->count++;
    int rc = imp->o.record ? imp->o.record(imp->o.ctx, &imp->rec) : 0;
    if (rc != 0) {
        char why[160];
        snprintf(why, sizeof why, "cannot store: %s", dmj_strerror(rc));
        set_error(&imp->err, imp->rec.line, "record", why);
        imp->failed = rc;
        return 0;
    }
    return 1;
}

/* Copies a value's text into the arena, NUL-terminated, and describes it in `v`. */
static int keep(struct dmj_import *imp, struct dmj__import_value *v, int type, const char *s,
                size_t len, bool b)
{
    v->type = (uint8_t)type;
    v->b = b;
    v->line = imp->line;
    v->off = imp->fl.arena.len;
    v->len = len;
    if (type != DMJ__V_STRING && type != DMJ__V_NUMBER)
        return 1;
    int rc = dmj_buf_add(&imp->fl.arena, s, len);
    if (rc == 0)
        rc = dmj_buf_addc(&imp->fl.arena, '\0');
    if (rc != 0)
        return fatal(imp, rc, "record", rc == DMJ_ETOOBIG ? "record too large" : "out of memory");
    return 1;
}

static int top(const struct dmj_import *imp)
{
    return imp->depth > 0 ? imp->frames[imp->depth - 1] : -1;
}

static int push(struct dmj_import *imp, enum frame f, int kind)
{
    if (imp->depth == MAX_FRAMES)
        return fatal(imp, DMJ_EINVAL, "json", "nested too deeply");
    imp->frames[imp->depth] = (uint8_t)f;
    imp->frame_kind[imp->depth] = (int8_t)kind;
    imp->depth++;
    return 1;
}

/* ---- yajl callbacks --------------------------------------------------------------- */

static int scalar(void *ctx, int type, const char *s, size_t len, bool b)
{
    struct dmj_import *imp = ctx;
    if (imp->skip > 0)
        return 1;
    struct dmj_import_error e;
    switch (top(imp)) {
    case -1:
        set_error(&e, cur_line(imp), "json", "expected an object or an array");
        return bad_record(imp, &e);
    case FR_RECORDS:
        set_error(&e, cur_line(imp), "json", "expected an object");
        return bad_record(imp, &e);
    case FR_TOPOBJ:
    case FR_RECORD: {
        int f = imp->pending;
        imp->pending = -1;
        imp->pending_kind = -1;
        if (f < 0)
            return 1;
        return keep(imp, &imp->fl.f[f], type, s, len, b);
    }
    case FR_FIELDARR: {
        struct dmj__import_value *arr = &imp->fl.f[imp->pending];
        if (arr->type != DMJ__V_ARRAY)
            return 1; /* already marked bad */
        if (imp->fl.n_elems == DMJ__IMPORT_MAX_ELEMS) {
            arr->type = DMJ__V_TOOMANY;
            return 1;
        }
        arr->len++;
        return keep(imp, &imp->fl.elems[imp->fl.n_elems++], type, s, len, b);
    }
    }
    return 1;
}

static int cb_null(void *ctx)
{
    return scalar(ctx, DMJ__V_NULL, NULL, 0, false);
}

static int cb_bool(void *ctx, int b)
{
    return scalar(ctx, DMJ__V_BOOL, NULL, 0, b != 0);
}

static int cb_number(void *ctx, const char *s, size_t len)
{
    return scalar(ctx, DMJ__V_NUMBER, s, len, false);
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
    return scalar(ctx, DMJ__V_STRING, (const char *)s, len, false);
}

/* The container kinds a top-level object may hold: an API page or a fixtures document. */
static int container_lookup(const unsigned char *k, size_t len)
{
    static const struct {
        const char *key;
        size_t len;
        int kind;
    } keys[] = {
        {"results", 7, DMJ_IMPORT_JOB},
        {"organizations", 13, DMJ_IMPORT_ORG},
        {"teams", 5, DMJ_IMPORT_TEAM},
        {"users", 5, DMJ_IMPORT_USER},
        {"organization_memberships", 24, DMJ_IMPORT_MEMBERSHIP},
        {"personal_api_keys", 17, DMJ_IMPORT_KEY},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (keys[i].len == len && memcmp(keys[i].key, k, len) == 0)
            return keys[i].kind;
    }
    return -1;
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t len)
{
    struct dmj_import *imp = ctx;
    if (imp->skip > 0)
        return 1;
    int f = top(imp);
    if (f == FR_TOPOBJ) {
        imp->pending_kind = container_lookup(k, len);
        if (imp->top_container) {
            imp->pending = -1; /* other keys of a page or fixtures document are ignored */
            return 1;
        }
    }
    imp->pending = dmj__import_field_lookup((const char *)k, len);
    if (imp->pending >= 0)
        cur_line(imp);
    return 1;
}

static int open_value(void *ctx, bool is_map)
{
    struct dmj_import *imp = ctx;
    if (imp->skip > 0) {
        imp->skip++;
        return 1;
    }
    struct dmj_import_error e;
    switch (top(imp)) {
    case -1:
        if (is_map) {
            imp->top_container = false;
            imp->pending_kind = -1;
            if (!push(imp, FR_TOPOBJ, -1))
                return 0;
            begin_record(imp, -1);
            return 1;
        }
        return push(imp, FR_RECORDS, -1);
    case FR_RECORDS:
        if (!is_map) {
            set_error(&e, cur_line(imp), "json", "expected an object");
            imp->skip = 1;
            return bad_record(imp, &e);
        }
        if (!push(imp, FR_RECORD, imp->frame_kind[imp->depth - 1]))
            return 0;
        begin_record(imp, imp->frame_kind[imp->depth - 1]);
        return 1;
    case FR_TOPOBJ:
        if (!is_map && imp->pending_kind >= 0) {
            /* The top-level object is a page or a fixtures document, not a record. */
            imp->top_container = true;
            int kind = imp->pending_kind;
            imp->pending_kind = -1;
            imp->pending = -1;
            return push(imp, FR_RECORDS, kind);
        }
        /* fall through */
    case FR_RECORD:
        imp->pending_kind = -1;
        if (!is_map && imp->pending >= 0 && dmj__import_field_is_array(imp->pending)) {
            struct dmj__import_value *v = &imp->fl.f[imp->pending];
            v->type = DMJ__V_ARRAY;
            v->line = imp->line;
            v->off = imp->fl.n_elems;
            v->len = 0;
            return push(imp, FR_FIELDARR, -1);
        }
        if (imp->pending >= 0) {
            imp->fl.f[imp->pending].type = DMJ__V_OBJECT;
            imp->fl.f[imp->pending].line = imp->line;
        }
        imp->pending = -1;
        imp->skip = 1;
        return 1;
    case FR_FIELDARR:
        imp->fl.f[imp->pending].type = DMJ__V_OBJECT;
        imp->skip = 1;
        return 1;
    }
    return 1;
}

static int cb_start_map(void *ctx)
{
    return open_value(ctx, true);
}

static int cb_start_array(void *ctx)
{
    return open_value(ctx, false);
}

static int close_value(void *ctx)
{
    struct dmj_import *imp = ctx;
    if (imp->skip > 0) {
        imp->skip--;
        return 1;
    }
    if (imp->depth == 0)
        return 1; /* cannot happen: yajl matches brackets */
    int f = imp->frames[--imp->depth];
    switch (f) {
    case FR_TOPOBJ:
        if (!imp->top_container)
            return finish_record(imp);
        return 1;
    case FR_RECORD:
        return finish_record(imp);
    case FR_FIELDARR:
        imp->pending = -1;
        return 1;
    default:
        return 1;
    }
}

static const yajl_callbacks callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_bool,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = close_value,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = close_value,
};

/* ---- the JSON stage --------------------------------------------------------------- */

static int new_yajl(struct dmj_import *imp)
{
    if (imp->yajl)
        yajl_free(imp->yajl);
    imp->yajl = yajl_alloc(&callbacks, NULL, imp);
    if (!imp->yajl)
        return -ENOMEM;
    yajl_config(imp->yajl, yajl_allow_multiple_values, 1);
    imp->depth = 0;
    imp->skip = 0;
    imp->pending = -1;
    imp->pending_kind = -1;
    imp->saw_value = false;
    return 0;
}

/* Counts the newlines of chunk[counted, upto). */
static void count_to(struct dmj_import *imp, size_t upto)
{
    for (size_t i = imp->counted; i < upto; i++)
        imp->line += imp->chunk[i] == '\n';
    if (upto > imp->counted)
        imp->counted = upto;
}

/* yajl's message for the error it just reported, without its trailing newline. */
static void yajl_reason(struct dmj_import *imp, char *out, size_t size)
{
    unsigned char *msg = yajl_get_error(imp->yajl, 0, NULL, 0);
    snprintf(out, size, "%s", msg ? (const char *)msg : "invalid JSON");
    if (msg)
        yajl_free_error(imp->yajl, msg);
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
}

static bool blank(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
            return false;
    }
    return true;
}

static int json_feed(struct dmj_import *imp, const unsigned char *p, size_t len)
{
    while (len > 0) {
        imp->chunk = p;
        imp->chunk_len = len;
        imp->counted = 0;
        if (imp->resync) {
            const unsigned char *nl = memchr(p, '\n', len);
            size_t drop = nl ? (size_t)(nl - p) + 1 : len;
            count_to(imp, drop);
            imp->resync = nl == NULL;
            p += drop;
            len -= drop;
            continue;
        }
        if (!imp->saw_value && !blank(p, len))
            imp->saw_value = true;
        yajl_status st = yajl_parse(imp->yajl, p, len);
        if (st == yajl_status_ok) {
            count_to(imp, len);
            return 0;
        }
        if (st == yajl_status_client_canceled)
            return imp->failed ? imp->failed : DMJ_EINVAL;
        size_t at = yajl_get_bytes_consumed(imp->yajl);
        if (at > len)
            at = len;
        count_to(imp, at);
        struct dmj_import_error e;
        char why[160];
        yajl_reason(imp, why, sizeof why);
        set_error(&e, imp->line, "json", why);
        if (!bad_record(imp, &e))
            return DMJ_EINVAL;
        /* Skipping: start again with a fresh parser at the next line. */
        int rc = new_yajl(imp);
        if (rc != 0)
            return rc;
        imp->resync = true;
        p += at;
        len -= at;
        imp->counted = 0;
    }
    return 0;
}

/* ---- the COPY-escape stage -------------------------------------------------------- */

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Undoes PostgreSQL's COPY text escaping (a backslash and one of b f n r t v, 1-3 octal
 * digits, x and 1-2 hex digits, or any other character standing for itself). */
static size_t pg_unescape(struct dmj_import *imp, const unsigned char *p, size_t len,
                          unsigned char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        switch (imp->pg) {
        case PG_NORMAL:
            if (c == '\\')
                imp->pg = PG_BACKSLASH;
            else
                out[n++] = c;
            continue;
        case PG_OCTAL:
            if (c >= '0' && c <= '7' && imp->pg_digits < 3) {
                imp->pg_value = imp->pg_value * 8 + (c - '0');
                if (++imp->pg_digits == 3) {
                    out[n++] = (unsigned char)imp->pg_value;
                    imp->pg = PG_NORMAL;
                }
                continue;
            }
            out[n++] = (unsigned char)imp->pg_value;
            imp->pg = PG_NORMAL;
            i--; /* this byte is not part of the escape */
            continue;
        case PG_HEX:
            if (hexval(c) >= 0 && imp->pg_digits < 2) {
                imp->pg_value = imp->pg_value * 16 + (unsigned)hexval(c);
                if (++imp->pg_digits == 2) {
                    out[n++] = (unsigned char)imp->pg_value;
                    imp->pg = PG_NORMAL;
                }
                continue;
            }
            if (imp->pg_digits == 0)
                out[n++] = 'x'; /* "\x" without digits is a plain x */
            else
                out[n++] = (unsigned char)imp->pg_value;
            imp->pg = PG_NORMAL;
            i--;
            continue;
        case PG_BACKSLASH:
            imp->pg = PG_NORMAL;
            switch (c) {
            case 'b': out[n++] = '\b'; break;
            case 'f': out[n++] = '\f'; break;
            case 'n': out[n++] = '\n'; break;
            case 'r': out[n++] = '\r'; break;
            case 't': out[n++] = '\t'; break;
            case 'v': out[n++] = '\v'; break;
            case 'x':
                imp->pg = PG_HEX;
                imp->pg_digits = 0;
                imp->pg_value = 0;
                break;
            default:
                if (c >= '0' && c <= '7') {
                    imp->pg = PG_OCTAL;
                    imp->pg_digits = 1;
                    imp->pg_value = c - '0';
                } else {
                    out[n++] = c;
                }
            }
            continue;
        }
    }
    return n;
}

/* The escape pending at the end of the input. */
static size_t pg_flush(struct dmj_import *imp, unsigned char *out)
{
    size_t n = 0;
    if (imp->pg == PG_OCTAL || (imp->pg == PG_HEX && imp->pg_digits > 0))
        out[n++] = (unsigned char)imp->pg_value;
    else if (imp->pg == PG_HEX)
        out[n++] = 'x';
    else if (imp->pg == PG_BACKSLASH)
        out[n++] = '\\';
    imp->pg = PG_NORMAL;
    return n;
}

static int text_feed(struct dmj_import *imp, const unsigned char *p, size_t len)
{
    if (!imp->o.pg_copy)
        return json_feed(imp, p, len);
    while (len > 0) {
        size_t take = len < SLICE ? len : SLICE;
        size_t n = pg_unescape(imp, p, take, imp->pgout);
        int rc = json_feed(imp, imp->pgout, n);
        if (rc != 0)
            return rc;
        p += take;
        len -= take;
    }
    return 0;
}

/* ---- the gzip stage --------------------------------------------------------------- */

static int inflate_feed(struct dmj_import *imp, const unsigned char *p, size_t len)
{
    imp->z.next_in = (unsigned char *)p;
    imp->z.avail_in = (uInt)len;
    bool more_output = false; /* zlib may hold output back when the last round filled zout */
    while (imp->z.avail_in > 0 || more_output) {
        if (imp->z_ended) {
            if (imp->z.avail_in == 0)
                break;
            /* Another member follows (concatenated gzip files, as `cat a.gz b.gz`). */
            if (inflateReset(&imp->z) != Z_OK)
                return -ENOMEM;
            imp->z_ended = false;
        }
        imp->z.next_out = imp->zout;
        imp->z.avail_out = SLICE;
        int zr = inflate(&imp->z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
            set_error(&imp->err, imp->line, "gzip", imp->z.msg ? imp->z.msg : "corrupt data");
            imp->failed = DMJ_EINVAL;
            return DMJ_EINVAL;
        }
        if (zr == Z_STREAM_END)
            imp->z_ended = true;
        size_t produced = SLICE - imp->z.avail_out;
        more_output = imp->z.avail_out == 0;
        int rc = text_feed(imp, imp->zout, produced);
        if (rc != 0)
            return rc;
        if (zr == Z_BUF_ERROR && produced == 0)
            break;
    }
    return 0;
}

static int start_stream(struct dmj_import *imp, const unsigned char *head, size_t n)
{
    if (n == 2 && head[0] == 0x1f && head[1] == 0x8b) {
        memset(&imp->z, 0, sizeof imp->z);
        if (inflateInit2(&imp->z, 16 + MAX_WBITS) != Z_OK)
            return -ENOMEM;
        imp->z_ready = true;
        imp->zout = malloc(SLICE);
        if (!imp->zout)
            return -ENOMEM;
        imp->gz = GZ_INFLATE;
        return inflate_feed(imp, head, n);
    }
    imp->gz = GZ_PLAIN;
    return text_feed(imp, head, n);
}

int dmj_import_feed(struct dmj_import *imp, const void *data, size_t len)
{
    if (imp->failed)
        return imp->failed;
    const unsigned char *p = data;
    imp->bytes_in += len;
    int rc = 0;
    if (imp->gz == GZ_DETECT) {
        /* The first two bytes decide between gzip and text; they may come one at a time. */
        while (len > 0 && imp->n_magic < 2) {
            imp->magic[imp->n_magic++] = *p++;
            len--;
        }
        if (imp->n_magic < 2)
            return 0;
        rc = start_stream(imp, imp->magic, 2);
    }
    if (rc == 0 && len > 0)
        rc = imp->gz == GZ_INFLATE ? inflate_feed(imp, p, len) : text_feed(imp, p, len);
    if (rc != 0 && !imp->failed) {
        if (imp->err.field[0] == '\0')
            set_error(&imp->err, imp->line, "input", dmj_strerror(rc));
        imp->failed = rc;
    }
    return rc;
}

int dmj_import_finish(struct dmj_import *imp)
{
    if (imp->failed)
        return imp->failed;
    int rc = 0;
    if (imp->gz == GZ_DETECT && imp->n_magic > 0) {
        imp->gz = GZ_PLAIN;
        rc = text_feed(imp, imp->magic, imp->n_magic);
    }
    if (rc == 0 && imp->gz == GZ_INFLATE && !imp->z_ended) {
        set_error(&imp->err, imp->line, "gzip", "truncated input");
        rc = imp->failed = DMJ_EINVAL;
    }
    if (rc == 0 && imp->o.pg_copy) {
        unsigned char tail[2];
        size_t n = pg_flush(imp, tail);
        rc = json_feed(imp, tail, n);
    }
    if (rc == 0 && imp->saw_value && !imp->resync) {
        imp->chunk = (const unsigned char *)"";
        imp->chunk_len = 0;
        imp->counted = 0;
        yajl_status st = yajl_complete_parse(imp->yajl);
        if (st == yajl_status_client_canceled) {
            rc = imp->failed ? imp->failed : DMJ_EINVAL;
        } else if (st != yajl_status_ok) {
            struct dmj_import_error e;
            char why[160];
            yajl_reason(imp, why, sizeof why);
            set_error(&e, imp->line, "json", why);
            if (!bad_record(imp, &e))
                rc = DMJ_EINVAL;
        }
    }
    if (rc != 0 && !imp->failed)
        imp->failed = rc;
    return rc;
}

/* ---- life cycle ------------------------------------------------------------------- */

int dmj_import_new(const struct dmj_import_options *opts, struct dmj_import **out)
{
    struct dmj_import *imp = calloc(1, sizeof *imp);
    if (!imp)
        return -ENOMEM;
    imp->o = *opts;
    imp->line = 1;
    dmj_buf_init(&imp->fl.arena, RECORD_MAX);
    int rc = -ENOMEM;
    if (opts->pg_copy) {
        /* An escape pending from the previous slice may add one byte to the next. */
        imp->pgout = malloc(SLICE + 16);
        if (!imp->pgout)
            goto Error;
    }
    rc = new_yajl(imp);
    if (rc != 0)
        goto Error;
    *out = imp;
    return 0;
Error:
    dmj_import_free(imp);
    return rc;
}

void dmj_import_free(struct dmj_import *imp)
{
    if (!imp)
        return;
    if (imp->yajl)
        yajl_free(imp->yajl);
    if (imp->z_ready)
        inflateEnd(&imp->z);
    free(imp->zout);
    free(imp->pgout);
    dmj_buf_dispose(&imp->fl.arena);
    free(imp);
}

const struct dmj_import_error *dmj_import_last_error(const struct dmj_import *imp)
{
    return &imp->err;
}

uint64_t dmj_import_count(const struct dmj_import *imp)
{
    return imp->count;
}

uint64_t dmj_import_skipped(const struct dmj_import *imp)
{
    return imp->skipped;
}

uint64_t dmj_import_bytes_in(const struct dmj_import *imp)
{
    return imp->bytes_in;
}

int dmj_import_write(struct dmj_write *w, const struct dmj_import_record *rec)
{
    switch (rec->kind) {
    case DMJ_IMPORT_JOB:
        return dmj_write_job(w, &rec->u.job);
    case DMJ_IMPORT_TEAM:
        return dmj_write_team(w, &rec->u.team);
    case DMJ_IMPORT_ORG:
        return dmj_write_org(w, &rec->u.org);
    case DMJ_IMPORT_USER:
        return dmj_write_user(w, &rec->u.user);
    case DMJ_IMPORT_MEMBERSHIP:
        return dmj_write_membership(w, &rec->u.membership);
    case DMJ_IMPORT_KEY:
        return dmj_write_key(w, &rec->u.key);
    }
    return DMJ_EINVAL;
}

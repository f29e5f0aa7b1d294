/* The import parser: yajl's SAX callbacks that find the records in NDJSON, arrays, API pages
 * and fixtures documents, with line numbers (the byte stages before it: import_decode.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl_parse.h>

#include "dmj/buf.h"
#include "dmj/import.h"
#include "dmj/store.h"

#include "import_impl.h"

#define RECORD_MAX (16u * 1024u * 1024u) /* text of one record's known fields */
#define MAX_FRAMES 8
#define DMJ__IMPORT_MAX_TOKS 128 /* 64 keys: a job has 19 */

/* What an open JSON container is to the importer. */
enum frame {
    FR_TOPOBJ,   /* a top-level object: a record, or an API page / fixtures document */
    FR_RECORDS,  /* an array whose elements are records */
    FR_RECORD,   /* a record inside such an array */
    FR_FIELDARR, /* the array value of a list field (scopes...) */
};

struct dmj_import {
    struct dmj_import_options o;
    yajl_handle yajl;
    int failed; /* sticky: the first fatal error */
    struct dmj_import_error err;

    /* container tracking */
    uint8_t frames[MAX_FRAMES];
    int8_t frame_kind[MAX_FRAMES];
    int depth;
    unsigned skip;      /* depth inside a value being skipped */
    int pending;        /* field the next value belongs to, -1 for an ignored key */
    int pending_kind;   /* container kind a key of a top-level object named, or -1 */
    bool top_container; /* the top-level object turned out to be a page or fixtures */
    bool saw_value;     /* yajl got a non-blank byte (an empty input is zero records) */
    struct dmj__import_fields fl;
    struct dmj_import_record rec;

    /* line counting within the slice yajl is parsing */
    const unsigned char *chunk;
    size_t chunk_len;
    size_t counted;
    size_t next_nl; /* offset of the first newline at or after `counted`, or chunk_len */
    uint64_t line;
    bool resync;  /* skip_invalid after a syntax error: drop bytes up to the next newline */
    bool clean;   /* at the start of a line with yajl between top-level values */
    bool fast;    /* the callbacks are being called by the fast path, not by yajl */
    bool restart; /* a callback stopped yajl at a skipped error: go on at the next line */
    struct dmj__import_text text; /* the strings of the text yajl parses (import_text.c) */
    size_t text_at;               /* how far into the chunk `text` has followed */
    struct dmj__import_tok toks[DMJ__IMPORT_MAX_TOKS];

    struct dmj__import_decoder dec; /* gzip and COPY escapes, in front of yajl */

    uint64_t count, skipped, bytes_in;
};

/* ---- errors and lines ------------------------------------------------------------- */

static void count_to(struct dmj_import *imp, size_t upto);

/* The line of the token yajl just read: newlines are counted up to its end, once. */
static uint64_t cur_line(struct dmj_import *imp)
{
    if (imp->fast)
        return imp->line; /* a fast-path line: every token is on it */
    size_t off = yajl_get_bytes_consumed(imp->yajl);
    count_to(imp, off < imp->chunk_len ? off : imp->chunk_len);
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
    imp->fl.bad_text = -1;
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
    /* one reservation for the text and its NUL (the buffer keeps a byte past len spare) */
    struct dmj_buf *a = &imp->fl.arena;
    int rc = dmj_buf_reserve(a, len + 1);
    if (rc != 0)
        return fatal(imp, rc, "record", rc == DMJ_ETOOBIG ? "record too large" : "out of memory");
    if (len > 0)
        memcpy(a->data + a->len, s, len);
    a->data[a->len + len] = '\0';
    a->len += len + 1;
    a->data[a->len] = '\0';
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

/* ---- strict UTF-8 ----------------------------------------------------------------- */

/* Whether the string yajl just read is invalid: `text` follows the chunk up to its end. The
 * fast path's strings were checked by its scanner. */
static bool text_bad(struct dmj_import *imp)
{
    if (imp->fast)
        return false;
    size_t end = yajl_get_bytes_consumed(imp->yajl);
    if (end > imp->chunk_len)
        end = imp->chunk_len;
    if (end > imp->text_at) {
        dmj__import_text_scan(&imp->text, imp->chunk + imp->text_at, end - imp->text_at);
        imp->text_at = end;
    }
    return imp->text.bad;
}

/* Invalid UTF-8 that no field of a record takes (a key, an ignored value, a page's own
 * keys): the text is not JSON, as with a syntax error, which is skipped to the next line. */
static int bad_json_text(struct dmj_import *imp)
{
    struct dmj_import_error e;
    set_error(&e, cur_line(imp), "json", "invalid UTF-8");
    if (bad_record(imp, &e))
        imp->restart = true;
    return 0;
}

/* ---- yajl callbacks --------------------------------------------------------------- */

static int scalar(void *ctx, int type, const char *s, size_t len, bool b)
{
    struct dmj_import *imp = ctx;
    if (imp->skip > 0)
        return type == DMJ__V_BADTEXT ? bad_json_text(imp) : 1;
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
            return type == DMJ__V_BADTEXT ? bad_json_text(imp) : 1;
        if (type == DMJ__V_BADTEXT && imp->fl.bad_text < 0)
            imp->fl.bad_text = f;
        return keep(imp, &imp->fl.f[f], type, s, len, b);
    }
    case FR_FIELDARR: {
        struct dmj__import_value *arr = &imp->fl.f[imp->pending];
        if (type == DMJ__V_BADTEXT && imp->fl.bad_text < 0)
            imp->fl.bad_text = imp->pending;
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
    if (text_bad(ctx))
        return scalar(ctx, DMJ__V_BADTEXT, NULL, 0, false);
    return scalar(ctx, DMJ__V_STRING, (const char *)s, len, false);
}

/* The container kinds a top-level object may hold: an API page or a fixtures document. */
static int container_lookup(const unsigned char *k, size_t len)
{
    /* Runs for every key of every NDJSON record: the length picks the one candidate. */
    const char *key;
    int kind;
    switch (len) {
    case 5:
        if (k[0] == 't')
            key = "teams", kind = DMJ_IMPORT_TEAM;
        else
            key = "users", kind = DMJ_IMPORT_USER;
        break;
    case 7:
        key = "results", kind = DMJ_IMPORT_JOB;
        break;
    case 13:
        key = "organizations", kind = DMJ_IMPORT_ORG;
        break;
    case 17:
        key = "personal_api_keys", kind = DMJ_IMPORT_KEY;
        break;
    case 24:
        key = "organization_memberships", kind = DMJ_IMPORT_MEMBERSHIP;
        break;
    default:
        return -1;
    }
    return memcmp(key, k, len) == 0 ? kind : -1;
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t len)
{
    struct dmj_import *imp = ctx;
    if (text_bad(imp))
        return bad_json_text(imp);
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
            /* The top-level object is a page or a fixtures document, not a record; a
             * string it had before is no field of a record. */
            if (imp->fl.bad_text >= 0)
                return bad_json_text(imp);
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
    /* strings are checked by import_text.c, more strictly, naming their field */
    yajl_config(imp->yajl, yajl_dont_validate_strings, 1);
    imp->depth = 0;
    imp->skip = 0;
    imp->pending = -1;
    imp->pending_kind = -1;
    imp->saw_value = false;
    imp->restart = false;
    dmj__import_text_reset(&imp->text);
    return 0;
}

/* Counts the newlines of chunk[counted, upto). The next newline's offset is remembered, so
 * that the many calls within one line (one per known key) cost a comparison each. */
static void count_to(struct dmj_import *imp, size_t upto)
{
    if (upto <= imp->counted)
        return;
    while (imp->next_nl < upto) {
        imp->line++;
        const unsigned char *from = imp->chunk + imp->next_nl + 1;
        const unsigned char *nl = memchr(from, '\n', imp->chunk_len - imp->next_nl - 1);
        imp->next_nl = nl ? (size_t)(nl - imp->chunk) : imp->chunk_len;
    }
    imp->counted = upto;
}

/* Starts counting lines in a new slice chunk[0, len) at offset 0. */
static void set_chunk(struct dmj_import *imp, const unsigned char *p, size_t len)
{
    imp->chunk = p;
    imp->chunk_len = len;
    imp->counted = 0;
    imp->text_at = 0;
    const unsigned char *nl = len > 0 ? memchr(p, '\n', len) : NULL;
    imp->next_nl = nl ? (size_t)(nl - p) : len;
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

/* Feeds p[0, len) to yajl; `*used` is how far it got (all of it, or up to a syntax error that
 * skip_invalid skips, after which the parser is fresh and resyncing). */
static int yajl_step(struct dmj_import *imp, const unsigned char *p, size_t len, size_t *used)
{
    set_chunk(imp, p, len);
    if (!imp->saw_value && !blank(p, len))
        imp->saw_value = true;
    yajl_status st = yajl_parse(imp->yajl, p, len);
    if (st == yajl_status_ok) {
        count_to(imp, len);
        if (len > imp->text_at)
            dmj__import_text_scan(&imp->text, p + imp->text_at, len - imp->text_at);
        *used = len;
        return 0;
    }
    if (st == yajl_status_client_canceled && !imp->restart)
        return imp->failed ? imp->failed : DMJ_EINVAL;
    size_t at = yajl_get_bytes_consumed(imp->yajl);
    if (at > len)
        at = len;
    count_to(imp, at);
    if (st != yajl_status_client_canceled) {
        struct dmj_import_error e;
        char why[160];
        yajl_reason(imp, why, sizeof why);
        set_error(&e, imp->line, "json", why);
        if (!bad_record(imp, &e))
            return DMJ_EINVAL;
    }
    /* Skipping: start again with a fresh parser at the next line. */
    int rc = new_yajl(imp);
    if (rc != 0)
        return rc;
    imp->resync = true;
    *used = at;
    return 0;
}

/* Hands the tokens of a line the fast scanner took to the callbacks yajl would have called. */
static int replay(struct dmj_import *imp, const unsigned char *p, int n)
{
    const struct dmj__import_tok *t = imp->toks;
    imp->fast = true;
    int ok = open_value(imp, true);
    for (int i = 0; ok && i < n; i += 2) {
        const struct dmj__import_tok *v = &t[i + 1];
        ok = cb_map_key(imp, p + t[i].off, t[i].len);
        if (!ok)
            break;
        switch (v->type) {
        case DMJ__T_STRING:
            ok = cb_string(imp, p + v->off, v->len);
            break;
        case DMJ__T_NUMBER:
            ok = cb_number(imp, (const char *)p + v->off, v->len);
            break;
        case DMJ__T_TRUE:
        case DMJ__T_FALSE:
            ok = cb_bool(imp, v->type == DMJ__T_TRUE);
            break;
        default:
            ok = cb_null(imp);
            break;
        }
    }
    if (ok)
        ok = close_value(imp);
    imp->fast = false;
    return ok ? 0 : imp->failed ? imp->failed : DMJ_EINVAL;
}

/* Whether yajl stands between top-level values at the start of a line, so that the next line
 * may go to the fast scanner. */
static bool settled(const struct dmj_import *imp, const unsigned char *p, size_t used)
{
    return used > 0 && p[used - 1] == '\n' && !imp->resync && imp->depth == 0 && imp->skip == 0;
}

static int json_feed(struct dmj_import *imp, const unsigned char *p, size_t len)
{
    int rc;
    while (len > 0) {
        if (imp->resync) {
            set_chunk(imp, p, len);
            const unsigned char *nl = memchr(p, '\n', len);
            size_t drop = nl ? (size_t)(nl - p) + 1 : len;
            count_to(imp, drop);
            imp->resync = nl == NULL;
            imp->clean = nl != NULL; /* a fresh parser at the start of a line */
            p += drop;
            len -= drop;
            continue;
        }
        size_t take = len, used;
        if (imp->clean || imp->depth <= 1) {
            /* Line by line while NDJSON is possible: a whole line at the start of one, with
             * yajl between values, may take the fast path. */
            const unsigned char *nl = memchr(p, '\n', len);
            if (nl)
                take = (size_t)(nl - p) + 1;
            if (nl && imp->clean && take - 1 < UINT32_MAX) {
                int n = dmj__import_scan_line(p, take - 1, imp->toks, DMJ__IMPORT_MAX_TOKS);
                if (n >= 0) {
                    set_chunk(imp, p, take - 1);
                    if ((rc = replay(imp, p, n)) != 0)
                        return rc;
                    imp->line++;
                    p += take;
                    len -= take;
                    continue;
                }
            }
        }
        if ((rc = yajl_step(imp, p, take, &used)) != 0)
            return rc;
        imp->clean = settled(imp, p, used);
        p += used;
        len -= used;
    }
    return 0;
}

static int json_sink(void *ctx, const unsigned char *p, size_t len)
{
    return json_feed(ctx, p, len);
}

/* Makes sure a failure is sticky and says why. */
static int failure(struct dmj_import *imp, int rc)
{
    if (rc != 0 && !imp->failed) {
        if (rc == DMJ_EINVAL && imp->dec.why[0] && imp->dec.why_field)
            set_error(&imp->err, imp->dec.why_line, imp->dec.why_field, imp->dec.why);
        else if (rc == DMJ_EINVAL && imp->dec.why[0])
            set_error(&imp->err, imp->line, "gzip", imp->dec.why);
        else if (imp->err.reason[0] == '\0')
            set_error(&imp->err, imp->line, "input", dmj_strerror(rc));
        imp->failed = rc;
    }
    return rc;
}

int dmj_import_feed(struct dmj_import *imp, const void *data, size_t len)
{
    if (imp->failed)
        return imp->failed;
    imp->bytes_in += len;
    return failure(imp, dmj__import_decoder_feed(&imp->dec, data, len));
}

int dmj_import_finish(struct dmj_import *imp)
{
    if (imp->failed)
        return imp->failed;
    int rc = dmj__import_decoder_finish(&imp->dec);
    if (rc == 0 && imp->saw_value && !imp->resync) {
        set_chunk(imp, (const unsigned char *)"", 0);
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
    return failure(imp, rc);
}

/* ---- life cycle ------------------------------------------------------------------- */

int dmj_import_new(const struct dmj_import_options *opts, struct dmj_import **out)
{
    struct dmj_import *imp = calloc(1, sizeof *imp);
    if (!imp)
        return -ENOMEM;
    imp->o = *opts;
    imp->line = 1;
    imp->clean = true;
    dmj_buf_init(&imp->fl.arena, RECORD_MAX);
    int rc = dmj__import_decoder_init(&imp->dec, opts->pg_copy, json_sink, imp);
    if (rc == 0)
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
    dmj__import_decoder_dispose(&imp->dec);
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

uint64_t dmj_import_line(const struct dmj_import *imp)
{
    return imp->line;
}

bool dmj_import_at_boundary(const struct dmj_import *imp)
{
    return !imp->failed && imp->depth == 0 && imp->skip == 0 && !imp->resync &&
           imp->dec.gz == GZ_PLAIN && imp->dec.bom_done && !imp->dec.pg_copy;
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

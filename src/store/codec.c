/* The msgpack records of jobs and identities: msgpack-c packs them, a bounds-checked reader of
 * our own decodes them (no zone, no allocation: the server decodes ~100 per list request). */
#include <errno.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "codec.h"
#include "dmj/error.h"

/* Number of elements of each record array, version included. */
#define JOB_FIELDS 18
#define TEAM_FIELDS 5
#define ORG_FIELDS 3
#define USER_FIELDS 5
#define KEY_FIELDS 7 /* 8 with the creation time, when it is known */

/* ---- encoding ------------------------------------------------------------------------ */

/* The packer's sink; dmj_buf's error code is kept so that DMJ_ETOOBIG/-ENOMEM survive. */
struct sink {
    struct dmj_buf *out;
    int err;
};

static int sink_write(void *data, const char *buf, size_t len)
{
    struct sink *s = data;
    struct dmj_buf *b = s->out;
    /* the packer calls this once per element: append in place while the room reserved at
     * enc_init lasts (cap never passes max + 1, so this respects the maximum too) */
    if (b->data && b->cap - b->len > len) {
        memcpy(b->data + b->len, buf, len);
        b->len += len;
        b->data[b->len] = '\0';
        return 0;
    }
    int rc = dmj_buf_add(b, buf, len);
    if (rc) {
        s->err = rc;
        return -1;
    }
    return 0;
}

/* A string's length for size estimates; a NULL string's len means nothing. */
static size_t slen(struct dmj_str s)
{
    return s.ptr ? s.len : 0;
}

struct enc {
    msgpack_packer pk;
    struct sink sink;
    size_t start; /* where this record began, to roll back on failure */
    int rc;       /* first failure; later packs are skipped */
};

static void enc_init(struct enc *e, struct dmj_buf *out, size_t expect)
{
    /* room for the whole record at once; if even that is refused, appends go one by one
     * and meet the same limit, so the result is unchanged */
    int rc = dmj_buf_reserve(out, expect);
    (void)rc;
    e->sink.out = out;
    e->sink.err = 0;
    e->start = out->len;
    e->rc = 0;
    msgpack_packer_init(&e->pk, &e->sink, sink_write);
}

static void enc_check(struct enc *e, int prc)
{
    if (prc != 0 && e->rc == 0)
        e->rc = e->sink.err ? e->sink.err : -ENOMEM;
}

static void enc_array(struct enc *e, uint32_t n)
{
    if (!e->rc)
        enc_check(e, msgpack_pack_array(&e->pk, n));
}

static void enc_int(struct enc *e, int64_t v)
{
    if (!e->rc)
        enc_check(e, msgpack_pack_int64(&e->pk, v));
}

static void enc_nil(struct enc *e)
{
    if (!e->rc)
        enc_check(e, msgpack_pack_nil(&e->pk));
}

static void enc_opt_int(struct enc *e, bool has, int64_t v)
{
    if (has)
        enc_int(e, v);
    else
        enc_nil(e);
}

static void enc_bool(struct enc *e, bool v)
{
    if (e->rc)
        return;
    enc_check(e, v ? msgpack_pack_true(&e->pk) : msgpack_pack_false(&e->pk));
}

static void enc_bin16(struct enc *e, const uint8_t id[16])
{
    if (e->rc)
        return;
    enc_check(e, msgpack_pack_bin(&e->pk, 16));
    if (!e->rc)
        enc_check(e, msgpack_pack_bin_body(&e->pk, id, 16));
}

static void enc_opt_bin16(struct enc *e, bool has, const uint8_t id[16])
{
    if (has)
        enc_bin16(e, id);
    else
        enc_nil(e);
}

static void enc_raw_str(struct enc *e, const char *p, size_t len)
{
    if (e->rc)
        return;
    if (len > UINT32_MAX) {
        e->rc = DMJ_ETOOBIG;
        return;
    }
    enc_check(e, msgpack_pack_str(&e->pk, len));
    if (!e->rc && len)
        enc_check(e, msgpack_pack_str_body(&e->pk, p, len));
}

static void enc_str(struct enc *e, struct dmj_str s)
{
    if (s.ptr)
        enc_raw_str(e, s.ptr, s.len);
    else
        enc_nil(e);
}

static void enc_double(struct enc *e, double v)
{
    if (!e->rc)
        enc_check(e, msgpack_pack_double(&e->pk, v));
}

/* Ends a record: on failure the buffer is put back as it was. */
static int enc_finish(struct enc *e)
{
    if (e->rc) {
        e->sink.out->len = e->start;
        if (e->sink.out->data)
            e->sink.out->data[e->start] = '\0';
    }
    return e->rc;
}

int dmj_codec_encode_job(const struct dmj_job *job, struct dmj_buf *out)
{
    struct enc e;
    if ((unsigned)job->status >= DMJ_STATUS_COUNT)
        return DMJ_EINVAL;
    enc_init(&e, out,
             200 + slen(job->error) + slen(job->workflow_id) + slen(job->workflow_run_id) +
                 slen(job->engine) + slen(job->run_mode) + slen(job->parent_workflow_id));
    enc_array(&e, JOB_FIELDS);
    enc_int(&e, DMJ_CODEC_VERSION);
    enc_bin16(&e, job->id);
    enc_int(&e, job->team_id);
    enc_opt_bin16(&e, job->has_saved_query_id, job->saved_query_id);
    enc_int(&e, (int64_t)job->status);
    enc_int(&e, job->rows_materialized);
    enc_str(&e, job->error);
    enc_int(&e, job->created_at);
    enc_opt_int(&e, job->has_last_run_at, job->last_run_at);
    enc_str(&e, job->workflow_id);
    enc_str(&e, job->workflow_run_id);
    enc_opt_int(&e, job->has_rows_expected, job->rows_expected);
    enc_str(&e, job->engine);
    enc_str(&e, job->run_mode);
    enc_str(&e, job->parent_workflow_id);
    if (job->has_storage_delta_mib)
        enc_double(&e, job->storage_delta_mib);
    else
        enc_nil(&e);
    enc_opt_int(&e, job->has_created_by_id, job->created_by_id);
    enc_opt_int(&e, job->has_updated_at, job->updated_at);
    return enc_finish(&e);
}

int dmj_codec_encode_team(const struct dmj_team *t, struct dmj_buf *out)
{
    struct enc e;
    enc_init(&e, out, 64 + slen(t->name));
    enc_array(&e, TEAM_FIELDS);
    enc_int(&e, DMJ_CODEC_VERSION);
    enc_int(&e, t->id);
    enc_int(&e, t->project_id);
    enc_bin16(&e, t->organization_id);
    enc_str(&e, t->name);
    return enc_finish(&e);
}

int dmj_codec_encode_org(const struct dmj_org *o, struct dmj_buf *out)
{
    struct enc e;
    enc_init(&e, out, 32 + slen(o->name));
    enc_array(&e, ORG_FIELDS);
    enc_int(&e, DMJ_CODEC_VERSION);
    enc_bin16(&e, o->id);
    enc_str(&e, o->name);
    return enc_finish(&e);
}

int dmj_codec_encode_user(const struct dmj_user *u, struct dmj_buf *out)
{
    struct enc e;
    enc_init(&e, out, 64);
    enc_array(&e, USER_FIELDS);
    enc_int(&e, DMJ_CODEC_VERSION);
    enc_int(&e, u->id);
    enc_bool(&e, u->is_active);
    enc_opt_int(&e, u->has_current_team, u->current_team_id);
    enc_opt_bin16(&e, u->has_current_org, u->current_org);
    return enc_finish(&e);
}

int dmj_codec_encode_key(const struct dmj_key *k, struct dmj_buf *out)
{
    const char *nul = memchr(k->secure_value, '\0', sizeof k->secure_value);
    if (!nul)
        return DMJ_EINVAL; /* not NUL-terminated */
    size_t hlen = (size_t)(nul - k->secure_value);
    if (k->n_scopes > DMJ_KEY_MAX_SCOPES || k->n_teams > DMJ_KEY_MAX_TEAMS ||
        k->n_orgs > DMJ_KEY_MAX_ORGS)
        return DMJ_ETOOBIG;
    struct enc e;
    enc_init(&e, out, 128 + slen(k->id));
    enc_array(&e, KEY_FIELDS + (k->has_created_at ? 1 : 0));
    enc_int(&e, DMJ_CODEC_VERSION);
    enc_raw_str(&e, k->secure_value, hlen);
    enc_str(&e, k->id);
    enc_int(&e, k->user_id);
    enc_array(&e, k->n_scopes);
    for (unsigned i = 0; i < k->n_scopes; i++) {
        /* a NULL scope has no meaning in a list of names: store it as "" */
        struct dmj_str s = k->scopes[i];
        enc_raw_str(&e, s.ptr ? s.ptr : "", s.ptr ? s.len : 0);
    }
    enc_array(&e, k->n_teams);
    for (unsigned i = 0; i < k->n_teams; i++)
        enc_int(&e, k->scoped_teams[i]);
    enc_array(&e, k->n_orgs);
    for (unsigned i = 0; i < k->n_orgs; i++)
        enc_bin16(&e, k->scoped_orgs[i]);
    if (k->has_created_at)
        enc_int(&e, k->created_at);
    return enc_finish(&e);
}

/* ---- decoding ------------------------------------------------------------------------ */

/* A cursor over untrusted bytes: every read checks the remaining length first. */
struct rd {
    const uint8_t *p;
    const uint8_t *end;
};

static size_t rd_left(const struct rd *r)
{
    return (size_t)(r->end - r->p);
}

static uint64_t be_read(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Takes the big-endian length/value of `n` bytes after the type byte. */
static int rd_take(struct rd *r, unsigned n, uint64_t *out)
{
    if (rd_left(r) < n)
        return DMJ_EBADRECORD;
    *out = be_read(r->p, n);
    r->p += n;
    return 0;
}

static bool rd_is_nil(struct rd *r)
{
    if (r->p < r->end && *r->p == 0xc0) {
        r->p++;
        return true;
    }
    return false;
}

static int rd_array(struct rd *r, uint32_t *n)
{
    if (r->p >= r->end)
        return DMJ_EBADRECORD;
    uint8_t t = *r->p++;
    uint64_t v;
    if ((t & 0xf0) == 0x90) {
        *n = t & 0x0f;
        return 0;
    }
    if (t == 0xdc) {
        if (rd_take(r, 2, &v))
            return DMJ_EBADRECORD;
    } else if (t == 0xdd) {
        if (rd_take(r, 4, &v))
            return DMJ_EBADRECORD;
    } else {
        return DMJ_EBADRECORD;
    }
    *n = (uint32_t)v;
    return 0;
}

/* Any msgpack integer that fits in [lo, hi]. */
static int rd_int(struct rd *r, int64_t lo, int64_t hi, int64_t *out)
{
    if (r->p >= r->end)
        return DMJ_EBADRECORD;
    uint8_t t = *r->p++;
    uint64_t u;
    int64_t v;
    if (t <= 0x7f) {
        v = t;
    } else if (t >= 0xe0) {
        v = (int8_t)t;
    } else if (t >= 0xcc && t <= 0xcf) { /* uint 8/16/32/64 */
        if (rd_take(r, 1u << (t - 0xcc), &u))
            return DMJ_EBADRECORD;
        if (u > INT64_MAX)
            return DMJ_EBADRECORD;
        v = (int64_t)u;
    } else if (t >= 0xd0 && t <= 0xd3) { /* int 8/16/32/64 */
        unsigned n = 1u << (t - 0xd0);
        if (rd_take(r, n, &u))
            return DMJ_EBADRECORD;
        if (n < 8 && (u >> (8 * n - 1)) & 1)
            u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        /* two's complement conversion without implementation-defined casts */
        v = u <= INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
    } else {
        return DMJ_EBADRECORD;
    }
    if (v < lo || v > hi)
        return DMJ_EBADRECORD;
    *out = v;
    return 0;
}

static int rd_opt_int(struct rd *r, int64_t lo, int64_t hi, bool *has, int64_t *out)
{
    if (rd_is_nil(r)) {
        *has = false;
        *out = 0;
        return 0;
    }
    *has = true;
    return rd_int(r, lo, hi, out);
}

/* An int32 field (team ids): any msgpack integer in range. */
static int rd_i32(struct rd *r, int32_t *out)
{
    int64_t v;
    if (rd_int(r, INT32_MIN, INT32_MAX, &v))
        return DMJ_EBADRECORD;
    *out = (int32_t)v;
    return 0;
}

static int rd_str(struct rd *r, struct dmj_str *out)
{
    if (r->p >= r->end)
        return DMJ_EBADRECORD;
    uint8_t t = *r->p++;
    uint64_t len;
    if ((t & 0xe0) == 0xa0) {
        len = t & 0x1f;
    } else if (t >= 0xd9 && t <= 0xdb) { /* str 8/16/32 */
        if (rd_take(r, 1u << (t - 0xd9), &len))
            return DMJ_EBADRECORD;
    } else {
        return DMJ_EBADRECORD;
    }
    if (len > rd_left(r))
        return DMJ_EBADRECORD;
    out->ptr = (const char *)r->p;
    out->len = (size_t)len;
    r->p += len;
    return 0;
}

static int rd_opt_str(struct rd *r, struct dmj_str *out)
{
    if (rd_is_nil(r)) {
        out->ptr = NULL;
        out->len = 0;
        return 0;
    }
    return rd_str(r, out);
}

static int rd_bin16(struct rd *r, uint8_t out[16])
{
    if (rd_left(r) < 18 || r->p[0] != 0xc4 || r->p[1] != 16)
        return DMJ_EBADRECORD;
    memcpy(out, r->p + 2, 16);
    r->p += 18;
    return 0;
}

static int rd_opt_bin16(struct rd *r, bool *has, uint8_t out[16])
{
    if (rd_is_nil(r)) {
        *has = false;
        memset(out, 0, 16);
        return 0;
    }
    *has = true;
    return rd_bin16(r, out);
}

static int rd_bool(struct rd *r, bool *out)
{
    if (r->p >= r->end || (*r->p != 0xc2 && *r->p != 0xc3))
        return DMJ_EBADRECORD;
    *out = *r->p++ == 0xc3;
    return 0;
}

static int rd_double(struct rd *r, double *out)
{
    if (r->p >= r->end)
        return DMJ_EBADRECORD;
    uint8_t t = *r->p++;
    uint64_t u;
    if (t == 0xcb) {
        if (rd_take(r, 8, &u))
            return DMJ_EBADRECORD;
        memcpy(out, &u, sizeof *out);
        return 0;
    }
    if (t == 0xca) {
        float f;
        uint32_t w;
        if (rd_take(r, 4, &u))
            return DMJ_EBADRECORD;
        w = (uint32_t)u;
        memcpy(&f, &w, sizeof f);
        *out = f;
        return 0;
    }
    return DMJ_EBADRECORD;
}

/* The array header and version every record starts with; `n` is the number of elements. */
static int rd_header_n(struct rd *r, const void *data, size_t len, uint32_t *n)
{
    int64_t version;
    r->p = data;
    r->end = r->p + len;
    if (len == 0 || rd_array(r, n))
        return DMJ_EBADRECORD;
    if (*n < 1 || rd_int(r, INT64_MIN, INT64_MAX, &version))
        return DMJ_EBADRECORD;
    return version == DMJ_CODEC_VERSION ? 0 : DMJ_EVERSION;
}

/* The same for a record of exactly `fields` elements. */
static int rd_header(struct rd *r, const void *data, size_t len, uint32_t fields)
{
    uint32_t n;
    int rc = rd_header_n(r, data, len, &n);
    if (rc)
        return rc;
    return n == fields ? 0 : DMJ_EBADRECORD;
}

/* A record must be exactly its bytes: trailing bytes mean it is not what we wrote. */
static int rd_end(const struct rd *r)
{
    return r->p == r->end ? 0 : DMJ_EBADRECORD;
}

int dmj_codec_decode_job(const void *data, size_t len, struct dmj_job *out)
{
    struct rd r;
    struct dmj_job j;
    int64_t v;
    int rc = rd_header(&r, data, len, JOB_FIELDS);
    if (rc)
        return rc;
    memset(&j, 0, sizeof j);
    if (rd_bin16(&r, j.id) || rd_i32(&r, &j.team_id) ||
        rd_opt_bin16(&r, &j.has_saved_query_id, j.saved_query_id) ||
        rd_int(&r, 0, DMJ_STATUS_COUNT - 1, &v))
        return DMJ_EBADRECORD;
    j.status = (enum dmj_status)v;
    if (rd_int(&r, INT64_MIN, INT64_MAX, &j.rows_materialized) || rd_opt_str(&r, &j.error) ||
        rd_int(&r, INT64_MIN, INT64_MAX, &j.created_at) ||
        rd_opt_int(&r, INT64_MIN, INT64_MAX, &j.has_last_run_at, &j.last_run_at) ||
        rd_opt_str(&r, &j.workflow_id) || rd_opt_str(&r, &j.workflow_run_id) ||
        rd_opt_int(&r, INT64_MIN, INT64_MAX, &j.has_rows_expected, &j.rows_expected) ||
        rd_opt_str(&r, &j.engine) || rd_opt_str(&r, &j.run_mode) ||
        rd_opt_str(&r, &j.parent_workflow_id))
        return DMJ_EBADRECORD;
    if (rd_is_nil(&r)) {
        j.has_storage_delta_mib = false;
    } else {
        j.has_storage_delta_mib = true;
        if (rd_double(&r, &j.storage_delta_mib))
            return DMJ_EBADRECORD;
    }
    if (rd_opt_int(&r, INT64_MIN, INT64_MAX, &j.has_created_by_id, &j.created_by_id) ||
        rd_opt_int(&r, INT64_MIN, INT64_MAX, &j.has_updated_at, &j.updated_at) || rd_end(&r))
        return DMJ_EBADRECORD;
    *out = j;
    return 0;
}

int dmj_codec_decode_team(const void *data, size_t len, struct dmj_team *out)
{
    struct rd r;
    struct dmj_team t;
    int rc = rd_header(&r, data, len, TEAM_FIELDS);
    if (rc)
        return rc;
    if (rd_i32(&r, &t.id) || rd_int(&r, INT64_MIN, INT64_MAX, &t.project_id) ||
        rd_bin16(&r, t.organization_id) || rd_opt_str(&r, &t.name) || rd_end(&r))
        return DMJ_EBADRECORD;
    *out = t;
    return 0;
}

int dmj_codec_decode_org(const void *data, size_t len, struct dmj_org *out)
{
    struct rd r;
    struct dmj_org o;
    int rc = rd_header(&r, data, len, ORG_FIELDS);
    if (rc)
        return rc;
    if (rd_bin16(&r, o.id) || rd_opt_str(&r, &o.name) || rd_end(&r))
        return DMJ_EBADRECORD;
    *out = o;
    return 0;
}

int dmj_codec_decode_user(const void *data, size_t len, struct dmj_user *out)
{
    struct rd r;
    struct dmj_user u;
    int64_t v;
    int rc = rd_header(&r, data, len, USER_FIELDS);
    if (rc)
        return rc;
    if (rd_int(&r, INT64_MIN, INT64_MAX, &u.id) || rd_bool(&r, &u.is_active) ||
        rd_opt_int(&r, INT32_MIN, INT32_MAX, &u.has_current_team, &v))
        return DMJ_EBADRECORD;
    u.current_team_id = (int32_t)v;
    if (rd_opt_bin16(&r, &u.has_current_org, u.current_org) || rd_end(&r))
        return DMJ_EBADRECORD;
    *out = u;
    return 0;
}

/* The key struct is ~7 KB, too big to decode into a local copy on every look-up; so every
 * check runs in a first pass, and only validated bytes are written to `out` in a second. */
int dmj_codec_decode_key(const void *data, size_t len, struct dmj_key *out)
{
    struct rd r;
    struct dmj_str hash, id;
    int64_t user_id;
    int32_t team;
    uint32_t fields, n_scopes, n_teams, n_orgs;
    int64_t created_at = 0;
    int rc = rd_header_n(&r, data, len, &fields);
    if (rc)
        return rc;
    if (fields != KEY_FIELDS && fields != KEY_FIELDS + 1)
        return DMJ_EBADRECORD;
    if (rd_str(&r, &hash) || hash.len > DMJ_KEY_HASH_LEN || memchr(hash.ptr, 0, hash.len) ||
        rd_opt_str(&r, &id) || rd_int(&r, INT64_MIN, INT64_MAX, &user_id))
        return DMJ_EBADRECORD;

    /* First pass: validate the three lists without writing anything. */
    struct rd lists = r;
    struct dmj_str s;
    uint8_t uuid[16];
    if (rd_array(&r, &n_scopes) || n_scopes > DMJ_KEY_MAX_SCOPES)
        return DMJ_EBADRECORD;
    for (uint32_t i = 0; i < n_scopes; i++)
        if (rd_str(&r, &s))
            return DMJ_EBADRECORD;
    if (rd_array(&r, &n_teams) || n_teams > DMJ_KEY_MAX_TEAMS)
        return DMJ_EBADRECORD;
    for (uint32_t i = 0; i < n_teams; i++)
        if (rd_i32(&r, &team))
            return DMJ_EBADRECORD;
    if (rd_array(&r, &n_orgs) || n_orgs > DMJ_KEY_MAX_ORGS)
        return DMJ_EBADRECORD;
    for (uint32_t i = 0; i < n_orgs; i++)
        if (rd_bin16(&r, uuid))
            return DMJ_EBADRECORD;
    if ((fields > KEY_FIELDS && rd_int(&r, INT64_MIN, INT64_MAX, &created_at)) || rd_end(&r))
        return DMJ_EBADRECORD;

    /* Second pass over the validated bytes: cannot fail. */
    r = lists;
    memcpy(out->secure_value, hash.ptr, hash.len);
    out->secure_value[hash.len] = '\0';
    out->id = id;
    out->user_id = user_id;
    out->has_created_at = fields > KEY_FIELDS;
    out->created_at = created_at;
    (void)rd_array(&r, &n_scopes);
    out->n_scopes = n_scopes;
    for (uint32_t i = 0; i < n_scopes; i++)
        (void)rd_str(&r, &out->scopes[i]);
    (void)rd_array(&r, &n_teams);
    out->n_teams = n_teams;
    for (uint32_t i = 0; i < n_teams; i++) {
        (void)rd_i32(&r, &out->scoped_teams[i]);
    }
    (void)rd_array(&r, &n_orgs);
    out->n_orgs = n_orgs;
    for (uint32_t i = 0; i < n_orgs; i++)
        (void)rd_bin16(&r, out->scoped_orgs[i]);
    return 0;
}

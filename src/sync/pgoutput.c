/** The replication stream's messages (PostgreSQL's "Streaming Replication Protocol" and
 * "Logical Replication Message Formats", protocol version 1), read with a cursor that checks
 * every length against the end of the message. */
#include <stdio.h>
#include <string.h>

#include "dmj/json.h"
#include "pgoutput.h"

struct reader {
    const uint8_t *p, *end;
    bool bad;
};

static bool take(struct reader *r, size_t n, const uint8_t **at)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return false;
    }
    *at = r->p;
    r->p += n;
    return true;
}

static uint64_t get_be(struct reader *r, size_t n)
{
    const uint8_t *at;
    uint64_t v = 0;
    if (take(r, n, &at)) {
        for (size_t i = 0; i < n; i++)
            v = v << 8 | at[i];
    }
    return v;
}

static uint8_t get8(struct reader *r)
{
    return (uint8_t)get_be(r, 1);
}

static uint16_t get16(struct reader *r)
{
    return (uint16_t)get_be(r, 2);
}

static uint32_t get32(struct reader *r)
{
    return (uint32_t)get_be(r, 4);
}

static uint64_t get64(struct reader *r)
{
    return get_be(r, 8);
}

/* A NUL-terminated string (the NUL is consumed, not counted). */
static struct pgo_text get_cstring(struct reader *r)
{
    struct pgo_text t = {NULL, 0};
    const void *nul = r->bad ? NULL : memchr(r->p, '\0', (size_t)(r->end - r->p));
    if (!nul) {
        r->bad = true;
        return t;
    }
    t.ptr = (const char *)r->p;
    t.len = (size_t)((const uint8_t *)nul - r->p);
    r->p += t.len + 1;
    return t;
}

int pgo_parse_copy(const uint8_t *p, size_t n, struct pgo_copy *out)
{
    struct reader r = {p, p + n, false};
    memset(out, 0, sizeof *out);
    out->kind = (char)get8(&r);
    if (out->kind == 'w') {
        out->wal_start = get64(&r);
        out->wal_end = get64(&r);
        get64(&r); /* the server's clock */
        out->data = r.p;
        out->len = r.bad ? 0 : (size_t)(r.end - r.p);
    } else if (out->kind == 'k') {
        out->wal_start = get64(&r);
        get64(&r);
        out->reply_now = get8(&r) != 0;
    } else {
        return DMJ_EINVAL;
    }
    return r.bad ? DMJ_EINVAL : 0;
}

static void get_tuple(struct reader *r, struct pgo_value *values, struct pgo_tuple *t)
{
    t->ncols = get16(r);
    t->values = values;
    if (t->ncols > PGO_MAX_COLUMNS) {
        r->bad = true;
        return;
    }
    for (uint16_t i = 0; i < t->ncols && !r->bad; i++) {
        struct pgo_value *v = &values[i];
        v->kind = (char)get8(r);
        v->text.ptr = NULL;
        v->text.len = 0;
        if (v->kind == 't') {
            uint32_t len = get32(r);
            const uint8_t *at;
            if (take(r, len, &at)) {
                v->text.ptr = (const char *)at;
                v->text.len = len;
            }
        } else if (v->kind != 'n' && v->kind != 'u') {
            r->bad = true; /* 'b' (binary) is only sent when asked for */
        }
    }
}

int pgo_parse(const uint8_t *p, size_t n, struct pgo_value *old_values,
              struct pgo_value *new_values, struct pgo_message *out)
{
    struct reader r = {p, p + n, false};
    memset(out, 0, sizeof *out);
    uint8_t tag = get8(&r);
    switch (tag) {
    case 'B':
        out->kind = PGO_BEGIN;
        out->lsn = get64(&r);
        get64(&r); /* commit time */
        get32(&r); /* xid */
        break;
    case 'C':
        out->kind = PGO_COMMIT;
        get8(&r); /* flags */
        out->lsn = get64(&r);
        out->end_lsn = get64(&r);
        get64(&r);
        break;
    case 'R':
        out->kind = PGO_RELATION;
        out->relid = get32(&r);
        out->nspname = get_cstring(&r);
        out->relname = get_cstring(&r);
        get8(&r); /* replica identity setting */
        out->ncols = get16(&r);
        if (out->ncols > PGO_MAX_COLUMNS)
            return DMJ_EINVAL;
        out->columns = r.p;
        out->columns_len = r.bad ? 0 : (size_t)(r.end - r.p);
        /* the columns are checked now, so that reading them later cannot fail */
        for (size_t pos = 0, i = 0; !r.bad && i < out->ncols; i++) {
            struct pgo_column c;
            if (pgo_next_column(out, &pos, &c) != 0)
                return DMJ_EINVAL;
            r.p = out->columns + pos;
        }
        break;
    case 'I':
        out->kind = PGO_INSERT;
        out->relid = get32(&r);
        if (get8(&r) != 'N')
            return DMJ_EINVAL;
        get_tuple(&r, new_values, &out->new_row);
        break;
    case 'U': {
        out->kind = PGO_UPDATE;
        out->relid = get32(&r);
        uint8_t sub = get8(&r);
        if (sub == 'K' || sub == 'O') {
            out->has_old = true;
            get_tuple(&r, old_values, &out->old);
            sub = get8(&r);
        }
        if (sub != 'N')
            return DMJ_EINVAL;
        get_tuple(&r, new_values, &out->new_row);
        break;
    }
    case 'D': {
        out->kind = PGO_DELETE;
        out->relid = get32(&r);
        uint8_t sub = get8(&r);
        if (sub != 'K' && sub != 'O')
            return DMJ_EINVAL;
        out->has_old = true;
        get_tuple(&r, old_values, &out->old);
        break;
    }
    case 'T': {
        out->kind = PGO_TRUNCATE;
        out->nrelids = get32(&r);
        get8(&r); /* CASCADE, RESTART IDENTITY */
        const uint8_t *at;
        if (out->nrelids > (size_t)(r.end - r.p) / 4 || !take(&r, (size_t)out->nrelids * 4, &at))
            return DMJ_EINVAL;
        out->relids = at;
        break;
    }
    case 'Y': /* type */
    case 'O': /* origin */
    case 'M': /* logical decoding message */
        out->kind = PGO_IGNORED;
        return 0;
    default:
        return DMJ_EINVAL;
    }
    if (!r.bad && r.p != r.end)
        r.bad = true; /* trailing bytes: not the message we think it is */
    return r.bad ? DMJ_EINVAL : 0;
}

int pgo_next_column(const struct pgo_message *m, size_t *pos, struct pgo_column *out)
{
    struct reader r = {m->columns + *pos, m->columns + m->columns_len, false};
    out->key = (get8(&r) & 1) != 0;
    out->name = get_cstring(&r);
    out->type = get32(&r);
    get32(&r); /* type modifier */
    if (r.bad)
        return DMJ_EINVAL;
    *pos = (size_t)(r.p - m->columns);
    return 0;
}

uint32_t pgo_relid_at(const struct pgo_message *m, uint32_t i)
{
    const uint8_t *p = m->relids + (size_t)i * 4;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Whether `t` is a JSON number as PostgreSQL's numeric types print one (not NaN, Infinity). */
static bool is_json_number(struct pgo_text t)
{
    size_t i = 0;
    if (i < t.len && t.ptr[i] == '-')
        i++;
    size_t digits = i;
    while (i < t.len && t.ptr[i] >= '0' && t.ptr[i] <= '9')
        i++;
    if (i == digits || (t.ptr[digits] == '0' && i - digits > 1))
        return false;
    if (i < t.len && t.ptr[i] == '.') {
        size_t f = ++i;
        while (i < t.len && t.ptr[i] >= '0' && t.ptr[i] <= '9')
            i++;
        if (i == f)
            return false;
    }
    if (i < t.len && (t.ptr[i] == 'e' || t.ptr[i] == 'E')) {
        i++;
        if (i < t.len && (t.ptr[i] == '+' || t.ptr[i] == '-'))
            i++;
        size_t e = i;
        while (i < t.len && t.ptr[i] >= '0' && t.ptr[i] <= '9')
            i++;
        if (i == e)
            return false;
    }
    return i == t.len;
}

static int add_value(struct dmj_buf *out, uint32_t type, struct pgo_text v)
{
    struct dmj_str s = {v.ptr, v.len};
    switch (type) {
    case PGO_BOOL:
        if (v.len == 1 && (v.ptr[0] == 't' || v.ptr[0] == 'f'))
            return dmj_buf_adds(out, v.ptr[0] == 't' ? "true" : "false");
        return DMJ_EINVAL;
    case PGO_INT2:
    case PGO_INT4:
    case PGO_INT8:
    case PGO_OID:
    case PGO_FLOAT4:
    case PGO_FLOAT8:
    case PGO_NUMERIC:
        /* row_to_json writes NaN and the infinities as strings */
        return is_json_number(v) ? dmj_buf_add(out, v.ptr, v.len) : dmj_json_add_string(out, s);
    case PGO_JSON:
    case PGO_JSONB:
        return v.len ? dmj_buf_add(out, v.ptr, v.len) : DMJ_EINVAL;
    default:
        return dmj_json_add_string(out, s);
    }
}

int pgo_row_json(struct dmj_buf *out, const struct pgo_column *cols, const struct pgo_tuple *t)
{
    int rc = dmj_buf_addc(out, '{');
    for (uint16_t i = 0; rc == 0 && i < t->ncols; i++) {
        const struct pgo_value *v = &t->values[i];
        if (v->kind == 'u')
            return DMJ_ENOTFOUND;
        if (i > 0)
            rc = dmj_buf_addc(out, ',');
        if (rc == 0)
            rc = dmj_json_add_string(out, (struct dmj_str){cols[i].name.ptr, cols[i].name.len});
        if (rc == 0)
            rc = dmj_buf_addc(out, ':');
        if (rc == 0)
            rc = v->kind == 'n' ? dmj_buf_add(out, "null", 4)
                                : add_value(out, cols[i].type, v->text);
    }
    return rc == 0 ? dmj_buf_addc(out, '}') : rc;
}

static void put_be(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = n; i-- > 0; v >>= 8)
        p[i] = (uint8_t)v;
}

void pgo_status_update(uint8_t out[PGO_STATUS_LEN], uint64_t lsn, int64_t now_us, bool reply)
{
    out[0] = 'r';
    put_be(out + 1, lsn, 8);  /* written */
    put_be(out + 9, lsn, 8);  /* flushed */
    put_be(out + 17, lsn, 8); /* applied */
    put_be(out + 25, (uint64_t)now_us, 8);
    out[33] = reply ? 1 : 0;
}

bool pgo_lsn_parse(const char *text, uint64_t *out)
{
    unsigned hi, lo;
    int end = 0;
    if (sscanf(text, "%8X/%8X%n", &hi, &lo, &end) != 2 || text[end] != '\0')
        return false;
    *out = (uint64_t)hi << 32 | lo;
    return true;
}

void pgo_lsn_format(uint64_t lsn, char out[18])
{
    snprintf(out, 18, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
}

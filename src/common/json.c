/* JSON output byte-for-byte as DRF renders it: escaped strings, job objects, error bodies. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "dmj/json.h"
#include "dmj/time.h"
#include "dmj/uuid.h"

/* Whether byte c can start something DRF escapes. 0xE2 only starts U+2028/U+2029 when the
 * two bytes after it are 80 A8 or 80 A9, which the callers check. */
static inline bool needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\' || c == 0xE2;
}

static inline bool is_line_sep(const unsigned char *s, size_t n, size_t i)
{
    return n - i >= 3 && s[i + 1] == 0x80 && (s[i + 2] == 0xA8 || s[i + 2] == 0xA9);
}

/* The escaped form of the byte at s[i] (and, for U+2028/9, the two after it) into e;
 * returns its length and sets *consumed, or 0 when the byte is written as it is. */
static size_t escape_at(const unsigned char *s, size_t n, size_t i, char e[6], size_t *consumed)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = s[i];
    *consumed = 1;
    /* The two-character escapes JSON has a letter for; everything else below 0x20 is \u00XX. */
    static const char letter[0x5d] = {['"'] = '"',  ['\\'] = '\\', ['\b'] = 'b', ['\t'] = 't',
                                      ['\n'] = 'n', ['\f'] = 'f',  ['\r'] = 'r'};
    if (c < sizeof letter && letter[c]) {
        e[0] = '\\';
        e[1] = letter[c];
        return 2;
    }
    if (c == 0xE2) {
        if (!is_line_sep(s, n, i))
            return 0;
        memcpy(e, s[i + 2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
        *consumed = 3;
        return 6;
    }
    if (c >= 0x20)
        return 0;
    memcpy(e, "\\u00", 4);
    e[4] = hex[c >> 4];
    e[5] = hex[c & 0xf];
    return 6;
}

/* The index of the first byte at or after `from` that needs_escape, or n: sixteen bytes at a
 * time with SSE2, then eight: a word is looked at byte by byte only when one of its bytes is
 * below 0x20 or equal to '"', '\\' or 0xE2 (the classic "has zero byte" test, which has no
 * false negatives). */
static size_t next_special(const unsigned char *s, size_t n, size_t from)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    size_t i = from;
#ifdef __SSE2__
    /* Sixteen at a time where SSE2 is there (every x86-64): each lane is exact, so the
     * first set bit of the mask is the answer. A byte is below 0x20 when min(byte, 0x1f)
     * is the byte itself. */
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'),
                  e2 = _mm_set1_epi8((char)0xE2), ctl = _mm_set1_epi8(0x1f);
    for (; n - i >= 16; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i hit = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
            _mm_or_si128(_mm_cmpeq_epi8(x, e2), _mm_cmpeq_epi8(_mm_min_epu8(x, ctl), x)));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask)
            return i + (size_t)__builtin_ctz(mask);
    }
#endif
    for (; n - i >= 8; i += 8) {
        uint64_t x, q, b, e;
        memcpy(&x, s + i, 8);
        q = x ^ (ones * '"');
        b = x ^ (ones * '\\');
        e = x ^ (ones * 0xE2);
        uint64_t hit =
            ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) | ((e - ones) & ~e);
        if (hit & highs)
            break;
    }
    for (; i < n; i++) {
        if (needs_escape(s[i]))
            return i;
    }
    return n;
}

/* Length of the escaped text of s, without the quotes; *first is where the first escape is
 * (n when there is none), so that the writer can copy everything before it at once. */
static size_t escaped_len(const unsigned char *s, size_t n, size_t *first)
{
    size_t out = n;
    *first = n;
    for (size_t i = next_special(s, n, 0); i < n; i = next_special(s, n, i + 1)) {
        char e[6];
        size_t used;
        size_t elen = escape_at(s, n, i, e, &used);
        if (elen) {
            if (*first == n)
                *first = i;
            out += elen - used;
            i += used - 1;
        }
    }
    return out;
}

/* Writes the escaped text of s[0..n) at p, which has room for it (escaped_len); `first` is
 * where its first escape is. Returns the end. */
static char *put_escaped(char *p, const unsigned char *s, size_t n, size_t first)
{
    size_t run = 0; /* start of the current run of bytes copied as they are */
    for (size_t i = first; i < n; i = next_special(s, n, i + 1)) {
        char e[6];
        size_t used;
        size_t elen = escape_at(s, n, i, e, &used);
        if (!elen)
            continue;
        memcpy(p, s + run, i - run);
        p += i - run;
        memcpy(p, e, elen);
        p += elen;
        i += used - 1;
        run = i + 1;
    }
    memcpy(p, s + run, n - run);
    return p + n - run;
}

int dmj_json_add_string(struct dmj_buf *out, struct dmj_str str)
{
    if (!str.ptr)
        return dmj_buf_add(out, "null", 4);
    const unsigned char *s = (const unsigned char *)str.ptr;
    size_t n = str.len;
    size_t first;
    size_t total = escaped_len(s, n, &first);
    /* total >= n, so only the "+ 2" can wrap, and only for absurd sizes. */
    if (total > SIZE_MAX - 2)
        return DMJ_ETOOBIG;
    int rc = dmj_buf_reserve(out, total + 2);
    if (rc)
        return rc;
    char *p = out->data + out->len;
    *p++ = '"';
    p = put_escaped(p, s, n, first);
    *p++ = '"';
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
    return 0;
}

/* Decimal text of v at p (at most 20 bytes); returns the end. */
static char *put_int(char *p, int64_t v)
{
    char tmp[20];
    size_t n = 0;
    /* Work in unsigned so that INT64_MIN has a magnitude. */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *p++ = '-';
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_lit(char *p, const char *lit)
{
    size_t n = strlen(lit);
    memcpy(p, lit, n);
    return p + n;
}

static char *put_uuid(char *p, const uint8_t id[16])
{
    char text[DMJ_UUID_TEXT_LEN + 1];
    dmj_uuid_format(id, text);
    *p++ = '"';
    memcpy(p, text, DMJ_UUID_TEXT_LEN);
    p += DMJ_UUID_TEXT_LEN;
    *p++ = '"';
    return p;
}

static char *put_time(char *p, int64_t us)
{
    *p++ = '"';
    p += dmj_time_format_drf(us, p);
    *p++ = '"';
    return p;
}

/* Python repr() of a finite double: the shortest digits that read back to the same value,
 * in fixed notation for exponents -4..15 (with ".0" when whole), else d.ddde+XX. */
static char *put_double(char *p, double v)
{
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    /* tmp is [-]d[.ddd]e(+|-)XX: take the sign, the digits and the exponent apart. */
    const char *q = tmp;
    char digits[20];
    size_t nd = 0;
    if (*q == '-')
        *p++ = *q++;
    for (; *q && *q != 'e'; q++) {
        if (*q >= '0' && *q <= '9' && nd < sizeof digits)
            digits[nd++] = *q;
    }
    int exp = *q == 'e' ? atoi(q + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    if (exp < -4 || exp >= 16) {
        *p++ = digits[0];
        if (nd > 1) {
            *p++ = '.';
            memcpy(p, digits + 1, nd - 1);
            p += nd - 1;
        }
        *p++ = 'e';
        *p++ = exp < 0 ? '-' : '+';
        int ax = exp < 0 ? -exp : exp;
        if (ax >= 100)
            *p++ = (char)('0' + ax / 100);
        *p++ = (char)('0' + ax / 10 % 10);
        *p++ = (char)('0' + ax % 10);
    } else if (exp < 0) {
        *p++ = '0';
        *p++ = '.';
        for (int k = -1; k > exp; k--)
            *p++ = '0';
        memcpy(p, digits, nd);
        p += nd;
    } else {
        size_t whole = (size_t)exp + 1;
        for (size_t k = 0; k < whole; k++)
            *p++ = k < nd ? digits[k] : '0';
        *p++ = '.';
        if (nd > whole) {
            memcpy(p, digits + whole, nd - whole);
            p += nd - whole;
        } else {
            *p++ = '0';
        }
    }
    return p;
}

/* Each fixed stretch between two strings fits in this with room to spare. */
#define SEG_MAX 512

static int flush(struct dmj_buf *out, const char *seg, const char *end)
{
    return dmj_buf_add(out, seg, (size_t)(end - seg));
}

/* Appends a key text (with its punctuation) and then a string value. */
static int add_member(struct dmj_buf *out, const char *key, struct dmj_str value)
{
    int rc = dmj_buf_add(out, key, strlen(key));
    return rc ? rc : dmj_json_add_string(out, value);
}

/* The served fields (ten, or twelve for the current generation: run_mode after status,
 * updated_at after last_run_at), without the closing brace. */
static int add_job_fields(struct dmj_buf *out, const struct dmj_job *job, bool current)
{
    char seg[SEG_MAX], *p = seg;
    int rc;

    p = put_lit(p, "{\"id\":");
    p = put_uuid(p, job->id);
    p = put_lit(p, ",\"saved_query_id\":");
    p = job->has_saved_query_id ? put_uuid(p, job->saved_query_id) : put_lit(p, "null");
    p = put_lit(p, ",\"status\":\"");
    p = put_lit(p, dmj_status_name(job->status));
    p = put_lit(p, "\"");
    if (current) {
        rc = flush(out, seg, p);
        if (!rc)
            rc = add_member(out, ",\"run_mode\":", job->run_mode);
        if (rc)
            return rc;
        p = seg;
    }
    p = put_lit(p, ",\"rows_materialized\":");
    p = put_int(p, job->rows_materialized);
    p = put_lit(p, ",\"error\":");
    rc = flush(out, seg, p);
    if (!rc)
        rc = dmj_json_add_string(out, job->error);
    if (rc)
        return rc;

    p = put_lit(seg, ",\"created_at\":");
    p = put_time(p, job->created_at);
    p = put_lit(p, ",\"last_run_at\":");
    p = job->has_last_run_at ? put_time(p, job->last_run_at) : put_lit(p, "null");
    if (current) {
        p = put_lit(p, ",\"updated_at\":");
        p = job->has_updated_at ? put_time(p, job->updated_at) : put_lit(p, "null");
    }
    p = put_lit(p, ",\"workflow_id\":");
    rc = flush(out, seg, p);
    if (!rc)
        rc = dmj_json_add_string(out, job->workflow_id);
    if (!rc)
        rc = add_member(out, ",\"workflow_run_id\":", job->workflow_run_id);
    if (rc)
        return rc;

    p = put_lit(seg, ",\"rows_expected\":");
    p = job->has_rows_expected ? put_int(p, job->rows_expected) : put_lit(p, "null");
    return flush(out, seg, p);
}

/* A string member's value as measured once and written later: `"..."` or null. */
struct measured {
    const unsigned char *s;
    size_t n, first, room; /* room: the bytes it takes, quotes included */
};

static void measure(struct measured *m, struct dmj_str str)
{
    m->s = (const unsigned char *)str.ptr;
    m->n = str.len;
    if (!str.ptr) {
        m->room = 4;
        return;
    }
    /* At most 6 bytes out per byte in, and a stored string is far below SIZE_MAX / 8. */
    m->room = escaped_len(m->s, m->n, &m->first) + 2;
}

static char *put_measured(char *p, const struct measured *m)
{
    if (!m->s)
        return put_lit(p, "null");
    *p++ = '"';
    p = put_escaped(p, m->s, m->n, m->first);
    *p++ = '"';
    return p;
}

/* The fixed text of the served object: its keys and punctuation (under 250 bytes), two
 * quoted UUIDs, two integers and two quoted timestamps, with room to spare; the status
 * name and the three strings are counted on top. */
#define JOB_FIXED_MAX 512

/* The served object written straight into the buffer after one reservation: the list
 * renders a hundred of these per request, and the piecewise appends of add_job_fields cost
 * about as much as the text itself. DMJ_ETOOBIG when the reservation, which can exceed
 * the exact size, does not fit: the caller then goes the exact way. */
static int add_job_direct(struct dmj_buf *out, const struct dmj_job *job, bool current)
{
    struct measured error, workflow_id, workflow_run_id, run_mode;
    const char *status = dmj_status_name(job->status);
    measure(&error, job->error);
    measure(&workflow_id, job->workflow_id);
    measure(&workflow_run_id, job->workflow_run_id);
    measure(&run_mode, current ? job->run_mode : (struct dmj_str){NULL, 0});
    int rc = dmj_buf_reserve(out, JOB_FIXED_MAX + strlen(status) + error.room + workflow_id.room +
                                      workflow_run_id.room + run_mode.room);
    if (rc)
        return rc;

    char *p = out->data + out->len;
    p = put_lit(p, "{\"id\":");
    p = put_uuid(p, job->id);
    p = put_lit(p, ",\"saved_query_id\":");
    p = job->has_saved_query_id ? put_uuid(p, job->saved_query_id) : put_lit(p, "null");
    p = put_lit(p, ",\"status\":\"");
    p = put_lit(p, status);
    p = put_lit(p, "\"");
    if (current) {
        p = put_lit(p, ",\"run_mode\":");
        p = put_measured(p, &run_mode);
    }
    p = put_lit(p, ",\"rows_materialized\":");
    p = put_int(p, job->rows_materialized);
    p = put_lit(p, ",\"error\":");
    p = put_measured(p, &error);
    p = put_lit(p, ",\"created_at\":");
    p = put_time(p, job->created_at);
    p = put_lit(p, ",\"last_run_at\":");
    p = job->has_last_run_at ? put_time(p, job->last_run_at) : put_lit(p, "null");
    if (current) {
        p = put_lit(p, ",\"updated_at\":");
        p = job->has_updated_at ? put_time(p, job->updated_at) : put_lit(p, "null");
    }
    p = put_lit(p, ",\"workflow_id\":");
    p = put_measured(p, &workflow_id);
    p = put_lit(p, ",\"workflow_run_id\":");
    p = put_measured(p, &workflow_run_id);
    p = put_lit(p, ",\"rows_expected\":");
    p = job->has_rows_expected ? put_int(p, job->rows_expected) : put_lit(p, "null");
    *p++ = '}';
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
    return 0;
}

static int add_job(struct dmj_buf *out, const struct dmj_job *job, bool current)
{
    int rc = add_job_direct(out, job, current);
    if (rc != DMJ_ETOOBIG)
        return rc;
    /* Close to the buffer's maximum: piece by piece, so that an object that fits exactly
     * is still written, as it always was. */
    size_t start = out->len;
    rc = add_job_fields(out, job, current);
    if (!rc)
        rc = dmj_buf_add(out, "}", 1);
    return dmj_buf_rollback(out, start, rc);
}

int dmj_json_add_job(struct dmj_buf *out, const struct dmj_job *job)
{
    return add_job(out, job, false);
}

int dmj_json_add_job_current(struct dmj_buf *out, const struct dmj_job *job)
{
    return add_job(out, job, true);
}

static int add_job_rest(struct dmj_buf *out, const struct dmj_job *job)
{
    static const struct dmj_str clickhouse = {"clickhouse", 10};
    char seg[SEG_MAX], *p = seg;
    int rc;

    p = put_lit(p, ",\"team_id\":");
    p = put_int(p, job->team_id);
    p = put_lit(p, ",\"engine\":");
    rc = flush(out, seg, p);
    if (!rc)
        rc = dmj_json_add_string(out, job->engine.ptr ? job->engine : clickhouse);
    if (!rc)
        rc = add_member(out, ",\"run_mode\":", job->run_mode);
    if (!rc)
        rc = add_member(out, ",\"parent_workflow_id\":", job->parent_workflow_id);
    if (rc)
        return rc;

    p = put_lit(seg, ",\"storage_delta_mib\":");
    p = job->has_storage_delta_mib ? put_double(p, job->storage_delta_mib) : put_lit(p, "null");
    p = put_lit(p, ",\"created_by_id\":");
    p = job->has_created_by_id ? put_int(p, job->created_by_id) : put_lit(p, "null");
    p = put_lit(p, ",\"updated_at\":");
    p = job->has_updated_at ? put_time(p, job->updated_at) : put_lit(p, "null");
    *p++ = '}';
    return flush(out, seg, p);
}

int dmj_json_add_job_full(struct dmj_buf *out, const struct dmj_job *job)
{
    size_t start = out->len;
    int rc = add_job_fields(out, job, false);
    if (!rc)
        rc = add_job_rest(out, job);
    return dmj_buf_rollback(out, start, rc);
}

static struct dmj_str cstr(const char *s)
{
    struct dmj_str r = {s, s ? strlen(s) : 0};
    return r;
}

int dmj_json_add_error(struct dmj_buf *out, const char *type, const char *code, const char *detail,
                       const char *attr)
{
    size_t start = out->len;
    int rc = add_member(out, "{\"type\":", cstr(type));
    if (!rc)
        rc = add_member(out, ",\"code\":", cstr(code));
    if (!rc)
        rc = add_member(out, ",\"detail\":", cstr(detail));
    if (!rc)
        rc = add_member(out, ",\"attr\":", cstr(attr));
    if (!rc)
        rc = dmj_buf_add(out, "}", 1);
    return dmj_buf_rollback(out, start, rc);
}

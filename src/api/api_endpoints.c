/* The four endpoints (list, retrieve, running, recent), OPTIONS metadata and /_health: each
 * runs its own checks and renders its 200 body into the worker's buffer. */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cursor.h"
#include "dmj/json.h"
#include "dmj/query.h"
#include "dmj/store.h"
#include "dmj/time.h"
#include "dmj/uuid.h"
#include "number.h"

#include "api_internal.h"
#include "digest.h"

/* Python's int() refuses strings of more than 4300 digits (sys.int_info.str_digits_check_
 * threshold); the peer then takes the default page size. */
#define PY_INT_MAX_DIGITS 4300

static void ok(struct dmj__api_ctx *c)
{
    c->res->status = 200;
    c->res->json = true;
    c->res->body = c->w->body.data ? c->w->body.data : "";
    c->res->body_len = c->w->body.len;
}

/* `saved_query_id`: empty is no filter; a NUL is 400; not a UUID is 400. Returns 0, or 1
 * when `res` holds the error. */
static int saved_query_filter(struct dmj__api_ctx *c, bool *has, uint8_t id[16])
{
    const struct dmj_query *query = dmj__api_query(c);
    if (query == NULL) {
        dmj__api_internal(c, DMJ_ETOOBIG);
        return 1;
    }
    const struct dmj_query_param *p = dmj_query_last(query, "saved_query_id");
    *has = false;
    if (p == NULL || p->value_len == 0)
        return 0;
    if (memchr(p->value, '\0', p->value_len) != NULL) {
        dmj__api_fail(c, DMJ__API_ERR_NULL_CHARS, DMJ__MSG_NULL_CHARS);
        return 1;
    }
    if (dmj_uuid_parse(p->value, p->value_len, id) != 0) {
        dmj__api_fail(c, DMJ__API_ERR_INVALID_CHOICE, DMJ__MSG_INVALID_CHOICE);
        return 1;
    }
    *has = true;
    return 0;
}

/* Django's DateTimeField message for a value it cannot read. */
#define MSG_INVALID_DATETIME "Enter a valid date/time."

/* `status`: every value of every `status` parameter, split at commas, merged into one set;
 * each item one of the five stored names, exactly (case-sensitive, as Django's ChoiceField
 * compares). Empty items are skipped, so an empty value filters nothing (django-filter's
 * rule for empty values). Returns 0 with the set (0: no filter), or 1 when `res` holds the
 * 400. Only called once saved_query_filter has parsed the query. */
static int status_filter(struct dmj__api_ctx *c, unsigned *out)
{
    const struct dmj_query *q = &c->w->query;
    unsigned set = 0;

    for (unsigned i = 0; i < q->n; i++) {
        const struct dmj_query_param *p = &q->params[i];
        if (p->key_len != 6 || memcmp(p->key, "status", 6) != 0)
            continue;
        size_t pos = 0;
        while (pos < p->value_len) {
            const char *item = p->value + pos;
            const char *comma = memchr(item, ',', p->value_len - pos);
            size_t len = comma ? (size_t)(comma - item) : p->value_len - pos;
            enum dmj_status st;
            pos += len + 1;
            if (len == 0)
                continue;
            if (dmj_status_parse(item, len, &st) != 0) {
                dmj__api_invalid_param(c, "invalid_choice", DMJ__MSG_INVALID_CHOICE, "status");
                return 1;
            }
            set |= DMJ_PAGE_STATUS(st);
        }
    }
    *out = set;
    return 0;
}

/* `created_after` / `created_before` (`name`): the last value, a timestamp in the cursor
 * position's grammar (docs/api.md's grammar); empty filters nothing. Returns 0 (with *has
 * and *us), or 1 when `res` holds the 400 (code "invalid", as Django's DateTimeField). */
static int time_filter(struct dmj__api_ctx *c, const char *name, bool *has, int64_t *us)
{
    const struct dmj_query_param *p = dmj_query_last(&c->w->query, name);
    int64_t v;

    if (p == NULL || p->value_len == 0) {
        *has = false;
        return 0;
    }
    if (dmj_time_parse_django(p->value, p->value_len, &v) != 0) {
        dmj__api_invalid_param(c, "invalid", MSG_INVALID_DATETIME, name);
        return 1;
    }
    *has = true;
    *us = v;
    return 0;
}

/* DRF's get_page_size with dmj's maximum: not a positive integer -> 100, else clamped. */
static unsigned page_limit(const struct dmj__api_ctx *c)
{
    /* Only called once saved_query_filter has parsed the query. */
    const struct dmj_query_param *p = dmj_query_last(&c->w->query, "limit");
    unsigned max = c->w->cfg.max_limit;
    long long v;
    bool overflow = false;

    if (p == NULL || dmj_parse_int(p->value, p->value_len, &v, &overflow) != 0)
        return DMJ__API_DEFAULT_LIMIT;
    if (overflow) {
        size_t digits = 0;
        for (size_t i = 0; i < p->value_len; i++)
            digits += p->value[i] >= '0' && p->value[i] <= '9';
        if (digits > PY_INT_MAX_DIGITS)
            return DMJ__API_DEFAULT_LIMIT;
    }
    if (v <= 0)
        return DMJ__API_DEFAULT_LIMIT;
    if (max != 0 && (unsigned long long)v > max)
        return max;
    /* No maximum: a page can never hold more than UINT_MAX - 1 rows (limit + 1 is read). */
    if ((unsigned long long)v >= UINT_MAX)
        return UINT_MAX - 1;
    return (unsigned)v;
}

/* Appends the JSON string of DRF's link for cursor `cur`. */
static int add_link(struct dmj__api_ctx *c, const struct dmj_cursor *cur)
{
    struct dmj_api_worker *w = c->w;
    const struct dmj_str *host = &c->req->host;
    int rc;

    dmj_buf_reset(&w->cursor);
    dmj_buf_reset(&w->scratch);
    rc = dmj_cursor_encode(cur, &w->cursor);
    if (rc == 0)
        rc = dmj_query_build_link(&w->scratch, dmj__api_https(c->req), host->ptr ? host->ptr : "",
                                  host->ptr ? host->len : 0, w->path.data ? w->path.data : "",
                                  w->path.len, &w->query, w->cursor.data ? w->cursor.data : "",
                                  w->cursor.len);
    if (rc == 0) {
        struct dmj_str s = {w->scratch.data ? w->scratch.data : "", w->scratch.len};
        rc = dmj_json_add_string(&w->head, s);
    }
    return rc;
}

/* Whether the worker serves PostHog's current generation (--posthog-api offset). */
static bool current_api(const struct dmj__api_ctx *c)
{
    return c->w->cfg.generation == DMJ_API_OFFSET;
}

/* Whether a value of `p` (an integer by dmj_parse_int) has more digits than Python's int()
 * takes: then it is not an integer at all. */
static bool too_many_digits(const struct dmj_query_param *p)
{
    size_t digits = 0;
    for (size_t i = 0; i < p->value_len; i++)
        digits += p->value[i] >= '0' && p->value[i] <= '9';
    return digits > PY_INT_MAX_DIGITS;
}

#define OFFSET_DEFAULT_LIMIT 10
#define OFFSET_MAX_LIMIT 100
/* Python's int() takes at most this many digits, and a link's offset has no more. */
#define OFFSET_TEXT_MAX (PY_INT_MAX_DIGITS + 1)

/* LimitOffsetPagination's get_limit: not a positive integer -> 10, above 100 -> 100. */
static unsigned offset_limit(const struct dmj__api_ctx *c)
{
    const struct dmj_query_param *p = dmj_query_last(&c->w->query, "limit");
    long long v;
    bool overflow = false;

    if (p == NULL || dmj_parse_int(p->value, p->value_len, &v, &overflow) != 0 ||
        (overflow && too_many_digits(p)) || v <= 0)
        return OFFSET_DEFAULT_LIMIT;
    return v > OFFSET_MAX_LIMIT ? OFFSET_MAX_LIMIT : (unsigned)v;
}

/* An `offset` as Python holds it: a value that fits 63 bits, or past that its decimal digits
 * (no sign, no '_', no leading zero). */
struct offset {
    uint64_t v; /* UINT64_MAX when big */
    bool big;
    char digits[OFFSET_TEXT_MAX + 1];
    size_t n;
};

/* LimitOffsetPagination's get_offset: not an integer or negative -> 0. */
static void offset_param(const struct dmj__api_ctx *c, struct offset *o)
{
    const struct dmj_query_param *p = dmj_query_last(&c->w->query, "offset");
    long long v;
    bool overflow = false;

    o->v = 0;
    o->big = false;
    o->n = 0;
    if (p == NULL || dmj_parse_int(p->value, p->value_len, &v, &overflow) != 0 || v <= 0 ||
        (overflow && too_many_digits(p)))
        return;
    if (!overflow) {
        o->v = (uint64_t)v;
        return;
    }
    o->big = true;
    o->v = UINT64_MAX;
    for (size_t i = 0; i < p->value_len && o->n < OFFSET_TEXT_MAX; i++) {
        char d = p->value[i];
        if (d >= '0' && d <= '9' && (o->n > 0 || d != '0'))
            o->digits[o->n++] = d;
    }
    o->digits[o->n] = '\0';
}

/* Decimal text of a big offset minus `k` (k < 10^9, the offset far above it). */
static void offset_minus(struct offset *o, unsigned k)
{
    unsigned borrow = k;
    for (size_t i = o->n; i-- > 0 && borrow != 0;) {
        unsigned d = (unsigned)(o->digits[i] - '0');
        unsigned sub = borrow % 10;
        borrow /= 10;
        if (d < sub) {
            d += 10;
            borrow++;
        }
        o->digits[i] = (char)('0' + d - sub);
    }
    size_t lead = 0;
    while (lead + 1 < o->n && o->digits[lead] == '0')
        lead++;
    memmove(o->digits, o->digits + lead, o->n - lead + 1);
    o->n -= lead;
}

/* Appends the JSON string of DRF's link with `limit` replaced and `offset` replaced by the
 * text `off` (NULL: removed). */
static int add_offset_link(struct dmj__api_ctx *c, unsigned limit, const char *off, size_t len)
{
    struct dmj_api_worker *w = c->w;
    const struct dmj_str *host = &c->req->host;
    char lim[16];
    int n = snprintf(lim, sizeof lim, "%u", limit);
    struct dmj_query_set set[2] = {{"limit", lim, (size_t)n}, {"offset", off, len}};

    dmj_buf_reset(&w->scratch);
    int rc = dmj_query_build_link_set(&w->scratch, dmj__api_https(c->req),
                                      host->ptr ? host->ptr : "", host->ptr ? host->len : 0,
                                      w->path.data ? w->path.data : "", w->path.len, &w->query,
                                      set, 2);
    if (rc == 0) {
        struct dmj_str s = {w->scratch.data ? w->scratch.data : "", w->scratch.len};
        rc = dmj_json_add_string(&w->head, s);
    }
    return rc;
}

/* A page's rows are written first, into the body after this much room, and the text before
 * them (its links, known once the rows are read) then into that room: the rows are not
 * copied again unless the links are longer (they are moved then). */
#define PAGE_HEAD_ROOM 2048

/* Starts a page: an empty head, and the body holding only the room for it. */
static int start_page(struct dmj_api_worker *w)
{
    dmj_buf_reset(&w->head);
    dmj_buf_reset(&w->body);
    int rc = dmj_buf_reserve(&w->body, PAGE_HEAD_ROOM);
    if (rc == 0)
        w->body.len = PAGE_HEAD_ROOM;
    return rc;
}

/* Puts the head before the rows; the offset in the body where the answer starts. */
static int place_head(struct dmj_api_worker *w, size_t *start)
{
    struct dmj_buf *b = &w->body;
    size_t head = w->head.len;
    if (head > PAGE_HEAD_ROOM) {
        int rc = dmj_buf_reserve(b, head - PAGE_HEAD_ROOM);
        if (rc != 0)
            return rc;
        memmove(b->data + head, b->data + PAGE_HEAD_ROOM, b->len - PAGE_HEAD_ROOM + 1);
        b->len += head - PAGE_HEAD_ROOM;
    }
    *start = head > PAGE_HEAD_ROOM ? 0 : PAGE_HEAD_ROOM - head;
    if (head > 0)
        memcpy(b->data + *start, w->head.data, head);
    return 0;
}

/* Ends a page (its head, then its rows in the body) and answers it, or the error `rc` that
 * came first. The page's digest, for its ETag, is its head's folded with its rows' (kept
 * with each row), so that the rows are not read again to make it. */
static void finish_page(struct dmj__api_ctx *c, int rc, uint64_t rows_digest)
{
    struct dmj_api_worker *w = c->w;
    size_t start = 0;
    if (rc == 0)
        rc = dmj_buf_adds(&w->head, ",\"results\":");
    if (rc == 0)
        rc = dmj_buf_addc(&w->body, '}');
    if (rc == 0)
        rc = place_head(w, &start);
    if (rc != 0) {
        dmj__api_internal(c, rc);
        return;
    }
    ok(c);
    c->res->body = w->body.data + start;
    c->res->body_len = w->body.len - start;
    c->has_page_digest = true;
    c->page_digest = dmj_digest_fold(dmj_digest_bytes(w->head.data, w->head.len), rows_digest);
}

/* The list in the current generation: LimitOffsetPagination over the filtered jobs. */
static void serve_offset_list(struct dmj__api_ctx *c, struct dmj_page_params *params)
{
    struct dmj_api_worker *w = c->w;
    struct offset offset;
    struct offset *off = &offset;
    uint64_t count = 0, rows_digest = 0;
    char num[24];
    int rc;

    params->rows_digest = &rows_digest;
    params->limit = offset_limit(c);
    offset_param(c, off);
    rc = start_page(w);
    if (rc == 0)
        rc = dmj_offset_page(w->read, params, off->v, &w->body, &count);
    if (rc == 0)
        rc = dmj_buf_printf(&w->head, "{\"count\":%" PRIu64 ",\"next\":", count);
    /* next: null when offset + limit >= count */
    if (rc == 0) {
        if (!off->big && off->v + params->limit < count) {
            int n = snprintf(num, sizeof num, "%" PRIu64, off->v + params->limit);
            rc = add_offset_link(c, params->limit, num, (size_t)n);
        } else {
            rc = dmj_buf_adds(&w->head, "null");
        }
    }
    if (rc == 0)
        rc = dmj_buf_adds(&w->head, ",\"previous\":");
    /* previous: null when offset <= 0; offset removed when offset - limit <= 0 */
    if (rc == 0) {
        if (off->v == 0) {
            rc = dmj_buf_adds(&w->head, "null");
        } else if (off->big) {
            offset_minus(off, params->limit);
            rc = add_offset_link(c, params->limit, off->digits, off->n);
        } else if (off->v <= params->limit) {
            rc = add_offset_link(c, params->limit, NULL, 0);
        } else {
            int n = snprintf(num, sizeof num, "%" PRIu64, off->v - params->limit);
            rc = add_offset_link(c, params->limit, num, (size_t)n);
        }
    }
    finish_page(c, rc, rows_digest);
}

static void serve_list(struct dmj__api_ctx *c)
{
    struct dmj_api_worker *w = c->w;
    struct dmj_page_params params;
    struct dmj_page_links links;
    struct dmj_cursor cursor;
    uint64_t rows_digest = 0;
    int rc;

    memset(&params, 0, sizeof params);
    memset(&links, 0, sizeof links);
    params.team_id = c->team.id;
    params.rows = w->rows;
    params.rows_digest = &rows_digest;
    /* The filters in the order a FilterSet declares them (its first error answers), all
     * before the cursor, as saved_query_id always was. */
    if (saved_query_filter(c, &params.has_saved_query_id, params.saved_query_id) != 0 ||
        status_filter(c, &params.statuses) != 0 ||
        time_filter(c, "created_after", &params.has_created_after, &params.created_after_us) != 0 ||
        time_filter(c, "created_before", &params.has_created_before, &params.created_before_us) !=
            0)
        return;
    if (current_api(c)) {
        serve_offset_list(c, &params);
        return;
    }
    params.limit = page_limit(c);
    const struct dmj_query_param *cp = dmj_query_last(&w->query, "cursor");
    if (cp != NULL && cp->value_len > 0) {
        if (dmj_cursor_decode(cp->value, cp->value_len, &cursor) != 0) {
            dmj__api_fail(c, DMJ__API_ERR_NOT_FOUND, DMJ__MSG_INVALID_CURSOR);
            return;
        }
        params.cursor = &cursor;
    }
    rc = start_page(w);
    if (rc == 0)
        rc = dmj_cursor_page(w->read, &params, &w->body, &links);
    if (rc == 0)
        rc = dmj_buf_adds(&w->head, "{\"next\":");
    if (rc == 0)
        rc = links.has_next ? add_link(c, &links.next) : dmj_buf_adds(&w->head, "null");
    if (rc == 0)
        rc = dmj_buf_adds(&w->head, ",\"previous\":");
    if (rc == 0)
        rc = links.has_previous ? add_link(c, &links.previous) : dmj_buf_adds(&w->head, "null");
    finish_page(c, rc, rows_digest);
}

static void serve_retrieve(struct dmj__api_ctx *c)
{
    struct dmj_api_worker *w = c->w;
    bool filter;
    uint8_t sq[16], id[16];
    struct dmj_job_rec rec;
    struct dmj_row row;
    struct dmj_job job;
    int rc;

    if (saved_query_filter(c, &filter, sq) != 0)
        return;
    if (dmj_uuid_parse(c->job_seg, c->job_len, id) != 0) {
        dmj__api_fail(c, DMJ__API_ERR_NOT_FOUND, DMJ__MSG_NOT_FOUND);
        return;
    }
    rc = dmj_read_job_rec(w->read, id, &rec);
    if (rc == 0)
        rc = dmj_rows_get(w->rows, &rec, &row);
    if (rc == 0 && (row.hidden || rec.team_id != c->team.id))
        rc = DMJ_ENOTFOUND; /* another team's job does not exist for this one */
    if (rc == 0 && filter)
        rc = dmj_job_decode(rec.data, rec.len, &job);
    if (rc == 0 && filter && (!job.has_saved_query_id || memcmp(job.saved_query_id, sq, 16) != 0))
        rc = DMJ_ENOTFOUND;
    if (rc == DMJ_ENOTFOUND) {
        dmj__api_fail(c, DMJ__API_ERR_NOT_FOUND, DMJ__MSG_NOT_FOUND);
        return;
    }
    dmj_buf_reset(&w->body);
    if (rc == 0)
        rc = dmj_buf_add(&w->body, row.json, row.json_len);
    if (rc != 0) {
        dmj__api_internal(c, rc);
        return;
    }
    ok(c);
}

/* Appends a row to an array being written into the body. */
static int add_array_item(struct dmj_buf *b, const struct dmj_row *row, bool *first)
{
    if (!*first) {
        int rc = dmj_buf_addc(b, ',');
        if (rc != 0)
            return rc;
    }
    *first = false;
    return dmj_buf_add(b, row->json, row->json_len);
}

/* What recent takes: workflow_id starting with "materialize", and in the current generation
 * also with "execute-dag" (the Skipped row a DAG run writes for a model it skips). */
static bool recent_candidate(const struct dmj__api_ctx *c, const struct dmj_row *row)
{
    return row->materializes || (current_api(c) && row->execute_dag);
}

/* The walk's next visible row: 0, DMJ_EEND or an error. */
static int next_row(struct dmj__api_ctx *c, struct dmj_walk *walk, struct dmj_row *row)
{
    struct dmj_job_rec rec;
    for (;;) {
        int rc = dmj_rows_next(c->w->rows, walk, &rec, row);
        if (rc != 0 || !row->hidden)
            return rc;
    }
}

static void serve_running(struct dmj__api_ctx *c)
{
    struct dmj_api_worker *w = c->w;
    struct dmj_walk_spec spec;
    struct dmj_walk walk;
    struct dmj_row row;
    bool first = true;
    int rc;

    memset(&spec, 0, sizeof spec);
    spec.team_id = c->team.id;
    spec.index = DMJ_WALK_STATUS;
    spec.status = DMJ_STATUS_RUNNING;
    spec.descending = true;
    dmj_buf_reset(&w->body);
    rc = dmj_buf_addc(&w->body, '[');
    if (rc == 0)
        rc = dmj_walk_start(w->read, &spec, &walk);
    while (rc == 0) {
        rc = next_row(c, &walk, &row);
        if (rc == 0 && row.status == DMJ_STATUS_RUNNING && row.materializes)
            rc = add_array_item(&w->body, &row, &first);
    }
    if (rc == DMJ_EEND)
        rc = dmj_buf_addc(&w->body, ']');
    if (rc != 0) {
        dmj__api_internal(c, rc);
        return;
    }
    ok(c);
}

/* The newest job of one saved query that is not Running and materializes; DMJ_EEND when the
 * saved query has none. */
static int newest_finished(struct dmj__api_ctx *c, const uint8_t sq[16], struct dmj_row *out)
{
    struct dmj_walk_spec spec;
    struct dmj_walk walk;
    int rc;

    memset(&spec, 0, sizeof spec);
    spec.team_id = c->team.id;
    spec.index = DMJ_WALK_SAVED_QUERY;
    memcpy(spec.saved_query_id, sq, 16);
    spec.descending = true;
    rc = dmj_walk_start(c->w->read, &spec, &walk);
    while (rc == 0) {
        rc = next_row(c, &walk, out);
        if (rc == 0 && out->status != DMJ_STATUS_RUNNING && recent_candidate(c, out))
            return 0;
    }
    return rc;
}

static void serve_recent(struct dmj__api_ctx *c)
{
    struct dmj_api_worker *w = c->w;
    uint8_t sq[16], prev[16];
    const uint8_t *after = NULL;
    struct dmj_row row;
    bool first = true;
    int rc;

    dmj_buf_reset(&w->body);
    rc = dmj_buf_addc(&w->body, '[');
    while (rc == 0) {
        rc = dmj_read_next_saved_query(w->read, c->team.id, after, sq);
        if (rc != 0)
            break;
        memcpy(prev, sq, 16);
        after = prev;
        rc = newest_finished(c, sq, &row);
        if (rc == 0)
            rc = add_array_item(&w->body, &row, &first);
        else if (rc == DMJ_EEND)
            rc = 0;
    }
    if (rc == DMJ_EEND)
        rc = dmj_buf_addc(&w->body, ']');
    if (rc != 0) {
        dmj__api_internal(c, rc);
        return;
    }
    ok(c);
}

void dmj__api_serve(struct dmj__api_ctx *c)
{
    switch (c->endpoint) {
    case DMJ__API_LIST:
        serve_list(c);
        return;
    case DMJ__API_RETRIEVE:
        serve_retrieve(c);
        return;
    case DMJ__API_RUNNING:
        serve_running(c);
        return;
    case DMJ__API_RECENT:
        serve_recent(c);
        return;
    case DMJ__API_HEALTH:
    case DMJ__API_NONE:
        break;
    }
    dmj__api_internal(c, DMJ_EINVAL);
}

/* DRF's SimpleMetadata for a read-only view: name, description (the view's or the action's
 * docstring), renderers and parsers; no "actions" since nothing accepts PUT or POST. */
#define META_TAIL                                                                                  \
    "\"renders\":[\"application/json\"],\"parses\":[\"application/json\","                         \
    "\"application/x-www-form-urlencoded\",\"multipart/form-data\"]}"
#define META_VIEW_DESCRIPTION                                                                      \
    "\"description\":\"List data modeling jobs which are \\\"runs\\\" for our saved queries.\","

static const char meta_list[] =
    "{\"name\":\"Data Modeling Job List\"," META_VIEW_DESCRIPTION META_TAIL;
static const char meta_detail[] =
    "{\"name\":\"Data Modeling Job Instance\"," META_VIEW_DESCRIPTION META_TAIL;
static const char meta_running[] = "{\"name\":\"Running\",\"description\":\"Get all currently "
                                   "running jobs from the v2 backend.\"," META_TAIL;
static const char meta_recent[] =
    "{\"name\":\"Recent\",\"description\":\"Get the most recent "
    "non-running job for each saved query from the v2 backend.\"," META_TAIL;

void dmj__api_options(struct dmj__api_ctx *c)
{
    const char *body = meta_list;
    size_t len = sizeof meta_list - 1;

    switch (c->endpoint) {
    case DMJ__API_RETRIEVE:
        body = meta_detail;
        len = sizeof meta_detail - 1;
        break;
    case DMJ__API_RUNNING:
        body = meta_running;
        len = sizeof meta_running - 1;
        break;
    case DMJ__API_RECENT:
        body = meta_recent;
        len = sizeof meta_recent - 1;
        break;
    default:
        break;
    }
    c->res->status = 200;
    c->res->json = true;
    c->res->body = body;
    c->res->body_len = len;
}

void dmj__api_health(struct dmj__api_ctx *c)
{
    static const char up[] = "{\"status\":\"ok\"}";
    static const char down[] = "{\"status\":\"unavailable\"}";
    struct dmj_api_response *res = c->res;

    if (c->method != DMJ__API_GET && c->method != DMJ__API_HEAD) {
        dmj__api_method_not_allowed(c);
        return;
    }
    res->json = true;
    if (dmj_read_begin(c->w->read) != 0) {
        res->status = 503;
        res->body = down;
        res->body_len = sizeof down - 1;
        return;
    }
    dmj_read_end(c->w->read);
    res->status = 200;
    res->body = up;
    res->body_len = sizeof up - 1;
}

/* The list page walk: DRF 3.14's CursorPagination.paginate_queryset, get_next_link and
 * get_previous_link over the store, ordering (-created_at, -id).
 *
 * DRF compares positions as text: a row's position is str(created_at) (dmj_time_format_py),
 * the request's is the `p` text as sent. Two rows' texts are equal exactly when their
 * created_at are, so rows compare as integers; a row and the request's text compare as text.
 * The link decisions only look at the runs of equal positions at either end of the page, so
 * the walk keeps those, not the rows: a forward page is rendered as it is read, a reverse
 * page is rendered into a scratch buffer and copied out back to front.
 *
 * dmj's own filters (status, created_after, created_before) narrow the queryset before DRF
 * sees it, so the rules above apply unchanged to the filtered rows. They are served from the
 * indexes: the walk starts at the nearer of the cursor's position and the created_* bound,
 * stops at the other bound, and several statuses are a merge of the status index's walks. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "digest.h"
#include "dmj/time.h"

/* A position as DRF holds it: None, a row's str(created_at), or the request's own text. */
struct pos {
    enum { POS_NONE, POS_ROW, POS_TEXT } kind;
    int64_t us;
    const struct dmj_cursor *text; /* POS_TEXT: the request's cursor */
};

static bool pos_eq(const struct pos *a, const struct pos *b)
{
    if (a->kind == POS_NONE || b->kind == POS_NONE)
        return a->kind == b->kind;
    if (a->kind == POS_ROW && b->kind == POS_ROW)
        return a->us == b->us;
    if (a->kind == POS_TEXT && b->kind == POS_TEXT)
        return a->text->position_len == b->text->position_len &&
               memcmp(a->text->position, b->text->position, a->text->position_len) == 0;
    const struct pos *row = a->kind == POS_ROW ? a : b;
    const struct dmj_cursor *t = a->kind == POS_TEXT ? a->text : b->text;
    char buf[DMJ_TIME_TEXT_MAX];
    size_t n = dmj_time_format_py(row->us, buf);
    return n == t->position_len && memcmp(buf, t->position, n) == 0;
}

static struct pos row_pos(int64_t us)
{
    struct pos p = {POS_ROW, us, NULL};
    return p;
}

/* Runs of equal created_at at both ends of a sequence of rows, as read. */
struct ends {
    uint64_t count;
    int64_t first, last;
    uint64_t lead_len, trail_len; /* rows equal to first / to last, from each end */
    bool has_after_lead;          /* a row after the leading run: */
    int64_t after_lead;           /* its created_at */
    bool has_before_trail;        /* a row before the trailing run: */
    int64_t before_trail;         /* its created_at */
};

static void ends_add(struct ends *e, int64_t us)
{
    if (e->count++ == 0) {
        e->first = e->last = us;
        e->lead_len = e->trail_len = 1;
        return;
    }
    if (!e->has_after_lead) {
        if (us == e->first) {
            e->lead_len++;
        } else {
            e->has_after_lead = true;
            e->after_lead = us;
        }
    }
    if (us == e->last) {
        e->trail_len++;
    } else {
        e->has_before_trail = true;
        e->before_trail = e->last;
        e->last = us;
        e->trail_len = 1;
    }
}

/* The same runs seen from the other end: a reverse page is flipped before DRF looks. */
static struct ends ends_flip(const struct ends *e)
{
    struct ends f = *e;
    f.first = e->last;
    f.last = e->first;
    f.lead_len = e->trail_len;
    f.trail_len = e->lead_len;
    f.has_after_lead = e->has_before_trail;
    f.after_lead = e->before_trail;
    f.has_before_trail = e->has_after_lead;
    f.before_trail = e->after_lead;
    return f;
}

/* Fills a link cursor; a POS_TEXT position copies the request's text verbatim. */
static void set_link(struct dmj_cursor *out, uint64_t offset, bool reverse, const struct pos *p)
{
    memset(out, 0, sizeof *out);
    out->offset = offset;
    out->reverse = reverse;
    if (p->kind == POS_ROW) {
        char buf[DMJ_TIME_TEXT_MAX];
        size_t n = dmj_time_format_py(p->us, buf);
        if (n > DMJ_CURSOR_POSITION_MAX)
            n = DMJ_CURSOR_POSITION_MAX;
        memcpy(out->position, buf, n);
        out->position[n] = '\0';
        out->position_len = n;
        out->position_us = p->us;
        out->has_position = true;
    } else if (p->kind == POS_TEXT) {
        memcpy(out->position, p->text->position, p->text->position_len);
        out->position[p->text->position_len] = '\0';
        out->position_len = p->text->position_len;
        out->position_us = p->text->position_us;
        out->has_position = true;
    }
}

/* At most this many status walks are merged: all five statuses are the team walk (the same
 * rows), and the store keeps four cursors per index. */
#define MERGE_MAX (DMJ_STATUS_COUNT - 1)

/* The filtered rows of a page request in the walk's order: one store walk, or several status
 * walks merged by (created_at, id); each walk ends at the far created_* bound. */
struct source {
    struct dmj_rows *rows;
    struct dmj_walk walk[MERGE_MAX];
    struct dmj_job_rec head[MERGE_MAX]; /* merge: each walk's next row */
    bool live[MERGE_MAX];           /* the walk has a row left (merge: in head) */
    unsigned n;                     /* walks; more than one are merged */
    unsigned keep;                  /* statuses a saved-query walk keeps; 0: all */
    bool descending;
    bool has_end; /* rows at or past end_us are outside the created_* range */
    int64_t end_us;
};

static bool past_end(const struct source *s, int64_t us)
{
    if (!s->has_end)
        return false;
    return s->descending ? us <= s->end_us : us >= s->end_us;
}

/* The next visible row of walk i inside the range and the status set, its record and its
 * row: 0, DMJ_EEND or an error. */
static int walk_row(struct source *s, unsigned i, struct dmj_job_rec *rec, struct dmj_row *row)
{
    for (;;) {
        int rc = dmj_rows_next(s->rows, &s->walk[i], rec, row);
        if (rc == 0 && past_end(s, rec->created_at))
            rc = DMJ_EEND; /* the index is in created_at order: nothing further is in range */
        if (rc == DMJ_EEND)
            s->live[i] = false;
        if (rc)
            return rc;
        if (!row->hidden && (s->keep == 0 || (s->keep & DMJ_PAGE_STATUS(row->status))))
            return 0;
    }
}

/* Whether row a comes before row b in the walk's order (the index's key order). */
static bool source_before(const struct source *s, const struct dmj_job_rec *a,
                          const struct dmj_job_rec *b)
{
    int c = a->created_at < b->created_at ? -1 : a->created_at > b->created_at;
    if (c == 0)
        c = memcmp(a->id, b->id, 16);
    return s->descending ? c > 0 : c < 0;
}

/* The next row: its record, and its row (JSON valid until the next call). */
static int source_next(struct source *s, struct dmj_job_rec *rec, struct dmj_row *row)
{
    if (s->n == 1)
        return s->live[0] ? walk_row(s, 0, rec, row) : DMJ_EEND;
    unsigned best = s->n;
    for (unsigned i = 0; i < s->n; i++) {
        if (s->live[i] && (best == s->n || source_before(s, &s->head[i], &s->head[best])))
            best = i;
    }
    if (best == s->n)
        return DMJ_EEND;
    *rec = s->head[best];
    int rc = walk_row(s, best, &s->head[best], row);
    if (rc && rc != DMJ_EEND)
        return rc;
    /* the walk's next row took the cache's last answer: this one is found (kept) again */
    return dmj_rows_get(s->rows, rec, row);
}

/* Narrows the walk's start to `us` when that is nearer the range's far side. */
static void tighten(struct dmj_walk_spec *spec, bool has, int64_t us)
{
    if (!has)
        return;
    if (!spec->has_bound || (spec->descending ? us < spec->bound_us : us > spec->bound_us))
        spec->bound_us = us;
    spec->has_bound = true;
}

static int source_start(struct dmj_read *r, const struct dmj_page_params *p,
                        const struct dmj_cursor *cur, struct dmj_rows *rows, struct source *s)
{
    struct dmj_walk_spec spec;
    unsigned statuses = p->statuses & DMJ_PAGE_STATUS_ALL;
    struct dmj_row row;
    int rc = 0;

    memset(&spec, 0, sizeof spec);
    memset(s, 0, sizeof *s);
    s->rows = rows;
    spec.team_id = p->team_id;
    /* (cursor reversed) XOR (ordering reversed): forward is created_at < p, descending. */
    spec.descending = !cur->reverse;
    s->descending = spec.descending;
    tighten(&spec, cur->has_position, cur->position_us);
    if (spec.descending) {
        tighten(&spec, p->has_created_before, p->created_before_us);
        s->has_end = p->has_created_after;
        s->end_us = p->created_after_us;
    } else {
        tighten(&spec, p->has_created_after, p->created_after_us);
        s->has_end = p->has_created_before;
        s->end_us = p->created_before_us;
    }
    if (statuses == DMJ_PAGE_STATUS_ALL)
        statuses = 0;

    if (p->has_saved_query_id) {
        /* A saved query's runs are few: its own index, other statuses skipped. */
        spec.index = DMJ_WALK_SAVED_QUERY;
        memcpy(spec.saved_query_id, p->saved_query_id, 16);
        s->keep = statuses;
    } else if (statuses != 0) {
        spec.index = DMJ_WALK_STATUS;
        for (unsigned st = 0; st < DMJ_STATUS_COUNT && rc == 0; st++) {
            if (!(statuses & DMJ_PAGE_STATUS(st)))
                continue;
            spec.status = (enum dmj_status)st;
            rc = dmj_walk_start(r, &spec, &s->walk[s->n]);
            s->live[s->n++] = true;
        }
        for (unsigned i = 0; i < s->n && s->n > 1 && rc == 0; i++) {
            rc = walk_row(s, i, &s->head[i], &row);
            if (rc == DMJ_EEND)
                rc = 0;
        }
        return rc;
    } else {
        spec.index = DMJ_WALK_TEAM;
    }
    s->n = 1;
    s->live[0] = true;
    return dmj_walk_start(r, &spec, &s->walk[0]);
}

/* What paginate_queryset leaves for the two link methods. */
struct state {
    const struct dmj_cursor *cur; /* the request's cursor (a zero one for none) */
    uint64_t cur_offset;          /* its offset, clamped as decode_cursor does */
    uint64_t page_size;
    struct ends page; /* final (descending) order */
    bool has_next, has_previous;
    struct pos next_position, previous_position;
};

static void next_link(const struct state *s, struct dmj_page_links *links)
{
    const struct ends *pg = &s->page;
    struct pos compare = s->next_position, position = {POS_NONE, 0, NULL};
    uint64_t offset = 0;
    bool unique = false;

    links->has_next = s->has_next;
    if (!s->has_next)
        return;
    if (pg->count && s->cur->reverse && s->cur_offset != 0)
        compare = row_pos(pg->last);
    if (pg->count) {
        /* for item in reversed(page): the trailing run equal to `compare`, then a marker. */
        struct pos last = row_pos(pg->last);
        if (!pos_eq(&last, &compare)) {
            unique = true;
            position = last;
        } else {
            offset = pg->trail_len;
            if (pg->has_before_trail) {
                unique = true;
                position = row_pos(pg->before_trail);
            }
        }
        if (!unique) {
            if (!s->has_previous) {
                offset = s->page_size;
                position.kind = POS_NONE;
            } else if (s->cur->reverse) {
                offset = 0;
                position = s->previous_position;
            } else {
                offset = s->cur_offset + s->page_size;
                position = s->previous_position;
            }
        }
    } else {
        position = s->next_position;
    }
    set_link(&links->next, offset, false, &position);
}

static void previous_link(const struct state *s, struct dmj_page_links *links)
{
    const struct ends *pg = &s->page;
    struct pos compare = s->previous_position, position = {POS_NONE, 0, NULL};
    uint64_t offset = 0;
    bool unique = false;

    links->has_previous = s->has_previous;
    if (!s->has_previous)
        return;
    if (pg->count && !s->cur->reverse && s->cur_offset != 0)
        compare = row_pos(pg->first);
    if (pg->count) {
        struct pos first = row_pos(pg->first);
        if (!pos_eq(&first, &compare)) {
            unique = true;
            position = first;
        } else {
            offset = pg->lead_len;
            if (pg->has_after_lead) {
                unique = true;
                position = row_pos(pg->after_lead);
            }
        }
        if (!unique) {
            if (!s->has_next) {
                offset = s->page_size;
                position.kind = POS_NONE;
            } else if (s->cur->reverse) {
                offset = s->cur_offset + s->page_size;
                position = s->next_position;
            } else {
                offset = 0;
                position = s->next_position;
            }
        }
    } else {
        position = s->previous_position;
    }
    set_link(&links->previous, offset, true, &position);
}

/* Folds a written row's digest into the page's, when it is wanted. */
static void fold_row(const struct dmj_page_params *p, uint64_t digest)
{
    if (p->rows_digest)
        *p->rows_digest = dmj_digest_fold(*p->rows_digest, digest);
}

/* Row JSON of a reverse page, kept until it can be written back to front. */
struct held {
    struct dmj_buf json;
    struct held_row {
        size_t start;
        uint64_t digest;
    } *row;
    size_t n, cap;
};

static int held_add(struct held *h, const struct dmj_row *row)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct held_row *p = realloc(h->row, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        h->row = p;
        h->cap = cap;
    }
    h->row[h->n].start = h->json.len;
    h->row[h->n].digest = row->digest;
    int rc = dmj_buf_add(&h->json, row->json, row->json_len);
    if (rc)
        return rc;
    h->n++;
    return 0;
}

static int held_flush(const struct held *h, const struct dmj_page_params *p,
                      struct dmj_buf *results)
{
    for (size_t i = h->n; i-- > 0;) {
        size_t start = h->row[i].start;
        size_t end = i + 1 < h->n ? h->row[i + 1].start : h->json.len;
        int rc = 0;
        if (i + 1 < h->n)
            rc = dmj_buf_addc(results, ',');
        if (!rc)
            rc = dmj_buf_add(results, h->json.data + start, end - start);
        if (rc)
            return rc;
        fold_row(p, h->row[i].digest);
    }
    return 0;
}

static int cursor_page(struct dmj_read *r, const struct dmj_page_params *p, struct dmj_rows *rows,
                       struct dmj_buf *results, struct dmj_page_links *links)
{
    static const struct dmj_cursor none; /* no cursor: offset 0, forward, no position */
    const struct dmj_cursor *cur = p->cursor ? p->cursor : &none;
    uint64_t offset =
        cur->offset > DMJ_CURSOR_OFFSET_CUTOFF ? DMJ_CURSOR_OFFSET_CUTOFF : cur->offset;
    uint64_t limit = p->limit ? p->limit : 1;
    size_t before = results->len;
    struct held held = {.n = 0};
    struct source src;
    struct dmj_job_rec rec;
    struct dmj_row row;
    struct ends read = {.count = 0};
    bool has_following = false;
    int64_t following = 0;
    int rc;

    if (p->rows_digest)
        *p->rows_digest = DMJ_DIGEST_SEED;
    rc = source_start(r, p, cur, rows, &src);
    if (rc)
        return rc;
    /* queryset[offset:offset + page_size + 1] */
    for (uint64_t i = 0; i < offset; i++) {
        rc = source_next(&src, &rec, &row);
        if (rc == DMJ_EEND)
            break;
        if (rc)
            return rc;
    }
    if (rc != DMJ_EEND) {
        dmj_buf_init(&held.json, results->max);
        rc = dmj_buf_addc(results, '[');
        for (uint64_t i = 0; rc == 0 && i <= limit; i++) {
            rc = source_next(&src, &rec, &row);
            if (rc)
                break;
            if (i == limit) {
                has_following = true;
                following = rec.created_at;
                break;
            }
            ends_add(&read, rec.created_at);
            if (cur->reverse) {
                rc = held_add(&held, &row);
            } else {
                if (i > 0)
                    rc = dmj_buf_addc(results, ',');
                if (!rc)
                    rc = dmj_buf_add(results, row.json, row.json_len);
                fold_row(p, row.digest);
            }
        }
        if (rc == DMJ_EEND)
            rc = 0;
        if (!rc && cur->reverse)
            rc = held_flush(&held, p, results);
    } else {
        rc = dmj_buf_addc(results, '[');
    }
    if (!rc)
        rc = dmj_buf_addc(results, ']');
    dmj_buf_dispose(&held.json);
    free(held.row);
    if (rc) {
        results->len = before;
        if (results->data)
            results->data[before] = '\0';
        return rc;
    }

    struct state s;
    memset(&s, 0, sizeof s);
    s.cur = cur;
    s.cur_offset = offset;
    s.page_size = limit;
    s.page = cur->reverse ? ends_flip(&read) : read;
    struct pos current = {cur->has_position ? POS_TEXT : POS_NONE, cur->position_us, cur};
    struct pos follow = {has_following ? POS_ROW : POS_NONE, following, NULL};
    bool moved = cur->has_position || offset > 0;
    if (cur->reverse) {
        s.has_next = moved;
        s.next_position = current;
        s.has_previous = has_following;
        s.previous_position = follow;
    } else {
        s.has_next = has_following;
        s.next_position = follow;
        s.has_previous = moved;
        s.previous_position = current;
    }
    memset(links, 0, sizeof *links);
    next_link(&s, links);
    previous_link(&s, links);
    return 0;
}

int dmj_cursor_page(struct dmj_read *r, const struct dmj_page_params *p, struct dmj_buf *results,
                    struct dmj_page_links *links)
{
    if (p->rows)
        return cursor_page(r, p, p->rows, results, links);
    struct dmj_rows *own;
    int rc = dmj_rows_new(0, false, &own);
    if (rc)
        return rc;
    rc = cursor_page(r, p, own, results, links);
    dmj_rows_free(own);
    return rc;
}

static int offset_page(struct dmj_read *r, const struct dmj_page_params *p, struct dmj_rows *rows,
                       uint64_t offset, struct dmj_buf *results, uint64_t *count)
{
    static const struct dmj_cursor none; /* forward from the newest: list order */
    uint64_t limit = p->limit ? p->limit : 1;
    size_t before = results->len;
    struct source src;
    struct dmj_job_rec rec;
    struct dmj_row row;
    uint64_t n = 0;
    int rc;

    /* The count from the store's counters when they cover the filters (no created_* bound,
     * not a saved query and statuses together): then only the rows up to the page's end are
     * read, and none past the end. Else the count is the walk's length: every matching row is
     * read once, and only the rows at offset .. offset + limit - 1 are rendered. */
    uint64_t counted = 0;
    bool has_count = false;
    if (p->rows_digest)
        *p->rows_digest = DMJ_DIGEST_SEED;
    if (!p->has_created_after && !p->has_created_before) {
        struct dmj_count_spec cs;
        memset(&cs, 0, sizeof cs);
        cs.has_saved_query_id = p->has_saved_query_id;
        memcpy(cs.saved_query_id, p->saved_query_id, 16);
        cs.statuses = p->statuses & DMJ_PAGE_STATUS_ALL;
        if (cs.statuses == DMJ_PAGE_STATUS_ALL)
            cs.statuses = 0;
        rc = dmj_read_count(r, p->team_id, &cs, &counted);
        if (rc == 0)
            has_count = true;
        else if (rc != DMJ_ENOTFOUND && rc != DMJ_EINVAL)
            return rc;
    }
    rc = dmj_buf_addc(results, '[');
    if (!rc && has_count && offset >= counted)
        rc = DMJ_EEND; /* past the end: nothing to read */
    if (!rc)
        rc = source_start(r, p, &none, rows, &src);
    while (!rc) {
        if (has_count && n >= offset && n - offset >= limit)
            break; /* the page is full */
        rc = source_next(&src, &rec, &row);
        if (rc)
            break;
        if (n >= offset && n - offset < limit) {
            if (n > offset)
                rc = dmj_buf_addc(results, ',');
            if (!rc)
                rc = dmj_buf_add(results, row.json, row.json_len);
            fold_row(p, row.digest);
        }
        n++;
    }
    if (!rc)
        rc = DMJ_EEND;
    if (rc == DMJ_EEND)
        rc = dmj_buf_addc(results, ']');
    if (rc) {
        results->len = before;
        if (results->data)
            results->data[before] = '\0';
        return rc;
    }
    *count = has_count ? counted : n;
    return 0;
}

int dmj_offset_page(struct dmj_read *r, const struct dmj_page_params *p, uint64_t offset,
                    struct dmj_buf *results, uint64_t *count)
{
    if (p->rows)
        return offset_page(r, p, p->rows, offset, results, count);
    struct dmj_rows *own;
    int rc = dmj_rows_new(0, true, &own);
    if (rc)
        return rc;
    rc = offset_page(r, p, own, offset, results, count);
    dmj_rows_free(own);
    return rc;
}

/* Unit tests of page.c: DRF's page walk over a real store, against the real DRF.
 *
 * JOBS, CASES and BACK_COUNT (data/page_tables.inc) are printed by data/gen_page_tables.py,
 * which runs DRF 3.14's own CursorPagination over an in-memory queryset of the same jobs
 * (its docstring says which requests); the suite regenerates and compares them
 * (unit.generated_tables). Each case: the request's cursor, the jobs of the page (indexes
 * into JOBS), the next and previous cursors DRF wrote. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "tmpdir.h"
#include "cursor.h"
#include "dmj/store.h"
#include "dmj/time.h"

struct job_row {
    int64_t created_at;
    uint8_t id[16];
    bool filtered; /* has the saved query SQ */
};

struct page_case {
    bool filter;
    unsigned limit;
    const char *cursor;
    unsigned ids[5];
    unsigned n;
    const char *next;
    const char *previous;
};

/* clang-format off */
#include "data/page_tables.inc"
/* clang-format on */

#define NJOBS (sizeof JOBS / sizeof JOBS[0])

static const uint8_t SQ[16] = {0x5a, 0x5a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};

/* The status of JOBS[i] (and of its twin in team 2): every status, mixed within runs of equal
 * times; only the filter tests look at it. */
static enum dmj_status status_of(size_t i)
{
    return (enum dmj_status)(i % DMJ_STATUS_COUNT);
}

static struct dmj_job make_job(int32_t team, const uint8_t id[16], int64_t created_at)
{
    struct dmj_job j;
    memset(&j, 0, sizeof j);
    memcpy(j.id, id, 16);
    j.team_id = team;
    j.status = DMJ_STATUS_COMPLETED;
    j.rows_materialized = 7;
    j.created_at = created_at;
    j.workflow_id = (struct dmj_str){"materialize-x", 13};
    return j;
}

static int fill_store(struct dmj_store *s)
{
    struct dmj_write *w;
    int rc = dmj_write_begin(s, &w);
    if (rc)
        return rc;
    for (size_t i = 0; i < NJOBS && !rc; i++) {
        struct dmj_job j = make_job(1, JOBS[i].id, JOBS[i].created_at);
        j.status = status_of(i);
        if (JOBS[i].filtered) {
            j.has_saved_query_id = true;
            memcpy(j.saved_query_id, SQ, 16);
        }
        rc = dmj_write_job(w, &j);
        /* The same times in another team, which must never show. */
        uint8_t other[16];
        memcpy(other, JOBS[i].id, 16);
        other[15] ^= 0xff;
        struct dmj_job o = make_job(2, other, JOBS[i].created_at);
        o.status = status_of(i);
        if (!rc)
            rc = dmj_write_job(w, &o);
    }
    /* A hidden (duckgres) job of team 1 inside a run of equal times. */
    uint8_t hid[16];
    memset(hid, 0xee, 16);
    struct dmj_job h = make_job(1, hid, JOBS[5].created_at);
    h.engine = (struct dmj_str){"duckgres", 8};
    h.has_saved_query_id = true;
    memcpy(h.saved_query_id, SQ, 16);
    if (!rc)
        rc = dmj_write_job(w, &h);
    if (rc) {
        dmj_write_abort(w);
        return rc;
    }
    return dmj_write_commit(w, NULL);
}

static int hexv(char c)
{
    return c >= 'a' ? c - 'a' + 10 : c - '0';
}

/* The JOBS indexes of the ids in a results array, in order; -1 for an unknown id. */
static unsigned page_ids(const char *json, int *out, unsigned max)
{
    unsigned n = 0;
    const char *p = json;
    while ((p = strstr(p, "{\"id\":\"")) != NULL && n < max) {
        p += 7;
        uint8_t id[16];
        for (int k = 0; k < 16; k++) {
            if (*p == '-')
                p++;
            id[k] = (uint8_t)(hexv(p[0]) * 16 + hexv(p[1]));
            p += 2;
        }
        out[n] = -1;
        for (size_t i = 0; i < NJOBS; i++) {
            if (memcmp(JOBS[i].id, id, 16) == 0)
                out[n] = (int)i;
        }
        n++;
    }
    return n;
}

static void encode(const struct dmj_cursor *c, char *out, size_t cap)
{
    struct dmj_buf b;
    dmj_buf_init(&b, 512);
    CHECK_EQ_INT(dmj_cursor_encode(c, &b), 0);
    snprintf(out, cap, "%s", b.len ? b.data : "");
    dmj_buf_dispose(&b);
}

/* dmj's own filters of one list request (zero: none). */
struct filter_case {
    const char *name;
    bool sq;
    unsigned statuses;
    bool has_after, has_before;
    int64_t after, before;
};

/* One request as the server makes it: the cursor decoded, the page walked. */
static int request_f(struct dmj_read *r, const struct filter_case *f, unsigned limit,
                     const char *cursor, struct dmj_buf *results, struct dmj_page_links *links)
{
    struct dmj_cursor c;
    struct dmj_page_params p;
    memset(&p, 0, sizeof p);
    p.team_id = 1;
    p.limit = limit;
    p.has_saved_query_id = f->sq;
    memcpy(p.saved_query_id, SQ, 16);
    p.statuses = f->statuses;
    p.has_created_after = f->has_after;
    p.created_after_us = f->after;
    p.has_created_before = f->has_before;
    p.created_before_us = f->before;
    if (cursor && *cursor) {
        int rc = dmj_cursor_decode(cursor, strlen(cursor), &c);
        if (rc)
            return rc;
        p.cursor = &c;
    }
    dmj_buf_reset(results);
    return dmj_cursor_page(r, &p, results, links);
}

static int request(struct dmj_read *r, bool filter, unsigned limit, const char *cursor,
                   struct dmj_buf *results, struct dmj_page_links *links)
{
    struct filter_case f = {.sq = filter};
    return request_f(r, &f, limit, cursor, results, links);
}

static void test_cases(struct dmj_read *r)
{
    struct dmj_buf results;
    dmj_buf_init(&results, 1 << 20);
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const struct page_case *c = &CASES[i];
        struct dmj_page_links links;
        int rc = request(r, c->filter, c->limit, c->cursor, &results, &links);
        CHECK_EQ_INT(rc, 0);
        if (rc)
            continue;
        int ids[16];
        unsigned n = page_ids(results.data, ids, 16);
        unsigned before = check_failed;
        CHECK_EQ_INT(n, c->n);
        for (unsigned k = 0; k < n && k < c->n; k++)
            CHECK_EQ_INT(ids[k], c->ids[k]);
        char got[256];
        CHECK_EQ_INT(links.has_next, c->next != NULL);
        if (links.has_next && c->next) {
            encode(&links.next, got, sizeof got);
            CHECK_EQ_STR(got, c->next);
        }
        CHECK_EQ_INT(links.has_previous, c->previous != NULL);
        if (links.has_previous && c->previous) {
            encode(&links.previous, got, sizeof got);
            CHECK_EQ_STR(got, c->previous);
        }
        if (check_failed != before)
            fprintf(stderr, "  in case %zu (filter %d, limit %u, cursor %s)\n", i, c->filter,
                    c->limit, c->cursor ? c->cursor : "none");
    }
    dmj_buf_dispose(&results);
}

/* The list order: created_at descending, then id descending. */
static int list_order(const void *a, const void *b)
{
    const struct job_row *x = &JOBS[*(const int *)a], *y = &JOBS[*(const int *)b];
    if (x->created_at != y->created_at)
        return x->created_at > y->created_at ? -1 : 1;
    return -memcmp(x->id, y->id, 16);
}

/* Following next links from the first page visits every job once, in order. Following
 * previous links back from the last page visits jobs in order, never twice, and as many
 * as DRF does (BACK_COUNT): DRF itself skips two jobs walking back with limit 3 here (the
 * "paging artifact" of its get_previous_link when a page has no unique position). */
static void test_walks(struct dmj_read *r)
{
    struct dmj_buf results;
    dmj_buf_init(&results, 1 << 20);
    for (int filter = 0; filter < 2; filter++) {
        int expect[NJOBS];
        unsigned total = 0;
        for (size_t i = 0; i < NJOBS; i++) {
            if (!filter || JOBS[i].filtered)
                expect[total++] = (int)i;
        }
        qsort(expect, total, sizeof expect[0], list_order);
        for (unsigned limit = 1; limit <= 5; limit++) {
            int seen[2 * NJOBS];
            unsigned nseen = 0, pages = 0;
            char cursor[256] = "";
            char last_page_cursor[256] = "";
            struct dmj_page_links links;
            for (;;) {
                int rc = request(r, filter, limit, cursor, &results, &links);
                CHECK_EQ_INT(rc, 0);
                if (rc || ++pages > 2 * NJOBS)
                    break;
                int ids[8];
                unsigned n = page_ids(results.data, ids, 8);
                CHECK(n <= limit);
                for (unsigned k = 0; k < n && nseen < 2 * NJOBS; k++)
                    seen[nseen++] = ids[k];
                if (!links.has_next)
                    break;
                snprintf(last_page_cursor, sizeof last_page_cursor, "%s", cursor);
                encode(&links.next, cursor, sizeof cursor);
            }
            CHECK_EQ_INT(nseen, total);
            for (unsigned k = 0; k < nseen && k < total; k++)
                CHECK_EQ_INT(seen[k], expect[k]);

            /* Back: from the last page, previous links, pages prepended. */
            nseen = 0;
            pages = 0;
            int back[2 * NJOBS];
            for (;;) {
                int rc = request(r, filter, limit, cursor, &results, &links);
                CHECK_EQ_INT(rc, 0);
                if (rc || ++pages > 2 * NJOBS)
                    break;
                int ids[8];
                unsigned n = page_ids(results.data, ids, 8);
                for (unsigned k = n; k-- > 0 && nseen < 2 * NJOBS;)
                    back[nseen++] = ids[k];
                if (!links.has_previous)
                    break;
                encode(&links.previous, cursor, sizeof cursor);
            }
            CHECK_EQ_INT(nseen, BACK_COUNT[filter][limit]);
            /* In list order: each job after the one before it. */
            unsigned at = 0;
            for (unsigned k = nseen; k-- > 0;) {
                while (at < total && expect[at] != back[k])
                    at++;
                CHECK(at < total);
                at++;
            }
            (void)last_page_cursor;
        }
    }
    dmj_buf_dispose(&results);
}

static void test_edges(struct dmj_read *r)
{
    struct dmj_buf results;
    struct dmj_page_links links;
    struct dmj_page_params p;
    dmj_buf_init(&results, 1 << 20);

    /* An unknown team: an empty page, no links. */
    memset(&p, 0, sizeof p);
    p.team_id = 99;
    p.limit = 3;
    CHECK_EQ_INT(dmj_cursor_page(r, &p, &results, &links), 0);
    CHECK_EQ_STR(results.data, "[]");
    CHECK(!links.has_next && !links.has_previous);

    /* Everything on one page. */
    dmj_buf_reset(&results);
    p.team_id = 1;
    p.limit = 100;
    CHECK_EQ_INT(dmj_cursor_page(r, &p, &results, &links), 0);
    int ids[64];
    CHECK_EQ_INT(page_ids(results.data, ids, 64), NJOBS);
    CHECK(!links.has_next && !links.has_previous);

    /* An offset past the end with no position: empty page; previous keeps no position. */
    struct dmj_cursor c;
    memset(&c, 0, sizeof c);
    c.offset = 1000;
    p.cursor = &c;
    p.limit = 5;
    dmj_buf_reset(&results);
    CHECK_EQ_INT(dmj_cursor_page(r, &p, &results, &links), 0);
    CHECK_EQ_STR(results.data, "[]");
    CHECK(!links.has_next);
    CHECK(links.has_previous);
    CHECK(links.previous.reverse && !links.previous.has_position && links.previous.offset == 0);

    /* The request's own position text is kept verbatim in the link that keeps it. */
    const char *v = "cD0yMDE5LTA4LTI0VDE0OjE1OjQ2Wg=="; /* p=2019-08-24T14:15:46Z */
    CHECK_EQ_INT(dmj_cursor_decode(v, strlen(v), &c), 0);
    dmj_buf_reset(&results);
    CHECK_EQ_INT(dmj_cursor_page(r, &p, &results, &links), 0);
    CHECK(links.has_previous);
    CHECK_EQ_STR(links.previous.position, "2019-08-24 14:15:45+00:00");
    /* Reverse from above the newest job: an empty page whose next link keeps the text. */
    v = "cj0xJnA9MjAxOS0wOC0yNFQxNDoxNTo1MVo="; /* r=1&p=2019-08-24T14:15:51Z */
    CHECK_EQ_INT(dmj_cursor_decode(v, strlen(v), &c), 0);
    dmj_buf_reset(&results);
    CHECK_EQ_INT(dmj_cursor_page(r, &p, &results, &links), 0);
    CHECK_EQ_STR(results.data, "[]");
    CHECK(links.has_next && !links.has_previous);
    CHECK_EQ_STR(links.next.position, "2019-08-24T14:15:51Z");
    CHECK(!links.next.reverse);
    CHECK_EQ_INT(links.next.offset, 0);

    /* A results buffer too small: an error, the buffer as it was. */
    struct dmj_buf small;
    dmj_buf_init(&small, 100);
    CHECK_EQ_INT(dmj_buf_adds(&small, "x"), 0);
    p.cursor = NULL;
    CHECK_EQ_INT(dmj_cursor_page(r, &p, &small, &links), DMJ_ETOOBIG);
    CHECK_EQ_STR(small.data, "x");
    c.reverse = true;
    c.has_position = false;
    c.offset = 1;
    p.cursor = &c;
    CHECK_EQ_INT(dmj_cursor_page(r, &p, &small, &links), DMJ_ETOOBIG);
    CHECK_EQ_INT(small.len, 1);
    dmj_buf_dispose(&small);
    dmj_buf_dispose(&results);
}

/* ---- dmj's filters: DRF's rules apply to the filtered queryset, so a filtered page of the
 * store must be, byte for byte and link for link, the unfiltered page of a store that holds
 * only the rows the filter keeps. ---- */

static bool kept(const struct filter_case *f, size_t i)
{
    if (f->statuses && !(f->statuses & DMJ_PAGE_STATUS(status_of(i))))
        return false;
    if (f->sq && !JOBS[i].filtered)
        return false;
    if (f->has_after && JOBS[i].created_at <= f->after)
        return false;
    return !(f->has_before && JOBS[i].created_at >= f->before);
}

/* Writes team 1's jobs that `f` keeps, and nothing else. */
static int fill_only(struct dmj_store *s, const struct filter_case *f)
{
    struct dmj_write *w;
    int rc = dmj_write_begin(s, &w);
    if (rc)
        return rc;
    for (size_t i = 0; i < NJOBS && !rc; i++) {
        if (!kept(f, i))
            continue;
        struct dmj_job j = make_job(1, JOBS[i].id, JOBS[i].created_at);
        j.status = status_of(i);
        j.has_saved_query_id = JOBS[i].filtered;
        if (j.has_saved_query_id)
            memcpy(j.saved_query_id, SQ, 16);
        rc = dmj_write_job(w, &j);
    }
    if (rc) {
        dmj_write_abort(w);
        return rc;
    }
    return dmj_write_commit(w, NULL);
}

/* Builds a store in a fresh temporary directory (the whole JOBS set when `only` is NULL,
 * else the rows `only` keeps), runs fn on a read of it, and removes it. */
static void with_store(const struct filter_case *only,
                       void (*fn)(struct dmj_read *r, const void *ctx), const void *ctx)
{
    char dir[64];
    struct dmj_store *s = NULL;
    struct dmj_read *r = NULL;
    if (tmpdir_make("dmj-test-page-", dir, sizeof dir) != 0) {
        perror("mkdtemp");
        CHECK(false);
        return;
    }
    int rc = dmj_store_open(dir, 0, (size_t)64 << 20, &s);
    if (!rc)
        rc = only ? fill_only(s, only) : fill_store(s);
    if (!rc)
        rc = dmj_read_new(s, &r);
    if (!rc)
        rc = dmj_read_begin(r);
    CHECK_EQ_INT(rc, 0);
    if (!rc) {
        fn(r, ctx);
        dmj_read_end(r);
    }
    if (r)
        dmj_read_free(r);
    if (s)
        dmj_store_close(s);
    if (tmpdir_remove(dir) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

/* The same request on the filtered store and on the store of kept rows: same answer. */
static bool same_page(struct dmj_read *ra, struct dmj_read *rb, const struct filter_case *f,
                      unsigned limit, const char *cursor, struct dmj_page_links *la)
{
    static const struct filter_case none;
    struct dmj_buf a, b;
    struct dmj_page_links lb;
    char ca[256], cb[256];
    unsigned before = check_failed;

    dmj_buf_init(&a, 1 << 20);
    dmj_buf_init(&b, 1 << 20);
    CHECK_EQ_INT(request_f(ra, f, limit, cursor, &a, la), 0);
    CHECK_EQ_INT(request_f(rb, &none, limit, cursor, &b, &lb), 0);
    CHECK_EQ_STR(a.data ? a.data : "", b.data ? b.data : "");
    CHECK_EQ_INT(la->has_next, lb.has_next);
    CHECK_EQ_INT(la->has_previous, lb.has_previous);
    if (la->has_next && lb.has_next) {
        encode(&la->next, ca, sizeof ca);
        encode(&lb.next, cb, sizeof cb);
        CHECK_EQ_STR(ca, cb);
    }
    if (la->has_previous && lb.has_previous) {
        encode(&la->previous, ca, sizeof ca);
        encode(&lb.previous, cb, sizeof cb);
        CHECK_EQ_STR(ca, cb);
    }
    if (check_failed != before)
        fprintf(stderr, "  filter %s, limit %u, cursor %s\n", f->name, limit,
                cursor && *cursor ? cursor : "none");
    dmj_buf_dispose(&a);
    dmj_buf_dispose(&b);
    return check_failed == before;
}

/* Every page of the walks forward and back, and cursors at, around and between the jobs'
 * times (outside the created_* range too), forward and reverse, with offsets. */
static void compare_filter(struct dmj_read *ra, struct dmj_read *rb, const struct filter_case *f)
{
    struct dmj_page_links links;
    char cursor[256];

    for (unsigned limit = 1; limit <= 4; limit++) {
        for (int back = 0; back < 2; back++) {
            bool more = true;
            if (!back)
                cursor[0] = '\0'; /* back: from the forward walk's last page */
            for (unsigned pages = 0; more && pages < 4 * NJOBS; pages++) {
                if (!same_page(ra, rb, f, limit, cursor, &links))
                    return;
                more = back ? links.has_previous : links.has_next;
                if (more)
                    encode(back ? &links.previous : &links.next, cursor, sizeof cursor);
            }
            CHECK(!more);
        }
    }
    for (size_t i = 0; i < NJOBS; i++) {
        for (int64_t delta = -1; delta <= 1; delta++) {
            for (unsigned k = 0; k < 4; k++) {
                struct dmj_cursor c;
                memset(&c, 0, sizeof c);
                c.reverse = k & 1;
                c.offset = k & 2 ? 2 : 0;
                c.has_position = true;
                c.position_us = JOBS[i].created_at + delta;
                c.position_len = dmj_time_format_py(c.position_us, c.position);
                encode(&c, cursor, sizeof cursor);
                if (!same_page(ra, rb, f, 2, cursor, &links))
                    return;
            }
        }
    }
}

struct compare_ctx {
    struct dmj_read *filtered;
    const struct filter_case *f;
};

static void compare_cb(struct dmj_read *only, const void *ctx)
{
    const struct compare_ctx *c = ctx;
    compare_filter(c->filtered, only, c->f);
}

static void test_filters(struct dmj_read *r)
{
    const unsigned all = DMJ_PAGE_STATUS_ALL;
#define ST(x) DMJ_PAGE_STATUS(DMJ_STATUS_##x)
    /* JOBS is newest first: [4] and [13] start runs of equal times, [19] is alone. */
    const int64_t t4 = JOBS[4].created_at, t13 = JOBS[13].created_at, t19 = JOBS[19].created_at;
    const struct filter_case cases[] = {
        {"running", false, ST(RUNNING), false, false, 0, 0},
        {"two", false, ST(COMPLETED) | ST(SKIPPED), false, false, 0, 0},
        {"four", false, all & ~ST(FAILED), false, false, 0, 0},
        {"all", false, all, false, false, 0, 0},
        {"sq+three", true, ST(FAILED) | ST(RUNNING) | ST(CANCELLED), false, false, 0, 0},
        {"after", false, 0, true, false, t13, 0},
        {"before", false, 0, false, true, 0, t4},
        {"range", false, 0, true, true, t19, t4},
        {"range-1+1", false, 0, true, true, t13 - 1, t4 + 1},
        {"range+two", false, ST(COMPLETED) | ST(FAILED), true, true, t19, t4},
        {"sq+range+four", true, all & ~ST(SKIPPED), true, true, t19 - 1, t4},
        {"empty range", false, 0, true, true, t4, t4},
        {"inverted", false, ST(RUNNING) | ST(FAILED), true, true, t4, t19},
    };
#undef ST
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct compare_ctx ctx = {r, &cases[i]};
        with_store(&cases[i], compare_cb, &ctx);
    }
}

static void run_all(struct dmj_read *r, const void *ctx)
{
    (void)ctx;
    test_cases(r);
    test_walks(r);
    test_edges(r);
    test_filters(r);
}

int main(void)
{
    with_store(NULL, run_all, NULL);
    return check_done();
}

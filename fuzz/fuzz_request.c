/* libFuzzer target: arbitrary bytes split on NUL into method, path, query, Authorization, Host,
 * If-None-Match, X-Forwarded-Proto and Last-Event-ID, answered by dmj_api_handle over a small
 * fixed store. The last byte sets TLS (bit 0) and whether the rate limiter refuses (bit 1, for
 * bits 2-7 + 1 seconds; the events/ stream bound refuses with it). Checked: a known status, a
 * body of valid UTF-8 JSON (empty for 304 and event streams), the headers each status implies,
 * the same answer to the same request asked again (and asked again as a held request, which
 * the limiter does not count), a 304 for a 200's own ETag sent back in If-None-Match, `wait`
 * only on a 304, and an opened stream's events well framed, of the path's team only. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "dmj/api.h"
#include "dmj/query.h"
#include "dmj/store.h"

#include "fixture.h"
#include "number.h"
#include "tmpdir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One store and one worker for the whole process: building the store per input would
 * measure LMDB, not the API. */
static struct {
    char dir[64];
    struct dmj_store *store;
    struct dmj_api_worker *worker;
    unsigned wait; /* what the rate limiter answers for the current input */
    unsigned limiter_calls;
    unsigned stream_calls;
    struct dmj_buf events;
} fz;

static unsigned fz_stream_acquire(void *ctx, const char *secure_value)
{
    (void)ctx;
    if (strncmp(secure_value, "sha256$", 7) != 0 || strlen(secure_value) != 71)
        abort();
    fz.stream_calls++;
    return fz.wait;
}

static unsigned fz_rate_limit(void *ctx, const char *secure_value)
{
    (void)ctx;
    if (strncmp(secure_value, "sha256$", 7) != 0 || strlen(secure_value) != 71)
        abort(); /* the limiter is only ever asked about a stored key's hash */
    fz.limiter_calls++;
    return fz.wait;
}

static void fz_cleanup(void)
{
    dmj_api_worker_free(fz.worker);
    dmj_store_close(fz.store);
    dmj_buf_dispose(&fz.events);
    tmpdir_remove(fz.dir);
}

static void fz_setup(void)
{
    static const struct dmj_api_config cfg = {.max_limit = 1000,
                                              .rate_limit = fz_rate_limit,
                                              .stream_acquire = fz_stream_acquire};
    dmj_buf_init(&fz.events, (size_t)64 << 20);
    if (fixture_make("dmj-fuzz-request-", fz.dir, sizeof fz.dir, &fz.store) != 0 ||
        dmj_api_worker_new(fz.store, &cfg, &fz.worker) != 0) {
        fprintf(stderr, "fuzz_request: cannot build the fixture store\n");
        fz_cleanup(); /* abort() runs no atexit handler: leave no store behind */
        abort();
    }
    atexit(fz_cleanup);
}

/* The next NUL-separated field; absent fields (past the end of the input) stay NULL. */
static struct dmj_str next_field(const uint8_t **p, const uint8_t *end)
{
    struct dmj_str s = {NULL, 0};
    if (*p > end)
        return s;
    const uint8_t *z = memchr(*p, 0, (size_t)(end - *p));
    const uint8_t *stop = z ? z : end;
    s.ptr = (const char *)*p;
    s.len = (size_t)(stop - *p);
    *p = z ? z + 1 : end + 1;
    return s;
}

static bool query_parses(const struct dmj_str *raw)
{
    static struct dmj_query q; /* large: kept out of the stack */
    static bool ready;
    if (!ready) {
        dmj_query_init(&q, (size_t)4 << 20);
        ready = true;
    }
    return dmj_query_parse(&q, raw->ptr ? raw->ptr : "", raw->ptr ? raw->len : 0) == 0;
}

/* The body is one JSON value of valid UTF-8 (yajl validates strings by default). */
static bool json_valid(const char *body, size_t len)
{
    yajl_handle h = yajl_alloc(NULL, NULL, NULL);
    if (!h)
        abort();
    bool ok = yajl_parse(h, (const unsigned char *)body, len) == yajl_status_ok &&
              yajl_complete_parse(h) == yajl_status_ok;
    yajl_free(h);
    return ok;
}

/* The team a path names by number (/api/{environments,projects}/<int>/...), as Python's int()
 * reads the segment; -1 for @current, anything else, or another route. */
static long long path_team(const struct dmj_str *raw)
{
    struct dmj_buf path;
    long long team = -1;
    dmj_buf_init(&path, 1 << 16);
    if (dmj_query_decode_path(raw->ptr, raw->len, &path) == 0 && path.len > 0) {
        const char *p = path.data, *end = path.data + path.len;
        static const char *const prefixes[] = {"/api/environments/", "/api/projects/"};
        for (size_t i = 0; i < 2; i++) {
            size_t n = strlen(prefixes[i]);
            if ((size_t)(end - p) <= n || memcmp(p, prefixes[i], n) != 0)
                continue;
            const char *seg = p + n, *slash = memchr(seg, '/', (size_t)(end - seg));
            long long v;
            bool over;
            if (dmj_parse_int(seg, (size_t)((slash ? slash : end) - seg), &v, &over) == 0 &&
                !over)
                team = v;
        }
    }
    dmj_buf_dispose(&path);
    return team;
}

/* Whether the body serves a job whose id starts with `prefix` (as a JSON member: text that
 * came from the request is escaped or percent-quoted and cannot look like this). */
static bool serves(const struct dmj_api_response *res, const char *prefix)
{
    char pat[64];
    int n = snprintf(pat, sizeof pat, "\"id\":\"%s", prefix);
    return res->body_len > 0 && memmem(res->body, res->body_len, pat, (size_t)n) != NULL;
}

/* A copy of what an answer says, to compare with a second asking. */
struct answer {
    int status;
    bool json, allow, www_authenticate, head;
    unsigned retry_after;
    char etag[48];
    size_t body_len;
    char *body;
};

static void keep(struct answer *a, const struct dmj_api_response *res)
{
    a->status = res->status;
    a->json = res->json;
    a->allow = res->allow;
    a->www_authenticate = res->www_authenticate;
    a->head = res->head;
    a->retry_after = res->retry_after;
    memcpy(a->etag, res->etag, sizeof a->etag);
    a->body_len = res->body_len;
    a->body = malloc(res->body_len + 1);
    if (!a->body)
        abort();
    memcpy(a->body, res->body, res->body_len);
}

/* Events as the stream sends them: blocks of "name: value" lines ended by an empty line,
 * each `data` one line of valid JSON, ids increasing and past where the stream began, no job
 * of another team than the path's. */
static void check_events(const struct dmj_buf *b, uint64_t after, long long team)
{
    const char *p = b->data ? b->data : "", *end = p + b->len;
    uint64_t last = after;
    bool in_block = false;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            abort(); /* every line ends */
        size_t n = (size_t)(nl - p);
        if (n == 0) {
            if (!in_block)
                abort(); /* no empty event */
            in_block = false;
        } else if (n > 4 && memcmp(p, "id: ", 4) == 0) {
            char num[32];
            if (n - 4 >= sizeof num)
                abort();
            memcpy(num, p + 4, n - 4);
            num[n - 4] = '\0';
            uint64_t id = strtoull(num, NULL, 10);
            if (id <= last)
                abort();
            last = id;
            in_block = true;
        } else if (n > 6 && memcmp(p, "data: ", 6) == 0) {
            if (!json_valid(p + 6, n - 6))
                abort();
            in_block = true;
        } else if (n > 7 && memcmp(p, "event: ", 7) == 0) {
            in_block = true;
        } else {
            abort();
        }
        p = nl + 1;
    }
    if (in_block)
        abort(); /* the last event is complete */
    static const char team1[] = "\"job_id\":\"10000000-", team2[] = "\"job_id\":\"20000000-";
    if (b->len > 0 &&
        ((team != -1 && team != 1 && memmem(b->data, b->len, team1, sizeof team1 - 1)) ||
         (team != -1 && team != 2 && memmem(b->data, b->len, team2, sizeof team2 - 1))))
        abort();
}

static bool same(const struct answer *a, const struct dmj_api_response *res)
{
    return a->status == res->status && a->json == res->json && a->allow == res->allow &&
           a->www_authenticate == res->www_authenticate && a->head == res->head &&
           a->retry_after == res->retry_after && strcmp(a->etag, res->etag) == 0 &&
           a->body_len == res->body_len && memcmp(a->body, res->body, a->body_len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t empty[1];
    if (fz.worker == NULL)
        fz_setup();
    if (size == 0)
        data = empty;

    const uint8_t *p = data, *end = data + size;
    struct dmj_api_request req;
    struct dmj_api_response res;
    memset(&req, 0, sizeof req);
    req.method = next_field(&p, end);
    req.path = next_field(&p, end);
    req.query = next_field(&p, end);
    req.authorization = next_field(&p, end);
    req.host = next_field(&p, end);
    req.if_none_match = next_field(&p, end);
    req.forwarded_proto = next_field(&p, end);
    req.last_event_id = next_field(&p, end);
    uint8_t last = size > 0 ? data[size - 1] : 0;
    req.tls = last & 1;
    fz.wait = last & 2 ? (unsigned)(last >> 2) + 1 : 0;
    fz.limiter_calls = 0;
    fz.stream_calls = 0;
    if (req.method.ptr == NULL)
        req.method = (struct dmj_str){"GET", 3};
    if (req.path.ptr == NULL)
        req.path = (struct dmj_str){"/", 1};

    dmj_api_handle(fz.worker, &req, &res);

    /* Every answer is a known status with a JSON body (empty only for 304). */
    static const int statuses[] = {200, 304, 400, 401, 403, 404, 405, 429, 500, 503};
    bool known = false;
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
        known = known || res.status == statuses[i];
    if (!known || res.body == NULL)
        abort();
    if (res.status == 304 || res.event_stream) {
        if (res.body_len != 0 || (res.status == 304 && res.etag[0] != '"'))
            abort();
        if (res.event_stream && (res.status != 200 || res.json || res.etag[0]))
            abort();
    } else if (res.body_len == 0 || (res.body[0] != '{' && res.body[0] != '[') ||
               (res.body[res.body_len - 1] != '}' && res.body[res.body_len - 1] != ']')) {
        abort();
    }
    if (res.status != 304 && !res.event_stream && !json_valid(res.body, res.body_len))
        abort();
    /* Only a 304 is held; only a GET of events/ opens a stream, after one slot was asked. */
    if ((res.wait_s > 0 && res.status != 304) || res.wait_s > 60)
        abort();
    if (res.stream_open != (res.event_stream && !res.head) || fz.stream_calls > 1 ||
        (res.stream_open && fz.stream_calls != 1))
        abort();
    if (res.stream_open) {
        struct dmj_api_stream st = res.stream;
        dmj_buf_reset(&fz.events);
        int rc = dmj_api_stream_render(fz.worker, &req, &st, &fz.events, 1 << 16);
        if (rc != 0 && rc != 1)
            abort(); /* the request passed its checks a moment ago, on a sound store */
        if (st.team_id != res.stream.team_id || st.after_seq < res.stream.after_seq)
            abort();
        check_events(&fz.events, res.stream.after_seq, path_team(&req.path));
    }
    if (res.etag[0] && res.status != 200 && res.status != 304)
        abort();
    if ((res.status == 401) != res.www_authenticate)
        abort();
    if ((res.status == 429) != (res.retry_after != 0) ||
        (res.status == 429 && (fz.limiter_calls + fz.stream_calls == 0 ||
                               (fz.limiter_calls > 0 && res.retry_after != fz.wait))))
        abort();
    if (fz.limiter_calls > 1 || (fz.wait == 0 && res.status == 429))
        abort();
    /* Isolation: the duckgres job is never served, team 1's and team 2's jobs only under a
     * path naming that team (or @current), whoever asks. */
    if (serves(&res, "10000000-0000-4000-8000-000000000007"))
        abort();
    long long team = path_team(&req.path);
    if ((serves(&res, "10000000-") && team != -1 && team != 1) ||
        (serves(&res, "20000000-") && team != -1 && team != 2))
        abort();
    /* The fixture store is sound: the only 500 is Django's for a query it cannot parse. */
    if (res.status == 500 && query_parses(&req.query))
        abort();

    /* Asked again, the same answer: nothing of one request stays behind in the worker. */
    struct answer first;
    keep(&first, &res);
    dmj_api_handle(fz.worker, &req, &res);
    if (!same(&first, &res))
        abort();
    /* Asked again as a held request: the same answer, unless the limiter refused the first. */
    if (first.status != 429) {
        req.again = true;
        fz.limiter_calls = 0;
        dmj_api_handle(fz.worker, &req, &res);
        if (!same(&first, &res) || fz.limiter_calls != 0)
            abort();
        req.again = false;
    }
    /* A 200 sent back its own validator is a 304 with that validator. */
    if (first.status == 200 && first.etag[0]) {
        req.if_none_match = (struct dmj_str){first.etag, strlen(first.etag)};
        dmj_api_handle(fz.worker, &req, &res);
        if (res.status != 304 || strcmp(res.etag, first.etag) != 0 || res.body_len != 0)
            abort();
    }
    free(first.body);
    return 0;
}

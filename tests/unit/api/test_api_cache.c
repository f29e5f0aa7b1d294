/* The worker's response cache: a repeated request is answered from it with the same bytes
 * and ETag, and nothing cached survives a commit (a changed job, a key that lost its
 * scope); other hosts, queries and keys are other entries; a rate-limited worker keeps none. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dmj/api.h"

#include "fixture.h"
#include "tmpdir.h"

#define L "/api/environments/1/data_modeling_jobs/"

struct answer {
    int status;
    const char *body;
    const void *owner; /* the cached copy the body is, if any (dmj_api_body_hold) */
    char text[8192];
    char etag[48];
    bool head;
};

static void get(struct dmj_api_worker *w, const char *method, const char *path, const char *query,
                const char *key, const char *host, const char *inm, struct answer *a)
{
    struct dmj_api_response r;
    char auth[128];
    if (key)
        snprintf(auth, sizeof auth, "Bearer %s", key);
    struct dmj_api_request q = fixture_request(method, path, query, key ? auth : NULL, host);
    q.if_none_match = fixture_str(inm);
    dmj_api_handle(w, &q, &r);
    a->status = r.status;
    a->body = r.body;
    a->owner = r.body_owner;
    snprintf(a->text, sizeof a->text, "%.*s", (int)r.body_len, r.body);
    memcpy(a->etag, r.etag, sizeof a->etag);
    a->head = r.head;
}

/* Rewrites J1 with another row count, or K_READ without its scope, in one commit. */
static int commit_change(struct dmj_store *s, bool job)
{
    struct dmj_write *w;
    int rc = dmj_write_begin(s, &w);
    if (rc)
        return rc;
    if (job) {
        struct dmj_job j = fixture_job(J1_ID, 1, SQ_A, DMJ_STATUS_COMPLETED, 5, "materialize-a");
        j.rows_materialized = 4242;
        rc = dmj_write_job(w, &j);
    } else {
        rc = fixture_key(w, K_READ, 1, "insight:read", 0, NULL);
    }
    if (rc) {
        dmj_write_abort(w);
        return rc;
    }
    return dmj_write_commit(w, NULL);
}

static void held_body_survives(struct dmj_store *store, const struct dmj_api_config *cfg)
{
    struct dmj_api_worker *w;
    struct dmj_api_request q;
    struct dmj_api_response r;
    static struct answer other;
    char auth[128], want[8192];
    CHECK_EQ_INT(dmj_api_worker_new(store, cfg, &w), 0);
    snprintf(auth, sizeof auth, "Bearer %s", K_STAR);
    q = fixture_request("GET", L, "limit=2", auth, "h:1");
    dmj_api_handle(w, &q, &r);
    CHECK_EQ_INT(r.status, 200);
    snprintf(want, sizeof want, "%.*s", (int)r.body_len, r.body);
    void *held = dmj_api_body_hold(&r);
    CHECK(held != NULL);
    const char *body = r.body;
    size_t len = r.body_len;
    for (int i = 0; i < 320; i++) {
        char query[32];
        snprintf(query, sizeof query, "limit=%d", 3 + i);
        get(w, "GET", L, query, K_STAR, "h:1", NULL, &other);
        CHECK_EQ_INT(other.status, 200);
    }
    dmj_api_worker_free(w);
    CHECK(len == strlen(want) && memcmp(body, want, len) == 0);
    dmj_api_body_release(held);

    /* a 304 has no body to hold */
    CHECK_EQ_INT(dmj_api_worker_new(store, cfg, &w), 0);
    dmj_api_handle(w, &q, &r);
    char etag[48];
    memcpy(etag, r.etag, sizeof etag);
    q.if_none_match = (struct dmj_str){etag, strlen(etag)};
    dmj_api_handle(w, &q, &r);
    CHECK_EQ_INT(r.status, 304);
    CHECK(dmj_api_body_hold(&r) == NULL);
    dmj_api_worker_free(w);
}

static unsigned limiter_calls;

static unsigned count_calls(void *ctx, const char *secure_value)
{
    (void)ctx;
    (void)secure_value;
    limiter_calls++;
    return 0;
}

int main(void)
{
    char dir[64];
    struct dmj_store *store = NULL;
    struct dmj_api_worker *w = NULL, *limited = NULL;
    static struct answer a, b, c;

    if (fixture_make("dmj-test-api-cache-", dir, sizeof dir, &store) != 0) {
        fprintf(stderr, "could not build the fixture store\n");
        return 1;
    }
    struct dmj_api_config cfg = {.max_limit = 1000};
    CHECK_EQ_INT(dmj_api_worker_new(store, &cfg, &w), 0);

    /* A repeat is a hit: same bytes and ETag, from elsewhere than the render buffer. */
    get(w, "GET", L J1_ID "/", NULL, K_READ, "h:1", NULL, &a);
    get(w, "GET", L J1_ID "/", NULL, K_READ, "h:1", NULL, &b);
    CHECK_EQ_INT(a.status, 200);
    CHECK_EQ_STR(a.text, J1_JSON);
    CHECK_EQ_STR(b.text, a.text);
    CHECK_EQ_STR(b.etag, a.etag);
    CHECK(a.etag[0] == '"');
    /* the first answer was kept and is sent from the kept copy; the repeat is that copy */
    CHECK(a.owner != NULL && a.body != NULL);
    CHECK(b.owner == a.owner && b.body == a.body);

    /* HEAD shares the entry; If-None-Match on a hit still answers 304. */
    get(w, "HEAD", L J1_ID "/", NULL, K_READ, "h:1", NULL, &c);
    CHECK_EQ_INT(c.status, 200);
    CHECK(c.head);
    CHECK_EQ_STR(c.etag, a.etag);
    get(w, "GET", L J1_ID "/", NULL, K_READ, "h:1", a.etag, &c);
    CHECK_EQ_INT(c.status, 304);
    CHECK_EQ_STR(c.text, "");

    /* Another host renders its own links; another query its own page. */
    get(w, "GET", L, "limit=1", K_READ, "h:1", NULL, &a);
    get(w, "GET", L, "limit=1", K_READ, "other:2", NULL, &b);
    CHECK_EQ_INT(a.status, 200);
    CHECK(strstr(a.text, "http://h:1/") != NULL);
    CHECK(strstr(b.text, "http://other:2/") != NULL);
    CHECK(strcmp(a.etag, b.etag) != 0);
    get(w, "GET", L, "limit=2", K_READ, "h:1", NULL, &c);
    CHECK(strcmp(a.text, c.text) != 0);
    get(w, "GET", L, "limit=1", K_READ, "h:1", NULL, &c);
    CHECK_EQ_STR(c.text, a.text);

    /* A commit changes the job: the next answer shows it, with a new ETag. */
    get(w, "GET", L J1_ID "/", NULL, K_READ, "h:1", NULL, &a);
    CHECK_EQ_INT(commit_change(store, true), 0);
    get(w, "GET", L J1_ID "/", NULL, K_READ, "h:1", NULL, &b);
    CHECK_EQ_INT(b.status, 200);
    CHECK(strstr(b.text, "\"rows_materialized\":4242,") != NULL);
    CHECK(strcmp(a.etag, b.etag) != 0);

    /* A key that loses its scope is refused at once, cached answer or not. */
    get(w, "GET", L J1_ID "/", NULL, K_READ, "h:1", NULL, &a);
    CHECK_EQ_INT(a.status, 200);
    CHECK_EQ_INT(commit_change(store, false), 0);
    get(w, "GET", L J1_ID "/", NULL, K_READ, "h:1", NULL, &b);
    CHECK_EQ_INT(b.status, 403);

    /* Another key with read access gets its own answer; no key is a 401, never a hit. */
    get(w, "GET", L J1_ID "/", NULL, K_STAR, "h:1", NULL, &a);
    CHECK_EQ_INT(a.status, 200);
    get(w, "GET", L J1_ID "/", NULL, NULL, "h:1", NULL, &b);
    CHECK_EQ_INT(b.status, 401);

    /* A held body outlives what the cache does to its slot and the worker itself: 320 other
     * answers pass through the 32 slots (so its slot is stored into again) and it keeps its
     * bytes (and ASan sees no free). */
    held_body_survives(store, &cfg);

    /* With a rate limiter every request reaches it: nothing is answered from a cache. */
    cfg.rate_limit = count_calls;
    CHECK_EQ_INT(dmj_api_worker_new(store, &cfg, &limited), 0);
    limiter_calls = 0;
    for (int i = 0; i < 5; i++) {
        get(limited, "GET", L J1_ID "/", NULL, K_STAR, "h:1", NULL, &a);
        CHECK_EQ_INT(a.status, 200);
    }
    CHECK_EQ_INT((int)limiter_calls, 5);

    dmj_api_worker_free(limited);
    dmj_api_worker_free(w);
    dmj_store_close(store);
    tmpdir_remove(dir);
    return check_done();
}

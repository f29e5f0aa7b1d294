/* Checks that a warmed-up worker answers requests without heap allocations of its own: the
 * test counts malloc/calloc/realloc (interposed here) around batches of requests, allowing
 * only what the key hash itself costs (OpenSSL's one-shot SHA256 allocates). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dmj/api.h"
#include "dmj/identity.h"

#include "fixture.h"
#include "tmpdir.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ALLOC_COUNTING 0 /* the sanitizers own malloc: no interposing under them */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer)
#define ALLOC_COUNTING 0
#else
#define ALLOC_COUNTING 1
#endif
#else
#define ALLOC_COUNTING 1
#endif

static unsigned long allocations;
static bool counting;

#if ALLOC_COUNTING
/* glibc's own entry points, which its malloc/calloc/realloc forward to. */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);

void *malloc(size_t n)
{
    if (counting)
        allocations++;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    if (counting)
        allocations++;
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    if (counting)
        allocations++;
    return __libc_realloc(p, n);
}
#endif

static struct dmj_api_worker *W;

static int request(const char *method, const char *path, const char *query, const char *auth,
                   const char *inm)
{
    struct dmj_api_request q = fixture_request(method, path, query, auth, "testserver:8000");
    struct dmj_api_response r;
    q.if_none_match = fixture_str(inm);
    dmj_api_handle(W, &q, &r);
    return r.status;
}

struct alloc_case {
    const char *method;
    const char *path;
    const char *query;
    const char *auth;
    const char *inm;
    int status;
    bool hashes; /* the request hashes one key */
};

#define B "Bearer " K_READ
#define L "/api/environments/1/data_modeling_jobs/"

static const struct alloc_case cases[] = {
    {"GET", L, "limit=2&x=%C3%A9&b", B, NULL, 200, true},
    {"GET", L, "limit=1&cursor=" SECOND_PAGE_CURSOR, B, NULL, 200, true},
    {"GET", L, "saved_query_id=" SQ_A, NULL, NULL, 401, false},
    {"GET", L, "personal_api_key=" K_READ "&saved_query_id=" SQ_A, NULL, NULL, 200, true},
    {"HEAD", L "running", NULL, B, NULL, 200, true},
    {"GET", L "recent/", NULL, B, NULL, 200, true},
    {"GET", "/api/projects/@current/data_modeling_jobs/" J1_ID, NULL, B, NULL, 200, true},
    {"GET", L J1_ID, NULL, B, "*", 304, true},
    {"OPTIONS", L "x", NULL, B, NULL, 200, true},
    {"POST", L, NULL, B, NULL, 405, true},
    {"GET", "/api/environments/2/data_modeling_jobs/", NULL, "Bearer " K_BOB, NULL, 403, true},
    {"GET", L, "cursor=YQ", B, NULL, 404, true},
    /* dmj's own filters: a merge of status walks, bounds, and their 400s */
    {"GET", L, "status=Completed,Failed,Running&created_after=2000-01-01&limit=2", B, NULL, 200,
     true},
    {"GET", L, "status=Completed&saved_query_id=" SQ_A "&created_before=2100-01-01T00:00:00Z", B,
     NULL, 200, true},
    {"GET", L, "status=Bogus", B, NULL, 400, true},
    {"GET", L, "created_before=x", B, NULL, 400, true},
    {"GET", "/api/nothing", NULL, NULL, NULL, 404, false},
    {"GET", "/_health", NULL, NULL, NULL, 200, false},
};

int main(void)
{
    char dir[64];
    struct dmj_store *store = NULL;
    char hash[DMJ_KEY_HASH_LEN + 1];

    if (!ALLOC_COUNTING) {
        printf("skipped: allocations cannot be counted under a sanitizer\n");
        return 77;
    }
    if (fixture_make("dmj-test-api-alloc-", dir, sizeof dir, &store) != 0) {
        fprintf(stderr, "could not build the fixture store\n");
        return 1;
    }
    struct dmj_api_config cfg = {.max_limit = 1000};
    CHECK_EQ_INT(dmj_api_worker_new(store, &cfg, &W), 0);

    /* What one key hash costs, outside the API. */
    dmj_key_hash(K_READ, strlen(K_READ), hash);
    counting = true;
    allocations = 0;
    dmj_key_hash(K_READ, strlen(K_READ), hash);
    counting = false;
    unsigned long per_hash = allocations;

    size_t n = sizeof cases / sizeof cases[0];
    /* Warm-up: buffers reach their working size, and the read handle opens a cursor for
     * each of its walk slots (it rotates through them, opening each on first use). */
    for (int round = 0; round < 8; round++)
        for (size_t i = 0; i < n; i++)
            CHECK_EQ_INT(request(cases[i].method, cases[i].path, cases[i].query, cases[i].auth,
                                 cases[i].inm),
                         cases[i].status);
    for (size_t i = 0; i < n; i++) {
        const struct alloc_case *c = &cases[i];
        counting = true;
        allocations = 0;
        for (int k = 0; k < 20; k++)
            request(c->method, c->path, c->query, c->auth, c->inm);
        counting = false;
        unsigned long allowed = c->hashes ? 20 * per_hash : 0;
        if (allocations > allowed)
            fprintf(stderr, "%s %s?%s: %lu allocations in 20 requests (key hash: %lu)\n", c->method,
                    c->path, c->query ? c->query : "", allocations, allowed);
        CHECK(allocations <= allowed);
    }

    dmj_api_worker_free(W);
    dmj_store_close(store);
    tmpdir_remove(dir);
    return check_done();
}

/* api_profile: answers one endpoint N times in process (no HTTP), so that callgrind or
 * `perf stat` can count the instructions dmj_api_handle spends per request, repeatably.
 *
 * Build (from the source root, after building the libraries in BUILD):
 *   gcc -O2 -std=c11 -D_GNU_SOURCE -Iinclude tests/bench/api_profile.c BUILD/libdmj_api.a \
 *       BUILD/libdmj_store.a BUILD/libdmj_common.a \
 *       $(pkg-config --cflags --libs lmdb msgpack yajl libcrypto zlib) -lpthread \
 *       -o BUILD/api_profile
 * Use:
 *   api_profile --db STORE --key KEY --team T --endpoint list|deep|filtered|retrieve|recent|
 *               running|status|401 [--job UUID] [--saved-query UUID] [--n N] [--print] [--miss]
 *   valgrind --tool=callgrind --collect-atstart=no BUILD/api_profile ... --n 200
 * Only the measured loop is collected (callgrind's client requests, no-ops outside valgrind):
 * instructions / N is the cost of one request. The deep page follows `next` 50 times first,
 * outside the measured loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <valgrind/callgrind.h>

#include "dmj/api.h"
#include "dmj/store.h"

struct opts {
    const char *db, *key, *endpoint, *job, *saved_query;
    int team;
    long n;
    int print;
    int miss; /* a new Host each time: every request misses the worker's response cache */
};

static int usage(void)
{
    fprintf(stderr, "usage: api_profile --db DIR --key KEY --team T --endpoint E [--job UUID]\n"
                    "                   [--saved-query UUID] [--n N] [--print] [--miss]\n");
    return 2;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->team = 1;
    o->n = 1000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--print") == 0) {
            o->print = 1;
            continue;
        }
        if (strcmp(a, "--miss") == 0) {
            o->miss = 1;
            continue;
        }
        if (v == NULL)
            return -1;
        if (strcmp(a, "--db") == 0)
            o->db = v;
        else if (strcmp(a, "--key") == 0)
            o->key = v;
        else if (strcmp(a, "--endpoint") == 0)
            o->endpoint = v;
        else if (strcmp(a, "--job") == 0)
            o->job = v;
        else if (strcmp(a, "--saved-query") == 0)
            o->saved_query = v;
        else if (strcmp(a, "--team") == 0)
            o->team = atoi(v);
        else if (strcmp(a, "--n") == 0)
            o->n = atol(v);
        else
            return -1;
        i++;
    }
    return o->db && o->key && o->endpoint ? 0 : -1;
}

/* The request's strings live here so that the cursor of a deep page can be swapped in. */
struct req_text {
    char path[256];
    char query[1024];
    char auth[256];
    int has_query;
};

static void answer(struct dmj_api_worker *w, const struct req_text *t, const char *method,
                   struct dmj_api_response *res, unsigned host_port)
{
    char host[32];
    int host_len = snprintf(host, sizeof host, "127.0.0.1:%u", host_port);
    struct dmj_api_request q;
    memset(&q, 0, sizeof q);
    q.method = (struct dmj_str){method, strlen(method)};
    q.path = (struct dmj_str){t->path, strlen(t->path)};
    if (t->has_query)
        q.query = (struct dmj_str){t->query, strlen(t->query)};
    if (t->auth[0])
        q.authorization = (struct dmj_str){t->auth, strlen(t->auth)};
    q.host = (struct dmj_str){host, (size_t)host_len};
    dmj_api_handle(w, &q, res);
}

/* Copies the `cursor=` value of the body's "next" link into t->query (limit=100&cursor=..). */
static int follow_next(const struct dmj_api_response *res, struct req_text *t)
{
    const char *next = memmem(res->body, res->body_len, "\"next\":\"", 8);
    if (next == NULL)
        return -1;
    const char *end = memchr(next + 8, '"', res->body_len - (size_t)(next + 8 - res->body));
    const char *c = next ? memmem(next, (size_t)(end - next), "cursor=", 7) : NULL;
    if (end == NULL || c == NULL)
        return -1;
    c += 7;
    size_t n = 0;
    while (c + n < end && c[n] != '&')
        n++;
    if (n + 32 >= sizeof t->query)
        return -1;
    snprintf(t->query, sizeof t->query, "limit=100&cursor=%.*s", (int)n, c);
    t->has_query = 1;
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct dmj_store *store = NULL;
    struct dmj_api_worker *w = NULL;
    struct dmj_api_response res;
    struct req_text t;
    const char *e;
    int rc;

    if (parse_args(argc, argv, &o) != 0)
        return usage();
    memset(&t, 0, sizeof t);
    e = o.endpoint;
    snprintf(t.path, sizeof t.path, "/api/environments/%d/data_modeling_jobs/", o.team);
    if (strcmp(e, "401") != 0)
        snprintf(t.auth, sizeof t.auth, "Bearer %s", o.key);
    if (strcmp(e, "list") == 0 || strcmp(e, "deep") == 0 || strcmp(e, "401") == 0) {
        snprintf(t.query, sizeof t.query, "limit=100");
        t.has_query = 1;
    } else if (strcmp(e, "filtered") == 0 && o.saved_query) {
        snprintf(t.query, sizeof t.query, "limit=100&saved_query_id=%s", o.saved_query);
        t.has_query = 1;
    } else if (strcmp(e, "status") == 0) { /* a sparse index walk: ~5% of jobs run */
        snprintf(t.query, sizeof t.query, "limit=100&status=Running");
        t.has_query = 1;
    } else if (strcmp(e, "retrieve") == 0 && o.job) {
        snprintf(t.path, sizeof t.path, "/api/environments/%d/data_modeling_jobs/%s/", o.team,
                 o.job);
    } else if (strcmp(e, "recent") == 0 || strcmp(e, "running") == 0) {
        snprintf(t.path, sizeof t.path, "/api/environments/%d/data_modeling_jobs/%s/", o.team, e);
    } else {
        return usage();
    }

    rc = dmj_store_open(o.db, DMJ_STORE_RDONLY, 0, &store);
    if (rc != 0) {
        fprintf(stderr, "api_profile: %s: %s\n", o.db, dmj_strerror(rc));
        return 1;
    }
    struct dmj_api_config cfg = {.max_limit = 1000};
    rc = dmj_api_worker_new(store, &cfg, &w);
    if (rc != 0) {
        fprintf(stderr, "api_profile: worker: %s\n", dmj_strerror(rc));
        return 1;
    }
    if (strcmp(e, "deep") == 0) {
        for (int page = 0; page < 50; page++) {
            answer(w, &t, "GET", &res, 8000);
            if (res.status != 200 || follow_next(&res, &t) != 0) {
                fprintf(stderr, "api_profile: no next link at page %d\n", page);
                return 1;
            }
        }
    }
    /* Warm-up: buffers reach their working size, pages are mapped. */
    for (int i = 0; i < 20; i++)
        answer(w, &t, "GET", &res, 8000);
    if (o.print) {
        fwrite(res.body, 1, res.body_len, stdout);
        putchar('\n');
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CALLGRIND_TOGGLE_COLLECT;
    for (long i = 0; i < o.n; i++)
        answer(w, &t, "GET", &res, o.miss ? 10000 + (unsigned)(i % 50000) : 8000);
    CALLGRIND_TOGGLE_COLLECT;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3;
    fprintf(stderr, "%s: status %d, %zu bytes, %ld requests, %.2f us/request (wall)\n", e,
            res.status, res.body_len, o.n, o.n ? us / (double)o.n : 0.0);
    dmj_api_worker_free(w);
    dmj_store_close(store);
    return 0;
}

/* libFuzzer target: arbitrary bytes split on NUL into method, path, query, Authorization, Host,
 * If-None-Match and X-Forwarded-Proto, answered by dmj_api_handle over a small fixed store. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmj/api.h"
#include "dmj/query.h"
#include "dmj/store.h"

#include "../tests/unit/test_api_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One store and one worker for the whole process: building the store per input would
 * measure LMDB, not the API. */
static struct {
    char dir[64];
    struct dmj_store *store;
    struct dmj_api_worker *worker;
} fz;

static void fz_cleanup(void)
{
    dmj_api_worker_free(fz.worker);
    dmj_store_close(fz.store);
    fixture_remove(fz.dir);
}

static void fz_setup(void)
{
    static const struct dmj_api_config cfg = {.max_limit = 1000};
    snprintf(fz.dir, sizeof fz.dir, "/tmp/dmj-fuzz-request-XXXXXX");
    if (mkdtemp(fz.dir) == NULL || fixture_build(fz.dir, &fz.store) != 0 ||
        dmj_api_worker_new(fz.store, &cfg, &fz.worker) != 0) {
        fprintf(stderr, "fuzz_request: cannot build the fixture store\n");
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
    req.tls = size > 0 && (data[size - 1] & 1);
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
    if (res.status == 304) {
        if (res.body_len != 0 || res.etag[0] != '"')
            abort();
    } else if (res.body_len == 0 || (res.body[0] != '{' && res.body[0] != '[') ||
               (res.body[res.body_len - 1] != '}' && res.body[res.body_len - 1] != ']')) {
        abort();
    }
    /* The fixture store is sound: the only 500 is Django's for a query it cannot parse. */
    if (res.status == 500 && query_parses(&req.query))
        abort();
    return 0;
}

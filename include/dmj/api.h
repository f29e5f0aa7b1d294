/** The whole API behind one call: route, authenticate, check, read the store, render.
 *
 * No HTTP library here: the server (src/server) copies what it needs from its request into
 * a `struct dmj_api_request`, calls dmj_api_handle, and sends the response. The fuzz target
 * `request` drives the same call in process. */
#ifndef DMJ_API_H
#define DMJ_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmj/buf.h"
#include "dmj/error.h"
#include "dmj/store.h"

/** Immutable after start-up; shared by every worker. */
struct dmj_api_config {
    unsigned max_limit; /**< largest page size; 0 = no maximum; default 1000 */
    /** Optional rate limiter (spec/API.md section 3, step 8), called once the key has passed
     * every permission check, with the key's stored hash. Returns 0 to let the request go
     * on, or the seconds to wait (the API answers 429 with Retry-After). Thread-safe. */
    unsigned (*rate_limit)(void *ctx, const char *secure_value);
    void *rate_limit_ctx;
};

/** A request as the HTTP layer sees it; every pointer is borrowed for the call. A header
 * that is absent has ptr NULL. */
struct dmj_api_request {
    struct dmj_str method;
    struct dmj_str path;          /**< raw, undecoded, without the query */
    struct dmj_str query;         /**< raw, after '?'; ptr NULL when there is no '?' */
    struct dmj_str authorization; /**< the Authorization header */
    struct dmj_str host;          /**< Host or :authority */
    struct dmj_str forwarded_proto; /**< X-Forwarded-Proto */
    struct dmj_str if_none_match;
    bool tls;
};

/** A response; `body` belongs to the worker and lives until the next dmj_api_handle. */
struct dmj_api_response {
    int status;
    bool json;             /**< Content-Type: application/json */
    bool allow;            /**< Allow: GET, HEAD, OPTIONS */
    bool www_authenticate; /**< WWW-Authenticate: Bearer */
    unsigned retry_after;  /**< seconds; 0 = no header */
    char etag[48];         /**< "" = no ETag header */
    bool head;             /**< send headers only */
    const char *body;
    size_t body_len;
    const char *endpoint;  /**< a route name for metrics and logs ("list", "retrieve", ...) */
};

/** Per-thread state: the reusable read handle and buffers. */
struct dmj_api_worker;

DMJ_MUST_CHECK int dmj_api_worker_new(struct dmj_store *store, const struct dmj_api_config *cfg,
                                      struct dmj_api_worker **out);
void dmj_api_worker_free(struct dmj_api_worker *w);
/** Answers one request. Never fails: internal errors become a 500 body. */
void dmj_api_handle(struct dmj_api_worker *w, const struct dmj_api_request *req,
                    struct dmj_api_response *res);

/** Appends the OpenAPI 3.0 document (JSON) of the served endpoints to `out`, as
 * `GET /api/schema/` serves it. -ENOMEM or DMJ_ETOOBIG. */
DMJ_MUST_CHECK int dmj_api_schema_render(struct dmj_buf *out);

#endif

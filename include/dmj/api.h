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

/** Which generation of PostHog's API is served (docs/api.md's offset generation). */
enum dmj_api_generation {
    DMJ_API_CURSOR = 0, /**< cursor pagination, ten fields (the default) */
    DMJ_API_OFFSET = 1, /**< limit/offset pagination with count, twelve fields */
};

/** Immutable after start-up; shared by every worker. */
struct dmj_api_config {
    unsigned max_limit; /**< largest page size (cursor generation); 0 = no maximum; default 1000 */
    enum dmj_api_generation generation; /**< zero: the cursor generation */
    /** Optional rate limiter (docs/api.md's checks, step 8), called once the key has passed
     * every permission check, with the key's stored hash. Returns 0 to let the request go
     * on, or the seconds to wait (the API answers 429 with Retry-After). Thread-safe. */
    unsigned (*rate_limit)(void *ctx, const char *secure_value);
    void *rate_limit_ctx;
    /** Optional bound on held requests per key (open event streams and held `running/?wait=`
     * long-polls), called with the key's stored hash when an `events/` GET, or a long-poll
     * about to be held, has passed every other check. Returns 0 when the stream may open (the
     * caller then holds one slot for the key until it ends the stream), or the seconds to
     * wait (the API answers 429). Thread-safe. NULL: no bound. */
    unsigned (*stream_acquire)(void *ctx, const char *secure_value);
    void *stream_ctx;
    /** Optional budget of failed authentications per client address: called with
     * `failed` false before a request's key is looked at (0 to go on, else the seconds to
     * wait: the API answers 429, cached answers included), and with `failed` true once a
     * request has failed authentication or a permission check (401, 403, 404), to count
     * it. Thread-safe. Not called for requests asked again, nor when the request has no
     * client address. */
    unsigned (*auth_gate)(void *ctx, const char *client, bool failed);
    void *auth_gate_ctx;
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
    struct dmj_str last_event_id; /**< Last-Event-ID (events/) */
    /** The client's address as text, for config.auth_gate; ptr NULL: not known. */
    struct dmj_str client;
    bool tls;
    /** The same request asked again (a parked long-poll or an open stream re-evaluated on a
     * store change): every check runs again, but the rate limiter does not count it. */
    bool again;
};

/** Where an event stream stands; dmj_api_handle fills it when it opens one, and
 * dmj_api_stream_render moves it on. Plain data: the server keeps it with the stream. */
struct dmj_api_stream {
    int32_t team_id;   /**< the team the stream was opened for */
    uint64_t after_seq; /**< the last change sent (or skipped as before the stream) */
    bool reset;         /**< an `event: reset` is owed first (changes were pruned) */
    uint64_t oldest;    /**< the oldest seq the log kept, for the reset event */
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
    /** Non-NULL when `body` is a cached answer, which dmj_api_body_hold can keep alive for
     * the server instead of a copy. */
    const void *body_owner;
    const char *endpoint;  /**< a route name for metrics and logs ("list", "retrieve", ...) */
    bool cached;            /**< the answer came from the worker's answer cache */
    unsigned rows_kept;     /**< jobs whose JSON the worker had kept (for metrics) */
    unsigned rows_rendered; /**< jobs it rendered */
    /** `running/?wait=N` whose answer is this 304: the server may hold the request up to
     * `wait_s` seconds, asking again (req.again) when the store changes, and send the first
     * answer that is not this 304 - or this one when the time is up. 0: answer now. When
     * first asked (not req.again) with config.stream_acquire set, the request holds the slot
     * of `stream_key` until the server answers it. */
    unsigned wait_s;
    bool event_stream;     /**< Content-Type: text/event-stream, Cache-Control: no-cache */
    /** A GET on events/ was accepted: send the headers, keep the response open and send what
     * dmj_api_stream_render produces. `stream` says where it starts, `stream_key` whose slot
     * (config.stream_acquire) it holds. */
    bool stream_open;
    struct dmj_api_stream stream;
    char stream_key[80];
};

/** Per-thread state: the reusable read handle and buffers. */
struct dmj_api_worker;

DMJ_MUST_CHECK int dmj_api_worker_new(struct dmj_store *store, const struct dmj_api_config *cfg,
                                      struct dmj_api_worker **out);
void dmj_api_worker_free(struct dmj_api_worker *w);
/** Answers one request. Never fails: internal errors become a 500 body. */
void dmj_api_handle(struct dmj_api_worker *w, const struct dmj_api_request *req,
                    struct dmj_api_response *res);
/** Keeps a response's body valid past the next dmj_api_handle and past the worker itself,
 * when it is a cached answer (res->body_owner): a handle for dmj_api_body_release, or NULL
 * when the body must be copied. Both on the worker's thread. */
void *dmj_api_body_hold(const struct dmj_api_response *res);
void dmj_api_body_release(void *held);

/** Checks an open stream's request again (authentication, permissions, the same team) and
 * appends the team's changes after `st->after_seq` as Server-Sent Events to `out`, moving
 * `st` on; stops once `out` holds `soft_max` bytes. Returns 0 when everything committed so
 * far was written, 1 when there is more (call again once `out` is sent), -EACCES when the
 * request no longer passes its checks (end the stream), or another negative code. */
DMJ_MUST_CHECK int dmj_api_stream_render(struct dmj_api_worker *w,
                                         const struct dmj_api_request *req,
                                         struct dmj_api_stream *st, struct dmj_buf *out,
                                         size_t soft_max);

/** Appends the OpenAPI 3.0 document (JSON) of the served endpoints to `out`, as
 * `GET /api/schema/` serves it in the cursor generation. -ENOMEM or DMJ_ETOOBIG. */
DMJ_MUST_CHECK int dmj_api_schema_render(struct dmj_buf *out);
/** The same document for generation `g`. */
DMJ_MUST_CHECK int dmj_api_schema_render_for(struct dmj_buf *out, enum dmj_api_generation g);

#endif

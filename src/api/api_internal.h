/** Internals of the API module (api*.c): the worker, the per-request context, and the calls
 * the routing, authentication, endpoint and error files make to each other. */
#ifndef DMJ_API_INTERNAL_H
#define DMJ_API_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmj/api.h"
#include "dmj/buf.h"
#include "dmj/identity.h"
#include "dmj/query.h"
#include "dmj/store.h"

#include "rows.h"

#define DMJ__API_BODY_MAX ((size_t)64 << 20) /* largest response body (bytes) */
#define DMJ__API_PATH_MAX ((size_t)2 << 20)  /* largest decoded path */
/* h2o takes request lines of up to ~400 KB; decoding can triple them (U+FFFD for each stray
 * byte) and re-quoting a link triples them again, so these leave room for both. */
#define DMJ__API_QUERY_MAX ((size_t)4 << 20)   /* largest decoded query storage */
#define DMJ__API_SCRATCH_MAX ((size_t)8 << 20) /* tokens, links, cursors, messages */
#define DMJ__API_DEFAULT_LIMIT 100
#define DMJ__API_DEFAULT_MAX_LIMIT 1000

/* The response cache (api_cache.c): a few direct-mapped slots per worker; its answer and
 * memory bounds are in api_cache.c. */
#define DMJ__API_CACHE_SLOTS 32
#define DMJ__API_CACHE_KEY_MAX ((size_t)16 << 10)

struct dmj__api_lender;

/** A body, counted: the cache holds one reference, the worker one for the answer it just
 * made, and each response the server is still sending from it another (dmj_api_body_hold);
 * the last release frees it, or gives a lent buffer back to its worker. A worker's blobs are
 * only touched on its thread. */
struct dmj__api_blob {
    unsigned refs;
    size_t len;
    size_t cap;  /* the memory it holds */
    char *data;  /* the answer's bytes: in `own`, or inside a lent buffer */
    char *base;  /* the lent buffer (a worker's body buffer, taken whole), or NULL */
    struct dmj__api_lender *lender; /* where a lent buffer goes back; NULL: not lent */
    char own[];
};

/** One rendered 200: the serialised request it answers (txnid first), its body and ETag. */
struct dmj__api_cache_entry {
    bool used;
    uint64_t hash;
    struct dmj_buf key;
    struct dmj__api_blob *body; /* NULL until the slot is first used */
    char etag[48];
};

/** A worker's cache; `probe` holds the current request, serialised, once prepared. */
struct dmj__api_cache {
    struct dmj__api_cache_entry slot[DMJ__API_CACHE_SLOTS];
    struct dmj_buf probe;
    uint64_t hash;
    bool ready; /* probe and hash describe the current request */
};

/** A worker's spare body buffers, each in its blob: lending the body that was rendered
 * swaps the worker's buffer for a spare, so that a large answer is sent without a copy. */
#define DMJ__API_LEND_SPARES 8
struct dmj__api_lender {
    unsigned refs;    /* the worker, and each blob lent out */
    bool worker_gone; /* buffers coming back are freed */
    unsigned n;
    struct dmj__api_blob *spare[DMJ__API_LEND_SPARES];
};

/* Authentications remembered (api_auth.c): direct-mapped slots per worker, each the outcome
 * of both checks for one credential and team in one committed state (about 460 bytes a slot:
 * 116 KiB a worker). A power of two. */
#define DMJ__API_AUTH_SLOTS 256
#define DMJ__API_AUTH_TEXT_MAX 256
struct dmj__api_auth_entry {
    uint64_t txnid; /* the committed state the checks passed in; 0: empty */
    uint64_t hash;
    bool bearer; /* the credential was a Bearer token (else ?personal_api_key=) */
    size_t cred_len, team_len;
    char text[DMJ__API_AUTH_TEXT_MAX]; /* the credential as sent, then the team segment */
    char secure_value[DMJ_KEY_HASH_LEN + 1];
    uint64_t key_digest;
    struct dmj_user user;
    struct dmj_team team; /* no name: nothing after the checks reads it */
};

/** Per-thread state; everything is reused from one request to the next. */
struct dmj_api_worker {
    struct dmj_api_config cfg; /* a copy: immutable for the worker's life */
    struct dmj_read *read;
    struct dmj_query query;
    struct dmj_buf path;    /* the percent-decoded path */
    struct dmj_buf body;    /* the response body handed back to the server */
    struct dmj_buf head;    /* a list page's text before its results */
    struct dmj_buf scratch; /* bearer token, 405 message, link text */
    struct dmj_buf cursor;  /* an encoded cursor */
    struct dmj_key key;     /* the authenticated key (large: kept out of the stack) */
    struct dmj_rows *rows;  /* each job's JSON, kept with its record's bytes */
    bool use_cache;         /* no rate limiter: answers may be served from `cache` */
    struct dmj__api_cache cache;
    struct dmj__api_lender *lender;
    struct dmj__api_blob *lent; /* the worker's reference to its last answer's body */
    struct dmj__api_auth_entry auth[DMJ__API_AUTH_SLOTS];
};

enum dmj__api_endpoint {
    DMJ__API_NONE = 0, /* no route */
    DMJ__API_LIST,
    DMJ__API_RETRIEVE,
    DMJ__API_RECENT,
    DMJ__API_RUNNING,
    DMJ__API_HEALTH,
};

enum dmj__api_method {
    DMJ__API_GET,
    DMJ__API_HEAD,
    DMJ__API_OPTIONS,
    DMJ__API_OTHER,
};

/** Everything about a request that outlives one step of the checks. */
struct dmj__api_ctx {
    struct dmj_api_worker *w;
    const struct dmj_api_request *req;
    struct dmj_api_response *res;
    enum dmj__api_endpoint endpoint;
    enum dmj__api_method method;
    bool api_path;        /* "/api" or under "/api/": unmatched gives "Endpoint not found." */
    const char *team_seg; /* into w->path */
    size_t team_len;
    const char *job_seg; /* retrieve only */
    size_t job_len;
    bool query_parsed; /* dmj__api_query ran (its result is query_rc) */
    int query_rc;
    bool cacheable;       /* a 200 answer goes into the worker's cache */
    bool events;          /* events/: routed as the list (its checks), answered by api_stream.c */
    bool has_page_digest; /* a list page: its body's digest is page_digest (api_endpoints.c) */
    uint64_t page_digest;
    struct dmj_user user; /* the key's owner, once authenticated */
    uint64_t key_digest;  /* the key's hash and permissions, once authorized (ETags) */
    struct dmj_team team; /* the resolved team */
};

/** The error answers of docs/api.md's errors; each knows its status, type and code. */
enum dmj__api_error {
    DMJ__API_ERR_NOT_AUTHENTICATED, /* 401 not_authenticated */
    DMJ__API_ERR_AUTH_FAILED,       /* 401 authentication_failed */
    DMJ__API_ERR_PERMISSION,        /* 403 permission_denied */
    DMJ__API_ERR_NOT_FOUND,         /* 404 not_found */
    DMJ__API_ERR_METHOD,            /* 405 method_not_allowed */
    DMJ__API_ERR_NULL_CHARS,        /* 400 null_characters_not_allowed, attr saved_query_id */
    DMJ__API_ERR_INVALID_CHOICE,    /* 400 invalid_choice, attr saved_query_id */
    DMJ__API_ERR_THROTTLED,         /* 429 throttled */
    DMJ__API_ERR_BAD_REQUEST,       /* 400 a request the HTTP layer would refuse (bad Host) */
    DMJ__API_ERR_SERVER,            /* 500 error */
};

/* Fixed texts (the peer's jobs/messages.py). */
#define DMJ__MSG_NOT_AUTHENTICATED "Authentication credentials were not provided."
#define DMJ__MSG_INVALID_KEY_HEADER                                                                \
    "Personal API key found in request Authorization header is invalid."
#define DMJ__MSG_INVALID_KEY_QUERY "Personal API key found in request query string is invalid."
#define DMJ__MSG_INVALID_OAUTH "Invalid access token."
#define DMJ__MSG_PROJECT_NOT_FOUND "Project not found."
#define DMJ__MSG_MISSING_SCOPE "API key missing required scope 'warehouse_view:read'"
#define DMJ__MSG_NO_PROJECT_ACCESS "You don't have access to the project."
#define DMJ__MSG_ENDPOINT_NOT_FOUND "Endpoint not found."
#define DMJ__MSG_NOT_FOUND "Not found."
#define DMJ__MSG_INVALID_CURSOR "Invalid cursor"
#define DMJ__MSG_SERVER_ERROR "A server error occurred."
#define DMJ__MSG_NULL_CHARS "Null characters are not allowed."
#define DMJ__MSG_INVALID_CHOICE                                                                    \
    "Select a valid choice. That choice is not one of the available choices."
#define DMJ__MSG_BAD_REQUEST "Bad Request (400)"

/* api_errors.c */

/** Makes `res` the error answer `kind` with `detail` (copied into the worker's body). */
void dmj__api_fail(struct dmj__api_ctx *c, enum dmj__api_error kind, const char *detail);
/** 400 validation_error for query parameter `attr` with this code and detail (dmj's own
 * parameters: the filters, wait, last_event_id). */
void dmj__api_invalid_param(struct dmj__api_ctx *c, const char *code, const char *detail,
                            const char *attr);
/** 429 with Retry-After for a rate limiter's `seconds`. */
void dmj__api_throttled(struct dmj__api_ctx *c, unsigned seconds);
/** 405 naming the method as Django reports it (upper-cased). */
void dmj__api_method_not_allowed(struct dmj__api_ctx *c);
/** 500 for an unexpected internal code (store failure, undecodable record, full buffer). */
void dmj__api_internal(struct dmj__api_ctx *c, int err);

/* api.c */

/** The request's parsed query, parsed on first use; NULL when it cannot be parsed (the
 * caller answers 500, as Django does for too many fields). */
const struct dmj_query *dmj__api_query(struct dmj__api_ctx *c);
/** Whether links say https: a TLS listener, or X-Forwarded-Proto exactly "https". */
bool dmj__api_https(const struct dmj_api_request *req);

/** Routes the request and runs authentication and steps 3-7 of the checks again for a
 * request asked again (req->again; the rate limiter is not consulted), leaving the read
 * transaction begun. Returns 0, or 1 when the request no longer passes (nothing is begun). */
int dmj__api_recheck(struct dmj__api_ctx *c);

/* api_stream.c */

/** `running`'s `wait` parameter (0 when absent): an integer 0..60. Returns 0, or 1 when
 * `res` holds the 400 (attr "wait"). */
int dmj__api_wait_param(struct dmj__api_ctx *c, unsigned *out);
/** events/ once the request passed its checks: OPTIONS metadata, HEAD headers, or a GET that
 * opens a stream (Last-Event-ID, the per-key bound). */
void dmj__api_events(struct dmj__api_ctx *c);

/* api_auth.c */

/** Steps 1-2 of spec section 3: finds the key and its active owner (fills w->key, c->user).
 * Returns 0, or 1 when `res` already holds the error answer. */
int dmj__api_authenticate(struct dmj__api_ctx *c);
/** Steps 3-8: team resolution, key restrictions, scope, membership, rate limit. Returns 0, or
 * 1 when `res` holds the answer. */
int dmj__api_authorize(struct dmj__api_ctx *c);
/** A request whose credential and team passed both checks in this committed state before:
 * fills c->user, c->team, c->key_digest and w->key.secure_value (nothing else of w->key) and
 * returns true. Only for GET and HEAD without a rate limiter, never for a request asked
 * again. */
bool dmj__api_auth_recall(struct dmj__api_ctx *c);
/** Remembers that the request passed both checks (after dmj__api_authorize returned 0). */
void dmj__api_auth_remember(struct dmj__api_ctx *c);

/** Whether `host` passes Django's host validation (ALLOWED_HOSTS = "*"). */
bool dmj__api_host_valid(const char *host, size_t len);

/* api_endpoints.c */

/** The endpoint's own checks and its 200 answer (GET and HEAD). */
void dmj__api_serve(struct dmj__api_ctx *c);
/** DRF's OPTIONS metadata for the route. */
void dmj__api_options(struct dmj__api_ctx *c);
/** GET /_health. */
void dmj__api_health(struct dmj__api_ctx *c);

/** Sets up an empty cache (allocates nothing) / frees its memory. */
void dmj__api_cache_init(struct dmj__api_cache *cache);
void dmj__api_cache_dispose(struct dmj__api_cache *cache);
/** Serialises the request and the store state it is answered in; false when it is too
 * large to cache (find and store then do nothing). */
bool dmj__api_cache_prepare(struct dmj__api_cache *cache, const struct dmj_api_request *req,
                            uint64_t txnid);
/** The cached answer to the prepared request, or NULL; valid until the next store. */
const struct dmj__api_cache_entry *dmj__api_cache_find(const struct dmj__api_cache *cache);
/** Keeps a 200 answer to the prepared request (within api_cache.c's bounds); the blob now
 * holding it, or NULL when it was not kept (no entry, nothing else lost). */
const struct dmj__api_blob *dmj__api_cache_store(struct dmj__api_cache *cache, const char *body,
                                                 size_t len, const char *etag);
/** Keeps a lent body as the answer to the prepared request, without a copy; false when it is
 * not kept. */
bool dmj__api_cache_adopt(struct dmj__api_cache *cache, struct dmj__api_blob *body,
                          const char *etag);

/** A worker's lender (NULL: no memory) / its end: spares freed, lent buffers freed when they
 * come back. */
struct dmj__api_lender *dmj__api_lender_new(void);
void dmj__api_lender_dispose(struct dmj__api_lender *l);
/** Lends `body`'s buffer, whose bytes at `data` (`len` of them) are an answer, as a blob the
 * caller holds one reference to; the buffer is replaced by a spare (or a new one as large).
 * NULL when there is no memory (the body is left as it was). */
struct dmj__api_blob *dmj__api_lend(struct dmj__api_lender *l, struct dmj_buf *body,
                                    const char *data, size_t len);
/** Drops one reference to a blob. */
void dmj__api_blob_release(struct dmj__api_blob *b);

#endif

/* The API's entry point: the worker, routing of the decoded path, and the order in which the
 * checks run (route, authentication, method, team and permissions, endpoint). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmj/api.h"
#include "dmj/query.h"
#include "dmj/store.h"

#include "api_internal.h"
#include "digest.h"

/* The memory each worker keeps rendered jobs in: DMJ_JOB_CACHE_MB (0 turns it off, to measure
 * or rule it out), else the default; read once, so it is configuration like the rest. */
static size_t rows_bytes(void)
{
    const char *env = getenv("DMJ_JOB_CACHE_MB");
    if (env == NULL || *env == '\0')
        return DMJ_ROWS_DEFAULT_BYTES;
    char *end;
    unsigned long mb = strtoul(env, &end, 10);
    if (*end != '\0' || mb > 65536)
        return DMJ_ROWS_DEFAULT_BYTES;
    return (size_t)mb << 20;
}

int dmj_api_worker_new(struct dmj_store *store, const struct dmj_api_config *cfg,
                       struct dmj_api_worker **out)
{
    struct dmj_api_worker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    if (cfg != NULL)
        w->cfg = *cfg;
    else
        w->cfg.max_limit = DMJ__API_DEFAULT_MAX_LIMIT;
    int rc = dmj_read_new(store, &w->read);
    if (rc != 0) {
        free(w);
        return rc;
    }
    rc = dmj_rows_new(rows_bytes(), w->cfg.generation == DMJ_API_OFFSET, &w->rows);
    if (rc != 0) {
        dmj_read_free(w->read);
        free(w);
        return rc;
    }
    dmj_query_init(&w->query, DMJ__API_QUERY_MAX);
    dmj_buf_init(&w->path, DMJ__API_PATH_MAX);
    dmj_buf_init(&w->body, DMJ__API_BODY_MAX);
    dmj_buf_init(&w->head, DMJ__API_BODY_MAX);
    dmj_buf_init(&w->scratch, DMJ__API_SCRATCH_MAX);
    dmj_buf_init(&w->cursor, DMJ__API_SCRATCH_MAX);
    /* DMJ_RESPONSE_CACHE=0 turns the cache off (to measure the uncached path, or to rule
     * it out); read once here, so it is configuration like the rest. */
    const char *env = getenv("DMJ_RESPONSE_CACHE");
    w->use_cache = w->cfg.rate_limit == NULL && !(env != NULL && strcmp(env, "0") == 0);
    dmj__api_cache_init(&w->cache);
    w->lender = dmj__api_lender_new();
    if (w->lender == NULL) {
        dmj_api_worker_free(w);
        return -ENOMEM;
    }
    *out = w;
    return 0;
}

void dmj_api_worker_free(struct dmj_api_worker *w)
{
    if (w == NULL)
        return;
    dmj__api_cache_dispose(&w->cache);
    dmj__api_blob_release(w->lent);
    dmj__api_lender_dispose(w->lender);
    dmj_buf_dispose(&w->cursor);
    dmj_buf_dispose(&w->scratch);
    dmj_buf_dispose(&w->head);
    dmj_buf_dispose(&w->body);
    dmj_buf_dispose(&w->path);
    dmj_query_dispose(&w->query);
    dmj_rows_free(w->rows);
    dmj_read_free(w->read);
    free(w);
}

static bool has_prefix(const char *s, size_t n, const char *lit, size_t *rest)
{
    size_t k = strlen(lit);
    if (n < k || memcmp(s, lit, k) != 0)
        return false;
    *rest = k;
    return true;
}

static bool lit_eq(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* One `[^/.]+` segment starting at s[0]; its length, 0 when there is none. */
static size_t segment(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && s[i] != '/' && s[i] != '.')
        i++;
    return i;
}

/* DRF's routes for both prefixes, with "/?" as the trailing slash; `recent` and `running`
 * come before `<job_id>` as the router registers list-level actions first. */
static void route(struct dmj__api_ctx *c)
{
    const char *p = c->w->path.data ? c->w->path.data : "";
    size_t n = c->w->path.len, at;

    c->endpoint = DMJ__API_NONE;
    c->api_path = lit_eq(p, n, "/api") || (n >= 5 && memcmp(p, "/api/", 5) == 0);
    if (lit_eq(p, n, "/_health")) {
        c->endpoint = DMJ__API_HEALTH;
        return;
    }
    if (!has_prefix(p, n, "/api/environments/", &at) && !has_prefix(p, n, "/api/projects/", &at))
        return;
    p += at;
    n -= at;
    size_t team = segment(p, n);
    if (team == 0 || team == n || p[team] != '/')
        return;
    c->team_seg = p;
    c->team_len = team;
    p += team + 1;
    n -= team + 1;
    if (!has_prefix(p, n, "data_modeling_jobs", &at))
        return;
    p += at;
    n -= at;
    if (n == 0 || lit_eq(p, n, "/")) {
        c->endpoint = DMJ__API_LIST;
        return;
    }
    if (p[0] != '/')
        return;
    p++;
    n--;
    size_t job = segment(p, n);
    if (job == 0 || !(job == n || (job + 1 == n && p[job] == '/')))
        return;
    if (lit_eq(p, job, "recent")) {
        c->endpoint = DMJ__API_RECENT;
    } else if (lit_eq(p, job, "events")) {
        /* The list's checks exactly; api_stream.c answers instead of the list. */
        c->endpoint = DMJ__API_LIST;
        c->events = true;
    } else if (lit_eq(p, job, "running")) {
        c->endpoint = DMJ__API_RUNNING;
    } else {
        c->endpoint = DMJ__API_RETRIEVE;
        c->job_seg = p;
        c->job_len = job;
    }
}

/* Django upper-cases the method before dispatching, so "get" is GET. */
static bool method_is(const struct dmj_str *m, const char *lit)
{
    size_t n = strlen(lit);
    if (m->ptr == NULL || m->len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = m->ptr[i];
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        if (ch != lit[i])
            return false;
    }
    return true;
}

static enum dmj__api_method classify_method(const struct dmj_str *m)
{
    if (method_is(m, "GET"))
        return DMJ__API_GET;
    if (method_is(m, "HEAD"))
        return DMJ__API_HEAD;
    if (method_is(m, "OPTIONS"))
        return DMJ__API_OPTIONS;
    return DMJ__API_OTHER;
}

static const char *endpoint_name(enum dmj__api_endpoint e)
{
    switch (e) {
    case DMJ__API_LIST:
        return "list";
    case DMJ__API_RETRIEVE:
        return "retrieve";
    case DMJ__API_RECENT:
        return "recent";
    case DMJ__API_RUNNING:
        return "running";
    case DMJ__API_HEALTH:
        return "health";
    case DMJ__API_NONE:
        break;
    }
    return "unmatched";
}

/* 64-bit FNV-1a, with the length first so that adjacent fields cannot run together. */
static uint64_t fnv_field(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t len = n;
    for (int i = 0; i < 8; i++) {
        h ^= (unsigned char)(len >> (8 * i));
        h *= 0x100000001b3ULL;
    }
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Sixteen lowercase hex digits of v at p, most significant first. */
static void put_hex16(char *p, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        p[i] = hex[v & 0xf];
        v >>= 4;
    }
}

#define FNV_OFFSET 0xcbf29ce484222325ULL

/* "<16 hex>-<16 hex>" in quotes. */
static void format_etag(uint64_t a, uint64_t b, char out[48])
{
    /* "%016llx-%016llx" by hand: snprintf cost a twentieth of a retrieve. */
    out[0] = '"';
    put_hex16(out + 1, a);
    out[17] = '-';
    put_hex16(out + 18, b);
    out[34] = '"';
    out[35] = '\0';
}

/* The key's permissions (owner, scopes, team and organization restrictions) into `h`. */
static uint64_t key_permissions(uint64_t h, const struct dmj_key *k)
{
    uint64_t counts[4] = {(uint64_t)k->user_id, k->n_scopes, k->n_teams, k->n_orgs};
    h = fnv_field(h, counts, sizeof counts);
    for (unsigned i = 0; i < k->n_scopes; i++)
        h = fnv_field(h, k->scopes[i].ptr ? k->scopes[i].ptr : "", k->scopes[i].len);
    h = fnv_field(h, k->scoped_teams, k->n_teams * sizeof k->scoped_teams[0]);
    return fnv_field(h, k->scoped_orgs, k->n_orgs * sizeof k->scoped_orgs[0]);
}

/* `running` ignores the query and renders no links, and long-polls wait for its ETag to
 * change: so its validator is the body itself (with the path and key), and a commit that
 * leaves the team's running jobs as they were - another team's import - wakes no one. */
static void make_running_etag(struct dmj__api_ctx *c, char out[48])
{
    const struct dmj_api_response *res = c->res;
    uint64_t h = fnv_field(FNV_OFFSET, c->w->path.data ? c->w->path.data : "", c->w->path.len);
    h = fnv_field(h, c->w->key.secure_value, strlen(c->w->key.secure_value));
    format_etag(dmj_digest_bytes(res->body, res->body_len), h, out);
}

/* A strong validator for this answer: a digest of its bytes, then a hash of the request
 * (scheme, host, path, query), the key and its permissions, the page-size maximum and the
 * store's id; the same for GET and HEAD. It changes only when what this key is sent changes:
 * no store-wide value (a txnid) is in it, which would tell a key how often every other team
 * writes. */
static void make_etag(struct dmj__api_ctx *c, bool https, char out[48])
{
    const struct dmj_api_request *q = c->req;
    uint64_t h = FNV_OFFSET;
    unsigned char fixed[5] = {https ? 1 : 0};

    if (c->endpoint == DMJ__API_RUNNING) {
        make_running_etag(c, out);
        return;
    }

    /* The maximum page size, in a fixed byte order, so that servers with other settings
     * over one store never share a validator. */
    for (int i = 0; i < 4; i++)
        fixed[1 + i] = (unsigned char)(c->w->cfg.max_limit >> (8 * i));
    h = fnv_field(h, fixed, sizeof fixed);
    h = fnv_field(h, q->host.ptr ? q->host.ptr : "", q->host.ptr ? q->host.len : 0);
    h = fnv_field(h, c->w->path.data ? c->w->path.data : "", c->w->path.len);
    h = fnv_field(h, q->query.ptr ? "?" : "", q->query.ptr ? 1 : 0);
    h = fnv_field(h, q->query.ptr ? q->query.ptr : "", q->query.ptr ? q->query.len : 0);
    h = fnv_field(h, &c->key_digest, sizeof c->key_digest);
    /* The store's own id: each store's validators are its own (README, replicas). */
    uint8_t store_id[16];
    if (dmj_read_store_id(c->w->read, store_id) == 0)
        h = fnv_field(h, store_id, sizeof store_id);
    format_etag(c->has_page_digest ? c->page_digest
                                   : dmj_digest_bytes(c->res->body, c->res->body_len),
                h, out);
}

/* If-None-Match: "*" or a comma-separated list of entity tags, compared weakly (RFC 9110
 * 13.1.2: a W/ prefix is ignored). */
static bool etag_listed(const struct dmj_str *inm, const char *etag)
{
    if (inm->ptr == NULL)
        return false;
    const char *p = inm->ptr, *end = inm->ptr + inm->len;
    size_t elen = strlen(etag);
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        if (p == end)
            break;
        if (*p == '*')
            return true;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
            p += 2;
        if (p < end && *p == '"') {
            const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
            if (q == NULL)
                return false;
            if ((size_t)(q + 1 - p) == elen && memcmp(p, etag, elen) == 0)
                return true;
            p = q + 1;
        }
        while (p < end && *p != ',')
            p++;
    }
    return false;
}

bool dmj__api_https(const struct dmj_api_request *req)
{
    const struct dmj_str *fp = &req->forwarded_proto;
    return req->tls || (fp->ptr != NULL && fp->len == 5 && memcmp(fp->ptr, "https", 5) == 0);
}

/* Django parses the query string on first use only: a request that never looks at it (a
 * Bearer key on `running`, `recent`, OPTIONS or a 405) is answered whatever the query holds,
 * and one that does look at an unparsable query (too many fields) gets a 500, as there. */
const struct dmj_query *dmj__api_query(struct dmj__api_ctx *c)
{
    const struct dmj_str *raw = &c->req->query;
    if (!c->query_parsed) {
        c->query_parsed = true;
        c->query_rc = dmj_query_parse(&c->w->query, raw->ptr ? raw->ptr : "",
                                      raw->ptr ? raw->len : 0);
    }
    return c->query_rc == 0 ? &c->w->query : NULL;
}

static void reset_response(struct dmj_api_response *res)
{
    res->status = 500;
    res->json = true;
    res->allow = false;
    res->www_authenticate = false;
    res->retry_after = 0;
    res->etag[0] = '\0';
    res->head = false;
    res->body = "";
    res->body_len = 0;
    res->body_owner = NULL;
    res->cached = false;
    res->endpoint = "unmatched";
    res->wait_s = 0;
    res->event_stream = false;
    res->stream_open = false;
    memset(&res->stream, 0, sizeof res->stream);
    res->stream_key[0] = '\0';
}

static void not_modified(struct dmj__api_ctx *c);

/* Steps 3-8 of the checks; a request asked again is not counted by the rate limiter twice
 * (the worker's configuration is its own copy, so lending it out for the call is safe). */
static int authorize(struct dmj__api_ctx *c, bool count)
{
    if (count)
        return dmj__api_authorize(c);
    unsigned (*limiter)(void *, const char *) = c->w->cfg.rate_limit;
    c->w->cfg.rate_limit = NULL;
    int rc = dmj__api_authorize(c);
    c->w->cfg.rate_limit = limiter;
    return rc;
}

/* The client's address as a C string for the auth gate, or false (none, or too long). */
static bool client_name(const struct dmj_api_request *req, char *buf, size_t size)
{
    if (req->client.ptr == NULL || req->client.len == 0 || req->client.len >= size)
        return false;
    memcpy(buf, req->client.ptr, req->client.len);
    buf[req->client.len] = '\0';
    return true;
}

/* A client past its budget of failed authentications gets a 429 before its key is looked
 * at: probing keys or team ids costs it time. True when answered. */
static bool gate_failures(struct dmj__api_ctx *c)
{
    char client[64];
    if (c->w->cfg.auth_gate == NULL || c->req->again || !client_name(c->req, client, sizeof client))
        return false;
    unsigned wait = c->w->cfg.auth_gate(c->w->cfg.auth_gate_ctx, client, false);
    if (wait == 0)
        return false;
    dmj__api_throttled(c, wait);
    return true;
}

static void count_failure(struct dmj__api_ctx *c)
{
    char client[64];
    int status = c->res->status;
    /* 401 (no or bad key), 403 and 404 (a team or organization the key does not reach)
     * alike; not the key's own rate limit (429) nor a store error */
    if (c->w->cfg.auth_gate == NULL || c->req->again || status == 429 || status >= 500 ||
        !client_name(c->req, client, sizeof client))
        return;
    c->w->cfg.auth_gate(c->w->cfg.auth_gate_ctx, client, true);
}

/* A `running/?wait=N` 304 may be held: tell the server for how long. A held request takes
 * one of the key's slots (config.stream_acquire, shared with event streams) when first
 * asked; with none left it is answered at once with a 429 rather than held. */
static void offer_wait(struct dmj__api_ctx *c, unsigned wait)
{
    struct dmj_api_response *res = c->res;
    if (res->status != 304 || wait == 0)
        return;
    if (!c->req->again && c->w->cfg.stream_acquire != NULL) {
        unsigned retry = c->w->cfg.stream_acquire(c->w->cfg.stream_ctx, c->w->key.secure_value);
        if (retry > 0) {
            res->etag[0] = '\0';
            dmj__api_throttled(c, retry);
            return;
        }
        snprintf(res->stream_key, sizeof res->stream_key, "%s", c->w->key.secure_value);
    }
    res->wait_s = wait;
}

/* An answer at least this large is lent to the server (and the cache) rather than copied. */
#define LEND_MIN 4096

/* Lends the worker's body buffer holding a large answer: the server sends it, and the cache
 * keeps it, without a copy; the worker renders the next answer into a spare buffer. */
static void lend_body(struct dmj__api_ctx *c)
{
    struct dmj_api_worker *w = c->w;
    struct dmj_api_response *res = c->res;
    const char *lo = w->body.data;
    if (res->body_len < LEND_MIN || lo == NULL || res->body_owner != NULL || res->body < lo ||
        res->body + res->body_len > lo + w->body.len)
        return;
    struct dmj__api_blob *b = dmj__api_lend(w->lender, &w->body, res->body, res->body_len);
    if (b == NULL)
        return;
    w->lent = b;
    res->body = b->data;
    res->body_owner = b;
}

/* Everything after the route is known and the read transaction has begun. */
static void answer(struct dmj__api_ctx *c)
{
    const struct dmj_api_request *req = c->req;
    struct dmj_api_response *res = c->res;
    unsigned wait = 0;

    /* A credential and team that passed both checks in this very committed state pass them
     * again: the state they read is the same (a revoked key is a commit, a new state). */
    if (!dmj__api_auth_recall(c)) {
        if (dmj__api_authenticate(c) != 0) {
            count_failure(c);
            return;
        }
        if (c->method == DMJ__API_OTHER) {
            dmj__api_method_not_allowed(c);
            return;
        }
        if (authorize(c, !req->again) != 0) {
            count_failure(c);
            return;
        }
        c->key_digest = key_permissions(
            fnv_field(FNV_OFFSET, c->w->key.secure_value, strlen(c->w->key.secure_value)),
            &c->w->key);
        dmj__api_auth_remember(c);
    }
    if (c->events) {
        dmj__api_events(c);
        return;
    }
    if (c->method == DMJ__API_OPTIONS) {
        dmj__api_options(c);
        return;
    }
    if (c->endpoint == DMJ__API_RUNNING && dmj__api_wait_param(c, &wait) != 0)
        return;
    /* The 304 is decided on the answer, not before it: a request that would fail (a bad
     * cursor, a job of another team) has no representation to match, even for "*". */
    dmj__api_serve(c);
    if (res->status != 200)
        return;
    make_etag(c, dmj__api_https(req), res->etag);
    lend_body(c);
    if (c->cacheable && res->body_owner != NULL) {
        (void)dmj__api_cache_adopt(&c->w->cache, c->w->lent, res->etag);
    } else if (c->cacheable) {
        /* served from the cache's copy, which the server may then send without another */
        const struct dmj__api_blob *kept =
            dmj__api_cache_store(&c->w->cache, res->body, res->body_len, res->etag);
        if (kept) {
            res->body = kept->data;
            res->body_owner = kept;
        }
    }
    not_modified(c);
    offer_wait(c, wait);
}

/* Turns a 200 into a 304 when If-None-Match lists its ETag. */
static void not_modified(struct dmj__api_ctx *c)
{
    const struct dmj_api_request *req = c->req;
    struct dmj_api_response *res = c->res;
    if (etag_listed(&req->if_none_match, res->etag)) {
        res->status = 304;
        res->json = false;
        res->body = "";
        res->body_len = 0;
    }
}

/* The decoded path. Decoding works byte by byte (percent escapes, Latin-1 bytes read as
 * UTF-8, tabs dropped, '#' ends it); a path of plain ASCII with none of '%', tab or '#' -
 * every path a client normally sends - decodes to itself and is copied at once. */
static int decode_path(const struct dmj_str *path, struct dmj_buf *out)
{
    const char *p = path->ptr ? path->ptr : "";
    size_t n = path->ptr ? path->len : 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch >= 0x80 || ch == '%' || ch == '\t' || ch == '#')
            return dmj_query_decode_path(p, n, out);
    }
    return n ? dmj_buf_add(out, p, n) : 0;
}

static bool is_schema_path(const struct dmj_buf *path)
{
    const char *p = path->data ? path->data : "";
    return lit_eq(p, path->len, "/api/schema") || lit_eq(p, path->len, "/api/schema/");
}

/* The OpenAPI document: public, as PostHog serves its own, so no key is asked for. */
static void schema(struct dmj__api_ctx *c)
{
    struct dmj_api_response *res = c->res;
    res->endpoint = "schema";
    res->allow = true;
    if (c->method == DMJ__API_OTHER) {
        dmj__api_method_not_allowed(c);
        return;
    }
    dmj_buf_reset(&c->w->body);
    int rc = dmj_api_schema_render_for(&c->w->body, c->w->cfg.generation);
    if (rc != 0) {
        dmj__api_internal(c, rc);
        return;
    }
    res->status = 200;
    res->body = c->w->body.data;
    res->body_len = c->w->body.len;
}

static void handle(struct dmj_api_worker *w, const struct dmj_api_request *req,
                   struct dmj_api_response *res)
{
    struct dmj__api_ctx c;
    int rc;

    /* the last answer is the server's (or the cache's) now, if it holds it */
    dmj__api_blob_release(w->lent);
    w->lent = NULL;
    memset(&c, 0, sizeof c);
    c.w = w;
    c.req = req;
    c.res = res;
    reset_response(res);
    c.method = classify_method(&req->method);
    res->head = c.method == DMJ__API_HEAD;

    dmj_buf_reset(&w->path); /* decoding appends */
    rc = decode_path(&req->path, &w->path);
    if (rc != 0) {
        dmj__api_fail(&c, DMJ__API_ERR_BAD_REQUEST, DMJ__MSG_BAD_REQUEST);
        return;
    }
    route(&c);
    res->endpoint = c.events ? "events" : endpoint_name(c.endpoint);
    if (c.endpoint == DMJ__API_HEALTH) {
        dmj__api_health(&c);
        return;
    }
    /* Django checks the Host (CommonMiddleware) before it resolves the URL. */
    if (req->host.ptr != NULL && !dmj__api_host_valid(req->host.ptr, req->host.len)) {
        dmj__api_fail(&c, DMJ__API_ERR_BAD_REQUEST, DMJ__MSG_BAD_REQUEST);
        return;
    }
    if (c.endpoint == DMJ__API_NONE && is_schema_path(&w->path)) {
        schema(&c);
        return;
    }
    if (c.endpoint == DMJ__API_NONE) {
        dmj__api_fail(&c, DMJ__API_ERR_NOT_FOUND,
                      c.api_path ? DMJ__MSG_ENDPOINT_NOT_FOUND : DMJ__MSG_NOT_FOUND);
        return;
    }
    res->allow = true;
    /* before the answer cache too: a cached answer is no way around the budget */
    if (gate_failures(&c))
        return;
    rc = dmj_read_begin(w->read);
    if (rc != 0) {
        dmj__api_internal(&c, rc);
        return;
    }
    /* GET and HEAD answer with the same body and ETag: one entry serves both. */
    if (w->use_cache && !c.events && (c.method == DMJ__API_GET || c.method == DMJ__API_HEAD) &&
        dmj__api_cache_prepare(&w->cache, req, dmj_read_txnid(w->read))) {
        const struct dmj__api_cache_entry *hit = dmj__api_cache_find(&w->cache);
        if (hit != NULL) {
            res->status = 200;
            res->body = hit->body->data;
            res->body_len = hit->body->len;
            res->body_owner = hit->body;
            memcpy(res->etag, hit->etag, sizeof res->etag);
            res->cached = true;
            not_modified(&c);
            /* Only a 200 is cached, so this request's `wait` passed its check then. */
            unsigned wait = 0;
            bool hold = c.endpoint == DMJ__API_RUNNING && res->status == 304 &&
                        dmj__api_wait_param(&c, &wait) == 0 && wait > 0;
            if (!hold || req->again || w->cfg.stream_acquire == NULL) {
                if (hold)
                    offer_wait(&c, wait);
                dmj_read_end(w->read);
                return;
            }
            /* A first ask to be held takes a slot of its key, which only the full path
             * looks up (the worker's last key may be another request's). */
            reset_response(res);
        }
        c.cacheable = true;
    }
    answer(&c);
    /* The body lives in the worker's buffers: nothing points into LMDB past this point. */
    dmj_read_end(w->read);
}

void dmj_api_handle(struct dmj_api_worker *w, const struct dmj_api_request *req,
                    struct dmj_api_response *res)
{
    uint64_t kept, rendered, kept_after, rendered_after;
    dmj_rows_counts(w->rows, &kept, &rendered);
    handle(w, req, res);
    dmj_rows_counts(w->rows, &kept_after, &rendered_after);
    res->rows_kept = (unsigned)(kept_after - kept);
    res->rows_rendered = (unsigned)(rendered_after - rendered);
}

int dmj__api_recheck(struct dmj__api_ctx *c)
{
    struct dmj_api_worker *w = c->w;
    struct dmj_api_response *res = c->res;

    reset_response(res);
    c->method = classify_method(&c->req->method);
    dmj_buf_reset(&w->path);
    if (decode_path(&c->req->path, &w->path) != 0)
        return 1;
    route(c);
    if (c->endpoint == DMJ__API_NONE || c->endpoint == DMJ__API_HEALTH)
        return 1;
    if (dmj_read_begin(w->read) != 0)
        return 1;
    if (dmj__api_authenticate(c) != 0 || authorize(c, false) != 0) {
        dmj_read_end(w->read);
        return 1;
    }
    return 0;
}

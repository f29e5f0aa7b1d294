/** Sending an answer: the status, headers and body of an API response handed to h2o, then
 * counted in the metrics and written to the access log. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "accesslog.h"
#include "respond.h"
#include "server.h"

const char *dmjd_respond_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

static bool method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

/* Writes one access-log line with a single write(2): lines from different threads may
 * interleave with each other but never mix within a line. */
void dmjd_respond_access_log(struct dmjd_worker *w, h2o_req_t *req, int status, size_t body_len,
                             uint64_t started)
{
    if (w->server->access_log_fd < 0)
        return;
    dmj_buf_reset(&w->scratch);
    int rc = w->server->access_log_json
                 ? dmjd_accesslog_format_json(&w->scratch, req, status, body_len,
                                              dmjd_now_us() - started)
                 : dmjd_accesslog_format(&w->scratch, req, status, body_len);
    if (rc != 0)
        return;
    ssize_t n = write(w->server->access_log_fd, w->scratch.data, w->scratch.len);
    (void)n; /* a full disk must not take the server down; the line is lost */
}

/* The pool's end lets go of a cached body the response was sent from. */
static void release_body(void *slot)
{
    dmj_api_body_release(*(void **)slot);
}

size_t dmjd_respond_body(struct dmjd_worker *w, h2o_req_t *req, const char *body, size_t len,
                         bool head, void *held)
{
    if (req->res.status != 304 && req->res.status != 204)
        req->res.content_length = len;
    h2o_start_response(req, &w->generator);
    if (head || len == 0) {
        if (held)
            dmj_api_body_release(held);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return 0;
    }
    h2o_iovec_t buf;
    if (held) {
        void **slot = h2o_mem_alloc_shared(&req->pool, sizeof *slot, release_body);
        *slot = held;
        buf = h2o_iovec_init(body, len);
    } else {
        buf = h2o_iovec_init(h2o_mem_alloc_pool(&req->pool, len), len);
        memcpy(buf.base, body, len);
    }
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
    return len;
}

static void add_response_headers(h2o_req_t *req, const struct dmj_api_response *res)
{
    h2o_mem_pool_t *pool = &req->pool;
    h2o_headers_t *hs = &req->res.headers;
    if (res->json)
        h2o_add_header(pool, hs, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    if (res->event_stream) {
        h2o_add_header(pool, hs, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/event-stream"));
        h2o_add_header(pool, hs, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    }
    if (res->allow)
        h2o_add_header(pool, hs, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD, OPTIONS"));
    if (res->www_authenticate)
        h2o_add_header(pool, hs, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
    if (res->retry_after > 0) {
        char *v = h2o_mem_alloc_pool(pool, 16);
        int n = snprintf(v, 16, "%u", res->retry_after);
        h2o_add_header(pool, hs, H2O_TOKEN_RETRY_AFTER, NULL, v, (size_t)n);
    }
    size_t etag_len = strnlen(res->etag, sizeof(res->etag));
    if (etag_len > 0) {
        h2o_iovec_t v = h2o_strdup(pool, res->etag, etag_len);
        h2o_add_header(pool, hs, H2O_TOKEN_ETAG, NULL, v.base, v.len);
    }
}

void dmjd_respond_answer(struct dmjd_worker *w, h2o_req_t *req, const struct dmj_api_response *res,
                         uint64_t started)
{
    req->res.status = res->status;
    req->res.reason = dmjd_respond_reason(res->status);
    add_response_headers(req, res);
    bool head = res->head || method_is(req, "HEAD");
    void *held = head ? NULL : dmj_api_body_hold(res);
    size_t sent =
        dmjd_respond_body(w, req, res->body != NULL ? res->body : "", res->body_len, head, held);
    dmjd_metrics_count_answer(&w->metrics, res->cached, res->rows_kept, res->rows_rendered);
    dmjd_respond_log(w, req, res->endpoint, res->status, sent, started);
}

void dmjd_respond_stream(struct dmjd_worker *w, h2o_req_t *req,
                         const struct dmj_api_response *res, h2o_generator_t *gen)
{
    req->res.status = res->status;
    req->res.reason = dmjd_respond_reason(res->status);
    add_response_headers(req, res);
    h2o_start_response(req, gen);
}

void dmjd_respond_log(struct dmjd_worker *w, h2o_req_t *req, const char *endpoint, int status,
                      size_t sent, uint64_t started)
{
    dmjd_metrics_count(&w->metrics, endpoint, status, dmjd_now_us() - started);
    dmjd_respond_access_log(w, req, status, sent, started);
}

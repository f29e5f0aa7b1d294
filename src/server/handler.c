/** The one h2o handler: copies an h2o request into a dmj_api_request, answers it, logs it. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "h2guard.h"
#include "handler.h"
#include "live.h"
#include "metrics.h"
#include "respond.h"
#include "server.h"

static struct dmj_str header_value(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    if (i < 0)
        return (struct dmj_str){NULL, 0};
    return (struct dmj_str){req->headers.entries[i].value.base, req->headers.entries[i].value.len};
}

static bool is_tls(h2o_req_t *req)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    return sock != NULL && sock->ssl != NULL;
}

/* Without a Host header (HTTP/1.0) h2o fills in its host's name, "default"; Django behind
 * gunicorn uses the server's own address then (SERVER_NAME:SERVER_PORT, the port left out
 * when it is the scheme's default), and so does dmjd. */
static struct dmj_str request_host(h2o_req_t *req, bool tls, char *buf, size_t size)
{
    if (req->authority.base != req->hostconf->authority.hostport.base)
        return (struct dmj_str){req->authority.base, req->authority.len};
    struct sockaddr_storage ss;
    char addr[INET6_ADDRSTRLEN];
    unsigned port;
    socklen_t n = req->conn->callbacks->get_sockname(req->conn, (struct sockaddr *)&ss);
    if (n > 0 && ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
        port = ntohs(sin->sin_port);
    } else if (n > 0 && ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof(addr));
        port = ntohs(sin6->sin6_port);
    } else {
        return (struct dmj_str){req->authority.base, req->authority.len};
    }
    bool v6 = ss.ss_family == AF_INET6;
    int len;
    if (port == (tls ? 443u : 80u))
        len = snprintf(buf, size, v6 ? "[%s]" : "%s", addr);
    else
        len = snprintf(buf, size, v6 ? "[%s]:%u" : "%s:%u", addr, port);
    if (len < 0 || (size_t)len >= size)
        return (struct dmj_str){req->authority.base, req->authority.len};
    return (struct dmj_str){buf, (size_t)len};
}

/* The address the failed-authentication budget counts against: the peer's, or the last
 * X-Forwarded-For entry when the peer is a --trusted-proxy (the entry that proxy added;
 * anything before it the client may have written itself). */
static struct dmj_str client_address(struct dmjd_server *srv, h2o_req_t *req, char *buf,
                                     size_t size)
{
    struct sockaddr_storage ss;
    socklen_t n = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    const void *addr = NULL;
    if (n > 0 && ss.ss_family == AF_INET)
        addr = &((struct sockaddr_in *)&ss)->sin_addr;
    else if (n > 0 && ss.ss_family == AF_INET6)
        addr = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    if (addr == NULL || inet_ntop(ss.ss_family, addr, buf, (socklen_t)size) == NULL)
        return (struct dmj_str){NULL, 0};
    bool trusted = false;
    for (unsigned i = 0; i < srv->n_trusted_proxies && !trusted; i++)
        trusted = strcmp(srv->trusted_proxies[i], buf) == 0;
    ssize_t xff = trusted ? h2o_find_header(&req->headers, H2O_TOKEN_X_FORWARDED_FOR, -1) : -1;
    if (xff < 0)
        return (struct dmj_str){buf, strlen(buf)};
    /* the last of the header's lines, and of its comma-separated entries */
    ssize_t next;
    while ((next = h2o_find_header(&req->headers, H2O_TOKEN_X_FORWARDED_FOR, xff)) >= 0)
        xff = next;
    const char *v = req->headers.entries[xff].value.base;
    size_t len = req->headers.entries[xff].value.len;
    size_t start = len;
    while (start > 0 && v[start - 1] != ',')
        start--;
    while (start < len && (v[start] == ' ' || v[start] == '\t'))
        start++;
    while (len > start && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len == start || len - start >= size)
        return (struct dmj_str){buf, strlen(buf)}; /* nothing usable: count the proxy */
    memmove(buf, v + start, len - start);
    buf[len - start] = '\0';
    return (struct dmj_str){buf, len - start};
}

static bool method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

/* /metrics; `log`: an access-log line for it (the metrics listener's only with
 * --access-log-metrics, so that scrapes do not fill the log). */
static void serve_metrics(struct dmjd_worker *w, h2o_req_t *req, uint64_t started, bool log)
{
    static const char text_type[] = "text/plain; version=0.0.4; charset=utf-8";
    bool head = method_is(req, "HEAD");
    int status = 200;
    const char *body = "";
    size_t len = 0;
    if (!head && !method_is(req, "GET")) {
        status = 405;
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL,
                       H2O_STRLIT("GET, HEAD"));
    } else {
        /* Counted before rendering, so that a scrape sees itself as it sees other requests. */
        dmjd_metrics_count(&w->metrics, "metrics", 200, dmjd_now_us() - started);
        dmj_buf_reset(&w->scratch);
        if (dmjd_metrics_render(w->server, &w->scratch) == 0) {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, text_type,
                           sizeof(text_type) - 1);
            body = w->scratch.data;
            len = w->scratch.len;
        } else {
            status = 500;
        }
    }
    req->res.status = status;
    req->res.reason = dmjd_respond_reason(status);
    size_t sent = dmjd_respond_body(w, req, body, len, head, NULL);
    if (status != 200)
        dmjd_metrics_count(&w->metrics, "metrics", status, dmjd_now_us() - started);
    if (log)
        dmjd_respond_access_log(w, req, status, sent, started);
}

/* Request smuggling: h2o 2.2.5 takes Transfer-Encoding over Content-Length, the first of two
 * differing Content-Lengths, and chunk lines ended by a bare LF, and then reads the next
 * request from what follows the body as it framed it; a proxy in front that frames the body
 * otherwise would see a request hidden in it answered. h2o keeps neither header in
 * req->headers, so dmjd cannot tell the framings apart; it reads no request body at all, so
 * it closes every HTTP/1 connection after answering a request that came with one (for
 * Transfer-Encoding, RFC 9112 6.1 asks that anyway). */
static void close_after_body(h2o_req_t *req)
{
    /* h2o points entity at "" for a zero-length body: a body was framed all the same. */
    if (req->version < 0x200 && req->entity.base != NULL)
        req->http1_is_persistent = 0;
}

static int on_request(h2o_handler_t *self, h2o_req_t *req)
{
    struct dmjd_worker *w = H2O_STRUCT_FROM_MEMBER(struct dmjd_worker, ctx, req->conn->ctx);
    uint64_t started = dmjd_now_us();
    size_t path_len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;

    close_after_body(req);
    struct dmjd_conn *conn = dmjd_conn_begin(req);
    dmjd_h2guard_watch(req, conn);
    if (conn != NULL && conn->cut) {
        req->res.status = 429;
        req->res.reason = dmjd_respond_reason(429);
        dmjd_respond_body(w, req, "", 0, true, NULL);
        dmjd_metrics_count(&w->metrics, "cut", 429, dmjd_now_us() - started);
        return 0;
    }

    if (w->server->metrics_on_api &&
        h2o_memis(req->path.base, path_len, H2O_STRLIT("/metrics"))) {
        serve_metrics(w, req, started, true);
        return 0;
    }

    bool tls = is_tls(req);
    char host_buf[INET6_ADDRSTRLEN + 16];
    char client_buf[64];
    struct dmj_api_request in = {
        .method = {req->method.base, req->method.len},
        .path = {req->path.base, path_len},
        .query = {NULL, 0},
        .authorization = header_value(req, H2O_TOKEN_AUTHORIZATION),
        .host = request_host(req, tls, host_buf, sizeof(host_buf)),
        .forwarded_proto = {NULL, 0},
        .if_none_match = header_value(req, H2O_TOKEN_IF_NONE_MATCH),
        .tls = tls,
    };
    if (w->server->auth_failures != NULL)
        in.client = client_address(w->server, req, client_buf, sizeof(client_buf));
    if (req->query_at != SIZE_MAX)
        in.query =
            (struct dmj_str){req->path.base + req->query_at + 1, req->path.len - req->query_at - 1};
    ssize_t xfp = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-forwarded-proto"), -1);
    if (xfp >= 0)
        in.forwarded_proto = (struct dmj_str){req->headers.entries[xfp].value.base,
                                              req->headers.entries[xfp].value.len};

    ssize_t lei = h2o_find_header_by_str(&req->headers, H2O_STRLIT("last-event-id"), -1);
    if (lei >= 0)
        in.last_event_id = (struct dmj_str){req->headers.entries[lei].value.base,
                                            req->headers.entries[lei].value.len};

    struct dmj_api_response res;
    memset(&res, 0, sizeof(res));
    dmj_api_handle(w->api, &in, &res);
    if (res.stream_open) {
        dmjd_live_open_stream(w, req, &in, &res, started);
        return 0;
    }
    if (res.wait_s > 0 && dmjd_live_park(w, req, &in, &res, started))
        return 0;
    dmjd_respond_answer(w, req, &res, started);
    return 0;
}

/* The --metrics-listen listener: /metrics, and a plain 404 for anything else (the API and
 * its keys stay off a port that is often open to a whole monitoring network). */
static int on_metrics_request(h2o_handler_t *self, h2o_req_t *req)
{
    struct dmjd_worker *w = H2O_STRUCT_FROM_MEMBER(struct dmjd_worker, ctx, req->conn->ctx);
    uint64_t started = dmjd_now_us();
    size_t path_len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;

    close_after_body(req);
    dmjd_conn_begin(req);
    if (h2o_memis(req->path.base, path_len, H2O_STRLIT("/metrics"))) {
        serve_metrics(w, req, started, w->server->access_log_metrics);
        return 0;
    }
    static const char text_type[] = "text/plain; charset=utf-8";
    req->res.status = 404;
    req->res.reason = dmjd_respond_reason(404);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, text_type,
                   sizeof(text_type) - 1);
    size_t sent = dmjd_respond_body(w, req, "Not found\n", 10, method_is(req, "HEAD"), NULL);
    dmjd_metrics_count(&w->metrics, "metrics_other", 404, dmjd_now_us() - started);
    if (w->server->access_log_metrics)
        dmjd_respond_access_log(w, req, 404, sent, started);
    return 0;
}

static h2o_hostconf_t *register_host(struct dmjd_server *srv, const char *name,
                                     int (*on_req)(h2o_handler_t *, h2o_req_t *))
{
    h2o_hostconf_t *host =
        h2o_config_register_host(&srv->h2o, h2o_iovec_init(name, strlen(name)), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof(*handler));
    handler->on_req = on_req;
    return host;
}

void dmjd_handler_register(struct dmjd_server *srv)
{
    srv->api_hosts[0] = register_host(srv, "default", on_request);
    srv->api_hosts[1] = NULL;
    srv->metrics_hosts[0] =
        srv->metrics_listener ? register_host(srv, "dmjd-metrics", on_metrics_request) : NULL;
    srv->metrics_hosts[1] = NULL;
}

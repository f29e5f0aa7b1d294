/** dmjd's entry point: options, the store, listeners, TLS, worker threads and signals. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "accesslog.h"
#include "handler.h"
#include "ratelimit.h"
#include "server.h"
#include "slots.h"

/* Client addresses the per-address bound tracks at once; a new one past them is refused. */
#define ADDRESS_TABLE 16384
#define STREAM_TABLE_KEYS 4096 /* keys holding long-polls or streams at once (~340 KiB) */
/* Descriptors kept for everything else: the store, logs, listeners, pipes, event loops. */
#define RESERVED_FDS 64
/* The body is never read: h2o keeps at most this of one (HTTP/1 answers 413 past it, HTTP/2
 * resets the stream), so that a few small bodies still get their proper 405. */
#define MAX_REQUEST_BODY 4096
/* What the kernel queues of one client's input (it doubles the figure for its own use). */
#define RECEIVE_BUFFER (64 << 10)

static int open_listener(const char *spec, bool tls_default, bool reuse_port,
                         struct dmjd_listener *out)
{
    char host[256], port[16];
    bool tls;
    if (dmjd_listen_split(spec, tls_default, host, sizeof(host), port, sizeof(port), &tls) != 0) {
        fprintf(stderr, "dmjd: --listen %s: expected HOST:PORT\n", spec);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int gai = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, port, &hints, &res);
    if (gai != 0) {
        fprintf(stderr, "dmjd: --listen %s: %s\n", spec, gai_strerror(gai));
        return -1;
    }
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    int one = 1;
    /* Accepted sockets inherit it: h2o reads all a client has queued at once, and a client
     * that floods without reading would otherwise park the kernel's whole receive window
     * (tens of MB) in dmjd per connection. Requests are small; bodies are refused. */
    int rcvbuf = RECEIVE_BUFFER;
    /* --reuse-port: a new dmjd binds the port while this one still serves, and the kernel
     * spreads new connections over both until this one closes its socket (a restart without
     * a gap). The same user's processes only. */
    if (fd >= 0 && reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        close(fd);
        fd = -1;
    }
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0 ||
        fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
        fprintf(stderr, "dmjd: --listen %s: %s\n", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);

    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char addr[INET6_ADDRSTRLEN] = "?";
    unsigned bound_port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
            bound_port = ntohs(sin->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
            char a6[INET6_ADDRSTRLEN];
            inet_ntop(AF_INET6, &sin6->sin6_addr, a6, sizeof(a6));
            snprintf(addr, sizeof(addr), "[%.*s]", (int)sizeof(addr) - 3, a6);
            bound_port = ntohs(sin6->sin6_port);
        }
    }
    out->fd = fd;
    out->tls = tls;
    snprintf(out->url, sizeof(out->url), "%s://%s:%u", tls ? "https" : "http", addr, bound_port);
    return 0;
}

static SSL_CTX *make_ssl_ctx(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        goto Error;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        fprintf(stderr, "dmjd: --tls-cert %s: cannot load the certificate\n", cert);
        goto Error;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        fprintf(stderr, "dmjd: --tls-key %s: cannot load the key or it does not match\n", key);
        goto Error;
    }
    /* h2o_alpn_protocols is h2o_http2_alpn_protocols plus "http/1.1", so that a client
     * offering only http/1.1 gets it confirmed rather than no ALPN answer at all. */
    h2o_ssl_register_alpn_protocols(ctx, h2o_alpn_protocols);
    return ctx;
Error:
    ERR_print_errors_fp(stderr);
    SSL_CTX_free(ctx);
    return NULL;
}

static int open_store(const struct dmjd_options *o, struct dmj_store **out)
{
    struct stat st;
    if (stat(o->db, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr,
                "dmjd: no store at %s (create one with `dmj import --db %s FILE`, "
                "or pass --db / set DMJ_DB)\n",
                o->db, o->db);
        return -1;
    }
    int rc = dmj_store_open(o->db, DMJ_STORE_RDONLY, o->map_size, out);
    if (rc != 0) {
        fprintf(stderr, "dmjd: cannot open the store at %s: %s\n", o->db, dmj_strerror(rc));
        return -1;
    }
    return 0;
}

static int open_access_log(const char *path)
{
    if (path == NULL)
        return -1;
    if (strcmp(path, "-") == 0)
        return STDOUT_FILENO;
    return dmjd_accesslog_open(path);
}

/* Raises the open-file limit to its hard limit and returns the connection cap: `asked`, or
 * what the limit leaves after every worker's descriptors and the displacement slack (a
 * displaced connection's descriptor is freed a loop turn after the one that replaces it).
 * 0 (with a message) when `asked` does not fit. */
static unsigned long long connection_budget(unsigned long long asked, unsigned threads)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return asked != 0 ? asked : 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    unsigned long long reserved = RESERVED_FDS + (unsigned long long)threads * (DMJD_MAX_LISTENERS + 40);
    unsigned long long room = rl.rlim_cur == RLIM_INFINITY ? DMJD_DEFAULT_MAX_CONNECTIONS_CAP
                              : rl.rlim_cur > reserved    ? rl.rlim_cur - reserved
                                                          : 0;
    if (asked == 0)
        return room < DMJD_DEFAULT_MAX_CONNECTIONS_CAP ? (room > 0 ? room : 1)
                                                  : DMJD_DEFAULT_MAX_CONNECTIONS_CAP;
    if (asked > room) {
        fprintf(stderr,
                "dmjd: --max-connections %llu needs more descriptors than the open-file limit "
                "(%llu) leaves; raise it (LimitNOFILE=, ulimit -n) or ask for at most %llu\n",
                asked, (unsigned long long)rl.rlim_cur, room);
        return 0;
    }
    return asked;
}

/* Runs the workers until SIGTERM or SIGINT (SIGHUP reopens the access log); returns the exit
 * status. */
static int serve(struct dmjd_server *srv, unsigned threads, const sigset_t *stop)
{
    pthread_mutex_init(&srv->start_lock, NULL);
    pthread_cond_init(&srv->start_cond, NULL);
    srv->workers = calloc(threads, sizeof(srv->workers[0]));
    if (srv->workers == NULL)
        return 1;
    for (unsigned i = 0; i < threads; i++) {
        int rc = dmjd_worker_new(srv, i, &srv->workers[i]);
        if (rc != 0) {
            dmjd_log("worker %u: %s", i, dmj_strerror(rc));
            for (unsigned j = 0; j < i; j++)
                dmjd_worker_free(srv->workers[j]);
            free(srv->workers);
            return 1;
        }
    }
    /* Every worker exists before any starts: /metrics walks all of them. */
    srv->n_workers = threads;
    unsigned started = 0;
    for (; started < threads; started++) {
        int rc = dmjd_worker_start(srv->workers[started]);
        if (rc != 0) {
            dmjd_log("cannot start worker %u: %s", started, dmj_strerror(rc));
            break;
        }
    }
    int status = 1;
    int rc = dmjd_workers_go(srv, started);
    if (rc != 0)
        dmjd_log("cannot set up the workers: %s", dmj_strerror(rc));
    /* Every worker holds its own dup() of each listener now; once they close theirs on
     * shutdown the port refuses connections instead of queueing them for no one. */
    for (unsigned i = 0; i < srv->n_listeners; i++) {
        close(srv->listeners[i].fd);
        srv->listeners[i].fd = -1;
    }
    if (started == threads && rc == 0) {
        rc = dmjd_watcher_start(srv);
        if (rc != 0)
            dmjd_log("cannot start the store watcher: %s", dmj_strerror(rc));
    }
    if (started == threads && rc == 0) {
        for (unsigned i = 0; i < srv->n_listeners; i++)
            printf("%s %s\n", srv->listeners[i].metrics ? "metrics on" : "listening on",
                   srv->listeners[i].url);
        fflush(stdout);
        int sig = 0;
        for (;;) {
            if (sigwait(stop, &sig) != 0 || sig != SIGHUP)
                break;
            /* logrotate moved the file: the next lines go to a new one at the same path */
            if (srv->access_log_fd > STDOUT_FILENO &&
                dmjd_accesslog_reopen(srv->access_log_path, srv->access_log_fd) != 0)
                dmjd_log("cannot reopen the access log %s: %s", srv->access_log_path,
                         strerror(errno));
        }
        status = 0;
    }
    /* The watcher wakes workers: it goes first. */
    dmjd_watcher_stop(srv);
    for (unsigned i = 0; i < started; i++)
        dmjd_worker_stop(srv->workers[i]);
    bool clean = true;
    for (unsigned i = 0; i < started; i++)
        clean = dmjd_worker_wait(srv->workers[i]) && clean;
    if (!clean) {
        /* A client kept a response open past the deadline: h2o cannot free a context with
         * live connections, and the process is ending anyway. */
        dmjd_log("closing connections still open after %d ms", DMJD_DRAIN_MS);
        fflush(NULL);
        _exit(status);
    }
    for (unsigned i = 0; i < threads; i++)
        dmjd_worker_free(srv->workers[i]);
    free(srv->workers);
    srv->workers = NULL;
    srv->n_workers = 0;
    pthread_cond_destroy(&srv->start_cond);
    pthread_mutex_destroy(&srv->start_lock);
    return status;
}

int main(int argc, char **argv)
{
    struct dmjd_options o;
    int rc = dmjd_options_parse(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    signal(SIGPIPE, SIG_IGN);
    /* Responses of a few hundred kilobytes (`running`, large pages) are copied into h2o's
     * pools on every request: above glibc's 128 KiB default each copy was an mmap and munmap
     * (149 -> 103 us of CPU per `running` request with the threshold at 4 MiB). */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    /* Blocked from the start: the worker threads inherit the mask so that only the main
     * thread's sigwait sees these, and one that comes during start-up is answered by a
     * clean stop once serving has begun rather than by dying half set up. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    /* A shell starts background jobs with SIGINT ignored, and an ignored signal is dropped
     * instead of waiting for sigwait. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);

    struct dmjd_server srv;
    memset(&srv, 0, sizeof(srv));
    srv.access_log_fd = -1;
    int status = 1;

    struct dmjd_rate_rule rules[DMJD_RATE_MAX_RULES];
    unsigned n_rules = 0;
    if (o.rate_limit != NULL &&
        (dmjd_ratelimit_parse(o.rate_limit, rules, &n_rules) != 0 ||
         dmjd_ratelimit_new(rules, n_rules, o.rate_keys, &srv.ratelimit) != 0)) {
        fprintf(stderr, "dmjd: --rate-limit %s: expected N/second|minute|hour|day[,...]\n",
                o.rate_limit);
        return 2;
    }
    if (o.auth_fail_limit != NULL &&
        (dmjd_ratelimit_parse(o.auth_fail_limit, rules, &n_rules) != 0 ||
         dmjd_ratelimit_new(rules, n_rules, o.rate_keys, &srv.auth_failures) != 0)) {
        fprintf(stderr, "dmjd: --auth-fail-limit %s: expected N/second|minute|hour|day[,...]\n",
                o.auth_fail_limit);
        dmjd_ratelimit_free(srv.ratelimit);
        return 2;
    }
    if (srv.auth_failures != NULL) {
        srv.api.auth_gate = dmjd_ratelimit_auth_gate;
        srv.api.auth_gate_ctx = srv.auth_failures;
    }
    for (unsigned i = 0; i < o.n_trusted_proxies; i++) {
        /* kept in inet_ntop's spelling, which is what a peer address is compared in */
        unsigned char bin[sizeof(struct in6_addr)];
        int family = inet_pton(AF_INET, o.trusted_proxies[i], bin) == 1 ? AF_INET : AF_INET6;
        char *slot = srv.trusted_proxies[srv.n_trusted_proxies];
        if (inet_pton(family, o.trusted_proxies[i], bin) == 1 &&
            inet_ntop(family, bin, slot, sizeof(srv.trusted_proxies[0])) != NULL)
            srv.n_trusted_proxies++;
    }
    srv.api.max_limit = o.max_limit;
    srv.api.generation = o.offset_api ? DMJ_API_OFFSET : DMJ_API_CURSOR;
    srv.keepalive_us = (uint64_t)o.events_keepalive * 1000000u;
    if (dmjd_slots_new(o.streams_per_key, o.max_held, STREAM_TABLE_KEYS, &srv.slots) != 0) {
        fprintf(stderr, "dmjd: out of memory\n");
        return 1;
    }
    if (o.max_connections_per_address > 0 &&
        dmjd_slots_new(o.max_connections_per_address, UINT_MAX, ADDRESS_TABLE, &srv.address_slots) != 0) {
        fprintf(stderr, "dmjd: out of memory\n");
        return 1;
    }
    srv.api.stream_acquire = dmjd_slots_acquire;
    srv.api.stream_ctx = srv.slots;
    srv.send_timeout_us = (uint64_t)o.send_timeout * 1000000u;
    srv.header_timeout_us = (uint64_t)o.header_timeout * 1000000u;
    srv.metrics_on_api = o.metrics_on_api;
    unsigned long long max_conns = connection_budget(o.max_connections, o.threads);
    if (max_conns == 0)
        goto Exit;
    srv.max_conns_per_worker = (size_t)((max_conns + o.threads - 1) / o.threads);
    if (srv.ratelimit != NULL) {
        srv.api.rate_limit = dmjd_ratelimit_check;
        srv.api.rate_limit_ctx = srv.ratelimit;
    }

    if (open_store(&o, &srv.store) != 0)
        goto Exit;
    if (o.access_log != NULL) {
        srv.access_log_fd = open_access_log(o.access_log);
        if (srv.access_log_fd < 0) {
            fprintf(stderr, "dmjd: --access-log %s: %s\n", o.access_log, strerror(errno));
            goto Exit;
        }
    }
    if (o.tls_cert != NULL) {
        srv.ssl_ctx = make_ssl_ctx(o.tls_cert, o.tls_key);
        if (srv.ssl_ctx == NULL)
            goto Exit;
    }
    for (unsigned i = 0; i < o.n_listen; i++) {
        if (open_listener(o.listen[i], o.tls_cert != NULL, o.reuse_port, &srv.listeners[i]) != 0)
            goto Exit;
        srv.n_listeners++;
        if (srv.listeners[i].tls && srv.ssl_ctx == NULL) {
            fprintf(stderr, "dmjd: --listen %s: https needs --tls-cert and --tls-key\n",
                    o.listen[i]);
            goto Exit;
        }
    }

    if (o.metrics_listen != NULL) {
        if (srv.n_listeners == DMJD_MAX_LISTENERS) {
            fprintf(stderr, "dmjd: at most %d listeners with --metrics-listen\n",
                    DMJD_MAX_LISTENERS - 1);
            goto Exit;
        }
        /* Plain HTTP whatever --tls-cert says: scrapers rarely hold the API's CA. */
        struct dmjd_listener *ml = &srv.listeners[srv.n_listeners];
        if (open_listener(o.metrics_listen, false, o.reuse_port, ml) != 0)
            goto Exit;
        srv.n_listeners++;
        if (ml->tls) {
            fprintf(stderr, "dmjd: --metrics-listen %s: serves plain HTTP only\n",
                    o.metrics_listen);
            goto Exit;
        }
        ml->metrics = true;
        srv.metrics_listener = true;
    }
    srv.access_log_json = o.access_log_json;
    srv.access_log_metrics = o.access_log_metrics;
    srv.access_log_path = o.access_log;

    h2o_config_init(&srv.h2o);
    srv.h2o.server_name = h2o_iovec_init(H2O_STRLIT("dmjd"));
    srv.h2o.max_request_entity_size = MAX_REQUEST_BODY;
    dmjd_handler_register(&srv);
    status = serve(&srv, o.threads, &stop);
    h2o_config_dispose(&srv.h2o);

Exit:
    for (unsigned i = 0; i < srv.n_listeners; i++) {
        if (srv.listeners[i].fd >= 0)
            close(srv.listeners[i].fd);
    }
    if (srv.ssl_ctx != NULL)
        SSL_CTX_free(srv.ssl_ctx);
    if (srv.access_log_fd > STDOUT_FILENO)
        close(srv.access_log_fd);
    if (srv.store != NULL)
        dmj_store_close(srv.store);
    dmjd_ratelimit_free(srv.ratelimit);
    dmjd_ratelimit_free(srv.auth_failures);
    dmjd_slots_free(srv.slots);
    dmjd_slots_free(srv.address_slots);
    return status;
}

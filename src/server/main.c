/** dmjd's entry point: options, the store, listeners, TLS, worker threads and signals. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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

#include "dmjd.h"

#define DEFAULT_LISTEN "127.0.0.1:8000"
#define DEFAULT_MAX_LIMIT 1000
#define RATE_TABLE_KEYS 4096 /* default --rate-limit-keys (~8 MiB) */
#define DEFAULT_STREAMS_PER_KEY 8
#define DEFAULT_EVENTS_KEEPALIVE 15
#define STREAM_TABLE_KEYS 4096 /* keys holding long-polls or streams at once (~340 KiB) */
#define DEFAULT_MAX_HELD 4096
#define DEFAULT_SEND_TIMEOUT 30
#define DEFAULT_HEADER_TIMEOUT 10
/* The default --max-connections stays below this whatever the open-file limit allows: an
 * idle connection costs h2o some 10-20 KiB. */
#define DEFAULT_MAX_CONNECTIONS_CAP 65536
/* Descriptors kept for everything else: the store, logs, listeners, pipes, event loops. */
#define RESERVED_FDS 64
/* The body is never read: h2o keeps at most this of one (HTTP/1 answers 413 past it, HTTP/2
 * resets the stream), so that a few small bodies still get their proper 405. */
#define MAX_REQUEST_BODY 4096

struct options {
    const char *db;
    const char *listen[DMJD_MAX_LISTENERS];
    unsigned n_listen;
    unsigned threads;
    const char *tls_cert;
    const char *tls_key;
    unsigned max_limit;
    const char *rate_limit;
    const char *access_log;
    bool access_log_json;
    const char *metrics_listen;
    size_t map_size;
    unsigned streams_per_key;
    unsigned events_keepalive;
    unsigned max_held;
    unsigned rate_keys;
    const char *auth_fail_limit;
    const char *trusted_proxies[DMJD_MAX_PROXIES];
    unsigned n_trusted_proxies;
    unsigned long long max_connections; /* 0: from the open-file limit */
    unsigned send_timeout;
    unsigned header_timeout;
    bool metrics_on_api;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: dmjd [--db DIR] [--listen [http://|https://]HOST:PORT]... [--threads N]\n"
            "            [--tls-cert FILE --tls-key FILE] [--max-limit N]\n"
            "            [--rate-limit 480/minute,4800/hour] [--access-log FILE|-]\n"
            "            [--access-log-format combined|json] [--metrics-listen HOST:PORT]\n"
            "            [--map-size BYTES] [--streams-per-key N] [--max-held N]\n"
            "            [--events-keepalive S] [--max-connections N] [--send-timeout S]\n"
            "            [--header-timeout S] [--metrics-on-api] [--rate-limit-keys N]\n"
            "            [--auth-fail-limit R] [--trusted-proxy ADDR]...\n"
            "\n"
            "Serves PostHog's data-modeling-jobs API from a dmj store (read-only).\n"
            "\n"
            "  --db DIR           the store (default: $DMJ_DB, then ./dmj-data)\n"
            "  --listen HOST:PORT address to serve on, repeatable (default " DEFAULT_LISTEN ");\n"
            "                     port 0 picks a free port; https:// needs --tls-cert, and\n"
            "                     with --tls-cert a bare HOST:PORT is TLS too\n"
            "  --threads N        worker threads (default: the number of online cores)\n"
            "  --tls-cert FILE    PEM certificate chain; TLS with ALPN h2 and http/1.1\n"
            "  --tls-key FILE     PEM private key\n"
            "  --max-limit N      largest page size (default %d; 0 = no maximum)\n"
            "  --rate-limit R     per-key limits, e.g. 480/minute,4800/hour (default: none)\n"
            "  --rate-limit-keys N\n"
            "                     keys the limiter tracks at once (default %d); a new key\n"
            "                     finding no slot free of counts is refused (429)\n"
            "  --auth-fail-limit R\n"
            "                     failed authentications (401, 403) a client address may\n"
            "                     have, e.g. 30/minute; past it, 429 before any key is read\n"
            "  --trusted-proxy ADDR\n"
            "                     a proxy whose last X-Forwarded-For entry names the client\n"
            "                     (repeatable; default: none, the peer's address counts)\n"
            "  --access-log F     access log to F, or - for stdout\n"
            "  --access-log-format combined|json\n"
            "                     combined log format (default), or one JSON object a line\n"
            "  --metrics-listen HOST:PORT\n"
            "                     serve /metrics on this listener (plain HTTP); without it,\n"
            "                     /metrics is not served at all\n"
            "  --metrics-on-api   serve /metrics on the API listeners too (no key needed)\n"
            "  --map-size BYTES   LMDB map size (default: $DMJ_MAP_SIZE or the store's)\n"
            "  --streams-per-key N\n"
            "                     held running/?wait= long-polls and open events/ streams\n"
            "                     one key may have (default %d; 0 = no per-key bound);\n"
            "                     one more is answered at once: 429 with Retry-After\n"
            "  --max-held N       the same bound for the whole server (default %d)\n"
            "  --max-connections N\n"
            "                     open client connections (default: from the open-file limit,\n"
            "                     raised to its hard limit, at most %d); at the limit a new\n"
            "                     connection displaces the one quiet the longest\n"
            "  --send-timeout S   close a connection whose client reads nothing of an answer\n"
            "                     for S seconds (default %d)\n"
            "  --header-timeout S close a connection with no request in progress for S\n"
            "                     seconds: idle, or headers never finished (default %d)\n"
            "  --events-keepalive S\n"
            "                     seconds between `: keep-alive` lines on an idle\n"
            "                     events/ stream (default %d)\n"
            "  --help             this text\n"
            "\n"
            "Prints `listening on URL` once per listener when ready (the metrics listener\n"
            "last, as `metrics on URL`). Messages from the workers' set-up on go to stderr\n"
            "with an ISO 8601 UTC timestamp. GET /api/schema/ serves the OpenAPI document\n"
            "(no key needed).\n"
            "`running/?wait=N` long-polls and events/ streams wait in the workers' event\n"
            "loops; one watcher thread wakes them when the store commits.\n"
            "SIGTERM or SIGINT: stop accepting, answer held long-polls, end event\n"
            "streams, finish the responses in flight, exit 0.\n",
            DEFAULT_MAX_LIMIT, RATE_TABLE_KEYS, DEFAULT_STREAMS_PER_KEY, DEFAULT_MAX_HELD,
            DEFAULT_MAX_CONNECTIONS_CAP, DEFAULT_SEND_TIMEOUT, DEFAULT_HEADER_TIMEOUT,
            DEFAULT_EVENTS_KEEPALIVE);
}

static int parse_unsigned(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (s[0] < '0' || s[0] > '9')
        return DMJ_EINVAL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return DMJ_EINVAL;
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    enum {
        O_DB = 256,
        O_LISTEN,
        O_THREADS,
        O_CERT,
        O_KEY,
        O_MAXLIMIT,
        O_RATE,
        O_LOG,
        O_MAP,
        O_LOG_FORMAT,
        O_METRICS,
        O_STREAMS,
        O_KEEPALIVE,
        O_MAX_HELD,
        O_MAX_CONNS,
        O_SEND_TIMEOUT,
        O_HEADER_TIMEOUT,
        O_METRICS_ON_API,
        O_RATE_KEYS,
        O_AUTH_FAIL,
        O_TRUSTED_PROXY,
    };
    static const struct option longopts[] = {
        {"db", required_argument, NULL, O_DB},
        {"listen", required_argument, NULL, O_LISTEN},
        {"threads", required_argument, NULL, O_THREADS},
        {"tls-cert", required_argument, NULL, O_CERT},
        {"tls-key", required_argument, NULL, O_KEY},
        {"max-limit", required_argument, NULL, O_MAXLIMIT},
        {"rate-limit", required_argument, NULL, O_RATE},
        {"access-log", required_argument, NULL, O_LOG},
        {"map-size", required_argument, NULL, O_MAP},
        {"access-log-format", required_argument, NULL, O_LOG_FORMAT},
        {"metrics-listen", required_argument, NULL, O_METRICS},
        {"streams-per-key", required_argument, NULL, O_STREAMS},
        {"events-keepalive", required_argument, NULL, O_KEEPALIVE},
        {"max-held", required_argument, NULL, O_MAX_HELD},
        {"max-connections", required_argument, NULL, O_MAX_CONNS},
        {"send-timeout", required_argument, NULL, O_SEND_TIMEOUT},
        {"header-timeout", required_argument, NULL, O_HEADER_TIMEOUT},
        {"metrics-on-api", no_argument, NULL, O_METRICS_ON_API},
        {"rate-limit-keys", required_argument, NULL, O_RATE_KEYS},
        {"auth-fail-limit", required_argument, NULL, O_AUTH_FAIL},
        {"trusted-proxy", required_argument, NULL, O_TRUSTED_PROXY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    memset(o, 0, sizeof(*o));
    o->db =
        getenv("DMJ_DB") != NULL && getenv("DMJ_DB")[0] != '\0' ? getenv("DMJ_DB") : "./dmj-data";
    o->threads = cores > 0 ? (unsigned)(cores < DMJD_MAX_THREADS ? cores : DMJD_MAX_THREADS) : 1;
    o->max_limit = DEFAULT_MAX_LIMIT;
    o->streams_per_key = DEFAULT_STREAMS_PER_KEY;
    o->events_keepalive = DEFAULT_EVENTS_KEEPALIVE;
    o->max_held = DEFAULT_MAX_HELD;
    o->rate_keys = RATE_TABLE_KEYS;
    o->send_timeout = DEFAULT_SEND_TIMEOUT;
    o->header_timeout = DEFAULT_HEADER_TIMEOUT;
    int c;
    unsigned long long v;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_DB:
            o->db = optarg;
            break;
        case O_LISTEN:
            if (o->n_listen == DMJD_MAX_LISTENERS) {
                fprintf(stderr, "dmjd: at most %d --listen\n", DMJD_MAX_LISTENERS);
                return 2;
            }
            o->listen[o->n_listen++] = optarg;
            break;
        case O_THREADS:
            if (parse_unsigned(optarg, DMJD_MAX_THREADS, &v) != 0 || v == 0) {
                fprintf(stderr, "dmjd: --threads takes 1 to %d\n", DMJD_MAX_THREADS);
                return 2;
            }
            o->threads = (unsigned)v;
            break;
        case O_CERT:
            o->tls_cert = optarg;
            break;
        case O_KEY:
            o->tls_key = optarg;
            break;
        case O_MAXLIMIT:
            if (parse_unsigned(optarg, 0xffffffffu, &v) != 0) {
                fprintf(stderr, "dmjd: --max-limit takes a number (0 = no maximum)\n");
                return 2;
            }
            o->max_limit = (unsigned)v;
            break;
        case O_RATE:
            o->rate_limit = optarg;
            break;
        case O_LOG:
            o->access_log = optarg;
            break;
        case O_LOG_FORMAT:
            if (strcmp(optarg, "combined") != 0 && strcmp(optarg, "json") != 0) {
                fprintf(stderr, "dmjd: --access-log-format takes combined or json\n");
                return 2;
            }
            o->access_log_json = strcmp(optarg, "json") == 0;
            break;
        case O_METRICS:
            o->metrics_listen = optarg;
            break;
        case O_MAP:
            if (parse_unsigned(optarg, SIZE_MAX, &v) != 0) {
                fprintf(stderr, "dmjd: --map-size takes a number of bytes\n");
                return 2;
            }
            o->map_size = (size_t)v;
            break;
        case O_STREAMS:
            if (parse_unsigned(optarg, 1000000, &v) != 0) {
                fprintf(stderr, "dmjd: --streams-per-key takes a number (0 = no bound)\n");
                return 2;
            }
            o->streams_per_key = (unsigned)v;
            break;
        case O_KEEPALIVE:
            if (parse_unsigned(optarg, 3600, &v) != 0 || v == 0) {
                fprintf(stderr, "dmjd: --events-keepalive takes 1 to 3600 seconds\n");
                return 2;
            }
            o->events_keepalive = (unsigned)v;
            break;
        case O_MAX_HELD:
            if (parse_unsigned(optarg, 1000000, &v) != 0 || v == 0) {
                fprintf(stderr, "dmjd: --max-held takes 1 to 1000000\n");
                return 2;
            }
            o->max_held = (unsigned)v;
            break;
        case O_MAX_CONNS:
            if (parse_unsigned(optarg, 100000000, &v) != 0 || v == 0) {
                fprintf(stderr, "dmjd: --max-connections takes 1 to 100000000\n");
                return 2;
            }
            o->max_connections = v;
            break;
        case O_SEND_TIMEOUT:
        case O_HEADER_TIMEOUT:
            if (parse_unsigned(optarg, 86400, &v) != 0 || v == 0) {
                fprintf(stderr, "dmjd: --%s takes 1 to 86400 seconds\n",
                        c == O_SEND_TIMEOUT ? "send-timeout" : "header-timeout");
                return 2;
            }
            *(c == O_SEND_TIMEOUT ? &o->send_timeout : &o->header_timeout) = (unsigned)v;
            break;
        case O_METRICS_ON_API:
            o->metrics_on_api = true;
            break;
        case O_AUTH_FAIL:
            o->auth_fail_limit = optarg;
            break;
        case O_TRUSTED_PROXY: {
            unsigned char bin[sizeof(struct in6_addr)];
            if (o->n_trusted_proxies == DMJD_MAX_PROXIES ||
                (inet_pton(AF_INET, optarg, bin) != 1 && inet_pton(AF_INET6, optarg, bin) != 1)) {
                fprintf(stderr, "dmjd: --trusted-proxy takes an IPv4 or IPv6 address (at most "
                                "%d)\n", DMJD_MAX_PROXIES);
                return 2;
            }
            o->trusted_proxies[o->n_trusted_proxies++] = optarg;
            break;
        }
        case O_RATE_KEYS:
            if (parse_unsigned(optarg, 1u << 24, &v) != 0 || v == 0) {
                fprintf(stderr, "dmjd: --rate-limit-keys takes 1 to 16777216\n");
                return 2;
            }
            o->rate_keys = (unsigned)v;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dmjd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
        fprintf(stderr, "dmjd: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (o->n_listen == 0)
        o->listen[o->n_listen++] = DEFAULT_LISTEN;
    return 0;
}

/* Splits "[http://|https://]HOST:PORT" ("[::1]:80" for IPv6) into its parts. */
static int split_listen(const char *spec, bool tls_default, char *host, size_t host_size,
                        char *port, size_t port_size, bool *tls)
{
    *tls = tls_default;
    if (strncmp(spec, "http://", 7) == 0) {
        *tls = false;
        spec += 7;
    } else if (strncmp(spec, "https://", 8) == 0) {
        *tls = true;
        spec += 8;
    }
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || colon[1] == '\0')
        return DMJ_EINVAL;
    const char *h = spec;
    size_t hlen = (size_t)(colon - spec);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= host_size || strlen(colon + 1) >= port_size)
        return DMJ_EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static int open_listener(const char *spec, bool tls_default, struct dmjd_listener *out)
{
    char host[256], port[16];
    bool tls;
    if (split_listen(spec, tls_default, host, sizeof(host), port, sizeof(port), &tls) != 0) {
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
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
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

static int open_store(const struct options *o, struct dmj_store **out)
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
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
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
    unsigned long long room = rl.rlim_cur == RLIM_INFINITY ? DEFAULT_MAX_CONNECTIONS_CAP
                              : rl.rlim_cur > reserved    ? rl.rlim_cur - reserved
                                                          : 0;
    if (asked == 0)
        return room < DEFAULT_MAX_CONNECTIONS_CAP ? (room > 0 ? room : 1)
                                                  : DEFAULT_MAX_CONNECTIONS_CAP;
    if (asked > room) {
        fprintf(stderr,
                "dmjd: --max-connections %llu needs more descriptors than the open-file limit "
                "(%llu) leaves; raise it (LimitNOFILE=, ulimit -n) or ask for at most %llu\n",
                asked, (unsigned long long)rl.rlim_cur, room);
        return 0;
    }
    return asked;
}

/* Runs the workers until SIGTERM or SIGINT; returns the exit status. */
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
        sigwait(stop, &sig);
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
    struct options o;
    int rc = parse_options(argc, argv, &o);
    if (rc != 0)
        return rc;
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
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    /* A shell starts background jobs with SIGINT ignored, and an ignored signal is dropped
     * instead of waiting for sigwait. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);

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
    srv.keepalive_us = (uint64_t)o.events_keepalive * 1000000u;
    if (dmjd_slots_new(o.streams_per_key, o.max_held, STREAM_TABLE_KEYS, &srv.slots) != 0) {
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
        if (open_listener(o.listen[i], o.tls_cert != NULL, &srv.listeners[i]) != 0)
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
        if (open_listener(o.metrics_listen, false, ml) != 0)
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
    return status;
}

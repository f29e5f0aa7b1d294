/** dmjd's command line: usage text, parsing and checks of every option. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "version.h"
#include "options.h"

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
            "            [--max-connections-per-address N] [--reuse-port]\n"
            "            [--access-log-metrics] [--posthog-api cursor|offset] [--version]\n"
            "\n"
            "Serves PostHog's data-modeling-jobs API from a dmj store (read-only).\n"
            "\n"
            "  --db DIR           the store (default: $DMJ_DB, then ./dmj-data)\n"
            "  --listen HOST:PORT address to serve on, repeatable (default " DMJD_DEFAULT_LISTEN ");\n"
            "                     port 0 picks a free port; https:// needs --tls-cert, and\n"
            "                     with --tls-cert a bare HOST:PORT is TLS too\n"
            "  --threads N        worker threads (default: the number of online cores)\n"
            "  --tls-cert FILE    PEM certificate chain; TLS with ALPN h2 and http/1.1\n"
            "  --tls-key FILE     PEM private key\n"
            "  --max-limit N      largest page size (default %d; 0 = no maximum); cursor API\n"
            "  --posthog-api cursor|offset\n"
            "                     PostHog's API generation served: cursor pagination and ten\n"
            "                     fields (default), or its current one: limit/offset pages\n"
            "                     with count, twelve fields\n"
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
            "  --access-log F     access log to F, or - for stdout; SIGHUP reopens F\n"
            "                     (after logrotate has moved it)\n"
            "  --access-log-metrics\n"
            "                     log the metrics listener's requests too (default: not)\n"
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
            "  --max-connections-per-address N\n"
            "                     connections one client address may hold (default 0: no\n"
            "                     bound; behind a proxy every connection has its address)\n"
            "  --events-keepalive S\n"
            "                     seconds between `: keep-alive` lines on an idle\n"
            "                     events/ stream (default %d)\n"
            "  --reuse-port       SO_REUSEPORT on the listeners: a new dmjd binds the ports\n"
            "                     while the old one still serves (a restart without a gap:\n"
            "                     start the new one, then SIGTERM the old one)\n"
            "  --version          the version and git commit, then exit\n"
            "  --help             this text\n"
            "\n"
            "Prints `listening on URL` once per listener when ready (the metrics listener\n"
            "last, as `metrics on URL`). Messages from the workers' set-up on go to stderr\n"
            "with an ISO 8601 UTC timestamp. GET /api/schema/ serves the OpenAPI document\n"
            "(no key needed).\n"
            "`running/?wait=N` long-polls and events/ streams wait in the workers' event\n"
            "loops; one watcher thread wakes them when the store commits.\n"
            "SIGTERM or SIGINT: stop accepting, answer held long-polls, end event\n"
            "streams, finish the responses in flight, exit 0. SIGHUP: reopen the access log.\n",
            DMJD_DEFAULT_MAX_LIMIT, DMJD_DEFAULT_RATE_KEYS, DMJD_DEFAULT_STREAMS_PER_KEY, DMJD_DEFAULT_MAX_HELD,
            DMJD_DEFAULT_MAX_CONNECTIONS_CAP, DMJD_DEFAULT_SEND_TIMEOUT, DMJD_DEFAULT_HEADER_TIMEOUT,
            DMJD_DEFAULT_EVENTS_KEEPALIVE);
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

int dmjd_options_parse(int argc, char **argv, struct dmjd_options *o)
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
        O_CONNS_PER_ADDRESS,
        O_VERSION,
        O_REUSE_PORT,
        O_LOG_METRICS,
        O_POSTHOG_API,
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
        {"max-connections-per-address", required_argument, NULL, O_CONNS_PER_ADDRESS},
        {"version", no_argument, NULL, O_VERSION},
        {"reuse-port", no_argument, NULL, O_REUSE_PORT},
        {"access-log-metrics", no_argument, NULL, O_LOG_METRICS},
        {"posthog-api", required_argument, NULL, O_POSTHOG_API},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    memset(o, 0, sizeof(*o));
    o->db =
        getenv("DMJ_DB") != NULL && getenv("DMJ_DB")[0] != '\0' ? getenv("DMJ_DB") : "./dmj-data";
    o->threads = cores > 0 ? (unsigned)(cores < DMJD_MAX_THREADS ? cores : DMJD_MAX_THREADS) : 1;
    o->max_limit = DMJD_DEFAULT_MAX_LIMIT;
    o->streams_per_key = DMJD_DEFAULT_STREAMS_PER_KEY;
    o->events_keepalive = DMJD_DEFAULT_EVENTS_KEEPALIVE;
    o->max_held = DMJD_DEFAULT_MAX_HELD;
    o->rate_keys = DMJD_DEFAULT_RATE_KEYS;
    o->send_timeout = DMJD_DEFAULT_SEND_TIMEOUT;
    o->header_timeout = DMJD_DEFAULT_HEADER_TIMEOUT;
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
        case O_CONNS_PER_ADDRESS:
            if (parse_unsigned(optarg, 1000000, &v) != 0) {
                fprintf(stderr, "dmjd: --max-connections-per-address takes 0 to 1000000\n");
                return 2;
            }
            o->max_connections_per_address = (unsigned)v;
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
        case O_VERSION:
            printf("dmjd %s%s%s%s\n", DMJ_VERSION, DMJ_COMMIT[0] ? " (git " : "", DMJ_COMMIT,
                   DMJ_COMMIT[0] ? ")" : "");
            return 1;
        case O_REUSE_PORT:
            o->reuse_port = true;
            break;
        case O_LOG_METRICS:
            o->access_log_metrics = true;
            break;
        case O_POSTHOG_API:
            if (strcmp(optarg, "cursor") != 0 && strcmp(optarg, "offset") != 0) {
                fprintf(stderr, "dmjd: --posthog-api takes cursor or offset\n");
                return 2;
            }
            o->offset_api = strcmp(optarg, "offset") == 0;
            break;
        case 'h':
            usage(stdout);
            return 1;
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
        o->listen[o->n_listen++] = DMJD_DEFAULT_LISTEN;
    return 0;
}

int dmjd_listen_split(const char *spec, bool tls_default, char *host, size_t host_size,
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

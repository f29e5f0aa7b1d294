/** dmjd's command line: the options, their defaults and checks. */
#ifndef DMJD_OPTIONS_H
#define DMJD_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "dmj/error.h"

#define DMJD_MAX_LISTENERS 16
#define DMJD_MAX_PROXIES 16
#define DMJD_MAX_THREADS 256

#define DMJD_DEFAULT_LISTEN "127.0.0.1:8000"
#define DMJD_DEFAULT_MAX_LIMIT 1000
#define DMJD_DEFAULT_RATE_KEYS 4096 /* ~8 MiB */
#define DMJD_DEFAULT_STREAMS_PER_KEY 8
#define DMJD_DEFAULT_EVENTS_KEEPALIVE 15
#define DMJD_DEFAULT_MAX_HELD 4096
#define DMJD_DEFAULT_SEND_TIMEOUT 30
#define DMJD_DEFAULT_HEADER_TIMEOUT 10
/* The default --max-connections stays below this whatever the open-file limit allows: an
 * idle connection costs h2o some 10-20 KiB. */
#define DMJD_DEFAULT_MAX_CONNECTIONS_CAP 65536

/** What the command line asked for; strings point into argv. */
struct dmjd_options {
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
    unsigned long long max_connections; /**< 0: from the open-file limit */
    unsigned max_connections_per_address; /**< 0: no bound */
    unsigned send_timeout;
    unsigned header_timeout;
    bool metrics_on_api;
    bool reuse_port;         /**< --reuse-port: SO_REUSEPORT on every listener */
    bool access_log_metrics; /**< --access-log-metrics: log the metrics listener's requests */
    bool offset_api;         /**< --posthog-api offset: PostHog's current API generation */
};

/** Parses argv into `o` (defaults first, $DMJ_DB for --db). Returns 0; 1 when --help or
 * --version was printed (exit 0); 2 after printing a usage error on stderr (exit 2). */
DMJ_MUST_CHECK int dmjd_options_parse(int argc, char **argv, struct dmjd_options *o);

/** Splits "[http://|https://]HOST:PORT" ("[::1]:80" for IPv6) into host and port; `tls` is
 * the scheme's, or `tls_default` without one. 0 or DMJ_EINVAL. */
DMJ_MUST_CHECK int dmjd_listen_split(const char *spec, bool tls_default, char *host,
                                     size_t host_size, char *port, size_t port_size, bool *tls);

#endif

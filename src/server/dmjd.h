/** dmjd's internal interfaces: configuration, workers, metrics, rate limit and access log. */
#ifndef DMJD_H
#define DMJD_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "dmj/api.h"
#include "dmj/buf.h"
#include "dmj/store.h"

#define DMJD_MAX_LISTENERS 16
#define DMJD_MAX_THREADS 256
/** How long a shutdown waits for in-flight responses before giving up on them. */
#define DMJD_DRAIN_MS 10000

/* ---- metrics (metrics.c) -------------------------------------------------------------- */

/** Distinct (endpoint, status) pairs a worker counts; more fall into one "other" row. */
#define DMJD_METRIC_ROWS 64
#define DMJD_ENDPOINT_MAX 32
/** Latency histogram upper bounds in microseconds (the last bucket is +Inf). */
#define DMJD_LATENCY_BUCKETS 12

struct dmjd_metric_row {
    atomic_int ready; /* set (release) once endpoint/status are written */
    int status;
    char endpoint[DMJD_ENDPOINT_MAX];
    const char *source; /* the pointer the name was copied from (owner thread only) */
    atomic_uint_fast64_t count;
};

/** One worker's counters: written by its thread only, read by whichever thread scrapes. */
struct dmjd_metrics {
    struct dmjd_metric_row rows[DMJD_METRIC_ROWS];
    atomic_uint_fast64_t other; /* requests whose row did not fit */
    atomic_uint_fast64_t latency[DMJD_LATENCY_BUCKETS + 1];
    atomic_uint_fast64_t latency_sum_us;
    atomic_int_fast64_t open_connections;
    atomic_uint_fast64_t accepted_connections;
};

/** Counts one answered request (called by the worker's own thread). */
void dmjd_metrics_count(struct dmjd_metrics *m, const char *endpoint, int status,
                        uint64_t latency_us);

/* ---- rate limit (ratelimit.c) --------------------------------------------------------- */

#define DMJD_RATE_MAX_RULES 4

struct dmjd_rate_rule {
    unsigned count;     /**< requests allowed per period */
    uint64_t period_us; /**< the period */
};

struct dmjd_ratelimit;

/** Parses "480/minute,4800/hour" (units by first letter: s, m, h, d, as DRF does).
 * Returns 0 or DMJ_EINVAL; `n_out` receives the number of rules. */
DMJ_MUST_CHECK int dmjd_ratelimit_parse(const char *spec, struct dmjd_rate_rule *rules,
                                        unsigned *n_out);
/** A limiter shared by every worker, remembering at most `capacity` keys. */
DMJ_MUST_CHECK int dmjd_ratelimit_new(const struct dmjd_rate_rule *rules, unsigned n,
                                      size_t capacity, struct dmjd_ratelimit **out);
void dmjd_ratelimit_free(struct dmjd_ratelimit *rl);
/** The dmj_api_config.rate_limit hook: 0 to go on, else the seconds to wait. Thread-safe. */
unsigned dmjd_ratelimit_check(void *rl, const char *secure_value);
/** Same as dmjd_ratelimit_check at an explicit monotonic time (for tests). */
unsigned dmjd_ratelimit_check_at(struct dmjd_ratelimit *rl, const char *secure_value,
                                 uint64_t now_us);

/* ---- access log (accesslog.c) --------------------------------------------------------- */

/** Appends one combined-log-format line for `req` (status and body size as sent) to `out`,
 * with the personal_api_key query value cut to its first 8 characters + "...". */
DMJ_MUST_CHECK int dmjd_accesslog_format(struct dmj_buf *out, h2o_req_t *req, int status,
                                         size_t body_len);
/** Appends one JSON line for `req`: time (ISO 8601 UTC), remote, method, path (redacted as
 * above), status, bytes, duration_us, protocol, user_agent. */
DMJ_MUST_CHECK int dmjd_accesslog_format_json(struct dmj_buf *out, h2o_req_t *req, int status,
                                              size_t body_len, uint64_t duration_us);
/** Prints one error-log line to stderr: an ISO 8601 UTC timestamp, "dmjd:", the message
 * (printf-style) and a newline, with one write(2) so that threads never mix lines. */
void dmjd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/** Writes the redacted form of a request target (path and query) to `out`. */
DMJ_MUST_CHECK int dmjd_accesslog_redact_target(struct dmj_buf *out, const char *target,
                                                size_t len);

/* ---- server and workers (main.c, worker.c, handler.c) --------------------------------- */

struct dmjd_listener {
    int fd; /**< the bound, listening socket (each worker dup()s it) */
    bool tls;
    bool metrics; /**< the --metrics-listen listener: /metrics (and nothing else) */
    char url[96]; /**< "http://127.0.0.1:8000" as printed */
};

/** Everything set up before the workers start; immutable afterwards. */
struct dmjd_server {
    h2o_globalconf_t h2o;
    struct dmj_store *store;
    struct dmj_api_config api;
    SSL_CTX *ssl_ctx;
    struct dmjd_listener listeners[DMJD_MAX_LISTENERS];
    unsigned n_listeners;
    int access_log_fd;     /**< -1 = no access log */
    bool access_log_json;  /**< --access-log-format json: JSON lines instead of combined */
    bool metrics_listener; /**< /metrics is served on its own listener, not the API's */
    /* NULL-terminated host lists for h2o_accept_ctx_t: API listeners see only the API host,
     * the metrics listener only its own, whatever Host a client sends. */
    h2o_hostconf_t *api_hosts[2];
    h2o_hostconf_t *metrics_hosts[2];
    struct dmjd_ratelimit *ratelimit;
    struct dmjd_worker **workers;
    unsigned n_workers;
    /* Start-up only: workers report their loop ready and wait for `go` (worker.c). */
    pthread_mutex_t start_lock;
    pthread_cond_t start_cond;
    unsigned n_ready;
    bool go;
};

/** Per-thread state; the h2o context is embedded so a handler finds its worker. */
struct dmjd_worker {
    h2o_context_t ctx;
    struct dmjd_server *server;
    struct dmj_api_worker *api;
    unsigned index;
    pthread_t thread;
    sem_t done;        /**< posted when the thread has drained */
    int notify_fds[2]; /**< a self-pipe: the main thread writes one byte to stop the worker */
    h2o_socket_t *notify_sock;
    h2o_accept_ctx_t accept_ctx[DMJD_MAX_LISTENERS];
    h2o_socket_t *listen_socks[DMJD_MAX_LISTENERS];
    h2o_timeout_entry_t resume_accept; /**< accepting again after running out of fds */
    h2o_generator_t generator; /**< an inline, no-callback generator for h2o_start_response */
    int setup_rc;              /**< 0 once the worker's loop and listeners are set up */
    bool draining;
    bool disposed;          /**< the thread tore its context down after draining */
    struct dmj_buf scratch; /**< metrics text and access-log lines */
    struct dmjd_metrics metrics;
};

/** Allocates a worker (its API state, its self-pipe); the thread is not started. */
DMJ_MUST_CHECK int dmjd_worker_new(struct dmjd_server *srv, unsigned index,
                                   struct dmjd_worker **out);
/** Starts the worker's thread; it sets its loop up, then waits for dmjd_workers_go. */
DMJ_MUST_CHECK int dmjd_worker_start(struct dmjd_worker *w);
/** Waits until `started` workers have set up their loops, then lets them all accept.
 * Returns 0, or the first worker's setup error. */
DMJ_MUST_CHECK int dmjd_workers_go(struct dmjd_server *srv, unsigned started);
/** Asks the worker to stop accepting, drain, and return (async-signal-safe write). */
void dmjd_worker_stop(struct dmjd_worker *w);
/** Waits until the worker has drained (its thread then parks until the process exits);
 * true when it also tore its h2o context down. */
bool dmjd_worker_wait(struct dmjd_worker *w);
/** Frees a waited-for (or never started) worker whose context is torn down. */
void dmjd_worker_free(struct dmjd_worker *w);

/** What dmjd keeps per connection (worker.c allocates it at accept, frees it at close). */
struct dmjd_conn {
    struct dmjd_worker *worker;
    uint64_t body_queued; /**< body bytes handed to h2o on this connection */
    size_t largest_body;  /**< the largest of them */
    uint64_t since_us;    /**< when body_queued was last forgiven (dmjd_now_us) */
    bool cut;             /**< shut down as abusive: later requests get no work */
};

/** The state of the connection `req` came on, or NULL (not accepted by a worker). */
struct dmjd_conn *dmjd_conn_of(h2o_req_t *req);

/** Registers the request handler at "/" of the global configuration. */
void dmjd_handler_register(struct dmjd_server *srv);

/** Appends the whole /metrics page (every worker summed) to `out`. */
DMJ_MUST_CHECK int dmjd_metrics_render(struct dmjd_server *srv, struct dmj_buf *out);

/** Monotonic clock in microseconds. */
uint64_t dmjd_now_us(void);

#endif

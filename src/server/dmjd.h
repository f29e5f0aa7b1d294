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
#include "options.h"

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
    atomic_int_fast64_t parked;  /* `running/?wait=` requests held now */
    atomic_int_fast64_t streams; /* events/ streams open now */
    atomic_uint_fast64_t refused_connections;   /* at the cap with none to displace */
    atomic_uint_fast64_t displaced_connections; /* closed to make room for a new one */
    atomic_uint_fast64_t closed_by_dmjd;        /* timeouts, displacements and cuts */
    atomic_uint_fast64_t h2_cut;                /* HTTP/2 connections cut for abuse */
    atomic_uint_fast64_t parked_evaluations;    /* long-poll groups asked again on a change */
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
/** The seconds `name` would wait now, counting nothing (0: it would go through). */
unsigned dmjd_ratelimit_peek_at(struct dmjd_ratelimit *rl, const char *name, uint64_t now_us);
/** The dmj_api_config.auth_gate hook over a limiter of client addresses: `failed` counts a
 * failure, else the seconds the client must wait before it may try a key again. */
unsigned dmjd_ratelimit_auth_gate(void *rl, const char *client, bool failed);

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

/* ---- held-request slots (slots.c) --------------------------------------------------- */

struct dmjd_slots;

/** A table of held requests (long-polls and event streams) per key, shared by every worker:
 * at most `per_key` for one key (0: no per-key bound), `total` in all, and at most
 * `capacity` keys holding some at once. */
DMJ_MUST_CHECK int dmjd_slots_new(unsigned per_key, unsigned total, size_t capacity,
                                  struct dmjd_slots **out);
void dmjd_slots_free(struct dmjd_slots *s);
/** The dmj_api_config.stream_acquire hook: 0 when a slot was taken, else seconds to wait. */
unsigned dmjd_slots_acquire(void *slots, const char *secure_value);
/** Gives back a slot taken by dmjd_slots_acquire. */
void dmjd_slots_release(struct dmjd_slots *s, const char *secure_value);

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
    bool metrics_listener; /**< /metrics is served on its own listener */
    bool metrics_on_api;   /**< --metrics-on-api: /metrics on the API listeners too */
    size_t max_conns_per_worker; /**< each worker's share of --max-connections */
    uint64_t send_timeout_us;    /**< --send-timeout */
    uint64_t header_timeout_us;  /**< --header-timeout */
    /* NULL-terminated host lists for h2o_accept_ctx_t: API listeners see only the API host,
     * the metrics listener only its own, whatever Host a client sends. */
    h2o_hostconf_t *api_hosts[2];
    h2o_hostconf_t *metrics_hosts[2];
    struct dmjd_ratelimit *ratelimit;
    struct dmjd_ratelimit *auth_failures; /**< --auth-fail-limit, per client address */
    /** --trusted-proxy addresses (inet_ntop form): only from these is X-Forwarded-For read */
    char trusted_proxies[DMJD_MAX_PROXIES][48];
    unsigned n_trusted_proxies;
    struct dmjd_slots *slots;  /**< held long-polls and event streams per key and in all */
    uint64_t keepalive_us;     /**< the `: keep-alive` interval of event streams */
    struct dmjd_worker **workers;
    unsigned n_workers;
    /* Start-up only: workers report their loop ready and wait for `go` (worker.c). */
    pthread_mutex_t start_lock;
    pthread_cond_t start_cond;
    unsigned n_ready;
    bool go;
    /* The store watcher (watch.c): one thread that wakes every worker when the store's last
     * committed transaction changes. */
    pthread_t watch_thread;
    pthread_mutex_t watch_lock;
    pthread_cond_t watch_cond;
    bool watch_stop;
    bool watch_started;
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
    int wake_fds[2]; /**< a self-pipe: the watcher writes one byte when the store changed */
    h2o_socket_t *wake_sock;
    h2o_linklist_t conns;   /**< struct dmjd_conn, least recently active first (conn.c) */
    size_t n_conns;
    h2o_timeout_entry_t sweep; /**< the once-a-second look at every connection (conn.c) */
    h2o_linklist_t parked;  /**< struct dmjd_park_group: held `running/?wait=` requests */
    h2o_linklist_t streams; /**< struct dmjd_stream: open events/ streams */
    h2o_timeout_entry_t live_tick; /**< deadlines and keep-alives while either list is used */
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

/* ---- connections (conn.c, h2guard.c) ------------------------------------------------- */

/** What dmjd keeps per client connection: allocated at accept, freed when the socket has
 * closed and no request of it is in progress. Worker thread only. */
struct dmjd_conn {
    h2o_linklist_t link; /**< in the worker's `conns` */
    struct dmjd_worker *worker;
    h2o_socket_t *sock; /**< NULL once h2o has closed it */
    unsigned refs;      /**< the socket, and each request in progress */
    h2o_linklist_t requests; /**< the requests in progress (conn.c) */
    unsigned active;    /**< requests in progress */
    unsigned held;      /**< of which long-polls and event streams waiting by design */
    uint64_t answers, answers_seen; /**< requests ended (progress for the send timeout) */
    uint64_t active_us;   /**< when a request last began or ended, or the accept */
    uint64_t progress_us; /**< when the peer last acknowledged PROGRESS_MIN bytes */
    uint64_t acked_mark;  /**< TCP bytes_acked then */
    bool owed;    /**< owed its client bytes at the last sweep */
    bool closing; /**< shut down by dmjd; h2o closes it */
    bool cut;     /**< HTTP/2 abuse: later requests get no work */
    void (*h2_next)(void); /**< h2o's frame reader behind the guard (h2guard.c) */
    unsigned h2_strikes;
    uint64_t h2_window_us;
};

/** Sets up / starts / stops the worker's connection list and its sweep. */
void dmjd_conns_init(struct dmjd_worker *w);
void dmjd_conns_start(struct dmjd_worker *w);
void dmjd_conns_stop(struct dmjd_worker *w);
/** Tracks a socket just accepted, displacing a quiet one at the cap. False: close `sock`
 * (the cap is reached with nothing to displace, or no memory). */
bool dmjd_conn_accept(struct dmjd_worker *w, h2o_socket_t *sock);
/** The state of the connection `req` came on, or NULL (not accepted by a worker). */
struct dmjd_conn *dmjd_conn_of(h2o_req_t *req);
struct dmjd_conn *dmjd_conn_of_sock(h2o_socket_t *sock);
/** Counts `req` in progress on its connection until its pool is freed; returns the
 * connection (NULL when not tracked). */
struct dmjd_conn *dmjd_conn_begin(h2o_req_t *req);
/** The first request in progress on `conn` that `match` accepts, or NULL. */
h2o_req_t *dmjd_conn_find_request(struct dmjd_conn *conn, bool (*match)(h2o_req_t *, void *),
                                  void *arg);
/** Shuts the connection down (h2o then closes it as a failed socket). */
void dmjd_conn_close(struct dmjd_conn *conn, const char *why);
/** Puts the HTTP/2 abuse guard in front of h2o's frame reader on `req`'s connection. */
void dmjd_h2guard_watch(h2o_req_t *req, struct dmjd_conn *c);

/** Tells the worker that the store changed (async-signal-safe write; any thread). */
void dmjd_worker_wake(struct dmjd_worker *w);

/** Starts / stops the thread that watches the store's last committed transaction (every
 * WATCH_MS) and wakes every worker when it changes. */
DMJ_MUST_CHECK int dmjd_watcher_start(struct dmjd_server *srv);
void dmjd_watcher_stop(struct dmjd_server *srv);

/* ---- long-polls and event streams (live.c) -------------------------------------------- */

/** Sets up the worker's lists (before its loop runs). */
void dmjd_live_init(struct dmjd_worker *w);
/** Holds a `running/?wait=` request whose answer `res` is a 304 for up to `res->wait_s`
 * seconds, with the slot of `res->stream_key` until it is answered. False when it cannot be
 * held (the worker is draining, or no memory): the slot is given back; answer it now. */
bool dmjd_live_park(struct dmjd_worker *w, h2o_req_t *req, const struct dmj_api_request *in,
                    const struct dmj_api_response *res, uint64_t started);
/** Opens the events/ stream the API accepted (it holds the key's slot until it ends). */
void dmjd_live_open_stream(struct dmjd_worker *w, h2o_req_t *req,
                           const struct dmj_api_request *in, const struct dmj_api_response *res,
                           uint64_t started);
/** The store changed: re-evaluates every held request and stream of this worker. */
void dmjd_live_wake(struct dmjd_worker *w);
/** Shutdown: answers every held request now and ends every stream. */
void dmjd_live_end_all(struct dmjd_worker *w);

/** Sends an API answer for `req` and counts and logs it (handler.c). */
void dmjd_answer(struct dmjd_worker *w, h2o_req_t *req, const struct dmj_api_response *res,
                 uint64_t started);
/** Sends the status and headers of `res` and starts a streamed response with `gen`. */
void dmjd_start_stream(struct dmjd_worker *w, h2o_req_t *req, const struct dmj_api_response *res,
                       h2o_generator_t *gen);
/** Counts an answered request in the metrics and writes its access-log line. */
void dmjd_log_request(struct dmjd_worker *w, h2o_req_t *req, const char *endpoint, int status,
                      size_t sent, uint64_t started);

/** Registers the request handler at "/" of the global configuration. */
void dmjd_handler_register(struct dmjd_server *srv);

/** Appends the whole /metrics page (every worker summed) to `out`. */
DMJ_MUST_CHECK int dmjd_metrics_render(struct dmjd_server *srv, struct dmj_buf *out);

/** Monotonic clock in microseconds. */
uint64_t dmjd_now_us(void);

#endif

/** The server (set up once, immutable while it runs) and its worker threads. */
#ifndef DMJD_SERVER_H
#define DMJD_SERVER_H

#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "dmj/api.h"
#include "dmj/buf.h"
#include "dmj/store.h"
#include "conn.h"
#include "live.h"
#include "metrics.h"
#include "options.h"

/** How long a shutdown waits for in-flight responses before giving up on them. */
#define DMJD_DRAIN_MS 10000

struct dmjd_ratelimit;
struct dmjd_slots;

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
    bool access_log_metrics; /**< --access-log-metrics: the metrics listener's requests too */
    const char *access_log_path; /**< --access-log, reopened on SIGHUP */
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
    struct dmjd_slots *address_slots; /**< --max-connections-per-address (NULL: no bound) */
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
    struct dmjd_conn_list conns; /**< conn.c */
    struct dmjd_live live;       /**< live.c */
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


/** Tells the worker that the store changed (async-signal-safe write; any thread). */
void dmjd_worker_wake(struct dmjd_worker *w);

/** Starts / stops the thread that watches the store's last committed transaction (every
 * WATCH_MS) and wakes every worker when it changes. */
DMJ_MUST_CHECK int dmjd_watcher_start(struct dmjd_server *srv);
void dmjd_watcher_stop(struct dmjd_server *srv);

#endif

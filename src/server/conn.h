/** Client connections of one worker: the cap, displacement, and the send and header timeouts. */
#ifndef DMJD_CONN_H
#define DMJD_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <h2o.h>

struct dmjd_worker;

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
    char address[48]; /**< the peer's, when --max-connections-per-address counts it */
    bool cut;     /**< HTTP/2 abuse: later requests get no work */
    void (*h2_next)(void); /**< h2o's frame reader behind the guard (h2guard.c) */
    unsigned h2_strikes;
    uint64_t h2_window_us;
};

/** A worker's connections, least recently active first, and the once-a-second sweep. */
struct dmjd_conn_list {
    h2o_linklist_t all; /**< struct dmjd_conn */
    size_t n;
    h2o_timeout_entry_t sweep;
};

/** Sets up / starts / stops the worker's connection list and its sweep. */
void dmjd_conns_init(struct dmjd_worker *w);
void dmjd_conns_start(struct dmjd_worker *w);
void dmjd_conns_stop(struct dmjd_worker *w);
/** Tracks a socket just accepted; when `capped` (an API listener's), displaces a quiet one
 * at the cap. False: close `sock` (the cap is reached with nothing to displace, or no
 * memory). */
bool dmjd_conn_accept(struct dmjd_worker *w, h2o_socket_t *sock, bool capped);
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

#endif

/** Client connections of one worker: the cap and who gives way at it, and the send and
 * header timeouts that h2o 2.2.5 does not have.
 *
 * h2o turns the HTTP/2 idle timeout off while a response is in progress and has no write
 * timeout at all, so a client that never reads (or announces a zero flow-control window)
 * would hold its connection and descriptor for ever. Each worker keeps its connections in
 * one list, least recently active first, and looks at them once a second:
 *
 * - a connection that owes an answer (a request in progress that is not a long-poll or event
 *   stream waiting by design, or a write h2o has not finished) and whose peer has not
 *   acknowledged PROGRESS_MIN more bytes (TCP_INFO's bytes_acked) for --send-timeout is
 *   closed, whatever the protocol or TLS;
 * - a connection with no request in progress for --header-timeout is closed: idle
 *   keep-alives, headers dribbled a byte at a time, HTTP/2 header blocks never finished,
 *   TLS handshakes never finished.
 *
 * At the worker's share of --max-connections a new connection displaces the least recently
 * active one that has been quiet past GRACE_US, as nginx drops idle keep-alives when it runs
 * out, so that a legitimate client is served while an attack lasts. "Closed" means
 * shutdown(2): h2o then sees the socket fail and frees the connection its usual way. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "conn.h"
#include "server.h"
#include "slots.h"

/* What a peer must acknowledge within the send timeout to count as reading (a trickle of
 * a few bytes per interval would otherwise hold a connection for ever). */
#define PROGRESS_MIN 1024u
/* A connection younger than this (or active more recently) is not displaced. */
#define GRACE_US 1000000u
/* How far from the quiet end of the list a displacement looks for a candidate. */
#define DISPLACE_SCAN 64

static uint64_t bytes_acked(h2o_socket_t *sock)
{
    int fd = h2o_socket_get_fd(sock);
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
        return 0;
    return ti.tcpi_bytes_acked;
}

static void conn_unref(struct dmjd_conn *conn)
{
    if (--conn->refs == 0)
        free(conn);
}

/* Moves the connection to the active end of the worker's list. */
static void touch(struct dmjd_conn *conn, uint64_t now)
{
    conn->active_us = now;
    h2o_linklist_unlink(&conn->link);
    h2o_linklist_insert(&conn->worker->conns.all, &conn->link);
}

static void on_sock_close(void *data)
{
    struct dmjd_conn *conn = data;
    struct dmjd_worker *w = conn->worker;
    if (conn->address[0] != '\0')
        dmjd_slots_release(w->server->address_slots, conn->address);
    h2o_linklist_unlink(&conn->link);
    w->conns.n--;
    atomic_fetch_sub_explicit(&w->metrics.open_connections, 1, memory_order_relaxed);
    conn->sock = NULL;
    conn_unref(conn);
}

struct dmjd_conn *dmjd_conn_of_sock(h2o_socket_t *sock)
{
    if (sock == NULL || sock->on_close.cb != on_sock_close)
        return NULL;
    return sock->on_close.data;
}

struct dmjd_conn *dmjd_conn_of(h2o_req_t *req)
{
    return dmjd_conn_of_sock(req->conn->callbacks->get_socket(req->conn));
}

void dmjd_conn_close(struct dmjd_conn *conn, const char *why)
{
    if (conn->closing || conn->sock == NULL)
        return;
    conn->closing = true;
    atomic_fetch_add_explicit(&conn->worker->metrics.closed_by_dmjd, 1, memory_order_relaxed);
    int fd = h2o_socket_get_fd(conn->sock);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    (void)why;
}

/* The quietest connection past the grace that is not only waiting by design, or NULL. */
static struct dmjd_conn *displaceable(struct dmjd_worker *w, uint64_t now)
{
    h2o_linklist_t *node = w->conns.all.next;
    for (int i = 0; i < DISPLACE_SCAN && node != &w->conns.all; i++, node = node->next) {
        struct dmjd_conn *c = H2O_STRUCT_FROM_MEMBER(struct dmjd_conn, link, node);
        if (now - c->active_us < GRACE_US)
            return NULL; /* the rest of the list is more recent still */
        if (c->closing || (c->active > 0 && c->active == c->held))
            continue;
        return c;
    }
    return NULL;
}

/* The peer's address as text, or false. */
static bool peer_address(h2o_socket_t *sock, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t n = h2o_socket_getpeername(sock, (struct sockaddr *)&ss);
    const void *addr = NULL;
    if (n > 0 && ss.ss_family == AF_INET)
        addr = &((struct sockaddr_in *)&ss)->sin_addr;
    else if (n > 0 && ss.ss_family == AF_INET6)
        addr = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    return addr != NULL && inet_ntop(ss.ss_family, addr, buf, (socklen_t)size) != NULL;
}

bool dmjd_conn_accept(struct dmjd_worker *w, h2o_socket_t *sock, bool capped)
{
    uint64_t now = dmjd_now_us();
    /* --max-connections-per-address: one address's share, counted across the workers */
    char address[sizeof(((struct dmjd_conn *)0)->address)] = "";
    if (capped && w->server->address_slots != NULL && peer_address(sock, address, sizeof(address))) {
        if (dmjd_slots_acquire(w->server->address_slots, address) != 0) {
            atomic_fetch_add_explicit(&w->metrics.refused_connections, 1, memory_order_relaxed);
            return false;
        }
    }
    if (capped && w->conns.n >= w->server->max_conns_per_worker) {
        struct dmjd_conn *victim = displaceable(w, now);
        if (victim == NULL) {
            atomic_fetch_add_explicit(&w->metrics.refused_connections, 1, memory_order_relaxed);
            if (address[0] != '\0')
                dmjd_slots_release(w->server->address_slots, address);
            return false;
        }
        atomic_fetch_add_explicit(&w->metrics.displaced_connections, 1, memory_order_relaxed);
        dmjd_conn_close(victim, "displaced");
    }
    struct dmjd_conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        if (address[0] != '\0')
            dmjd_slots_release(w->server->address_slots, address);
        return false; /* out of memory: refuse rather than serve untracked */
    }
    memcpy(conn->address, address, sizeof(conn->address));
    conn->worker = w;
    conn->sock = sock;
    conn->refs = 1; /* the socket's; each request in progress holds one more */
    h2o_linklist_init_anchor(&conn->requests);
    conn->active_us = now;
    conn->progress_us = now;
    h2o_linklist_insert(&w->conns.all, &conn->link);
    w->conns.n++;
    atomic_fetch_add_explicit(&w->metrics.open_connections, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->metrics.accepted_connections, 1, memory_order_relaxed);
    sock->on_close.cb = on_sock_close;
    sock->on_close.data = conn;
    return true;
}

struct request_mark {
    h2o_linklist_t link; /* in the connection's `requests` */
    struct dmjd_conn *conn;
    h2o_req_t *req;
};

static void on_request_end(void *data)
{
    struct request_mark *mark = data;
    struct dmjd_conn *conn = mark->conn;
    h2o_linklist_unlink(&mark->link);
    conn->active--;
    conn->answers++;
    if (conn->sock != NULL)
        touch(conn, dmjd_now_us());
    conn_unref(conn);
}

struct dmjd_conn *dmjd_conn_begin(h2o_req_t *req)
{
    struct dmjd_conn *conn = dmjd_conn_of(req);
    if (conn == NULL)
        return NULL;
    struct request_mark *mark = h2o_mem_alloc_shared(&req->pool, sizeof(*mark), on_request_end);
    memset(mark, 0, sizeof(*mark));
    mark->conn = conn;
    mark->req = req;
    h2o_linklist_insert(&conn->requests, &mark->link);
    conn->refs++;
    if (conn->active++ == 0)
        conn->progress_us = dmjd_now_us(); /* the send timeout runs from the first owed byte */
    touch(conn, dmjd_now_us());
    return conn;
}

h2o_req_t *dmjd_conn_find_request(struct dmjd_conn *conn, bool (*match)(h2o_req_t *, void *),
                                  void *arg)
{
    for (h2o_linklist_t *n = conn->requests.next; n != &conn->requests; n = n->next) {
        struct request_mark *mark = H2O_STRUCT_FROM_MEMBER(struct request_mark, link, n);
        if (match(mark->req, arg))
            return mark->req;
    }
    return NULL;
}

/* Whether the connection owes its client bytes that it is not waiting to have. */
static bool owes(const struct dmjd_conn *c)
{
    return c->active > c->held || h2o_socket_is_writing(c->sock);
}

static void sweep_one(struct dmjd_conn *c, uint64_t now, const struct dmjd_server *srv)
{
    if (c->closing)
        return;
    if (c->answers != c->answers_seen) {
        c->answers_seen = c->answers;
        c->progress_us = now;
    }
    if (!owes(c)) {
        c->owed = false;
        if (c->active == 0 && now - c->active_us > srv->header_timeout_us)
            dmjd_conn_close(c, "header timeout");
        return;
    }
    uint64_t acked = bytes_acked(c->sock);
    if (!c->owed) {
        /* it owes something since the last look (an event stream's send, say): the clock
         * starts now */
        c->owed = true;
        c->acked_mark = acked;
        c->progress_us = now;
    } else if (acked >= c->acked_mark + PROGRESS_MIN) {
        c->acked_mark = acked;
        c->progress_us = now;
    } else if (now - c->progress_us > srv->send_timeout_us) {
        dmjd_conn_close(c, "send timeout");
    }
}

static void on_sweep(h2o_timeout_entry_t *entry)
{
    struct dmjd_worker *w = H2O_STRUCT_FROM_MEMBER(struct dmjd_worker, conns.sweep, entry);
    uint64_t now = dmjd_now_us();
    for (h2o_linklist_t *node = w->conns.all.next; node != &w->conns.all; node = node->next)
        sweep_one(H2O_STRUCT_FROM_MEMBER(struct dmjd_conn, link, node), now, w->server);
    if (!w->draining)
        h2o_timeout_link(w->ctx.loop, &w->ctx.one_sec_timeout, &w->conns.sweep);
}

void dmjd_conns_init(struct dmjd_worker *w)
{
    h2o_linklist_init_anchor(&w->conns.all);
    w->conns.sweep.cb = on_sweep;
}

void dmjd_conns_start(struct dmjd_worker *w)
{
    h2o_timeout_link(w->ctx.loop, &w->ctx.one_sec_timeout, &w->conns.sweep);
}

void dmjd_conns_stop(struct dmjd_worker *w)
{
    if (h2o_timeout_is_linked(&w->conns.sweep))
        h2o_timeout_unlink(&w->conns.sweep);
}

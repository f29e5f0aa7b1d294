/** Worker threads: each runs its own h2o context and event loop on dup()s of the listeners.
 *
 * All workers accept from the same listening sockets (one kernel accept queue per port):
 * whichever loop is idle takes the next connection, so a few long keep-alive clients cannot
 * pile up on one busy thread as they can with SO_REUSEPORT's hash, and binding port 0 needs
 * no second step. */
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accesslog.h"
#include "conn.h"
#include "live.h"
#include "server.h"

#define DRAIN_IDLE_MS 250 /* what a just-accepted connection has to send its request in */
#define ACCEPTS_PER_WAKE 32 /* then let the loop serve what it has, other threads can accept */
#define SCRATCH_MAX (1u << 20)

static void on_accept(h2o_socket_t *listener, const char *err);

/* Out of file descriptors: the listener stays readable, so stop polling it for a moment
 * rather than spin, and let closing connections free some. */
static void pause_accepting(struct dmjd_worker *w)
{
    for (unsigned i = 0; i < w->server->n_listeners; i++) {
        if (w->listen_socks[i] != NULL)
            h2o_socket_read_stop(w->listen_socks[i]);
    }
    if (!h2o_timeout_is_linked(&w->resume_accept))
        h2o_timeout_link(w->ctx.loop, &w->ctx.hundred_ms_timeout, &w->resume_accept);
}

static void on_resume_accept(h2o_timeout_entry_t *entry)
{
    struct dmjd_worker *w = H2O_STRUCT_FROM_MEMBER(struct dmjd_worker, resume_accept, entry);
    for (unsigned i = 0; i < w->server->n_listeners; i++) {
        if (w->listen_socks[i] != NULL)
            h2o_socket_read_start(w->listen_socks[i], on_accept);
    }
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    h2o_accept_ctx_t *actx = listener->data;
    struct dmjd_worker *w = H2O_STRUCT_FROM_MEMBER(struct dmjd_worker, ctx, actx->ctx);
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        errno = 0;
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL) {
            /* EAGAIN also when another worker took the connection first. */
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(w);
            return;
        }
        /* The metrics listener is outside the cap: monitoring must see an attack. */
        bool capped = actx->hosts != w->server->metrics_hosts;
        if (!dmjd_conn_accept(w, sock, capped)) {
            h2o_socket_close(sock);
            continue;
        }
        h2o_accept(actx, sock);
    }
}

/* Stops taking connections and asks h2o to wind down the open ones. */
static void begin_drain(struct dmjd_worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    if (h2o_timeout_is_linked(&w->resume_accept))
        h2o_timeout_unlink(&w->resume_accept);
    for (unsigned i = 0; i < w->server->n_listeners; i++) {
        if (w->listen_socks[i] != NULL) {
            h2o_socket_read_stop(w->listen_socks[i]);
            h2o_socket_close(w->listen_socks[i]);
            w->listen_socks[i] = NULL;
        }
    }
    /* HTTP/2 connections get GOAWAY. Idle HTTP/1 keep-alive connections only close when
     * their request timeout fires: make it short so that they go within DRAIN_IDLE_MS, while
     * a connection in the middle of a response is left to finish. Not zero: a connection
     * accepted a moment ago whose request is still on its way (the client saw it connected;
     * with --reuse-port, while the new dmjd already takes the new ones) would be closed
     * unanswered. */
    h2o_context_request_shutdown(&w->ctx);
    w->ctx.http1.req_timeout.timeout = DRAIN_IDLE_MS;
    w->ctx.http2.idle_timeout.timeout = 0;
    /* Held long-polls are answered now and event streams end: neither may hold the
     * shutdown up for their full wait. */
    dmjd_live_end_all(w);
}

static void on_notify(h2o_socket_t *sock, const char *err)
{
    struct dmjd_worker *w = sock->data;
    /* Whatever was written (or an error): the only message is "stop". */
    h2o_buffer_consume(&sock->input, sock->input->size);
    begin_drain(w);
}

static void on_wake(h2o_socket_t *sock, const char *err)
{
    struct dmjd_worker *w = sock->data;
    /* However many bytes: one re-evaluation covers every commit up to now. */
    h2o_buffer_consume(&sock->input, sock->input->size);
    if (err == NULL && !w->draining)
        dmjd_live_wake(w);
}

static int setup_loop(struct dmjd_worker *w)
{
    struct dmjd_server *srv = w->server;
    h2o_context_init(&w->ctx, h2o_evloop_create(), &srv->h2o);
    for (unsigned i = 0; i < srv->n_listeners; i++) {
        h2o_accept_ctx_t *actx = &w->accept_ctx[i];
        memset(actx, 0, sizeof(*actx));
        actx->ctx = &w->ctx;
        actx->hosts = srv->listeners[i].metrics ? srv->metrics_hosts : srv->api_hosts;
        actx->ssl_ctx = srv->listeners[i].tls ? srv->ssl_ctx : NULL;
        /* The h2o socket owns (and closes) its fd, so each worker gets its own dup(). */
        int fd = fcntl(srv->listeners[i].fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        w->listen_socks[i] = h2o_evloop_socket_create(w->ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
        w->listen_socks[i]->data = actx;
    }
    w->notify_sock = h2o_evloop_socket_create(w->ctx.loop, w->notify_fds[0], 0);
    w->notify_fds[0] = -1; /* owned by the socket now */
    w->notify_sock->data = w;
    h2o_socket_read_start(w->notify_sock, on_notify);
    w->wake_sock = h2o_evloop_socket_create(w->ctx.loop, w->wake_fds[0], 0);
    w->wake_fds[0] = -1;
    w->wake_sock->data = w;
    h2o_socket_read_start(w->wake_sock, on_wake);
    return 0;
}

/* Lets the loop run the sockets' deferred frees, then tears the context down. */
static void dispose_loop(struct dmjd_worker *w)
{
    if (w->notify_sock != NULL) {
        h2o_socket_read_stop(w->notify_sock);
        h2o_socket_close(w->notify_sock);
        w->notify_sock = NULL;
    }
    if (w->wake_sock != NULL) {
        h2o_socket_read_stop(w->wake_sock);
        h2o_socket_close(w->wake_sock);
        w->wake_sock = NULL;
    }
    if (h2o_timeout_is_linked(&w->live.tick))
        h2o_timeout_unlink(&w->live.tick);
    dmjd_conns_stop(w);
    h2o_evloop_run(w->ctx.loop, 0);
    /* The HTTP/2 shutdown re-sends GOAWAY a second later; with no connection left there is
     * no one to send it to, and h2o will not dispose of a timeout with an entry in it. */
    if (h2o_timeout_is_linked(&w->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&w->ctx.http2._graceful_shutdown_timeout);
    h2o_loop_t *loop = w->ctx.loop;
    h2o_context_dispose(&w->ctx);
    /* h2o 2.2.5's evloop flavour closes the context's message queue but never frees it. */
    free(w->ctx.queue);
    w->ctx.queue = NULL;
    h2o_evloop_destroy(loop);
}

/* Waits until every worker has its loop: h2o aborts when it cannot get a descriptor for
 * an event loop, so no worker may take connections (which use descriptors up) before all
 * loops exist. */
static void wait_for_all(struct dmjd_server *srv)
{
    pthread_mutex_lock(&srv->start_lock);
    srv->n_ready++;
    pthread_cond_broadcast(&srv->start_cond);
    while (!srv->go)
        pthread_cond_wait(&srv->start_cond, &srv->start_lock);
    pthread_mutex_unlock(&srv->start_lock);
}

static void *run(void *arg)
{
    struct dmjd_worker *w = arg;
    w->setup_rc = setup_loop(w);
    if (w->setup_rc != 0)
        dmjd_log("worker %u: %s", w->index, dmj_strerror(w->setup_rc));
    wait_for_all(w->server);
    if (w->setup_rc == 0) {
        dmjd_conns_start(w);
        for (unsigned i = 0; i < w->server->n_listeners; i++)
            h2o_socket_read_start(w->listen_socks[i], on_accept);
    } else {
        begin_drain(w);
    }
    while (!w->draining)
        h2o_evloop_run(w->ctx.loop, INT32_MAX);

    /* Drain: run until every connection of this worker has closed, or the deadline. */
    uint64_t deadline = dmjd_now_us() + (uint64_t)DMJD_DRAIN_MS * 1000u;
    while (atomic_load_explicit(&w->metrics.open_connections, memory_order_relaxed) > 0 &&
           dmjd_now_us() < deadline)
        h2o_evloop_run(w->ctx.loop, 50);
    /* h2o's buffers are recycled per thread: tear down here, on the thread that made them. */
    if (atomic_load_explicit(&w->metrics.open_connections, memory_order_relaxed) == 0) {
        dispose_loop(w);
        w->disposed = true;
    }
    sem_post(&w->done);
    /* Park instead of exiting: h2o caches memory in thread-local free lists that it has no
     * call to empty, and a thread that stays reachable until the process exits keeps
     * the leak checker (and valgrind) from reporting them. The process exit ends it. */
    for (;;)
        pause();
    return NULL;
}

int dmjd_worker_new(struct dmjd_server *srv, unsigned index, struct dmjd_worker **out)
{
    struct dmjd_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->server = srv;
    w->index = index;
    w->resume_accept.cb = on_resume_accept;
    dmjd_conns_init(w);
    dmjd_live_init(w);
    dmj_buf_init(&w->scratch, SCRATCH_MAX);
    int rc = dmj_api_worker_new(srv->store, &srv->api, &w->api);
    if (rc != 0) {
        free(w);
        return rc;
    }
    if (pipe2(w->notify_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = -errno;
        dmj_api_worker_free(w->api);
        free(w);
        return rc;
    }
    if (pipe2(w->wake_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = -errno;
        close(w->notify_fds[0]);
        close(w->notify_fds[1]);
        dmj_api_worker_free(w->api);
        free(w);
        return rc;
    }
    sem_init(&w->done, 0, 0);
    *out = w;
    return 0;
}

int dmjd_worker_start(struct dmjd_worker *w)
{
    int rc = pthread_create(&w->thread, NULL, run, w);
    if (rc != 0)
        return -rc;
    pthread_detach(w->thread);
    return 0;
}

int dmjd_workers_go(struct dmjd_server *srv, unsigned started)
{
    pthread_mutex_lock(&srv->start_lock);
    while (srv->n_ready < started)
        pthread_cond_wait(&srv->start_cond, &srv->start_lock);
    srv->go = true;
    pthread_cond_broadcast(&srv->start_cond);
    pthread_mutex_unlock(&srv->start_lock);
    for (unsigned i = 0; i < started; i++) {
        if (srv->workers[i]->setup_rc != 0)
            return srv->workers[i]->setup_rc;
    }
    return 0;
}

void dmjd_worker_stop(struct dmjd_worker *w)
{
    char c = 's';
    ssize_t n = write(w->notify_fds[1], &c, 1);
    (void)n; /* a full pipe already holds a stop request */
}

void dmjd_worker_wake(struct dmjd_worker *w)
{
    char c = 'w';
    ssize_t n = write(w->wake_fds[1], &c, 1);
    (void)n; /* a full pipe already holds a wake-up */
}

bool dmjd_worker_wait(struct dmjd_worker *w)
{
    while (sem_wait(&w->done) != 0)
        continue; /* EINTR */
    return w->disposed;
}

void dmjd_worker_free(struct dmjd_worker *w)
{
    if (w == NULL)
        return;
    if (w->notify_fds[0] >= 0)
        close(w->notify_fds[0]);
    close(w->notify_fds[1]);
    if (w->wake_fds[0] >= 0)
        close(w->wake_fds[0]);
    close(w->wake_fds[1]);
    sem_destroy(&w->done);
    dmj_api_worker_free(w->api);
    dmj_buf_dispose(&w->scratch);
    free(w);
}

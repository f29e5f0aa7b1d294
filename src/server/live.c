/** Held `running/?wait=` requests and open events/ streams of one worker: parked in its
 * event loop (no thread, no read transaction while they wait) and re-evaluated when the
 * store watcher says the store changed.
 *
 * Both live in the request's memory pool (h2o_mem_alloc_shared), so that a client that
 * goes away - h2o disposing of the request - takes them off the worker's lists at once. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "accesslog.h"
#include "conn.h"
#include "live.h"
#include "metrics.h"
#include "respond.h"
#include "server.h"
#include "slots.h"

/* What one send of a stream holds at most before waiting for the client to read it. */
#define STREAM_SOFT_MAX ((size_t)64 << 10)
/* One event holds a whole job, whose strings the import bounds well below this. */
#define STREAM_BUF_MAX ((size_t)64 << 20)
/* How often a held HTTP/1 request's socket is looked at for a client that went away. */
#define PEEK_EVERY_US 500000u
static const char keepalive_line[] = ": keep-alive\n\n";
/* The first bytes of a stream that owes nothing yet: h2o sends the headers of an HTTP/1
 * chunked response only with a first chunk, and the client should see its 200 at once. */
static const char hello_line[] = ": connected\n\n";

/* Held requests that ask the same thing (every field the answer depends on) wait in one
 * group, and a store change asks the API once per group, not once per request: a flood of
 * identical long-polls costs one answer per commit. */
struct dmjd_park_group {
    h2o_linklist_t link;    /* in the worker's `parked` */
    h2o_linklist_t members; /* struct dmjd_parked */
    uint64_t hash;
    bool visiting; /* its members are being answered: not freed when it empties */
};

struct dmjd_parked {
    h2o_linklist_t link; /* in its group's `members` */
    struct dmjd_park_group *group;
    struct dmjd_worker *worker;
    struct dmjd_conn *conn;
    h2o_req_t *req;
    struct dmj_api_request in; /* pointers into the request (and its pool) */
    char key[80];              /* the slot it holds ("" = none) */
    uint64_t started_us;
    uint64_t deadline_us;
    uint64_t peeked_us; /* when client_gone last looked */
};

struct dmjd_stream {
    h2o_generator_t gen;
    h2o_linklist_t link;
    struct dmjd_worker *worker;
    struct dmjd_conn *conn;
    h2o_req_t *req;
    struct dmj_api_request in;
    struct dmj_api_stream st;
    char key[80];
    struct dmj_buf buf; /* what h2o is sending now; reused after `proceed` */
    uint64_t last_send_us;
    uint64_t peeked_us;
    bool sending;  /* h2o holds `buf`: wait for proceed before sending again */
    bool waiting;  /* counted in its connection's `held`: owes nothing now */
    bool pending;  /* a change came while sending, or the last render had more */
    bool closing;  /* end with the next proceed */
    bool finished; /* FINAL sent, or h2o stopped the response: send nothing more */
};

static void on_tick(h2o_timeout_entry_t *entry);

void dmjd_live_init(struct dmjd_worker *w)
{
    w->live.tick.cb = on_tick;
    h2o_linklist_init_anchor(&w->live.parked);
    h2o_linklist_init_anchor(&w->live.streams);
}

/* The tick runs while anything is held: deadlines to the next 100 ms, keep-alives. */
static void arm_tick(struct dmjd_worker *w)
{
    if (h2o_timeout_is_linked(&w->live.tick))
        return;
    if (h2o_linklist_is_empty(&w->live.parked) && h2o_linklist_is_empty(&w->live.streams))
        return;
    h2o_timeout_link(w->ctx.loop, &w->ctx.hundred_ms_timeout, &w->live.tick);
}

/* The request's strings stay where they are for its life, except the host, which the
 * handler may have formatted on its stack. */
static void copy_request(h2o_req_t *req, const struct dmj_api_request *in,
                         struct dmj_api_request *out)
{
    *out = *in;
    if (in->host.ptr != NULL) {
        h2o_iovec_t host = h2o_strdup(&req->pool, in->host.ptr, in->host.len);
        out->host = (struct dmj_str){host.base, host.len};
    }
    out->client = (struct dmj_str){NULL, 0}; /* only a first ask is gated; it may be on the stack */
    out->again = true;
}

/* ---- held requests ---------------------------------------------------------------------- */

static uint64_t hash_str(uint64_t h, const struct dmj_str *v)
{
    /* FNV-1a; the length goes in too, so that field boundaries count */
    for (size_t i = 0; v->ptr != NULL && i < v->len; i++)
        h = (h ^ (unsigned char)v->ptr[i]) * 0x100000001b3ull;
    return (h ^ (v->ptr != NULL ? v->len + 1 : 0)) * 0x100000001b3ull;
}

static bool str_eq(const struct dmj_str *a, const struct dmj_str *b)
{
    if ((a->ptr == NULL) != (b->ptr == NULL) || a->len != b->len)
        return false;
    return a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0;
}

/* Every field of the request that the answer depends on, in one place for hash and compare. */
#define REQUEST_FIELDS(X)                                                                          \
    X(method) X(path) X(query) X(authorization) X(host) X(forwarded_proto) X(if_none_match)      \
        X(last_event_id)

static uint64_t request_hash(const struct dmj_api_request *r)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (r->tls ? 1u : 0u);
#define HASH_FIELD(f) h = hash_str(h, &r->f);
    REQUEST_FIELDS(HASH_FIELD)
#undef HASH_FIELD
    return h;
}

static bool same_request(const struct dmj_api_request *a, const struct dmj_api_request *b)
{
    bool same = a->tls == b->tls;
#define SAME_FIELD(f) same = same && str_eq(&a->f, &b->f);
    REQUEST_FIELDS(SAME_FIELD)
#undef SAME_FIELD
    return same;
}

static struct dmjd_parked *member_of(h2o_linklist_t *node)
{
    return H2O_STRUCT_FROM_MEMBER(struct dmjd_parked, link, node);
}

static void group_free_if_empty(struct dmjd_park_group *g)
{
    if (g->visiting || !h2o_linklist_is_empty(&g->members))
        return;
    h2o_linklist_unlink(&g->link);
    free(g);
}

/* The group asking the same as `in`, or a new one; NULL when out of memory. */
static struct dmjd_park_group *group_for(struct dmjd_worker *w, const struct dmj_api_request *in)
{
    uint64_t hash = request_hash(in);
    for (h2o_linklist_t *n = w->live.parked.next; n != &w->live.parked; n = n->next) {
        struct dmjd_park_group *g = H2O_STRUCT_FROM_MEMBER(struct dmjd_park_group, link, n);
        if (g->hash == hash && !h2o_linklist_is_empty(&g->members) &&
            same_request(&member_of(g->members.next)->in, in))
            return g;
    }
    struct dmjd_park_group *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->hash = hash;
    h2o_linklist_init_anchor(&g->members);
    h2o_linklist_insert(&w->live.parked, &g->link);
    return g;
}

static void release_slot(struct dmjd_worker *w, char *key)
{
    if (key[0] != '\0' && w->server->slots != NULL)
        dmjd_slots_release(w->server->slots, key);
    key[0] = '\0';
}

static void unpark(struct dmjd_parked *p)
{
    if (!h2o_linklist_is_linked(&p->link))
        return;
    h2o_linklist_unlink(&p->link);
    group_free_if_empty(p->group);
    if (p->conn != NULL)
        p->conn->held--;
    release_slot(p->worker, p->key);
    atomic_fetch_sub_explicit(&p->worker->metrics.parked, 1, memory_order_relaxed);
}

static void on_parked_dispose(void *data)
{
    unpark(data); /* the client went away while it waited */
}

bool dmjd_live_park(struct dmjd_worker *w, h2o_req_t *req, const struct dmj_api_request *in,
                    const struct dmj_api_response *res, uint64_t started)
{
    char key[sizeof(res->stream_key)];
    memcpy(key, res->stream_key, sizeof(key));
    key[sizeof(key) - 1] = '\0';
    struct dmjd_park_group *g = w->draining ? NULL : group_for(w, in);
    if (g == NULL) {
        release_slot(w, key);
        return false;
    }
    struct dmjd_parked *p = h2o_mem_alloc_shared(&req->pool, sizeof(*p), on_parked_dispose);
    memset(p, 0, sizeof(*p));
    p->worker = w;
    p->conn = dmjd_conn_of(req);
    p->req = req;
    copy_request(req, in, &p->in);
    memcpy(p->key, key, sizeof(p->key));
    p->started_us = started;
    p->deadline_us = started + (uint64_t)res->wait_s * 1000000u;
    p->group = g;
    h2o_linklist_insert(&g->members, &p->link);
    if (p->conn != NULL)
        p->conn->held++;
    atomic_fetch_add_explicit(&w->metrics.parked, 1, memory_order_relaxed);
    arm_tick(w);
    return true;
}

static void visit_answer(h2o_linklist_t *node, void *res)
{
    struct dmjd_parked *p = member_of(node);
    unpark(p);
    dmjd_respond_answer(p->worker, p->req, res, p->started_us);
}

static void each_once(h2o_linklist_t *list, void (*visit)(h2o_linklist_t *node, void *arg),
                      void *arg);

/* Asks again for the whole group; answers every member unless it is the same 304 and
 * `final` is false. */
static void reevaluate_group(struct dmjd_park_group *g, bool final)
{
    if (h2o_linklist_is_empty(&g->members))
        return;
    struct dmjd_parked *first = member_of(g->members.next);
    struct dmj_api_response res;
    memset(&res, 0, sizeof(res));
    atomic_fetch_add_explicit(&first->worker->metrics.parked_evaluations, 1,
                              memory_order_relaxed);
    dmj_api_handle(first->worker->api, &first->in, &res);
    if (!final && res.status == 304 && res.wait_s > 0)
        return;
    /* The body lives until the next dmj_api_handle: every member is answered before it. */
    g->visiting = true;
    each_once(&g->members, visit_answer, &res);
    g->visiting = false;
    group_free_if_empty(g);
}

/* One member whose time is up (or whose client left) gets its own final answer. */
static void reevaluate_one(struct dmjd_parked *p)
{
    struct dmj_api_response res;
    memset(&res, 0, sizeof(res));
    dmj_api_handle(p->worker->api, &p->in, &res);
    unpark(p);
    dmjd_respond_answer(p->worker, p->req, &res, p->started_us);
}

/* ---- streams ---------------------------------------------------------------------------- */

static void stream_unlink(struct dmjd_stream *s)
{
    if (h2o_linklist_is_linked(&s->link))
        h2o_linklist_unlink(&s->link);
}

static void stream_finish(struct dmjd_stream *s)
{
    if (s->finished)
        return;
    if (s->sending) {
        s->closing = true;
        return;
    }
    s->finished = true;
    stream_unlink(s);
    h2o_send(s->req, NULL, 0, H2O_SEND_STATE_FINAL);
}

/* A stream owes its client nothing while it waits for changes, and what it sent while h2o
 * holds it: then the connection's send timeout applies as to any answer. */
static void stream_set_waiting(struct dmjd_stream *s, bool waiting)
{
    if (s->conn == NULL || s->waiting == waiting)
        return;
    s->waiting = waiting;
    if (waiting)
        s->conn->held++;
    else
        s->conn->held--;
}

static void stream_send(struct dmjd_stream *s)
{
    h2o_iovec_t buf = h2o_iovec_init(s->buf.data, s->buf.len);
    s->sending = true;
    stream_set_waiting(s, false);
    s->last_send_us = dmjd_now_us();
    h2o_send(s->req, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
}

/* Sends what the stream owes, once h2o has taken the previous send. */
static void stream_pump(struct dmjd_stream *s)
{
    if (s->finished || s->closing)
        return;
    if (s->sending) {
        s->pending = true;
        return;
    }
    s->pending = false;
    dmj_buf_reset(&s->buf);
    int rc = dmj_api_stream_render(s->worker->api, &s->in, &s->st, &s->buf, STREAM_SOFT_MAX);
    if (rc < 0) {
        /* The key lost its access (or the store failed): what was rendered still goes, and
         * the client resumes with Last-Event-ID where it stopped. */
        if (rc != -EACCES)
            dmjd_log("events: ending a stream: %s", dmj_strerror(rc));
        if (s->buf.len > 0)
            stream_send(s);
        stream_finish(s);
        return;
    }
    s->pending = rc == 1;
    if (s->buf.len > 0)
        stream_send(s);
}

static void on_stream_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    struct dmjd_stream *s = H2O_STRUCT_FROM_MEMBER(struct dmjd_stream, gen, gen);
    s->sending = false;
    stream_set_waiting(s, true);
    if (s->closing) {
        s->closing = false;
        stream_finish(s);
    } else if (s->pending) {
        stream_pump(s);
    }
}

static void on_stream_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    struct dmjd_stream *s = H2O_STRUCT_FROM_MEMBER(struct dmjd_stream, gen, gen);
    s->finished = true;
    stream_unlink(s);
}

static void on_stream_dispose(void *data)
{
    struct dmjd_stream *s = data;
    stream_unlink(s);
    stream_set_waiting(s, false);
    atomic_fetch_sub_explicit(&s->worker->metrics.streams, 1, memory_order_relaxed);
    if (s->worker->server->slots != NULL)
        dmjd_slots_release(s->worker->server->slots, s->key);
    dmj_buf_dispose(&s->buf);
}

void dmjd_live_open_stream(struct dmjd_worker *w, h2o_req_t *req, const struct dmj_api_request *in,
                           const struct dmj_api_response *res, uint64_t started)
{
    /* Allocated first: from here on its disposal gives the key's slot back. */
    struct dmjd_stream *s = h2o_mem_alloc_shared(&req->pool, sizeof(*s), on_stream_dispose);
    memset(s, 0, sizeof(*s));
    atomic_fetch_add_explicit(&w->metrics.streams, 1, memory_order_relaxed);
    s->gen.proceed = on_stream_proceed;
    s->gen.stop = on_stream_stop;
    s->worker = w;
    s->conn = dmjd_conn_of(req);
    stream_set_waiting(s, true);
    s->req = req;
    copy_request(req, in, &s->in);
    s->st = res->stream;
    memcpy(s->key, res->stream_key, sizeof(s->key));
    s->key[sizeof(s->key) - 1] = '\0';
    dmj_buf_init(&s->buf, STREAM_BUF_MAX);
    dmjd_respond_stream(w, req, res, &s->gen);
    dmjd_respond_log(w, req, res->endpoint, res->status, 0, started);
    h2o_linklist_insert(&w->live.streams, &s->link);
    if (w->draining) {
        stream_finish(s);
        return;
    }
    arm_tick(w);
    /* A resumed stream owes the changes it missed; a new one owes nothing yet. */
    stream_pump(s);
    if (!s->sending && !s->finished) {
        dmj_buf_reset(&s->buf);
        if (dmj_buf_add(&s->buf, hello_line, sizeof(hello_line) - 1) == 0)
            stream_send(s);
    }
}

/* HTTP/1: h2o does not read the connection while it answers, so a client that went away
 * shows only when a write fails - up to a keep-alive later. A peek at the socket tells at
 * once (end of stream or an error; bytes of a next request are left where they are). */
static bool client_gone(h2o_req_t *req, uint64_t *peeked_us, uint64_t now)
{
    if (req->version >= 0x200)
        return false; /* h2o reads HTTP/2 connections throughout and stops the stream */
    if (now - *peeked_us < PEEK_EVERY_US)
        return false;
    *peeked_us = now;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    int fd = sock != NULL ? h2o_socket_get_fd(sock) : -1;
    if (fd < 0)
        return false;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void stream_keepalive(struct dmjd_stream *s, uint64_t now)
{
    if (s->finished || s->closing)
        return;
    if (client_gone(s->req, &s->peeked_us, now)) {
        stream_finish(s); /* the write fails, and h2o lets go of the request */
        return;
    }
    if (s->sending)
        return; /* the connection's send timeout watches a client that stops reading */
    if (now - s->last_send_us < s->worker->server->keepalive_us)
        return;
    dmj_buf_reset(&s->buf);
    if (dmj_buf_add(&s->buf, keepalive_line, sizeof(keepalive_line) - 1) == 0)
        stream_send(s);
}

/* ---- the worker's side ------------------------------------------------------------------ */

/* Visits every entry of `list` once, even when a visit answers, ends or frees others (an
 * HTTP/2 connection torn down while sending): entries move to a private list first and are
 * put back one at a time before their visit, so a disposed one unlinks itself from wherever
 * it is and is never visited after. */
static void each_once(h2o_linklist_t *list, void (*visit)(h2o_linklist_t *node, void *arg),
                      void *arg)
{
    h2o_linklist_t todo;
    h2o_linklist_init_anchor(&todo);
    h2o_linklist_insert_list(&todo, list);
    while (!h2o_linklist_is_empty(&todo)) {
        h2o_linklist_t *node = todo.next;
        h2o_linklist_unlink(node);
        h2o_linklist_insert(list, node);
        visit(node, arg);
    }
}

static struct dmjd_stream *stream_of(h2o_linklist_t *node)
{
    return H2O_STRUCT_FROM_MEMBER(struct dmjd_stream, link, node);
}

static struct dmjd_park_group *group_of(h2o_linklist_t *node)
{
    return H2O_STRUCT_FROM_MEMBER(struct dmjd_park_group, link, node);
}

static void visit_changed(h2o_linklist_t *node, void *final)
{
    reevaluate_group(group_of(node), *(bool *)final);
}

static void visit_member_due(h2o_linklist_t *node, void *now)
{
    struct dmjd_parked *p = member_of(node);
    uint64_t t = *(uint64_t *)now;
    if (t >= p->deadline_us || client_gone(p->req, &p->peeked_us, t))
        reevaluate_one(p);
}

static void visit_due(h2o_linklist_t *node, void *now)
{
    struct dmjd_park_group *g = group_of(node);
    g->visiting = true;
    each_once(&g->members, visit_member_due, now);
    g->visiting = false;
    group_free_if_empty(g);
}

static void visit_pump(h2o_linklist_t *node, void *arg)
{
    stream_pump(stream_of(node));
}

static void visit_keepalive(h2o_linklist_t *node, void *now)
{
    stream_keepalive(stream_of(node), *(uint64_t *)now);
}

static void visit_finish(h2o_linklist_t *node, void *arg)
{
    stream_finish(stream_of(node));
}

void dmjd_live_wake(struct dmjd_worker *w)
{
    bool final = false;
    each_once(&w->live.parked, visit_changed, &final);
    each_once(&w->live.streams, visit_pump, NULL);
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    struct dmjd_worker *w = H2O_STRUCT_FROM_MEMBER(struct dmjd_worker, live.tick, entry);
    uint64_t now = dmjd_now_us();
    each_once(&w->live.parked, visit_due, &now);
    each_once(&w->live.streams, visit_keepalive, &now);
    arm_tick(w);
}

void dmjd_live_end_all(struct dmjd_worker *w)
{
    bool final = true;
    if (h2o_timeout_is_linked(&w->live.tick))
        h2o_timeout_unlink(&w->live.tick);
    each_once(&w->live.parked, visit_changed, &final);
    each_once(&w->live.streams, visit_finish, NULL);
}

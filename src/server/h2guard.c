/** HTTP/2 abuse counted by work: streams a client throws away, whatever they asked.
 *
 * h2o 2.2.5 predates the rapid-reset fixes (CVE-2023-44487): a stream the client resets no
 * longer counts against the 100 it may have open, so HEADERS + RST_STREAM pairs get
 * unbounded work done (a page rendered per pair) without reading any of it. dmjd looks at
 * every frame h2o parses on a connection where it has answered a request: h2o reads frames
 * through the connection's `_read_expect` hook, and dmjd puts its own in front of h2o's.
 *
 * A strike is a RST_STREAM for a stream dmjd has taken up (queued or answering: HEAD, 304,
 * a parked long-poll or an event stream alike) whose answer h2o has not finished, or a
 * HEADERS that opens a stream past the 100 already open (h2o refuses it, after decoding
 * its headers). STRIKE_BUDGET strikes within STRIKE_WINDOW_US and the connection is cut:
 * GOAWAY (ENHANCE_YOUR_CALM), no further frame parsed, closed once the GOAWAY is written
 * (or by the send timeout if the client does not read it). The work done for a connection
 * before its cut is thus at most STRIKE_BUDGET thrown-away answers per window, the same
 * bound nginx 1.25.3 and h2o's later releases put on it. A client that keeps sending frames
 * h2o answers by itself (PING, SETTINGS) while reading nothing is cut too, once h2o holds
 * WRITE_BACKLOG_MAX of answers for it. */
#include <h2o.h>
#include <h2o/http2.h>
#include <h2o/http2_internal.h>

#include "conn.h"
#include "h2guard.h"
#include "metrics.h"
#include "server.h"

#define STRIKE_BUDGET 128u
#define STRIKE_WINDOW_US (10 * 1000000ull)
/* Bytes h2o may hold for a client that reads none of them while it keeps sending frames;
 * an honest client reads its answers, which h2o sends 512 KiB at a time. */
#define WRITE_BACKLOG_MAX ((size_t)4 << 20)

#define FRAME_HEADER 9
#define TYPE_HEADERS 0x1
#define TYPE_RST_STREAM 0x3

typedef ssize_t (*expect_fn)(h2o_http2_conn_t *, const uint8_t *, size_t, const char **);

static struct dmjd_conn *conn_of_h2(h2o_http2_conn_t *h2)
{
    return dmjd_conn_of_sock(h2->sock);
}

static bool stream_is(h2o_req_t *req, void *id)
{
    return H2O_STRUCT_FROM_MEMBER(h2o_http2_stream_t, req, req)->stream_id == *(uint32_t *)id;
}

/* Whether the frame is one the client should not have sent this often. */
static bool is_strike(h2o_http2_conn_t *h2, struct dmjd_conn *c, uint8_t type, uint32_t id)
{
    if (type == TYPE_RST_STREAM) {
        /* a stream dmjd has taken up and h2o has not closed: its answer is unfinished (or
         * finished but not yet written, which an honest client rarely resets either) */
        h2o_req_t *req = dmjd_conn_find_request(c, stream_is, &id);
        return req != NULL && H2O_STRUCT_FROM_MEMBER(h2o_http2_stream_t, req, req)->state <
                                  H2O_HTTP2_STREAM_STATE_END_STREAM;
    }
    if (type == TYPE_HEADERS)
        return (id & 1) != 0 && id > h2->pull_stream_ids.max_open &&
               h2->num_streams.pull.open >= H2O_HTTP2_SETTINGS_HOST.max_concurrent_streams;
    return false;
}

static void cut(h2o_http2_conn_t *h2, struct dmjd_conn *c)
{
    c->cut = true;
    atomic_fetch_add_explicit(&c->worker->metrics.h2_cut, 1, memory_order_relaxed);
    if (h2->state >= H2O_HTTP2_CONN_STATE_IS_CLOSING)
        return;
    h2o_http2_encode_goaway_frame(&h2->_write.buf, h2->pull_stream_ids.max_open,
                                  H2O_HTTP2_ERROR_ENHANCE_YOUR_CALM,
                                  h2o_iovec_init(H2O_STRLIT("too many cancelled streams")));
    h2o_http2_conn_request_write(h2);
    /* h2o's parse loop stops at the next frame; its write path sends the GOAWAY and closes
     * the connection (h2o's own idle-timeout close takes the same path). Nothing more is read. */
    h2->state = H2O_HTTP2_CONN_STATE_IS_CLOSING;
    h2o_socket_read_stop(h2->sock);
}

static ssize_t guard(h2o_http2_conn_t *h2, const uint8_t *src, size_t len, const char **err_desc)
{
    struct dmjd_conn *c = conn_of_h2(h2);
    expect_fn next = (expect_fn)c->h2_next;
    /* Frames that h2o answers by itself (PING, SETTINGS, a reset of a closed stream) queue
     * their answers while the client reads nothing: past WRITE_BACKLOG_MAX it is cut. */
    if (h2->_write.buf != NULL && h2->_write.buf->size > WRITE_BACKLOG_MAX) {
        cut(h2, c);
        return (ssize_t)len;
    }
    if (len < FRAME_HEADER)
        return next(h2, src, len, err_desc);
    size_t flen = (size_t)src[0] << 16 | (size_t)src[1] << 8 | src[2];
    uint32_t id = ((uint32_t)src[5] & 0x7f) << 24 | (uint32_t)src[6] << 16 |
                  (uint32_t)src[7] << 8 | src[8];
    /* Counted once, when h2o is about to parse the whole frame. */
    if (len >= FRAME_HEADER + flen && is_strike(h2, c, src[3], id)) {
        uint64_t now = dmjd_now_us();
        if (now - c->h2_window_us > STRIKE_WINDOW_US) {
            c->h2_window_us = now;
            c->h2_strikes = 0;
        }
        if (++c->h2_strikes > STRIKE_BUDGET) {
            cut(h2, c);
            return (ssize_t)(FRAME_HEADER + flen);
        }
    }
    return next(h2, src, len, err_desc);
}

void dmjd_h2guard_watch(h2o_req_t *req, struct dmjd_conn *c)
{
    if (req->version < 0x200 || c == NULL)
        return;
    h2o_http2_conn_t *h2 = (h2o_http2_conn_t *)req->conn;
    /* h2o puts its own reader back after a header block split into CONTINUATION frames;
     * every request dmjd takes up puts the guard in front again. */
    if (h2->_read_expect != guard) {
        c->h2_next = (void (*)(void))h2->_read_expect;
        h2->_read_expect = guard;
    }
}

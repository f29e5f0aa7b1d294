/* Change streams in the API: `running`'s `wait` parameter, and `events/` - opening a stream
 * (Last-Event-ID, the per-key bound) and rendering the team's changes as Server-Sent Events. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dmj/json.h"
#include "dmj/query.h"
#include "dmj/store.h"
#include "dmj/time.h"
#include "dmj/uuid.h"
#include "number.h"

#include "api_internal.h"

#define WAIT_MAX_S 60
/* Seconds a client refused a stream is told to wait: slots free when streams end, which the
 * server cannot foresee; a second keeps a reconnecting EventSource from hammering. */
#define STREAM_RETRY_S 1

#define MSG_INVALID_INT "A valid integer is required."

/* A non-negative integer in the spec's grammar; false for anything else (empty, NUL). `*neg`
 * tells a well-formed negative number, `*huge` one past int64 (then *out is UINT64_MAX). */
static bool parse_count(const char *s, size_t n, uint64_t *out, bool *neg, bool *huge)
{
    long long v;
    bool overflow = false;
    *neg = false;
    *huge = false;
    if (n == 0 || memchr(s, '\0', n) != NULL || dmj_parse_int(s, n, &v, &overflow) != 0)
        return false;
    if (v < 0) {
        *neg = true;
        return false;
    }
    *huge = overflow;
    *out = overflow ? UINT64_MAX : (uint64_t)v;
    return true;
}

int dmj__api_wait_param(struct dmj__api_ctx *c, unsigned *out)
{
    /* An unparsable query (too many fields) was never looked at by `running` before: it
     * keeps being answered at once rather than becoming an error. */
    const struct dmj_query *q = dmj__api_query(c);
    const struct dmj_query_param *p = q != NULL ? dmj_query_last(q, "wait") : NULL;
    uint64_t v;
    bool neg, huge;

    *out = 0;
    if (p == NULL)
        return 0;
    if (!parse_count(p->value, p->value_len, &v, &neg, &huge)) {
        if (neg)
            dmj__api_invalid_param(c, "min_value",
                                   "Ensure this value is greater than or equal to 0.", "wait");
        else
            dmj__api_invalid_param(c, "invalid", MSG_INVALID_INT, "wait");
        return 1;
    }
    if (v > WAIT_MAX_S) {
        dmj__api_invalid_param(c, "max_value", "Ensure this value is less than or equal to 60.",
                               "wait");
        return 1;
    }
    *out = (unsigned)v;
    return 0;
}

/* DRF's metadata shape, for a view that renders an event stream. */
static const char meta_events[] =
    "{\"name\":\"Events\",\"description\":\"Server-Sent Events of the team's job changes "
    "(created, status_changed, deleted), resumable with Last-Event-ID.\","
    "\"renders\":[\"text/event-stream\"],\"parses\":[\"application/json\","
    "\"application/x-www-form-urlencoded\",\"multipart/form-data\"]}";

/* Where a stream resumes: Last-Event-ID, else ?last_event_id=; empty counts as absent.
 * Returns 0 (with *has), or 1 when `res` holds the error. */
static int resume_point(struct dmj__api_ctx *c, bool *has, uint64_t *seq)
{
    const struct dmj_str *h = &c->req->last_event_id;
    const char *s = NULL;
    size_t n = 0;
    bool neg, huge;

    *has = false;
    if (h->ptr != NULL && h->len > 0) {
        s = h->ptr;
        n = h->len;
    } else {
        const struct dmj_query *q = dmj__api_query(c);
        if (q == NULL) {
            dmj__api_internal(c, DMJ_ETOOBIG);
            return 1;
        }
        const struct dmj_query_param *p = dmj_query_last(q, "last_event_id");
        if (p == NULL || p->value_len == 0)
            return 0;
        s = p->value;
        n = p->value_len;
    }
    /* Seqs are counted from 1 and never reach 2^63: a larger id is no id of ours. */
    if (!parse_count(s, n, seq, &neg, &huge) || huge) {
        dmj__api_invalid_param(c, "invalid", MSG_INVALID_INT, "last_event_id");
        return 1;
    }
    *has = true;
    return 0;
}

void dmj__api_events(struct dmj__api_ctx *c)
{
    struct dmj_api_response *res = c->res;
    uint64_t oldest = 0, newest = 0, seq = 0;
    bool has = false;

    if (c->method == DMJ__API_OPTIONS) {
        res->status = 200;
        res->json = true;
        res->body = meta_events;
        res->body_len = sizeof meta_events - 1;
        return;
    }
    if (resume_point(c, &has, &seq) != 0)
        return;
    int rc = dmj_read_change_bounds(c->w->read, c->team.id, &oldest, &newest);
    if (rc != 0) {
        dmj__api_internal(c, rc);
        return;
    }
    struct dmj_api_stream *st = &res->stream;
    memset(st, 0, sizeof *st);
    st->team_id = c->team.id;
    /* Without a resume point only what happens from now on is sent. */
    st->after_seq = has ? seq : newest;
    if (has && oldest > 0 && seq < oldest - 1) {
        st->reset = true;
        st->oldest = oldest;
    }
    /* An id this store never gave out in the team (the client followed another replica, whose
     * seqs are its own, or the store was restored from a backup): resuming after it would skip
     * every change until the team's seqs catch up, so it is told to start over, from now. */
    if (has && seq > newest) {
        st->reset = true;
        st->oldest = oldest;
        st->after_seq = newest;
    }
    if (c->method == DMJ__API_GET && c->w->cfg.stream_acquire != NULL) {
        unsigned wait = c->w->cfg.stream_acquire(c->w->cfg.stream_ctx, c->w->key.secure_value);
        if (wait > 0) {
            dmj__api_throttled(c, wait < STREAM_RETRY_S ? STREAM_RETRY_S : wait);
            return;
        }
    }
    res->status = 200;
    res->json = false;
    res->event_stream = true;
    res->body = "";
    res->body_len = 0;
    if (c->method == DMJ__API_GET) {
        res->stream_open = true;
        snprintf(res->stream_key, sizeof res->stream_key, "%s", c->w->key.secure_value);
    }
}

static const char *kind_name(enum dmj_change_kind k)
{
    switch (k) {
    case DMJ_CHANGE_CREATED:
        return "created";
    case DMJ_CHANGE_STATUS:
        return "status_changed";
    case DMJ_CHANGE_DELETED:
        return "deleted";
    }
    return "changed";
}

static int add_status(struct dmj_buf *out, enum dmj_status s)
{
    const char *name = dmj_status_name(s);
    return dmj_json_add_string(out, (struct dmj_str){name, name ? strlen(name) : 0});
}

/* One event: id, event and one line of JSON data; the job as retrieve renders it now (null
 * once deleted, or when it is gone or in another team now). */
static int add_event(struct dmj_read *read, struct dmj_buf *out, const struct dmj_change *ch,
                     bool current)
{
    char id[DMJ_UUID_TEXT_LEN + 1], at[DMJ_TIME_TEXT_MAX];
    const char *kind = kind_name(ch->kind);
    struct dmj_job job;
    int rc;

    dmj_uuid_format(ch->job_id, id);
    dmj_time_format_drf(ch->at_us, at);
    rc = dmj_buf_printf(out,
                        "id: %" PRIu64 "\nevent: %s\ndata: {\"seq\":%" PRIu64
                        ",\"type\":\"%s\",\"job_id\":\"%s\",\"status\":",
                        ch->seq, kind, ch->seq, kind, id);
    if (rc == 0)
        rc = add_status(out, ch->status);
    if (rc == 0)
        rc = dmj_buf_adds(out, ",\"previous_status\":");
    if (rc == 0)
        rc = ch->kind == DMJ_CHANGE_STATUS ? add_status(out, ch->previous)
                                           : dmj_buf_adds(out, "null");
    if (rc == 0)
        rc = dmj_buf_printf(out, ",\"at\":\"%s\",\"job\":", at);
    if (rc != 0)
        return rc;
    int found = DMJ_ENOTFOUND;
    if (ch->kind != DMJ_CHANGE_DELETED)
        found = dmj_read_job(read, ch->job_id, &job);
    if (found == 0 && job.team_id != ch->team_id)
        found = DMJ_ENOTFOUND;
    if (found == 0)
        rc = current ? dmj_json_add_job_current(out, &job) : dmj_json_add_job(out, &job);
    else if (found == DMJ_ENOTFOUND)
        rc = dmj_buf_adds(out, "null");
    else
        rc = found;
    if (rc == 0)
        rc = dmj_buf_adds(out, "}\n\n");
    return rc;
}

/* Appends what `st` owes (a reset, then changes in seq order) until `soft_max`. */
static int render_changes(struct dmj_read *read, struct dmj_api_stream *st, struct dmj_buf *out,
                          size_t soft_max, bool current)
{
    int rc;

    if (st->reset) {
        rc = dmj_buf_printf(out, "event: reset\ndata: {\"oldest\":%" PRIu64 "}\n\n", st->oldest);
        if (rc != 0)
            return rc;
        st->reset = false;
    }
    for (;;) {
        if (out->len >= soft_max)
            return 1;
        struct dmj_change ch;
        rc = dmj_read_change_next(read, st->team_id, st->after_seq, &ch);
        if (rc == DMJ_EEND)
            return 0;
        if (rc == 0 && ch.seq <= st->after_seq)
            rc = DMJ_EBADRECORD; /* a log that goes backwards would loop forever */
        if (rc != 0)
            return rc;
        size_t mark = out->len;
        rc = add_event(read, out, &ch, current);
        if (rc != 0) {
            /* No half event: the stream's framing stays whole. */
            out->len = mark;
            if (out->data != NULL)
                out->data[mark] = '\0';
            return rc;
        }
        st->after_seq = ch.seq;
    }
}

int dmj_api_stream_render(struct dmj_api_worker *w, const struct dmj_api_request *req,
                          struct dmj_api_stream *st, struct dmj_buf *out, size_t soft_max)
{
    struct dmj__api_ctx c;
    struct dmj_api_response res;

    memset(&c, 0, sizeof c);
    c.w = w;
    c.req = req;
    c.res = &res;
    if (dmj__api_recheck(&c) != 0)
        return -EACCES;
    int rc = -EACCES;
    /* The same team as when it opened (an @current that moves ends the stream). */
    if (c.events && c.method == DMJ__API_GET && c.team.id == st->team_id)
        rc = render_changes(w->read, st, out, soft_max, w->cfg.generation == DMJ_API_OFFSET);
    dmj_read_end(w->read);
    return rc;
}

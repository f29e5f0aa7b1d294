/* Unit tests of the events/ stream (dmj_api_stream_render) over the fixture store in a temp
 * dir: a stream opened through dmj_api_handle, the team's changes after its seq as
 * Server-Sent Events (another team's never), resumption from a seq, and -EACCES once the key
 * loses access. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "dmj/api.h"
#include "dmj/store.h"
#include "fixture.h"
#include "tmpdir.h"

#define EVENTS "/api/environments/1/data_modeling_jobs/events/"
#define NEW_ID "10000000-0000-4000-8000-0000000000aa"
#define TEAM2_NEW_ID "20000000-0000-4000-8000-0000000000bb"

static struct dmj_api_request make_request(const char *auth, const char *last_event_id)
{
    struct dmj_api_request q = fixture_request("GET", EVENTS, NULL, auth, "testserver");
    q.last_event_id = fixture_str(last_event_id);
    return q;
}

/* Writes one job (and, when `key_scope` is set, K_READ again with that scope) and commits. */
static int commit_job(struct dmj_store *s, const char *id, int32_t team, enum dmj_status st,
                      const char *key_scope)
{
    struct dmj_write *w;
    int rc = dmj_write_begin(s, &w);
    if (rc)
        return rc;
    if (id) {
        struct dmj_job j = fixture_job(id, team, SQ_A, st, 20, "materialize-a");
        rc = dmj_write_job(w, &j);
    }
    if (rc == 0 && key_scope)
        rc = fixture_key(w, K_READ, 1, key_scope, 0, NULL);
    if (rc) {
        dmj_write_abort(w);
        return rc;
    }
    return dmj_write_commit(w, NULL);
}

static unsigned count(const char *hay, const char *needle)
{
    unsigned n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void run(struct dmj_store *store)
{
    struct dmj_api_worker *w;
    struct dmj_api_config cfg = {.max_limit = 1000};
    struct dmj_api_response res;
    struct dmj_buf out;
    CHECK_EQ_INT(dmj_api_worker_new(store, &cfg, &w), 0);
    dmj_buf_init(&out, 1 << 20);

    /* Opened without a resume point: it starts with the next change. */
    struct dmj_api_request q = make_request("Bearer " K_READ, NULL);
    dmj_api_handle(w, &q, &res);
    CHECK_EQ_INT(res.status, 200);
    CHECK(res.stream_open && res.event_stream);
    struct dmj_api_stream st = res.stream;
    CHECK_EQ_INT(st.team_id, 1);
    uint64_t opened_at = st.after_seq;
    CHECK_EQ_INT(dmj_api_stream_render(w, &q, &st, &out, 1 << 16), 0);
    CHECK_EQ_INT(out.len, 0);

    /* A job of team 1 created, then its status changed, and one of team 2. */
    CHECK_EQ_INT(commit_job(store, NEW_ID, 1, DMJ_STATUS_RUNNING, NULL), 0);
    CHECK_EQ_INT(commit_job(store, TEAM2_NEW_ID, 2, DMJ_STATUS_RUNNING, NULL), 0);
    CHECK_EQ_INT(commit_job(store, NEW_ID, 1, DMJ_STATUS_COMPLETED, NULL), 0);
    CHECK_EQ_INT(dmj_api_stream_render(w, &q, &st, &out, 1 << 16), 0);
    const char *text = out.len ? out.data : "";
    CHECK_EQ_INT(count(text, "\nevent: created\n"), 1);
    CHECK_EQ_INT(count(text, "\nevent: status_changed\n"), 1);
    CHECK_EQ_INT(count(text, "id: "), 2);
    CHECK(strstr(text, NEW_ID) != NULL);
    CHECK(strstr(text, TEAM2_NEW_ID) == NULL);
    CHECK(strstr(text, "\"status\":\"Completed\",\"previous_status\":\"Running\"") != NULL);
    CHECK(st.after_seq > opened_at);
    /* The first event's id, to resume after it. */
    unsigned long long first = 0;
    CHECK(sscanf(text, "id: %llu", &first) == 1);
    CHECK(first > opened_at && first < st.after_seq);

    /* Nothing new: nothing written, the position kept. */
    uint64_t at = st.after_seq;
    dmj_buf_reset(&out);
    CHECK_EQ_INT(dmj_api_stream_render(w, &q, &st, &out, 1 << 16), 0);
    CHECK_EQ_INT(out.len, 0);
    CHECK_EQ_INT(st.after_seq, at);

    /* Resumed after the first event: only the status change. */
    char resume[32];
    snprintf(resume, sizeof resume, "%llu", first);
    struct dmj_api_request q2 = make_request("Bearer " K_READ, resume);
    dmj_api_handle(w, &q2, &res);
    CHECK_EQ_INT(res.status, 200);
    CHECK(res.stream_open);
    struct dmj_api_stream st2 = res.stream;
    CHECK_EQ_INT(st2.after_seq, first);
    dmj_buf_reset(&out);
    CHECK_EQ_INT(dmj_api_stream_render(w, &q2, &st2, &out, 1 << 16), 0);
    text = out.len ? out.data : "";
    CHECK_EQ_INT(count(text, "id: "), 1);
    CHECK_EQ_INT(count(text, "\nevent: status_changed\n"), 1);
    CHECK_EQ_INT(st2.after_seq, st.after_seq);

    /* A soft maximum smaller than one event: one event a call, 1 until the last call. */
    struct dmj_api_stream st3 = {.team_id = 1, .after_seq = opened_at};
    unsigned calls = 0, events = 0;
    int rc;
    do {
        dmj_buf_reset(&out);
        rc = dmj_api_stream_render(w, &q, &st3, &out, 1);
        unsigned n = out.len ? count(out.data, "id: ") : 0;
        CHECK(n <= 1);
        events += n;
    } while (rc == 1 && ++calls < 5);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(events, 2);
    CHECK_EQ_INT(st3.after_seq, st.after_seq);

    /* Another team's stream state on this team's request is refused. */
    struct dmj_api_stream other = {.team_id = 2, .after_seq = opened_at};
    dmj_buf_reset(&out);
    CHECK_EQ_INT(dmj_api_stream_render(w, &q, &other, &out, 1 << 16), -EACCES);

    /* The key loses its scope: the open stream ends with -EACCES, nothing written. */
    CHECK_EQ_INT(commit_job(store, NULL, 0, DMJ_STATUS_RUNNING, "insight:read"), 0);
    CHECK_EQ_INT(commit_job(store, NEW_ID, 1, DMJ_STATUS_FAILED, NULL), 0);
    dmj_buf_reset(&out);
    CHECK_EQ_INT(dmj_api_stream_render(w, &q, &st, &out, 1 << 16), -EACCES);
    CHECK_EQ_INT(out.len, 0);
    /* And a key that never existed is refused too. */
    struct dmj_api_request q3 = make_request("Bearer phx_no_such_key", NULL);
    CHECK_EQ_INT(dmj_api_stream_render(w, &q3, &st2, &out, 1 << 16), -EACCES);

    dmj_buf_dispose(&out);
    dmj_api_worker_free(w);
}

int main(void)
{
    char dir[64];
    struct dmj_store *store;
    if (fixture_make("dmj-test-stream-", dir, sizeof dir, &store) != 0) {
        fprintf(stderr, "could not build the fixture store\n");
        return 1;
    }
    run(store);
    dmj_store_close(store);
    tmpdir_remove(dir);
    return check_done();
}

/* Randomized test of the store against an in-memory model: upserts, deletes, aborts and
 * small batches, then every walk, look-up and verify compared with what the model says. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tmpdir.h"
#include "dmj/store.h"

#define IDS 300
#define TEAMS 3
#define ROUNDS 60

struct model_job {
    bool present;
    struct dmj_job j;
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static void make_id(uint8_t id[16], unsigned n)
{
    /* spread over the id space so that batches interleave with stored ids */
    memset(id, 0, 16);
    id[0] = (uint8_t)(n * 37);
    id[1] = (uint8_t)(n >> 8);
    id[15] = (uint8_t)n;
}

static struct dmj_job random_job(unsigned n)
{
    struct dmj_job j;
    memset(&j, 0, sizeof j);
    make_id(j.id, n);
    j.team_id = 1 + (int32_t)rnd(TEAMS);
    j.created_at = (int64_t)rnd(40) - 5; /* many ties, some negative */
    j.status = (enum dmj_status)rnd(DMJ_STATUS_COUNT);
    unsigned sq = rnd(4);
    if (sq) {
        j.has_saved_query_id = true;
        j.saved_query_id[0] = (uint8_t)(sq * 50);
    }
    if (rnd(10) == 0) {
        j.engine.ptr = "duckgres";
        j.engine.len = 8;
    }
    j.rows_materialized = rnd(1000);
    return j;
}

static bool hidden(const struct dmj_job *j)
{
    return j->engine.ptr && j->engine.len == 8 && memcmp(j->engine.ptr, "duckgres", 8) == 0;
}

/* (created_at, id) order */
static int cmp_jobs(const void *a, const void *b)
{
    const struct dmj_job *x = *(const struct dmj_job *const *)a;
    const struct dmj_job *y = *(const struct dmj_job *const *)b;
    if (x->created_at != y->created_at)
        return x->created_at < y->created_at ? -1 : 1;
    return memcmp(x->id, y->id, 16);
}

static bool matches(const struct dmj_job *j, const struct dmj_walk_spec *sp)
{
    if (j->team_id != sp->team_id || hidden(j))
        return false;
    if (sp->index == DMJ_WALK_SAVED_QUERY &&
        (!j->has_saved_query_id || memcmp(j->saved_query_id, sp->saved_query_id, 16) != 0))
        return false;
    if (sp->index == DMJ_WALK_STATUS && j->status != sp->status)
        return false;
    if (sp->has_bound && sp->descending && j->created_at >= sp->bound_us)
        return false;
    if (sp->has_bound && !sp->descending && j->created_at <= sp->bound_us)
        return false;
    return true;
}

static unsigned check_walk(struct dmj_read *r, struct model_job *m, const struct dmj_walk_spec *sp)
{
    const struct dmj_job *want[IDS];
    unsigned n = 0, bad = 0;
    for (unsigned i = 0; i < IDS; i++)
        if (m[i].present && matches(&m[i].j, sp))
            want[n++] = &m[i].j;
    qsort(want, n, sizeof want[0], cmp_jobs);
    struct dmj_walk w;
    struct dmj_job got;
    if (dmj_walk_start(r, sp, &w) != 0)
        return 1;
    for (unsigned k = 0; k < n; k++) {
        const struct dmj_job *e = want[sp->descending ? n - 1 - k : k];
        if (dmj_walk_next(&w, &got) != 0)
            return bad + 1;
        bad += memcmp(got.id, e->id, 16) != 0 || got.created_at != e->created_at ||
               got.status != e->status || got.rows_materialized != e->rows_materialized;
    }
    bad += dmj_walk_next(&w, &got) != DMJ_EEND;
    return bad;
}

static void check_all(struct dmj_store *s, struct dmj_read *r, struct model_job *m)
{
    unsigned bad = 0;
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    for (int32_t team = 0; team <= TEAMS + 1; team++) {
        for (int dir = 0; dir < 2; dir++) {
            struct dmj_walk_spec sp = {.team_id = team, .descending = dir};
            for (int b = 0; b < 3; b++) {
                sp.has_bound = b > 0;
                sp.bound_us = (int64_t)rnd(44) - 7;
                sp.index = DMJ_WALK_TEAM;
                bad += check_walk(r, m, &sp);
                sp.index = DMJ_WALK_STATUS;
                for (unsigned st = 0; st < DMJ_STATUS_COUNT; st++) {
                    sp.status = (enum dmj_status)st;
                    bad += check_walk(r, m, &sp);
                }
                sp.index = DMJ_WALK_SAVED_QUERY;
                for (unsigned q = 1; q < 4; q++) {
                    memset(sp.saved_query_id, 0, 16);
                    sp.saved_query_id[0] = (uint8_t)(q * 50);
                    bad += check_walk(r, m, &sp);
                }
            }
        }
        /* the saved queries the team's stored jobs have (hidden ones included) */
        bool want[4] = {false};
        for (unsigned i = 0; i < IDS; i++)
            if (m[i].present && m[i].j.team_id == team && m[i].j.has_saved_query_id)
                want[m[i].j.saved_query_id[0] / 50] = true;
        uint8_t sq[16], prev[16];
        const uint8_t *after = NULL;
        for (unsigned q = 1; q < 4; q++) {
            if (!want[q])
                continue;
            bad += dmj_read_next_saved_query(r, team, after, sq) != 0 || sq[0] != q * 50;
            memcpy(prev, sq, 16);
            after = prev;
        }
        bad += dmj_read_next_saved_query(r, team, after, sq) != DMJ_EEND;
    }
    for (unsigned i = 0; i < IDS; i++) {
        uint8_t id[16];
        struct dmj_job got;
        make_id(id, i);
        int rc = dmj_read_job(r, id, &got);
        if (m[i].present && !hidden(&m[i].j))
            bad += rc != 0 || got.created_at != m[i].j.created_at || got.team_id != m[i].j.team_id;
        else
            bad += rc != DMJ_ENOTFOUND;
    }
    dmj_read_end(r);
    CHECK_EQ_INT(bad, 0);
}

int main(void)
{
    char root[64];
    if (tmpdir_make("dmj_test_model.", root, sizeof root) != 0)
        return 1;
    struct dmj_store *s;
    struct dmj_read *r;
    static struct model_job model[IDS], next[IDS];
    CHECK_EQ_INT(dmj_store_open(root, 0, 1 << 26, &s), 0);
    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    uint64_t total_ins = 0, total_rep = 0;
    for (int round = 0; round < ROUNDS; round++) {
        /* one round in three: one batch and no deletes, where the counts must be exact */
        bool exact = rnd(3) == 0;
        char batch[16];
        snprintf(batch, sizeof batch, "%u", exact ? 1000 : 1 + rnd(60));
        setenv("DMJ_WRITE_BATCH", batch, 1);
        struct dmj_write *w;
        CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
        memcpy(next, model, sizeof model);
        bool touched[IDS] = {false};
        unsigned ops = 1 + rnd(150);
        for (unsigned o = 0; o < ops; o++) {
            unsigned i = rnd(IDS);
            if (!exact && rnd(8) == 0) {
                uint8_t id[16];
                make_id(id, i);
                int rc = dmj_write_delete_job(w, id);
                CHECK_EQ_INT(rc, next[i].present ? 0 : DMJ_ENOTFOUND);
                next[i].present = false;
            } else {
                struct dmj_job j = random_job(i);
                CHECK_EQ_INT(dmj_write_job(w, &j), 0);
                next[i].present = true;
                next[i].j = j;
                touched[i] = true;
            }
        }
        uint64_t ins = 0, rep = 0;
        for (unsigned i = 0; i < IDS; i++) {
            ins += touched[i] && !model[i].present;
            rep += touched[i] && model[i].present;
        }
        if (rnd(5) == 0) {
            dmj_write_abort(w);
        } else {
            struct dmj_write_stats st;
            CHECK_EQ_INT(dmj_write_commit(w, &st), 0);
            if (exact) {
                CHECK_EQ_INT(st.inserted, ins);
                CHECK_EQ_INT(st.replaced, rep);
            }
            total_ins += st.inserted;
            total_rep += st.replaced;
            memcpy(model, next, sizeof model);
        }
        check_all(s, r, model);
    }
    unsetenv("DMJ_WRITE_BATCH");
    printf("inserted %llu, replaced %llu\n", (unsigned long long)total_ins,
           (unsigned long long)total_rep);
    dmj_read_free(r);
    dmj_store_close(s);
    if (tmpdir_remove(root) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return check_done();
}

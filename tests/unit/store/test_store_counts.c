/* Unit tests of the store's job counters (store_counts.c): after every kind of write (new,
 * replaced with another status, saved query, team or engine, deleted, put twice in a batch,
 * batches of several flushes) dmj_read_count equals a count of the jobs themselves, and
 * dmj verify agrees; a commit by a writer that does not keep them (a raw LMDB write) makes
 * them untrusted (DMJ_ENOTFOUND) until the next write counts every job again, and verify
 * finds a damaged counter. */
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "rawdb.h"
#include "tmpdir.h"
#include "dmj/store.h"

#define NJOBS 600
#define NTEAMS 3
#define NSQ 4

struct model {
    bool present;
    int32_t team;
    int sq; /* -1: none */
    enum dmj_status status;
    bool hidden;
};

static struct model jobs[NJOBS];

static void sq_of(int i, uint8_t out[16])
{
    memset(out, 0x5a, 16);
    out[15] = (uint8_t)i;
}

static void fill(struct dmj_job *j, int i)
{
    memset(j, 0, sizeof *j);
    memset(j->id, 0, 16);
    j->id[0] = (uint8_t)(i >> 8);
    j->id[1] = (uint8_t)i;
    j->id[6] = 0x40;
    j->team_id = jobs[i].team;
    j->has_saved_query_id = jobs[i].sq >= 0;
    if (jobs[i].sq >= 0)
        sq_of(jobs[i].sq, j->saved_query_id);
    j->status = jobs[i].status;
    j->created_at = 1700000000000000 + (int64_t)(i % 97) * 1000;
    if (jobs[i].hidden)
        j->engine = (struct dmj_str){"duckgres", 8};
}

static uint64_t expect(int32_t team, int sq, unsigned statuses)
{
    uint64_t n = 0;
    for (int i = 0; i < NJOBS; i++) {
        const struct model *m = &jobs[i];
        if (!m->present || m->hidden || m->team != team)
            continue;
        if (sq >= 0 && m->sq != sq)
            continue;
        if (statuses && !(statuses & (1u << m->status)))
            continue;
        n++;
    }
    return n;
}

/* Every counter against the model; returns the number that differ. */
static int compare(struct dmj_store *s)
{
    struct dmj_read *r;
    int bad = 0;
    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    for (int32_t team = 1; team <= NTEAMS + 1; team++) {
        uint64_t n = 99999;
        CHECK_EQ_INT(dmj_read_count(r, team, NULL, &n), 0);
        bad += n != expect(team, -1, 0);
        for (int q = 0; q < NSQ; q++) {
            struct dmj_count_spec cs = {.has_saved_query_id = true};
            sq_of(q, cs.saved_query_id);
            CHECK_EQ_INT(dmj_read_count(r, team, &cs, &n), 0);
            bad += n != expect(team, q, 0);
        }
        for (unsigned set = 1; set < (1u << DMJ_STATUS_COUNT); set += 3) {
            struct dmj_count_spec cs = {.statuses = set};
            CHECK_EQ_INT(dmj_read_count(r, team, &cs, &n), 0);
            bad += n != expect(team, -1, set);
        }
    }
    struct dmj_count_spec both = {.has_saved_query_id = true, .statuses = 1};
    uint64_t n;
    CHECK_EQ_INT(dmj_read_count(r, 1, &both, &n), DMJ_EINVAL);
    dmj_read_end(r);
    dmj_read_free(r);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    return bad;
}

static void put(struct dmj_write *w, int i)
{
    struct dmj_job j;
    jobs[i].present = true;
    fill(&j, i);
    CHECK_EQ_INT(dmj_write_job(w, &j), 0);
}

static void del(struct dmj_write *w, int i)
{
    struct dmj_job j;
    fill(&j, i);
    CHECK_EQ_INT(dmj_write_delete_job(w, j.id), 0);
    jobs[i].present = false;
}

/* A commit the counters do not see: a meta entry and a wrong counter written with LMDB alone
 * (`trusted`: marking the counters as this commit's, as only a writer keeping them does). */
static void raw_write(const char *dir, bool trusted)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_env *env = rawdb_begin(dir, "meta", 0, &txn, &dbi);
    CHECK(env != NULL);
    MDB_val k = {10, "sync.other"}, v = {1, "x"};
    CHECK_EQ_INT(mdb_put(txn, dbi, &k, &v, 0), 0);
    /* and a counter damaged on the way, which the recount replaces */
    uint8_t key[11] = {'c', 'o', 'u', 'n', 't', '.', 't', 0x80, 0, 0, 1};
    uint8_t val[8] = {0, 0, 0, 0, 0, 0, 0x10, 0};
    k = (MDB_val){sizeof key, key};
    v = (MDB_val){sizeof val, val};
    CHECK_EQ_INT(mdb_put(txn, dbi, &k, &v, 0), 0);
    if (trusted) {
        uint8_t id[8];
        uint64_t t = (uint64_t)mdb_txn_id(txn);
        for (int i = 7; i >= 0; i--, t >>= 8)
            id[i] = (uint8_t)t;
        k = (MDB_val){10, "counts_txn"};
        v = (MDB_val){8, id};
        CHECK_EQ_INT(mdb_put(txn, dbi, &k, &v, 0), 0);
    }
    CHECK_EQ_INT(rawdb_commit(env, txn), 0);
}

int main(void)
{
    char root[64], dir[128];
    struct dmj_store *s;
    struct dmj_write *w;
    unsigned seed = 7;
    if (tmpdir_make("dmj_test_store_counts.", root, sizeof root) != 0) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(dir, sizeof dir, "%s/db", root);
    setenv("DMJ_WRITE_BATCH", "64", 1); /* several flushes per commit */
    CHECK_EQ_INT(dmj_store_open(dir, 0, 1 << 26, &s), 0);
    CHECK_EQ_INT(compare(s), 0); /* a new store counts nothing */

    for (int round = 0; round < 6; round++) {
        CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
        for (int k = 0; k < 400; k++) {
            int i = (int)(rand_r(&seed) % NJOBS);
            unsigned what = (unsigned)rand_r(&seed) % 10;
            if (what == 0 && jobs[i].present) {
                del(w, i);
                continue;
            }
            jobs[i].team = 1 + (int32_t)(rand_r(&seed) % (round < 3 ? 1 : NTEAMS));
            jobs[i].sq = (int)(rand_r(&seed) % (NSQ + 1)) - 1;
            jobs[i].status = (enum dmj_status)(rand_r(&seed) % DMJ_STATUS_COUNT);
            jobs[i].hidden = rand_r(&seed) % 8 == 0;
            put(w, i);
        }
        CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
        CHECK_EQ_INT(compare(s), 0);
    }

    /* An aborted write changes nothing. */
    struct model saved = jobs[1];
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    jobs[1].status = DMJ_STATUS_FAILED;
    jobs[1].hidden = false;
    put(w, 1);
    dmj_write_abort(w);
    jobs[1] = saved;
    CHECK_EQ_INT(compare(s), 0);
    dmj_store_close(s);

    /* A damaged counter that is trusted: verify finds it. */
    raw_write(dir, true);
    CHECK_EQ_INT(dmj_store_open(dir, DMJ_STORE_RDONLY, 1 << 26, &s), 0);
    CHECK_EQ_INT(dmj_store_verify(s, NULL), DMJ_EBADRECORD);
    dmj_store_close(s);

    /* A commit without the counters: untrusted, then counted again by the next writer. */
    raw_write(dir, false);
    CHECK_EQ_INT(dmj_store_open(dir, DMJ_STORE_RDONLY, 1 << 26, &s), 0);
    struct dmj_read *r;
    uint64_t n;
    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_count(r, 1, NULL, &n), DMJ_ENOTFOUND);
    dmj_read_end(r);
    dmj_read_free(r);
    CHECK_EQ_INT(dmj_store_verify(s, NULL), 0); /* not kept: nothing to check */
    dmj_store_close(s);
    CHECK_EQ_INT(dmj_store_open(dir, 0, 1 << 26, &s), 0); /* a writable open counts again */
    CHECK_EQ_INT(compare(s), 0);
    dmj_store_close(s);
    (void)tmpdir_remove(root);
    return check_done();
}

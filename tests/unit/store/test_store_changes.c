/* Unit tests of the store's change log on a real LMDB store: which writes log what, seqs
 * counted per team, teams kept apart, aborts, pruning and its bounds, stores from before the
 * log and of format 1 (one counter for the store), verify. */
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "rawdb.h"
#include "tmpdir.h"
#include "dmj/store.h"


static void make_id(uint8_t id[16], unsigned n)
{
    memset(id, 0, 16);
    id[0] = 0x20;
    id[13] = (uint8_t)(n >> 16);
    id[14] = (uint8_t)(n >> 8);
    id[15] = (uint8_t)n;
}

static unsigned id_num(const uint8_t id[16])
{
    return ((unsigned)id[13] << 16) | ((unsigned)id[14] << 8) | id[15];
}

static struct dmj_job job(unsigned n, int32_t team, enum dmj_status st)
{
    struct dmj_job j;
    memset(&j, 0, sizeof j);
    make_id(j.id, n);
    j.team_id = team;
    j.created_at = 1700000000000000 + (int64_t)n * 1000;
    j.status = st;
    j.workflow_id.ptr = "materialize-x";
    j.workflow_id.len = 13;
    return j;
}

static struct dmj_job hidden_job(unsigned n, int32_t team, enum dmj_status st)
{
    struct dmj_job j = job(n, team, st);
    j.engine.ptr = "duckgres";
    j.engine.len = 8;
    return j;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One transaction of puts (and deletes: a job with team_id -1 deletes id n). */
static int put(struct dmj_store *s, const struct dmj_job *jobs, size_t n)
{
    struct dmj_write *w;
    int rc = dmj_write_begin(s, &w);
    if (rc)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = jobs[i].team_id < 0 ? dmj_write_delete_job(w, jobs[i].id) : dmj_write_job(w, &jobs[i]);
    if (rc) {
        dmj_write_abort(w);
        return rc;
    }
    return dmj_write_commit(w, NULL);
}

static int put1(struct dmj_store *s, struct dmj_job j)
{
    return put(s, &j, 1);
}

static int del1(struct dmj_store *s, unsigned n)
{
    struct dmj_job j = job(n, -1, DMJ_STATUS_RUNNING);
    return put(s, &j, 1);
}

/* A team's log after `after` as text: "kind:id:status<previous@seq ..." (kinds c, s, d). */
static const char *log_of(struct dmj_store *s, int32_t team, uint64_t after, char *buf,
                          size_t cap)
{
    static const char kinds[] = "?csd";
    struct dmj_read *r;
    struct dmj_change ch;
    size_t len = 0;
    uint64_t last = after;
    buf[0] = '\0';
    if (dmj_read_new(s, &r) != 0)
        return "read_new failed";
    if (dmj_read_begin(r) != 0) {
        dmj_read_free(r);
        return "begin failed";
    }
    int rc;
    while ((rc = dmj_read_change_next(r, team, last, &ch)) == 0 && len < cap) {
        if (ch.seq <= last || ch.team_id != team) {
            snprintf(buf, cap, "seq %llu after %llu or team %d", (unsigned long long)ch.seq,
                     (unsigned long long)last, ch.team_id);
            break;
        }
        last = ch.seq;
        len += (size_t)snprintf(buf + len, cap - len, "%s%c:%u:%d<%d", len ? " " : "",
                                kinds[ch.kind <= 3 ? ch.kind : 0], id_num(ch.job_id),
                                (int)ch.status, (int)ch.previous);
    }
    if (rc != 0 && rc != DMJ_EEND)
        snprintf(buf, cap, "next failed: %d", rc);
    dmj_read_end(r);
    dmj_read_free(r);
    return buf;
}

/* The team's first change after `after`, or a zeroed one with seq 0. */
static struct dmj_change first_after(struct dmj_store *s, int32_t team, uint64_t after)
{
    struct dmj_read *r;
    struct dmj_change ch;
    memset(&ch, 0, sizeof ch);
    if (dmj_read_new(s, &r) != 0)
        return ch;
    if (dmj_read_begin(r) == 0) {
        if (dmj_read_change_next(r, team, after, &ch) != 0)
            memset(&ch, 0, sizeof ch);
        dmj_read_end(r);
    }
    dmj_read_free(r);
    return ch;
}

/* The team's bounds; team -1: over all teams. */
static void bounds(struct dmj_store *s, int32_t team, uint64_t *oldest, uint64_t *newest)
{
    struct dmj_read *r;
    *oldest = *newest = UINT64_MAX;
    if (dmj_read_new(s, &r) != 0)
        return;
    if (dmj_read_begin(r) == 0) {
        if (team < 0)
            CHECK_EQ_INT(dmj_read_change_bounds_all(r, oldest, newest), 0);
        else
            CHECK_EQ_INT(dmj_read_change_bounds(r, team, oldest, newest), 0);
        dmj_read_end(r);
    }
    dmj_read_free(r);
}

static uint64_t newest(struct dmj_store *s, int32_t team)
{
    uint64_t o, n;
    bounds(s, team, &o, &n);
    return n;
}

static struct dmj_store *open_store(const char *dir, unsigned flags)
{
    struct dmj_store *s = NULL;
    int rc = dmj_store_open(dir, flags, 1 << 26, &s);
    CHECK_EQ_INT(rc, 0);
    return rc ? NULL : s;
}

/* A new writable store in root/name; its directory in `dir`. */
static struct dmj_store *new_store(const char *root, const char *name, char dir[256])
{
    snprintf(dir, 256, "%s/%s", root, name);
    return open_store(dir, 0);
}

/* One transaction that prunes the log before `limit` and commits (or aborts). */
static uint64_t prune(struct dmj_store *s, int64_t limit, bool commit)
{
    struct dmj_write *w;
    uint64_t removed = UINT64_MAX;
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_prune_changes(w, limit, &removed), 0);
    if (commit)
        CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    else
        dmj_write_abort(w);
    return removed;
}

/* Created, status changed, same status (nothing), deleted; the entries' fields. */
static void test_kinds(const char *root)
{
    char dir[256], buf[512];
    struct dmj_store *s = new_store(root, "kinds", dir);
    if (!s)
        return;
    uint64_t o, n;
    bounds(s, 1, &o, &n);
    CHECK_EQ_INT(o, 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_STR(log_of(s, 1, 0, buf, sizeof buf), "");

    int64_t t0 = now_us();
    CHECK_EQ_INT(put1(s, job(1, 1, DMJ_STATUS_RUNNING)), 0);
    int64_t t1 = now_us();
    struct dmj_change ch = first_after(s, 1, 0);
    CHECK_EQ_INT(ch.seq, 1);
    CHECK_EQ_INT(ch.kind, DMJ_CHANGE_CREATED);
    CHECK_EQ_INT(ch.team_id, 1);
    CHECK_EQ_INT(id_num(ch.job_id), 1);
    CHECK_EQ_INT(ch.status, DMJ_STATUS_RUNNING);
    CHECK_EQ_INT(ch.previous, DMJ_STATUS_RUNNING);
    CHECK(ch.at_us >= t0 && ch.at_us <= t1);

    CHECK_EQ_INT(put1(s, job(1, 1, DMJ_STATUS_COMPLETED)), 0);
    ch = first_after(s, 1, 1);
    CHECK_EQ_INT(ch.seq, 2);
    CHECK_EQ_INT(ch.kind, DMJ_CHANGE_STATUS);
    CHECK_EQ_INT(ch.status, DMJ_STATUS_COMPLETED);
    CHECK_EQ_INT(ch.previous, DMJ_STATUS_RUNNING);

    /* stored again with the same status (another field changed): no entry */
    struct dmj_job again = job(1, 1, DMJ_STATUS_COMPLETED);
    again.rows_materialized = 99;
    CHECK_EQ_INT(put1(s, again), 0);
    CHECK_EQ_INT(newest(s, 1), 2);

    CHECK_EQ_INT(del1(s, 1), 0);
    ch = first_after(s, 1, 2);
    CHECK_EQ_INT(ch.seq, 3);
    CHECK_EQ_INT(ch.kind, DMJ_CHANGE_DELETED);
    CHECK_EQ_INT(ch.status, DMJ_STATUS_COMPLETED);
    CHECK_EQ_INT(ch.previous, DMJ_STATUS_COMPLETED);
    CHECK_EQ_INT(id_num(ch.job_id), 1);

    /* a delete of an absent job logs nothing */
    CHECK_EQ_INT(del1(s, 1), DMJ_ENOTFOUND);
    CHECK_EQ_INT(newest(s, 1), 3);
    /* back again: created anew */
    CHECK_EQ_INT(put1(s, job(1, 1, DMJ_STATUS_FAILED)), 0);
    CHECK_EQ_STR(log_of(s, 1, 0, buf, sizeof buf), "c:1:0<0 s:1:1<0 d:1:1<1 c:1:2<2");
    bounds(s, 1, &o, &n);
    CHECK_EQ_INT(o, 1);
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    dmj_store_close(s);
}

/* Hidden (duckgres) jobs log nothing; becoming visible is a creation, becoming hidden a
 * deletion (the job leaves every answer). */
static void test_hidden(const char *root)
{
    char dir[256], buf[512];
    struct dmj_store *s = new_store(root, "hidden", dir);
    if (!s)
        return;
    CHECK_EQ_INT(put1(s, hidden_job(1, 1, DMJ_STATUS_RUNNING)), 0);
    CHECK_EQ_INT(put1(s, hidden_job(1, 1, DMJ_STATUS_COMPLETED)), 0);
    CHECK_EQ_INT(del1(s, 1), 0);
    CHECK_EQ_INT(newest(s, 1), 0);
    CHECK_EQ_STR(log_of(s, 1, 0, buf, sizeof buf), "");

    CHECK_EQ_INT(put1(s, hidden_job(2, 1, DMJ_STATUS_RUNNING)), 0);
    CHECK_EQ_INT(put1(s, job(2, 1, DMJ_STATUS_RUNNING)), 0);
    CHECK_EQ_INT(put1(s, hidden_job(2, 1, DMJ_STATUS_FAILED)), 0);
    CHECK_EQ_STR(log_of(s, 1, 0, buf, sizeof buf), "c:2:0<0 d:2:0<0");
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    dmj_store_close(s);
}

/* Two teams are kept apart, each counting its own seqs from 1; a job that moves team is
 * deleted in one, created in the other. */
static void test_teams(const char *root)
{
    char dir[256], buf[512];
    struct dmj_store *s = new_store(root, "teams", dir);
    if (!s)
        return;
    struct dmj_job jobs[4] = {job(1, 1, DMJ_STATUS_RUNNING), job(2, 2, DMJ_STATUS_RUNNING),
                              job(3, 1, DMJ_STATUS_FAILED), job(4, 7, DMJ_STATUS_RUNNING)};
    CHECK_EQ_INT(put(s, jobs, 4), 0);
    CHECK_EQ_STR(log_of(s, 1, 0, buf, sizeof buf), "c:1:0<0 c:3:2<2");
    CHECK_EQ_STR(log_of(s, 2, 0, buf, sizeof buf), "c:2:0<0");
    CHECK_EQ_STR(log_of(s, 7, 0, buf, sizeof buf), "c:4:0<0");
    CHECK_EQ_STR(log_of(s, 3, 0, buf, sizeof buf), "");
    CHECK_EQ_INT(newest(s, 1), 2);
    CHECK_EQ_INT(newest(s, 2), 1);
    CHECK_EQ_INT(newest(s, 7), 1);
    CHECK_EQ_INT(newest(s, 3), 0);
    CHECK_EQ_INT(first_after(s, 1, 0).seq, 1);
    CHECK_EQ_INT(first_after(s, 1, 1).seq, 2);
    CHECK_EQ_INT(first_after(s, 2, 0).seq, 1);
    CHECK_EQ_INT(first_after(s, 7, 0).seq, 1);

    /* another team's writes, in batches and one at a time, leave team 1's seqs and bounds */
    struct dmj_job more[3] = {job(5, 2, DMJ_STATUS_RUNNING), job(6, 7, DMJ_STATUS_RUNNING),
                              job(2, 2, DMJ_STATUS_COMPLETED)};
    CHECK_EQ_INT(put(s, more, 3), 0);
    CHECK_EQ_INT(del1(s, 6), 0);
    uint64_t o, n;
    bounds(s, 1, &o, &n);
    CHECK_EQ_INT(o, 1);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(newest(s, 2), 3);
    CHECK_EQ_INT(newest(s, 7), 3);
    CHECK_EQ_INT(put1(s, job(8, 1, DMJ_STATUS_RUNNING)), 0);
    CHECK_EQ_INT(first_after(s, 1, 2).seq, 3);

    /* a move: deleted in team 1 (its seq 4), created in team 2 (its seq 4) */
    CHECK_EQ_INT(put1(s, job(3, 2, DMJ_STATUS_FAILED)), 0);
    struct dmj_change gone = first_after(s, 1, 3);
    struct dmj_change came = first_after(s, 2, 3);
    CHECK_EQ_INT(gone.kind, DMJ_CHANGE_DELETED);
    CHECK_EQ_INT(id_num(gone.job_id), 3);
    CHECK_EQ_INT(gone.seq, 4);
    CHECK_EQ_INT(came.kind, DMJ_CHANGE_CREATED);
    CHECK_EQ_INT(id_num(came.job_id), 3);
    CHECK_EQ_INT(came.seq, 4);
    /* over all teams: the lowest oldest, the highest newest */
    bounds(s, -1, &o, &n);
    CHECK_EQ_INT(o, 1);
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    dmj_store_close(s);
}

/* Seqs increase across transactions and reopens; an aborted write leaves no entry. */
static void test_seqs(const char *root)
{
    char dir[256], buf[512];
    struct dmj_store *s = new_store(root, "seqs", dir);
    if (!s)
        return;
    uint64_t last = 0;
    for (unsigned i = 1; i <= 3; i++) {
        CHECK_EQ_INT(put1(s, job(i, 1, DMJ_STATUS_RUNNING)), 0);
        struct dmj_change ch = first_after(s, 1, last);
        CHECK(ch.seq > last);
        CHECK_EQ_INT(id_num(ch.job_id), i);
        last = ch.seq;
    }
    dmj_store_close(s);

    s = open_store(dir, 0);
    if (!s)
        return;
    CHECK_EQ_INT(newest(s, 1), last);
    struct dmj_write *w;
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    struct dmj_job j = job(9, 1, DMJ_STATUS_RUNNING);
    CHECK_EQ_INT(dmj_write_job(w, &j), 0);
    CHECK_EQ_INT(dmj_write_delete_job(w, j.id), 0); /* flushes: entries written, then dropped */
    dmj_write_abort(w);
    CHECK_EQ_INT(newest(s, 1), last);
    CHECK_EQ_INT(first_after(s, 1, last).seq, 0);

    CHECK_EQ_INT(put1(s, job(4, 1, DMJ_STATUS_RUNNING)), 0);
    struct dmj_change ch = first_after(s, 1, last);
    CHECK(ch.seq > last);
    CHECK_EQ_INT(id_num(ch.job_id), 4);
    CHECK_EQ_STR(log_of(s, 1, 0, buf, sizeof buf), "c:1:0<0 c:2:0<0 c:3:0<0 c:4:0<0");
    dmj_store_close(s);

    /* read-only: the same log */
    s = open_store(dir, DMJ_STORE_RDONLY);
    if (!s)
        return;
    CHECK_EQ_STR(log_of(s, 1, 0, buf, sizeof buf), "c:1:0<0 c:2:0<0 c:3:0<0 c:4:0<0");
    dmj_store_close(s);
}

/* A job put twice in one transaction: one batch keeps the last put (compared with what was
 * stored before); batches of one log each step. Either way created comes first and the last
 * status is the job's. */
static void test_twice(const char *root)
{
    char dir[256], buf[512];
    struct dmj_store *s = new_store(root, "twice", dir);
    if (!s)
        return;
    struct dmj_job jobs[3] = {job(1, 1, DMJ_STATUS_RUNNING), job(1, 1, DMJ_STATUS_COMPLETED),
                              job(2, 1, DMJ_STATUS_RUNNING)};
    CHECK_EQ_INT(put(s, jobs, 3), 0);
    CHECK_EQ_STR(log_of(s, 1, 0, buf, sizeof buf), "c:1:1<1 c:2:0<0");
    /* Running -> Failed -> Running in one batch: no change at all */
    struct dmj_job back[2] = {job(2, 1, DMJ_STATUS_FAILED), job(2, 1, DMJ_STATUS_RUNNING)};
    CHECK_EQ_INT(put(s, back, 2), 0);
    CHECK_EQ_INT(newest(s, 1), 2);
    dmj_store_close(s);

    snprintf(dir, sizeof dir, "%s/twice1", root);
    setenv("DMJ_WRITE_BATCH", "1", 1);
    s = open_store(dir, 0);
    if (s) {
        CHECK_EQ_INT(put(s, jobs, 3), 0);
        CHECK_EQ_STR(log_of(s, 1, 0, buf, sizeof buf), "c:1:0<0 s:1:1<0 c:2:0<0");
        dmj_store_close(s);
    }
    unsetenv("DMJ_WRITE_BATCH");
}

/* Batches large enough for the sorting thread: every job logged once, per team in put order. */
static void test_big(const char *root)
{
    char dir[256];
    enum { N = 6000, TEAMS = 3 };
    struct dmj_store *s = new_store(root, "big", dir);
    struct dmj_job *jobs = calloc(N, sizeof *jobs);
    unsigned *put_at = calloc(N + 1, sizeof *put_at);
    if (!s || !jobs || !put_at) {
        free(jobs);
        free(put_at);
        dmj_store_close(s);
        return;
    }
    for (int round = 0; round < 2; round++) {
        /* ids in an order unrelated to the teams: 7919 is prime to N */
        for (unsigned i = 0; i < N; i++) {
            unsigned n = (i * 7919u) % N + 1;
            put_at[n] = i;
            jobs[i] = job(n, (int32_t)(n % TEAMS) + 1,
                          round ? DMJ_STATUS_COMPLETED : DMJ_STATUS_RUNNING);
        }
        uint64_t base[TEAMS + 1];
        for (int32_t t = 1; t <= TEAMS; t++)
            base[t] = newest(s, t);
        CHECK_EQ_INT(put(s, jobs, N), 0);
        unsigned count = 0;
        for (int32_t t = 1; t <= TEAMS; t++) {
            struct dmj_read *r;
            struct dmj_change ch;
            uint64_t last = base[t];
            /* each team counts its own: N / TEAMS more, 1 to N / TEAMS the first time */
            CHECK_EQ_INT(newest(s, t), base[t] + N / TEAMS);
            CHECK_EQ_INT(base[t], round * (N / TEAMS));
            unsigned prev_put = 0;
            bool ordered = true, right = true;
            if (dmj_read_new(s, &r) != 0 || dmj_read_begin(r) != 0)
                break;
            while (dmj_read_change_next(r, t, last, &ch) == 0) {
                unsigned n = id_num(ch.job_id);
                if (n < 1 || n > N) {
                    right = false;
                    break;
                }
                ordered =
                    ordered && ch.seq == last + 1 && (last == base[t] || put_at[n] > prev_put);
                right = right && ch.team_id == t && (int32_t)(n % TEAMS) + 1 == t &&
                        ch.kind == (round ? DMJ_CHANGE_STATUS : DMJ_CHANGE_CREATED) &&
                        ch.status == (round ? DMJ_STATUS_COMPLETED : DMJ_STATUS_RUNNING);
                prev_put = put_at[n];
                last = ch.seq;
                count++;
            }
            CHECK(ordered);
            CHECK(right);
            dmj_read_end(r);
            dmj_read_free(r);
        }
        CHECK_EQ_INT(count, N);
    }
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    free(jobs);
    free(put_at);
    dmj_store_close(s);
}

/* Pruning removes the entries older than a time, in each team every seq up to the team's
 * highest of them, and the team's bounds say so. */
static void test_prune(const char *root)
{
    char dir[256], buf[512];
    struct dmj_store *s = new_store(root, "prune", dir);
    if (!s)
        return;
    CHECK_EQ_INT(put1(s, job(1, 1, DMJ_STATUS_RUNNING)), 0);
    CHECK_EQ_INT(put1(s, job(2, 2, DMJ_STATUS_RUNNING)), 0);
    CHECK_EQ_INT(put1(s, job(1, 1, DMJ_STATUS_COMPLETED)), 0);
    /* the clock must move on between the old entries and the limit */
    int64_t limit = now_us() + 1;
    while (now_us() <= limit)
        ;
    CHECK_EQ_INT(put1(s, job(3, 2, DMJ_STATUS_RUNNING)), 0);
    CHECK_EQ_INT(put1(s, job(4, 1, DMJ_STATUS_RUNNING)), 0);

    /* team 1: seqs 1, 2 | 3; team 2: 1 | 2 */
    uint64_t o, n;
    CHECK_EQ_INT(prune(s, limit, true), 3);
    bounds(s, 1, &o, &n);
    CHECK_EQ_INT(o, 3);
    CHECK_EQ_INT(n, 3);
    bounds(s, 2, &o, &n);
    CHECK_EQ_INT(o, 2);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(log_of(s, 1, 0, buf, sizeof buf), "c:4:0<0");
    CHECK_EQ_STR(log_of(s, 2, 0, buf, sizeof buf), "c:3:0<0");
    CHECK_EQ_INT(first_after(s, 1, 0).seq, 3);

    /* pruning again before the same time: nothing more, the bounds stay, nothing committed
     * (no wake-up of the servers watching the store) */
    uint64_t txnid = dmj_store_last_txnid(s);
    CHECK_EQ_INT(prune(s, limit, true), 0);
    CHECK_EQ_INT(dmj_store_last_txnid(s), txnid);
    bounds(s, 1, &o, &n);
    CHECK_EQ_INT(o, 3);
    CHECK_EQ_INT(n, 3);

    /* an aborted prune changes nothing */
    CHECK_EQ_INT(prune(s, now_us() + 1000000, false), 2);
    bounds(s, 1, &o, &n);
    CHECK_EQ_INT(o, 3);
    CHECK_EQ_INT(n, 3);

    /* everything: nothing kept, oldest past newest; new entries go on from there */
    CHECK_EQ_INT(prune(s, now_us() + 1000000, true), 2);
    bounds(s, 1, &o, &n);
    CHECK_EQ_INT(o, 4);
    CHECK_EQ_INT(n, 3);
    bounds(s, -1, &o, &n);
    CHECK_EQ_INT(o, 4);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_STR(log_of(s, 1, 0, buf, sizeof buf), "");
    CHECK_EQ_INT(put1(s, job(4, 1, DMJ_STATUS_FAILED)), 0);
    CHECK_EQ_INT(first_after(s, 1, 0).seq, 4);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    dmj_store_close(s);
}

/* A write transaction straight through LMDB, behind the store's back, on sub-database `db`. */
static MDB_env *raw_begin(const char *dir, const char *db, MDB_txn **txn, MDB_dbi *dbi)
{
    MDB_env *env = rawdb_begin(dir, db, 1 << 26, txn, dbi);
    CHECK(env != NULL);
    return env;
}

static void raw_commit(MDB_env *env, MDB_txn *txn)
{
    CHECK_EQ_INT(rawdb_commit(env, txn), 0);
}

/* The meta key of a team's change-log counter. */
static void team_counter_key(uint8_t key[17], int32_t team)
{
    memcpy(key, "changes.team.", 13);
    uint32_t u = (uint32_t)team ^ 0x80000000u;
    key[13] = (uint8_t)(u >> 24);
    key[14] = (uint8_t)(u >> 16);
    key[15] = (uint8_t)(u >> 8);
    key[16] = (uint8_t)u;
}

/* Deletes every meta entry whose name starts with `prefix`. */
static void del_meta_prefix(MDB_txn *txn, MDB_dbi meta, const char *prefix)
{
    MDB_cursor *c;
    size_t n = strlen(prefix);
    MDB_val k = {n, (void *)prefix}, v;
    CHECK_EQ_INT(mdb_cursor_open(txn, meta, &c), 0);
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size >= n && memcmp(k.mv_data, prefix, n) == 0) {
        CHECK_EQ_INT(mdb_cursor_del(c, 0), 0);
        rc = mdb_cursor_get(c, &k, &v, MDB_GET_CURRENT);
    }
    mdb_cursor_close(c);
}

static void put_meta(MDB_txn *txn, MDB_dbi meta, const char *name, const void *val, size_t len)
{
    MDB_val k = {strlen(name), (void *)name}, v = {len, (void *)val};
    CHECK_EQ_INT(mdb_put(txn, meta, &k, &v, 0), 0);
}

static void put_meta_u64(MDB_txn *txn, MDB_dbi meta, const char *name, uint64_t x)
{
    uint8_t b[8];
    for (int i = 7; i >= 0; i--, x >>= 8)
        b[i] = (uint8_t)x;
    put_meta(txn, meta, name, b, sizeof b);
}

/* Removes the change log and its counters: a store as written before the log existed (format
 * 1). */
static void strip_log(const char *dir)
{
    static const uint8_t format1[4] = {0, 0, 0, 1};
    MDB_txn *txn;
    MDB_dbi dbi, meta;
    MDB_env *env = raw_begin(dir, "changes", &txn, &dbi);
    CHECK_EQ_INT(mdb_drop(txn, dbi, 1), 0);
    CHECK_EQ_INT(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    del_meta_prefix(txn, meta, "changes.");
    put_meta(txn, meta, "format", format1, sizeof format1);
    raw_commit(env, txn);
}

static void test_old_store(const char *root)
{
    char dir[256], buf[512];
    struct dmj_store *s = new_store(root, "old", dir);
    if (!s)
        return;
    CHECK_EQ_INT(put1(s, job(1, 1, DMJ_STATUS_RUNNING)), 0);
    dmj_store_close(s);
    strip_log(dir);

    s = open_store(dir, DMJ_STORE_RDONLY);
    if (!s)
        return;
    struct dmj_read *r;
    struct dmj_change ch;
    struct dmj_job j;
    uint64_t o = 9, n = 9, entries = 9, bytes = 9;
    uint8_t id[16];
    make_id(id, 1);
    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_job(r, id, &j), 0);
    CHECK_EQ_INT(dmj_read_change_next(r, 1, 0, &ch), DMJ_EEND);
    CHECK_EQ_INT(dmj_read_change_bounds(r, 1, &o, &n), 0);
    CHECK_EQ_INT(dmj_read_change_size(r, &entries, &bytes), 0);
    CHECK_EQ_INT(o + n + entries + bytes, 0);
    dmj_read_end(r);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);

    /* Another process opens it writable (which creates the log) and changes the job, while
     * this read-only handle stays open (as dmjd would): the next read finds the log. A read
     * begun before that stays empty. */
    struct dmj_read *early;
    CHECK_EQ_INT(dmj_read_new(s, &early), 0);
    CHECK_EQ_INT(dmj_read_begin(early), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct dmj_store *w = NULL;
        int rc = dmj_store_open(dir, 0, 1 << 26, &w);
        if (rc == 0)
            rc = put1(w, job(1, 1, DMJ_STATUS_COMPLETED));
        if (w)
            dmj_store_close(w);
        _exit(rc == 0 ? 0 : 1);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_change_next(r, 1, 0, &ch), 0);
    CHECK_EQ_INT(ch.kind, DMJ_CHANGE_STATUS);
    CHECK_EQ_INT(dmj_read_change_bounds(r, 1, &o, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(dmj_read_change_size(r, &entries, &bytes), 0);
    CHECK_EQ_INT(entries, 1);
    CHECK_EQ_INT(dmj_read_change_next(early, 1, 0, &ch), DMJ_EEND);
    CHECK_EQ_INT(dmj_read_change_size(early, &entries, &bytes), 0);
    CHECK_EQ_INT(entries, 0);
    dmj_read_end(early);
    dmj_read_free(early);
    dmj_read_end(r);
    dmj_read_free(r);
    CHECK_EQ_STR(log_of(s, 1, 0, buf, sizeof buf), "s:1:1<0");
    dmj_store_close(s);

    s = open_store(dir, 0);
    if (!s)
        return;
    CHECK_EQ_STR(log_of(s, 1, 0, buf, sizeof buf), "s:1:1<0");
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    dmj_store_close(s);
}

/* Puts one entry into the change log behind the store's back. */
static void tamper(const char *dir, const void *key, size_t klen, const void *val, size_t vlen)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_env *env = raw_begin(dir, "changes", &txn, &dbi);
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    CHECK_EQ_INT(mdb_put(txn, dbi, &k, &v, 0), 0);
    raw_commit(env, txn);
}

/* How many problems verify reports (lines written), and its result. */
static unsigned verify_lines(struct dmj_store *s, int *rc)
{
    char *text = NULL;
    size_t len = 0;
    unsigned lines = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return 0;
    *rc = dmj_store_verify(s, f);
    fclose(f);
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    if (lines)
        fputs(text, stderr);
    free(text);
    return lines;
}

static void test_verify(const char *root)
{
    char dir[256], buf[512];
    struct dmj_store *s = new_store(root, "verify", dir);
    if (!s)
        return;
    CHECK_EQ_INT(put1(s, job(1, 5, DMJ_STATUS_RUNNING)), 0);
    dmj_store_close(s);

    /* team 5: seq 7 beyond the counter (1); seq 3 with a bad kind; a short key */
    uint8_t key[12] = {0x80, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 7}, val[27] = {1, 0, 0};
    tamper(dir, key, sizeof key, val, sizeof val);
    key[11] = 3;
    val[0] = 9;
    tamper(dir, key, sizeof key, val, sizeof val);
    tamper(dir, key, 5, val, sizeof val);
    s = open_store(dir, DMJ_STORE_RDONLY);
    if (!s)
        return;
    int rc = 0;
    CHECK_EQ_INT(verify_lines(s, &rc), 3);
    CHECK_EQ_INT(rc, DMJ_EBADRECORD);
    /* readers pass over the damaged entry */
    CHECK_EQ_STR(log_of(s, 5, 0, buf, sizeof buf), "c:1:0<0 c:0:0<0");
    dmj_store_close(s);

    /* a gap in a team's own seqs (an entry lost), and a counter past its last entry */
    snprintf(dir, sizeof dir, "%s/gaps", root);
    s = open_store(dir, 0);
    if (!s)
        return;
    struct dmj_job three[3] = {job(1, 5, DMJ_STATUS_RUNNING), job(2, 5, DMJ_STATUS_RUNNING),
                               job(3, 5, DMJ_STATUS_RUNNING)};
    CHECK_EQ_INT(put(s, three, 3), 0);
    CHECK_EQ_INT(put1(s, job(4, 6, DMJ_STATUS_RUNNING)), 0);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    dmj_store_close(s);
    MDB_txn *txn;
    MDB_dbi dbi, meta;
    MDB_env *env = raw_begin(dir, "changes", &txn, &dbi);
    key[3] = 5;
    key[11] = 2;
    MDB_val k = {sizeof key, key};
    CHECK_EQ_INT(mdb_del(txn, dbi, &k, NULL), 0);
    uint8_t tkey[17], tval[16] = {0};
    team_counter_key(tkey, 6);
    tval[7] = 3; /* team 6: last 3, but only its seq 1 is in the log */
    CHECK_EQ_INT(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    k = (MDB_val){sizeof tkey, tkey};
    MDB_val v = {sizeof tval, tval};
    CHECK_EQ_INT(mdb_put(txn, meta, &k, &v, 0), 0);
    raw_commit(env, txn);
    s = open_store(dir, DMJ_STORE_RDONLY);
    if (!s)
        return;
    CHECK_EQ_INT(verify_lines(s, &rc), 2);
    CHECK_EQ_INT(rc, DMJ_EBADRECORD);
    dmj_store_close(s);

    /* a damaged counter: the team's writes go on past the highest seq in its log, everything
     * before its first entry taken as pruned */
    snprintf(dir, sizeof dir, "%s/counter", root);
    s = open_store(dir, 0);
    if (!s)
        return;
    CHECK_EQ_INT(put1(s, job(1, 5, DMJ_STATUS_RUNNING)), 0);
    CHECK_EQ_INT(put1(s, job(2, 6, DMJ_STATUS_RUNNING)), 0);
    dmj_store_close(s);
    env = raw_begin(dir, "meta", &txn, &meta);
    team_counter_key(tkey, 5);
    k = (MDB_val){sizeof tkey, tkey};
    v = (MDB_val){3, (void *)"bad"};
    CHECK_EQ_INT(mdb_put(txn, meta, &k, &v, 0), 0);
    raw_commit(env, txn);
    s = open_store(dir, 0);
    if (!s)
        return;
    CHECK_EQ_INT(verify_lines(s, &rc), 1);
    uint64_t o, n;
    bounds(s, 5, &o, &n); /* readers see what the writer will carry on from */
    CHECK_EQ_INT(o, 1);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(put1(s, job(3, 5, DMJ_STATUS_RUNNING)), 0);
    CHECK_EQ_STR(log_of(s, 5, 0, buf, sizeof buf), "c:1:0<0 c:3:0<0");
    CHECK_EQ_INT(first_after(s, 5, 1).seq, 2);
    CHECK_EQ_INT(newest(s, 5), 2);
    CHECK_EQ_INT(newest(s, 6), 1);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    dmj_store_close(s);
}

/* The format byte of the store in `dir`. */
static int format_of(const char *dir)
{
    MDB_txn *txn;
    MDB_dbi meta;
    MDB_env *env = raw_begin(dir, "meta", &txn, &meta);
    MDB_val k = {6, (void *)"format"}, v;
    int f = -1;
    if (mdb_get(txn, meta, &k, &v) == 0 && v.mv_size == 4)
        f = ((const uint8_t *)v.mv_data)[3];
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return f;
}

/* Rewrites a store as format 1 wrote it: one counter for the store (last `last`, pruned
 * `pruned`), every entry numbered from it in key order (team by team, as one import gave
 * them), no counter per team. */
static void make_format1(const char *dir, uint64_t last, uint64_t pruned)
{
    static const uint8_t format1[4] = {0, 0, 0, 1};
    enum { MAX = 64 };
    uint8_t keys[MAX][12], vals[MAX][27];
    size_t n = 0;
    MDB_txn *txn;
    MDB_dbi dbi, meta;
    MDB_cursor *c;
    MDB_val k, v;
    MDB_env *env = raw_begin(dir, "changes", &txn, &dbi);
    CHECK_EQ_INT(mdb_cursor_open(txn, dbi, &c), 0);
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && n < MAX;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), n++) {
        memcpy(keys[n], k.mv_data, 12);
        memcpy(vals[n], v.mv_data, 27);
    }
    mdb_cursor_close(c);
    CHECK_EQ_INT(mdb_drop(txn, dbi, 0), 0);
    for (size_t i = 0; i < n; i++) {
        uint64_t seq = pruned + 1 + i;
        for (int b = 11; b >= 4; b--, seq >>= 8)
            keys[i][b] = (uint8_t)seq;
        k = (MDB_val){12, keys[i]};
        v = (MDB_val){27, vals[i]};
        CHECK_EQ_INT(mdb_put(txn, dbi, &k, &v, 0), 0);
    }
    CHECK_EQ_INT(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    del_meta_prefix(txn, meta, "changes.");
    put_meta_u64(txn, meta, "changes.seq", last);
    put_meta_u64(txn, meta, "changes.pruned", pruned);
    put_meta(txn, meta, "format", format1, sizeof format1);
    raw_commit(env, txn);
}

/* A store of format 1 (one counter for the store): read as it is, read-only; a writable open
 * makes it format 2 and each team carries on past the store's last seq, so that every id given
 * before still names the same entry; a newer format is refused. */
static void test_format1(const char *root)
{
    char dir[256], buf[512];
    struct dmj_store *s = new_store(root, "format1", dir);
    if (!s)
        return;
    struct dmj_job jobs[3] = {job(1, 1, DMJ_STATUS_RUNNING), job(2, 1, DMJ_STATUS_RUNNING),
                              job(3, 2, DMJ_STATUS_RUNNING)};
    CHECK_EQ_INT(put(s, jobs, 3), 0);
    dmj_store_close(s);
    CHECK_EQ_INT(format_of(dir), 2);
    /* seqs 5 and 6 in team 1, 7 in team 2; 1 to 4 pruned; 8 to 10 other teams' (pruned) */
    make_format1(dir, 10, 4);

    s = open_store(dir, DMJ_STORE_RDONLY);
    if (!s)
        return;
    uint64_t o, n;
    bounds(s, 1, &o, &n);
    CHECK_EQ_INT(o, 5);
    CHECK_EQ_INT(n, 10);
    bounds(s, 3, &o, &n);
    CHECK_EQ_INT(o, 5);
    CHECK_EQ_INT(n, 10);
    CHECK_EQ_INT(first_after(s, 1, 5).seq, 6);
    CHECK_EQ_INT(first_after(s, 2, 0).seq, 7);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    dmj_store_close(s);
    CHECK_EQ_INT(format_of(dir), 1);

    s = open_store(dir, 0);
    if (!s)
        return;
    CHECK_EQ_INT(format_of(dir), 2);
    CHECK_EQ_INT(put1(s, job(1, 1, DMJ_STATUS_COMPLETED)), 0);
    CHECK_EQ_INT(put1(s, job(4, 1, DMJ_STATUS_RUNNING)), 0);
    CHECK_EQ_INT(put1(s, job(5, 3, DMJ_STATUS_RUNNING)), 0);
    /* team 1's ids 5, 6 still name its entries; its next are 11, 12; team 3 starts at 11 */
    CHECK_EQ_INT(first_after(s, 1, 0).seq, 5);
    CHECK_EQ_INT(first_after(s, 1, 6).seq, 11);
    CHECK_EQ_INT(first_after(s, 1, 11).seq, 12);
    CHECK_EQ_STR(log_of(s, 1, 0, buf, sizeof buf), "c:1:0<0 c:2:0<0 s:1:1<0 c:4:0<0");
    CHECK_EQ_INT(first_after(s, 3, 0).seq, 11);
    bounds(s, 1, &o, &n);
    CHECK_EQ_INT(o, 5);
    CHECK_EQ_INT(n, 12);
    bounds(s, 2, &o, &n); /* not written since: still at the store's counter */
    CHECK_EQ_INT(o, 5);
    CHECK_EQ_INT(n, 10);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    /* pruning all: teams 1 and 3 (with a counter now) and team 2 (still without) */
    CHECK_EQ_INT(prune(s, now_us() + 1000000, true), 6);
    bounds(s, 1, &o, &n);
    CHECK_EQ_INT(o, 13);
    CHECK_EQ_INT(n, 12);
    bounds(s, 2, &o, &n);
    CHECK_EQ_INT(o, 8);
    CHECK_EQ_INT(n, 10);
    bounds(s, 3, &o, &n);
    CHECK_EQ_INT(o, 12);
    CHECK_EQ_INT(n, 11);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    dmj_store_close(s);

    /* a format this version does not know */
    static const uint8_t format3[4] = {0, 0, 0, 3};
    MDB_txn *txn;
    MDB_dbi meta;
    MDB_env *env = raw_begin(dir, "meta", &txn, &meta);
    put_meta(txn, meta, "format", format3, sizeof format3);
    raw_commit(env, txn);
    s = NULL;
    CHECK_EQ_INT(dmj_store_open(dir, DMJ_STORE_RDONLY, 1 << 26, &s), DMJ_EVERSION);
    CHECK_EQ_INT(dmj_store_open(dir, 0, 1 << 26, &s), DMJ_EVERSION);
}

int main(void)
{
    char root[64];
    if (tmpdir_make("dmj_test_store_changes.", root, sizeof root) != 0) {
        perror("mkdtemp");
        return 1;
    }
    unsetenv("DMJ_WRITE_BATCH");
    test_kinds(root);
    test_hidden(root);
    test_teams(root);
    test_seqs(root);
    test_twice(root);
    test_big(root);
    test_prune(root);
    test_old_store(root);
    test_verify(root);
    test_format1(root);
    if (tmpdir_remove(root) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return check_done();
}

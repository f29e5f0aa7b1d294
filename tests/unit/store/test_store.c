/* Unit tests of the LMDB store: upserts keep every index exact, walks, look-ups, atomicity,
 * and that verify finds damage written behind the store's back. */
#include <dirent.h>
#include <errno.h>
#include <lmdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "rawdb.h"
#include "tmpdir.h"
#include "dmj/store.h"
#include "store_impl.h"


static void make_id(uint8_t id[16], unsigned n)
{
    memset(id, 0, 16);
    id[0] = 0x10; /* ids of the tests all lie in one region, after any sq ids */
    id[14] = (uint8_t)(n >> 8);
    id[15] = (uint8_t)n;
}

static struct dmj_job job(unsigned n, int32_t team, int64_t created, enum dmj_status st,
                          unsigned sq)
{
    struct dmj_job j;
    memset(&j, 0, sizeof j);
    make_id(j.id, n);
    j.team_id = team;
    j.created_at = created;
    j.status = st;
    if (sq) {
        j.has_saved_query_id = true;
        memset(j.saved_query_id, 0, 16);
        j.saved_query_id[15] = (uint8_t)sq;
    }
    j.workflow_id.ptr = "materialize-x";
    j.workflow_id.len = 13;
    j.rows_materialized = n;
    return j;
}

static unsigned id_num(const uint8_t id[16])
{
    return ((unsigned)id[14] << 8) | id[15];
}

/* The ids a walk yields, as a string "n,n,n" for easy comparison. */
static const char *walk_ids(struct dmj_read *r, const struct dmj_walk_spec *sp, char *buf,
                            size_t cap)
{
    struct dmj_walk w;
    struct dmj_job j;
    size_t len = 0;
    buf[0] = '\0';
    if (dmj_walk_start(r, sp, &w) != 0)
        return "start failed";
    int rc;
    while ((rc = dmj_walk_next(&w, &j)) == 0)
        len += (size_t)snprintf(buf + len, cap - len, "%s%u", len ? "," : "", id_num(j.id));
    if (rc != DMJ_EEND)
        return "walk failed";
    return buf;
}

static int put_jobs(struct dmj_store *s, const struct dmj_job *jobs, size_t n,
                    struct dmj_write_stats *st)
{
    struct dmj_write *w;
    int rc = dmj_write_begin(s, &w);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        rc = dmj_write_job(w, &jobs[i]);
        if (rc) {
            dmj_write_abort(w);
            return rc;
        }
    }
    return dmj_write_commit(w, st);
}

static void test_open(const char *root)
{
    char path[512];
    struct dmj_store *s;
    snprintf(path, sizeof path, "%s/missing", root);
    CHECK_EQ_INT(dmj_store_open(path, DMJ_STORE_RDONLY, 0, &s), -ENOENT);
    snprintf(path, sizeof path, "%s/open", root);
    CHECK_EQ_INT(dmj_store_open(path, 0, 1 << 24, &s), 0);
    dmj_store_close(s);
    /* a read-only open finds every sub-database the writable open created */
    CHECK_EQ_INT(dmj_store_open(path, DMJ_STORE_RDONLY, 0, &s), 0);
    struct dmj_read *r;
    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    uint8_t id[16] = {1};
    struct dmj_job j;
    CHECK_EQ_INT(dmj_read_job(r, id, &j), DMJ_ENOTFOUND);
    dmj_read_end(r);
    dmj_read_free(r);
    struct dmj_write *w;
    CHECK(dmj_write_begin(s, &w) != 0); /* no writes through a read-only handle */
    uint64_t used, map;
    dmj_store_sizes(s, &used, &map);
    CHECK(used > 0 && map >= used);
    dmj_store_close(s);

    /* a store of another format is refused */
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_env *env = rawdb_begin(path, "meta", 0, &txn, &dbi);
    CHECK(env != NULL);
    uint8_t fmt[4] = {0, 0, 0, 9};
    MDB_val k = {6, "format"}, v = {4, fmt};
    CHECK_EQ_INT(mdb_put(txn, dbi, &k, &v, 0), 0);
    CHECK_EQ_INT(rawdb_commit(env, txn), 0);
    CHECK_EQ_INT(dmj_store_open(path, DMJ_STORE_RDONLY, 0, &s), DMJ_EVERSION);
    CHECK_EQ_INT(dmj_store_open(path, 0, 0, &s), DMJ_EVERSION);

    /* a data file that is not LMDB at all */
    snprintf(path, sizeof path, "%s/garbage", root);
    CHECK_EQ_INT(mkdir(path, 0755), 0);
    char file[600];
    snprintf(file, sizeof file, "%s/data.mdb", path);
    FILE *f = fopen(file, "wb");
    CHECK(f != NULL);
    if (f) {
        for (int i = 0; i < 8192; i++)
            fputc(i * 7, f);
        fclose(f);
    }
    CHECK_EQ_INT(dmj_store_open(path, DMJ_STORE_RDONLY, 0, &s), DMJ_EVERSION);

    /* a file where the directory should be */
    CHECK_EQ_INT(dmj_store_open(file, 0, 0, &s), -ENOTDIR);

    /* $DMJ_MAP_SIZE when the caller gives no size, with a suffix */
    snprintf(path, sizeof path, "%s/mapsize", root);
    setenv("DMJ_MAP_SIZE", "3M", 1);
    CHECK_EQ_INT(dmj_store_open(path, 0, 0, &s), 0);
    unsetenv("DMJ_MAP_SIZE");
    uint64_t used2, map2;
    dmj_store_sizes(s, &used2, &map2);
    CHECK_EQ_INT(map2, 3u << 20);
    dmj_store_close(s);
}

static void test_walks(const char *root)
{
    char path[512], buf[1024];
    struct dmj_store *s;
    struct dmj_read *r;
    snprintf(path, sizeof path, "%s/walks", root);
    CHECK_EQ_INT(dmj_store_open(path, 0, 1 << 26, &s), 0);

    /* team 5: ties at created 200 (ids 3, 4, 7), one hidden job; teams 4 and 6 around it */
    struct dmj_job jobs[] = {
        job(7, 5, 200, DMJ_STATUS_RUNNING, 2),        job(3, 5, 200, DMJ_STATUS_COMPLETED, 1),
        job(1, 5, 100, DMJ_STATUS_RUNNING, 1),        job(9, 5, 300, DMJ_STATUS_FAILED, 0),
        job(4, 5, 200, DMJ_STATUS_RUNNING, 1),        job(2, 5, -50, DMJ_STATUS_COMPLETED, 2),
        job(8, 5, 250, DMJ_STATUS_RUNNING, 1),        job(20, 4, 150, DMJ_STATUS_RUNNING, 1),
        job(21, 6, 150, DMJ_STATUS_RUNNING, 1),       job(22, -3, 1, DMJ_STATUS_RUNNING, 1),
        job(23, INT32_MAX, 5, DMJ_STATUS_RUNNING, 1),
    };
    jobs[6].engine.ptr = "duckgres"; /* job 8 is hidden */
    jobs[6].engine.len = 8;
    struct dmj_write_stats st = {0, 0};
    CHECK_EQ_INT(put_jobs(s, jobs, sizeof jobs / sizeof jobs[0], &st), 0);
    CHECK_EQ_INT(st.inserted, 11);
    CHECK_EQ_INT(st.replaced, 0);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);

    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    struct dmj_walk_spec sp = {.team_id = 5, .index = DMJ_WALK_TEAM, .descending = true};
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "9,7,4,3,1,2");
    sp.descending = false;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "2,1,3,4,7,9");
    /* bounds are strict, ties of the bound all excluded */
    sp.has_bound = true;
    sp.bound_us = 200;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "9");
    sp.descending = true;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "1,2");
    sp.bound_us = 201;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "7,4,3,1,2");
    sp.bound_us = INT64_MIN;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "");
    sp.descending = false;
    sp.bound_us = INT64_MAX;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "");
    sp.bound_us = INT64_MIN;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "2,1,3,4,7,9");

    /* edges of the team range: negative and largest team ids, and an empty team */
    struct dmj_walk_spec e = {.team_id = -3, .index = DMJ_WALK_TEAM, .descending = true};
    CHECK_EQ_STR(walk_ids(r, &e, buf, sizeof buf), "22");
    e.team_id = INT32_MAX;
    CHECK_EQ_STR(walk_ids(r, &e, buf, sizeof buf), "23");
    e.descending = false;
    CHECK_EQ_STR(walk_ids(r, &e, buf, sizeof buf), "23");
    e.team_id = 1000;
    CHECK_EQ_STR(walk_ids(r, &e, buf, sizeof buf), "");
    e.descending = true;
    CHECK_EQ_STR(walk_ids(r, &e, buf, sizeof buf), "");

    /* the saved query index */
    struct dmj_walk_spec q = {.team_id = 5, .index = DMJ_WALK_SAVED_QUERY, .descending = true};
    q.saved_query_id[15] = 1;
    CHECK_EQ_STR(walk_ids(r, &q, buf, sizeof buf), "4,3,1");
    q.descending = false;
    CHECK_EQ_STR(walk_ids(r, &q, buf, sizeof buf), "1,3,4");
    q.has_bound = true;
    q.bound_us = 100;
    CHECK_EQ_STR(walk_ids(r, &q, buf, sizeof buf), "3,4");
    q.saved_query_id[15] = 2;
    q.has_bound = false;
    q.descending = true;
    CHECK_EQ_STR(walk_ids(r, &q, buf, sizeof buf), "7,2");

    /* the status index, hidden job 8 skipped */
    struct dmj_walk_spec t = {
        .team_id = 5, .index = DMJ_WALK_STATUS, .descending = true, .status = DMJ_STATUS_RUNNING};
    CHECK_EQ_STR(walk_ids(r, &t, buf, sizeof buf), "7,4,1");
    t.has_bound = true;
    t.bound_us = 200;
    CHECK_EQ_STR(walk_ids(r, &t, buf, sizeof buf), "1");
    t.status = DMJ_STATUS_SKIPPED;
    t.has_bound = false;
    CHECK_EQ_STR(walk_ids(r, &t, buf, sizeof buf), "");

    /* saved queries of team 5 in byte order, jumping over their jobs */
    uint8_t sq[16];
    CHECK_EQ_INT(dmj_read_next_saved_query(r, 5, NULL, sq), 0);
    CHECK_EQ_INT(sq[15], 1);
    uint8_t prev[16];
    memcpy(prev, sq, 16);
    CHECK_EQ_INT(dmj_read_next_saved_query(r, 5, prev, sq), 0);
    CHECK_EQ_INT(sq[15], 2);
    memcpy(prev, sq, 16);
    CHECK_EQ_INT(dmj_read_next_saved_query(r, 5, prev, sq), DMJ_EEND);
    uint8_t ff[16];
    memset(ff, 0xff, 16);
    CHECK_EQ_INT(dmj_read_next_saved_query(r, 5, ff, sq), DMJ_EEND);
    CHECK_EQ_INT(dmj_read_next_saved_query(r, 7, NULL, sq), DMJ_EEND);
    CHECK_EQ_INT(dmj_read_next_saved_query(r, 6, NULL, sq), 0);
    CHECK_EQ_INT(sq[15], 1);

    /* retrieve: any team, hidden ones absent */
    struct dmj_job got;
    uint8_t id[16];
    make_id(id, 21);
    CHECK_EQ_INT(dmj_read_job(r, id, &got), 0);
    CHECK_EQ_INT(got.team_id, 6);
    CHECK_EQ_INT(got.rows_materialized, 21);
    CHECK(got.workflow_id.len == 13 && memcmp(got.workflow_id.ptr, "materialize-x", 13) == 0);
    make_id(id, 8);
    CHECK_EQ_INT(dmj_read_job(r, id, &got), DMJ_ENOTFOUND);
    make_id(id, 99);
    CHECK_EQ_INT(dmj_read_job(r, id, &got), DMJ_ENOTFOUND);

    /* walks interleaved on one index, up to the handle's cursor count */
    struct dmj_walk w1, w2, w3, w4, w5;
    struct dmj_job a;
    sp = (struct dmj_walk_spec){.team_id = 5, .index = DMJ_WALK_TEAM, .descending = true};
    CHECK_EQ_INT(dmj_walk_start(r, &sp, &w1), 0);
    CHECK_EQ_INT(dmj_walk_start(r, &sp, &w2), 0);
    CHECK_EQ_INT(dmj_walk_next(&w1, &a), 0);
    CHECK_EQ_INT(id_num(a.id), 9);
    CHECK_EQ_INT(dmj_walk_next(&w1, &a), 0);
    CHECK_EQ_INT(dmj_walk_next(&w2, &a), 0);
    CHECK_EQ_INT(id_num(a.id), 9);
    CHECK_EQ_INT(dmj_walk_next(&w1, &a), 0);
    CHECK_EQ_INT(id_num(a.id), 4);
    CHECK_EQ_INT(dmj_walk_start(r, &sp, &w3), 0);
    CHECK_EQ_INT(dmj_walk_start(r, &sp, &w4), 0);
    CHECK_EQ_INT(dmj_walk_next(&w1, &a), 0);
    CHECK_EQ_INT(id_num(a.id), 3);
    CHECK_EQ_INT(dmj_walk_start(r, &sp, &w5), 0); /* takes w1's cursor */
    CHECK_EQ_INT(dmj_walk_next(&w1, &a), DMJ_ESTORE);
    CHECK_EQ_INT(dmj_walk_next(&w5, &a), 0);
    CHECK_EQ_INT(dmj_walk_next(&w2, &a), 0);
    CHECK_EQ_INT(id_num(a.id), 7);
    (void)w3;
    (void)w4;
    dmj_read_end(r);
    /* a walk does not survive its transaction */
    CHECK_EQ_INT(dmj_walk_next(&w2, &a), DMJ_ESTORE);

    /* the handle is reusable: a new transaction sees a later commit */
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    uint64_t tx1 = dmj_read_txnid(r);
    dmj_read_end(r);
    struct dmj_job more = job(30, 5, 400, DMJ_STATUS_RUNNING, 0);
    CHECK_EQ_INT(put_jobs(s, &more, 1, NULL), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK(dmj_read_txnid(r) > tx1);
    sp = (struct dmj_walk_spec){
        .team_id = 5, .index = DMJ_WALK_STATUS, .status = DMJ_STATUS_RUNNING, .descending = true};
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "30,7,4,1");
    dmj_read_end(r);
    dmj_read_free(r);
    dmj_store_close(s);
}

static int count_job(void *ctx, const struct dmj_job *j)
{
    (void)j;
    (*(unsigned *)ctx)++;
    return 0;
}

static int stop_at_two(void *ctx, const struct dmj_job *j)
{
    (void)j;
    return ++(*(unsigned *)ctx) == 2 ? 42 : 0;
}

/* How many entries of a directory have names starting with `prefix`. */
static int dir_entries(const char *path, const char *prefix)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static void test_upsert(const char *root)
{
    char path[512], buf[1024];
    struct dmj_store *s;
    struct dmj_read *r;
    struct dmj_write_stats st;
    snprintf(path, sizeof path, "%s/upsert", root);
    CHECK_EQ_INT(dmj_store_open(path, 0, 1 << 26, &s), 0);
    struct dmj_job jobs[] = {
        job(1, 2, 100, DMJ_STATUS_RUNNING, 1),
        job(2, 2, 200, DMJ_STATUS_RUNNING, 1),
        job(3, 2, 300, DMJ_STATUS_RUNNING, 2),
    };
    CHECK_EQ_INT(put_jobs(s, jobs, 3, &st), 0);

    /* job 2 changes status, created_at and saved query; job 3 loses its saved query; job 1
     * is put twice in one transaction, the last put wins */
    struct dmj_job upd[] = {
        job(1, 2, 100, DMJ_STATUS_FAILED, 1),  job(2, 2, 50, DMJ_STATUS_COMPLETED, 3),
        job(3, 2, 300, DMJ_STATUS_RUNNING, 0), job(1, 2, 150, DMJ_STATUS_CANCELLED, 1),
        job(4, 2, 400, DMJ_STATUS_RUNNING, 2),
    };
    CHECK_EQ_INT(put_jobs(s, upd, 5, &st), 0);
    CHECK_EQ_INT(st.replaced, 3);
    CHECK_EQ_INT(st.inserted, 1);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);

    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    struct dmj_walk_spec sp = {.team_id = 2, .index = DMJ_WALK_TEAM, .descending = true};
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "4,3,1,2");
    sp.index = DMJ_WALK_STATUS;
    sp.status = DMJ_STATUS_RUNNING;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "4,3");
    sp.status = DMJ_STATUS_COMPLETED;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "2");
    sp.status = DMJ_STATUS_FAILED;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "");
    sp.status = DMJ_STATUS_CANCELLED;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "1");
    sp.index = DMJ_WALK_SAVED_QUERY;
    sp.saved_query_id[15] = 1;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "1");
    sp.saved_query_id[15] = 2;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "4");
    sp.saved_query_id[15] = 3;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "2");
    struct dmj_job got;
    CHECK_EQ_INT(dmj_read_job(r, upd[3].id, &got), 0);
    CHECK_EQ_INT(got.created_at, 150);
    CHECK_EQ_INT(got.status, DMJ_STATUS_CANCELLED);
    dmj_read_end(r);

    /* a job moving to another team leaves the old team */
    struct dmj_job moved = job(4, 3, 400, DMJ_STATUS_RUNNING, 2);
    CHECK_EQ_INT(put_jobs(s, &moved, 1, &st), 0);
    CHECK_EQ_INT(st.replaced, 1);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    sp = (struct dmj_walk_spec){.team_id = 2, .index = DMJ_WALK_TEAM, .descending = true};
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "3,1,2");
    sp.team_id = 3;
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "4");
    dmj_read_end(r);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);

    /* delete: every entry goes; a second delete finds nothing */
    struct dmj_write *w;
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_delete_job(w, moved.id), 0);
    CHECK_EQ_INT(dmj_write_delete_job(w, moved.id), DMJ_ENOTFOUND);
    /* a put then a delete in the same transaction deletes */
    struct dmj_job tmp = job(5, 2, 500, DMJ_STATUS_RUNNING, 1);
    CHECK_EQ_INT(dmj_write_job(w, &tmp), 0);
    CHECK_EQ_INT(dmj_write_delete_job(w, tmp.id), 0);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_job(r, moved.id, &got), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_read_job(r, tmp.id, &got), DMJ_ENOTFOUND);
    sp = (struct dmj_walk_spec){.team_id = 3, .index = DMJ_WALK_TEAM, .descending = true};
    CHECK_EQ_STR(walk_ids(r, &sp, buf, sizeof buf), "");
    dmj_read_end(r);

    unsigned n = 0;
    CHECK_EQ_INT(dmj_store_each_job(s, -1, count_job, &n), 0);
    CHECK_EQ_INT(n, 3);
    n = 0;
    CHECK_EQ_INT(dmj_store_each_job(s, 3, count_job, &n), 0);
    CHECK_EQ_INT(n, 0);
    n = 0;
    CHECK_EQ_INT(dmj_store_each_job(s, 2, stop_at_two, &n), 42);

    /* abort: nothing of the transaction is stored */
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    struct dmj_job gone = job(6, 2, 600, DMJ_STATUS_RUNNING, 1);
    CHECK_EQ_INT(dmj_write_job(w, &gone), 0);
    struct dmj_job changed = job(1, 2, 1, DMJ_STATUS_SKIPPED, 0);
    CHECK_EQ_INT(dmj_write_job(w, &changed), 0);
    CHECK_EQ_INT(dmj_write_delete_job(w, upd[2].id), 0);
    dmj_write_abort(w);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_job(r, gone.id, &got), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_read_job(r, upd[2].id, &got), 0);
    CHECK_EQ_INT(dmj_read_job(r, changed.id, &got), 0);
    CHECK_EQ_INT(got.created_at, 150);
    dmj_read_end(r);

    /* backup: a compact copy that opens read-only and verifies */
    char bpath[512];
    snprintf(bpath, sizeof bpath, "%s/backup", root);
    CHECK_EQ_INT(dmj_store_backup(s, bpath), 0);
    CHECK_EQ_INT(dmj_store_backup(s, bpath), -EEXIST);
    struct dmj_store *b;
    CHECK_EQ_INT(dmj_store_open(bpath, DMJ_STORE_RDONLY, 0, &b), 0);
    CHECK_EQ_INT(dmj_store_verify(b, stderr), 0);
    n = 0;
    CHECK_EQ_INT(dmj_store_each_job(b, 2, count_job, &n), 0);
    CHECK_EQ_INT(n, 3);
    dmj_store_close(b);
    /* the copy is written aside and linked into place: nothing else is left in the
     * directory, and the partial file of an interrupted backup neither passes for a store
     * nor stands in the way of the next one */
    CHECK_EQ_INT(dir_entries(bpath, "data.mdb"), 1);
    char cut[600], data[600];
    snprintf(bpath, sizeof bpath, "%s/backup2", root);
    CHECK_EQ_INT(mkdir(bpath, 0755), 0);
    snprintf(cut, sizeof cut, "%s/data.mdb.partial-killed", bpath);
    snprintf(data, sizeof data, "%s/data.mdb", bpath);
    FILE *f = fopen(cut, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    CHECK_EQ_INT(dmj_store_open(bpath, DMJ_STORE_RDONLY, 0, &b), -ENOENT);
    CHECK_EQ_INT(dmj_store_backup(s, bpath), 0);
    CHECK_EQ_INT(dir_entries(bpath, "data.mdb"), 2); /* ours, and the killed one's */
    CHECK_EQ_INT(dmj_store_open(bpath, DMJ_STORE_RDONLY, 0, &b), 0);
    CHECK_EQ_INT(dmj_store_verify(b, stderr), 0);
    dmj_store_close(b);

    dmj_read_free(r);
    dmj_store_close(s);
}

static void test_map_full(const char *root)
{
    char path[512];
    struct dmj_store *s;
    snprintf(path, sizeof path, "%s/full", root);
    CHECK_EQ_INT(dmj_store_open(path, 0, 1 << 20, &s), 0);
    struct dmj_job small = job(1, 1, 1, DMJ_STATUS_RUNNING, 0);
    CHECK_EQ_INT(put_jobs(s, &small, 1, NULL), 0);

    struct dmj_write *w;
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    char err[2000];
    memset(err, 'e', sizeof err);
    int rc = 0;
    for (unsigned i = 2; i < 5000 && rc == 0; i++) {
        struct dmj_job j = job(i, 1, i, DMJ_STATUS_FAILED, 1);
        j.error.ptr = err;
        j.error.len = sizeof err;
        rc = dmj_write_job(w, &j);
    }
    CHECK_EQ_INT(rc, 0); /* buffered: the map fills at commit */
    CHECK_EQ_INT(dmj_write_commit(w, NULL), DMJ_EMAPFULL);
    /* the store is as before: one job, consistent, still writable */
    unsigned n = 0;
    CHECK_EQ_INT(dmj_store_each_job(s, -1, count_job, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    struct dmj_job other = job(2, 1, 2, DMJ_STATUS_RUNNING, 0);
    CHECK_EQ_INT(put_jobs(s, &other, 1, NULL), 0);
    dmj_store_close(s);
}

/* The size of the file in `dir` whose name starts with "data.mdb", or -1 when none. */
static long long copy_size(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    long long size = -1;
    struct dirent *e;
    char path[1024];
    struct stat st;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "data.mdb", 8) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0)
            size = st.st_size;
    }
    closedir(d);
    return size;
}

/* A backup killed half-way leaves no data.mdb: only its partial file, which the next
 * backup into the same directory does not mind. */
static void test_backup_killed(const char *root)
{
    char path[512], dest[512], data[600];
    struct dmj_store *s;
    snprintf(path, sizeof path, "%s/killed", root);
    snprintf(dest, sizeof dest, "%s/killed-backup", root);
    snprintf(data, sizeof data, "%s/data.mdb", dest);
    CHECK_EQ_INT(dmj_store_open(path, 0, 0, &s), 0);
    static char err[4000];
    memset(err, 'e', sizeof err);
    struct dmj_write *w;
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    int rc = 0;
    for (unsigned i = 0; i < 20000 && rc == 0; i++) {
        struct dmj_job j = job(i, 1, i, DMJ_STATUS_FAILED, 1);
        j.error.ptr = err;
        j.error.len = sizeof err;
        rc = dmj_write_job(w, &j);
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    dmj_store_close(s);
    CHECK_EQ_INT(mkdir(dest, 0755), 0);

    /* the child opens the store itself: an LMDB environment must not cross a fork */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct dmj_store *c;
        if (dmj_store_open(path, DMJ_STORE_RDONLY, 0, &c) != 0)
            _exit(2);
        _exit(dmj_store_backup(c, dest) == 0 ? 0 : 1);
    }
    CHECK(pid > 0);
    if (pid <= 0)
        return;
    /* kill it once the copy has started (the whole copy is ~80 MB) */
    for (int i = 0; i < 200000 && copy_size(dest) <= 0; i++)
        usleep(50);
    kill(pid, SIGKILL);
    int status = 0;
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        struct stat st;
        CHECK(stat(data, &st) != 0); /* killed: no data.mdb */
    } else {
        fprintf(stderr, "test_backup_killed: the backup ended before the kill (inconclusive)\n");
    }
    CHECK_EQ_INT(dmj_store_open(path, DMJ_STORE_RDONLY, 0, &s), 0);
    CHECK_EQ_INT(dmj_store_backup(s, dest), WIFSIGNALED(status) ? 0 : -EEXIST);
    dmj_store_close(s);
    rc = dmj_store_open(dest, DMJ_STORE_RDONLY, 0, &s);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0)
        return;
    unsigned n = 0;
    CHECK_EQ_INT(dmj_store_each_job(s, -1, count_job, &n), 0);
    CHECK_EQ_INT(n, 20000);
    dmj_store_close(s);
}

/* The reader table is written through a map: its blocks are reserved before, or a full disk
 * would be SIGBUS at the first reader to touch a fresh page of it. A store restored without
 * its lock file gets a reserved one too. */
static void test_lock_reserved(const char *root)
{
    char path[512], lock[600];
    struct dmj_store *s;
    struct stat st;
    snprintf(path, sizeof path, "%s/lockres", root);
    snprintf(lock, sizeof lock, "%s/lock.mdb", path);
    for (int round = 0; round < 2; round++) {
        CHECK_EQ_INT(dmj_store_open(path, round ? DMJ_STORE_RDONLY : 0, 0, &s), 0);
        CHECK_EQ_INT(stat(lock, &st), 0);
        CHECK(st.st_size > 16 * 1024);
        CHECK((long long)st.st_blocks * 512 >= (long long)st.st_size);
        dmj_store_close(s);
        CHECK_EQ_INT(unlink(lock), 0);
    }
}

/* An empty data.mdb (a first writer killed before LMDB wrote to it): readers are told there
 * is no data yet, and the next writer makes it a store. */
static void test_empty_file(const char *root)
{
    char path[512], data[600];
    struct dmj_store *s;
    snprintf(path, sizeof path, "%s/empty", root);
    snprintf(data, sizeof data, "%s/data.mdb", path);
    CHECK_EQ_INT(mkdir(path, 0755), 0);
    FILE *f = fopen(data, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    CHECK_EQ_INT(dmj_store_open(path, DMJ_STORE_RDONLY, 0, &s), -ENODATA);
    CHECK_EQ_INT(dmj_store_open(path, 0, 0, &s), 0);
    struct dmj_job one = job(1, 1, 1, DMJ_STATUS_RUNNING, 0);
    CHECK_EQ_INT(put_jobs(s, &one, 1, NULL), 0);
    dmj_store_close(s);
    CHECK_EQ_INT(dmj_store_open(path, DMJ_STORE_RDONLY, 0, &s), 0);
    unsigned n = 0;
    CHECK_EQ_INT(dmj_store_each_job(s, -1, count_job, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    dmj_store_close(s);
}

/* A data file cut short (a partial copy): refused at open with its own code, where LMDB
 * would have died of SIGBUS reading past the end; a writer leaves it as it is. */
static void test_truncated(const char *root)
{
    char path[512], data[600];
    struct dmj_store *s;
    struct stat st;
    snprintf(path, sizeof path, "%s/cut", root);
    snprintf(data, sizeof data, "%s/data.mdb", path);
    CHECK_EQ_INT(dmj_store_open(path, 0, 0, &s), 0);
    struct dmj_job jobs[400];
    for (unsigned i = 0; i < 400; i++)
        jobs[i] = job(i + 1, 1 + (int32_t)(i % 3), i, DMJ_STATUS_COMPLETED, i % 7);
    CHECK_EQ_INT(put_jobs(s, jobs, 400, NULL), 0);
    dmj_store_close(s);
    CHECK_EQ_INT(stat(data, &st), 0);
    CHECK(st.st_size > 16 * 4096);
    off_t cut = (st.st_size / 2) & ~(off_t)4095;
    CHECK_EQ_INT(truncate(data, cut), 0);
    CHECK_EQ_INT(dmj_store_open(path, DMJ_STORE_RDONLY, 0, &s), DMJ_ETRUNCATED);
    CHECK_EQ_INT(dmj_store_open(path, 0, 0, &s), DMJ_ETRUNCATED);
    CHECK_EQ_INT(stat(data, &st), 0);
    CHECK_EQ_INT(st.st_size, cut);
    CHECK(strstr(dmj_strerror(DMJ_ETRUNCATED), "truncated") != NULL);

    /* a compacted backup has no free page: one page less is already too short */
    char bpath[600], bdata[700];
    snprintf(path, sizeof path, "%s/cut2", root);
    snprintf(bpath, sizeof bpath, "%s/cut2-backup", root);
    snprintf(bdata, sizeof bdata, "%s/data.mdb", bpath);
    CHECK_EQ_INT(dmj_store_open(path, 0, 0, &s), 0);
    CHECK_EQ_INT(put_jobs(s, jobs, 400, NULL), 0);
    CHECK_EQ_INT(dmj_store_backup(s, bpath), 0);
    dmj_store_close(s);
    CHECK_EQ_INT(stat(bdata, &st), 0);
    CHECK_EQ_INT(truncate(bdata, st.st_size - 4096), 0);
    CHECK_EQ_INT(dmj_store_open(bpath, DMJ_STORE_RDONLY, 0, &s), DMJ_ETRUNCATED);
}

/* A data file that cannot grow (here: the file size limit; a full disk is the same short
 * write): LMDB says EIO, the store says why, and keeps what it had. */
static void test_file_limit(const char *root)
{
    char path[512], data[600];
    struct dmj_store *s;
    struct stat st;
    struct rlimit old, rl;
    snprintf(path, sizeof path, "%s/limit", root);
    snprintf(data, sizeof data, "%s/data.mdb", path);
    CHECK_EQ_INT(dmj_store_open(path, 0, 64u << 20, &s), 0);
    struct dmj_job first = job(1, 1, 1, DMJ_STATUS_RUNNING, 0);
    CHECK_EQ_INT(put_jobs(s, &first, 1, NULL), 0);
    CHECK_EQ_INT(stat(data, &st), 0);
    CHECK_EQ_INT(getrlimit(RLIMIT_FSIZE, &old), 0);
    /* past the limit a write fails with EFBIG instead of raising SIGXFSZ */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    rl = old;
    rl.rlim_cur = (rlim_t)st.st_size + 64 * 1024;
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &rl), 0);

    struct dmj_write *w;
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    char err[2000];
    memset(err, 'e', sizeof err);
    int rc = 0;
    for (unsigned i = 2; i < 2000 && rc == 0; i++) {
        struct dmj_job j = job(i, 1, i, DMJ_STATUS_FAILED, 1);
        j.error.ptr = err;
        j.error.len = sizeof err;
        rc = dmj_write_job(w, &j);
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), -EFBIG); /* not LMDB's EIO */
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);

    unsigned n = 0;
    CHECK_EQ_INT(dmj_store_each_job(s, -1, count_job, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    dmj_store_close(s);
    /* reopened, and with room again, it takes writes */
    CHECK_EQ_INT(dmj_store_open(path, 0, 64u << 20, &s), 0);
    struct dmj_job second = job(2, 1, 2, DMJ_STATUS_RUNNING, 0);
    CHECK_EQ_INT(put_jobs(s, &second, 1, NULL), 0);
    n = 0;
    CHECK_EQ_INT(dmj_store_each_job(s, -1, count_job, &n), 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    dmj_store_close(s);
}

/* A new store `name` under root with a 256 MiB map; NULL (a failed check) when it cannot. */
static struct dmj_store *open_named(const char *root, const char *name)
{
    char path[512];
    struct dmj_store *s = NULL;
    snprintf(path, sizeof path, "%s/%s", root, name);
    CHECK_EQ_INT(dmj_store_open(path, 0, 1 << 28, &s), 0);
    return s;
}

static void test_big_batch(const char *root)
{
    /* more jobs than one batch holds, in reverse order, with a repeat across batches: the
     * repeat finds the first put already written, and counts as replaced */
    struct dmj_store *s = open_named(root, "big");
    if (!s)
        return;
    struct dmj_write *w;
    struct dmj_write_stats st;
    /* small batches, so that later ones insert inside the range the first one wrote */
    setenv("DMJ_WRITE_BATCH", "7000", 1);
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    unsetenv("DMJ_WRITE_BATCH");
    const unsigned n = 30000;
    int rc = 0;
    for (unsigned i = n; i > 0 && rc == 0; i--) {
        struct dmj_job j =
            job(0, (int32_t)(i % 3), (int64_t)(i / 7), (enum dmj_status)(i % 5), i % 11);
        j.id[12] = (uint8_t)(i >> 16);
        j.id[13] = (uint8_t)(i >> 8);
        j.id[14] = (uint8_t)i;
        j.id[15] = (uint8_t)(i * 7);
        rc = dmj_write_job(w, &j);
    }
    struct dmj_job again = job(0, 1, -1, DMJ_STATUS_SKIPPED, 0);
    again.id[12] = (uint8_t)(n >> 16);
    again.id[13] = (uint8_t)(n >> 8);
    again.id[14] = (uint8_t)n;
    again.id[15] = (uint8_t)(n * 7);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(dmj_write_job(w, &again), 0);
    CHECK_EQ_INT(dmj_write_commit(w, &st), 0);
    CHECK_EQ_INT(st.inserted, n);
    CHECK_EQ_INT(st.replaced, 1);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);

    /* a walk over a team is in (created_at, id) order */
    struct dmj_read *r;
    struct dmj_walk wk;
    struct dmj_job j;
    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    struct dmj_walk_spec sp = {.team_id = 1, .index = DMJ_WALK_TEAM, .descending = true};
    CHECK_EQ_INT(dmj_walk_start(r, &sp, &wk), 0);
    int64_t prev_c = INT64_MAX;
    uint8_t prev_id[16];
    memset(prev_id, 0xff, 16);
    unsigned count = 0, bad = 0;
    while (dmj_walk_next(&wk, &j) == 0) {
        int cmp = memcmp(j.id, prev_id, 16);
        bad += j.created_at > prev_c || (j.created_at == prev_c && cmp >= 0) || j.team_id != 1;
        prev_c = j.created_at;
        memcpy(prev_id, j.id, 16);
        count++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(count, n / 3 + 1); /* i % 3 == 1, and the repeat moved job n to team 1 */
    CHECK_EQ_INT(prev_c, -1);
    dmj_read_end(r);
    dmj_read_free(r);
    dmj_store_close(s);
}

/* One large batch (the id sort then runs on two threads, split by the ids' first byte) with
 * ids spread over every first byte and some ids put twice: each id is stored once, with its
 * last put, and the indexes agree. */
static void id_spread(uint8_t id[16], unsigned i)
{
    make_id(id, 0);
    id[0] = (uint8_t)(i * 37);
    id[1] = (uint8_t)(i >> 8);
    id[2] = (uint8_t)i;
    id[3] = (uint8_t)(i >> 16);
}

static void test_id_sort_split(const char *root)
{
    struct dmj_store *s = open_named(root, "split");
    if (!s)
        return;
    struct dmj_write *w;
    struct dmj_write_stats st;
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    const unsigned n = 40000, every = 100;
    int rc = 0;
    for (unsigned i = 0; i < n && rc == 0; i++) {
        struct dmj_job j = job(0, 1, (int64_t)i, DMJ_STATUS_RUNNING, 0);
        id_spread(j.id, i);
        rc = dmj_write_job(w, &j);
        if (rc == 0 && i % every == 0 && i >= every) { /* an earlier id again, Completed */
            struct dmj_job again = job(0, 1, (int64_t)(i - every), DMJ_STATUS_COMPLETED, 0);
            id_spread(again.id, i - every);
            rc = dmj_write_job(w, &again);
        }
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(dmj_write_commit(w, &st), 0);
    CHECK_EQ_INT(st.inserted, n);
    CHECK_EQ_INT(st.replaced, 0); /* the repeats were in the same batch: the last put won */
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);

    struct dmj_read *r;
    struct dmj_job j;
    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    unsigned missing = 0, wrong = 0, completed = 0;
    for (unsigned i = 0; i < n; i++) {
        uint8_t id[16];
        id_spread(id, i);
        if (dmj_read_job(r, id, &j) != 0) {
            missing++;
            continue;
        }
        bool repeated = i % every == 0 && i + every < n;
        wrong += j.created_at != (int64_t)i ||
                 j.status != (repeated ? DMJ_STATUS_COMPLETED : DMJ_STATUS_RUNNING);
        completed += j.status == DMJ_STATUS_COMPLETED;
    }
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(completed, n / every - 1);
    /* the status index holds each job once, under its last status */
    struct dmj_walk_spec sp = {.team_id = 1, .index = DMJ_WALK_STATUS,
                               .status = DMJ_STATUS_COMPLETED, .descending = true};
    struct dmj_walk wk;
    unsigned walked = 0;
    CHECK_EQ_INT(dmj_walk_start(r, &sp, &wk), 0);
    while (dmj_walk_next(&wk, &j) == 0)
        walked++;
    CHECK_EQ_INT(walked, n / every - 1);
    dmj_read_end(r);
    dmj_read_free(r);
    dmj_store_close(s);
}

/* Records are kept by team until a flush (store_recs.c): many teams interleaved, records
 * larger than a team's chunks, and several batches (the team table starts over after each)
 * all read back as written. */
static void test_records_by_team(const char *root)
{
    struct dmj_store *s = open_named(root, "by_team");
    if (!s)
        return;
    static char big[100000];
    memset(big, 'x', sizeof big);
    struct dmj_write *w;
    setenv("DMJ_WRITE_BATCH", "2500", 1);
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    unsetenv("DMJ_WRITE_BATCH");
    const unsigned n = 6000, teams = 300, every = 500;
    int rc = 0;
    for (unsigned i = 0; i < n && rc == 0; i++) {
        struct dmj_job j = job(0, (int32_t)(i % teams) - 150, (int64_t)i, DMJ_STATUS_FAILED, 0);
        id_spread(j.id, i);
        j.error.ptr = big;
        j.error.len = i % every == 0 ? sizeof big : i % 97;
        rc = dmj_write_job(w, &j);
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);

    struct dmj_read *r;
    struct dmj_job j;
    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    unsigned wrong = 0;
    for (unsigned i = 0; i < n; i++) {
        uint8_t id[16];
        id_spread(id, i);
        if (dmj_read_job(r, id, &j) != 0) {
            wrong++;
            continue;
        }
        size_t elen = i % every == 0 ? sizeof big : i % 97;
        wrong += j.team_id != (int32_t)(i % teams) - 150 || j.created_at != (int64_t)i ||
                 j.error.len != elen || (elen && memcmp(j.error.ptr, big, elen) != 0);
    }
    CHECK_EQ_INT(wrong, 0);
    dmj_read_end(r);
    dmj_read_free(r);
    dmj_store_close(s);
}

/* Writes jobs 1..n in one transaction, `memory` ($DMJ_WRITE_MEMORY, NULL: unset) the batch
 * budget, then job 1 again in another team; returns how many the commit counted as replaced:
 * 1 when the repeat came in a later batch than the first put (which was written by then), 0
 * when both were in one batch (the last put wins before anything is written). */
static long long repeat_replaced(const char *root, const char *name, const char *memory, unsigned n)
{
    char path[512];
    struct dmj_store *s;
    struct dmj_write *w;
    struct dmj_write_stats st = {0, 0};
    snprintf(path, sizeof path, "%s/%s", root, name);
    CHECK_EQ_INT(dmj_store_open(path, 0, 1 << 26, &s), 0);
    if (memory)
        setenv("DMJ_WRITE_MEMORY", memory, 1);
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    unsetenv("DMJ_WRITE_MEMORY");
    int rc = 0;
    for (unsigned i = 1; i <= n && rc == 0; i++) {
        struct dmj_job j =
            job(i, (int32_t)(i % 7), (int64_t)(n - i), (enum dmj_status)(i % 5), i % 3);
        rc = dmj_write_job(w, &j);
    }
    CHECK_EQ_INT(rc, 0);
    struct dmj_job again = job(1, 2, -5, DMJ_STATUS_FAILED, 0);
    CHECK_EQ_INT(dmj_write_job(w, &again), 0);
    CHECK_EQ_INT(dmj_write_commit(w, &st), 0);
    CHECK_EQ_INT(st.inserted, n);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);

    /* whichever batch the first put went to, the repeat is what is stored */
    struct dmj_read *r;
    struct dmj_job got;
    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_job(r, again.id, &got), 0);
    CHECK_EQ_INT(got.team_id, 2);
    CHECK_EQ_INT(got.created_at, -5);
    dmj_read_end(r);
    dmj_read_free(r);
    dmj_store_close(s);
    return (long long)st.replaced;
}

static void test_batch_budget(const char *root)
{
    /* a quarter of the memory the process may fill, never below 64 MiB; 1 GiB unknown */
    CHECK_EQ_INT(dmj__write_budget(0), 1LL << 30);
    CHECK_EQ_INT(dmj__write_budget(1 << 20), 64LL << 20);
    CHECK_EQ_INT(dmj__write_budget(24ULL << 30), 6LL << 30);
    /* the point of it: 10M generated jobs (~220-byte records) are one sorted batch with
     * 24 GiB, and 1M (the former fixed batch) with 4 GiB */
    uint64_t per_job = dmj__write_job_cost() + 220;
    CHECK(dmj__write_job_cost() <= 320);
    CHECK(10000000ULL * per_job <= dmj__write_budget(24ULL << 30));
    CHECK(1000000ULL * per_job <= dmj__write_budget(4ULL << 30));

    /* a batch is written once its memory passes the budget: 3000 jobs take ~1 MB */
    CHECK_EQ_INT(repeat_replaced(root, "budget_small", "100000", 3000), 1);
    CHECK_EQ_INT(repeat_replaced(root, "budget_default", NULL, 3000), 0);
    /* a malformed budget is ignored */
    CHECK_EQ_INT(repeat_replaced(root, "budget_bad", "12x", 3000), 0);
}

static void test_identities(const char *root)
{
    char path[512];
    struct dmj_store *s;
    struct dmj_read *r;
    struct dmj_write *w;
    snprintf(path, sizeof path, "%s/ident", root);
    CHECK_EQ_INT(dmj_store_open(path, 0, 1 << 24, &s), 0);
    uint8_t orgA[16], orgB[16];
    memset(orgA, 0xa0, 16);
    memset(orgB, 0xb0, 16);
    struct dmj_org oa = {.name = {"A", 1}};
    memcpy(oa.id, orgA, 16);
    struct dmj_team t9 = {.id = 9, .project_id = 9, .name = {"nine", 4}};
    struct dmj_team t3 = {.id = 3, .project_id = 3, .name = {"three", 5}};
    struct dmj_team t7 = {.id = 7, .project_id = 7, .name = {NULL, 0}};
    memcpy(t9.organization_id, orgA, 16);
    memcpy(t3.organization_id, orgA, 16);
    memcpy(t7.organization_id, orgB, 16);
    struct dmj_user u = {
        .id = 42, .is_active = true, .has_current_team = true, .current_team_id = 9};
    struct dmj_membership m1 = {.user_id = 42, .level = 8}, m2 = {.user_id = 42, .level = 1};
    memcpy(m1.organization_id, orgB, 16);
    memcpy(m2.organization_id, orgA, 16);
    static struct dmj_key k, got;
    memset(&k, 0, sizeof k);
    strcpy(k.secure_value, "sha256$aaaa");
    k.user_id = 42;
    k.n_scopes = 1;
    k.scopes[0].ptr = "warehouse_view:read";
    k.scopes[0].len = 19;
    k.n_teams = 1;
    k.scoped_teams[0] = 9;

    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_org(w, &oa), 0);
    CHECK_EQ_INT(dmj_write_team(w, &t9), 0);
    CHECK_EQ_INT(dmj_write_team(w, &t3), 0);
    CHECK_EQ_INT(dmj_write_team(w, &t7), 0);
    CHECK_EQ_INT(dmj_write_user(w, &u), 0);
    CHECK_EQ_INT(dmj_write_membership(w, &m1), 0);
    CHECK_EQ_INT(dmj_write_membership(w, &m2), 0);
    CHECK_EQ_INT(dmj_write_key(w, &k), 0);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);

    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    struct dmj_team t;
    CHECK_EQ_INT(dmj_read_team(r, 9, &t), 0);
    CHECK(t.name.len == 4 && memcmp(t.name.ptr, "nine", 4) == 0);
    CHECK_EQ_INT(dmj_read_team(r, 8, &t), DMJ_ENOTFOUND);
    struct dmj_user gu;
    CHECK_EQ_INT(dmj_read_user(r, 42, &gu), 0);
    CHECK(gu.is_active && gu.current_team_id == 9);
    CHECK_EQ_INT(dmj_read_user(r, 41, &gu), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_read_key(r, "sha256$aaaa", &got), 0);
    CHECK_EQ_STR(got.secure_value, "sha256$aaaa");
    CHECK(got.n_teams == 1 && got.scoped_teams[0] == 9 && got.user_id == 42);
    CHECK_EQ_INT(dmj_read_key(r, "sha256$aaab", &got), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_read_key(r, "", &got), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_read_membership(r, 42, orgA), 0);
    CHECK_EQ_INT(dmj_read_membership(r, 43, orgA), DMJ_ENOTFOUND);
    uint8_t org[16];
    CHECK_EQ_INT(dmj_read_first_org_of_user(r, 42, org), 0);
    CHECK(memcmp(org, orgA, 16) == 0);
    CHECK_EQ_INT(dmj_read_first_org_of_user(r, 41, org), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_read_first_org_of_user(r, 43, org), DMJ_ENOTFOUND);
    int32_t team = 0;
    CHECK_EQ_INT(dmj_read_first_team_of_org(r, orgA, &team), 0);
    CHECK_EQ_INT(team, 3);
    CHECK_EQ_INT(dmj_read_first_team_of_org(r, orgB, &team), 0);
    CHECK_EQ_INT(team, 7);
    uint8_t orgC[16];
    memset(orgC, 0xc0, 16);
    CHECK_EQ_INT(dmj_read_first_team_of_org(r, orgC, &team), DMJ_ENOTFOUND);
    dmj_read_end(r);

    /* team 3 moves to organization B: A's lowest team is then 9 */
    memcpy(t3.organization_id, orgB, 16);
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_team(w, &t3), 0);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_first_team_of_org(r, orgA, &team), 0);
    CHECK_EQ_INT(team, 9);
    CHECK_EQ_INT(dmj_read_first_team_of_org(r, orgB, &team), 0);
    CHECK_EQ_INT(team, 3);
    dmj_read_end(r);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    dmj_read_free(r);
    dmj_store_close(s);
}

/* Puts or deletes one entry straight through LMDB, behind the store's back. */
static void tamper(const char *path, const char *db, const void *key, size_t klen, const void *val,
                   size_t vlen, bool delete)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_env *env = rawdb_begin(path, db, 1 << 24, &txn, &dbi);
    CHECK(env != NULL);
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    if (delete)
        CHECK_EQ_INT(mdb_del(txn, dbi, &k, NULL), 0);
    else
        CHECK_EQ_INT(mdb_put(txn, dbi, &k, &v, 0), 0);
    CHECK_EQ_INT(rawdb_commit(env, txn), 0);
}

struct tolerant {
    unsigned jobs, bad, bad_id;
    int err, stop;
};

static int tolerant_job(void *ctx, const struct dmj_job *j)
{
    (void)j;
    ((struct tolerant *)ctx)->jobs++;
    return 0;
}

static int tolerant_bad(void *ctx, const uint8_t *id, int err)
{
    struct tolerant *t = ctx;
    t->bad++;
    t->bad_id = id ? id_num(id) : 0;
    t->err = err;
    return t->stop;
}

/* The number of lines verify reports. */
static unsigned verify_lines(const char *path, int *rc)
{
    struct dmj_store *s;
    char *text = NULL;
    size_t len = 0;
    unsigned lines = 0;
    if (dmj_store_open(path, DMJ_STORE_RDONLY, 0, &s) != 0)
        return 9999;
    FILE *f = open_memstream(&text, &len);
    *rc = dmj_store_verify(s, f);
    fclose(f);
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    if (lines)
        fprintf(stderr, "(expected) verify says:\n%s", text);
    free(text);
    dmj_store_close(s);
    return lines;
}

static void test_verify(const char *root)
{
    char path[512];
    struct dmj_store *s;
    int rc;
    snprintf(path, sizeof path, "%s/verify", root);
    CHECK_EQ_INT(dmj_store_open(path, 0, 1 << 24, &s), 0);
    struct dmj_job jobs[] = {job(1, 2, 100, DMJ_STATUS_RUNNING, 1),
                             job(2, 2, 200, DMJ_STATUS_COMPLETED, 0)};
    CHECK_EQ_INT(put_jobs(s, jobs, 2, NULL), 0);
    dmj_store_close(s);
    CHECK_EQ_INT(verify_lines(path, &rc), 0);
    CHECK_EQ_INT(rc, 0);

    /* a by_status entry with the wrong status */
    uint8_t key[29];
    key[0] = 0x80;
    key[1] = key[2] = 0;
    key[3] = 2;
    key[4] = DMJ_STATUS_FAILED;
    memset(key + 5, 0, 8);
    key[5] = 0x80;
    key[12] = 200;
    make_id(key + 13, 2);
    tamper(path, "by_status", key, sizeof key, "", 0, false);
    CHECK_EQ_INT(verify_lines(path, &rc), 1);
    CHECK_EQ_INT(rc, DMJ_EBADRECORD);
    tamper(path, "by_status", key, sizeof key, NULL, 0, true);
    CHECK_EQ_INT(verify_lines(path, &rc), 0);

    /* a job's status entry missing */
    key[4] = DMJ_STATUS_COMPLETED;
    tamper(path, "by_status", key, sizeof key, NULL, 0, true);
    CHECK_EQ_INT(verify_lines(path, &rc), 1);
    CHECK_EQ_INT(rc, DMJ_EBADRECORD);
    tamper(path, "by_status", key, sizeof key, "", 0, false);

    /* a dangling job_ids entry, and a record that does not decode */
    uint8_t id[16], where[12] = {0x80, 0, 0, 2, 0x80, 0, 0, 0, 0, 0, 0, 77};
    make_id(id, 3);
    tamper(path, "job_ids", id, 16, where, 12, false);
    uint8_t jkey[28];
    memcpy(jkey, where, 12);
    make_id(jkey + 12, 4);
    tamper(path, "jobs", jkey, 28, "\x93\x01\x02", 3, false);
    CHECK_EQ_INT(verify_lines(path, &rc), 2);
    CHECK_EQ_INT(rc, DMJ_EBADRECORD);

    /* the walk reports the bad record and goes on past it */
    CHECK_EQ_INT(dmj_store_open(path, DMJ_STORE_RDONLY, 0, &s), 0);
    struct dmj_read *r;
    struct dmj_walk w;
    struct dmj_job j;
    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    struct dmj_walk_spec sp = {.team_id = 2, .index = DMJ_WALK_TEAM, .descending = true};
    CHECK_EQ_INT(dmj_walk_start(r, &sp, &w), 0);
    CHECK_EQ_INT(dmj_walk_next(&w, &j), 0);
    CHECK_EQ_INT(id_num(j.id), 2);
    CHECK_EQ_INT(dmj_walk_next(&w, &j), 0);
    CHECK_EQ_INT(id_num(j.id), 1);
    CHECK_EQ_INT(dmj_walk_next(&w, &j), DMJ_EBADRECORD);
    CHECK_EQ_INT(dmj_walk_next(&w, &j), DMJ_EEND);
    CHECK_EQ_INT(dmj_read_job(r, id, &j), DMJ_EBADRECORD);
    dmj_read_end(r);
    dmj_read_free(r);
    dmj_store_close(s);

    /* each_job stops at it; the tolerant walk names it and gives every other job */
    CHECK_EQ_INT(dmj_store_open(path, DMJ_STORE_RDONLY, 0, &s), 0);
    unsigned n = 0;
    CHECK_EQ_INT(dmj_store_each_job(s, 2, count_job, &n), DMJ_EBADRECORD);
    struct tolerant t = {0};
    CHECK_EQ_INT(dmj_store_each_job_tolerant(s, 2, tolerant_job, tolerant_bad, &t), 0);
    CHECK_EQ_INT(t.jobs, 2);
    CHECK_EQ_INT(t.bad, 1);
    CHECK_EQ_INT(t.bad_id, 4);
    CHECK_EQ_INT(t.err, DMJ_EBADRECORD);
    t.stop = 99; /* and stops when told to */
    CHECK_EQ_INT(dmj_store_each_job_tolerant(s, 2, tolerant_job, tolerant_bad, &t), 99);
    CHECK_EQ_INT(t.bad, 2);
    dmj_store_close(s);

    /* re-importing over the damage repairs it */
    CHECK_EQ_INT(dmj_store_open(path, 0, 0, &s), 0);
    struct dmj_job fix = job(3, 2, 0, DMJ_STATUS_RUNNING, 0);
    CHECK_EQ_INT(put_jobs(s, &fix, 1, NULL), 0);
    struct dmj_write *wr;
    CHECK_EQ_INT(dmj_write_begin(s, &wr), 0);
    dmj_write_abort(wr);
    dmj_store_close(s);
    tamper(path, "jobs", jkey, 28, NULL, 0, true);
    CHECK_EQ_INT(verify_lines(path, &rc), 0);
}

/* Damage to the identity tables: verify names each problem (runs on test_identities' store). */
static void test_verify_identities(const char *root)
{
    char path[512];
    int rc;
    snprintf(path, sizeof path, "%s/ident", root);
    CHECK_EQ_INT(verify_lines(path, &rc), 0);
    uint8_t ot[20];
    memset(ot, 0xa0, 16); /* organization A's entry of team 9 goes */
    ot[16] = 0x80;
    ot[17] = ot[18] = 0;
    ot[19] = 9;
    tamper(path, "org_teams", ot, sizeof ot, NULL, 0, true);
    CHECK_EQ_INT(verify_lines(path, &rc), 1);
    CHECK_EQ_INT(rc, DMJ_EBADRECORD);
    memset(ot, 0xc0, 16); /* ... and shows up under an organization it is not in */
    tamper(path, "org_teams", ot, sizeof ot, "", 0, false);
    CHECK_EQ_INT(verify_lines(path, &rc), 2);
    uint8_t user[8] = {0x80, 0, 0, 0, 0, 0, 0, 42};
    tamper(path, "users", user, sizeof user, "\xc0", 1, false);
    CHECK_EQ_INT(verify_lines(path, &rc), 3);
    tamper(path, "keys", "sha256$zz", 9, "\x97\x01", 2, false);
    CHECK_EQ_INT(verify_lines(path, &rc), 4);
}

/* A team whose record does not decode still leaves its organization's list when deleted (on
 * test_identities' store, after test_verify_identities' damage: counted from there). */
static void test_delete_damaged_team(const char *root)
{
    char path[512];
    struct dmj_store *s;
    struct dmj_write *w;
    int rc, before;
    snprintf(path, sizeof path, "%s/ident", root);
    before = (int)verify_lines(path, &rc);
    const uint8_t key[4] = {0x80, 0, 0, 3};
    tamper(path, "teams", key, sizeof key, "\x97\x01", 2, false);
    CHECK((int)verify_lines(path, &rc) > before);
    CHECK_EQ_INT(dmj_store_open(path, 0, 1 << 24, &s), 0);
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_delete_team(w, 3), 0);
    CHECK_EQ_INT(dmj_write_delete_team(w, 3), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    dmj_store_close(s);
    CHECK_EQ_INT((int)verify_lines(path, &rc), before);
}

/* The store's id through a fresh read handle of a fresh open: 0 or the error. */
static int id_of(const char *path, unsigned flags, uint8_t out[16])
{
    struct dmj_store *s;
    struct dmj_read *r;
    int rc = dmj_store_open(path, flags, 1 << 24, &s);
    if (rc)
        return rc;
    rc = dmj_read_new(s, &r);
    if (rc == 0) {
        rc = dmj_read_begin(r);
        if (rc == 0)
            rc = dmj_read_store_id(r, out);
        dmj_read_end(r);
        dmj_read_free(r);
    }
    dmj_store_close(s);
    return rc;
}

static void test_store_id(const char *root)
{
    char a[512], b[512], copy[512];
    uint8_t id[16], again[16], other[16], zero[16] = {0};
    struct dmj_store *s;
    struct dmj_read *r;
    int rc;
    snprintf(a, sizeof a, "%s/id_a", root);
    snprintf(b, sizeof b, "%s/id_b", root);
    snprintf(copy, sizeof copy, "%s/id_copy", root);

    /* made with the store, kept across opens of either kind; another store has another */
    CHECK_EQ_INT(id_of(a, 0, id), 0);
    CHECK(memcmp(id, zero, 16) != 0);
    CHECK_EQ_INT(id_of(a, DMJ_STORE_RDONLY, again), 0);
    CHECK(memcmp(id, again, 16) == 0);
    CHECK_EQ_INT(id_of(a, 0, again), 0);
    CHECK(memcmp(id, again, 16) == 0);
    CHECK_EQ_INT(id_of(b, 0, other), 0);
    CHECK(memcmp(id, other, 16) != 0);

    /* a backup has an id of its own and the same jobs, verifies, and no lock file is left
     * from giving it the id */
    struct dmj_job jobs[] = {job(1, 2, 100, DMJ_STATUS_RUNNING, 1),
                             job(2, 2, 200, DMJ_STATUS_COMPLETED, 0)};
    CHECK_EQ_INT(dmj_store_open(a, 0, 1 << 24, &s), 0);
    CHECK_EQ_INT(put_jobs(s, jobs, 2, NULL), 0);
    CHECK_EQ_INT(dmj_store_backup(s, copy), 0);
    dmj_store_close(s);
    CHECK_EQ_INT(dir_entries(copy, "data"), 1); /* no partial file, no lock file beside it */
    CHECK_EQ_INT(id_of(copy, DMJ_STORE_RDONLY, other), 0);
    CHECK(memcmp(id, other, 16) != 0 && memcmp(other, zero, 16) != 0);
    CHECK_EQ_INT(id_of(a, DMJ_STORE_RDONLY, again), 0);
    CHECK(memcmp(id, again, 16) == 0);
    CHECK_EQ_INT(verify_lines(copy, &rc), 0);
    CHECK_EQ_INT(rc, 0);
    unsigned n = 0;
    CHECK_EQ_INT(dmj_store_open(copy, DMJ_STORE_RDONLY, 0, &s), 0);
    CHECK_EQ_INT(dmj_store_each_job(s, -1, count_job, &n), 0);
    CHECK_EQ_INT(n, 2);
    dmj_store_close(s);

    /* a store from before ids, opened read-only: none (and a read must be begun to look),
     * until a writer opens it; the reader then sees the writer's id, and keeps it */
    tamper(b, "meta", "store_id", 8, NULL, 0, true);
    CHECK_EQ_INT(id_of(b, DMJ_STORE_RDONLY, other), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_store_open(b, DMJ_STORE_RDONLY, 0, &s), 0);
    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    CHECK_EQ_INT(dmj_read_store_id(r, other), DMJ_EINVAL);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_store_id(r, other), DMJ_ENOTFOUND);
    dmj_read_end(r);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* another process: LMDB allows one open of a store per process */
        struct dmj_store *ws;
        if (dmj_store_open(b, 0, 1 << 24, &ws) != 0)
            _exit(1);
        dmj_store_close(ws);
        _exit(0);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_store_id(r, other), 0);
    dmj_read_end(r);
    CHECK_EQ_INT(dmj_read_store_id(r, again), 0); /* cached: no read needed any more */
    CHECK(memcmp(other, again, 16) == 0 && memcmp(other, zero, 16) != 0);
    dmj_read_free(r);
    dmj_store_close(s);
    CHECK_EQ_INT(id_of(b, 0, again), 0);
    CHECK(memcmp(other, again, 16) == 0);

    /* a malformed id: reported by verify and the call, replaced by the next writable open */
    tamper(b, "meta", "store_id", 8, "abc", 3, false);
    CHECK_EQ_INT(id_of(b, DMJ_STORE_RDONLY, other), DMJ_EBADRECORD);
    CHECK_EQ_INT(verify_lines(b, &rc), 1);
    CHECK_EQ_INT(rc, DMJ_EBADRECORD);
    CHECK_EQ_INT(id_of(b, 0, other), 0);
    CHECK(memcmp(other, again, 16) != 0);
    CHECK_EQ_INT(verify_lines(b, &rc), 0);
}

int main(void)
{
    char root[64];
    if (tmpdir_make("dmj_test_store.", root, sizeof root) != 0) {
        perror("mkdtemp");
        return 1;
    }
    test_open(root);
    test_walks(root);
    test_upsert(root);
    test_map_full(root);
    test_file_limit(root);
    test_empty_file(root);
    test_lock_reserved(root);
    test_truncated(root);
    test_backup_killed(root);
    test_identities(root);
    test_verify(root);
    test_verify_identities(root);
    test_delete_damaged_team(root);
    test_store_id(root);
    test_big_batch(root);
    test_id_sort_split(root);
    test_records_by_team(root);
    test_batch_budget(root);
    if (tmpdir_remove(root) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return check_done();
}

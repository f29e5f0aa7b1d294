/* Reader threads with their own reusable read handles walk the store while the main thread
 * commits: each read sees one committed state, whole, and never one that goes back. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dmj/store.h"

#define READERS 3
#define COMMITS 40
#define PER_COMMIT 50

struct reader {
    pthread_t thread;
    struct dmj_store *s;
    atomic_bool *stop;
    unsigned reads;
    unsigned errors; /* a torn or shrinking view, or a failed call */
};

static struct dmj_job job(unsigned n)
{
    struct dmj_job j;
    memset(&j, 0, sizeof j);
    j.id[0] = (uint8_t)(n * 131);
    j.id[14] = (uint8_t)(n >> 8);
    j.id[15] = (uint8_t)n;
    j.team_id = 1;
    j.created_at = (int64_t)(n % 97); /* interleaved with what is stored */
    j.status = n % 2 ? DMJ_STATUS_RUNNING : DMJ_STATUS_COMPLETED;
    j.rows_materialized = n;
    return j;
}

/* Every commit adds PER_COMMIT jobs, half of them Running: within one read the team's
 * count is a multiple of PER_COMMIT and the Running ones exactly half of it. */
static void *read_loop(void *arg)
{
    struct reader *rd = arg;
    struct dmj_read *r;
    unsigned last = 0;
    if (dmj_read_new(rd->s, &r) != 0) {
        rd->errors++;
        return NULL;
    }
    while (!atomic_load(rd->stop)) {
        if (dmj_read_begin(r) != 0) {
            rd->errors++;
            break;
        }
        struct dmj_walk_spec all = {.team_id = 1, .index = DMJ_WALK_TEAM, .descending = true};
        struct dmj_walk_spec run = {.team_id = 1,
                                    .index = DMJ_WALK_STATUS,
                                    .status = DMJ_STATUS_RUNNING,
                                    .descending = false};
        struct dmj_walk w;
        struct dmj_job j;
        unsigned n_all = 0, n_run = 0;
        int rc = dmj_walk_start(r, &all, &w);
        while (rc == 0 && (rc = dmj_walk_next(&w, &j)) == 0)
            n_all++;
        rd->errors += rc != DMJ_EEND;
        rc = dmj_walk_start(r, &run, &w);
        while (rc == 0 && (rc = dmj_walk_next(&w, &j)) == 0)
            n_run += j.status == DMJ_STATUS_RUNNING;
        rd->errors += rc != DMJ_EEND;
        rd->errors += n_all % PER_COMMIT != 0 || n_run * 2 != n_all || n_all < last;
        last = n_all;
        dmj_read_end(r);
        rd->reads++;
    }
    dmj_read_free(r);
    return NULL;
}

int main(void)
{
    char tmpl[] = "/tmp/dmj_test_threads.XXXXXX";
    const char *root = mkdtemp(tmpl);
    if (!root)
        return 1;
    struct dmj_store *s;
    atomic_bool stop = false;
    struct reader rd[READERS];
    /* Under ThreadSanitizer this passes because the writer writes pages with pwrite: were
     * the store opened with MDB_WRITEMAP, its stores into the map would be seen, but not
     * LMDB's reader table that keeps readers off reused pages (plain loads in shared
     * memory), and every read of a recycled page would be reported. */
    CHECK_EQ_INT(dmj_store_open(root, 0, 1 << 26, &s), 0);
    for (int i = 0; i < READERS; i++) {
        rd[i] = (struct reader){.s = s, .stop = &stop};
        CHECK_EQ_INT(pthread_create(&rd[i].thread, NULL, read_loop, &rd[i]), 0);
    }
    unsigned n = 0;
    for (int c = 0; c < COMMITS; c++) {
        struct dmj_write *w;
        CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
        for (int k = 0; k < PER_COMMIT; k++) {
            struct dmj_job j = job(n++);
            CHECK_EQ_INT(dmj_write_job(w, &j), 0);
        }
        CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    }
    atomic_store(&stop, true);
    unsigned reads = 0;
    for (int i = 0; i < READERS; i++) {
        pthread_join(rd[i].thread, NULL);
        CHECK_EQ_INT(rd[i].errors, 0);
        reads += rd[i].reads;
    }
    CHECK(reads > 0);
    CHECK_EQ_INT(dmj_store_verify(s, stderr), 0);
    printf("%u reads during %d commits\n", reads, COMMITS);
    dmj_store_close(s);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return check_done();
}

/* Reader threads with their own reusable read handles walk the store while the main thread
 * commits: each read sees one committed state, whole, and never one that goes back, and the
 * store's one id. And while another process grows the data file past the readers' map size:
 * they adopt it. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "tmpdir.h"
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
    unsigned last;   /* the jobs the last read saw */
    atomic_uint reads_done;
    atomic_uint failed;
    uint8_t id[16]; /* the store id every read must give */
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
        atomic_store(&rd->failed, 1);
        return NULL;
    }
    while (!atomic_load(rd->stop)) {
        if (dmj_read_begin(r) != 0) {
            rd->errors++;
            atomic_store(&rd->failed, 1);
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
        uint8_t id[16];
        int rc = dmj_read_store_id(r, id);
        rd->errors += rc != 0 || memcmp(id, rd->id, 16) != 0;
        rc = dmj_walk_start(r, &all, &w);
        while (rc == 0 && (rc = dmj_walk_next(&w, &j)) == 0)
            n_all++;
        rd->errors += rc != DMJ_EEND;
        rc = dmj_walk_start(r, &run, &w);
        while (rc == 0 && (rc = dmj_walk_next(&w, &j)) == 0)
            n_run += j.status == DMJ_STATUS_RUNNING;
        rd->errors += rc != DMJ_EEND;
        rd->errors += n_all % PER_COMMIT != 0 || n_run * 2 != n_all || n_all < last;
        last = n_all;
        rd->last = n_all;
        dmj_read_end(r);
        rd->reads++;
        atomic_fetch_add(&rd->reads_done, 1);
    }
    dmj_read_free(r);
    return NULL;
}

/* The store's id, read once before the readers start. */
static void store_id(struct dmj_store *s, uint8_t out[16])
{
    struct dmj_read *r;
    memset(out, 0, 16);
    CHECK_EQ_INT(dmj_read_new(s, &r), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_store_id(r, out), 0);
    dmj_read_end(r);
    dmj_read_free(r);
}

/* Another process (a `dmj import --map-size` larger than dmjd's) commits until the data file
 * is several times the readers' 1 MiB map: before, every read then failed until a restart
 * (MDB_MAP_RESIZED); now the first to see it waits for the others' reads to end and adopts
 * the new size, and none fails. */
static void test_map_grown(const char *root)
{
    struct dmj_store *s;
    atomic_bool stop = false;
    struct reader rd[READERS];
    int go[2];
    CHECK_EQ_INT(dmj_store_open(root, 0, 1 << 20, &s), 0); /* created with the small map */
    dmj_store_close(s);
    CHECK_EQ_INT(pipe(go), 0);
    /* forked before any thread: the child opens its own environment */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        static char err[4096];
        char c;
        memset(err, 'e', sizeof err);
        close(go[1]);
        if (read(go[0], &c, 1) != 1 || dmj_store_open(root, 0, 1 << 26, &s) != 0)
            _exit(2);
        unsigned n = 0;
        for (int c2 = 0; c2 < 30; c2++) {
            struct dmj_write *w;
            if (dmj_write_begin(s, &w) != 0)
                _exit(3);
            for (int k = 0; k < PER_COMMIT; k++) {
                struct dmj_job j = job(n++);
                j.error.ptr = err;
                j.error.len = sizeof err;
                if (dmj_write_job(w, &j) != 0)
                    _exit(4);
            }
            if (dmj_write_commit(w, NULL) != 0)
                _exit(5);
        }
        dmj_store_close(s);
        _exit(0);
    }
    close(go[0]);
    CHECK(pid > 0);
    CHECK_EQ_INT(dmj_store_open(root, DMJ_STORE_RDONLY, 1 << 20, &s), 0);
    for (int i = 0; i < READERS; i++) {
        rd[i] = (struct reader){.s = s, .stop = &stop};
        store_id(s, rd[i].id);
        CHECK_EQ_INT(pthread_create(&rd[i].thread, NULL, read_loop, &rd[i]), 0);
    }
    CHECK_EQ_INT(write(go[1], "g", 1), 1);
    close(go[1]);
    int status = -1;
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* one more round of reads for each reader, surely past the last commit */
    unsigned before[READERS];
    for (int i = 0; i < READERS; i++)
        before[i] = atomic_load(&rd[i].reads_done);
    for (int i = 0; i < READERS; i++)
        while (atomic_load(&rd[i].reads_done) < before[i] + 2 && atomic_load(&rd[i].failed) == 0)
            usleep(1000);
    atomic_store(&stop, true);
    unsigned reads = 0;
    for (int i = 0; i < READERS; i++) {
        pthread_join(rd[i].thread, NULL);
        CHECK_EQ_INT(rd[i].errors, 0);
        CHECK_EQ_INT(rd[i].last, 30 * PER_COMMIT);
        reads += rd[i].reads;
    }
    uint64_t used, map;
    dmj_store_sizes(s, &used, &map);
    CHECK(used > 4u << 20);
    CHECK_EQ_INT(map, 1 << 26);
    printf("%u reads while another process grew the store to %llu bytes, past a 1 MiB map\n", reads,
           (unsigned long long)used);
    dmj_store_close(s);
}

int main(void)
{
    char root[64];
    if (tmpdir_make("dmj_test_threads.", root, sizeof root) != 0)
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
        store_id(s, rd[i].id);
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
    char grown[600];
    snprintf(grown, sizeof grown, "%s/grown", root);
    test_map_grown(grown);
    if (tmpdir_remove(root) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return check_done();
}

/* The store's write API: the write transaction (begin, commit, abort), jobs buffered into
 * batches sized by memory and written by store_flush.c, deletions, meta, and the identities
 * (teams, organizations, users, memberships, keys). */
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "dmj/buf.h"
#include "codec.h"
#include "dmj/store.h"
#include "store_impl.h"

/* A batch is sized by memory, not by a count: each batch after the first inserts inside the
 * key ranges the earlier ones wrote, where LMDB splits pages in half, so an import is best one
 * sorted batch, appended in key order (10M jobs in 1M-job batches: 72 s and a 6.5 GB store;
 * in one batch: 30 s and 4.3 GB, 5.1 GB of memory). A batch holds at most a quarter of
 * physical memory (or of the process's or its cgroup's limit, when lower): ~12M jobs on
 * 24 GiB. BATCH_HARD_MAX bounds the count: the put seqs and batch indexes are 32-bit. */
#define BATCH_HARD_MAX (1u << 28)
#define BUDGET_SHARE 4
#define BUDGET_MIN ((uint64_t)64 << 20)
/* When the machine's memory cannot be read: what the former 1M-job batches took. */
#define BUDGET_UNKNOWN ((uint64_t)1 << 30)
/* The encoded records' buffer: a sanity bound only, the budget flushes long before. */
#define RECORDS_MAX (SIZE_MAX / 4)

/* ---- the batch's size ------------------------------------------------------------------ */

/* What a buffered job costs besides its record: its entry, and its key in the four sort-key
 * arrays a flush fills (the writer's keys and tmp, the sorting thread's pair). */
#define JOB_COST (sizeof(struct pend) + 4 * sizeof(struct skey))

static uint64_t batch_bytes(const struct dmj_write *w)
{
    return (uint64_t)w->n * JOB_COST + w->recs.buf.len;
}

static uint64_t min_known(uint64_t a, uint64_t b)
{
    return a == 0 || (b != 0 && b < a) ? b : a;
}

/* The cgroup v2 memory limit of a container (its cgroup namespace's root, where the file is
 * the container's own); 0 when there is none. */
static uint64_t cgroup_limit(void)
{
    FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");
    unsigned long long v = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%llu", &v) != 1) /* "max": no limit */
        v = 0;
    fclose(f);
    return v;
}

/* The memory this process may fill: physical memory, or a lower address-space, data or
 * cgroup limit; 0 when unknown. */
static uint64_t memory_limit(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    uint64_t mem = pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        mem = min_known(mem, rl.rlim_cur);
    if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        mem = min_known(mem, rl.rlim_cur);
    return min_known(mem, cgroup_limit());
}

uint64_t dmj__write_budget(uint64_t mem)
{
    uint64_t b = mem ? mem / BUDGET_SHARE : BUDGET_UNKNOWN;
    return b < BUDGET_MIN ? BUDGET_MIN : b;
}

size_t dmj__write_job_cost(void)
{
    return JOB_COST;
}

/* Whether the batch is to be written before it takes another job. The memory is looked up
 * only once a batch passes BUDGET_MIN, which every budget is at least: small transactions
 * (sync cycles, `--batch` commits) skip the look-up. */
static bool batch_full(struct dmj_write *w)
{
    if (w->n >= w->batch_max)
        return true;
    if (batch_bytes(w) < w->budget)
        return false;
    if (!w->sized) {
        w->budget = dmj__write_budget(memory_limit());
        w->sized = true;
    }
    return batch_bytes(w) >= w->budget;
}

/* A positive count from the environment variable `name`, at most `max`; 0 when unset or
 * malformed. */
static uint64_t env_count(const char *name, uint64_t max)
{
    const char *b = getenv(name);
    char *end;
    if (!b || !*b)
        return 0;
    unsigned long long v = strtoull(b, &end, 10);
    return !*end && v >= 1 && v <= max ? v : 0;
}

/* ---- the transaction ----------------------------------------------------------------- */

int dmj_write_begin(struct dmj_store *s, struct dmj_write **out)
{
    if (s->rdonly)
        return -EROFS;
    struct dmj_write *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->s = s;
    /* a reader slot left by a dead process pins old pages: the store would only grow */
    int dead;
    (void)mdb_reader_check(s->env, &dead);
    w->batch_max = (size_t)env_count("DMJ_WRITE_BATCH", BATCH_HARD_MAX);
    if (!w->batch_max)
        w->batch_max = BATCH_HARD_MAX;
    w->budget = env_count("DMJ_WRITE_MEMORY", UINT64_MAX);
    w->sized = w->budget != 0;
    if (!w->sized)
        w->budget = BUDGET_MIN;
    dmj__recs_init(&w->recs, RECORDS_MAX);
    int rc = mdb_txn_begin(s->env, NULL, 0, &w->txn);
    if (rc == MDB_MAP_RESIZED) {
        /* another process grew the map: adopt its size once no read of ours is live */
        rc = dmj__store_adopt_map_size(s);
        if (!rc)
            rc = dmj__store_err(mdb_txn_begin(s->env, NULL, 0, &w->txn));
    } else {
        rc = dmj__store_err(rc);
    }
    if (rc) {
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

static void write_free(struct dmj_write *w)
{
    dmj__counts_dispose(&w->counts);
    dmj__recs_dispose(&w->recs);
    free(w->p);
    free(w->keys);
    free(w->tmp);
    free(w);
}

/* Batches whose records take at least this much are freed beside the commit. */
#define FREE_ASIDE_MIN ((size_t)64 << 20)

static void *free_main(void *arg)
{
    write_free(arg);
    return NULL;
}

void dmj_write_abort(struct dmj_write *w)
{
    if (!w)
        return;
    mdb_txn_abort(w->txn);
    write_free(w);
}

static int grow(struct dmj_write *w)
{
    size_t cap = w->cap ? w->cap * 2 : 1024;
    if (cap > w->batch_max)
        cap = w->batch_max;
    struct pend *p = realloc(w->p, cap * sizeof *p);
    if (!p)
        return -ENOMEM;
    w->p = p;
    struct skey *k = realloc(w->keys, cap * sizeof *k);
    if (!k)
        return -ENOMEM;
    w->keys = k;
    k = realloc(w->tmp, cap * sizeof *k);
    if (!k)
        return -ENOMEM;
    w->tmp = k;
    w->cap = cap;
    return 0;
}

int dmj_write_job(struct dmj_write *w, const struct dmj_job *job)
{
    int rc;
    if (w->err)
        return w->err;
    if (batch_full(w) && (rc = dmj__store_flush(w)) != 0)
        return rc;
    if (w->n == w->cap && (rc = grow(w)) != 0)
        return rc; /* nothing written yet: the transaction stays usable */
    size_t off;
    uint32_t len;
    if ((rc = dmj__recs_add_job(&w->recs, job, &off, &len)) != 0)
        return rc;
    struct pend *p = &w->p[w->n++];
    memcpy(p->id, job->id, 16);
    p->has_sq = job->has_saved_query_id;
    if (p->has_sq)
        memcpy(p->sq, job->saved_query_id, 16);
    p->created = job->created_at;
    p->team = job->team_id;
    p->status = (uint8_t)job->status;
    p->seq = w->seq++;
    p->dup = false;
    p->hidden = dmj_job_hidden(job);
    p->before = BEFORE_ABSENT;
    p->rec_off = off;
    p->rec_len = len;
    return 0;
}

int dmj_write_delete_job(struct dmj_write *w, const uint8_t id[16])
{
    MDB_val k = {16, (void *)id}, v;
    uint8_t where[12];
    if (w->err)
        return w->err;
    /* pending puts first, so that a put followed by a delete deletes */
    int rc = dmj__store_flush(w);
    if (rc)
        return rc;
    rc = mdb_get(w->txn, w->s->dbi[DB_JOB_IDS], &k, &v);
    if (rc == MDB_NOTFOUND)
        return DMJ_ENOTFOUND;
    if (rc)
        return dmj__write_fail(w, dmj__store_err(rc));
    if (v.mv_size != 12)
        return dmj__store_del(w, DB_JOB_IDS, id, 16);
    memcpy(where, v.mv_data, 12);
    struct prior was;
    rc = dmj__store_remove_job(w, id, where, &was);
    if (rc == 0)
        rc = dmj__write_fail(w, dmj__counts_apply(w->txn, w->s, &w->counts));
    if (rc == 0 && was.state == BEFORE_VISIBLE)
        rc = dmj__store_log_change(w, was.team, DMJ_CHANGE_DELETED, was.status, was.status, id);
    return rc;
}

int dmj_write_meta(struct dmj_write *w, const char *name, const void *val, size_t len)
{
    size_t n;
    if (w->err)
        return w->err;
    if (!dmj__meta_name_ok(name, &n))
        return DMJ_EINVAL;
    return dmj__store_put(w, DB_META, name, n, val, len);
}

/* ---- identities ---------------------------------------------------------------------- */

/* Encodes with `enc` into a scratch buffer and puts it under `key`. */
static int put_record(struct dmj_write *w, int db, const void *key, size_t klen, const void *rec,
                      int (*enc)(const void *, struct dmj_buf *))
{
    struct dmj_buf b;
    dmj_buf_init(&b, (size_t)1 << 24);
    int rc = enc(rec, &b);
    if (!rc)
        rc = dmj__store_put(w, db, key, klen, b.data, b.len);
    dmj_buf_dispose(&b);
    return rc;
}

static int enc_team(const void *t, struct dmj_buf *b)
{
    return dmj_codec_encode_team(t, b);
}

static int enc_org(const void *o, struct dmj_buf *b)
{
    return dmj_codec_encode_org(o, b);
}

static int enc_user(const void *u, struct dmj_buf *b)
{
    return dmj_codec_encode_user(u, b);
}

static int enc_key(const void *k, struct dmj_buf *b)
{
    return dmj_codec_encode_key(k, b);
}

int dmj_write_team(struct dmj_write *w, const struct dmj_team *t)
{
    uint8_t key[4], ot[20];
    MDB_val k = {4, key}, v;
    struct dmj_team old;
    int rc;
    if (w->err)
        return w->err;
    dmj__put32(key, t->id);
    /* a team that moves to another organization leaves the old one's list */
    rc = mdb_get(w->txn, w->s->dbi[DB_TEAMS], &k, &v);
    if (rc == 0 && dmj_codec_decode_team(v.mv_data, v.mv_size, &old) == 0 &&
        memcmp(old.organization_id, t->organization_id, 16) != 0) {
        memcpy(ot, old.organization_id, 16);
        dmj__put32(ot + 16, t->id);
        if ((rc = dmj__store_del(w, DB_ORG_TEAMS, ot, sizeof ot)) != 0)
            return rc;
    } else if (rc && rc != MDB_NOTFOUND) {
        return dmj__write_fail(w, dmj__store_err(rc));
    }
    if ((rc = put_record(w, DB_TEAMS, key, sizeof key, t, enc_team)) != 0)
        return rc;
    memcpy(ot, t->organization_id, 16);
    dmj__put32(ot + 16, t->id);
    return dmj__store_put(w, DB_ORG_TEAMS, ot, sizeof ot, "", 0);
}

int dmj_write_org(struct dmj_write *w, const struct dmj_org *o)
{
    if (w->err)
        return w->err;
    return put_record(w, DB_ORGS, o->id, 16, o, enc_org);
}

int dmj_write_user(struct dmj_write *w, const struct dmj_user *u)
{
    uint8_t key[8];
    if (w->err)
        return w->err;
    dmj__put64(key, u->id);
    return put_record(w, DB_USERS, key, sizeof key, u, enc_user);
}

int dmj_write_membership(struct dmj_write *w, const struct dmj_membership *m)
{
    uint8_t key[24], val[4];
    if (w->err)
        return w->err;
    dmj__put64(key, m->user_id);
    memcpy(key + 8, m->organization_id, 16);
    dmj__put32(val, m->level);
    return dmj__store_put(w, DB_MEMBERSHIPS, key, sizeof key, val, sizeof val);
}

int dmj_write_key(struct dmj_write *w, const struct dmj_key *k)
{
    if (w->err)
        return w->err;
    const char *nul = memchr(k->secure_value, '\0', sizeof k->secure_value);
    if (!nul || nul == k->secure_value)
        return DMJ_EINVAL;
    return put_record(w, DB_KEYS, k->secure_value, (size_t)(nul - k->secure_value), k, enc_key);
}

/* ---- identity deletions --------------------------------------------------------------- */

/* Deletes the entries of `db` whose keys are `klen` long and hold `part` (plen bytes) at
 * `at`, starting at the first key at or past `seek` (slen bytes) and stopping at the first
 * that does not start with its first `stop` bytes (0: never stops early, a whole scan). */
static int del_matching(struct dmj_write *w, int db, const uint8_t *seek, size_t slen, size_t stop,
                        size_t klen, size_t at, const uint8_t *part, size_t plen)
{
    MDB_cursor *c;
    MDB_val k = {slen, (void *)seek}, v;
    int rc = mdb_cursor_open(w->txn, w->s->dbi[db], &c);
    if (rc)
        return dmj__write_fail(w, dmj__store_err(rc));
    rc = slen ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (stop && (k.mv_size < stop || memcmp(k.mv_data, seek, stop) != 0))
            break;
        if (k.mv_size == klen && memcmp((const uint8_t *)k.mv_data + at, part, plen) == 0) {
            rc = mdb_cursor_del(c, 0);
            if (rc)
                break;
            w->dirty = true;
        }
        /* after a delete, LMDB's NEXT gives the entry that took the deleted one's place */
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : dmj__write_fail(w, dmj__store_err(rc));
}

int dmj_write_delete_membership(struct dmj_write *w, int64_t user_id, const uint8_t org[16])
{
    uint8_t key[24];
    if (w->err)
        return w->err;
    dmj__put64(key, user_id);
    memcpy(key + 8, org, 16);
    return dmj__store_del_existing(w, DB_MEMBERSHIPS, key, sizeof key);
}

int dmj_write_delete_key(struct dmj_write *w, const char *secure_value)
{
    if (w->err)
        return w->err;
    size_t len = strnlen(secure_value, DMJ_KEY_HASH_LEN + 1);
    if (len == 0 || len > DMJ_KEY_HASH_LEN)
        return DMJ_ENOTFOUND; /* no stored key has that form */
    return dmj__store_del_existing(w, DB_KEYS, secure_value, len);
}

int dmj_write_delete_user(struct dmj_write *w, int64_t id)
{
    uint8_t key[8];
    if (w->err)
        return w->err;
    dmj__put64(key, id);
    return dmj__store_del_existing(w, DB_USERS, key, sizeof key);
}

int dmj_write_delete_team(struct dmj_write *w, int32_t id)
{
    uint8_t key[4], ot[20];
    MDB_val k = {4, key}, v;
    struct dmj_team t;
    if (w->err)
        return w->err;
    dmj__put32(key, id);
    int rc = mdb_get(w->txn, w->s->dbi[DB_TEAMS], &k, &v);
    if (rc)
        return rc == MDB_NOTFOUND ? DMJ_ENOTFOUND : dmj__write_fail(w, dmj__store_err(rc));
    bool known = dmj_codec_decode_team(v.mv_data, v.mv_size, &t) == 0;
    if (known) {
        memcpy(ot, t.organization_id, 16);
        dmj__put32(ot + 16, id);
    }
    rc = known ? dmj__store_del(w, DB_ORG_TEAMS, ot, sizeof ot)
               : del_matching(w, DB_ORG_TEAMS, NULL, 0, 0, 20, 16, key, 4);
    return rc ? rc : dmj__store_del(w, DB_TEAMS, key, sizeof key);
}

int dmj_write_delete_org(struct dmj_write *w, const uint8_t id[16])
{
    if (w->err)
        return w->err;
    int rc = dmj__store_del_existing(w, DB_ORGS, id, 16);
    if (rc)
        return rc;
    return del_matching(w, DB_ORG_TEAMS, id, 16, 16, 20, 0, id, 16);
}

/* ---- commit -------------------------------------------------------------------------- */

/* Free space below which a failed write is taken for a full disk. */
#define LOW_SPACE ((uint64_t)1 << 20)

/* LMDB reports a short write of the data file as EIO ("filesystem full?"). A short write to a
 * regular file means the file system is full or the file size limit was reached, so say which
 * when it shows, rather than let a full disk read as a hardware error. */
static int commit_error(struct dmj_store *s, int rc)
{
    mdb_filehandle_t fd;
    struct statvfs vfs;
    struct rlimit rl;
    struct stat st;
    if (rc != -EIO || mdb_env_get_fd(s->env, &fd) != 0)
        return rc;
    if (fstatvfs(fd, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < LOW_SPACE)
        return -ENOSPC;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && fstat(fd, &st) == 0 &&
        (uint64_t)st.st_size + LOW_SPACE >= (uint64_t)rl.rlim_cur)
        return -EFBIG;
    return rc;
}

int dmj_write_commit(struct dmj_write *w, struct dmj_write_stats *stats)
{
    int rc = w->err;
    if (!rc)
        rc = dmj__store_flush(w);
    if (!rc)
        rc = dmj__write_fail(w, dmj__changes_save(w->txn, w->s, &w->log));
    if (!rc && w->dirty) {
        /* when the store last changed, for `dmj stats` and caches */
        uint8_t val[8];
        dmj__put64(val, dmj__store_now_us());
        rc = dmj__store_put(w, DB_META, "last_write_us", 13, val, sizeof val);
    }
    if (!rc)
        rc = dmj__write_fail(w, dmj__counts_commit(w->txn, w->s, w->dirty));
    if (rc) {
        mdb_txn_abort(w->txn);
        write_free(w);
        return rc;
    }
    /* The batch's buffers are not needed by the commit: large ones are handed back on
     * another thread while it writes (1M jobs: ~30 ms of unmapping off the writer). */
    MDB_txn *txn = w->txn;
    struct dmj_store *s = w->s;
    struct dmj_write_stats done = w->stats;
    pthread_t freer;
    bool aside =
        w->recs.buf.cap >= FREE_ASIDE_MIN && pthread_create(&freer, NULL, free_main, w) == 0;
    if (!aside)
        write_free(w);
    /* mdb_txn_commit frees the transaction whether or not it succeeds */
    rc = commit_error(s, dmj__store_err(mdb_txn_commit(txn)));
    if (aside)
        pthread_join(freer, NULL);
    if (!rc && stats)
        *stats = done;
    return rc;
}

/* The store's write side: jobs are batched, sorted per sub-database and inserted in key order
 * (appending where possible), because ordered LMDB inserts are 10-30x faster than random ones. */
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
#include <time.h>
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
/* Below this many keys a bucket is finished by insertion sort. */
#define SMALL_SORT 24
#define SKEY_MAX KEY_SQ_LEN

/* What a stored job was before a put replaced it, for its change-log entry. */
enum before { BEFORE_ABSENT = 0, BEFORE_HIDDEN, BEFORE_VISIBLE };

/* A job waiting in the batch; its record is already encoded into `recs`. */
struct pend {
    uint8_t id[16];
    uint8_t sq[16];
    int64_t created;
    int32_t team;
    uint32_t seq; /* order of the puts: the last put of an id wins */
    size_t rec_off;
    uint32_t rec_len;
    uint8_t status;
    bool has_sq;
    bool dup; /* a later put of the same id replaces this one */
    bool hidden;
    /* the stored job this one replaces (enum before), set by the flush that writes it */
    uint8_t before;
    uint8_t old_status;
    int32_t old_team;
};

/* A sort key of one sub-database and the batch entry it stands for. */
struct skey {
    uint8_t k[SKEY_MAX];
    uint32_t i;
};

struct dmj_write {
    struct dmj_store *s;
    MDB_txn *txn;
    struct pend *p;
    size_t n, cap;
    struct dmj__recs recs;
    struct skey *keys, *tmp; /* sorting scratch, cap entries each */
    uint32_t seq;
    size_t batch_max; /* BATCH_HARD_MAX, or $DMJ_WRITE_BATCH for tests and tuning */
    uint64_t budget;  /* bytes a batch may hold (batch_bytes), or $DMJ_WRITE_MEMORY */
    bool sized;       /* budget is the machine's (else BUDGET_MIN, see batch_full) */
    int err;          /* a failure inside the transaction: everything after is refused */
    bool dirty;
    struct dmj__change_log log;
    int64_t at_us; /* the clock for the change-log entries of the batch being written */
    struct dmj_write_stats stats;
};

/* ---- sorting ------------------------------------------------------------------------- */

static void insertion_sort(struct skey *a, size_t n, size_t d, size_t len)
{
    for (size_t i = 1; i < n; i++) {
        if (memcmp(a[i - 1].k + d, a[i].k + d, len - d) <= 0)
            continue;
        struct skey t = a[i];
        size_t j = i;
        while (j > 0 && memcmp(a[j - 1].k + d, t.k + d, len - d) > 0) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = t;
    }
}

static void radix_sort(struct skey *src, struct skey *other, size_t n, size_t d, size_t len,
                       bool in_src);

/* One radix level: counts byte `d` of the keys in `src` (cnt) and scatters them into
 * `other` by it; false, with nothing moved, when every key has the same byte there. */
static bool scatter(const struct skey *src, struct skey *other, size_t n, size_t d,
                    size_t cnt[256])
{
    memset(cnt, 0, 256 * sizeof *cnt);
    for (size_t i = 0; i < n; i++)
        cnt[src[i].k[d]]++;
    if (cnt[src[0].k[d]] == n)
        return false;
    size_t pos[256], at = 0;
    for (int b = 0; b < 256; b++) {
        pos[b] = at;
        at += cnt[b];
    }
    for (size_t i = 0; i < n; i++)
        other[pos[src[i].k[d]]++] = src[i];
    return true;
}

/* The buckets [from, to) of a level scattered by byte d into `other` (cnt: their sizes; at:
 * where bucket `from` starts), each sorted from byte d + 1 on and left where the caller of
 * the level wants them: in `src` when `in_src`, else in `other`. */
struct buckets {
    struct skey *src, *other;
    const size_t *cnt;
    int from, to;
    size_t at, d, len;
    bool in_src;
};

static void *finish_buckets(void *arg)
{
    const struct buckets *b = arg;
    size_t at = b->at;
    for (int i = b->from; i < b->to; i++) {
        if (b->cnt[i] > 1)
            radix_sort(b->other + at, b->src + at, b->cnt[i], b->d + 1, b->len, !b->in_src);
        else if (b->cnt[i] == 1 && b->in_src)
            b->src[at] = b->other[at];
        at += b->cnt[i];
    }
    return NULL;
}

/* MSD radix sort on fixed-length keys whose first `d` bytes are already equal. Bytes where
 * every key agrees (the team, the high bytes of timestamps) cost one counting pass. The
 * keys are in `src`; they end sorted in `src` when `in_src`, else in `other`: each level
 * scatters into the other array, so no level copies back. */
static void radix_sort(struct skey *src, struct skey *other, size_t n, size_t d, size_t len,
                       bool in_src)
{
    size_t cnt[256];
    for (; n > SMALL_SORT && d < len; d++) {
        if (!scatter(src, other, n, d, cnt))
            continue;
        struct buckets all = {src, other, cnt, 0, 256, 0, d, len, in_src};
        finish_buckets(&all);
        return;
    }
    if (d < len)
        insertion_sort(src, n, d, len);
    if (!in_src)
        memcpy(other, src, n * sizeof *src);
}

static bool in_order(const struct skey *a, size_t n, size_t len)
{
    size_t i = 1;
    while (i < n && memcmp(a[i - 1].k, a[i].k, len) <= 0)
        i++;
    return i >= n;
}

static void sort_keys(struct skey *a, struct skey *tmp, size_t n, size_t len)
{
    if (!in_order(a, n, len)) /* input already in order (an export, say) skips the sort */
        radix_sort(a, tmp, n, 0, len, true);
}

/* sort_keys on two threads, for the id sort that opens a large flush while the other core
 * has nothing to do yet: the first level scatters the keys by their first byte, then each
 * thread finishes half of them, bucket by bucket (1M random ids: 70 -> 52 ms). Keys that
 * share their first byte go on on one thread, as do all when no second thread starts. */
static void sort_keys_split(struct skey *a, struct skey *tmp, size_t n, size_t len)
{
    size_t cnt[256], at = 0, half = 0;
    int split = 0;
    if (in_order(a, n, len))
        return;
    if (!scatter(a, tmp, n, 0, cnt)) {
        radix_sort(a, tmp, n, 1, len, true);
        return;
    }
    for (int b = 0; b < 256 && at + cnt[b] <= n / 2; b++) {
        at += cnt[b];
        split = b + 1;
        half = at;
    }
    struct buckets low = {a, tmp, cnt, 0, split, 0, 0, len, true};
    struct buckets high = {a, tmp, cnt, split, 256, half, 0, len, true};
    pthread_t t;
    bool two = half > 0 && pthread_create(&t, NULL, finish_buckets, &low) == 0;
    finish_buckets(&high);
    if (two)
        pthread_join(t, NULL);
    else
        finish_buckets(&low);
}

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

/* Remembers the first failure: the transaction is then only good for aborting. */
static int fail(struct dmj_write *w, int rc)
{
    if (rc && !w->err)
        w->err = rc;
    return rc;
}

int dmj__write_fail(struct dmj_write *w, int rc)
{
    return fail(w, rc);
}

int dmj__write_txn(struct dmj_write *w, MDB_txn **out)
{
    if (w->err)
        return w->err;
    *out = w->txn;
    return 0;
}

void dmj__write_touch(struct dmj_write *w)
{
    w->dirty = true;
}

const struct dmj_store *dmj__write_store(const struct dmj_write *w)
{
    return w->s;
}

struct dmj__change_log *dmj__write_log(struct dmj_write *w)
{
    return &w->log;
}

static int put(struct dmj_write *w, int db, const void *key, size_t klen, const void *val,
               size_t vlen)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    w->dirty = true;
    return fail(w, dmj__store_err(mdb_put(w->txn, w->s->dbi[db], &k, &v, 0)));
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Logs one change now, with the next seq (for the changes not written with a batch). */
static int log_change(struct dmj_write *w, int32_t team, enum dmj_change_kind kind, uint8_t status,
                      uint8_t previous, const uint8_t id[16])
{
    uint8_t key[KEY_CHANGE_LEN], val[CHANGE_VAL_LEN];
    int rc = dmj__changes_use(w->txn, w->s, &w->log, team);
    if (rc)
        return fail(w, rc);
    dmj__put32(key, team);
    dmj__put_u64(key + 4, ++w->log.last);
    w->log.dirty = true;
    dmj__change_encode_val(val, kind, status, previous, id, now_us());
    return put(w, DB_CHANGES, key, sizeof key, val, sizeof val);
}

/* Deletes a key; DMJ_ENOTFOUND (the transaction still good) when it is absent. */
static int del_existing(struct dmj_write *w, int db, const void *key, size_t klen)
{
    MDB_val k = {klen, (void *)key};
    int rc = mdb_del(w->txn, w->s->dbi[db], &k, NULL);
    if (rc == MDB_NOTFOUND)
        return DMJ_ENOTFOUND;
    if (rc)
        return fail(w, dmj__store_err(rc));
    w->dirty = true;
    return 0;
}

/* Deletes a key; an absent one is fine (the goal is that it is not there). */
static int del(struct dmj_write *w, int db, const void *key, size_t klen)
{
    int rc = del_existing(w, db, key, klen);
    return rc == DMJ_ENOTFOUND ? 0 : rc;
}

/* What was stored of a job, as the change log sees it. */
struct prior {
    uint8_t state; /* enum before */
    uint8_t status;
    int32_t team;
};

/* Removes every entry of the stored job `id` whose job_ids value is `where` (team .
 * created_at), job_ids included, and says what it was (absent when its record is missing or
 * does not decode: then its return is logged as a creation). */
static int remove_job(struct dmj_write *w, const uint8_t id[16], const uint8_t where[12],
                      struct prior *was)
{
    uint8_t key[KEY_SQ_LEN];
    MDB_val k = {KEY_JOB_LEN, key}, v;
    struct dmj_job old;
    int32_t team = dmj__get32(where);
    int64_t created = dmj__get64(where + 4);
    int rc;

    memcpy(key, where, 12);
    memcpy(key + 12, id, 16);
    rc = mdb_get(w->txn, w->s->dbi[DB_JOBS], &k, &v);
    if (rc && rc != MDB_NOTFOUND)
        return fail(w, dmj__store_err(rc));
    *was = (struct prior){BEFORE_ABSENT, 0, team};
    if (rc == 0 && dmj_codec_decode_job(v.mv_data, v.mv_size, &old) == 0) {
        was->state = dmj_job_hidden(&old) ? BEFORE_HIDDEN : BEFORE_VISIBLE;
        was->status = (uint8_t)old.status;
        if (old.has_saved_query_id) {
            dmj__key_sq(key, team, old.saved_query_id, created, id);
            if ((rc = del(w, DB_BY_SQ, key, KEY_SQ_LEN)) != 0)
                return rc;
        }
        dmj__key_status(key, team, (uint8_t)old.status, created, id);
        if ((rc = del(w, DB_BY_STATUS, key, KEY_STATUS_LEN)) != 0)
            return rc;
    } else {
        /* the old record is missing or unreadable: its status entry is one of five */
        for (uint8_t st = 0; st < DMJ_STATUS_COUNT; st++) {
            dmj__key_status(key, team, st, created, id);
            if ((rc = del(w, DB_BY_STATUS, key, KEY_STATUS_LEN)) != 0)
                return rc;
        }
    }
    dmj__key_job(key, team, created, id);
    if ((rc = del(w, DB_JOBS, key, KEY_JOB_LEN)) != 0)
        return rc;
    return del(w, DB_JOB_IDS, id, 16);
}

/* Inserts `n` sorted keys into `db`: ordinary puts while a key falls inside the existing
 * range, MDB_APPEND from the first key past the sub-database's last key on. Values: the
 * record for `jobs`, the 12 bytes after the sort key for `job_ids`, empty for the indexes
 * (so that only `jobs` reaches back into the batch, which is in another order). */
static int insert_sorted(struct dmj_write *w, int db, const struct skey *keys, size_t n,
                         size_t klen)
{
    MDB_cursor *c;
    MDB_val k, v;
    if (n == 0)
        return 0;
    int rc = mdb_cursor_open(w->txn, w->s->dbi[db], &c);
    if (rc)
        return fail(w, dmj__store_err(rc));
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    bool append = rc == MDB_NOTFOUND;
    if (rc && rc != MDB_NOTFOUND)
        goto Exit;
    /* a copy: the puts below rewrite pages this transaction has already dirtied */
    uint8_t last[SKEY_MAX];
    size_t last_len = 0;
    bool never = false; /* a last key longer than ours: not a layout we wrote, no appends */
    if (!append) {
        never = k.mv_size > sizeof last;
        last_len = never ? 0 : k.mv_size;
        memcpy(last, k.mv_data, last_len);
    }
    rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (db == DB_JOBS && w->p[keys[i].i].dup)
            continue;
        if (!append && !never) {
            size_t m = last_len < klen ? last_len : klen;
            int cmp = memcmp(keys[i].k, last, m);
            append = cmp > 0 || (cmp == 0 && klen > last_len);
        }
        MDB_val key = {klen, (void *)keys[i].k};
        if (db == DB_JOBS) {
            const struct pend *p = &w->p[keys[i].i];
            v.mv_size = p->rec_len;
            v.mv_data = w->recs.buf.data + p->rec_off;
            /* records are read in key order, not in the order they were written */
            if (i + 8 < n)
                __builtin_prefetch(w->recs.buf.data + w->p[keys[i + 8].i].rec_off);
            if (i + 16 < n)
                __builtin_prefetch(&w->p[keys[i + 16].i]);
        } else if (db == DB_JOB_IDS) {
            v.mv_size = VAL_JOB_ID_LEN;
            v.mv_data = (void *)(keys[i].k + klen);
        } else if (db == DB_CHANGES) {
            v.mv_size = CHANGE_VAL_LEN;
            v.mv_data = (void *)(keys[i].k + klen);
        } else {
            v.mv_size = 0;
            v.mv_data = (void *)"";
        }
        rc = mdb_cursor_put(c, &key, &v, append ? MDB_APPEND : 0);
        if (rc)
            break;
    }
Exit:
    mdb_cursor_close(c);
    w->dirty = true;
    return rc ? fail(w, dmj__store_err(rc)) : 0;
}

/* The change-log entry of a written job, if it has one: kind, team, status, previous. A job
 * that becomes visible is created, one that becomes hidden deleted, one that moves to another
 * team deleted there (logged by the flush) and created here. */
static bool change_of(const struct pend *p, struct dmj_change *c)
{
    c->team_id = p->team;
    c->status = (enum dmj_status)p->status;
    c->previous = c->status;
    if (p->before != BEFORE_VISIBLE) {
        c->kind = DMJ_CHANGE_CREATED;
        return !p->hidden;
    }
    if (p->hidden) {
        c->kind = DMJ_CHANGE_DELETED;
        c->team_id = p->old_team;
        c->status = c->previous = (enum dmj_status)p->old_status;
        return true;
    }
    if (p->old_team != p->team) {
        c->kind = DMJ_CHANGE_CREATED;
        return true;
    }
    c->kind = DMJ_CHANGE_STATUS;
    c->previous = (enum dmj_status)p->old_status;
    return c->previous != c->status;
}

/* Sort keys of the batch's surviving entries for one index, read in batch order, into `out`.
 * The change log's keys carry the entry's place in the batch where the seq goes (the seqs
 * are given once the keys are sorted) and its value after the key. */
static size_t build_keys(const struct dmj_write *w, int db, struct skey *out)
{
    struct dmj_change c;
    size_t m = 0;
    for (size_t i = 0; i < w->n; i++) {
        const struct pend *p = &w->p[i];
        struct skey *sk = &out[m];
        /* `jobs` keys are built while the flush marks the duplicates: they keep every
         * entry, and insert_sorted skips the duplicates */
        if (db != DB_JOBS && p->dup)
            continue;
        switch (db) {
        case DB_JOBS:
            dmj__key_job(sk->k, p->team, p->created, p->id);
            break;
        case DB_BY_SQ:
            if (!p->has_sq)
                continue;
            dmj__key_sq(sk->k, p->team, p->sq, p->created, p->id);
            break;
        case DB_CHANGES:
            if (!change_of(p, &c))
                continue;
            dmj__put32(sk->k, c.team_id);
            dmj__put_u64(sk->k + 4, i);
            dmj__change_encode_val(sk->k + KEY_CHANGE_LEN, c.kind, (uint8_t)c.status,
                                   (uint8_t)c.previous, p->id, w->at_us);
            break;
        default:
            dmj__key_status(sk->k, p->team, p->status, p->created, p->id);
            break;
        }
        sk->i = (uint32_t)i;
        m++;
    }
    return m;
}

/* The indexes after job_ids, in the order they are written, and how many leading bytes of
 * their keys the sort compares: the change log's keys are built in batch order, so a stable
 * sort on the team alone (the radix sort is stable) leaves each team's in that order. */
#define ORDER_N 4
static const struct {
    int db;
    size_t klen, slen;
} order[ORDER_N] = {{DB_JOBS, KEY_JOB_LEN, KEY_JOB_LEN},
                    {DB_BY_SQ, KEY_SQ_LEN, KEY_SQ_LEN},
                    {DB_BY_STATUS, KEY_STATUS_LEN, KEY_STATUS_LEN},
                    {DB_CHANGES, KEY_CHANGE_LEN, 4}};

/* A batch at least this large has its index keys built and sorted on a second thread while
 * this one looks up replaced jobs and inserts: the sorts (a fifth of a flush) then cost no
 * time, on a machine with a core to spare. */
#define SORT_THREAD_MIN 4096u
/* A batch at least this large (some 25 MB of LMDB pages) has its pages faulted in by a
 * helper (prefault.c): 1M jobs, 0.69 -> 0.47 s of inserts. */
#define PREFAULT_MIN 65536u

/* The sorting thread and what it shares with the writer. Index o is sorted into buffer pair
 * o % 2: pair 0 is the sorter's own, pair 1 the writer's keys/tmp, which the writer hands
 * over once job_ids is written; a pair comes back (released = o + 2) once index o that used
 * it is written. */
struct sorter {
    const struct dmj_write *w;
    struct skey *pair[2][2];
    size_t m[ORDER_N];
    int sorted;   /* indexes sorted so far */
    int released; /* 1: the writer's pair is free; 2: pair 0 again; 3: the writer's again */
    bool stop;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void *sort_main(void *arg)
{
    struct sorter *s = arg;
    for (int o = 0; o < ORDER_N; o++) {
        pthread_mutex_lock(&s->mu);
        while (!s->stop && s->released < o)
            pthread_cond_wait(&s->cv, &s->mu);
        bool stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        struct skey **pair = s->pair[o % 2];
        size_t m = build_keys(s->w, order[o].db, pair[0]);
        sort_keys(pair[0], pair[1], m, order[o].slen);
        pthread_mutex_lock(&s->mu);
        s->m[o] = m;
        s->sorted = o + 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

/* Starts the sorter; false (and nothing to undo) when memory or a thread is missing. */
static bool sorter_start(struct dmj_write *w, struct sorter *s)
{
    memset(s, 0, sizeof *s);
    s->w = w;
    s->pair[0][0] = malloc(w->n * sizeof(struct skey));
    s->pair[0][1] = malloc(w->n * sizeof(struct skey));
    s->pair[1][0] = w->keys;
    s->pair[1][1] = w->tmp;
    if (!s->pair[0][0] || !s->pair[0][1])
        goto Error;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->tid, NULL, sort_main, s) != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        goto Error;
    }
    return true;
Error:
    free(s->pair[0][0]);
    free(s->pair[0][1]);
    return false;
}

static void sorter_release(struct sorter *s, int released)
{
    pthread_mutex_lock(&s->mu);
    s->released = released;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Waits for index o; its keys are in pair o % 2. */
static size_t sorter_wait(struct sorter *s, int o)
{
    pthread_mutex_lock(&s->mu);
    while (s->sorted <= o)
        pthread_cond_wait(&s->cv, &s->mu);
    size_t m = s->m[o];
    pthread_mutex_unlock(&s->mu);
    return m;
}

static void sorter_end(struct sorter *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->tid, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->pair[0][0]);
    free(s->pair[0][1]);
}

/* Keeps what a put replaces on its batch entry; a visible job that moves to another team is
 * logged as deleted there now (its creation in the new team comes with the batch). */
static int note_prior(struct dmj_write *w, struct pend *p, const struct prior *was)
{
    p->before = was->state;
    p->old_status = was->status;
    p->old_team = was->team;
    if (was->state == BEFORE_VISIBLE && !p->hidden && was->team != p->team)
        return log_change(w, was->team, DMJ_CHANGE_DELETED, was->status, was->status, p->id);
    return 0;
}

/* Puts the seqs into the batch's sorted change-log keys, from each team's own counter: in key
 * order, so that each team's entries keep the order of the puts and the keys stay sorted. */
static int give_seqs(struct dmj_write *w, struct skey *keys, size_t m)
{
    for (size_t i = 0; i < m; i++) {
        int32_t team = dmj__get32(keys[i].k);
        if (!w->log.loaded || w->log.team != team) {
            int rc = dmj__changes_use(w->txn, w->s, &w->log, team);
            if (rc)
                return fail(w, rc);
        }
        dmj__put_u64(keys[i].k + 4, ++w->log.last);
        w->log.dirty = true;
    }
    return 0;
}

/* The part of a flush after duplicates are marked: `nu` id keys in w->keys, the sorter (if
 * any) running. */
static int flush_sorted(struct dmj_write *w, size_t nu, struct sorter *srt)
{
    int rc;
    /* Replaced jobs: ids past the last stored id cannot be stored yet, so an import into an
     * empty store (or of new uuid7 ids) does no look-ups at all. */
    MDB_cursor *c;
    MDB_val k, v;
    uint8_t last[16];
    bool has_last;
    rc = mdb_cursor_open(w->txn, w->s->dbi[DB_JOB_IDS], &c);
    if (rc)
        return fail(w, dmj__store_err(rc));
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    has_last = rc == 0 && k.mv_size == 16;
    if (has_last)
        memcpy(last, k.mv_data, 16);
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND)
        return fail(w, dmj__store_err(rc));
    for (size_t u = 0; u < nu; u++) {
        const uint8_t *id = w->keys[u].k;
        if (!has_last || memcmp(id, last, 16) > 0) {
            w->stats.inserted++;
            continue;
        }
        k = (MDB_val){16, (void *)id};
        rc = mdb_get(w->txn, w->s->dbi[DB_JOB_IDS], &k, &v);
        if (rc == MDB_NOTFOUND) {
            w->stats.inserted++;
            continue;
        }
        if (rc)
            return fail(w, dmj__store_err(rc));
        if (v.mv_size == VAL_JOB_ID_LEN) {
            uint8_t where[VAL_JOB_ID_LEN];
            struct prior was;
            memcpy(where, v.mv_data, VAL_JOB_ID_LEN);
            rc = remove_job(w, id, where, &was);
            if (rc == 0)
                rc = note_prior(w, &w->p[w->keys[u].i], &was);
        } else {
            rc = del(w, DB_JOB_IDS, id, 16); /* malformed: only this entry can go */
        }
        if (rc)
            return rc;
        w->stats.replaced++;
    }

    /* the id sort keys become job_ids' keys: id . value */
    for (size_t u = 0; u < nu; u++)
        memmove(w->keys[u].k + 16, w->keys[u].k + 20, VAL_JOB_ID_LEN);
    if ((rc = insert_sorted(w, DB_JOB_IDS, w->keys, nu, 16)) != 0)
        return rc;
    if (srt)
        sorter_release(srt, 1);
    for (int o = 0; o < ORDER_N; o++) {
        struct skey *keys = w->keys;
        size_t m;
        if (srt) {
            m = sorter_wait(srt, o);
            keys = srt->pair[o % 2][0];
        } else {
            m = build_keys(w, order[o].db, w->keys);
            sort_keys(w->keys, w->tmp, m, order[o].slen);
        }
        if (order[o].db == DB_CHANGES && (rc = give_seqs(w, keys, m)) != 0)
            return rc;
        if ((rc = insert_sorted(w, order[o].db, keys, m, order[o].klen)) != 0)
            return rc;
        if (srt && o + 2 < ORDER_N)
            sorter_release(srt, o + 2);
    }
    return 0;
}

/* Writes the batch: drop duplicates (last put wins), remove the stored versions of replaced
 * jobs, then insert into each sub-database in its own key order. */
static int flush(struct dmj_write *w)
{
    size_t n = w->n, nu = 0;
    int rc;
    if (n == 0)
        return 0;
    struct dmj__prefault pf;
    bool pre = n >= PREFAULT_MIN && dmj__prefault_start(&pf);
    /* the sorting thread starts on the `jobs` keys at once (they need no duplicate marks);
     * the other indexes wait until job_ids is written (sorter_release) */
    w->at_us = now_us();
    struct sorter srt;
    bool par = n >= SORT_THREAD_MIN && sorter_start(w, &srt);

    /* id . seq, then team . created_at riding along as job_ids' value: equal ids end up
     * adjacent, the last put last */
    for (size_t i = 0; i < n; i++) {
        struct skey *sk = &w->keys[i];
        const struct pend *p = &w->p[i];
        uint32_t q = p->seq;
        memcpy(sk->k, p->id, 16);
        sk->k[16] = (uint8_t)(q >> 24);
        sk->k[17] = (uint8_t)(q >> 16);
        sk->k[18] = (uint8_t)(q >> 8);
        sk->k[19] = (uint8_t)q;
        dmj__put32(sk->k + 20, p->team);
        dmj__put64(sk->k + 24, p->created);
        sk->i = (uint32_t)i;
    }
    if (n >= SORT_THREAD_MIN)
        sort_keys_split(w->keys, w->tmp, n, 20);
    else
        sort_keys(w->keys, w->tmp, n, 20);
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && memcmp(w->keys[i].k, w->keys[i + 1].k, 16) == 0) {
            w->p[w->keys[i].i].dup = true;
            continue;
        }
        w->keys[nu++] = w->keys[i]; /* job_ids' keys, in id order */
    }

    /* from here on the batch is only read (but for what the replaced jobs were, which only
     * the change log's keys read, sorted last): the other indexes can be sorted meanwhile */
    rc = flush_sorted(w, nu, par ? &srt : NULL);
    if (pre)
        dmj__prefault_stop(&pf);
    if (par)
        sorter_end(&srt);
    if (rc)
        return rc;
    w->n = 0;
    w->seq = 0; /* put order only matters within a batch: keeps seq below the batch size */
    dmj__recs_reset(&w->recs);
    return 0;
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
    if (batch_full(w) && (rc = flush(w)) != 0)
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
    int rc = flush(w);
    if (rc)
        return rc;
    rc = mdb_get(w->txn, w->s->dbi[DB_JOB_IDS], &k, &v);
    if (rc == MDB_NOTFOUND)
        return DMJ_ENOTFOUND;
    if (rc)
        return fail(w, dmj__store_err(rc));
    if (v.mv_size != 12)
        return del(w, DB_JOB_IDS, id, 16);
    memcpy(where, v.mv_data, 12);
    struct prior was;
    rc = remove_job(w, id, where, &was);
    if (rc == 0 && was.state == BEFORE_VISIBLE)
        rc = log_change(w, was.team, DMJ_CHANGE_DELETED, was.status, was.status, id);
    return rc;
}

int dmj_write_meta(struct dmj_write *w, const char *name, const void *val, size_t len)
{
    size_t n;
    if (w->err)
        return w->err;
    if (!dmj__meta_name_ok(name, &n))
        return DMJ_EINVAL;
    return put(w, DB_META, name, n, val, len);
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
        rc = put(w, db, key, klen, b.data, b.len);
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
        if ((rc = del(w, DB_ORG_TEAMS, ot, sizeof ot)) != 0)
            return rc;
    } else if (rc && rc != MDB_NOTFOUND) {
        return fail(w, dmj__store_err(rc));
    }
    if ((rc = put_record(w, DB_TEAMS, key, sizeof key, t, enc_team)) != 0)
        return rc;
    memcpy(ot, t->organization_id, 16);
    dmj__put32(ot + 16, t->id);
    return put(w, DB_ORG_TEAMS, ot, sizeof ot, "", 0);
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
    return put(w, DB_MEMBERSHIPS, key, sizeof key, val, sizeof val);
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
        return fail(w, dmj__store_err(rc));
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
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : fail(w, dmj__store_err(rc));
}

int dmj_write_delete_membership(struct dmj_write *w, int64_t user_id, const uint8_t org[16])
{
    uint8_t key[24];
    if (w->err)
        return w->err;
    dmj__put64(key, user_id);
    memcpy(key + 8, org, 16);
    return del_existing(w, DB_MEMBERSHIPS, key, sizeof key);
}

int dmj_write_delete_key(struct dmj_write *w, const char *secure_value)
{
    if (w->err)
        return w->err;
    size_t len = strnlen(secure_value, DMJ_KEY_HASH_LEN + 1);
    if (len == 0 || len > DMJ_KEY_HASH_LEN)
        return DMJ_ENOTFOUND; /* no stored key has that form */
    return del_existing(w, DB_KEYS, secure_value, len);
}

int dmj_write_delete_user(struct dmj_write *w, int64_t id)
{
    uint8_t key[8];
    if (w->err)
        return w->err;
    dmj__put64(key, id);
    return del_existing(w, DB_USERS, key, sizeof key);
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
        return rc == MDB_NOTFOUND ? DMJ_ENOTFOUND : fail(w, dmj__store_err(rc));
    bool known = dmj_codec_decode_team(v.mv_data, v.mv_size, &t) == 0;
    if (known) {
        memcpy(ot, t.organization_id, 16);
        dmj__put32(ot + 16, id);
    }
    rc = known ? del(w, DB_ORG_TEAMS, ot, sizeof ot)
               : del_matching(w, DB_ORG_TEAMS, NULL, 0, 0, 20, 16, key, 4);
    return rc ? rc : del(w, DB_TEAMS, key, sizeof key);
}

int dmj_write_delete_org(struct dmj_write *w, const uint8_t id[16])
{
    if (w->err)
        return w->err;
    int rc = del_existing(w, DB_ORGS, id, 16);
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
        rc = flush(w);
    if (!rc)
        rc = fail(w, dmj__changes_save(w->txn, w->s, &w->log));
    if (!rc && w->dirty) {
        /* when the store last changed, for `dmj stats` and caches */
        uint8_t val[8];
        dmj__put64(val, now_us());
        rc = put(w, DB_META, "last_write_us", 13, val, sizeof val);
    }
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

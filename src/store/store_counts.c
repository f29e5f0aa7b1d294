/* Exact counts of the visible (not hidden) jobs per team, per (team, saved_query_id) and per
 * (team, status), kept in meta in the same transactions as the indexes, so that the API's
 * `count` reads one value instead of walking an index.
 *
 * Counters: META_COUNT . kind(1: COUNT_TEAM, COUNT_SQ, COUNT_STATUS) . team(4, sign-flipped)
 * [. saved_query_id(16) | . status(1)] -> count(8, unsigned big-endian); a count of 0 is no
 * entry. A write collects its changes (+1 for each job written visible, -1 for each visible
 * job removed or replaced) in a table and adds them to the counters at the end of each flush
 * and deletion.
 *
 * The counters are only trusted when META_COUNT_TXN holds the id of the last committed
 * transaction: every writer of this version stores its own id there when it commits a change,
 * so a change committed by a writer that does not keep counters (an earlier version) leaves
 * them untrusted. Readers then walk (dmj_read_count says DMJ_ENOTFOUND), and the next writer
 * of this version counts every job again in its transaction (dmj__counts_commit).
 *
 * Below every other store file but the codec: it uses LMDB alone. */
#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dmj/store.h"
#include "store_impl.h"

#define META_COUNT "count."
#define META_COUNT_LEN (sizeof META_COUNT - 1)
#define META_COUNT_TXN "counts_txn"
#define COUNT_TEAM 't'
#define COUNT_SQ 'q'
#define COUNT_STATUS 's'
#define COUNT_KEY_MAX (META_COUNT_LEN + 1 + 4 + 16)

struct dmj__count_entry {
    uint8_t k[COUNT_KEY_MAX];
    uint8_t len; /* 0: a free slot */
    int64_t delta;
};

static uint64_t key_hash(const uint8_t *k, size_t len)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ k[i]) * 1099511628211u;
    return h;
}

static int table_grow(struct dmj__counts *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    struct dmj__count_entry *e = calloc(cap, sizeof *e);
    if (!e)
        return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        const struct dmj__count_entry *o = &t->e[i];
        if (!o->len)
            continue;
        size_t j = key_hash(o->k, o->len) & (cap - 1);
        while (e[j].len)
            j = (j + 1) & (cap - 1);
        e[j] = *o;
    }
    free(t->e);
    t->e = e;
    t->cap = cap;
    return 0;
}

/* The slot of key k in t (t->cap > 0): its entry, or the free slot where it would go. */
static size_t table_slot(const struct dmj__counts *t, const void *k, size_t len)
{
    size_t j = key_hash(k, len) & (t->cap - 1);
    while (t->e[j].len && (t->e[j].len != len || memcmp(t->e[j].k, k, len) != 0))
        j = (j + 1) & (t->cap - 1);
    return j;
}

static int table_add(struct dmj__counts *t, const uint8_t *k, size_t len, int64_t delta)
{
    if ((t->used + 1) * 2 > t->cap) {
        int rc = table_grow(t);
        if (rc)
            return rc;
    }
    size_t j = table_slot(t, k, len);
    if (!t->e[j].len) {
        memcpy(t->e[j].k, k, len);
        t->e[j].len = (uint8_t)len;
        t->used++;
    }
    t->e[j].delta += delta;
    return 0;
}

void dmj__counts_dispose(struct dmj__counts *t)
{
    free(t->e);
    memset(t, 0, sizeof *t);
}

static void table_clear(struct dmj__counts *t)
{
    if (t->used)
        memset(t->e, 0, t->cap * sizeof *t->e);
    t->used = 0;
}

static size_t count_key(uint8_t *k, char kind, int32_t team, const uint8_t *more, size_t more_len)
{
    memcpy(k, META_COUNT, META_COUNT_LEN);
    k[META_COUNT_LEN] = (uint8_t)kind;
    dmj__put32(k + META_COUNT_LEN + 1, team);
    if (more_len)
        memcpy(k + META_COUNT_LEN + 5, more, more_len);
    return META_COUNT_LEN + 5 + more_len;
}

int dmj__counts_job(struct dmj__counts *t, const struct dmj_job *job, int delta)
{
    uint8_t k[COUNT_KEY_MAX], st = (uint8_t)job->status;
    int rc;
    if (dmj_job_hidden(job))
        return 0;
    rc = table_add(t, k, count_key(k, COUNT_TEAM, job->team_id, NULL, 0), delta);
    if (!rc)
        rc = table_add(t, k, count_key(k, COUNT_STATUS, job->team_id, &st, 1), delta);
    if (!rc && job->has_saved_query_id)
        rc = table_add(t, k, count_key(k, COUNT_SQ, job->team_id, job->saved_query_id, 16),
                       delta);
    return rc;
}

int dmj__counts_pend(struct dmj__counts *t, const struct pend *p)
{
    uint8_t k[COUNT_KEY_MAX];
    int rc;
    if (p->hidden || p->dup)
        return 0;
    rc = table_add(t, k, count_key(k, COUNT_TEAM, p->team, NULL, 0), 1);
    if (!rc)
        rc = table_add(t, k, count_key(k, COUNT_STATUS, p->team, &p->status, 1), 1);
    if (!rc && p->has_sq)
        rc = table_add(t, k, count_key(k, COUNT_SQ, p->team, p->sq, 16), 1);
    return rc;
}

int dmj__counts_apply(MDB_txn *txn, const struct dmj_store *s, struct dmj__counts *t)
{
    int rc = 0;
    for (size_t i = 0; i < t->cap && t->used && !rc; i++) {
        struct dmj__count_entry *e = &t->e[i];
        if (!e->len || e->delta == 0)
            continue;
        MDB_val k = {e->len, e->k}, v;
        uint64_t n = 0;
        rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
        if (rc == 0 && v.mv_size == 8)
            n = dmj__get_u64(v.mv_data);
        if (rc && rc != MDB_NOTFOUND)
            break;
        /* A counter that would go below zero was wrong already: dmj verify says so. */
        n = e->delta < 0 && (uint64_t)-e->delta > n ? 0 : n + (uint64_t)e->delta;
        if (n == 0) {
            rc = mdb_del(txn, s->dbi[DB_META], &k, NULL);
            if (rc == MDB_NOTFOUND)
                rc = 0;
        } else {
            uint8_t val[8];
            dmj__put_u64(val, n);
            v = (MDB_val){8, val};
            rc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0);
        }
    }
    table_clear(t);
    return dmj__store_err(rc);
}

/* Whether the counters are those of the transaction before `txn` (a write) or of the one
 * `txn` reads. */
static bool counts_current(MDB_txn *txn, const struct dmj_store *s, bool write)
{
    MDB_val k = {sizeof META_COUNT_TXN - 1, (void *)META_COUNT_TXN}, v;
    if (mdb_get(txn, s->dbi[DB_META], &k, &v) != 0 || v.mv_size != 8)
        return false;
    uint64_t id = (uint64_t)mdb_txn_id(txn);
    return dmj__get_u64(v.mv_data) == (write ? id - 1 : id);
}

/* Adds every visible job of the store to `t`; a record that does not decode is not counted. */
static int count_jobs(MDB_txn *txn, const struct dmj_store *s, struct dmj__counts *t)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, s->dbi[DB_JOBS], &c);
    if (rc)
        return dmj__store_err(rc);
    int err = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && !err;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        struct dmj_job job;
        if (dmj_codec_decode_job(v.mv_data, v.mv_size, &job) == 0)
            err = dmj__counts_job(t, &job, 1);
    }
    mdb_cursor_close(c);
    if (!err && rc != MDB_NOTFOUND)
        err = dmj__store_err(rc);
    return err;
}

/* Counts every job again: the counters removed, then each visible job counted. */
static int counts_rebuild(MDB_txn *txn, const struct dmj_store *s)
{
    struct dmj__counts t = {0};
    MDB_cursor *c;
    MDB_val k = {META_COUNT_LEN, (void *)META_COUNT}, v;
    int rc = mdb_cursor_open(txn, s->dbi[DB_META], &c);
    if (rc)
        return dmj__store_err(rc);
    for (;;) {
        k = (MDB_val){META_COUNT_LEN, (void *)META_COUNT};
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (rc || k.mv_size < META_COUNT_LEN || memcmp(k.mv_data, META_COUNT, META_COUNT_LEN) != 0)
            break;
        rc = mdb_cursor_del(c, 0);
        if (rc)
            break;
    }
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND)
        return dmj__store_err(rc);
    int err = count_jobs(txn, s, &t);
    if (!err)
        err = dmj__counts_apply(txn, s, &t);
    dmj__counts_dispose(&t);
    return err;
}

int dmj__counts_commit(MDB_txn *txn, const struct dmj_store *s, bool changed)
{
    bool current = counts_current(txn, s, true);
    int rc = 0;
    if (current && !changed)
        return 0; /* nothing committed: the counters stay those of the last transaction */
    if (!current)
        rc = counts_rebuild(txn, s);
    if (!rc) {
        uint8_t val[8];
        dmj__put_u64(val, (uint64_t)mdb_txn_id(txn));
        MDB_val k = {sizeof META_COUNT_TXN - 1, (void *)META_COUNT_TXN}, v = {8, val};
        rc = dmj__store_err(mdb_put(txn, s->dbi[DB_META], &k, &v, 0));
    }
    return rc;
}

int dmj__counts_get(MDB_txn *txn, const struct dmj_store *s, int32_t team_id,
                    const struct dmj_count_spec *spec, uint64_t *out)
{
    uint8_t k[COUNT_KEY_MAX];
    size_t len;
    int rc;
    if (spec && spec->has_saved_query_id && spec->statuses)
        return DMJ_EINVAL; /* not kept: the caller walks */
    if (!counts_current(txn, s, false))
        return DMJ_ENOTFOUND;
    uint64_t total = 0;
    unsigned statuses = spec ? spec->statuses : 0;
    for (unsigned st = 0; st <= DMJ_STATUS_COUNT; st++) {
        if (st == DMJ_STATUS_COUNT) {
            if (statuses)
                break;
            if (spec && spec->has_saved_query_id)
                len = count_key(k, COUNT_SQ, team_id, spec->saved_query_id, 16);
            else
                len = count_key(k, COUNT_TEAM, team_id, NULL, 0);
        } else if (statuses & (1u << st)) {
            uint8_t b = (uint8_t)st;
            len = count_key(k, COUNT_STATUS, team_id, &b, 1);
        } else {
            continue;
        }
        MDB_val key = {len, k}, v;
        rc = mdb_get(txn, s->dbi[DB_META], &key, &v);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc)
            return dmj__store_err(rc);
        if (v.mv_size != 8)
            return DMJ_EBADRECORD;
        total += dmj__get_u64(v.mv_data);
    }
    *out = total;
    return 0;
}

/* A counter's key in words: "job counter of team 3, status Failed". */
static void describe(const uint8_t *k, size_t len, char *out, size_t cap)
{
    if (len < META_COUNT_LEN + 5) {
        snprintf(out, cap, "malformed job counter");
        return;
    }
    int32_t team = dmj__get32(k + META_COUNT_LEN + 1);
    char kind = (char)k[META_COUNT_LEN];
    const uint8_t *rest = k + META_COUNT_LEN + 5;
    if (kind == COUNT_STATUS && len == META_COUNT_LEN + 6 && rest[0] < DMJ_STATUS_COUNT)
        snprintf(out, cap, "job counter of team %" PRId32 ", status %s", team,
                 dmj_status_name((enum dmj_status)rest[0]));
    else if (kind == COUNT_SQ && len == META_COUNT_LEN + 21)
        snprintf(out, cap,
                 "job counter of team %" PRId32 ", saved query %02x%02x%02x%02x-%02x%02x-...",
                 team, rest[0], rest[1], rest[2], rest[3], rest[4], rest[5]);
    else if (kind == COUNT_TEAM && len == META_COUNT_LEN + 5)
        snprintf(out, cap, "job counter of team %" PRId32, team);
    else
        snprintf(out, cap, "malformed job counter of team %" PRId32, team);
}

int dmj__counts_check(MDB_txn *txn, const struct dmj_store *s, void (*problem)(void *, const char *),
                      void *ctx)
{
    if (!counts_current(txn, s, false))
        return 0; /* not kept (a store last written without them): nothing to check */
    struct dmj__counts t = {0};
    MDB_cursor *c;
    MDB_val k, v;
    int rc;
    int err = count_jobs(txn, s, &t);
    /* every stored counter against the count of the jobs; what is left in the table was
     * not stored */
    if (!err)
        err = dmj__store_err(mdb_cursor_open(txn, s->dbi[DB_META], &c));
    if (err) {
        dmj__counts_dispose(&t);
        return err;
    }
    k = (MDB_val){META_COUNT_LEN, (void *)META_COUNT};
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
         rc == 0 && k.mv_size >= META_COUNT_LEN && memcmp(k.mv_data, META_COUNT, META_COUNT_LEN) == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        uint64_t stored = v.mv_size == 8 ? dmj__get_u64(v.mv_data) : 0;
        int64_t want = 0;
        if (k.mv_size <= COUNT_KEY_MAX && t.cap) {
            size_t j = table_slot(&t, k.mv_data, k.mv_size);
            if (t.e[j].len) {
                want = t.e[j].delta;
                t.e[j].delta = 0; /* seen */
            }
        }
        if (v.mv_size != 8 || stored != (uint64_t)want) {
            char msg[160];
            describe(k.mv_data, k.mv_size, msg, sizeof msg);
            size_t at = strlen(msg);
            snprintf(msg + at, sizeof msg - at, ": %" PRIu64 " stored, %" PRId64 " jobs counted",
                     stored, want);
            problem(ctx, msg);
        }
    }
    mdb_cursor_close(c);
    for (size_t i = 0; i < t.cap; i++) {
        if (t.e[i].len && t.e[i].delta != 0) {
            char msg[160];
            describe(t.e[i].k, t.e[i].len, msg, sizeof msg);
            size_t at = strlen(msg);
            snprintf(msg + at, sizeof msg - at, ": missing, %" PRId64 " jobs counted",
                     t.e[i].delta);
            problem(ctx, msg);
        }
    }
    dmj__counts_dispose(&t);
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : dmj__store_err(rc);
}

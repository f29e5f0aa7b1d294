/* The flush of a write batch: the batch's duplicates dropped, the stored versions of replaced
 * jobs removed, and each sub-database's keys sorted and inserted in key order (appended past
 * its last key), with helper threads for a large batch: the sort of the indexes, and
 * prefault.c. Ordered LMDB inserts are 10-30x faster than random ones. */
#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dmj/store.h"
#include "store_impl.h"

/* Logs one change now, with the next seq (for the changes not written with a batch). */
int dmj__store_log_change(struct dmj_write *w, int32_t team, enum dmj_change_kind kind,
                          uint8_t status, uint8_t previous, const uint8_t id[16])
{
    uint8_t key[KEY_CHANGE_LEN], val[CHANGE_VAL_LEN];
    int rc = dmj__changes_use(w->txn, w->s, &w->log, team);
    if (rc)
        return dmj__write_fail(w, rc);
    dmj__put32(key, team);
    dmj__put_u64(key + 4, ++w->log.last);
    w->log.dirty = true;
    dmj__change_encode_val(val, kind, status, previous, id, dmj__store_now_us());
    return dmj__store_put(w, DB_CHANGES, key, sizeof key, val, sizeof val);
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
        return dmj__write_fail(w, dmj__store_err(rc));
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
    return rc ? dmj__write_fail(w, dmj__store_err(rc)) : 0;
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
        dmj__store_sort_keys(pair[0], pair[1], m, order[o].slen);
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
        return dmj__store_log_change(w, was->team, DMJ_CHANGE_DELETED, was->status, was->status,
                                     p->id);
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
                return dmj__write_fail(w, rc);
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
        return dmj__write_fail(w, dmj__store_err(rc));
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    has_last = rc == 0 && k.mv_size == 16;
    if (has_last)
        memcpy(last, k.mv_data, 16);
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND)
        return dmj__write_fail(w, dmj__store_err(rc));
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
            return dmj__write_fail(w, dmj__store_err(rc));
        if (v.mv_size == VAL_JOB_ID_LEN) {
            uint8_t where[VAL_JOB_ID_LEN];
            struct prior was;
            memcpy(where, v.mv_data, VAL_JOB_ID_LEN);
            rc = dmj__store_remove_job(w, id, where, &was);
            if (rc == 0)
                rc = note_prior(w, &w->p[w->keys[u].i], &was);
        } else {
            rc = dmj__store_del(w, DB_JOB_IDS, id, 16); /* malformed: only this entry can go */
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
            dmj__store_sort_keys(w->keys, w->tmp, m, order[o].slen);
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
int dmj__store_flush(struct dmj_write *w)
{
    size_t n = w->n, nu = 0;
    int rc;
    if (n == 0)
        return 0;
    struct dmj__prefault pf;
    bool pre = n >= PREFAULT_MIN && dmj__prefault_start(&pf);
    /* the sorting thread starts on the `jobs` keys at once (they need no duplicate marks);
     * the other indexes wait until job_ids is written (sorter_release) */
    w->at_us = dmj__store_now_us();
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
        dmj__store_sort_keys_split(w->keys, w->tmp, n, 20);
    else
        dmj__store_sort_keys(w->keys, w->tmp, n, 20);
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
    for (size_t i = 0; i < n && !rc; i++)
        rc = dmj__counts_pend(&w->counts, &w->p[i]);
    if (!rc)
        rc = dmj__counts_apply(w->txn, w->s, &w->counts);
    if (rc)
        return dmj__write_fail(w, rc);
    w->n = 0;
    w->seq = 0; /* put order only matters within a batch: keeps seq below the batch size */
    dmj__recs_reset(&w->recs);
    return 0;
}

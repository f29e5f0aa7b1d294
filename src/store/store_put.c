/* A write transaction's single puts and deletes, which keep its first failure, the removal of
 * a stored job's entries, the clock of its changes, and the write as the other files reach it. */
#include <lmdb.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "dmj/store.h"
#include "store_impl.h"

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

int dmj__store_put(struct dmj_write *w, int db, const void *key, size_t klen, const void *val,
                   size_t vlen)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    w->dirty = true;
    return fail(w, dmj__store_err(mdb_put(w->txn, w->s->dbi[db], &k, &v, 0)));
}

int64_t dmj__store_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Deletes a key; DMJ_ENOTFOUND (the transaction still good) when it is absent. */
int dmj__store_del_existing(struct dmj_write *w, int db, const void *key, size_t klen)
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
int dmj__store_del(struct dmj_write *w, int db, const void *key, size_t klen)
{
    int rc = dmj__store_del_existing(w, db, key, klen);
    return rc == DMJ_ENOTFOUND ? 0 : rc;
}

/* Removes every entry of the stored job `id` whose job_ids value is `where` (team .
 * created_at), job_ids included, and says what it was (absent when its record is missing or
 * does not decode: then its return is logged as a creation). */
int dmj__store_remove_job(struct dmj_write *w, const uint8_t id[16], const uint8_t where[12],
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
        if ((rc = dmj__counts_job(&w->counts, &old, -1)) != 0)
            return fail(w, rc);
        if (old.has_saved_query_id) {
            dmj__key_sq(key, team, old.saved_query_id, created, id);
            if ((rc = dmj__store_del(w, DB_BY_SQ, key, KEY_SQ_LEN)) != 0)
                return rc;
        }
        dmj__key_status(key, team, (uint8_t)old.status, created, id);
        if ((rc = dmj__store_del(w, DB_BY_STATUS, key, KEY_STATUS_LEN)) != 0)
            return rc;
    } else {
        /* the old record is missing or unreadable: its status entry is one of five */
        for (uint8_t st = 0; st < DMJ_STATUS_COUNT; st++) {
            dmj__key_status(key, team, st, created, id);
            if ((rc = dmj__store_del(w, DB_BY_STATUS, key, KEY_STATUS_LEN)) != 0)
                return rc;
        }
    }
    dmj__key_job(key, team, created, id);
    if ((rc = dmj__store_del(w, DB_JOBS, key, KEY_JOB_LEN)) != 0)
        return rc;
    return dmj__store_del(w, DB_JOB_IDS, id, 16);
}

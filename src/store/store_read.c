/* The store's read side: per-thread read handles and their transactions, look-ups by key,
 * index walks, and the look-up near the last one that an index walk's jobs take. */
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dmj/store.h"
#include "store_impl.h"

/* Walks that may be in progress at once on one index of one read handle; a walk started
 * beyond that takes over the oldest one's cursor, which then answers DMJ_ESTORE. */
#define WALK_SLOTS 4
#define WALK_INDEXES 3
#define GEN_MASK 0xffffff

enum walk_phase { PHASE_FRESH = 0, PHASE_MOVING = 1, PHASE_DONE = 2 };

/* A cursor kept by a read handle across transactions (renewed, never reopened). */
struct slot {
    MDB_cursor *cur;
    MDB_dbi dbi;
    unsigned epoch; /* the handle's epoch it was last renewed in */
    unsigned gen;   /* bumped when a walk takes it or the read ends */
};

struct dmj_read {
    struct dmj_store *s;
    MDB_txn *txn;
    bool active;
    uint64_t txnid; /* the committed state the active read sees */
    unsigned epoch;
    struct slot walk[WALK_INDEXES][WALK_SLOTS];
    unsigned next_walk[WALK_INDEXES];
    struct slot misc[DB_COUNT]; /* one per sub-database, for SET_RANGE look-ups */
};

/* ---- read handles -------------------------------------------------------------------- */

int dmj_read_new(struct dmj_store *s, struct dmj_read **out)
{
    struct dmj_read *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->s = s;
    dmj__store_reader_enter(s);
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn);
    if (rc == MDB_READERS_FULL) {
        /* slots of processes that died without closing (a killed dmjd) can be reclaimed */
        int dead;
        if (mdb_reader_check(s->env, &dead) == 0 && dead > 0)
            rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn);
    }
    if (rc == MDB_MAP_RESIZED) {
        /* another process grew the data file past our map */
        dmj__store_reader_leave(s);
        int err = dmj__store_adopt_map_size(s);
        dmj__store_reader_enter(s);
        rc = err ? err : dmj__store_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn));
    } else {
        rc = dmj__store_err(rc);
    }
    if (rc) {
        dmj__store_reader_leave(s);
        free(r);
        return rc;
    }
    /* keep the reader slot, start ended */
    mdb_txn_reset(r->txn);
    dmj__store_reader_leave(s);
    r->epoch = 1;
    for (int i = 0; i < WALK_INDEXES; i++)
        for (int j = 0; j < WALK_SLOTS; j++)
            r->walk[i][j].dbi = s->dbi[i == DMJ_WALK_TEAM          ? DB_JOBS
                                       : i == DMJ_WALK_SAVED_QUERY ? DB_BY_SQ
                                                                   : DB_BY_STATUS];
    for (int i = 0; i < DB_COUNT; i++)
        r->misc[i].dbi = s->dbi[i];
    *out = r;
    return 0;
}

static void slot_close(struct slot *sl)
{
    if (sl->cur)
        mdb_cursor_close(sl->cur);
    sl->cur = NULL;
}

void dmj_read_free(struct dmj_read *r)
{
    if (!r)
        return;
    for (int i = 0; i < WALK_INDEXES; i++)
        for (int j = 0; j < WALK_SLOTS; j++)
            slot_close(&r->walk[i][j]);
    for (int i = 0; i < DB_COUNT; i++)
        slot_close(&r->misc[i]);
    mdb_txn_abort(r->txn);
    if (r->active)
        dmj__store_reader_leave(r->s);
    free(r);
}

/* A read-only handle on a store written before the change log looks for one a writer may have
 * created since, before a read begins: a transaction only knows the sub-database handles that
 * existed when it began. Once per committed write, and only on such stores. */
static void find_changes(struct dmj_store *s)
{
    MDB_envinfo info;
    MDB_txn *txn;
    MDB_dbi dbi;
    if (atomic_load(&s->has_changes))
        return;
    dmj__store_reader_enter(s);
    if (mdb_env_info(s->env, &info) != 0 ||
        atomic_load(&s->changes_tried) == (uint64_t)info.me_last_txnid) {
        dmj__store_reader_leave(s);
        return;
    }
    /* mdb_dbi_open: one transaction of the process at a time */
    pthread_mutex_lock(&s->changes_lock);
    if (!atomic_load(&s->has_changes) && mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0) {
        int rc = mdb_dbi_open(txn, dmj__store_db_names[DB_CHANGES], 0, &dbi);
        if (rc == 0) {
            /* a read transaction's commit makes the handle the environment's */
            if (mdb_txn_commit(txn) == 0) {
                s->dbi[DB_CHANGES] = dbi;
                atomic_store(&s->has_changes, true);
            }
        } else {
            mdb_txn_abort(txn);
            if (rc == MDB_NOTFOUND)
                atomic_store(&s->changes_tried, (uint64_t)info.me_last_txnid);
        }
    }
    pthread_mutex_unlock(&s->changes_lock);
    dmj__store_reader_leave(s);
}

int dmj_read_begin(struct dmj_read *r)
{
    if (r->active)
        dmj_read_end(r);
    find_changes(r->s);
    for (int attempt = 0;; attempt++) {
        dmj__store_reader_enter(r->s);
        int rc = mdb_txn_renew(r->txn);
        if (rc == 0)
            break;
        dmj__store_reader_leave(r->s);
        /* Another process grew the data file past our map (an import with a larger
         * --map-size): adopt its size rather than fail every read until a restart. */
        if (rc != MDB_MAP_RESIZED || attempt == 2)
            return dmj__store_err(rc);
        rc = dmj__store_adopt_map_size(r->s);
        if (rc)
            return rc;
    }
    r->epoch++;
    r->active = true;
    r->txnid = (uint64_t)mdb_txn_id(r->txn);
    return 0;
}

void dmj_read_end(struct dmj_read *r)
{
    if (!r->active)
        return;
    mdb_txn_reset(r->txn);
    dmj__store_reader_leave(r->s);
    r->active = false;
    /* walks of this transaction must not go on in the next one */
    for (int i = 0; i < WALK_INDEXES; i++)
        for (int j = 0; j < WALK_SLOTS; j++)
            r->walk[i][j].gen++;
}

uint64_t dmj_read_txnid(struct dmj_read *r)
{
    return r->active ? r->txnid : 0;
}

int dmj_read_meta(struct dmj_read *r, const char *name, void *val, size_t cap, size_t *len)
{
    size_t n;
    if (!dmj__meta_name_ok(name, &n))
        return DMJ_EINVAL;
    if (!r->active)
        return DMJ_EINVAL;
    MDB_val k = {n, (void *)name}, v;
    int rc = mdb_get(r->txn, r->s->dbi[DB_META], &k, &v);
    if (rc)
        return dmj__store_err(rc);
    if (v.mv_size > cap)
        return DMJ_ETOOBIG;
    memcpy(val, v.mv_data, v.mv_size);
    *len = v.mv_size;
    return 0;
}

int dmj_read_store_id(struct dmj_read *r, uint8_t out[16])
{
    return dmj__store_read_id(r->s, r->active ? r->txn : NULL, out);
}

/* The slot's cursor, opened on first use and renewed once per transaction. */
static int slot_cursor(struct dmj_read *r, struct slot *sl, MDB_cursor **out)
{
    int rc;
    if (!r->active)
        return -EINVAL;
    if (!sl->cur) {
        rc = mdb_cursor_open(r->txn, sl->dbi, &sl->cur);
        if (rc)
            return dmj__store_err(rc);
    } else if (sl->epoch != r->epoch) {
        rc = mdb_cursor_renew(r->txn, sl->cur);
        if (rc)
            return dmj__store_err(rc);
    }
    sl->epoch = r->epoch;
    *out = sl->cur;
    return 0;
}

int dmj__read_cursor(struct dmj_read *r, int db, MDB_cursor **out)
{
    struct slot *sl = &r->misc[db];
    if (db != DB_CHANGES || !r->active)
        return slot_cursor(r, sl, out);
    if (!atomic_load(&r->s->has_changes))
        return DMJ_ENOTFOUND;
    if (!sl->cur)
        sl->dbi = r->s->dbi[DB_CHANGES]; /* found after this handle was made */
    int rc = slot_cursor(r, sl, out);
    /* found by another thread while this transaction, begun before, does not know it */
    return rc == -EINVAL ? DMJ_ENOTFOUND : rc;
}

int dmj__read_txn(struct dmj_read *r, MDB_txn **out)
{
    if (!r->active)
        return -EINVAL;
    *out = r->txn;
    return 0;
}

const struct dmj_store *dmj__read_store(const struct dmj_read *r)
{
    return r->s;
}

int dmj_read_count(struct dmj_read *r, int32_t team_id, const struct dmj_count_spec *spec,
                   uint64_t *out)
{
    if (!r->active)
        return -EINVAL;
    return dmj__counts_get(r->txn, r->s, team_id, spec, out);
}

static int get(struct dmj_read *r, int db, const void *key, size_t klen, MDB_val *val)
{
    if (!r->active)
        return -EINVAL;
    MDB_val k = {klen, (void *)key};
    return dmj__store_err(mdb_get(r->txn, r->s->dbi[db], &k, val));
}

/* ---- look-ups ------------------------------------------------------------------------ */

/* How many entries a look-up steps from where the last one left the `jobs` cursor before
 * it seeks from the root instead. An index walk's jobs lie close together in `jobs` (one
 * saved query's runs among the other runs of its team, in the same time order), and a step
 * inside a page costs a tenth of a seek. */
#define NEAR_STEPS 4

static int cmp_job_key(const MDB_val *k, const uint8_t key[KEY_JOB_LEN])
{
    if (k->mv_size != KEY_JOB_LEN)
        return k->mv_size < KEY_JOB_LEN ? -1 : 1;
    return memcmp(k->mv_data, key, KEY_JOB_LEN);
}

/* The `jobs` value at `key`, looked for first near the cursor's last position. */
static int get_job_near(struct dmj_read *r, const uint8_t key[KEY_JOB_LEN], MDB_val *val)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = slot_cursor(r, &r->misc[DB_JOBS], &c);
    if (rc)
        return rc;
    /* EINVAL when the cursor has no position yet in this transaction */
    if (mdb_cursor_get(c, &k, &v, MDB_GET_CURRENT) == 0) {
        int cmp = cmp_job_key(&k, key);
        MDB_cursor_op step = cmp > 0 ? MDB_PREV : MDB_NEXT;
        for (int i = 0; i < NEAR_STEPS && cmp != 0; i++) {
            if (mdb_cursor_get(c, &k, &v, step) != 0)
                break;
            int now = cmp_job_key(&k, key);
            if (now != 0 && (now > 0) != (cmp > 0))
                break; /* stepped past it: the seek below says it is absent */
            cmp = now;
        }
        if (cmp == 0) {
            *val = v;
            return 0;
        }
    }
    k = (MDB_val){KEY_JOB_LEN, (void *)key};
    return dmj__store_err(mdb_cursor_get(c, &k, val, MDB_SET_KEY));
}

int dmj_job_decode(const void *data, size_t len, struct dmj_job *out)
{
    return dmj_codec_decode_job(data, len, out);
}

/* Fills a record handed out from its `jobs` key and value. */
static void set_rec(const struct dmj_read *r, struct dmj_job_rec *out,
                    const uint8_t key[KEY_JOB_LEN], const MDB_val *v)
{
    out->txnid = r->txnid;
    out->data = v->mv_data;
    out->len = v->mv_size;
    out->team_id = dmj__get32(key);
    out->created_at = dmj__get64(key + 4);
    memcpy(out->id, key + 12, 16);
}

int dmj_read_job_rec(struct dmj_read *r, const uint8_t id[16], struct dmj_job_rec *out)
{
    MDB_val v;
    uint8_t key[KEY_JOB_LEN];
    int rc = get(r, DB_JOB_IDS, id, 16, &v);
    if (rc)
        return rc;
    if (v.mv_size != VAL_JOB_ID_LEN)
        return DMJ_EBADRECORD;
    memcpy(key, v.mv_data, VAL_JOB_ID_LEN);
    memcpy(key + VAL_JOB_ID_LEN, id, 16);
    rc = get(r, DB_JOBS, key, KEY_JOB_LEN, &v);
    /* an id whose record is gone is a broken index, not an absent job */
    if (rc == DMJ_ENOTFOUND)
        return DMJ_EBADRECORD;
    if (rc)
        return rc;
    set_rec(r, out, key, &v);
    return 0;
}

int dmj_read_job(struct dmj_read *r, const uint8_t id[16], struct dmj_job *out)
{
    struct dmj_job_rec rec;
    struct dmj_job j;
    int rc = dmj_read_job_rec(r, id, &rec);
    if (!rc)
        rc = dmj_codec_decode_job(rec.data, rec.len, &j);
    if (!rc && dmj_job_hidden(&j))
        rc = DMJ_ENOTFOUND;
    if (!rc)
        *out = j;
    return rc;
}

int dmj_read_team(struct dmj_read *r, int32_t id, struct dmj_team *out)
{
    uint8_t key[4];
    MDB_val v;
    dmj__put32(key, id);
    int rc = get(r, DB_TEAMS, key, sizeof key, &v);
    return rc ? rc : dmj_codec_decode_team(v.mv_data, v.mv_size, out);
}

int dmj_read_user(struct dmj_read *r, int64_t id, struct dmj_user *out)
{
    uint8_t key[8];
    MDB_val v;
    dmj__put64(key, id);
    int rc = get(r, DB_USERS, key, sizeof key, &v);
    return rc ? rc : dmj_codec_decode_user(v.mv_data, v.mv_size, out);
}

int dmj_read_key(struct dmj_read *r, const char *secure_value, struct dmj_key *out)
{
    MDB_val v;
    const char *nul = memchr(secure_value, '\0', DMJ_KEY_HASH_LEN + 1);
    size_t len = nul ? (size_t)(nul - secure_value) : DMJ_KEY_HASH_LEN + 1;
    if (len == 0 || len > DMJ_KEY_HASH_LEN)
        return DMJ_ENOTFOUND; /* no stored hash has that form */
    int rc = get(r, DB_KEYS, secure_value, len, &v);
    return rc ? rc : dmj_codec_decode_key(v.mv_data, v.mv_size, out);
}

int dmj_read_membership(struct dmj_read *r, int64_t user_id, const uint8_t org[16])
{
    uint8_t key[24];
    MDB_val v;
    dmj__put64(key, user_id);
    memcpy(key + 8, org, 16);
    return get(r, DB_MEMBERSHIPS, key, sizeof key, &v);
}

/* The first key of `db` at or after `seek` (slen bytes) that starts with the first `plen`
 * bytes of `seek` and is `klen` long. */
static int first_with_prefix(struct dmj_read *r, int db, const uint8_t *seek, size_t slen,
                             size_t plen, size_t klen, MDB_val *key_out)
{
    MDB_cursor *c;
    int rc = slot_cursor(r, &r->misc[db], &c);
    if (rc)
        return rc;
    const uint8_t *prefix = seek;
    MDB_val k = {slen, (void *)seek}, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (rc)
        return dmj__store_err(rc);
    if (k.mv_size != klen || memcmp(k.mv_data, prefix, plen) != 0)
        return DMJ_ENOTFOUND;
    *key_out = k;
    return 0;
}

int dmj_read_first_org_of_user(struct dmj_read *r, int64_t user_id, uint8_t org_out[16])
{
    uint8_t prefix[8];
    MDB_val k;
    dmj__put64(prefix, user_id);
    int rc = first_with_prefix(r, DB_MEMBERSHIPS, prefix, sizeof prefix, sizeof prefix, 24, &k);
    if (rc)
        return rc;
    memcpy(org_out, (const uint8_t *)k.mv_data + 8, 16);
    return 0;
}

int dmj_read_first_team_of_org(struct dmj_read *r, const uint8_t org[16], int32_t *team_out)
{
    MDB_val k;
    int rc = first_with_prefix(r, DB_ORG_TEAMS, org, 16, 16, 20, &k);
    if (rc)
        return rc;
    *team_out = dmj__get32((const uint8_t *)k.mv_data + 16);
    return 0;
}

/* Adds one to a big-endian byte string; false when it wraps (all 0xff). */
static bool incr(uint8_t *p, size_t n)
{
    while (n-- > 0) {
        if (++p[n] != 0)
            return true;
    }
    return false;
}

int dmj_read_next_saved_query(struct dmj_read *r, int32_t team_id, const uint8_t *after,
                              uint8_t out[16])
{
    uint8_t seek[20];
    size_t slen = 4;
    MDB_val k;
    dmj__put32(seek, team_id);
    if (after) {
        /* the smallest key past every entry of `after`: after + 1 as a 16-byte number */
        memcpy(seek + 4, after, 16);
        if (!incr(seek + 4, 16))
            return DMJ_EEND;
        slen = 20;
    }
    int rc = first_with_prefix(r, DB_BY_SQ, seek, slen, 4, KEY_SQ_LEN, &k);
    if (rc == DMJ_ENOTFOUND)
        return DMJ_EEND;
    if (rc)
        return rc;
    memcpy(out, (const uint8_t *)k.mv_data + 4, 16);
    return 0;
}

/* ---- walks --------------------------------------------------------------------------- */

/* The prefix every key of the walk starts with, and the key length of its index. */
static size_t walk_prefix(const struct dmj_walk_spec *sp, uint8_t p[20], size_t *klen)
{
    dmj__put32(p, sp->team_id);
    switch (sp->index) {
    case DMJ_WALK_SAVED_QUERY:
        memcpy(p + 4, sp->saved_query_id, 16);
        *klen = KEY_SQ_LEN;
        return 20;
    case DMJ_WALK_STATUS:
        p[4] = (uint8_t)sp->status;
        *klen = KEY_STATUS_LEN;
        return 5;
    default:
        *klen = KEY_JOB_LEN;
        return 4;
    }
}

int dmj_walk_start(struct dmj_read *r, const struct dmj_walk_spec *spec, struct dmj_walk *w)
{
    MDB_cursor *c;
    if ((unsigned)spec->index >= WALK_INDEXES)
        return DMJ_EINVAL;
    if (spec->index == DMJ_WALK_STATUS && (unsigned)spec->status >= DMJ_STATUS_COUNT)
        return DMJ_EINVAL;
    unsigned i = (unsigned)spec->index;
    struct slot *sl = &r->walk[i][r->next_walk[i]++ % WALK_SLOTS];
    int rc = slot_cursor(r, sl, &c);
    if (rc)
        return rc;
    sl->gen++;
    w->read = r;
    w->spec = *spec;
    w->cursor = sl;
    w->state = (int)((sl->gen & GEN_MASK) << 2) | PHASE_FRESH;
    return 0;
}

/* Places the cursor on the walk's first candidate row (not yet checked against the prefix). */
static int walk_position(struct dmj_walk *w, MDB_cursor *c, MDB_val *k, MDB_val *v)
{
    const struct dmj_walk_spec *sp = &w->spec;
    uint8_t seek[28];
    size_t klen, plen = walk_prefix(sp, seek, &klen);
    size_t slen = plen;
    int rc;

    if (sp->descending) {
        /* descending: the last key below the seek key */
        bool have_seek = true;
        if (sp->has_bound) {
            dmj__put64(seek + plen, sp->bound_us);
            slen = plen + 8;
        } else {
            have_seek = incr(seek, plen);
        }
        if (have_seek) {
            *k = (MDB_val){slen, seek};
            rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
            if (rc == 0)
                return mdb_cursor_get(c, k, v, MDB_PREV);
            if (rc != MDB_NOTFOUND)
                return rc;
        }
        return mdb_cursor_get(c, k, v, MDB_LAST);
    }
    if (sp->has_bound) {
        if (sp->bound_us == INT64_MAX)
            return MDB_NOTFOUND;
        dmj__put64(seek + plen, sp->bound_us + 1);
        slen = plen + 8;
    }
    *k = (MDB_val){slen, seek};
    return mdb_cursor_get(c, k, v, MDB_SET_RANGE);
}

/* Whether key `k` is one of the walk's: its index's length and the walk's prefix (team, then
 * the index's own part), compared field by field rather than rebuilt for every row. */
static bool in_walk(const struct dmj_walk_spec *sp, const MDB_val *k)
{
    const uint8_t *p = k->mv_data;
    switch (sp->index) {
    case DMJ_WALK_SAVED_QUERY:
        return k->mv_size == KEY_SQ_LEN && dmj__get32(p) == sp->team_id &&
               memcmp(p + 4, sp->saved_query_id, 16) == 0;
    case DMJ_WALK_STATUS:
        return k->mv_size == KEY_STATUS_LEN && dmj__get32(p) == sp->team_id &&
               p[4] == (uint8_t)sp->status;
    default:
        return k->mv_size == KEY_JOB_LEN && dmj__get32(p) == sp->team_id;
    }
}

int dmj_walk_next_entry(struct dmj_walk *w, struct dmj_job_rec *out)
{
    struct slot *sl = w->cursor;
    struct dmj_read *r = w->read;
    MDB_val k, v;
    int rc;

    if ((w->state & 3) == PHASE_DONE)
        return DMJ_EEND;
    if (!r->active || (unsigned)(w->state >> 2) != (sl->gen & GEN_MASK))
        return DMJ_ESTORE; /* the read ended, or a newer walk took this cursor */
    if ((w->state & 3) == PHASE_FRESH) {
        rc = walk_position(w, sl->cur, &k, &v);
        w->state = (w->state & ~3) | PHASE_MOVING;
    } else {
        rc = mdb_cursor_get(sl->cur, &k, &v, w->spec.descending ? MDB_PREV : MDB_NEXT);
    }
    if (rc == 0 && !in_walk(&w->spec, &k))
        rc = MDB_NOTFOUND;
    if (rc) {
        w->state = (w->state & ~3) | PHASE_DONE;
        return rc == MDB_NOTFOUND ? DMJ_EEND : dmj__store_err(rc);
    }
    if (w->spec.index == DMJ_WALK_TEAM) {
        set_rec(r, out, k.mv_data, &v);
        return 0;
    }
    /* an index entry carries team . (its own part) . created_at . id: no record yet */
    const uint8_t *tail = (const uint8_t *)k.mv_data + k.mv_size - 24;
    out->txnid = r->txnid;
    out->data = NULL;
    out->len = 0;
    out->team_id = dmj__get32(k.mv_data);
    out->created_at = dmj__get64(tail);
    memcpy(out->id, tail + 8, 16);
    return 0;
}

int dmj_walk_fetch(struct dmj_walk *w, struct dmj_job_rec *rec)
{
    uint8_t jkey[KEY_JOB_LEN];
    MDB_val v;
    if (rec->data != NULL)
        return 0;
    dmj__key_job(jkey, rec->team_id, rec->created_at, rec->id);
    int rc = get_job_near(w->read, jkey, &v);
    if (rc == DMJ_ENOTFOUND)
        return DMJ_EBADRECORD; /* a dangling entry */
    if (rc)
        return rc;
    set_rec(w->read, rec, jkey, &v);
    return 0;
}

int dmj_walk_next_rec(struct dmj_walk *w, struct dmj_job_rec *out)
{
    int rc = dmj_walk_next_entry(w, out);
    return rc ? rc : dmj_walk_fetch(w, out);
}

int dmj_walk_next(struct dmj_walk *w, struct dmj_job *out)
{
    for (;;) {
        struct dmj_job_rec rec;
        struct dmj_job j;
        int rc = dmj_walk_next_rec(w, &rec);
        if (!rc)
            rc = dmj_codec_decode_job(rec.data, rec.len, &j);
        if (rc)
            return rc;
        if (!dmj_job_hidden(&j)) {
            *out = j;
            return 0;
        }
    }
}

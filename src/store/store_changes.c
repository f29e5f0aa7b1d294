/* The change log (events): its entries' byte layout, each team's seq counter, the read side and
 * the pruning of old entries. Entries are written by store_flush.c in the transaction of the
 * change.
 *
 * Layout: key team(4, sign-flipped) . seq(8, unsigned), both big-endian, so that a team's
 * entries after a seq are one MDB_SET_RANGE; value kind(1) . status(1) . previous(1) .
 * job id(16) . at_us(8, sign-flipped). Seqs are counted per team (1, 2, 3... in each), so
 * that the ids a team's key sees say nothing of other teams' writes. meta
 * "changes.team." . team(4) holds the team's last seq given out and the highest seq pruning
 * removed from it: every seq of the team at or below that is gone, every seq above it is
 * kept, which is what lets a reader tell that it missed entries.
 *
 * A store of format 1 numbered every team's entries from one counter, meta "changes.seq" and
 * "changes.pruned". A team without a counter of its own carries on from those (frozen since
 * the store became format 2): its next seq is past every seq the store gave out before, so an
 * id a client got from an earlier version still means what it meant. */
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "dmj/store.h"
#include "store_impl.h"

/* ---- entries ------------------------------------------------------------------------- */

void dmj__change_encode_val(uint8_t *val, enum dmj_change_kind kind, uint8_t status,
                            uint8_t previous, const uint8_t id[16], int64_t at_us)
{
    val[0] = (uint8_t)kind;
    val[1] = status;
    val[2] = previous;
    memcpy(val + 3, id, 16);
    dmj__put64(val + 19, at_us);
}

void dmj__change_encode(uint8_t *key, uint8_t *val, const struct dmj_change *c)
{
    dmj__put32(key, c->team_id);
    dmj__put_u64(key + 4, c->seq);
    dmj__change_encode_val(val, c->kind, (uint8_t)c->status, (uint8_t)c->previous, c->job_id,
                           c->at_us);
}

int dmj__change_decode(const MDB_val *k, const MDB_val *v, struct dmj_change *out)
{
    if (k->mv_size != KEY_CHANGE_LEN || v->mv_size != CHANGE_VAL_LEN)
        return DMJ_EBADRECORD;
    const uint8_t *kp = k->mv_data, *vp = v->mv_data;
    uint64_t seq = dmj__get_u64(kp + 4);
    if (seq == 0 || vp[0] < DMJ_CHANGE_CREATED || vp[0] > DMJ_CHANGE_DELETED ||
        vp[1] >= DMJ_STATUS_COUNT || vp[2] >= DMJ_STATUS_COUNT)
        return DMJ_EBADRECORD;
    /* only a status change has a previous status of its own */
    if ((vp[0] == DMJ_CHANGE_STATUS) != (vp[1] != vp[2]))
        return DMJ_EBADRECORD;
    out->seq = seq;
    out->team_id = dmj__get32(kp);
    out->kind = (enum dmj_change_kind)vp[0];
    out->status = (enum dmj_status)vp[1];
    out->previous = (enum dmj_status)vp[2];
    memcpy(out->job_id, vp + 3, 16);
    out->at_us = dmj__get64(vp + 19);
    return 0;
}

/* ---- the counters -------------------------------------------------------------------- */

/* A store-wide counter of format 1 from meta: 0 when absent; DMJ_EBADRECORD when it is not
 * 8 bytes. */
static int meta_u64(MDB_txn *txn, const struct dmj_store *s, const char *name, uint64_t *out)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
    if (rc == MDB_NOTFOUND) {
        *out = 0;
        return 0;
    }
    if (rc)
        return dmj__store_err(rc);
    if (v.mv_size != 8)
        return DMJ_EBADRECORD;
    *out = dmj__get_u64(v.mv_data);
    return 0;
}

static void team_key(uint8_t key[KEY_META_TEAM_LEN], int32_t team)
{
    memcpy(key, META_CHANGES_TEAM, META_CHANGES_TEAM_LEN);
    dmj__put32(key + META_CHANGES_TEAM_LEN, team);
}

static bool same_team(const MDB_val *k, const uint8_t prefix[4])
{
    return k->mv_size >= 4 && memcmp(k->mv_data, prefix, 4) == 0;
}

/* The team's lowest and highest seq in the log (0 and 0 when it has none, or no log). */
static int team_range(MDB_cursor *c, int32_t team, uint64_t *lo, uint64_t *hi)
{
    uint8_t seek[KEY_CHANGE_LEN];
    MDB_val k = {sizeof seek, seek}, v;
    uint64_t low = 0, high = 0;
    int rc = 0;
    *lo = *hi = 0;
    if (c == NULL)
        return 0;
    dmj__put32(seek, team);
    dmj__put_u64(seek + 4, 1);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && same_team(&k, seek);
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size == KEY_CHANGE_LEN) {
            low = dmj__get_u64((const uint8_t *)k.mv_data + 4);
            break;
        }
    }
    if (rc && rc != MDB_NOTFOUND)
        return dmj__store_err(rc);
    if (low == 0)
        return 0;
    /* the highest: the key before the next team's first */
    if (team == INT32_MAX) {
        rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    } else {
        uint8_t next[4];
        dmj__put32(next, team + 1);
        k = (MDB_val){sizeof next, next};
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (rc == 0)
            rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
        else if (rc == MDB_NOTFOUND)
            rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    }
    for (; rc == 0 && same_team(&k, seek); rc = mdb_cursor_get(c, &k, &v, MDB_PREV)) {
        if (k.mv_size == KEY_CHANGE_LEN) {
            high = dmj__get_u64((const uint8_t *)k.mv_data + 4);
            break;
        }
    }
    if (rc && rc != MDB_NOTFOUND)
        return dmj__store_err(rc);
    *lo = low;
    *hi = high > low ? high : low;
    return 0;
}

int dmj__changes_team(MDB_txn *txn, const struct dmj_store *s, MDB_cursor *log, int32_t team,
                      uint64_t *last, uint64_t *pruned, bool *derived)
{
    uint8_t key[KEY_META_TEAM_LEN];
    MDB_val k = {sizeof key, key}, v;
    team_key(key, team);
    int rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
    if (rc == 0 && v.mv_size == META_TEAM_VAL_LEN) {
        uint64_t l = dmj__get_u64(v.mv_data), p = dmj__get_u64((const uint8_t *)v.mv_data + 8);
        if (p <= l) {
            *last = l;
            *pruned = p;
            *derived = false;
            return 0;
        }
    }
    if (rc && rc != MDB_NOTFOUND)
        return dmj__store_err(rc);
    bool damaged = rc == 0;
    uint64_t old_last = 0, old_pruned = 0, lo, hi;
    int rl = meta_u64(txn, s, META_CHANGES_SEQ, &old_last);
    int rp = meta_u64(txn, s, META_CHANGES_PRUNED, &old_pruned);
    if ((rl && rl != DMJ_EBADRECORD) || (rp && rp != DMJ_EBADRECORD))
        return rl && rl != DMJ_EBADRECORD ? rl : rp;
    rc = team_range(log, team, &lo, &hi);
    if (rc)
        return rc;
    if (!damaged && rl == 0 && rp == 0 && old_pruned <= old_last) {
        /* on from format 1's counter (past the team's entries, should it lag behind them) */
        *last = hi > old_last ? hi : old_last;
        *pruned = old_pruned;
        *derived = false;
        return 0;
    }
    /* A damaged counter must not stop every write: it goes on past every seq the team's log
     * holds and takes everything below its first entry as pruned, so that a reader resuming
     * from before it is told (seqs pruned away and lost with the counter may be given again;
     * verify has said the counter was damaged). */
    uint64_t floor = rl == 0 ? old_last : 0;
    *last = hi > floor ? hi : floor;
    *pruned = lo ? lo - 1 : *last;
    *derived = true;
    return 0;
}

int dmj__changes_save(MDB_txn *txn, const struct dmj_store *s, struct dmj__change_log *log)
{
    if (!log->loaded || !log->dirty)
        return 0;
    uint8_t key[KEY_META_TEAM_LEN], val[META_TEAM_VAL_LEN];
    team_key(key, log->team);
    dmj__put_u64(val, log->last);
    dmj__put_u64(val + 8, log->pruned);
    MDB_val k = {sizeof key, key}, v = {sizeof val, val};
    int rc = dmj__store_err(mdb_put(txn, s->dbi[DB_META], &k, &v, 0));
    if (rc == 0)
        log->dirty = false;
    return rc;
}

int dmj__changes_use(MDB_txn *txn, const struct dmj_store *s, struct dmj__change_log *log,
                     int32_t team)
{
    if (log->loaded && log->team == team)
        return 0;
    int rc = dmj__changes_save(txn, s, log);
    if (rc)
        return rc;
    MDB_cursor *c = NULL;
    if (atomic_load(&s->has_changes)) {
        rc = mdb_cursor_open(txn, s->dbi[DB_CHANGES], &c);
        if (rc)
            return dmj__store_err(rc);
    }
    uint64_t last, pruned;
    bool derived;
    rc = dmj__changes_team(txn, s, c, team, &last, &pruned, &derived);
    if (c)
        mdb_cursor_close(c);
    if (rc)
        return rc;
    *log = (struct dmj__change_log){
        .team = team, .last = last, .pruned = pruned, .loaded = true, .dirty = derived};
    return 0;
}

/* ---- reading ------------------------------------------------------------------------- */

int dmj_read_change_next(struct dmj_read *r, int32_t team_id, uint64_t after_seq,
                         struct dmj_change *out)
{
    MDB_cursor *c;
    uint8_t seek[KEY_CHANGE_LEN];
    if (after_seq == UINT64_MAX)
        return DMJ_EEND;
    int rc = dmj__read_cursor(r, DB_CHANGES, &c);
    if (rc == DMJ_ENOTFOUND)
        return DMJ_EEND; /* a store from before the log, opened read-only */
    if (rc)
        return rc;
    dmj__put32(seek, team_id);
    dmj__put_u64(seek + 4, after_seq + 1);
    MDB_val k = {sizeof seek, seek}, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == 0) {
        if (!same_team(&k, seek))
            return DMJ_EEND;
        struct dmj_change ch;
        /* a damaged entry (dmj verify names it) must not stop every stream at it */
        if (dmj__change_decode(&k, &v, &ch) == 0) {
            *out = ch;
            return 0;
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    return rc == MDB_NOTFOUND ? DMJ_EEND : dmj__store_err(rc);
}

/* A counter as bounds: oldest kept and newest given (both 0 for a log never written; when
 * everything was pruned, oldest is newest + 1: nothing kept, nothing missed by a reader that
 * had seen newest). */
static void as_bounds(uint64_t last, uint64_t pruned, uint64_t *oldest, uint64_t *newest)
{
    *oldest = last == 0 ? 0 : (pruned < last ? pruned : last) + 1;
    *newest = last;
}

int dmj_read_change_bounds_all(struct dmj_read *r, uint64_t *oldest, uint64_t *newest)
{
    MDB_txn *txn;
    MDB_cursor *c;
    const struct dmj_store *s = dmj__read_store(r);
    MDB_val k = {META_CHANGES_TEAM_LEN, (void *)META_CHANGES_TEAM}, v;
    uint64_t lo = UINT64_MAX, hi = 0, last = 0, pruned = 0;
    int rc = dmj__read_txn(r, &txn);
    if (rc)
        return rc;
    /* teams without a counter of their own stand at format 1's */
    if (meta_u64(txn, s, META_CHANGES_SEQ, &last) == 0 &&
        meta_u64(txn, s, META_CHANGES_PRUNED, &pruned) == 0 && last > 0) {
        hi = last;
        if (pruned < last)
            lo = pruned + 1;
    }
    rc = mdb_cursor_open(txn, s->dbi[DB_META], &c);
    if (rc)
        return dmj__store_err(rc);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
         rc == 0 && k.mv_size >= META_CHANGES_TEAM_LEN &&
         memcmp(k.mv_data, META_CHANGES_TEAM, META_CHANGES_TEAM_LEN) == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != KEY_META_TEAM_LEN || v.mv_size != META_TEAM_VAL_LEN)
            continue; /* dmj verify names it */
        last = dmj__get_u64(v.mv_data);
        pruned = dmj__get_u64((const uint8_t *)v.mv_data + 8);
        if (last > hi)
            hi = last;
        if (pruned < last && pruned + 1 < lo)
            lo = pruned + 1;
    }
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND)
        return dmj__store_err(rc);
    *newest = hi;
    *oldest = hi == 0 ? 0 : lo == UINT64_MAX ? hi + 1 : lo;
    return 0;
}

int dmj_read_change_bounds(struct dmj_read *r, int32_t team_id, uint64_t *oldest, uint64_t *newest)
{
    MDB_txn *txn;
    MDB_cursor *c = NULL;
    const struct dmj_store *s = dmj__read_store(r);
    uint64_t last, pruned;
    bool derived;
    int rc = dmj__read_txn(r, &txn);
    if (rc)
        return rc;
    rc = dmj__read_cursor(r, DB_CHANGES, &c);
    if (rc && rc != DMJ_ENOTFOUND)
        return rc;
    rc = dmj__changes_team(txn, s, rc ? NULL : c, team_id, &last, &pruned, &derived);
    if (rc)
        return rc;
    as_bounds(last, pruned, oldest, newest);
    return 0;
}

int dmj_read_change_size(struct dmj_read *r, uint64_t *entries, uint64_t *bytes)
{
    MDB_txn *txn;
    MDB_stat st;
    const struct dmj_store *s = dmj__read_store(r);
    int rc = dmj__read_txn(r, &txn);
    if (rc)
        return rc;
    /* absent, or found after this transaction began (EINVAL): nothing to count in it */
    rc = atomic_load(&s->has_changes) ? mdb_stat(txn, s->dbi[DB_CHANGES], &st) : EINVAL;
    if (rc == EINVAL) {
        *entries = 0;
        *bytes = 0;
        return 0;
    }
    if (rc)
        return dmj__store_err(rc);
    *entries = st.ms_entries;
    *bytes = (uint64_t)(st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) * st.ms_psize;
    return 0;
}

/* ---- pruning ------------------------------------------------------------------------- */

/* From the cursor's entry, the first of `team`'s, through the team's entries: the highest seq
 * of an entry older than `before_us` (0 when none). Everything of the team at or below it goes,
 * even an entry whose clock said later (writers' clocks may step back), so that the kept seqs
 * are exactly those above the recorded one. Leaves the cursor on the next team's first entry.
 * Returns an LMDB code. */
static int find_cut(MDB_cursor *c, MDB_val *k, MDB_val *v, int32_t team, int64_t before_us,
                    uint64_t *cut)
{
    uint8_t prefix[4];
    int rc = 0;
    dmj__put32(prefix, team);
    *cut = 0;
    for (; rc == 0 && same_team(k, prefix); rc = mdb_cursor_get(c, k, v, MDB_NEXT)) {
        struct dmj_change ch;
        if (dmj__change_decode(k, v, &ch) == 0 && ch.at_us < before_us && ch.seq > *cut)
            *cut = ch.seq;
    }
    return rc;
}

/* Deletes the team's entries with a seq at or below `cut`. Malformed keys are left to dmj
 * verify. Returns an LMDB code. */
static int cut_entries(MDB_cursor *c, int32_t team, uint64_t cut, uint64_t *removed)
{
    uint8_t seek[4];
    MDB_val k = {sizeof seek, seek}, v;
    dmj__put32(seek, team);
    int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && same_team(&k, seek)) {
        if (k.mv_size != KEY_CHANGE_LEN) {
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        } else if (dmj__get_u64((const uint8_t *)k.mv_data + 4) <= cut) {
            rc = mdb_cursor_del(c, 0);
            if (rc == 0) {
                (*removed)++;
                /* after a delete the cursor's next is the entry that followed */
                rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
            }
        } else {
            break;
        }
    }
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Prunes one team at `cut` and records it in the team's counter. A dmj code. */
static int prune_team(MDB_txn *txn, const struct dmj_store *s, struct dmj__change_log *log,
                      MDB_cursor *c, int32_t team, uint64_t cut, uint64_t *removed, bool *changed)
{
    int rc = dmj__changes_use(txn, s, log, team);
    if (rc || cut <= log->pruned)
        return rc;
    rc = dmj__store_err(cut_entries(c, team, cut, removed));
    if (rc)
        return rc;
    log->pruned = cut;
    if (log->last < cut)
        log->last = cut; /* an entry past a damaged counter: its seq is not given again */
    log->dirty = true;
    *changed = true;
    return 0;
}

int dmj_write_prune_changes(struct dmj_write *w, int64_t before_us, uint64_t *removed)
{
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k, v;
    const struct dmj_store *s = dmj__write_store(w);
    struct dmj__change_log *log = dmj__write_log(w);
    uint64_t n = 0;
    bool changed = false;
    int rc = dmj__write_txn(w, &txn);
    if (rc)
        return rc;
    rc = mdb_cursor_open(txn, s->dbi[DB_CHANGES], &c);
    if (rc)
        return dmj__write_fail(w, dmj__store_err(rc));
    /* lrc: where the walk stands (an LMDB code); rc: the first failure (a dmj code) */
    int lrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (lrc == 0 && rc == 0) {
        if (k.mv_size < 4) {
            lrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
            continue;
        }
        int32_t team = dmj__get32(k.mv_data);
        uint64_t cut;
        lrc = find_cut(c, &k, &v, team, before_us, &cut);
        if (cut == 0 || (lrc && lrc != MDB_NOTFOUND))
            continue;
        rc = prune_team(txn, s, log, c, team, cut, &n, &changed);
        if (rc || team == INT32_MAX)
            break;
        /* on to the next team's entries, past the deletions */
        uint8_t next[4];
        dmj__put32(next, team + 1);
        k = (MDB_val){sizeof next, next};
        lrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    }
    mdb_cursor_close(c);
    if (rc == 0 && lrc && lrc != MDB_NOTFOUND)
        rc = dmj__store_err(lrc);
    if (changed)
        dmj__write_touch(w);
    if (rc)
        return dmj__write_fail(w, rc);
    *removed = n;
    return 0;
}

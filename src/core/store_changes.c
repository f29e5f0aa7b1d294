/* The change log (events): its entries' byte layout, the seq counter, the read side and the
 * pruning of old entries. Entries are written by store_write.c in the transaction of the change.
 *
 * Layout: key team(4, sign-flipped) . seq(8, unsigned), both big-endian, so that a team's
 * entries after a seq are one MDB_SET_RANGE; value kind(1) . status(1) . previous(1) .
 * job id(16) . at_us(8, sign-flipped). meta "changes.seq" holds the last seq given out and
 * "changes.pruned" the highest seq pruning removed: every seq at or below it is gone, every
 * seq above it is kept, which is what lets a reader tell that it missed entries. */
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

/* A counter from meta: 0 when absent; DMJ_EBADRECORD when it is not 8 bytes. */
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

static int put_meta_u64(MDB_txn *txn, const struct dmj_store *s, const char *name, uint64_t val)
{
    uint8_t b[8];
    dmj__put_u64(b, val);
    MDB_val k = {strlen(name), (void *)name}, v = {sizeof b, b};
    return dmj__store_err(mdb_put(txn, s->dbi[DB_META], &k, &v, 0));
}

/* The highest seq the log holds, and the pruned one: where a damaged counter resumes. */
static int highest_seq(MDB_txn *txn, const struct dmj_store *s, uint64_t *out)
{
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t top = 0;
    int rc = meta_u64(txn, s, META_CHANGES_PRUNED, &top);
    if (rc)
        top = 0; /* damaged too: the entries still say how far seqs went */
    rc = mdb_cursor_open(txn, s->dbi[DB_CHANGES], &c);
    if (rc)
        return dmj__store_err(rc);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        uint64_t seq = k.mv_size == KEY_CHANGE_LEN ? dmj__get_u64((const uint8_t *)k.mv_data + 4)
                                                   : 0;
        if (seq > top)
            top = seq;
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND)
        return dmj__store_err(rc);
    *out = top;
    return 0;
}

int dmj__changes_load(MDB_txn *txn, const struct dmj_store *s, struct dmj__change_log *log)
{
    if (log->loaded)
        return 0;
    uint64_t last = 0;
    int rc = meta_u64(txn, s, META_CHANGES_SEQ, &last);
    /* a damaged counter must not stop every write: it goes on past every seq the log
     * holds (seqs pruned away and lost with the counter may then be given again; verify
     * has said the counter was damaged) */
    if (rc == DMJ_EBADRECORD) {
        rc = highest_seq(txn, s, &last);
        log->dirty = true;
    }
    if (rc)
        return rc;
    log->last = last;
    log->loaded = true;
    return 0;
}

int dmj__changes_save(MDB_txn *txn, const struct dmj_store *s, struct dmj__change_log *log)
{
    if (!log->dirty)
        return 0;
    int rc = put_meta_u64(txn, s, META_CHANGES_SEQ, log->last);
    if (rc == 0)
        log->dirty = false;
    return rc;
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
        if (k.mv_size < 4 || memcmp(k.mv_data, seek, 4) != 0)
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

/* oldest and newest from the counters of `txn` (both 0 for a log never written). */
static int bounds(MDB_txn *txn, const struct dmj_store *s, uint64_t *oldest, uint64_t *newest)
{
    uint64_t last = 0, pruned = 0;
    int rc = meta_u64(txn, s, META_CHANGES_SEQ, &last);
    if (rc == 0)
        rc = meta_u64(txn, s, META_CHANGES_PRUNED, &pruned);
    if (rc)
        return rc;
    if (last == 0) {
        *oldest = 0;
        *newest = 0;
        return 0;
    }
    /* when everything was pruned, oldest is newest + 1: nothing kept, nothing missed by a
     * reader that had seen newest */
    *oldest = (pruned < last ? pruned : last) + 1;
    *newest = last;
    return 0;
}

int dmj_read_change_bounds(struct dmj_read *r, uint64_t *oldest, uint64_t *newest)
{
    MDB_txn *txn;
    int rc = dmj__read_txn(r, &txn);
    if (rc)
        return rc;
    return bounds(txn, dmj__read_store(r), oldest, newest);
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

/* The cut: the highest seq of an entry older than `before_us` (0 when none). Everything at or
 * below it goes, even an entry whose clock said later (writers' clocks may step back), so
 * that the kept seqs are exactly those above the recorded one. Returns an LMDB code. */
static int find_cut(MDB_cursor *c, int64_t before_us, uint64_t *cut)
{
    MDB_val k, v;
    int rc;
    *cut = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        struct dmj_change ch;
        if (dmj__change_decode(&k, &v, &ch) == 0 && ch.at_us < before_us && ch.seq > *cut)
            *cut = ch.seq;
    }
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Deletes every entry with a seq at or below `cut`: each team's first entries, then a seek
 * to the next team. Malformed keys are left to dmj verify. Returns an LMDB code. */
static int cut_entries(MDB_cursor *c, uint64_t cut, uint64_t *removed)
{
    MDB_val k, v;
    uint64_t n = 0;
    int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == 0) {
        const uint8_t *kp = k.mv_data;
        if (k.mv_size != KEY_CHANGE_LEN) {
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        } else if (dmj__get_u64(kp + 4) <= cut) {
            rc = mdb_cursor_del(c, 0);
            if (rc == 0) {
                n++;
                /* after a delete the cursor's next is the entry that followed */
                rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
            }
        } else {
            int32_t team = dmj__get32(kp);
            uint8_t next[4];
            if (team == INT32_MAX)
                break;
            dmj__put32(next, team + 1);
            k = (MDB_val){sizeof next, next};
            rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        }
    }
    *removed = n;
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int dmj_write_prune_changes(struct dmj_write *w, int64_t before_us, uint64_t *removed)
{
    MDB_txn *txn;
    MDB_cursor *c;
    const struct dmj_store *s = dmj__write_store(w);
    uint64_t cut = 0, pruned = 0, n = 0;
    int rc = dmj__write_txn(w, &txn);
    if (rc)
        return rc;
    rc = meta_u64(txn, s, META_CHANGES_PRUNED, &pruned);
    if (rc)
        return dmj__write_fail(w, rc);
    rc = mdb_cursor_open(txn, s->dbi[DB_CHANGES], &c);
    if (rc)
        return dmj__write_fail(w, dmj__store_err(rc));
    rc = find_cut(c, before_us, &cut);
    if (rc == 0 && cut > pruned)
        rc = cut_entries(c, cut, &n);
    mdb_cursor_close(c);
    rc = dmj__store_err(rc);
    if (rc == 0 && cut > pruned) {
        rc = put_meta_u64(txn, s, META_CHANGES_PRUNED, cut);
        dmj__write_touch(w);
    }
    if (rc)
        return dmj__write_fail(w, rc);
    *removed = n;
    return 0;
}

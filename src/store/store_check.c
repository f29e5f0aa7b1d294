/* Whole-store operations: the consistency check of every index against the records, the
 * walk over every job (export, stats), and the compacted backup. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "dmj/store.h"
#include "dmj/uuid.h"
#include "store_impl.h"
#include "utf8.h"

struct check {
    MDB_txn *txn;
    const struct dmj_store *s;
    FILE *out;
    uint64_t problems;
    struct dmj_key *key; /* ~7 KB of scratch for decoding keys, off the stack */
    /* the store-wide counters of format 1 (teams without a counter of their own carry on from
     * them), and whether they are well formed */
    uint64_t changes_last, changes_pruned;
    bool changes_ok;
    MDB_cursor *log; /* on the change log, for the counters' pass */
    /* the team whose entries the change log's pass is in */
    bool in_team, team_known, team_own;
    int32_t team;
    uint64_t team_last, team_pruned, expect;
};

static void problem(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct check *c, const char *fmt, ...)
{
    va_list ap;
    c->problems++;
    if (!c->out)
        return;
    va_start(ap, fmt);
    vfprintf(c->out, fmt, ap);
    va_end(ap);
    fputc('\n', c->out);
}

static void count_problem(void *ctx, const char *what)
{
    problem(ctx, "%s", what);
}

/* A key as hex, for naming entries that cannot be decoded. */
static const char *hex(const MDB_val *k, char *buf, size_t cap)
{
    size_t n = k->mv_size < (cap - 1) / 2 ? k->mv_size : (cap - 1) / 2;
    for (size_t i = 0; i < n; i++)
        snprintf(buf + 2 * i, 3, "%02x", ((const uint8_t *)k->mv_data)[i]);
    buf[2 * n] = '\0';
    return buf;
}

static int lookup(struct check *c, int db, const void *key, size_t klen, MDB_val *v)
{
    MDB_val k = {klen, (void *)key};
    return mdb_get(c->txn, c->s->dbi[db], &k, v);
}

/* Calls `fn` on every entry of `db`; an LMDB failure ends the check. */
static int each(struct check *c, int db,
                void (*fn)(struct check *, const MDB_val *, const MDB_val *))
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(c->txn, c->s->dbi[db], &cur);
    if (rc)
        return dmj__store_err(rc);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        fn(c, &k, &v);
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : dmj__store_err(rc);
}

/* A stored string that is not strict UTF-8 (an older version imported such text). */
static void check_text(struct check *c, const char *what, const char *name, struct dmj_str v,
                       const char *field)
{
    if (v.ptr && !dmj_utf8_valid(v.ptr, v.len))
        problem(c, "%s: %s: %s: invalid UTF-8", what, name, field);
}

static void check_job_text(struct check *c, const struct dmj_job *j, const char *ub)
{
    const struct {
        const char *field;
        struct dmj_str v;
    } strs[] = {
        {"error", j->error},
        {"workflow_id", j->workflow_id},
        {"workflow_run_id", j->workflow_run_id},
        {"engine", j->engine},
        {"run_mode", j->run_mode},
        {"parent_workflow_id", j->parent_workflow_id},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        check_text(c, "jobs", ub, strs[i].v, strs[i].field);
}

/* Every job record: decodes, matches its key, has exactly its index entries, holds text. */
static void check_job(struct check *c, const MDB_val *k, const MDB_val *v)
{
    char hb[100], ub[DMJ_UUID_TEXT_LEN + 1];
    struct dmj_job j;
    MDB_val x;
    uint8_t key[KEY_SQ_LEN];
    if (k->mv_size != KEY_JOB_LEN) {
        problem(c, "jobs: key %s: wrong length %zu", hex(k, hb, sizeof hb), k->mv_size);
        return;
    }
    const uint8_t *kp = k->mv_data;
    dmj_uuid_format(kp + 12, ub);
    int rc = dmj_codec_decode_job(v->mv_data, v->mv_size, &j);
    if (rc) {
        problem(c, "jobs: %s: record does not decode (%s)", ub, dmj_strerror(rc));
        return;
    }
    if (j.team_id != dmj__get32(kp) || j.created_at != dmj__get64(kp + 4) ||
        memcmp(j.id, kp + 12, 16) != 0) {
        problem(
            c, "jobs: %s: record (team %" PRId32 ", created_at %" PRId64 ") does not match its key",
            ub, j.team_id, j.created_at);
        return;
    }
    check_job_text(c, &j, ub);
    if (lookup(c, DB_JOB_IDS, j.id, 16, &x) != 0)
        problem(c, "job_ids: %s: missing", ub);
    else if (x.mv_size != VAL_JOB_ID_LEN || memcmp(x.mv_data, kp, VAL_JOB_ID_LEN) != 0)
        problem(c, "job_ids: %s: points elsewhere than team %" PRId32 ", created_at %" PRId64, ub,
                j.team_id, j.created_at);
    if (j.has_saved_query_id) {
        dmj__key_sq(key, j.team_id, j.saved_query_id, j.created_at, j.id);
        if (lookup(c, DB_BY_SQ, key, KEY_SQ_LEN, &x) != 0)
            problem(c, "by_saved_query: %s: missing", ub);
    }
    dmj__key_status(key, j.team_id, (uint8_t)j.status, j.created_at, j.id);
    if (lookup(c, DB_BY_STATUS, key, KEY_STATUS_LEN, &x) != 0)
        problem(c, "by_status: %s: missing", ub);
}

/* The job an index entry names, decoded; 0 or a problem reported. */
static int indexed_job(struct check *c, const char *db, const uint8_t *team_p,
                       const uint8_t *created_id, struct dmj_job *j)
{
    uint8_t key[KEY_JOB_LEN];
    char ub[DMJ_UUID_TEXT_LEN + 1];
    MDB_val v;
    memcpy(key, team_p, 4);
    memcpy(key + 4, created_id, 24);
    dmj_uuid_format(key + 12, ub);
    if (lookup(c, DB_JOBS, key, KEY_JOB_LEN, &v) != 0) {
        problem(c, "%s: %s: dangling entry (no job at team %" PRId32 ", created_at %" PRId64 ")",
                db, ub, dmj__get32(key), dmj__get64(key + 4));
        return -1;
    }
    /* an undecodable record was reported by check_job already */
    return dmj_codec_decode_job(v.mv_data, v.mv_size, j) == 0 ? 0 : -1;
}

static void check_job_id(struct check *c, const MDB_val *k, const MDB_val *v)
{
    char hb[100];
    uint8_t key[KEY_JOB_LEN];
    MDB_val x;
    if (k->mv_size != 16 || v->mv_size != VAL_JOB_ID_LEN) {
        problem(c, "job_ids: key %s: wrong length", hex(k, hb, sizeof hb));
        return;
    }
    memcpy(key, v->mv_data, VAL_JOB_ID_LEN);
    memcpy(key + VAL_JOB_ID_LEN, k->mv_data, 16);
    if (lookup(c, DB_JOBS, key, KEY_JOB_LEN, &x) != 0) {
        char ub[DMJ_UUID_TEXT_LEN + 1];
        dmj_uuid_format(k->mv_data, ub);
        problem(c,
                "job_ids: %s: dangling entry (no job at team %" PRId32 ", created_at %" PRId64 ")",
                ub, dmj__get32(key), dmj__get64(key + 4));
    }
}

static void check_by_sq(struct check *c, const MDB_val *k, const MDB_val *v)
{
    char hb[100], ub[DMJ_UUID_TEXT_LEN + 1];
    struct dmj_job j;
    if (k->mv_size != KEY_SQ_LEN || v->mv_size != 0) {
        problem(c, "by_saved_query: key %s: wrong length", hex(k, hb, sizeof hb));
        return;
    }
    const uint8_t *kp = k->mv_data;
    if (indexed_job(c, "by_saved_query", kp, kp + 20, &j) != 0)
        return;
    if (!j.has_saved_query_id || memcmp(j.saved_query_id, kp + 4, 16) != 0) {
        dmj_uuid_format(kp + 28, ub);
        problem(c, "by_saved_query: %s: entry for a saved query the job does not have", ub);
    }
}

static void check_by_status(struct check *c, const MDB_val *k, const MDB_val *v)
{
    char hb[100], ub[DMJ_UUID_TEXT_LEN + 1];
    struct dmj_job j;
    if (k->mv_size != KEY_STATUS_LEN || v->mv_size != 0) {
        problem(c, "by_status: key %s: wrong length", hex(k, hb, sizeof hb));
        return;
    }
    const uint8_t *kp = k->mv_data;
    if (indexed_job(c, "by_status", kp, kp + 5, &j) != 0)
        return;
    if ((unsigned)j.status != kp[4]) {
        dmj_uuid_format(kp + 13, ub);
        problem(c, "by_status: %s: entry for status %u, the job's is %u", ub, kp[4],
                (unsigned)j.status);
    }
}

static void check_team(struct check *c, const MDB_val *k, const MDB_val *v)
{
    char hb[100];
    struct dmj_team t;
    uint8_t ot[20];
    MDB_val x;
    if (k->mv_size != 4 || dmj_codec_decode_team(v->mv_data, v->mv_size, &t) != 0 ||
        t.id != dmj__get32(k->mv_data)) {
        problem(c, "teams: key %s: bad entry", hex(k, hb, sizeof hb));
        return;
    }
    char name[32];
    snprintf(name, sizeof name, "team %" PRId32, t.id);
    check_text(c, "teams", name, t.name, "name");
    memcpy(ot, t.organization_id, 16);
    dmj__put32(ot + 16, t.id);
    if (lookup(c, DB_ORG_TEAMS, ot, sizeof ot, &x) != 0)
        problem(c, "org_teams: team %" PRId32 ": missing", t.id);
}

static void check_org_team(struct check *c, const MDB_val *k, const MDB_val *v)
{
    char hb[100];
    uint8_t key[4];
    MDB_val x;
    struct dmj_team t;
    if (k->mv_size != 20) {
        problem(c, "org_teams: key %s: wrong length", hex(k, hb, sizeof hb));
        return;
    }
    memcpy(key, (const uint8_t *)k->mv_data + 16, 4);
    if (lookup(c, DB_TEAMS, key, 4, &x) != 0 ||
        dmj_codec_decode_team(x.mv_data, x.mv_size, &t) != 0 ||
        memcmp(t.organization_id, k->mv_data, 16) != 0)
        problem(c, "org_teams: key %s: no such team in that organization", hex(k, hb, sizeof hb));
}

static void check_org(struct check *c, const MDB_val *k, const MDB_val *v)
{
    char hb[100];
    struct dmj_org o;
    if (k->mv_size != 16 || dmj_codec_decode_org(v->mv_data, v->mv_size, &o) != 0 ||
        memcmp(o.id, k->mv_data, 16) != 0) {
        problem(c, "orgs: key %s: bad entry", hex(k, hb, sizeof hb));
        return;
    }
    char ub[DMJ_UUID_TEXT_LEN + 1];
    dmj_uuid_format(o.id, ub);
    check_text(c, "orgs", ub, o.name, "name");
}

static void check_user(struct check *c, const MDB_val *k, const MDB_val *v)
{
    char hb[100];
    struct dmj_user u;
    if (k->mv_size != 8 || dmj_codec_decode_user(v->mv_data, v->mv_size, &u) != 0 ||
        u.id != dmj__get64(k->mv_data))
        problem(c, "users: key %s: bad entry", hex(k, hb, sizeof hb));
}

static void check_membership(struct check *c, const MDB_val *k, const MDB_val *v)
{
    char hb[100];
    if (k->mv_size != 24 || v->mv_size != 4)
        problem(c, "memberships: key %s: bad entry", hex(k, hb, sizeof hb));
}

static void check_key(struct check *c, const MDB_val *k, const MDB_val *v)
{
    char hb[100];
    if (dmj_codec_decode_key(v->mv_data, v->mv_size, c->key) != 0 ||
        strlen(c->key->secure_value) != k->mv_size ||
        memcmp(c->key->secure_value, k->mv_data, k->mv_size) != 0) {
        problem(c, "keys: key %s: bad entry", hex(k, hb, sizeof hb));
        return;
    }
    /* named by its hash: the key's id may be the invalid text */
    check_text(c, "keys", c->key->secure_value, c->key->id, "id");
    for (unsigned i = 0; i < c->key->n_scopes; i++)
        check_text(c, "keys", c->key->secure_value, c->key->scopes[i], "scopes");
}

/* A team's counter (last, pruned) from meta, when it has a well-formed one of its own. */
static bool own_counter(const MDB_val *v, uint64_t *last, uint64_t *pruned)
{
    if (v->mv_size != META_TEAM_VAL_LEN)
        return false;
    *last = dmj__get_u64(v->mv_data);
    *pruned = dmj__get_u64((const uint8_t *)v->mv_data + 8);
    return *pruned <= *last;
}

/* Starts the checks of a team's entries: its counter, its own or format 1's. Seqs past format
 * 1's last are counted by the team's own counter alone, so they must run without a gap from
 * past the pruned one to the last. */
static void begin_team(struct check *c, int32_t team)
{
    uint8_t key[KEY_META_TEAM_LEN];
    MDB_val v;
    memcpy(key, META_CHANGES_TEAM, META_CHANGES_TEAM_LEN);
    dmj__put32(key + META_CHANGES_TEAM_LEN, team);
    c->in_team = true;
    c->team = team;
    c->team_own = lookup(c, DB_META, key, sizeof key, &v) == 0;
    /* a damaged counter (its own pass names it) is not held against the entries */
    c->team_known = c->team_own ? own_counter(&v, &c->team_last, &c->team_pruned)
                                : c->changes_ok;
    if (!c->team_own) {
        c->team_last = c->changes_last;
        c->team_pruned = c->changes_pruned;
    }
    uint64_t floor = c->changes_ok ? c->changes_last : 0;
    c->expect = (c->team_pruned > floor ? c->team_pruned : floor) + 1;
}

static void end_team(struct check *c)
{
    if (c->in_team && c->team_known && c->team_own && c->expect <= c->team_last)
        problem(c, "changes: team %" PRId32 ": seqs %" PRIu64 " to %" PRIu64 " missing", c->team,
                c->expect, c->team_last);
    c->in_team = false;
}

/* A change-log entry: well formed, its seq given out by its team's counter, not pruned, and
 * the next of the team's own counting. */
static void check_change(struct check *c, const MDB_val *k, const MDB_val *v)
{
    char hb[100];
    struct dmj_change ch;
    if (dmj__change_decode(k, v, &ch) != 0) {
        problem(c, "changes: key %s: bad entry", hex(k, hb, sizeof hb));
        return;
    }
    if (!c->in_team || c->team != ch.team_id) {
        end_team(c);
        begin_team(c, ch.team_id);
    }
    if (!c->team_known)
        return;
    if (ch.seq > c->team_last) {
        problem(c, "changes: team %" PRId32 ": seq %" PRIu64 " beyond the counter (%" PRIu64 ")",
                ch.team_id, ch.seq, c->team_last);
    } else if (ch.seq <= c->team_pruned) {
        problem(c, "changes: team %" PRId32 ": seq %" PRIu64 " kept below the pruned seq (%" PRIu64
                ")",
                ch.team_id, ch.seq, c->team_pruned);
    } else if (ch.seq >= c->expect) {
        if (ch.seq > c->expect)
            problem(c, "changes: team %" PRId32 ": seqs %" PRIu64 " to %" PRIu64 " missing",
                    ch.team_id, c->expect, ch.seq - 1);
        c->expect = ch.seq + 1;
    }
}

/* A team's counter in meta: well formed, and, for a team without entries, with nothing
 * missing (the teams with entries were checked with them). */
static void check_team_counter(struct check *c, const MDB_val *k, const MDB_val *v)
{
    char hb[100];
    uint64_t last, pruned;
    if (k->mv_size < META_CHANGES_TEAM_LEN ||
        memcmp(k->mv_data, META_CHANGES_TEAM, META_CHANGES_TEAM_LEN) != 0)
        return;
    if (k->mv_size != KEY_META_TEAM_LEN) {
        problem(c, "meta: key %s: bad team counter key", hex(k, hb, sizeof hb));
        return;
    }
    int32_t team = dmj__get32((const uint8_t *)k->mv_data + META_CHANGES_TEAM_LEN);
    if (!own_counter(v, &last, &pruned)) {
        problem(c, "meta: team %" PRId32 ": bad change-log counter", team);
        return;
    }
    if (c->log == NULL)
        return;
    uint8_t prefix[4];
    MDB_val lk = {sizeof prefix, prefix}, lv;
    dmj__put32(prefix, team);
    int rc = mdb_cursor_get(c->log, &lk, &lv, MDB_SET_RANGE);
    if (rc == 0 && lk.mv_size >= 4 && memcmp(lk.mv_data, prefix, 4) == 0)
        return;
    begin_team(c, team);
    end_team(c);
}

/* The store-wide counters of format 1: 8 bytes each when present, pruned not past the last
 * seq. The entries are not held against a damaged counter (the writer resumes past them). */
static void check_change_counters(struct check *c)
{
    const char *names[2] = {META_CHANGES_SEQ, META_CHANGES_PRUNED};
    uint64_t vals[2] = {0, 0};
    c->changes_ok = true;
    for (int i = 0; i < 2; i++) {
        MDB_val v;
        int rc = lookup(c, DB_META, names[i], strlen(names[i]), &v);
        if (rc == 0 && v.mv_size == 8) {
            vals[i] = dmj__get_u64(v.mv_data);
        } else if (rc == 0) {
            problem(c, "meta: %s: not 8 bytes", names[i]);
            c->changes_ok = false;
        }
    }
    if (vals[1] > vals[0]) {
        problem(c, "meta: %s (%" PRIu64 ") past %s (%" PRIu64 ")", META_CHANGES_PRUNED, vals[1],
                META_CHANGES_SEQ, vals[0]);
        c->changes_ok = false;
    }
    c->changes_last = vals[0];
    c->changes_pruned = vals[1];
}

/* The store id, when there is one, is STORE_ID_LEN bytes (a store from before ids has none). */
static void check_store_id(struct check *c)
{
    MDB_val v;
    if (lookup(c, DB_META, META_STORE_ID, sizeof META_STORE_ID - 1, &v) == 0 &&
        v.mv_size != STORE_ID_LEN)
        problem(c, "meta: %s: %zu bytes, not %d", META_STORE_ID, v.mv_size, STORE_ID_LEN);
}

int dmj_store_verify(struct dmj_store *s, void *report)
{
    static const struct {
        int db;
        void (*fn)(struct check *, const MDB_val *, const MDB_val *);
    } passes[] = {
        {DB_JOBS, check_job},
        {DB_JOB_IDS, check_job_id},
        {DB_BY_SQ, check_by_sq},
        {DB_BY_STATUS, check_by_status},
        {DB_TEAMS, check_team},
        {DB_ORG_TEAMS, check_org_team},
        {DB_ORGS, check_org},
        {DB_USERS, check_user},
        {DB_MEMBERSHIPS, check_membership},
        {DB_KEYS, check_key},
        {DB_CHANGES, check_change},
    };
    struct check c = {.s = s, .out = report};
    c.key = malloc(sizeof *c.key);
    if (!c.key)
        return -ENOMEM;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &c.txn);
    if (rc) {
        free(c.key);
        return dmj__store_err(rc);
    }
    check_change_counters(&c);
    check_store_id(&c);
    for (size_t i = 0; i < sizeof passes / sizeof passes[0]; i++) {
        /* a store from before the change log, opened read-only, has none to check */
        if (passes[i].db == DB_CHANGES && !atomic_load(&s->has_changes))
            continue;
        rc = each(&c, passes[i].db, passes[i].fn);
        if (rc)
            break;
    }
    end_team(&c);
    if (rc == 0 && atomic_load(&s->has_changes))
        rc = dmj__store_err(mdb_cursor_open(c.txn, s->dbi[DB_CHANGES], &c.log));
    if (rc == 0)
        rc = each(&c, DB_META, check_team_counter);
    if (rc == 0)
        rc = dmj__counts_check(c.txn, s, count_problem, &c);
    if (c.log)
        mdb_cursor_close(c.log);
    mdb_txn_abort(c.txn);
    free(c.key);
    if (rc)
        return rc;
    return c.problems ? DMJ_EBADRECORD : 0;
}

/* The walk of dmj_store_each_job; `bad` (may be NULL: stop) takes records that do not decode. */
static int each_job(struct dmj_store *s, int32_t team_id,
                    int (*fn)(void *ctx, const struct dmj_job *job),
                    int (*bad)(void *ctx, const uint8_t *id, int err), void *ctx)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    uint8_t prefix[4];
    struct dmj_job j;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return dmj__store_err(rc);
    rc = mdb_cursor_open(txn, s->dbi[DB_JOBS], &cur);
    if (rc) {
        mdb_txn_abort(txn);
        return dmj__store_err(rc);
    }
    dmj__put32(prefix, team_id);
    if (team_id >= 0) {
        k = (MDB_val){sizeof prefix, prefix};
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    /* rc is an LMDB code until the loop ends, then a dmj code */
    while (rc == 0) {
        if (team_id >= 0 && (k.mv_size < 4 || memcmp(k.mv_data, prefix, 4) != 0)) {
            rc = MDB_NOTFOUND;
            break;
        }
        int err = dmj_codec_decode_job(v.mv_data, v.mv_size, &j);
        if (!err)
            err = fn(ctx, &j);
        else if (bad)
            err = bad(ctx, k.mv_size == KEY_JOB_LEN ? (const uint8_t *)k.mv_data + 12 : NULL, err);
        if (err) {
            mdb_cursor_close(cur);
            mdb_txn_abort(txn);
            return err;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc == MDB_NOTFOUND ? 0 : dmj__store_err(rc);
}

int dmj_store_each_job(struct dmj_store *s, int32_t team_id,
                       int (*fn)(void *ctx, const struct dmj_job *job), void *ctx)
{
    return each_job(s, team_id, fn, NULL, ctx);
}

int dmj_store_each_job_tolerant(struct dmj_store *s, int32_t team_id,
                                int (*fn)(void *ctx, const struct dmj_job *job),
                                int (*bad)(void *ctx, const uint8_t *id, int err), void *ctx)
{
    return each_job(s, team_id, fn, bad, ctx);
}

/* Flushes a directory's entries (the name just linked) to disk. */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int dmj_store_backup(struct dmj_store *s, const char *dest)
{
    char path[4096], part[4096];
    struct stat st;
    if (mkdir(dest, DMJ__STORE_DIR_MODE) != 0 && errno != EEXIST)
        return -errno;
    if (snprintf(path, sizeof path, "%s/data.mdb", dest) >= (int)sizeof path ||
        snprintf(part, sizeof part, "%s/data.mdb.partial-XXXXXX", dest) >= (int)sizeof part)
        return -ENAMETOOLONG;
    if (stat(path, &st) == 0)
        return -EEXIST; /* never overwrite a store */
    /* The copy is written under a name of its own and linked to data.mdb only once it is
     * whole and on disk: a backup killed half-way (or out of space) must not leave a
     * data.mdb that passes for a store, nor block the next attempt. */
    int fd = mkostemp(part, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = dmj__store_err(mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT));
    /* mkostemp's 0600 less the umask: exactly 0600, so that the id below can open it */
    if (rc == 0 && fchmod(fd, DMJ__STORE_FILE_MODE) != 0)
        rc = -errno;
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    /* the copy's own id, before it can pass for a store (LMDB syncs the commit) */
    MDB_envinfo info;
    if (rc == 0)
        rc = dmj__store_err(mdb_env_info(s->env, &info));
    if (rc == 0)
        rc = dmj__store_new_id_at(part, info.me_mapsize);
    /* link, unlike rename, fails when a concurrent backup put its data.mdb there first */
    if (rc == 0 && link(part, path) != 0)
        rc = -errno;
    unlink(part);
    if (rc == 0)
        rc = sync_dir(dest);
    return rc;
}

/* dmj sync: keeps the store a replica of PostHog's PostgreSQL (jobs, deletions, identities). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "dmj/buf.h"
#include "dmj/codec.h"
#include "dmj/error.h"
#include "dmj/import.h"
#include "dmj/store.h"
#include "dmj/time.h"
#include "dmj/uuid.h"

#include "dmj_tool.h"

static const char usage_text[] =
    "usage: dmj sync [--postgres-file F | --postgres CONNINFO] [--db DIR] [--interval S]\n"
    "                [--once] [--identities] [--teams LIST] [--teams-mod N:R] [--lag S]\n"
    "                [--full-every K] [--batch N]\n";

/* A PostgreSQL failure (connection, query): the message is in sync->err. Retried without
 * --once; a store failure is not (it would not get better by waiting). */
#define SYNC_EPG (-3000)

#define WATERMARK_NAME "sync.watermark"
#define IDENTITIES_NAME "sync.identities"
/* Fed to the identity digest first: a store whose digest an older dmj sync wrote (which kept
 * no list of memberships, teams or organizations) gets one full identity pass. */
#define IDENTITIES_FORMAT "dmj sync identities 2\n"

/* The identities sync owns: what its last identity pass wrote, one sorted list of fixed-size
 * entries per table in meta. A pass deletes the owned entries PostgreSQL no longer has, and
 * only those: identities that `dmj import` or `dmj keys create` put in the store and that
 * PostgreSQL never had are not sync's to delete. Entries: a key's hash, a user id (int64,
 * native order), a membership (user id, then the organization's 16 bytes), a team id (int32,
 * native order), an organization id. sync.keys and sync.users kept this format before. */
enum owned_kind { OWN_KEY, OWN_MEMBERSHIP, OWN_USER, OWN_TEAM, OWN_ORG, OWN_COUNT };

static const struct owned_list {
    const char *name;
    size_t size;
} owned_lists[OWN_COUNT] = {
    [OWN_KEY] = {"sync.keys", DMJ_KEY_HASH_LEN},
    [OWN_MEMBERSHIP] = {"sync.memberships", 8 + 16},
    [OWN_USER] = {"sync.users", 8},
    [OWN_TEAM] = {"sync.teams", 4},
    [OWN_ORG] = {"sync.orgs", 16},
};

/* The one thing a signal handler may touch: set on SIGTERM/SIGINT, read between
 * transactions. A process-wide flag because signals are process-wide. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

struct ids {
    uint8_t (*v)[16];
    size_t n, cap;
};

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

struct sync_opts {
    const char *conninfo;
    const char *db;
    double interval;   /* seconds between cycles */
    bool once;         /* one cycle, then exit (status 1 on any error) */
    bool identities;   /* also organizations, teams, users, memberships, keys */
    char *teams_array; /* "{1,2}" for `team_id = ANY($n::int[])`, or NULL for all teams */
    int32_t mod_n;     /* --teams-mod N:R: only teams whose id % N == R (0: no such filter) */
    int32_t mod_r;
    int64_t lag_us;    /* re-read window before the watermark */
    unsigned full_every;
    unsigned batch;
};

/* A position in (updated_at, id) order. */
struct mark {
    bool set;
    int64_t us;
    uint8_t id[16];
};

struct sync {
    struct sync_opts o;
    struct dmj_store *store;
    struct dmj_read *read;
    bool read_active;
    PGconn *pg;
    char err[512];

    struct mark stored;  /* the watermark committed in the store */
    struct mark pending; /* the watermark the open batch will commit */
    bool incremental;    /* rows move the watermark (not during the full comparison) */

    const struct ids *known; /* during the full comparison: the store's ids, sorted */
    struct dmj_write *w;     /* the open write transaction of the batch, NULL if none */
    uint64_t upserted, deleted, unchanged, skipped, identities, revoked;
    struct dmj_buf seen[OWN_COUNT]; /* owned_lists' entries written by this identity pass */
    struct dmj_buf enc_new, enc_old;
    int store_rc;           /* the store error that stopped a parse, for the caller */
    bool stored_identities; /* the store had an identity digest before this pass */
};

/* ---- small helpers --------------------------------------------------------------------- */

static int cmp_mark(const struct mark *a, int64_t us, const uint8_t id[16])
{
    if (a->us != us)
        return a->us < us ? -1 : 1;
    return memcmp(a->id, id, 16);
}

/* The first line of a libpq message, into sync->err, after `what`. */
static int pg_fail(struct sync *s, const char *what, const char *msg)
{
    size_t n = strcspn(msg, "\n");
    while (n > 0 && (msg[n - 1] == ' ' || msg[n - 1] == '\r'))
        n--;
    snprintf(s->err, sizeof s->err, "PostgreSQL: %s%s%.*s", what, n ? ": " : "", (int)n, msg);
    return SYNC_EPG;
}

/* Runs a statement; `out` (may be NULL) receives the result when it succeeded. */
static int pg_exec(struct sync *s, const char *sql, int nparams, const char *const *params,
                   int binary, PGresult **out)
{
    PGresult *r = PQexecParams(s->pg, sql, nparams, NULL, params, NULL, NULL, binary);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int rc = pg_fail(s, "query failed", r ? PQresultErrorMessage(r) : PQerrorMessage(s->pg));
        PQclear(r);
        return rc;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return 0;
}

static int read_start(struct sync *s)
{
    if (s->read_active)
        return 0;
    int rc = dmj_read_begin(s->read);
    if (rc == 0)
        s->read_active = true;
    return rc;
}

static void read_stop(struct sync *s)
{
    if (s->read_active) {
        dmj_read_end(s->read);
        s->read_active = false;
    }
}

static int write_start(struct sync *s)
{
    return s->w ? 0 : dmj_write_begin(s->store, &s->w);
}

static void write_abort(struct sync *s)
{
    if (s->w) {
        dmj_write_abort(s->w);
        s->w = NULL;
    }
}

/* Commits the open batch with the watermark it reached, if anything changed; otherwise
 * drops it, so that an unchanged cycle makes no commit (commits wake dmjd's waiters). */
static int batch_end(struct sync *s)
{
    int rc = 0;
    read_stop(s);
    bool moved = s->pending.set &&
                 (!s->stored.set || cmp_mark(&s->stored, s->pending.us, s->pending.id) < 0);
    if (moved) {
        rc = write_start(s);
        if (rc == 0) {
            char text[64];
            char uuid[DMJ_UUID_TEXT_LEN + 1];
            dmj_uuid_format(s->pending.id, uuid);
            int n = snprintf(text, sizeof text, "%lld %s", (long long)s->pending.us, uuid);
            rc = dmj_write_meta(s->w, WATERMARK_NAME, text, (size_t)n);
        }
    }
    if (rc == 0 && s->w) {
        rc = dmj_write_commit(s->w, NULL);
        s->w = NULL;
        if (rc == 0 && moved)
            s->stored = s->pending;
    }
    write_abort(s);
    if (rc != 0)
        s->pending = s->stored;
    return rc;
}

static int load_watermark(struct sync *s)
{
    char text[DMJ_META_NAME_MAX + 64];
    size_t len;
    int rc = read_start(s);
    if (rc == 0)
        rc = dmj_read_meta(s->read, WATERMARK_NAME, text, sizeof text - 1, &len);
    read_stop(s);
    s->stored.set = false;
    if (rc == DMJ_ENOTFOUND) {
        s->pending = s->stored;
        return 0;
    }
    if (rc != 0)
        return rc;
    text[len] = '\0';
    char *sp = strchr(text, ' ');
    int64_t us;
    if (!sp)
        return DMJ_EBADRECORD;
    *sp = '\0';
    if (!dmj_tool_parse_int(text, INT64_MIN, INT64_MAX, &us) ||
        dmj_uuid_parse(sp + 1, strlen(sp + 1), s->stored.id) != 0)
        return DMJ_EBADRECORD;
    s->stored.us = us;
    s->stored.set = true;
    s->pending = s->stored;
    return 0;
}

/* ---- jobs -------------------------------------------------------------------------- */

/* Whether `job` equals the stored one: both encoded the way the store keeps them. */
static int job_unchanged(struct sync *s, const struct dmj_job *job, bool *same)
{
    struct dmj_job old;
    int rc = read_start(s);
    if (rc != 0)
        return rc;
    rc = dmj_read_job(s->read, job->id, &old);
    if (rc == DMJ_ENOTFOUND) {
        *same = false;
        return 0;
    }
    if (rc != 0)
        return rc;
    dmj_buf_reset(&s->enc_new);
    dmj_buf_reset(&s->enc_old);
    rc = dmj_codec_encode_job(job, &s->enc_new);
    if (rc == 0)
        rc = dmj_codec_encode_job(&old, &s->enc_old);
    if (rc != 0)
        return rc;
    *same = s->enc_new.len == s->enc_old.len &&
            memcmp(s->enc_new.data, s->enc_old.data, s->enc_new.len) == 0;
    return 0;
}

static int on_job(struct sync *s, const struct dmj_job *job)
{
    bool moves = s->incremental && job->has_updated_at;
    bool same;
    int rc;
    if (dmj_job_hidden(job) &&
        ((moves && s->stored.set && cmp_mark(&s->stored, job->updated_at, job->id) >= 0) ||
         (s->known && bsearch(job->id, s->known->v, s->known->n, 16, cmp_id)))) {
        /* A hidden (duckgres) job reads as absent, so it would look changed on every re-read
         * of the overlap window or of the NULL updated_at rows: written once when it passes
         * the watermark or first comes, not again (it is never served). */
        same = true;
    } else {
        rc = job_unchanged(s, job, &same);
        if (rc != 0)
            return rc;
    }
    if (same) {
        s->unchanged++;
    } else {
        rc = write_start(s);
        if (rc == 0)
            rc = dmj_write_job(s->w, job);
        if (rc != 0)
            return rc;
        s->upserted++;
    }
    if (moves && (!s->pending.set || cmp_mark(&s->pending, job->updated_at, job->id) < 0)) {
        s->pending.set = true;
        s->pending.us = job->updated_at;
        memcpy(s->pending.id, job->id, 16);
    }
    return 0;
}

/* Adds an identity record to the list of what this pass wrote (owned_lists' entry format). */
static int note_owned(struct sync *s, const struct dmj_import_record *rec)
{
    uint8_t e[DMJ_KEY_HASH_LEN];
    enum owned_kind k;
    switch (rec->kind) {
    case DMJ_IMPORT_KEY:
        k = OWN_KEY;
        memcpy(e, rec->u.key.secure_value, DMJ_KEY_HASH_LEN);
        break;
    case DMJ_IMPORT_MEMBERSHIP:
        k = OWN_MEMBERSHIP;
        memcpy(e, &rec->u.membership.user_id, 8);
        memcpy(e + 8, rec->u.membership.organization_id, 16);
        break;
    case DMJ_IMPORT_USER:
        k = OWN_USER;
        memcpy(e, &rec->u.user.id, 8);
        break;
    case DMJ_IMPORT_TEAM:
        k = OWN_TEAM;
        memcpy(e, &rec->u.team.id, 4);
        break;
    case DMJ_IMPORT_ORG:
        k = OWN_ORG;
        memcpy(e, rec->u.org.id, 16);
        break;
    default:
        return 0;
    }
    return dmj_buf_add(&s->seen[k], e, owned_lists[k].size);
}

static int on_record(void *ctx, const struct dmj_import_record *rec)
{
    struct sync *s = ctx;
    int rc;
    if (rec->kind == DMJ_IMPORT_JOB) {
        rc = on_job(s, &rec->u.job);
    } else {
        rc = write_start(s);
        if (rc == 0)
            rc = dmj_import_write(s->w, rec);
        if (rc == 0) {
            s->identities++;
            rc = note_owned(s, rec);
        }
    }
    if (rc != 0)
        s->store_rc = rc;
    return rc;
}

static void on_skipped(void *ctx, const struct dmj_import_error *e)
{
    struct sync *s = ctx;
    s->skipped++;
    fprintf(stderr, "dmj sync: row skipped: %s: %s\n", e->field, e->reason);
}

/* Feeds column 0 of every row of `r` (one JSON object each) through the import parser,
 * which turns PostgreSQL's row_to_json into records exactly as `dmj import` does. */
static int feed_rows(struct sync *s, PGresult *r)
{
    struct dmj_import_options opts = {
        .skip_invalid = true, .record = on_record, .skipped = on_skipped, .ctx = s};
    struct dmj_import *imp;
    int rc = dmj_import_new(&opts, &imp);
    if (rc != 0)
        return rc;
    s->store_rc = 0;
    int rows = PQntuples(r);
    for (int i = 0; rc == 0 && i < rows; i++) {
        rc = dmj_import_feed(imp, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
        if (rc == 0)
            rc = dmj_import_feed(imp, "\n", 1);
    }
    if (rc == 0)
        rc = dmj_import_finish(imp);
    if (rc == DMJ_EINVAL) {
        const struct dmj_import_error *e = dmj_import_last_error(imp);
        snprintf(s->err, sizeof s->err, "a row does not parse: %s: %s", e->field, e->reason);
    } else if (rc != 0 && s->store_rc != 0) {
        rc = s->store_rc;
    }
    dmj_import_free(imp);
    return rc;
}

/* Declares a cursor over `query` and feeds it batch by batch, each batch ending with its
 * store commit (with the watermark it reached), so that a kill loses at most one batch. */
static int stream_query(struct sync *s, const char *query, int nparams,
                        const char *const *params)
{
    char decl[2048], fetch[64];
    snprintf(decl, sizeof decl, "DECLARE dmj_sync NO SCROLL CURSOR FOR %s", query);
    snprintf(fetch, sizeof fetch, "FETCH %u FROM dmj_sync", s->o.batch);
    int rc = pg_exec(s, decl, nparams, params, 0, NULL);
    while (rc == 0) {
        PGresult *r;
        rc = pg_exec(s, fetch, 0, NULL, 0, &r);
        if (rc != 0)
            break;
        int rows = PQntuples(r);
        rc = rows ? feed_rows(s, r) : 0;
        PQclear(r);
        if (rc == 0)
            rc = batch_end(s);
        if (rc != 0 || rows < (int)s->o.batch || stop_requested)
            break;
    }
    if (rc == 0)
        rc = pg_exec(s, "CLOSE dmj_sync", 0, NULL, 0, NULL);
    return rc;
}

/* The rows a store can hold: PostHog's team_id may be NULL (SET_NULL when a team goes), and
 * such a row has no team to be served in. Every query and count leaves them out, so that they
 * neither fail each cycle nor make the counts differ for ever. */
#define TEAM_SET "j.team_id IS NOT NULL"

/* The team filter for a query whose parameter number `n` is the team array (--teams),
 * and --teams-mod's condition, in integers checked when parsed. */
#define TEAM_CLAUSE_MAX 128
static const char *team_clause(const struct sync *s, int n, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    if (s->o.teams_array)
        len = (size_t)snprintf(buf, cap, " AND j.team_id = ANY($%d::int[])", n);
    if (s->o.mod_n > 0 && len < cap)
        snprintf(buf + len, cap - len, " AND j.team_id %% %d = %d", (int)s->o.mod_n,
                 (int)s->o.mod_r);
    return buf;
}

/* Rows at or past watermark - lag, in (updated_at, id) order. */
static int sync_incremental(struct sync *s)
{
    char start[DMJ_TIME_TEXT_MAX], tc[64], q[1024];
    if (s->stored.set) {
        dmj_time_format_drf(s->stored.us - s->o.lag_us, start);
    } else {
        snprintf(start, sizeof start, "-infinity");
    }
    const char *params[2] = {start, s->o.teams_array};
    snprintf(q, sizeof q,
             "SELECT row_to_json(j)::text FROM posthog_datamodelingjob j"
             " WHERE j.updated_at >= $1::timestamptz AND " TEAM_SET "%s"
             " ORDER BY j.updated_at, j.id",
             team_clause(s, 2, tc, sizeof tc));
    s->incremental = true;
    int rc = stream_query(s, q, s->o.teams_array ? 2 : 1, params);
    s->incremental = false;
    return rc;
}

/* ---- the full comparison: deletions, NULL updated_at, rows the watermark passed by ----- */

static int ids_add(struct ids *a, const uint8_t id[16])
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4096;
        uint8_t(*p)[16] = realloc(a->v, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        a->v = p;
        a->cap = cap;
    }
    memcpy(a->v[a->n++], id, 16);
    return 0;
}

static int each_store_id(void *ctx, const struct dmj_job *job)
{
    return ids_add(ctx, job->id);
}

/* Every id of the (filtered) table (the order does not matter: the caller sorts). */
static int pg_ids(struct sync *s, struct ids *out)
{
    char tc[TEAM_CLAUSE_MAX], q[512];
    snprintf(q, sizeof q,
             "DECLARE dmj_ids NO SCROLL CURSOR FOR SELECT j.id::text FROM posthog_datamodelingjob j"
             " WHERE " TEAM_SET "%s",
             team_clause(s, 1, tc, sizeof tc));
    const char *params[1] = {s->o.teams_array};
    int rc = pg_exec(s, q, s->o.teams_array ? 1 : 0, params, 0, NULL);
    while (rc == 0) {
        PGresult *r;
        rc = pg_exec(s, "FETCH 20000 FROM dmj_ids", 0, NULL, 0, &r);
        if (rc != 0)
            break;
        int rows = PQntuples(r);
        for (int i = 0; rc == 0 && i < rows; i++) {
            uint8_t id[16];
            if (dmj_uuid_parse(PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0), id) != 0)
                rc = pg_fail(s, "id", "not a uuid");
            else
                rc = ids_add(out, id);
        }
        PQclear(r);
        if (rows < 20000)
            break;
    }
    if (rc == 0)
        rc = pg_exec(s, "CLOSE dmj_ids", 0, NULL, 0, NULL);
    return rc;
}

/* Upserts the rows of `missing` (ids PostgreSQL has and the store lacks) in chunks. */
static int fetch_missing(struct sync *s, const struct ids *missing)
{
    char tc[TEAM_CLAUSE_MAX], q[512];
    snprintf(q, sizeof q,
             "SELECT row_to_json(j)::text FROM posthog_datamodelingjob j"
             " WHERE j.id = ANY($1::uuid[]) AND j.updated_at IS NOT NULL AND " TEAM_SET "%s",
             team_clause(s, 2, tc, sizeof tc));
    struct dmj_buf arr;
    dmj_buf_init(&arr, (size_t)1 << 30);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < missing->n; i += 1000) {
        size_t end = missing->n - i < 1000 ? missing->n : i + 1000;
        dmj_buf_reset(&arr);
        rc = dmj_buf_addc(&arr, '{');
        for (size_t k = i; rc == 0 && k < end; k++) {
            char uuid[DMJ_UUID_TEXT_LEN + 1];
            dmj_uuid_format(missing->v[k], uuid);
            rc = dmj_buf_printf(&arr, "%s%s", k > i ? "," : "", uuid);
        }
        if (rc == 0)
            rc = dmj_buf_addc(&arr, '}'); /* the buffer keeps a NUL after its bytes */
        if (rc != 0)
            break;
        const char *params[2] = {arr.data, s->o.teams_array};
        PGresult *r;
        rc = pg_exec(s, q, s->o.teams_array ? 2 : 1, params, 0, &r);
        if (rc == 0) {
            rc = feed_rows(s, r);
            PQclear(r);
        }
        if (rc == 0)
            rc = batch_end(s);
    }
    dmj_buf_dispose(&arr);
    return rc;
}

static int sync_full(struct sync *s)
{
    struct ids pg = {0}, st = {0}, missing = {0};
    int rc = pg_ids(s, &pg);
    if (rc == 0)
        rc = dmj_store_each_job(s->store, -1, each_store_id, &st);
    if (rc == 0) {
        qsort(pg.v, pg.n, 16, cmp_id);
        qsort(st.v, st.n, 16, cmp_id);
        size_t i = 0, k = 0;
        /* A merge of the two sorted lists: store-only ids go, table-only ids come. */
        while (rc == 0 && (i < pg.n || k < st.n)) {
            int c = i == pg.n ? 1 : k == st.n ? -1 : memcmp(pg.v[i], st.v[k], 16);
            if (c < 0) {
                rc = ids_add(&missing, pg.v[i++]);
            } else if (c > 0) {
                rc = write_start(s);
                if (rc == 0)
                    rc = dmj_write_delete_job(s->w, st.v[k++]);
                if (rc == DMJ_ENOTFOUND) /* deleted by another writer meanwhile */
                    rc = 0;
                else if (rc == 0)
                    s->deleted++;
                if (rc == 0 && s->deleted % 10000 == 0)
                    rc = batch_end(s);
            } else {
                i++;
                k++;
            }
        }
    }
    if (rc == 0)
        rc = batch_end(s);
    if (rc == 0 && missing.n)
        rc = fetch_missing(s, &missing);
    if (rc == 0) {
        char tc[TEAM_CLAUSE_MAX], q[512];
        snprintf(q, sizeof q,
                 "SELECT row_to_json(j)::text FROM posthog_datamodelingjob j"
                 " WHERE j.updated_at IS NULL AND " TEAM_SET "%s ORDER BY j.id",
                 team_clause(s, 1, tc, sizeof tc));
        const char *params[1] = {s->o.teams_array};
        s->known = &st;
        rc = stream_query(s, q, s->o.teams_array ? 1 : 0, params);
        s->known = NULL;
    }
    free(pg.v);
    free(st.v);
    free(missing.v);
    return rc;
}

/* Whether the table and the store hold as many jobs (in this snapshot). */
static int counts_differ(struct sync *s, bool *differ)
{
    char tc[TEAM_CLAUSE_MAX], q[256];
    snprintf(q, sizeof q, "SELECT count(*) FROM posthog_datamodelingjob j WHERE " TEAM_SET "%s",
             team_clause(s, 1, tc, sizeof tc));
    const char *params[1] = {s->o.teams_array};
    PGresult *r;
    int rc = pg_exec(s, q, s->o.teams_array ? 1 : 0, params, 0, &r);
    if (rc != 0)
        return rc;
    long long pg_count = PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    uint64_t jobs;
    int64_t last;
    rc = dmj_store_counts(s->store, &jobs, &last);
    if (rc == 0)
        *differ = pg_count < 0 || (uint64_t)pg_count != jobs;
    return rc;
}

/* ---- identities ------------------------------------------------------------------- */

static const char *const identity_queries[] = {
    "SELECT json_build_object('kind', 'organization', 'id', o.id, 'name', o.name)::text"
    " FROM posthog_organization o ORDER BY o.id",
    "SELECT json_build_object('kind', 'team', 'id', t.id, 'project_id', t.project_id,"
    " 'organization_id', t.organization_id, 'name', t.name)::text"
    " FROM posthog_team t ORDER BY t.id",
    "SELECT json_build_object('kind', 'user', 'id', u.id, 'is_active', u.is_active,"
    " 'current_team_id', u.current_team_id,"
    " 'current_organization_id', u.current_organization_id)::text"
    " FROM posthog_user u ORDER BY u.id",
    "SELECT json_build_object('kind', 'membership', 'user_id', m.user_id,"
    " 'organization_id', m.organization_id, 'level', m.level)::text"
    " FROM posthog_organizationmembership m ORDER BY m.user_id, m.organization_id",
    /* Keys stay hashed: PostHog keeps "sha256$..." in secure_value; a legacy key without
     * one cannot be checked without its raw value, which is not copied. */
    "SELECT json_build_object('kind', 'personal_api_key', 'id', k.id, 'user_id', k.user_id,"
    " 'secure_value', k.secure_value, 'scopes', k.scopes, 'scoped_teams', k.scoped_teams,"
    " 'scoped_organizations', k.scoped_organizations)::text"
    " FROM posthog_personalapikey k WHERE k.secure_value IS NOT NULL ORDER BY k.id",
};
#define N_IDENTITY_QUERIES (sizeof identity_queries / sizeof identity_queries[0])

static int cmp_entry(const void *a, const void *b, void *size)
{
    return memcmp(a, b, *(const size_t *)size);
}

/* Whether the sorted list `v` of `n` entries of `size` bytes holds `e`. */
static bool holds(const uint8_t *v, size_t n, size_t size, const uint8_t *e)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(v + mid * size, e, size);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Deletes one owned identity; one already gone is not an error (nor counted). */
static int delete_owned(struct sync *s, enum owned_kind k, const uint8_t *e)
{
    char hash[DMJ_KEY_HASH_LEN + 1];
    int64_t user;
    int32_t team;
    int rc;
    switch (k) {
    case OWN_KEY:
        memcpy(hash, e, DMJ_KEY_HASH_LEN);
        hash[DMJ_KEY_HASH_LEN] = '\0';
        rc = dmj_write_delete_key(s->w, hash);
        break;
    case OWN_MEMBERSHIP:
        memcpy(&user, e, 8);
        rc = dmj_write_delete_membership(s->w, user, e + 8);
        break;
    case OWN_USER:
        memcpy(&user, e, 8);
        rc = dmj_write_delete_user(s->w, user);
        break;
    case OWN_TEAM:
        memcpy(&team, e, 4);
        rc = dmj_write_delete_team(s->w, team);
        break;
    default:
        rc = dmj_write_delete_org(s->w, e);
        break;
    }
    if (rc == 0)
        s->revoked++;
    return rc == DMJ_ENOTFOUND ? 0 : rc;
}

/* The owned list `k` as the store keeps it, into `out` (empty when absent); `*absent` says
 * whether it was. */
static int read_owned(struct sync *s, enum owned_kind k, struct dmj_buf *out, bool *absent)
{
    size_t cap = 4096, len = 0;
    int rc = read_start(s);
    while (rc == 0) {
        dmj_buf_reset(out);
        rc = dmj_buf_reserve(out, cap);
        if (rc == 0)
            rc = dmj_read_meta(s->read, owned_lists[k].name, out->data, cap, &len);
        if (rc != DMJ_ETOOBIG)
            break;
        cap *= 2;
        rc = 0;
    }
    read_stop(s);
    *absent = rc == DMJ_ENOTFOUND;
    if (*absent) {
        len = 0;
        rc = 0;
    }
    if (rc == 0)
        out->len = len;
    return rc;
}

/* Deletes the entries of the owned list `k` that this pass did not write (PostgreSQL no
 * longer has them), and stores this pass's list in its place. Inside the identity write
 * transaction, after the pass's upserts. */
static int revoke_gone(struct sync *s, enum owned_kind k, struct dmj_buf *old)
{
    struct dmj_buf *now = &s->seen[k];
    size_t size = owned_lists[k].size, n_now = now->len / size;
    bool absent;
    if (n_now)
        qsort_r(now->data, n_now, size, cmp_entry, &size);
    int rc = read_owned(s, k, old, &absent);
    if (rc == 0 && absent && k == OWN_MEMBERSHIP && s->stored_identities)
        fprintf(stderr, "dmj sync: warning: an older dmj sync kept this store's identities; it "
                        "did not delete memberships, teams or organizations: any that PostgreSQL "
                        "dropped before now stay (sync into a new store to drop them)\n");
    const uint8_t *o = (const uint8_t *)old->data;
    for (size_t i = 0; rc == 0 && i + size <= old->len; i += size) {
        if (!holds((const uint8_t *)now->data, n_now, size, o + i))
            rc = delete_owned(s, k, o + i);
    }
    if (rc == 0)
        rc = dmj_write_meta(s->w, owned_lists[k].name, n_now ? now->data : "", n_now * size);
    return rc;
}

/* Reads the five tables; when their digest differs from the one stored with the last
 * identity write, upserts them all and deletes the owned identities they no longer hold, in
 * one transaction with the new digest. A row that does not parse counts as absent (its
 * identity is deleted if sync wrote it before: access fails closed) and is reported. */
static int sync_identities(struct sync *s)
{
    PGresult *res[N_IDENTITY_QUERIES] = {0};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    int rc = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(ctx, IDENTITIES_FORMAT, sizeof IDENTITIES_FORMAT - 1))
        rc = -ENOMEM;
    for (size_t q = 0; rc == 0 && q < N_IDENTITY_QUERIES; q++) {
        rc = pg_exec(s, identity_queries[q], 0, NULL, 0, &res[q]);
        for (int i = 0; rc == 0 && i < PQntuples(res[q]); i++) {
            if (!EVP_DigestUpdate(ctx, PQgetvalue(res[q], i, 0),
                                  (size_t)PQgetlength(res[q], i, 0) + 1))
                rc = -ENOMEM;
        }
    }
    if (rc == 0 && !EVP_DigestFinal_ex(ctx, md, &md_len))
        rc = -ENOMEM;
    EVP_MD_CTX_free(ctx);
    if (rc == 0) {
        unsigned char old[EVP_MAX_MD_SIZE];
        size_t old_len = 0;
        rc = read_start(s);
        if (rc == 0)
            rc = dmj_read_meta(s->read, IDENTITIES_NAME, old, sizeof old, &old_len);
        read_stop(s);
        if (rc == 0 && old_len == md_len && memcmp(old, md, md_len) == 0)
            goto out; /* nothing changed since the last identity write */
        s->stored_identities = rc == 0;
        if (rc == DMJ_ENOTFOUND || rc == 0)
            rc = 0;
    }
    for (int k = 0; k < OWN_COUNT; k++)
        dmj_buf_reset(&s->seen[k]);
    /* Upserts first, then the deletions, all in one transaction: a reader sees the
     * identities of one PostgreSQL snapshot or of the one before, never a mix. */
    for (size_t q = 0; rc == 0 && q < N_IDENTITY_QUERIES; q++)
        rc = feed_rows(s, res[q]);
    if (rc == 0)
        rc = write_start(s);
    struct dmj_buf old;
    dmj_buf_init(&old, (size_t)1 << 30);
    for (int k = 0; rc == 0 && k < OWN_COUNT; k++)
        rc = revoke_gone(s, (enum owned_kind)k, &old);
    dmj_buf_dispose(&old);
    if (rc == 0)
        rc = dmj_write_meta(s->w, IDENTITIES_NAME, md, md_len);
    if (rc == 0)
        rc = batch_end(s);
out:
    write_abort(s);
    for (size_t q = 0; q < N_IDENTITY_QUERIES; q++)
        PQclear(res[q]);
    return rc;
}

/* ---- cycles ----------------------------------------------------------------------- */

static int pg_connect(struct sync *s)
{
    if (s->pg && PQstatus(s->pg) == CONNECTION_OK)
        return 0;
    if (s->pg)
        PQfinish(s->pg);
    const char *keys[] = {"dbname", "fallback_application_name", NULL};
    const char *vals[] = {s->o.conninfo, "dmj sync", NULL};
    s->pg = PQconnectdbParams(keys, vals, 1);
    if (!s->pg)
        return pg_fail(s, "cannot connect", "out of memory");
    if (PQstatus(s->pg) != CONNECTION_OK)
        return pg_fail(s, "cannot connect", PQerrorMessage(s->pg));
    return 0;
}

static int cycle(struct sync *s, unsigned n)
{
    s->upserted = s->deleted = s->unchanged = s->skipped = s->identities = s->revoked = 0;
    s->err[0] = '\0';
    bool differ = false;
    int rc = pg_connect(s);
    if (rc == 0)
        rc = pg_exec(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, 0, NULL);
    if (rc == 0)
        rc = load_watermark(s);
    if (rc == 0)
        rc = sync_incremental(s);
    if (stop_requested)
        goto end; /* SIGTERM: what is committed stays; the rest waits for the next run */
    if (rc == 0 && s->o.identities)
        rc = sync_identities(s);
    if (rc == 0)
        rc = counts_differ(s, &differ);
    if (rc == 0 && (n == 0 || differ || (s->o.full_every && n % s->o.full_every == 0)))
        rc = sync_full(s);
end:
    read_stop(s);
    write_abort(s); /* after a failure: nothing of the open batch is stored */
    if (rc == 0)
        rc = pg_exec(s, "COMMIT", 0, NULL, 0, NULL);
    else if (s->pg && PQstatus(s->pg) == CONNECTION_OK)
        PQclear(PQexec(s->pg, "ROLLBACK"));
    if (rc == 0 && (s->upserted || s->deleted || s->identities)) {
        char wm[DMJ_TIME_TEXT_MAX] = "none";
        if (s->stored.set)
            dmj_time_format_drf(s->stored.us, wm);
        char ids[96] = "";
        if (s->identities)
            snprintf(ids, sizeof ids, ", identities updated (%llu, %llu revoked)",
                     (unsigned long long)s->identities, (unsigned long long)s->revoked);
        fprintf(stderr,
                "dmj sync: upserted %llu, deleted %llu, unchanged %llu, watermark %s%s\n",
                (unsigned long long)s->upserted, (unsigned long long)s->deleted,
                (unsigned long long)s->unchanged, wm, ids);
    }
    return rc;
}

/* Sleeps `seconds`, waking early on SIGTERM/SIGINT (the handler interrupts nanosleep). */
static void pause_for(double seconds)
{
    double end = dmj_tool_now() + seconds;
    while (!stop_requested) {
        double left = end - dmj_tool_now();
        if (left <= 0)
            break;
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static int run(struct sync *s)
{
    double backoff = 0.5;
    for (unsigned n = 0; !stop_requested; n++) {
        int rc = cycle(s, n);
        if (rc == SYNC_EPG) {
            fprintf(stderr, "dmj sync: %s\n", s->err);
            if (s->o.once)
                return DMJ_TOOL_FAIL;
            /* Nothing uncommitted was kept: retry the whole cycle on a new connection. */
            PQfinish(s->pg);
            s->pg = NULL;
            fprintf(stderr, "dmj sync: retrying in %.1fs\n", backoff);
            pause_for(backoff);
            backoff = backoff * 2 > 30 ? 30 : backoff * 2;
            n = n == 0 ? (unsigned)-1 : n; /* the first good cycle is still a full one */
            continue;
        }
        if (rc == DMJ_EINVAL && s->err[0])
            return dmj_tool_fail("sync", "%s", s->err);
        if (rc != 0)
            return dmj_tool_fail("sync", "store: %s", dmj_strerror(rc));
        backoff = 0.5;
        if (s->o.once)
            break;
        pause_for(s->o.interval);
    }
    return DMJ_TOOL_OK;
}

/* ---- options ---------------------------------------------------------------------- */

/* "1,2,3" into the array literal "{1,2,3}" after checking every id (no empty ones). */
static bool parse_teams(const char *list, char **out)
{
    size_t len = strlen(list);
    char *arr = malloc(len + 3);
    if (!arr)
        return false;
    size_t n = 0;
    arr[n++] = '{';
    for (const char *p = list;;) {
        size_t tok = strcspn(p, ",");
        char id_text[16];
        int64_t id;
        if (tok == 0 || tok >= sizeof id_text)
            break;
        memcpy(id_text, p, tok);
        id_text[tok] = '\0';
        if (!dmj_tool_parse_int(id_text, 0, INT32_MAX, &id))
            break;
        n += (size_t)sprintf(arr + n, "%s%lld", n > 1 ? "," : "", (long long)id);
        if (p[tok] == '\0') {
            arr[n++] = '}';
            arr[n] = '\0';
            *out = arr;
            return true;
        }
        p += tok + 1;
    }
    free(arr);
    return false;
}

/* "N:R" with 0 <= R < N: the shard of the teams whose id modulo N is R (HAProxy's mod(N)). */
static bool parse_teams_mod(const char *arg, int32_t *n_out, int32_t *r_out)
{
    char n_text[16];
    int64_t n, r;
    const char *colon = strchr(arg, ':');
    if (!colon || (size_t)(colon - arg) >= sizeof n_text)
        return false;
    memcpy(n_text, arg, (size_t)(colon - arg));
    n_text[colon - arg] = '\0';
    if (!dmj_tool_parse_int(n_text, 1, INT32_MAX, &n) ||
        !dmj_tool_parse_int(colon + 1, 0, n - 1, &r))
        return false;
    *n_out = (int32_t)n;
    *r_out = (int32_t)r;
    return true;
}

static bool parse_seconds(const char *s, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0 && v <= max))
        return false;
    *out = v;
    return true;
}

/* The conninfo on the first line of `path` (without its line end), in *out (malloc'd); warns
 * when the file is readable by group or others. A message on stderr and false on failure. */
static bool read_conninfo_file(const char *path, char **out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        dmj_tool_fail("sync", "--postgres-file: %s: %s", path, strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
        fprintf(stderr,
                "dmj sync: warning: %s is readable by group or others (mode %03o); it holds "
                "the connection string: chmod 600 it\n",
                path, (unsigned)(st.st_mode & 0777));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (n < 0) {
        free(line);
        dmj_tool_fail("sync", "--postgres-file: %s: %s", path, err ? strerror(err) : "empty");
        return false;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    *out = line;
    return true;
}

/* True when libpq would read a password from `conninfo` (a keyword or a URI's user:password@);
 * a string libpq cannot parse holds none it would use. */
static bool has_password(const char *conninfo)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &msg);
    bool found = false;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, "password") == 0 && o->val && o->val[0])
            found = true;
    }
    PQconninfoFree(opts);
    PQfreemem(msg);
    return found;
}

static const char help_text[] =
    "Follows PostHog's PostgreSQL table posthog_datamodelingjob into the store: first in\n"
    "full, then every --interval seconds (default 5) the rows whose (updated_at, id) is past\n"
    "the watermark, which is committed in the same store transaction as the rows it covers.\n"
    "Each cycle reads one REPEATABLE READ snapshot; it re-reads the last --lag seconds\n"
    "(default 5) before the watermark for rows committed late with an older updated_at.\n"
    "Rows equal to the stored ones are not written. When the table's count differs from\n"
    "the store's, and every --full-every cycles (default 60), all ids are compared: jobs\n"
    "PostgreSQL no longer has are deleted, rows with a NULL updated_at are upserted.\n"
    "  --postgres-file F    the libpq connection string or URI on F's first line (F should\n"
    "                       not be readable by group or others: a warning says so)\n"
    "  --postgres CONNINFO  the same on the command line, where every local user can read it\n"
    "                       (`ps`): a warning when it holds a password\n"
    "                       Without either: $DMJ_POSTGRES, else libpq's own sources (PG*\n"
    "                       variables, PGSERVICE, ~/.pgpass or PGPASSFILE). For a PostgreSQL\n"
    "                       on another machine add sslmode=verify-full (and sslrootcert=F):\n"
    "                       libpq's default, prefer, lets anyone on the path feed sync rows\n"
    "  --once               one cycle, then exit (status 1 on any error)\n"
    "  --identities         also organizations, teams, users, memberships and API keys;\n"
    "                       those PostgreSQL no longer has are deleted from the store if\n"
    "                       a sync wrote them (not those only `dmj import` or `dmj keys`\n"
    "                       put there)\n"
    "  --teams LIST         only these teams' jobs (comma-separated ids); others are removed\n"
    "  --teams-mod N:R      only the teams whose id modulo N is R (a shard of N; teams made\n"
    "                       later join it without a restart); with --teams: both must hold\n"
    "  --batch N            rows fetched and committed at a time (default 2000)\n"
    "Without --once, PostgreSQL errors are retried with backoff; SIGTERM/SIGINT stop after\n"
    "the current transaction. One line on stderr per cycle that changed something.\n";

int dmj_cmd_sync(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"postgres", required_argument, NULL, 'p'},   {"db", required_argument, NULL, 'd'},
        {"interval", required_argument, NULL, 'i'},   {"once", no_argument, NULL, 'o'},
        {"identities", no_argument, NULL, 'I'},       {"teams", required_argument, NULL, 't'},
        {"lag", required_argument, NULL, 'l'},        {"full-every", required_argument, NULL, 'f'},
        {"batch", required_argument, NULL, 'b'},      {"help", no_argument, NULL, 'h'},
        {"teams-mod", required_argument, NULL, 'm'}, {"postgres-file", required_argument, NULL, 'F'},
        {NULL, 0, NULL, 0},
    };
    struct sync s = {.o = {.interval = 5, .lag_us = 5000000, .full_every = 60, .batch = 2000}};
    double secs;
    int64_t v;
    int c, status = DMJ_TOOL_USAGE;
    const char *conninfo_file = NULL;
    char *conninfo_read = NULL;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            s.o.conninfo = optarg;
            break;
        case 'F':
            conninfo_file = optarg;
            break;
        case 'd':
            s.o.db = optarg;
            break;
        case 'i':
            if (!parse_seconds(optarg, 86400, &s.o.interval))
                return dmj_tool_fail("sync", "--interval: not a number of seconds: %s", optarg);
            break;
        case 'o':
            s.o.once = true;
            break;
        case 'I':
            s.o.identities = true;
            break;
        case 't':
            free(s.o.teams_array);
            s.o.teams_array = NULL;
            if (!parse_teams(optarg, &s.o.teams_array))
                return dmj_tool_fail("sync", "--teams: not a list of team ids: %s", optarg);
            break;
        case 'm':
            if (!parse_teams_mod(optarg, &s.o.mod_n, &s.o.mod_r)) {
                free(s.o.teams_array);
                return dmj_tool_fail("sync", "--teams-mod: not N:R with 0 <= R < N: %s", optarg);
            }
            break;
        case 'l':
            if (!parse_seconds(optarg, 86400, &secs)) {
                free(s.o.teams_array);
                return dmj_tool_fail("sync", "--lag: not a number of seconds: %s", optarg);
            }
            s.o.lag_us = (int64_t)(secs * 1e6);
            break;
        case 'f':
        case 'b':
            if (!dmj_tool_parse_int(optarg, c == 'f' ? 0 : 1, 1000000, &v)) {
                free(s.o.teams_array);
                return dmj_tool_fail("sync", "--%s: not a count: %s",
                                     c == 'f' ? "full-every" : "batch", optarg);
            }
            if (c == 'f')
                s.o.full_every = (unsigned)v;
            else
                s.o.batch = (unsigned)v;
            break;
        case 'h':
            printf("%s\n%s", usage_text, help_text);
            free(s.o.teams_array);
            return DMJ_TOOL_OK;
        default:
            free(s.o.teams_array);
            return dmj_tool_usage(usage_text);
        }
    }
    if (optind != argc || (s.o.conninfo && conninfo_file)) {
        free(s.o.teams_array);
        return dmj_tool_usage(usage_text);
    }
    if (conninfo_file) {
        if (!read_conninfo_file(conninfo_file, &conninfo_read)) {
            free(s.o.teams_array);
            return DMJ_TOOL_FAIL;
        }
        s.o.conninfo = conninfo_read;
    } else if (s.o.conninfo) {
        if (has_password(s.o.conninfo))
            fprintf(stderr, "dmj sync: warning: --postgres holds a password, which every local "
                            "user can read (ps); use --postgres-file, $DMJ_POSTGRES or "
                            "~/.pgpass\n");
    } else {
        /* libpq ignores an empty dbname: its own environment and files decide */
        s.o.conninfo = getenv("DMJ_POSTGRES");
        if (!s.o.conninfo)
            s.o.conninfo = "";
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    dmj_buf_init(&s.enc_new, (size_t)1 << 26);
    dmj_buf_init(&s.enc_old, (size_t)1 << 26);
    for (int k = 0; k < OWN_COUNT; k++)
        dmj_buf_init(&s.seen[k], (size_t)1 << 30);
    status = DMJ_TOOL_FAIL;
    if (dmj_tool_open(dmj_tool_db(s.o.db), 0, &s.store) == 0) {
        int rc = dmj_read_new(s.store, &s.read);
        if (rc != 0)
            dmj_tool_fail("sync", "store: %s", dmj_strerror(rc));
        else
            status = run(&s);
        read_stop(&s);
        write_abort(&s);
        if (s.read)
            dmj_read_free(s.read);
        dmj_store_close(s.store);
    }
    if (s.pg)
        PQfinish(s.pg);
    dmj_buf_dispose(&s.enc_new);
    dmj_buf_dispose(&s.enc_old);
    for (int k = 0; k < OWN_COUNT; k++)
        dmj_buf_dispose(&s.seen[k]);
    free(s.o.teams_array);
    free(conninfo_read);
    return status;
}

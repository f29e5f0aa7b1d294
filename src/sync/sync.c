/** The sync engine: cycles that read PostHog's job table in one REPEATABLE READ snapshot and
 * bring the store up to it (incremental by the (updated_at, id) watermark, in full when the
 * counts differ or every --full-every cycles), each batch one store transaction. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "dmj/buf.h"
#include "codec.h"
#include "dmj/error.h"
#include "dmj/import.h"
#include "dmj/store.h"
#include "dmj/time.h"
#include "dmj/uuid.h"

#include "sync_impl.h"

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

static int parse_i64(const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0')
        return 0;
    *out = v;
    return 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- small helpers --------------------------------------------------------------------- */

static int cmp_mark(const struct mark *a, int64_t us, const uint8_t id[16])
{
    if (a->us != us)
        return a->us < us ? -1 : 1;
    return memcmp(a->id, id, 16);
}

/* The first line of a libpq message, into sync->err, after `what`. */
int dmj__sync_fail(struct sync *s, const char *what, const char *msg)
{
    size_t n = strcspn(msg, "\n");
    while (n > 0 && (msg[n - 1] == ' ' || msg[n - 1] == '\r'))
        n--;
    snprintf(s->err, sizeof s->err, "PostgreSQL: %s%s%.*s", what, n ? ": " : "", (int)n, msg);
    return SYNC_EPG;
}

int dmj__sync_result(struct sync *s, PGconn *conn, PGresult *r, ExecStatusType want,
                     const char *what, PGresult **out)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    bool ok = want == PGRES_COMMAND_OK ? st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK
                                       : st == want;
    if (!ok) {
        int rc = dmj__sync_fail(s, what, r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
        PQclear(r);
        return rc;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return 0;
}

/* Runs a statement; `out` (may be NULL) receives the result when it succeeded. */
int dmj__sync_pg_exec(struct sync *s, const char *sql, int nparams, const char *const *params,
                   int binary, PGresult **out)
{
    PGresult *r = PQexecParams(s->pg, sql, nparams, NULL, params, NULL, NULL, binary);
    return dmj__sync_result(s, s->pg, r, PGRES_COMMAND_OK, "query failed", out);
}

int dmj__sync_read_start(struct sync *s)
{
    if (s->read_active)
        return 0;
    int rc = dmj_read_begin(s->read);
    if (rc == 0)
        s->read_active = true;
    return rc;
}

void dmj__sync_read_stop(struct sync *s)
{
    if (s->read_active) {
        dmj_read_end(s->read);
        s->read_active = false;
    }
}

int dmj__sync_write_start(struct sync *s)
{
    return s->w ? 0 : dmj_write_begin(s->store, &s->w);
}

void dmj__sync_write_abort(struct sync *s)
{
    if (s->w) {
        dmj_write_abort(s->w);
        s->w = NULL;
    }
}

/* One line on stderr as dmjd writes its own: an ISO 8601 UTC timestamp, "dmj sync: " and the
 * message, with one write so that lines never mix. */
void dmj__sync_say(const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    size_t n = dmj_time_format_drf((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, line);
    int k = snprintf(line + n, sizeof line - n, " dmj sync: ");
    if (k > 0)
        n += (size_t)k;
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (k > 0)
        n += (size_t)k < sizeof line - n - 1 ? (size_t)k : sizeof line - n - 2;
    line[n++] = '\n';
    fwrite(line, 1, n, stderr);
}

/* Commits the open batch with the watermark it reached, if anything changed; otherwise
 * drops it, so that an unchanged cycle makes no commit (commits wake dmjd's waiters). */
int dmj__sync_batch_end(struct sync *s)
{
    int rc = 0;
    dmj__sync_read_stop(s);
    bool moved = s->pending.set &&
                 (!s->stored.set || cmp_mark(&s->stored, s->pending.us, s->pending.id) < 0);
    if (moved) {
        rc = dmj__sync_write_start(s);
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
    dmj__sync_write_abort(s);
    if (rc != 0)
        s->pending = s->stored;
    return rc;
}

static int load_watermark(struct sync *s)
{
    char text[DMJ_META_NAME_MAX + 64];
    size_t len;
    int rc = dmj__sync_read_start(s);
    if (rc == 0)
        rc = dmj_read_meta(s->read, WATERMARK_NAME, text, sizeof text - 1, &len);
    dmj__sync_read_stop(s);
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
    if (!parse_i64(text, &us) ||
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
    int rc = dmj__sync_read_start(s);
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
    if (s->logical) {
        /* The stream says the row changed: written as it is, remembered for a TRUNCATE. */
        int rc = dmj__sync_write_start(s);
        if (rc == 0)
            rc = dmj_write_job(s->w, job);
        if (rc == 0)
            rc = dmj__sync_ids_add(s->written, job->id);
        if (rc == 0)
            s->upserted++;
        return rc;
    }
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
        rc = dmj__sync_write_start(s);
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

static int on_record(void *ctx, const struct dmj_import_record *rec)
{
    struct sync *s = ctx;
    int rc;
    if (rec->kind == DMJ_IMPORT_JOB) {
        rc = on_job(s, &rec->u.job);
    } else {
        rc = dmj__sync_write_start(s);
        if (rc == 0)
            rc = dmj_import_write(s->w, rec);
        if (rc == 0) {
            s->identities++;
            rc = dmj__sync_note_owned(s, rec);
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
    dmj__sync_say("row skipped: %s: %s", e->field, e->reason);
}

int dmj__sync_import_start(struct sync *s, struct dmj_import **imp)
{
    struct dmj_import_options opts = {
        .skip_invalid = true, .record = on_record, .skipped = on_skipped, .ctx = s};
    s->store_rc = 0;
    return dmj_import_new(&opts, imp);
}

/* Finishes the parse that `rc` left, with the error the caller should see. */
int dmj__sync_import_end(struct sync *s, struct dmj_import *imp, int rc)
{
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

/* Feeds column 0 of every row of `r` (one JSON object each) through the import parser,
 * which turns PostgreSQL's row_to_json into records exactly as `dmj import` does. */
int dmj__sync_feed_rows(struct sync *s, PGresult *r)
{
    struct dmj_import *imp;
    int rc = dmj__sync_import_start(s, &imp);
    if (rc != 0)
        return rc;
    int rows = PQntuples(r);
    for (int i = 0; rc == 0 && i < rows; i++) {
        rc = dmj_import_feed(imp, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
        if (rc == 0)
            rc = dmj_import_feed(imp, "\n", 1);
    }
    return dmj__sync_import_end(s, imp, rc);
}

/* Declares a cursor over `query` and feeds it batch by batch, each batch ending with its
 * store commit (with the watermark it reached), so that a kill loses at most one batch. */
static int stream_query(struct sync *s, const char *query, int nparams,
                        const char *const *params)
{
    char decl[2048], fetch[64];
    snprintf(decl, sizeof decl, "DECLARE dmj_sync NO SCROLL CURSOR FOR %s", query);
    snprintf(fetch, sizeof fetch, "FETCH %u FROM dmj_sync", s->o.batch);
    int rc = dmj__sync_pg_exec(s, decl, nparams, params, 0, NULL);
    while (rc == 0) {
        PGresult *r;
        rc = dmj__sync_pg_exec(s, fetch, 0, NULL, 0, &r);
        if (rc != 0)
            break;
        int rows = PQntuples(r);
        rc = rows ? dmj__sync_feed_rows(s, r) : 0;
        PQclear(r);
        if (rc == 0)
            rc = dmj__sync_batch_end(s);
        if (rc != 0 || rows < (int)s->o.batch || *s->stop)
            break;
    }
    if (rc == 0)
        rc = dmj__sync_pg_exec(s, "CLOSE dmj_sync", 0, NULL, 0, NULL);
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

int dmj__sync_ids_add(struct ids *a, const uint8_t id[16])
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
    return dmj__sync_ids_add(ctx, job->id);
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
    int rc = dmj__sync_pg_exec(s, q, s->o.teams_array ? 1 : 0, params, 0, NULL);
    while (rc == 0) {
        PGresult *r;
        rc = dmj__sync_pg_exec(s, "FETCH 20000 FROM dmj_ids", 0, NULL, 0, &r);
        if (rc != 0)
            break;
        int rows = PQntuples(r);
        for (int i = 0; rc == 0 && i < rows; i++) {
            uint8_t id[16];
            if (dmj_uuid_parse(PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0), id) != 0)
                rc = dmj__sync_fail(s, "id", "not a uuid");
            else
                rc = dmj__sync_ids_add(out, id);
        }
        PQclear(r);
        if (rows < 20000)
            break;
    }
    if (rc == 0)
        rc = dmj__sync_pg_exec(s, "CLOSE dmj_ids", 0, NULL, 0, NULL);
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
        rc = dmj__sync_pg_exec(s, q, s->o.teams_array ? 2 : 1, params, 0, &r);
        if (rc == 0) {
            rc = dmj__sync_feed_rows(s, r);
            PQclear(r);
        }
        if (rc == 0)
            rc = dmj__sync_batch_end(s);
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
                rc = dmj__sync_ids_add(&missing, pg.v[i++]);
            } else if (c > 0) {
                rc = dmj__sync_write_start(s);
                if (rc == 0)
                    rc = dmj_write_delete_job(s->w, st.v[k++]);
                if (rc == DMJ_ENOTFOUND) /* deleted by another writer meanwhile */
                    rc = 0;
                else if (rc == 0)
                    s->deleted++;
                if (rc == 0 && s->deleted % 10000 == 0)
                    rc = dmj__sync_batch_end(s);
            } else {
                i++;
                k++;
            }
        }
    }
    if (rc == 0)
        rc = dmj__sync_batch_end(s);
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
    int rc = dmj__sync_pg_exec(s, q, s->o.teams_array ? 1 : 0, params, 0, &r);
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

/* ---- cycles ----------------------------------------------------------------------- */

/* A connection of its own (`*conn`, reused while it is good); a replication one speaks the
 * walsender's protocol to the same database. Timestamps come as ISO text whatever the
 * server's DateStyle, so that the stream's rows parse as row_to_json's do. */
int dmj__sync_connect(struct sync *s, PGconn **conn, bool replication)
{
    if (*conn && PQstatus(*conn) == CONNECTION_OK)
        return 0;
    if (*conn)
        PQfinish(*conn);
    const char *keys[] = {"dbname", "fallback_application_name", "options",
                          replication ? "replication" : NULL, NULL};
    const char *vals[] = {s->o.conninfo, "dmj sync", "-c datestyle=ISO", "database", NULL};
    *conn = PQconnectdbParams(keys, vals, 1);
    if (!*conn)
        return dmj__sync_fail(s, "cannot connect", "out of memory");
    if (PQstatus(*conn) != CONNECTION_OK)
        return dmj__sync_fail(s, "cannot connect", PQerrorMessage(*conn));
    return 0;
}

int dmj__sync_cycle(struct sync *s, unsigned n, const char *snapshot)
{
    s->upserted = s->deleted = s->unchanged = s->skipped = s->identities = s->revoked = 0;
    s->err[0] = '\0';
    bool differ = false;
    int rc = dmj__sync_connect(s, &s->pg, false);
    if (rc == 0)
        rc = dmj__sync_pg_exec(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, 0, NULL);
    if (rc == 0 && snapshot) {
        char set[128];
        snprintf(set, sizeof set, "SET TRANSACTION SNAPSHOT '%s'", snapshot);
        rc = dmj__sync_pg_exec(s, set, 0, NULL, 0, NULL);
    }
    if (rc == 0)
        rc = load_watermark(s);
    if (snapshot) {
        s->stored.set = false; /* the copy reads everything the snapshot holds */
        s->pending = s->stored;
    }
    if (rc == 0)
        rc = sync_incremental(s);
    if (*s->stop)
        goto end; /* SIGTERM: what is committed stays; the rest waits for the next run */
    if (rc == 0 && s->o.identities)
        rc = dmj__sync_identities(s);
    if (rc == 0 && !snapshot)
        rc = counts_differ(s, &differ);
    if (rc == 0 && (n == 0 || snapshot || differ ||
                    (s->o.full_every && n % s->o.full_every == 0)))
        rc = sync_full(s);
end:
    dmj__sync_read_stop(s);
    dmj__sync_write_abort(s); /* after a failure: nothing of the open batch is stored */
    if (rc == 0)
        rc = dmj__sync_pg_exec(s, "COMMIT", 0, NULL, 0, NULL);
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
        dmj__sync_say("upserted %llu, deleted %llu, unchanged %llu, watermark %s%s",
                (unsigned long long)s->upserted, (unsigned long long)s->deleted,
                (unsigned long long)s->unchanged, wm, ids);
    }
    return rc;
}

/* Sleeps `seconds`, waking early on SIGTERM/SIGINT (the handler interrupts nanosleep). */
static void pause_for(struct sync *s, double seconds)
{
    double end = now_s() + seconds;
    while (!*s->stop) {
        double left = end - now_s();
        if (left <= 0)
            break;
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

int dmj_sync_print_state(struct dmj_store *store, FILE *out)
{
    static const char *const names[] = {LOGICAL_NAME, WATERMARK_NAME};
    struct dmj_read *r = NULL;
    int rc = dmj_read_new(store, &r);
    bool begun = rc == 0 && (rc = dmj_read_begin(r)) == 0;
    for (size_t i = 0; rc == 0 && i < sizeof names / sizeof *names; i++) {
        char text[256];
        size_t len;
        rc = dmj_read_meta(r, names[i], text, sizeof text - 1, &len);
        if (rc == 0 && len > 0)
            fprintf(out, "%s %.*s\n", names[i], (int)len, text);
        if (rc == DMJ_ENOTFOUND)
            rc = 0;
    }
    if (begun)
        dmj_read_end(r);
    if (r)
        dmj_read_free(r);
    return rc;
}

/* Without --logical or --poll: logical replication when the server allows it (said once).
 * With --logical, a server that does not allow it ends the run with the reason. */
static int choose_mode(struct sync *s)
{
    char why[256];
    bool possible;
    int rc = dmj__sync_logical_possible(s, &possible, why, sizeof why);
    if (rc != 0)
        return rc;
    if (s->o.mode == DMJ_SYNC_LOGICAL && !possible) {
        snprintf(s->err, sizeof s->err, "--logical: not possible on this server: %s", why);
        return DMJ_EINVAL;
    }
    if (!possible)
        dmj__sync_say("polling every %gs: no logical replication (%s)", s->o.interval, why);
    s->o.mode = possible ? DMJ_SYNC_LOGICAL : DMJ_SYNC_POLL;
    s->mode_chosen = true;
    return 0;
}

static int run(struct sync *s)
{
    double backoff = 0.5;
    for (unsigned n = 0; !*s->stop; n++) {
        int rc = s->mode_chosen || s->o.mode == DMJ_SYNC_POLL ? 0 : choose_mode(s);
        if (rc == 0)
            rc = s->o.mode == DMJ_SYNC_LOGICAL ? dmj__sync_logical(s)
                                               : dmj__sync_cycle(s, n, NULL);
        if (rc == SYNC_EPG) {
            dmj__sync_say("%s", s->err);
            if (s->o.once)
                return SYNC_EPG;
            /* Nothing uncommitted was kept: retry the whole cycle on a new connection. */
            PQfinish(s->pg);
            PQfinish(s->repl);
            s->pg = s->repl = NULL;
            dmj__sync_say("retrying in %.1fs", backoff);
            pause_for(s, backoff);
            backoff = backoff * 2 > 30 ? 30 : backoff * 2;
            n = n == 0 ? (unsigned)-1 : n; /* the first good cycle is still a full one */
            continue;
        }
        if (rc == DMJ_EINVAL && s->err[0]) {
            dmj__sync_say("%s", s->err);
            return rc;
        }
        if (rc != 0) {
            dmj__sync_say("store: %s", dmj_strerror(rc));
            return rc;
        }
        backoff = 0.5;
        if (s->o.once)
            break;
        pause_for(s, s->o.interval);
    }
    return 0;
}

int dmj_sync_run(struct dmj_store *store, const struct dmj_sync_options *o,
                 const volatile sig_atomic_t *stop)
{
    struct sync s = {.o = *o, .store = store, .stop = stop};
    dmj_buf_init(&s.enc_new, (size_t)1 << 26);
    dmj_buf_init(&s.enc_old, (size_t)1 << 26);
    for (int k = 0; k < OWN_COUNT; k++)
        dmj_buf_init(&s.seen[k], (size_t)1 << 30);
    int rc = dmj_read_new(store, &s.read);
    if (rc != 0)
        dmj__sync_say("store: %s", dmj_strerror(rc));
    else
        rc = run(&s);
    dmj__sync_read_stop(&s);
    dmj__sync_write_abort(&s);
    if (s.read)
        dmj_read_free(s.read);
    PQfinish(s.pg);
    PQfinish(s.repl);
    dmj_buf_dispose(&s.enc_new);
    dmj_buf_dispose(&s.enc_old);
    for (int k = 0; k < OWN_COUNT; k++)
        dmj_buf_dispose(&s.seen[k]);
    return rc;
}

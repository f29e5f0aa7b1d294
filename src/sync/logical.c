/** `dmj sync` by logical replication: a slot with the built-in pgoutput plugin, a copy from
 * the slot's exported snapshot, then every committed change in commit order.
 *
 * Exactly once: the end LSN of the last applied commit is written in the store transaction
 * that applies it (meta sync.logical), and the stream resumes from it after any stop. The
 * server is told only positions the store holds, or that no change of ours precedes, so it
 * keeps every change not yet stored. Commits that arrive together are applied in one store
 * transaction (group_due), since a store commit costs an fsync and rewrites B-tree pages. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "dmj/buf.h"
#include "dmj/store.h"
#include "dmj/uuid.h"
#include "pgoutput.h"
#include "sync_impl.h"

#define PUB_JOBS "dmj_jobs"
#define PUB_IDENTITIES "dmj_identities"
#define JOB_TABLE "posthog_datamodelingjob"
#define IDENTITY_TABLES                                                                        \
    "posthog_organization, posthog_team, posthog_user, posthog_organizationmembership, "      \
    "posthog_personalapikey"
#define GROUP_CHANGES 20000
#define GROUP_US 20000      /* a batch's age before its commit, while the stream keeps up */
#define GROUP_US_MAX 1000000 /* ... and the most it grows to while the stream is behind */
#define STATUS_EVERY_US 10000000
#define PG_EPOCH_UNIX_S 946684800 /* 2000-01-01, where PostgreSQL's clock starts */

enum rel_kind { REL_OTHER, REL_JOBS, REL_IDENTITY };

/* A table as the last relation message described it. */
struct relation {
    uint32_t relid;
    enum rel_kind kind;
    uint16_t ncols;
    struct pgo_column *cols; /* names point into `names` */
    char *names;
    int id_col, team_col;
};

struct follower {
    struct sync *s;
    char slot[64];
    uint64_t stored;    /* the end of the last commit the store holds */
    uint64_t received;  /* the end of the last commit received, or a keepalive's position */
    uint64_t group_end; /* the end of the last commit in the open store transaction */
    uint64_t told;      /* what the last status update said */
    uint64_t target;    /* --once: where the server's WAL was when the stream started */
    uint64_t applied;   /* changes applied since the slot was made, as stored */
    bool in_txn, skip_txn, identities_dirty;
    unsigned group_changes; /* changes in the open store transaction */
    int64_t group_start_us, told_us;
    int64_t group_us; /* the batch age that commits it: doubles while behind */
    struct relation *rels;
    size_t nrels;
    struct pgo_value *old_values, *new_values;
    struct dmj_buf json;
    struct dmj_import *imp; /* one parse for the whole stream: rows are JSON lines */
    struct ids written;
    int32_t *teams; /* --teams, sorted */
    size_t nteams;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A walsender command on the replication connection; `want` its result status. */
static int repl_exec(struct sync *s, const char *cmd, ExecStatusType want, PGresult **out)
{
    return dmj__sync_result(s, s->repl, PQexec(s->repl, cmd), want, "replication", out);
}

/* ---- the slot and where the store stands in it --------------------------------------- */

static int default_slot(struct follower *f)
{
    if (f->s->o.slot) {
        snprintf(f->slot, sizeof f->slot, "%s", f->s->o.slot);
        return 0;
    }
    uint8_t id[16];
    int rc = dmj__sync_read_start(f->s);
    if (rc == 0)
        rc = dmj_read_store_id(f->s->read, id);
    dmj__sync_read_stop(f->s);
    if (rc != 0)
        return rc;
    int n = snprintf(f->slot, sizeof f->slot, "dmj_");
    for (int i = 0; i < 16; i++)
        n += snprintf(f->slot + n, sizeof f->slot - (size_t)n, "%02x", id[i]);
    return 0;
}

/* The stored position, if it belongs to this slot (a store copied from another replica
 * holds that replica's): "<slot> <LSN> <changes applied>". */
static int load_position(struct follower *f, bool *found)
{
    char text[DMJ_META_NAME_MAX + 96];
    size_t len;
    *found = false;
    int rc = dmj__sync_read_start(f->s);
    if (rc == 0)
        rc = dmj_read_meta(f->s->read, LOGICAL_NAME, text, sizeof text - 1, &len);
    dmj__sync_read_stop(f->s);
    if (rc == DMJ_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    text[len] = '\0';
    char *sp = strchr(text, ' ');
    if (!sp)
        return 0;
    *sp = '\0';
    char *count = strchr(sp + 1, ' ');
    if (!count)
        return 0;
    *count++ = '\0';
    char *end;
    errno = 0;
    unsigned long long applied = strtoull(count, &end, 10);
    if (strcmp(text, f->slot) == 0 && pgo_lsn_parse(sp + 1, &f->stored) && !errno && !*end) {
        f->applied = applied;
        *found = true;
    }
    return 0;
}

static int write_position(struct follower *f, uint64_t lsn, uint64_t applied)
{
    char text[128], at[18];
    pgo_lsn_format(lsn, at);
    int n = snprintf(text, sizeof text, "%s %s %llu", f->slot, at, (unsigned long long)applied);
    return dmj_write_meta(f->s->w, LOGICAL_NAME, text, (size_t)n);
}

static int slot_state(struct follower *f, bool *exists, bool *active)
{
    const char *params[1] = {f->slot};
    PGresult *r;
    int rc = dmj__sync_pg_exec(f->s, "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                               1, params, 0, &r);
    if (rc != 0)
        return rc;
    *exists = PQntuples(r) == 1;
    *active = *exists && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return 0;
}

static int ensure_publication(struct sync *s, const char *name, const char *tables)
{
    const char *params[1] = {name};
    PGresult *r;
    int rc = dmj__sync_pg_exec(s, "SELECT 1 FROM pg_publication WHERE pubname = $1", 1, params, 0,
                               &r);
    if (rc != 0)
        return rc;
    bool exists = PQntuples(r) == 1;
    PQclear(r);
    if (exists)
        return 0;
    char sql[512];
    snprintf(sql, sizeof sql, "CREATE PUBLICATION %s FOR TABLE %s", name, tables);
    dmj__sync_say("creating publication %s", name);
    return dmj__sync_pg_exec(s, sql, 0, NULL, 0, NULL);
}

/* A new slot, and the store brought to its exported snapshot: the stream then starts exactly
 * where the copy ends. A slot left by a copy that did not finish is replaced. */
static int start_copy(struct follower *f)
{
    struct sync *s = f->s;
    bool exists, active;
    int rc = slot_state(f, &exists, &active);
    if (rc == 0 && active)
        return dmj__sync_fail(s, "slot", "in use by another client (a second dmj sync on this store?)");
    char cmd[160];
    if (rc == 0 && exists) {
        dmj__sync_say("slot %s has no position in this store: replacing it", f->slot);
        snprintf(cmd, sizeof cmd, "DROP_REPLICATION_SLOT \"%s\"", f->slot);
        rc = repl_exec(s, cmd, PGRES_COMMAND_OK, NULL);
    }
    if (rc != 0)
        return rc;
    snprintf(cmd, sizeof cmd, "CREATE_REPLICATION_SLOT \"%s\" LOGICAL pgoutput EXPORT_SNAPSHOT",
             f->slot);
    PGresult *r;
    rc = repl_exec(s, cmd, PGRES_TUPLES_OK, &r);
    if (rc != 0)
        return rc;
    uint64_t at;
    char snapshot[128];
    if (PQntuples(r) != 1 || PQnfields(r) < 3 || !pgo_lsn_parse(PQgetvalue(r, 0, 1), &at)) {
        PQclear(r);
        return dmj__sync_fail(s, "slot", "CREATE_REPLICATION_SLOT answered what dmj does not read");
    }
    snprintf(snapshot, sizeof snapshot, "%s", PQgetvalue(r, 0, 2));
    PQclear(r);
    char at_text[18];
    pgo_lsn_format(at, at_text);
    dmj__sync_say("slot %s created at %s: copying the tables", f->slot, at_text);
    rc = dmj__sync_cycle(s, 0, snapshot);
    if (rc == 0)
        rc = dmj__sync_write_start(s);
    if (rc == 0)
        rc = write_position(f, at, 0);
    if (rc == 0) {
        rc = dmj_write_commit(s->w, NULL);
        s->w = NULL;
    }
    dmj__sync_write_abort(s);
    if (rc == 0) {
        f->stored = f->received = at;
        f->applied = 0;
    }
    return rc;
}

/* ---- applying changes ----------------------------------------------------------------- */

static struct relation *find_relation(struct follower *f, uint32_t relid)
{
    for (size_t i = 0; i < f->nrels; i++) {
        if (f->rels[i].relid == relid)
            return &f->rels[i];
    }
    return NULL;
}

static bool text_is(struct pgo_text t, const char *s)
{
    return t.len == strlen(s) && memcmp(t.ptr, s, t.len) == 0;
}

static bool is_identity_table(struct pgo_text name)
{
    static const char *const tables[] = {"posthog_organization", "posthog_team", "posthog_user",
                                         "posthog_organizationmembership",
                                         "posthog_personalapikey"};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        if (text_is(name, tables[i]))
            return true;
    }
    return false;
}

/* Remembers a relation message's table (a new one replaces the old: ALTER TABLE). */
static int on_relation(struct follower *f, const struct pgo_message *m)
{
    struct relation *rel = find_relation(f, m->relid);
    if (!rel) {
        struct relation *p = realloc(f->rels, (f->nrels + 1) * sizeof *p);
        if (!p)
            return -ENOMEM;
        f->rels = p;
        rel = &f->rels[f->nrels++];
    } else {
        free(rel->cols);
        free(rel->names);
    }
    memset(rel, 0, sizeof *rel);
    rel->relid = m->relid;
    rel->id_col = rel->team_col = -1;
    rel->kind = text_is(m->relname, JOB_TABLE)           ? REL_JOBS
                : is_identity_table(m->relname)         ? REL_IDENTITY
                                                        : REL_OTHER;
    rel->cols = calloc(m->ncols ? m->ncols : 1, sizeof *rel->cols);
    rel->names = malloc(m->columns_len + 1);
    if (!rel->cols || !rel->names)
        return -ENOMEM;
    size_t pos = 0, used = 0;
    for (uint16_t i = 0; i < m->ncols; i++) {
        struct pgo_column c;
        if (pgo_next_column(m, &pos, &c) != 0)
            return DMJ_EINVAL; /* checked by pgo_parse */
        memcpy(rel->names + used, c.name.ptr, c.name.len);
        rel->cols[i] = c;
        rel->cols[i].name.ptr = rel->names + used;
        used += c.name.len;
        if (text_is(c.name, "id"))
            rel->id_col = i;
        else if (text_is(c.name, "team_id"))
            rel->team_col = i;
    }
    rel->ncols = m->ncols;
    if (rel->kind == REL_JOBS && (rel->id_col < 0 || rel->team_col < 0))
        return dmj__sync_fail(f->s, "stream", JOB_TABLE " has no id or team_id column");
    return 0;
}

static int cmp_team(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Whether a row's team_id (text, or NULL) is one this store follows (--teams, --teams-mod). */
static bool team_followed(const struct follower *f, const struct pgo_value *v)
{
    if (v->kind != 't' || v->text.len == 0 || v->text.len > 11)
        return false;
    char text[12];
    memcpy(text, v->text.ptr, v->text.len);
    text[v->text.len] = '\0';
    char *end;
    errno = 0;
    long team = strtol(text, &end, 10);
    if (errno || *end || team < INT32_MIN || team > INT32_MAX)
        return false;
    int32_t t = (int32_t)team;
    if (f->s->o.teams_array && !bsearch(&t, f->teams, f->nteams, sizeof t, cmp_team))
        return false;
    return f->s->o.mod_n <= 0 || t % f->s->o.mod_n == f->s->o.mod_r;
}

static int delete_job(struct follower *f, const struct pgo_value *idv)
{
    uint8_t id[16];
    if (idv->kind != 't' || dmj_uuid_parse(idv->text.ptr, idv->text.len, id) != 0)
        return dmj__sync_fail(f->s, "stream", "a row's id is not a uuid");
    int rc = dmj__sync_write_start(f->s);
    if (rc == 0)
        rc = dmj_write_delete_job(f->s->w, id);
    if (rc == 0)
        f->s->deleted++;
    return rc == DMJ_ENOTFOUND ? 0 : rc;
}

/* The row as PostgreSQL has it now, for an update that did not send a TOASTed value it kept:
 * a later change of the row follows in the stream, so the store still ends where the table
 * does. Absent (deleted since): nothing to write, the deletion follows. */
static int write_row_from_table(struct follower *f, const struct pgo_value *idv)
{
    char id[DMJ_UUID_TEXT_LEN + 1];
    snprintf(id, sizeof id, "%.*s", (int)idv->text.len, idv->text.ptr);
    const char *params[1] = {id};
    PGresult *r;
    int rc = dmj__sync_pg_exec(f->s, "SELECT row_to_json(j)::text FROM " JOB_TABLE " j"
                                     " WHERE j.id = $1::uuid",
                               1, params, 0, &r);
    if (rc != 0)
        return rc;
    rc = dmj__sync_feed_rows(f->s, r);
    PQclear(r);
    return rc;
}

static int upsert_job(struct follower *f, const struct relation *rel, const struct pgo_tuple *t)
{
    if (t->ncols != rel->ncols)
        return dmj__sync_fail(f->s, "stream", "a row does not match its relation");
    const struct pgo_value *idv = &t->values[rel->id_col];
    if (!team_followed(f, &t->values[rel->team_col]))
        return delete_job(f, idv); /* no team, or one this store does not follow */
    dmj_buf_reset(&f->json);
    int rc = pgo_row_json(&f->json, rel->cols, t);
    if (rc == DMJ_ENOTFOUND)
        return idv->kind == 't' ? write_row_from_table(f, idv)
                                : dmj__sync_fail(f->s, "stream", "a row's id was not sent");
    if (rc != 0)
        return rc == DMJ_EINVAL ? dmj__sync_fail(f->s, "stream", "a value does not convert") : rc;
    rc = dmj_buf_addc(&f->json, '\n');
    if (rc == 0 && !f->imp)
        rc = dmj__sync_import_start(f->s, &f->imp);
    return rc == 0 ? dmj_import_feed(f->imp, f->json.data, f->json.len) : rc;
}

static int each_store_id(void *ctx, const struct dmj_job *job)
{
    return dmj__sync_ids_add(ctx, job->id);
}

/* TRUNCATE of the job table: every job the store holds or the open transaction wrote. */
static int truncate_jobs(struct follower *f)
{
    struct ids all = {0};
    int rc = dmj_store_each_job(f->s->store, -1, each_store_id, &all);
    for (size_t i = 0; rc == 0 && i < f->written.n; i++)
        rc = dmj__sync_ids_add(&all, f->written.v[i]);
    for (size_t i = 0; rc == 0 && i < all.n; i++) {
        rc = dmj__sync_write_start(f->s);
        if (rc == 0)
            rc = dmj_write_delete_job(f->s->w, all.v[i]);
        if (rc == 0)
            f->s->deleted++;
        else if (rc == DMJ_ENOTFOUND)
            rc = 0;
    }
    free(all.v);
    return rc;
}

static int on_change(struct follower *f, const struct pgo_message *m)
{
    if (m->kind == PGO_TRUNCATE) {
        int rc = 0;
        for (uint32_t i = 0; rc == 0 && i < m->nrelids; i++) {
            struct relation *rel = find_relation(f, pgo_relid_at(m, i));
            if (rel && rel->kind == REL_IDENTITY) {
                f->identities_dirty = true;
            } else if (rel && rel->kind == REL_JOBS) {
                rc = truncate_jobs(f);
                f->group_changes++;
            }
        }
        return rc;
    }
    struct relation *rel = find_relation(f, m->relid);
    if (!rel)
        return dmj__sync_fail(f->s, "stream", "a change to a table the stream did not describe");
    if (rel->kind == REL_IDENTITY)
        f->identities_dirty = true;
    if (rel->kind != REL_JOBS)
        return 0;
    f->group_changes++;
    const struct pgo_tuple *old = &m->old;
    if (m->has_old && old->ncols != rel->ncols)
        return dmj__sync_fail(f->s, "stream", "a row does not match its relation");
    if (m->kind == PGO_DELETE)
        return delete_job(f, &old->values[rel->id_col]);
    int rc = 0;
    const struct pgo_value *new_id = &m->new_row.values[rel->id_col];
    if (m->kind == PGO_UPDATE && m->has_old && m->new_row.ncols == rel->ncols &&
        old->values[rel->id_col].kind == 't' &&
        (new_id->kind != 't' || new_id->text.len != old->values[rel->id_col].text.len ||
         memcmp(new_id->text.ptr, old->values[rel->id_col].text.ptr, new_id->text.len) != 0))
        rc = delete_job(f, &old->values[rel->id_col]); /* the id itself changed */
    return rc == 0 ? upsert_job(f, rel, &m->new_row) : rc;
}

/* Commits the store transaction of the commits received so far, with the position they
 * reach; then the identity pass a change of an identity table asked for. */
static int commit_group(struct follower *f)
{
    struct sync *s = f->s;
    int rc = 0;
    if (s->w) {
        rc = write_position(f, f->group_end, f->applied + f->group_changes);
        if (rc == 0) {
            rc = dmj_write_commit(s->w, NULL);
            s->w = NULL;
        }
        dmj__sync_write_abort(s);
        if (rc != 0)
            return rc;
        f->stored = f->group_end;
        f->applied += f->group_changes;
        f->written.n = 0;
        if (s->upserted || s->deleted)
            dmj__sync_say("changes applied: %u (upserted %llu, deleted %llu)", f->group_changes,
                          (unsigned long long)s->upserted, (unsigned long long)s->deleted);
        s->upserted = s->deleted = 0;
    }
    f->group_changes = 0;
    if (f->identities_dirty && rc == 0) {
        f->identities_dirty = false;
        rc = dmj__sync_pg_exec(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, 0,
                               NULL);
        s->identities = s->revoked = 0;
        if (rc == 0)
            rc = dmj__sync_identities(s);
        if (rc == 0)
            rc = dmj__sync_pg_exec(s, "COMMIT", 0, NULL, 0, NULL);
        if (rc == 0 && s->identities)
            dmj__sync_say("identities updated (%llu, %llu revoked)",
                          (unsigned long long)s->identities, (unsigned long long)s->revoked);
        else if (PQstatus(s->pg) == CONNECTION_OK)
            PQclear(PQexec(s->pg, "ROLLBACK"));
    }
    return rc;
}

static int on_pgoutput(struct follower *f, const uint8_t *p, size_t n)
{
    struct pgo_message m;
    if (pgo_parse(p, n, f->old_values, f->new_values, &m) != 0)
        return dmj__sync_fail(f->s, "stream", "a replication message does not parse");
    switch (m.kind) {
    case PGO_BEGIN:
        f->in_txn = true;
        /* a commit the store already holds (the server resends from its own position) */
        f->skip_txn = m.lsn < f->stored;
        if (!f->s->w)
            f->group_start_us = now_us();
        return 0;
    case PGO_COMMIT:
        f->in_txn = false;
        if (m.end_lsn > f->received)
            f->received = m.end_lsn;
        if (f->s->w)
            f->group_end = m.end_lsn;
        return 0;
    case PGO_RELATION:
        return on_relation(f, &m);
    case PGO_INSERT:
    case PGO_UPDATE:
    case PGO_DELETE:
    case PGO_TRUNCATE:
        if (!f->in_txn)
            return dmj__sync_fail(f->s, "stream", "a change outside a transaction");
        return f->skip_txn ? 0 : on_change(f, &m);
    case PGO_IGNORED:
        return 0;
    }
    return 0;
}

/* ---- the stream ------------------------------------------------------------------------ */

/* What the server may forget: what the store holds, or past it when nothing of ours is
 * between (no transaction open, nothing uncommitted in the store). */
static uint64_t safe_position(const struct follower *f)
{
    if (f->in_txn || f->s->w || f->received < f->stored)
        return f->stored;
    return f->received;
}

static int send_status(struct follower *f, bool reply)
{
    uint8_t msg[PGO_STATUS_LEN];
    int64_t now = now_us();
    uint64_t at = safe_position(f);
    pgo_status_update(msg, at, now - (int64_t)PG_EPOCH_UNIX_S * 1000000, reply);
    if (PQputCopyData(f->s->repl, (const char *)msg, sizeof msg) != 1 || PQflush(f->s->repl) != 0)
        return dmj__sync_fail(f->s, "replication", PQerrorMessage(f->s->repl));
    f->told = at;
    f->told_us = now;
    return 0;
}

static int on_copy(struct follower *f, const uint8_t *p, size_t n)
{
    struct pgo_copy c;
    if (pgo_parse_copy(p, n, &c) != 0)
        return dmj__sync_fail(f->s, "stream", "a replication message does not parse");
    if (c.kind == 'k') {
        if (!f->in_txn && c.wal_start > f->received)
            f->received = c.wal_start;
        return c.reply_now ? send_status(f, false) : 0;
    }
    return on_pgoutput(f, c.data, c.len);
}

static bool caught_up(const struct follower *f)
{
    return !f->in_txn && !f->s->w && f->received >= f->target;
}

/* Waits up to `ms` for the server; false on a connection error (message in s->err). */
static int wait_server(struct follower *f, int ms)
{
    struct pollfd pfd = {.fd = PQsocket(f->s->repl), .events = POLLIN};
    if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
        return dmj__sync_fail(f->s, "replication", strerror(errno));
    if (!PQconsumeInput(f->s->repl))
        return dmj__sync_fail(f->s, "replication", PQerrorMessage(f->s->repl));
    return 0;
}

/* Group commit: what is complete goes to the store once the open batch is group_us old (or
 * holds GROUP_CHANGES changes), so that a burst of small commits costs one store commit.
 * While the stream is behind (data still waiting when a batch is due), each batch may grow
 * twice as old, up to GROUP_US_MAX: fewer, larger store commits catch up faster, since the
 * B-tree pages a commit writes are shared by more changes. Caught up, it is GROUP_US again. */
static bool group_due(const struct follower *f)
{
    return !f->in_txn && f->s->w &&
           (f->group_changes >= GROUP_CHANGES || now_us() - f->group_start_us >= f->group_us);
}

static int stream(struct follower *f)
{
    struct sync *s = f->s;
    bool looked = false; /* the socket was read since libpq's buffer emptied */
    int rc = 0;
    while (rc == 0) {
        if (*s->stop) {
            if (!f->in_txn)
                rc = commit_group(f);
            break;
        }
        char *buf;
        int n = PQgetCopyData(s->repl, &buf, 1);
        if (n > 0) {
            looked = false;
            rc = on_copy(f, (const uint8_t *)buf, (size_t)n);
            PQfreemem(buf);
            if (rc == 0 && group_due(f)) {
                rc = commit_group(f);
                f->group_us = f->group_us * 2 > GROUP_US_MAX ? GROUP_US_MAX : f->group_us * 2;
            }
            continue;
        }
        if (n == -1) {
            PGresult *r = PQgetResult(s->repl);
            rc = dmj__sync_fail(s, "replication ended", r ? PQresultErrorMessage(r) : "");
            PQclear(r);
            break;
        }
        if (n < -1) {
            rc = dmj__sync_fail(s, "replication", PQerrorMessage(s->repl));
            break;
        }
        /* libpq's buffer is empty: read what the socket holds before calling it idle */
        if (!looked) {
            looked = true;
            if (!PQconsumeInput(s->repl)) {
                rc = dmj__sync_fail(s, "replication", PQerrorMessage(s->repl));
                break;
            }
            continue;
        }
        looked = false;
        /* nothing more has come: commit a batch that is due, or wait for more until it is */
        f->group_us = GROUP_US;
        if (group_due(f) || (!f->in_txn && !s->w && f->identities_dirty))
            rc = commit_group(f);
        if (rc != 0 || (s->o.once && caught_up(f)))
            break;
        int64_t now = now_us();
        if (s->o.once || now - f->told_us >= STATUS_EVERY_US ||
            (safe_position(f) > f->told && now - f->told_us >= 1000000))
            rc = send_status(f, s->o.once); /* --once asks where the server is */
        int wait_ms = s->o.once ? 100 : 1000;
        if (s->w && !f->in_txn) {
            int64_t left = (f->group_start_us + f->group_us - now_us()) / 1000;
            wait_ms = left < 1 ? 1 : (int)left;
        }
        if (rc == 0)
            rc = wait_server(f, wait_ms);
    }
    if (rc == 0 && PQstatus(s->repl) == CONNECTION_OK)
        rc = send_status(f, false); /* what the store holds, so the server can let go */
    return rc;
}

static int start_stream(struct follower *f)
{
    struct sync *s = f->s;
    if (s->o.once) {
        PGresult *r;
        int rc = dmj__sync_pg_exec(s, "SELECT pg_current_wal_lsn()::text", 0, NULL, 0, &r);
        if (rc != 0)
            return rc;
        bool ok = PQntuples(r) == 1 && pgo_lsn_parse(PQgetvalue(r, 0, 0), &f->target);
        PQclear(r);
        if (!ok)
            return dmj__sync_fail(s, "pg_current_wal_lsn", "not an LSN");
    }
    char cmd[256], at[18];
    pgo_lsn_format(f->stored, at);
    snprintf(cmd, sizeof cmd,
             "START_REPLICATION SLOT \"%s\" LOGICAL %s (proto_version '1', publication_names "
             "'\"" PUB_JOBS "\"%s')",
             f->slot, at, s->o.identities ? ",\"" PUB_IDENTITIES "\"" : "");
    int rc = repl_exec(s, cmd, PGRES_COPY_BOTH, NULL);
    if (rc == 0)
        dmj__sync_say("following slot %s from %s", f->slot, at);
    return rc;
}

/* --teams' "{1,2}" as a sorted array. */
static int parse_teams(struct follower *f)
{
    const char *p = f->s->o.teams_array;
    if (!p)
        return 0;
    size_t cap = strlen(p) / 2 + 1;
    f->teams = malloc(cap * sizeof *f->teams);
    if (!f->teams)
        return -ENOMEM;
    for (p++; *p && *p != '}' && f->nteams < cap;) {
        char *end;
        f->teams[f->nteams++] = (int32_t)strtol(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p != '}')
            break;
    }
    qsort(f->teams, f->nteams, sizeof *f->teams, cmp_team);
    return 0;
}

static int follow(struct follower *f)
{
    struct sync *s = f->s;
    bool found;
    int rc = dmj__sync_connect(s, &s->pg, false);
    if (rc == 0)
        rc = ensure_publication(s, PUB_JOBS, JOB_TABLE);
    if (rc == 0 && s->o.identities)
        rc = ensure_publication(s, PUB_IDENTITIES, IDENTITY_TABLES);
    if (rc == 0)
        rc = dmj__sync_connect(s, &s->repl, true);
    if (rc == 0)
        rc = default_slot(f);
    if (rc == 0)
        rc = load_position(f, &found);
    if (rc == 0 && found) {
        bool exists, active;
        rc = slot_state(f, &exists, &active);
        if (rc == 0 && !exists) {
            dmj__sync_say("slot %s is gone (dropped on the server?): starting with a new copy",
                          f->slot);
            found = false;
        }
    }
    if (rc == 0 && !found)
        rc = start_copy(f);
    else if (rc == 0 && s->o.identities)
        f->identities_dirty = true; /* a pass the last run may not have finished */
    f->received = f->stored;
    if (rc == 0 && f->identities_dirty)
        rc = commit_group(f);
    if (rc == 0)
        rc = start_stream(f);
    s->logical = true; /* from here on, rows come from the stream */
    if (rc == 0)
        rc = stream(f);
    s->logical = false;
    dmj__sync_write_abort(s); /* a transaction cut short: the stream sends it again */
    return rc;
}

int dmj__sync_logical(struct sync *s)
{
    struct follower f = {.s = s, .group_us = GROUP_US};
    dmj_buf_init(&f.json, (size_t)1 << 30);
    f.old_values = calloc(PGO_MAX_COLUMNS, sizeof *f.old_values);
    f.new_values = calloc(PGO_MAX_COLUMNS, sizeof *f.new_values);
    s->err[0] = '\0';
    s->upserted = s->deleted = 0;
    int rc = f.old_values && f.new_values ? parse_teams(&f) : -ENOMEM;
    if (rc == 0) {
        s->written = &f.written;
        rc = follow(&f);
        s->written = NULL;
    }
    if (rc != 0) {
        /* a new connection for the next attempt: this one may be mid-stream */
        PQfinish(s->repl);
        s->repl = NULL;
    }
    for (size_t i = 0; i < f.nrels; i++) {
        free(f.rels[i].cols);
        free(f.rels[i].names);
    }
    free(f.rels);
    free(f.old_values);
    free(f.new_values);
    free(f.written.v);
    free(f.teams);
    dmj_buf_dispose(&f.json);
    if (f.imp)
        rc = dmj__sync_import_end(s, f.imp, rc);
    return rc;
}

int dmj__sync_logical_possible(struct sync *s, bool *possible, char *why, size_t cap)
{
    int rc = dmj__sync_connect(s, &s->pg, false);
    PGresult *r;
    if (rc == 0)
        rc = dmj__sync_pg_exec(
            s,
            "SELECT current_setting('wal_level'),"
            " (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),"
            " (SELECT count(*) FROM pg_publication WHERE pubname IN ('" PUB_JOBS "', '"
            PUB_IDENTITIES "')),"
            " has_database_privilege(current_database(), 'CREATE') AND"
            " pg_has_role((SELECT relowner FROM pg_class WHERE oid = '" JOB_TABLE
            "'::regclass), 'USAGE')",
            0, NULL, 0, &r);
    if (rc != 0)
        return rc;
    const char *level = PQgetvalue(r, 0, 0);
    bool replication = PQgetvalue(r, 0, 1)[0] == 't';
    long pubs = strtol(PQgetvalue(r, 0, 2), NULL, 10);
    bool can_create = PQgetvalue(r, 0, 3)[0] == 't';
    *possible = false;
    if (strcmp(level, "logical") != 0)
        snprintf(why, cap, "wal_level is %s, not logical", level);
    else if (!replication)
        snprintf(why, cap, "the user has no REPLICATION attribute");
    else if (pubs < (s->o.identities ? 2 : 1) && !can_create)
        snprintf(why, cap, "no publication " PUB_JOBS "%s, and the user cannot create it",
                 s->o.identities ? " and " PUB_IDENTITIES : "");
    else
        *possible = true;
    PQclear(r);
    return 0;
}

int dmj_sync_drop_slot(struct dmj_store *store, const struct dmj_sync_options *o)
{
    struct sync s = {.o = *o, .store = store};
    struct follower f = {.s = &s};
    int rc = dmj_read_new(store, &s.read);
    if (rc == 0)
        rc = default_slot(&f);
    if (rc == 0)
        rc = dmj__sync_connect(&s, &s.repl, true);
    if (rc == 0) {
        char cmd[160];
        snprintf(cmd, sizeof cmd, "DROP_REPLICATION_SLOT \"%s\"", f.slot);
        rc = repl_exec(&s, cmd, PGRES_COMMAND_OK, NULL);
    }
    if (rc == 0)
        rc = dmj_write_begin(store, &s.w);
    if (rc == 0)
        rc = dmj_write_meta(s.w, LOGICAL_NAME, "", 0);
    if (rc == 0) {
        rc = dmj_write_commit(s.w, NULL);
        s.w = NULL;
    }
    if (rc == 0)
        dmj__sync_say("slot %s dropped", f.slot);
    else if (rc == SYNC_EPG)
        dmj__sync_say("%s", s.err);
    else
        dmj__sync_say("store: %s", dmj_strerror(rc));
    dmj__sync_write_abort(&s);
    if (s.read)
        dmj_read_free(s.read);
    PQfinish(s.repl);
    return rc;
}

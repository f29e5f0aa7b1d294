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
#include "logical_impl.h"
#include "pgoutput.h"
#include "sync_impl.h"

#define PUB_JOBS "dmj_jobs"
#define PUB_IDENTITIES "dmj_identities"
#define IDENTITY_TABLES                                                                        \
    "posthog_organization, posthog_team, posthog_user, posthog_organizationmembership, "      \
    "posthog_personalapikey"
#define GROUP_CHANGES 20000
#define GROUP_US 20000      /* a batch's age before its commit, while the stream keeps up */
#define GROUP_US_MAX 1000000 /* ... and the most it grows to while the stream is behind */
#define STATUS_EVERY_US 10000000
#define PG_EPOCH_UNIX_S 946684800 /* 2000-01-01, where PostgreSQL's clock starts */

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
    if (rc == 0 && *s->stop)
        return 0; /* a copy cut short stores no position: the next run copies again */
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
        return dmj__logical_on_relation(f, &m);
    case PGO_INSERT:
    case PGO_UPDATE:
    case PGO_DELETE:
    case PGO_TRUNCATE:
        if (!f->in_txn)
            return dmj__sync_fail(f->s, "stream", "a change outside a transaction");
        return f->skip_txn ? 0 : dmj__logical_on_change(f, &m);
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
    if (rc == 0 && *s->stop)
        return 0;
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
    int rc = f.old_values && f.new_values ? dmj__logical_parse_teams(&f) : -ENOMEM;
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

/** What the two halves of the sync engine share: its state, and the helpers that run a
 * PostgreSQL query or a store batch (sync.c) for the identity pass (sync_identities.c). */
#ifndef DMJ_SYNC_IMPL_H
#define DMJ_SYNC_IMPL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "dmj/buf.h"
#include "dmj/import.h"
#include "dmj/store.h"
#include "sync.h"

/* A PostgreSQL failure (connection, query): the message is in sync->err. Retried without
 * --once; a store failure is not (it would not get better by waiting). */
#define SYNC_EPG (-3000)

#define WATERMARK_NAME "sync.watermark"
/* Logical replication: "<slot> <LSN>", the slot and the end of the last commit applied. */
#define LOGICAL_NAME "sync.logical"
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

struct dmj__sync_owned_list {
    const char *name;
    size_t size;
};
extern const struct dmj__sync_owned_list dmj__sync_owned_lists[OWN_COUNT];

struct ids {
    uint8_t (*v)[16];
    size_t n, cap;
};


/* A position in (updated_at, id) order. */
struct mark {
    bool set;
    int64_t us;
    uint8_t id[16];
};

struct sync {
    struct dmj_sync_options o;
    struct dmj_store *store;
    const volatile sig_atomic_t *stop; /* set by the caller's signal handler */
    struct dmj_read *read;
    bool read_active;
    PGconn *pg;   /* queries */
    PGconn *repl; /* logical replication: the walsender connection */
    char err[512];

    struct mark stored;  /* the watermark committed in the store */
    struct mark pending; /* the watermark the open batch will commit */
    bool incremental;    /* rows move the watermark (not during the full comparison) */

    const struct ids *known; /* during the full comparison: the store's ids, sorted */
    bool mode_chosen;        /* logical or polling, checked against the server */
    bool logical;            /* applying the stream: every row is written, none compared */
    struct ids *written;     /* then: the job ids written in the open batch */
    struct dmj_write *w;     /* the open write transaction of the batch, NULL if none */
    uint64_t upserted, deleted, unchanged, skipped, identities, revoked;
    struct dmj_buf seen[OWN_COUNT]; /* owned_lists' entries written by this identity pass */
    struct dmj_buf enc_new, enc_old;
    int store_rc;           /* the store error that stopped a parse, for the caller */
    bool stored_identities; /* the store had an identity digest before this pass */
};

/* sync.c: PostgreSQL, read and write helpers. Each returns 0, SYNC_EPG (the message in
 * s->err) or a store error. */
/* The first line of a libpq message in s->err after `what`; returns SYNC_EPG. */
int dmj__sync_fail(struct sync *s, const char *what, const char *msg);
/* Keeps `r` in `out` (or clears it) when its status is `want` (PGRES_COMMAND_OK: or rows),
 * else puts its error, after `what`, in s->err. */
int dmj__sync_result(struct sync *s, PGconn *conn, PGresult *r, ExecStatusType want,
                     const char *what, PGresult **out);
int dmj__sync_pg_exec(struct sync *s, const char *sql, int nparams, const char *const *params, int binary, PGresult **out);
int dmj__sync_read_start(struct sync *s);
void dmj__sync_read_stop(struct sync *s);
int dmj__sync_write_start(struct sync *s);
void dmj__sync_write_abort(struct sync *s);
int dmj__sync_batch_end(struct sync *s);
int dmj__sync_feed_rows(struct sync *s, PGresult *r);
/* A parse whose records go to the store as the rows' do (each record is applied while the
 * feed that completes it runs), and its end with the error the caller should see. */
int dmj__sync_import_start(struct sync *s, struct dmj_import **imp);
int dmj__sync_import_end(struct sync *s, struct dmj_import *imp, int rc);
int dmj__sync_ids_add(struct ids *a, const uint8_t id[16]);
int dmj__sync_connect(struct sync *s, PGconn **conn, bool replication);
/* One cycle of the polling mode; with `snapshot` (an exported snapshot's name), the copy that
 * starts logical replication: everything the snapshot holds, from no watermark. */
int dmj__sync_cycle(struct sync *s, unsigned n, const char *snapshot);
void dmj__sync_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* logical.c: follows the stream until stopped (or caught up with --once). */
int dmj__sync_logical(struct sync *s);
/* Whether the server allows logical replication to this user; the reason when not. */
int dmj__sync_logical_possible(struct sync *s, bool *possible, char *why, size_t cap);
/* sync_identities.c */
int dmj__sync_note_owned(struct sync *s, const struct dmj_import_record *rec);
int dmj__sync_identities(struct sync *s);

#endif

/** The LMDB store: jobs with their indexes, and the identity tables (docs/design.md, section 2).
 *
 * One environment per process (dmj_store_open); any number of readers and one writer at a
 * time, across processes. A reader holds a `struct dmj_read` per thread and begins/ends it
 * around each request; everything it hands out (jobs, identities, their strings) lives until
 * dmj_read_end. Jobs whose engine is "duckgres" are stored but every walk skips them. */
#ifndef DMJ_STORE_H
#define DMJ_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmj/error.h"
#include "dmj/identity.h"
#include "dmj/job.h"

struct dmj_store;
struct dmj_read;
struct dmj_write;

#define DMJ_STORE_RDONLY 1u /**< open for serving: no writes through this handle */

/** Opens (creating if writable and absent) the store in directory `dir`. `map_size` 0 takes
 * $DMJ_MAP_SIZE or the default (64 GiB, sparse). Errors: -errno, DMJ_EVERSION, DMJ_ESTORE. */
DMJ_MUST_CHECK int dmj_store_open(const char *dir, unsigned flags, size_t map_size,
                                  struct dmj_store **out);
/** Closes the store. Every read and write must be ended first. */
void dmj_store_close(struct dmj_store *s);
/** Bytes used by the data file, and the map size, for stats and metrics. */
void dmj_store_sizes(struct dmj_store *s, uint64_t *used, uint64_t *map_size);
/** Stored jobs (hidden ones included; the jobs tree's own count, no walk) and the time of
 * the last committed change (an import, prune or keys), unix microseconds, 0 if none. */
DMJ_MUST_CHECK int dmj_store_counts(struct dmj_store *s, uint64_t *jobs, int64_t *last_write_us);

/* ---- reading ---------------------------------------------------------------------- */

/** A reusable read handle (one per thread). Starts ended. */
DMJ_MUST_CHECK int dmj_read_new(struct dmj_store *s, struct dmj_read **out);
void dmj_read_free(struct dmj_read *r);
/** Starts a read transaction on the latest committed state (renews the handle's txn). */
DMJ_MUST_CHECK int dmj_read_begin(struct dmj_read *r);
/** Ends it (mdb_txn_reset); all pointers handed out since begin become invalid. */
void dmj_read_end(struct dmj_read *r);
/** The committed transaction id the read sees (for ETags and caches). */
uint64_t dmj_read_txnid(struct dmj_read *r);
/** The store's identity: 16 random bytes made when the data file was created (or first opened
 * writable without one), and new in each dmj_store_backup copy, so that two stores at the same
 * txnid still tell apart (ETags). Needs a begun read unless already seen (then cached in the
 * store handle: cheap per request). DMJ_ENOTFOUND for a store written before ids, opened
 * read-only, until a writer opens it; DMJ_EBADRECORD when the stored value is malformed. */
DMJ_MUST_CHECK int dmj_read_store_id(struct dmj_read *r, uint8_t out[16]);

/** A job by id, in any team. DMJ_ENOTFOUND when absent or hidden (duckgres). */
DMJ_MUST_CHECK int dmj_read_job(struct dmj_read *r, const uint8_t id[16], struct dmj_job *out);

/** A job's record as stored, with what its key says. Two records with the same bytes are the
 * same job in the same state, so a reader may keep what it derives from a record (its JSON)
 * keyed on them. `data` lives until dmj_read_end. Within one committed state (`txnid`) a
 * record's bytes never move or change: the same `data` there is the same bytes. */
struct dmj_job_rec {
    uint64_t txnid; /**< the committed state read (dmj_read_txnid) */
    const void *data;
    size_t len;
    int32_t team_id;
    int64_t created_at;
    uint8_t id[16];
};
/** The record of a job by id, in any team, hidden ones included; DMJ_ENOTFOUND when absent. */
DMJ_MUST_CHECK int dmj_read_job_rec(struct dmj_read *r, const uint8_t id[16],
                                    struct dmj_job_rec *out);
/** Decodes a record (strings point into its bytes); DMJ_EBADRECORD or DMJ_EVERSION. */
DMJ_MUST_CHECK int dmj_job_decode(const void *data, size_t len, struct dmj_job *out);

DMJ_MUST_CHECK int dmj_read_team(struct dmj_read *r, int32_t id, struct dmj_team *out);
DMJ_MUST_CHECK int dmj_read_user(struct dmj_read *r, int64_t id, struct dmj_user *out);
/** The key whose stored hash equals `secure_value` ("sha256$<hex>"). */
DMJ_MUST_CHECK int dmj_read_key(struct dmj_read *r, const char *secure_value, struct dmj_key *out);
/** The stored key whose hash follows `after` (NULL: the first), in hash order; DMJ_EEND past
 * the last. A walk over every key (dmj keys list): pass the last one's secure_value. */
DMJ_MUST_CHECK int dmj_read_next_key(struct dmj_read *r, const char *after, struct dmj_key *out);
/** 0 when the user is a member of the organization, DMJ_ENOTFOUND when not. */
DMJ_MUST_CHECK int dmj_read_membership(struct dmj_read *r, int64_t user_id, const uint8_t org[16]);
/** The user's organization with the lowest UUID (byte order), DMJ_ENOTFOUND if none. */
DMJ_MUST_CHECK int dmj_read_first_org_of_user(struct dmj_read *r, int64_t user_id,
                                              uint8_t org_out[16]);
/** The lowest-id team of an organization, DMJ_ENOTFOUND if none. */
DMJ_MUST_CHECK int dmj_read_first_team_of_org(struct dmj_read *r, const uint8_t org[16],
                                              int32_t *team_out);

/** Which index a walk follows; rows come in (created_at, id) order within the team. */
enum dmj_walk_index {
    DMJ_WALK_TEAM,        /**< all of the team's jobs */
    DMJ_WALK_SAVED_QUERY, /**< the team's jobs of one saved_query_id */
    DMJ_WALK_STATUS,      /**< the team's jobs with one status */
};

struct dmj_walk_spec {
    int32_t team_id;
    enum dmj_walk_index index;
    uint8_t saved_query_id[16]; /**< for DMJ_WALK_SAVED_QUERY */
    enum dmj_status status;     /**< for DMJ_WALK_STATUS */
    bool descending;            /**< newest first (created_at desc, id desc) */
    bool has_bound;             /**< start strictly past `bound_us`: */
    int64_t bound_us;           /**< descending: created_at < bound; ascending: > bound */
};

/** A walk in progress; caller's storage, private fields. Valid until dmj_read_end. */
struct dmj_walk {
    struct dmj_read *read;
    struct dmj_walk_spec spec;
    void *cursor; /* MDB_cursor owned by the read handle */
    int state;
};

/** Positions a walk; the first dmj_walk_next gives the first row. */
DMJ_MUST_CHECK int dmj_walk_start(struct dmj_read *r, const struct dmj_walk_spec *spec,
                                  struct dmj_walk *w);
/** The next visible job, or DMJ_EEND. A record that fails to decode gives DMJ_EBADRECORD
 * (the walk can go on past it). */
DMJ_MUST_CHECK int dmj_walk_next(struct dmj_walk *w, struct dmj_job *out);
/** The next row as its record, hidden jobs included (not decoded: the caller decodes, and
 * skips what dmj_job_hidden says). A dangling index entry gives DMJ_EBADRECORD. */
DMJ_MUST_CHECK int dmj_walk_next_rec(struct dmj_walk *w, struct dmj_job_rec *out);
/** The next row's entry: on an index walk, the job's team, created_at and id from the index
 * alone (`data` NULL: the record is not read), which dmj_walk_fetch then reads if the caller
 * needs it; on a team walk, the record itself. */
DMJ_MUST_CHECK int dmj_walk_next_entry(struct dmj_walk *w, struct dmj_job_rec *out);
/** Reads the record of an entry dmj_walk_next_entry gave (nothing when it has one already). A
 * dangling index entry gives DMJ_EBADRECORD. */
DMJ_MUST_CHECK int dmj_walk_fetch(struct dmj_walk *w, struct dmj_job_rec *rec);

/** Which of a team's visible jobs dmj_read_count counts: all, one saved query's, or those
 * with one of a set of statuses (not both). */
struct dmj_count_spec {
    bool has_saved_query_id;
    uint8_t saved_query_id[16];
    unsigned statuses; /**< bits 1 << status; 0: every status */
};

/** The number of the team's visible jobs that `spec` (NULL: all) selects, read from counters
 * the store keeps with its indexes: no walk. DMJ_ENOTFOUND when the store does not keep them
 * at the state read (last written by a version without them: walk instead), DMJ_EINVAL for a
 * saved query and statuses together. */
DMJ_MUST_CHECK int dmj_read_count(struct dmj_read *r, int32_t team_id,
                                  const struct dmj_count_spec *spec, uint64_t *out);

/** For `recent`: the team's saved_query_ids in ascending byte order, one call per id.
 * Starts after `after` (or at the first when `after` is NULL); DMJ_EEND past the last. */
DMJ_MUST_CHECK int dmj_read_next_saved_query(struct dmj_read *r, int32_t team_id,
                                             const uint8_t *after, uint8_t out[16]);

/* ---- writing ---------------------------------------------------------------------- */

struct dmj_write_stats {
    uint64_t inserted;
    uint64_t replaced;
};

/** Starts the single write transaction (blocks while another writer holds it). */
DMJ_MUST_CHECK int dmj_write_begin(struct dmj_store *s, struct dmj_write **out);
/** Upserts a job by id; every index follows (old entries of a replaced job are removed).
 * The job is copied: the caller's strings may go away after the call. Writes may be
 * buffered and sorted until commit; a job put twice in one transaction keeps the last. */
DMJ_MUST_CHECK int dmj_write_job(struct dmj_write *w, const struct dmj_job *job);
DMJ_MUST_CHECK int dmj_write_team(struct dmj_write *w, const struct dmj_team *t);
DMJ_MUST_CHECK int dmj_write_org(struct dmj_write *w, const struct dmj_org *o);
DMJ_MUST_CHECK int dmj_write_user(struct dmj_write *w, const struct dmj_user *u);
DMJ_MUST_CHECK int dmj_write_membership(struct dmj_write *w, const struct dmj_membership *m);
DMJ_MUST_CHECK int dmj_write_key(struct dmj_write *w, const struct dmj_key *k);
/** Deletes a job and its index entries; DMJ_ENOTFOUND if absent. */
DMJ_MUST_CHECK int dmj_write_delete_job(struct dmj_write *w, const uint8_t id[16]);
/* Identity deletions (dmj sync --identities, dmj keys revoke): each DMJ_ENOTFOUND when the
 * record is absent (nothing else changes then), committed with the rest of the transaction.
 * None of them cascades the way PostHog's foreign keys do: the caller deletes the rest. */
/** Removes the user's membership of the organization (the user then gets 403 on its teams). */
DMJ_MUST_CHECK int dmj_write_delete_membership(struct dmj_write *w, int64_t user_id,
                                               const uint8_t org[16]);
/** Removes the key stored under `secure_value` ("sha256$<hex>"): it then authenticates as
 * no key (401). */
DMJ_MUST_CHECK int dmj_write_delete_key(struct dmj_write *w, const char *secure_value);
/** Removes the user (every key of theirs then gives 401); their keys and memberships stay. */
DMJ_MUST_CHECK int dmj_write_delete_user(struct dmj_write *w, int64_t id);
/** Removes the team and its organization's entry for it (requests for it then get 404). Its
 * jobs stay, unserved, until they are deleted or the team comes back. */
DMJ_MUST_CHECK int dmj_write_delete_team(struct dmj_write *w, int32_t id);
/** Removes the organization and its list of teams (org_teams entries); the teams and the
 * memberships that name it stay until they are deleted too (verify reports such teams). */
DMJ_MUST_CHECK int dmj_write_delete_org(struct dmj_write *w, const uint8_t id[16]);
/** Commits everything; on any error nothing of the transaction is stored. Frees `w`.
 * `stats` (may be NULL) receives the counts of this transaction. */
DMJ_MUST_CHECK int dmj_write_commit(struct dmj_write *w, struct dmj_write_stats *stats);
/** Discards everything and frees `w`. */
void dmj_write_abort(struct dmj_write *w);

/* ---- named values (sync watermarks) ----------------------------------------------- */

/** Names a tool may keep in the store: they start with "sync." and are at most 64 bytes
 * (other names are the store's own; DMJ_EINVAL). */
#define DMJ_META_NAME_MAX 64
/** Copies the value stored under `name` into `val` (at most `cap` bytes; DMJ_ETOOBIG when it
 * is longer) and its length into `*len`. DMJ_ENOTFOUND when absent. */
DMJ_MUST_CHECK int dmj_read_meta(struct dmj_read *r, const char *name, void *val, size_t cap,
                                 size_t *len);
/** Stores `val` under `name` in this write transaction (committed with it). */
DMJ_MUST_CHECK int dmj_write_meta(struct dmj_write *w, const char *name, const void *val,
                                  size_t len);

/** The id of the store's last committed write transaction, read from the environment without
 * a read transaction (cheap: for a watcher that wakes waiting requests). 0 on error. */
uint64_t dmj_store_last_txnid(struct dmj_store *s);

/* ---- the change log (events) ------------------------------------------------------- */

/** What happened to a job. Hidden (duckgres) jobs have no changes. */
enum dmj_change_kind {
    DMJ_CHANGE_CREATED = 1, /**< first stored */
    DMJ_CHANGE_STATUS = 2,  /**< stored again with another status */
    DMJ_CHANGE_DELETED = 3, /**< removed (prune, sync) */
};

/** One entry of the change log, written in the same transaction as the change itself. */
struct dmj_change {
    uint64_t seq; /**< > 0, counted per team: increasing over the store's life, never reused */
    int32_t team_id;
    enum dmj_change_kind kind;
    uint8_t job_id[16];
    enum dmj_status status;   /**< after the change (for DELETED: the last stored status) */
    enum dmj_status previous; /**< for STATUS: the status before; otherwise equal to status */
    int64_t at_us;            /**< when the change was committed (the writer's clock) */
};

/** The team's first change with seq > `after_seq`, in seq order. DMJ_EEND when none. */
DMJ_MUST_CHECK int dmj_read_change_next(struct dmj_read *r, int32_t team_id, uint64_t after_seq,
                                        struct dmj_change *out);
/** The oldest seq the team's log still keeps and the newest it gave out (both 0 when none was
 * given): a reader resuming after a seq below oldest - 1 has missed changes. */
DMJ_MUST_CHECK int dmj_read_change_bounds(struct dmj_read *r, int32_t team_id, uint64_t *oldest,
                                          uint64_t *newest);
/** Over all teams, for stats: the lowest oldest of a team that keeps entries (newest + 1 when
 * none does) and the highest newest (both 0 when no seq was given). */
DMJ_MUST_CHECK int dmj_read_change_bounds_all(struct dmj_read *r, uint64_t *oldest,
                                              uint64_t *newest);

/** The log's size: entries kept and the bytes of their pages (0 and 0 for a store written
 * before the log, opened read-only). For stats. */
DMJ_MUST_CHECK int dmj_read_change_size(struct dmj_read *r, uint64_t *entries, uint64_t *bytes);
/** Removes the log's entries committed before `before_us` (unix microseconds): in each team,
 * every entry up to the team's highest seq among them, which the team's bounds then give as
 * oldest - 1 (all of them: oldest = newest + 1; the bounds are both 0 only while no seq was
 * ever given). `removed` receives how many went. */
DMJ_MUST_CHECK int dmj_write_prune_changes(struct dmj_write *w, int64_t before_us,
                                           uint64_t *removed);

/* ---- whole-store operations (dmj stats / verify / export / backup / prune) -------- */

/** Calls `fn` for every stored job (hidden ones included) in key order within one read;
 * stops and returns fn's value when it returns non-zero. team_id < 0: all teams. */
DMJ_MUST_CHECK int dmj_store_each_job(struct dmj_store *s, int32_t team_id,
                                      int (*fn)(void *ctx, const struct dmj_job *job), void *ctx);
/** The same walk, except that a record that does not decode goes to `bad` with its job id
 * (NULL when its key is malformed too) and the decode error, and the walk goes on past it
 * unless `bad` returns non-zero (which it then returns). For export and stats, so that one
 * damaged record does not hide every other job. */
DMJ_MUST_CHECK int dmj_store_each_job_tolerant(struct dmj_store *s, int32_t team_id,
                                               int (*fn)(void *ctx, const struct dmj_job *job),
                                               int (*bad)(void *ctx, const uint8_t *id, int err),
                                               void *ctx);
/** Checks every index against the records; writes one line per problem to `report`
 * (a FILE *); returns 0 when consistent, DMJ_EBADRECORD otherwise. */
DMJ_MUST_CHECK int dmj_store_verify(struct dmj_store *s, void *report);
/** Compacted, consistent copy into directory `dest` (mdb_env_copy2 with MDB_CP_COMPACT),
 * given a store id of its own (dmj_read_store_id): once written, a restored copy is no longer
 * its origin, and must not answer the origin's ETags. */
DMJ_MUST_CHECK int dmj_store_backup(struct dmj_store *s, const char *dest);

#endif

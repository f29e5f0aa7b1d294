/** The replication engine of `dmj sync`: keeps a store a replica of PostHog's PostgreSQL
 * (the job table, deletions, and optionally the identity tables), cycle after cycle. */
#ifndef DMJ_SYNC_H
#define DMJ_SYNC_H

#include <signal.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>

#include "dmj/error.h"
#include "dmj/store.h"

/** What to follow and how often; the strings are borrowed for the run. */
struct dmj_sync_options {
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
    enum dmj_sync_mode { DMJ_SYNC_AUTO, DMJ_SYNC_LOGICAL, DMJ_SYNC_POLL } mode;
    const char *slot; /* the replication slot's name, or NULL for dmj_<store id> */
};

/** Runs cycles until `*stop` is set (or one cycle with `o->once`), printing a line on stderr
 * per cycle that changed something and every error. PostgreSQL errors are retried with
 * backoff unless `o->once`. Returns 0, or the error that ended the run (already printed). */
DMJ_MUST_CHECK int dmj_sync_run(struct dmj_store *store, const struct dmj_sync_options *o,
                                const volatile sig_atomic_t *stop);

/** Drops the replication slot (o->slot or the store's own) and forgets the position stored
 * with it; the next logical run starts with a new copy. */
DMJ_MUST_CHECK int dmj_sync_drop_slot(struct dmj_store *store, const struct dmj_sync_options *o);

/** Prints where the store stands: "sync.logical <slot> <LSN> <changes applied>" and
 * "sync.watermark <updated_at µs> <id>", each when the store has it. */
DMJ_MUST_CHECK int dmj_sync_print_state(struct dmj_store *store, FILE *out);

#endif

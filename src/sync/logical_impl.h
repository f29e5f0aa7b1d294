/** The changes of the replication stream applied to the store (logical_apply.c), for the
 * follower that reads the stream and commits them (logical.c). */
#ifndef DMJ_LOGICAL_IMPL_H
#define DMJ_LOGICAL_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "dmj/buf.h"
#include "dmj/import.h"
#include "pgoutput.h"
#include "sync_impl.h"

#define JOB_TABLE "posthog_datamodelingjob"

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

/* Remembers a relation message's table (a new one replaces the old: ALTER TABLE). */
int dmj__logical_on_relation(struct follower *f, const struct pgo_message *m);
/* Applies an insert, update, delete or truncate to the open store transaction (and counts
 * it in group_changes when it is the job table's). */
int dmj__logical_on_change(struct follower *f, const struct pgo_message *m);
/* --teams' "{1,2}" as the sorted f->teams. */
int dmj__logical_parse_teams(struct follower *f);

#endif

/* A batch's encoded job records, kept together by team. A flush writes `jobs` in key order
 * (team, created_at, id) and reads each record from here; input comes in time order across
 * teams, so records side by side in input order would be read all over the buffer. Each team
 * instead fills runs of its own (chunks of 512 bytes doubling to 64 KiB, so that a team with
 * one job wastes little), in which its records lie in input order: the flush then reads
 * each chunk front to back. 1M jobs of 20 teams in time order: the `jobs` insert 0.25 ->
 * 0.18 s; in no order within a team (`dmj generate`'s): no change. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "store_impl.h"

#define CHUNK_MIN 512u
#define CHUNK_MAX (64u << 10)
#define TEAMS_MIN 64u

/* A team's open chunk: where its next record goes and how much room is left. */
struct dmj__recs_team {
    int32_t team;
    bool taken;
    uint32_t room;
    uint32_t next_chunk; /* the size of the team's next chunk */
    size_t at;
};

void dmj__recs_init(struct dmj__recs *r, size_t max)
{
    memset(r, 0, sizeof *r);
    dmj_buf_init(&r->buf, max);
    dmj_buf_init(&r->scratch, max);
}

void dmj__recs_dispose(struct dmj__recs *r)
{
    dmj_buf_dispose(&r->buf);
    dmj_buf_dispose(&r->scratch);
    free(r->teams);
    r->teams = NULL;
    r->cap = r->used = 0;
}

void dmj__recs_reset(struct dmj__recs *r)
{
    dmj_buf_reset(&r->buf);
    if (r->used)
        memset(r->teams, 0, r->cap * sizeof *r->teams);
    r->used = 0;
}

static size_t slot_of(int32_t team, size_t cap)
{
    return ((uint32_t)team * 2654435761u) & (cap - 1);
}

static struct dmj__recs_team *find(struct dmj__recs_team *t, size_t cap, int32_t team)
{
    size_t i = slot_of(team, cap);
    while (t[i].taken && t[i].team != team)
        i = (i + 1) & (cap - 1);
    return &t[i];
}

/* Doubles the table (kept at most half full). */
static int grow_teams(struct dmj__recs *r)
{
    size_t cap = r->cap ? r->cap * 2 : TEAMS_MIN;
    struct dmj__recs_team *t = calloc(cap, sizeof *t);
    if (!t)
        return -ENOMEM;
    for (size_t i = 0; i < r->cap; i++) {
        if (r->teams[i].taken)
            *find(t, cap, r->teams[i].team) = r->teams[i];
    }
    free(r->teams);
    r->teams = t;
    r->cap = cap;
    return 0;
}

int dmj__recs_add_job(struct dmj__recs *r, const struct dmj_job *job, size_t *off, uint32_t *len)
{
    int rc;
    dmj_buf_reset(&r->scratch);
    if ((rc = dmj_codec_encode_job(job, &r->scratch)) != 0)
        return rc;
    if (r->scratch.len > UINT32_MAX)
        return DMJ_ETOOBIG;
    if ((r->used + 1) * 2 > r->cap && (rc = grow_teams(r)) != 0)
        return rc;
    struct dmj__recs_team *t = find(r->teams, r->cap, job->team_id);
    if (!t->taken) {
        t->taken = true;
        t->team = job->team_id;
        t->room = 0;
        t->next_chunk = CHUNK_MIN;
        r->used++;
    }
    uint32_t need = (uint32_t)r->scratch.len;
    if (t->room < need) {
        size_t chunk = need > t->next_chunk ? need : t->next_chunk;
        if ((rc = dmj_buf_reserve(&r->buf, chunk)) != 0)
            return rc;
        t->at = r->buf.len;
        t->room = (uint32_t)chunk;
        r->buf.len += chunk;
        if (t->next_chunk < CHUNK_MAX)
            t->next_chunk *= 2;
    }
    memcpy(r->buf.data + t->at, r->scratch.data, need);
    *off = t->at;
    *len = need;
    t->at += need;
    t->room -= need;
    return 0;
}

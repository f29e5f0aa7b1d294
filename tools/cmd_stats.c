/* dmj stats: how many jobs each team has in each status, how large the store is, and what
 * its change log keeps. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmj/error.h"
#include "dmj/job.h"
#include "dmj/store.h"
#include "dmj/uuid.h"

#include "dmj_tool.h"

static const char usage_text[] = "usage: dmj stats [--db DIR] [--json]\n";
static const char help_text[] =
    "Counts the stored jobs per team and status (hidden duckgres jobs\n"
    "included and counted apart) and prints the store's size and its change\n"
    "log's (entries, bytes, the seqs it keeps); --json prints one JSON object\n"
    "instead.\n";

struct team_count {
    int32_t team_id;
    uint64_t jobs;
    uint64_t hidden;
    uint64_t by_status[DMJ_STATUS_COUNT];
};

struct counts {
    struct team_count *teams;
    size_t n, cap;
};

/* The change log: entries kept, their bytes, and the seqs it keeps (oldest may be newest + 1
 * when everything was pruned). */
struct log_size {
    uint64_t entries, bytes, oldest, newest;
};

static int log_size(struct dmj_store *s, struct log_size *out)
{
    struct dmj_read *r;
    struct log_size l;
    int rc = dmj_read_new(s, &r);
    if (rc)
        return rc;
    rc = dmj_read_begin(r);
    if (rc == 0) {
        rc = dmj_read_change_size(r, &l.entries, &l.bytes);
        if (rc == 0)
            rc = dmj_read_change_bounds_all(r, &l.oldest, &l.newest);
        dmj_read_end(r);
    }
    dmj_read_free(r);
    if (rc == 0)
        *out = l;
    return rc;
}

/* Jobs come in (team, created_at, id) order, so a team's jobs are contiguous: a new entry
 * starts whenever the team changes. */
static int each(void *ctx, const struct dmj_job *job)
{
    struct counts *c = ctx;
    if (c->n == 0 || c->teams[c->n - 1].team_id != job->team_id) {
        if (c->n == c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 64;
            struct team_count *t = realloc(c->teams, cap * sizeof *t);
            if (!t)
                return -ENOMEM;
            c->teams = t;
            c->cap = cap;
        }
        memset(&c->teams[c->n], 0, sizeof c->teams[0]);
        c->teams[c->n++].team_id = job->team_id;
    }
    struct team_count *t = &c->teams[c->n - 1];
    t->jobs++;
    if ((unsigned)job->status < DMJ_STATUS_COUNT)
        t->by_status[job->status]++;
    if (dmj_job_hidden(job))
        t->hidden++;
    return 0;
}

static void print_text(const char *db, const struct counts *c, const struct log_size *l,
                       uint64_t used, uint64_t map)
{
    uint64_t total = 0;
    for (size_t i = 0; i < c->n; i++)
        total += c->teams[i].jobs;
    printf("store %s: %llu bytes used, map size %llu bytes\n", db, (unsigned long long)used,
           (unsigned long long)map);
    printf("%llu jobs in %zu teams\n", (unsigned long long)total, c->n);
    for (size_t i = 0; i < c->n; i++) {
        const struct team_count *t = &c->teams[i];
        printf("team %d: %llu jobs", t->team_id, (unsigned long long)t->jobs);
        for (int s = 0; s < DMJ_STATUS_COUNT; s++)
            printf(", %s %llu", dmj_status_name((enum dmj_status)s),
                   (unsigned long long)t->by_status[s]);
        if (t->hidden)
            printf(" (%llu hidden)", (unsigned long long)t->hidden);
        putchar('\n');
    }
    printf("change log: %llu entries, %llu bytes", (unsigned long long)l->entries,
           (unsigned long long)l->bytes);
    if (l->newest == 0)
        printf(", no seq given out yet\n");
    else if (l->oldest > l->newest)
        printf(", seqs through %llu all pruned\n", (unsigned long long)l->newest);
    else
        printf(", seqs %llu to %llu\n", (unsigned long long)l->oldest,
               (unsigned long long)l->newest);
}

static void print_json(const struct counts *c, const struct log_size *l, uint64_t used,
                       uint64_t map)
{
    uint64_t total = 0;
    for (size_t i = 0; i < c->n; i++)
        total += c->teams[i].jobs;
    printf("{\"used_bytes\":%llu,\"map_size\":%llu,\"jobs\":%llu,\"teams\":[",
           (unsigned long long)used, (unsigned long long)map, (unsigned long long)total);
    for (size_t i = 0; i < c->n; i++) {
        const struct team_count *t = &c->teams[i];
        printf("%s{\"team_id\":%d,\"jobs\":%llu,\"hidden\":%llu,\"by_status\":{", i ? "," : "",
               t->team_id, (unsigned long long)t->jobs, (unsigned long long)t->hidden);
        for (int s = 0; s < DMJ_STATUS_COUNT; s++)
            printf("%s\"%s\":%llu", s ? "," : "", dmj_status_name((enum dmj_status)s),
                   (unsigned long long)t->by_status[s]);
        printf("}}");
    }
    printf("],\"changes\":{\"entries\":%llu,\"bytes\":%llu,\"oldest_seq\":%llu,"
           "\"newest_seq\":%llu}}\n",
           (unsigned long long)l->entries, (unsigned long long)l->bytes,
           (unsigned long long)l->oldest, (unsigned long long)l->newest);
}

int dmj_cmd_stats(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    struct dmj_tool_args a = {.usage = usage_text, .help = help_text};
    bool json = false;
    while (dmj_tool_getopt(&a, argc, argv, longopts) != -1)
        json = true; /* --json, the only option of its own */
    if (a.status >= 0)
        return a.status;
    struct dmj_store *s;
    if (dmj_tool_open(a.db, DMJ_STORE_RDONLY, &s) != 0)
        return DMJ_TOOL_FAIL;
    struct counts counts = {0};
    struct log_size log = {0};
    unsigned long long bad = 0; /* records that do not decode, not counted */
    int rc = dmj_tool_each_job(s, -1, "stats", "not counted", each, &counts, &bad);
    if (rc == 0)
        rc = log_size(s, &log);
    uint64_t used = 0, map = 0;
    dmj_store_sizes(s, &used, &map);
    dmj_store_close(s);
    if (rc == 0) {
        if (json)
            print_json(&counts, &log, used, map);
        else
            print_text(a.db, &counts, &log, used, map);
    }
    free(counts.teams);
    if (rc != 0)
        return dmj_tool_fail("stats", "%s", dmj_strerror(rc));
    if (bad)
        return dmj_tool_fail("stats", "%llu damaged records not counted (see dmj verify)", bad);
    return DMJ_TOOL_OK;
}

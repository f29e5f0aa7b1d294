/* dmj prune: deletes the jobs created before a date (of one team, or all), indexes included,
 * and the change-log entries committed before a date. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmj/error.h"
#include "dmj/store.h"

#include "dmj_tool.h"

static const char usage_text[] =
    "usage: dmj prune [--db DIR] [--before DATE [--team ID]] [--changes-before DATE]\n"
    "                 [--dry-run]\n";
static const char help_text[] =
    "Deletes every job whose created_at is before DATE (YYYY-MM-DD, midnight\n"
    "UTC, or a timestamp as import takes it), in one team or in all, with its\n"
    "index entries, in one transaction. --changes-before drops the change-log\n"
    "entries (the events dmjd streams) committed before DATE, in every team:\n"
    "in each, every entry up to the team's newest of them, so that a reader\n"
    "resuming before it is told it missed some. Both at once are one\n"
    "transaction. --dry-run only counts.\n";

struct victims {
    int64_t before;
    uint8_t (*ids)[16];
    size_t n, cap;
};

/* Collects first, deletes after: a write cannot run inside the read that walks the store. */
static int each(void *ctx, const struct dmj_job *job)
{
    struct victims *v = ctx;
    if (job->created_at >= v->before)
        return 0;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 1024;
        uint8_t(*p)[16] = realloc(v->ids, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        v->ids = p;
        v->cap = cap;
    }
    memcpy(v->ids[v->n++], job->id, 16);
    return 0;
}

/* Whether `dmj sync` follows the store (its watermark is in the store's meta). */
static bool synced(struct dmj_store *s)
{
    struct dmj_read *r;
    char wm[64];
    size_t len;
    bool yes = false;
    if (dmj_read_new(s, &r) != 0)
        return false;
    if (dmj_read_begin(r) == 0) {
        yes = dmj_read_meta(r, "sync.watermark", wm, sizeof wm, &len) != DMJ_ENOTFOUND;
        dmj_read_end(r);
    }
    dmj_read_free(r);
    return yes;
}

int dmj_cmd_prune(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"before", required_argument, NULL, 'b'},
        {"team", required_argument, NULL, 't'},
        {"dry-run", no_argument, NULL, 'n'},
        {"changes-before", required_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    struct dmj_tool_args a = {.usage = usage_text, .help = help_text};
    int64_t team = -1;
    bool has_before = false, has_changes = false, dry_run = false;
    int64_t changes_before = 0;
    uint64_t entries = 0;
    struct victims v = {0};
    int c;
    while ((c = dmj_tool_getopt(&a, argc, argv, longopts)) != -1) {
        switch (c) {
        case 'b':
            if (!dmj_tool_parse_time(optarg, &v.before))
                return dmj_tool_fail("prune", "--before: not a date or timestamp: %s", optarg);
            has_before = true;
            break;
        case 'c':
            if (!dmj_tool_parse_time(optarg, &changes_before))
                return dmj_tool_fail("prune", "--changes-before: not a date or timestamp: %s",
                                     optarg);
            has_changes = true;
            break;
        case 't':
            if (!dmj_tool_parse_int(optarg, 0, INT32_MAX, &team))
                return dmj_tool_fail("prune", "--team: not a team id: %s", optarg);
            break;
        case 'n':
            dry_run = true;
            break;
        }
    }
    if (a.status >= 0)
        return a.status;
    if ((!has_before && !has_changes) || (team >= 0 && !has_before))
        return dmj_tool_usage(usage_text);
    struct dmj_store *s;
    if (dmj_tool_open(a.db, 0, &s) != 0)
        return DMJ_TOOL_FAIL;
    if (has_before && synced(s))
        fprintf(stderr, "dmj prune: warning: dmj sync follows this store: its next cycle copies "
                        "from PostgreSQL every job pruned here that PostgreSQL still has (prune "
                        "there, or sync with --teams)\n");
    int rc = has_before ? dmj_store_each_job(s, (int32_t)team, each, &v) : 0;
    if (rc == 0 && ((!dry_run && v.n > 0) || has_changes)) {
        struct dmj_write *w = NULL;
        rc = dmj_write_begin(s, &w);
        for (size_t i = 0; rc == 0 && !dry_run && i < v.n; i++)
            rc = dmj_write_delete_job(w, v.ids[i]);
        /* after the deletions: their own entries are new, and stay */
        if (rc == 0 && has_changes)
            rc = dmj_write_prune_changes(w, changes_before, &entries);
        if (rc == 0 && !dry_run)
            rc = dmj_write_commit(w, NULL);
        else if (w)
            dmj_write_abort(w);
    }
    dmj_store_close(s);
    free(v.ids);
    if (rc != 0)
        return dmj_tool_fail("prune", "%s (nothing deleted)", dmj_strerror(rc));
    if (has_before)
        printf("%s %zu jobs\n", dry_run ? "would prune" : "pruned", v.n);
    if (has_changes)
        printf("%s %llu change-log entries\n", dry_run ? "would prune" : "pruned",
               (unsigned long long)entries);
    return DMJ_TOOL_OK;
}

/* dmj prune: deletes the jobs created before a date (of one team, or all), indexes included. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmj/error.h"
#include "dmj/store.h"

#include "dmj_tool.h"

static const char usage_text[] =
    "usage: dmj prune [--db DIR] --before DATE [--team ID] [--dry-run]\n";

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

int dmj_cmd_prune(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'd'},   {"before", required_argument, NULL, 'b'},
        {"team", required_argument, NULL, 't'}, {"dry-run", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    const char *db = NULL;
    int64_t team = -1;
    bool has_before = false, dry_run = false;
    struct victims v = {0};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'b':
            if (!dmj_tool_parse_time(optarg, &v.before))
                return dmj_tool_fail("prune", "--before: not a date or timestamp: %s", optarg);
            has_before = true;
            break;
        case 't':
            if (!dmj_tool_parse_int(optarg, 0, INT32_MAX, &team))
                return dmj_tool_fail("prune", "--team: not a team id: %s", optarg);
            break;
        case 'n':
            dry_run = true;
            break;
        case 'h':
            printf("%s\nDeletes every job whose created_at is before DATE (YYYY-MM-DD, midnight\n"
                   "UTC, or a timestamp as import takes it), in one team or in all, with its\n"
                   "index entries, in one transaction. --dry-run only counts them.\n",
                   usage_text);
            return DMJ_TOOL_OK;
        default:
            return dmj_tool_usage(usage_text);
        }
    }
    if (optind != argc || !has_before)
        return dmj_tool_usage(usage_text);
    struct dmj_store *s;
    if (dmj_tool_open(dmj_tool_db(db), 0, &s) != 0)
        return DMJ_TOOL_FAIL;
    int rc = dmj_store_each_job(s, (int32_t)team, each, &v);
    if (rc == 0 && !dry_run && v.n > 0) {
        struct dmj_write *w = NULL;
        rc = dmj_write_begin(s, &w);
        for (size_t i = 0; rc == 0 && i < v.n; i++)
            rc = dmj_write_delete_job(w, v.ids[i]);
        if (rc == 0)
            rc = dmj_write_commit(w, NULL);
        else if (w)
            dmj_write_abort(w);
    }
    dmj_store_close(s);
    free(v.ids);
    if (rc != 0)
        return dmj_tool_fail("prune", "%s (nothing deleted)", dmj_strerror(rc));
    printf("%s %zu jobs\n", dry_run ? "would prune" : "pruned", v.n);
    return DMJ_TOOL_OK;
}

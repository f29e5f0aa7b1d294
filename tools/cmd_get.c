/* dmj get: one job by id, rendered as the API serves it. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "dmj/buf.h"
#include "dmj/error.h"
#include "dmj/json.h"
#include "dmj/store.h"
#include "dmj/uuid.h"

#include "dmj_tool.h"

static const char usage_text[] = "usage: dmj get [--db DIR] [--posthog-api cursor|offset] ID\n";
static const char help_text[] =
    "Prints the job with this UUID (any team) as the API's retrieve renders it: with ten\n"
    "fields (--posthog-api cursor, the default) or twelve (offset, PostHog's current API, as\n"
    "dmjd --posthog-api offset serves it). Exit status 1 when there is no such job (or it is\n"
    "hidden).\n";

int dmj_cmd_get(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"posthog-api", required_argument, NULL, 'a'},
        {NULL, 0, NULL, 0},
    };
    struct dmj_tool_args a = {.usage = usage_text, .help = help_text, .operands = 1};
    bool current = false;
    while (dmj_tool_getopt(&a, argc, argv, longopts) != -1) { /* --posthog-api */
        if (strcmp(optarg, "cursor") != 0 && strcmp(optarg, "offset") != 0)
            return dmj_tool_usage(usage_text);
        current = strcmp(optarg, "offset") == 0;
    }
    if (a.status >= 0)
        return a.status;
    uint8_t id[16];
    if (dmj_uuid_parse(argv[argc - 1], strlen(argv[argc - 1]), id) != 0)
        return dmj_tool_fail("get", "not a UUID: %s", argv[argc - 1]);

    struct dmj_store *s;
    if (dmj_tool_open(a.db, DMJ_STORE_RDONLY, &s) != 0)
        return DMJ_TOOL_FAIL;
    int status = DMJ_TOOL_FAIL;
    struct dmj_read *r = NULL;
    struct dmj_buf out;
    dmj_buf_init(&out, 64u << 20);
    int rc = dmj_read_new(s, &r);
    if (rc == 0)
        rc = dmj_read_begin(r);
    if (rc != 0) {
        dmj_tool_fail("get", "%s", dmj_strerror(rc));
        goto Exit;
    }
    struct dmj_job job;
    rc = dmj_read_job(r, id, &job);
    if (rc == 0)
        rc = current ? dmj_json_add_job_current(&out, &job) : dmj_json_add_job(&out, &job);
    dmj_read_end(r);
    if (rc == DMJ_ENOTFOUND) {
        dmj_tool_fail("get", "no job %s", argv[argc - 1]);
        goto Exit;
    }
    if (rc != 0) {
        dmj_tool_fail("get", "%s", dmj_strerror(rc));
        goto Exit;
    }
    printf("%s\n", out.data);
    status = DMJ_TOOL_OK;
Exit:
    dmj_buf_dispose(&out);
    if (r)
        dmj_read_free(r);
    dmj_store_close(s);
    return status;
}

/* dmj export: every stored job (of one team, or all) as NDJSON that dmj import takes back. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dmj/buf.h"
#include "dmj/error.h"
#include "dmj/json.h"
#include "dmj/store.h"
#include "dmj/uuid.h"

#include "dmj_tool.h"

static const char usage_text[] = "usage: dmj export [--db DIR] [--team ID]\n";
static const char help_text[] =
    "Writes every job of the store (or of one team), hidden ones included, as\n"
    "one JSON object per line on standard output, in (team, created_at, id)\n"
    "order. `dmj import` takes the output back unchanged.\n";

struct out {
    struct dmj_buf buf;
    FILE *f;
};

/* Flushes the rendered lines in large writes rather than one per job. */
static int flush(struct out *o)
{
    if (o->buf.len && fwrite(o->buf.data, 1, o->buf.len, o->f) != o->buf.len)
        return -EIO;
    dmj_buf_reset(&o->buf);
    return 0;
}

static int each(void *ctx, const struct dmj_job *job)
{
    struct out *o = ctx;
    int rc = dmj_json_add_job_full(&o->buf, job);
    if (rc == 0)
        rc = dmj_buf_addc(&o->buf, '\n');
    if (rc == 0 && o->buf.len >= (1u << 20))
        rc = flush(o);
    return rc;
}

int dmj_cmd_export(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"team", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    struct dmj_tool_args a = {.usage = usage_text, .help = help_text};
    int64_t team = -1;
    int c;
    while ((c = dmj_tool_getopt(&a, argc, argv, longopts)) != -1) {
        if (c == 't' && !dmj_tool_parse_int(optarg, 0, INT32_MAX, &team))
            return dmj_tool_fail("export", "--team: not a team id: %s", optarg);
    }
    if (a.status >= 0)
        return a.status;
    struct dmj_store *s;
    if (dmj_tool_open(a.db, DMJ_STORE_RDONLY, &s) != 0)
        return DMJ_TOOL_FAIL;
    struct out o = {.f = stdout};
    dmj_buf_init(&o.buf, 64u << 20);
    unsigned long long bad = 0; /* records that do not decode, skipped */
    int rc = dmj_tool_each_job(s, (int32_t)team, "export", "skipped", each, &o, &bad);
    if (rc == 0)
        rc = flush(&o);
    if (rc == 0 && fflush(stdout) != 0)
        rc = -EIO;
    dmj_buf_dispose(&o.buf);
    dmj_store_close(s);
    if (rc != 0)
        return dmj_tool_fail("export", "%s", dmj_strerror(rc));
    if (bad)
        return dmj_tool_fail("export", "%llu damaged records skipped (see dmj verify)", bad);
    return DMJ_TOOL_OK;
}

/* dmj export: every stored job (of one team, or all) as NDJSON that dmj import takes back. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "dmj/buf.h"
#include "dmj/error.h"
#include "dmj/json.h"
#include "dmj/store.h"
#include "dmj/uuid.h"

#include "dmj_tool.h"

static const char usage_text[] = "usage: dmj export [--db DIR] [--team ID]\n";

struct out {
    struct dmj_buf buf;
    FILE *f;
    unsigned long long bad; /* records that do not decode, skipped */
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

/* A damaged record is named and skipped: one of them must not cost the export every other job. */
static int bad(void *ctx, const uint8_t *id, int err)
{
    struct out *o = ctx;
    dmj_tool_report_bad_job("export", id, err, "skipped");
    o->bad++;
    return 0;
}

int dmj_cmd_export(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'd'},
        {"team", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *db = NULL;
    int64_t team = -1;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 't':
            if (!dmj_tool_parse_int(optarg, 0, INT32_MAX, &team))
                return dmj_tool_fail("export", "--team: not a team id: %s", optarg);
            break;
        case 'h':
            printf("%s\nWrites every job of the store (or of one team), hidden ones included, as\n"
                   "one JSON object per line on standard output, in (team, created_at, id)\n"
                   "order. `dmj import` takes the output back unchanged.\n",
                   usage_text);
            return DMJ_TOOL_OK;
        default:
            return dmj_tool_usage(usage_text);
        }
    }
    if (optind != argc)
        return dmj_tool_usage(usage_text);
    struct dmj_store *s;
    if (dmj_tool_open(dmj_tool_db(db), DMJ_STORE_RDONLY, &s) != 0)
        return DMJ_TOOL_FAIL;
    struct out o = {.f = stdout};
    dmj_buf_init(&o.buf, 64u << 20);
    int rc = dmj_store_each_job_tolerant(s, (int32_t)team, each, bad, &o);
    if (rc == 0)
        rc = flush(&o);
    if (rc == 0 && fflush(stdout) != 0)
        rc = -EIO;
    dmj_buf_dispose(&o.buf);
    dmj_store_close(s);
    if (rc != 0)
        return dmj_tool_fail("export", "%s", dmj_strerror(rc));
    if (o.bad)
        return dmj_tool_fail("export", "%llu damaged records skipped (see dmj verify)", o.bad);
    return DMJ_TOOL_OK;
}

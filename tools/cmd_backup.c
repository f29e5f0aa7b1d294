/* dmj backup: a compacted, consistent copy of the store, taken while it may be serving. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "dmj/error.h"
#include "dmj/store.h"

#include "dmj_tool.h"

static const char usage_text[] = "usage: dmj backup [--db DIR] DEST\n";

int dmj_cmd_backup(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *db = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'h':
            printf("%s\nWrites a compacted copy of the store into directory DEST (created if\n"
                   "absent; it must not hold a store already). Readers and a writer may go on\n"
                   "using the store meanwhile; the copy is one committed state.\n",
                   usage_text);
            return DMJ_TOOL_OK;
        default:
            return dmj_tool_usage(usage_text);
        }
    }
    if (optind + 1 != argc)
        return dmj_tool_usage(usage_text);
    const char *dest = argv[optind];
    if (mkdir(dest, 0750) != 0 && errno != EEXIST)
        return dmj_tool_fail("backup", "%s: %s", dest, strerror(errno));
    struct dmj_store *s;
    if (dmj_tool_open(dmj_tool_db(db), DMJ_STORE_RDONLY, &s) != 0)
        return DMJ_TOOL_FAIL;
    int rc = dmj_store_backup(s, dest);
    dmj_store_close(s);
    if (rc != 0)
        return dmj_tool_fail("backup", "%s: %s", dest, dmj_strerror(rc));
    fprintf(stderr, "dmj backup: copied to %s\n", dest);
    return DMJ_TOOL_OK;
}

/* dmj verify: checks every index of the store against the job records. */
#include <getopt.h>
#include <stdio.h>

#include "dmj/error.h"
#include "dmj/store.h"

#include "dmj_tool.h"

static const char usage_text[] = "usage: dmj verify [--db DIR]\n";

int dmj_cmd_verify(int argc, char **argv)
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
            printf("%s\nChecks that every index entry points at a record that has it and that\n"
                   "every record has all its index entries. Prints one line per problem and\n"
                   "exits with status 1 when there is any.\n",
                   usage_text);
            return DMJ_TOOL_OK;
        default:
            return dmj_tool_usage(usage_text);
        }
    }
    if (optind != argc)
        return dmj_tool_usage(usage_text);
    db = dmj_tool_db(db);
    struct dmj_store *s;
    if (dmj_tool_open(db, DMJ_STORE_RDONLY, &s) != 0)
        return DMJ_TOOL_FAIL;
    int rc = dmj_store_verify(s, stdout);
    dmj_store_close(s);
    fflush(stdout);
    if (rc == DMJ_EBADRECORD)
        return dmj_tool_fail("verify", "the store %s is inconsistent (problems above)", db);
    if (rc != 0)
        return dmj_tool_fail("verify", "%s", dmj_strerror(rc));
    printf("store %s: consistent\n", db);
    return DMJ_TOOL_OK;
}

/* dmj verify: checks every index of the store against the job records, and their text. */
#include <stdio.h>

#include "dmj/error.h"
#include "dmj/store.h"

#include "dmj_tool.h"

static const char usage_text[] = "usage: dmj verify [--db DIR]\n";
static const char help_text[] =
    "Checks that every index entry points at a record that has it, that every record\n"
    "has all its index entries, that every stored string is valid UTF-8 (an older\n"
    "dmj import took overlong forms and surrogates), and that each team's change log\n"
    "runs from past its pruned seq to its counter without a gap. Prints one line per\n"
    "problem and exits with status 1 when there is any.\n";

int dmj_cmd_verify(int argc, char **argv)
{
    const char *db;
    int status = dmj_tool_db_args(argc, argv, 0, usage_text, help_text, &db);
    if (status >= 0)
        return status;
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

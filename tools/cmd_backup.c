/* dmj backup: a compacted, consistent copy of the store, taken while it may be serving. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "dmj/error.h"
#include "dmj/store.h"

#include "dmj_tool.h"

static const char usage_text[] = "usage: dmj backup [--db DIR] DEST\n";
static const char help_text[] =
    "Writes a compacted copy of the store into directory DEST (created if absent; it must\n"
    "not hold a store already). Readers and a writer may go on using the store meanwhile;\n"
    "the copy is one committed state.\n";

int dmj_cmd_backup(int argc, char **argv)
{
    const char *db;
    int status = dmj_tool_db_args(argc, argv, 1, usage_text, help_text, &db);
    if (status >= 0)
        return status;
    const char *dest = argv[argc - 1];
    if (mkdir(dest, 0700) != 0 && errno != EEXIST) /* as dmj_store_backup would make it */
        return dmj_tool_fail("backup", "%s: %s", dest, strerror(errno));
    struct dmj_store *s;
    if (dmj_tool_open(db, DMJ_STORE_RDONLY, &s) != 0)
        return DMJ_TOOL_FAIL;
    int rc = dmj_store_backup(s, dest);
    dmj_store_close(s);
    if (rc != 0)
        return dmj_tool_fail("backup", "%s: %s", dest, dmj_strerror(rc));
    fprintf(stderr, "dmj backup: copied to %s\n", dest);
    return DMJ_TOOL_OK;
}

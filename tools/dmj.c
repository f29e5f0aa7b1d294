/* dmj: the command-line tool's entry point, which hands each subcommand its arguments. */
#include <stdio.h>
#include <string.h>

#include "dmj_tool.h"
#include "dmj_version.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"import", dmj_cmd_import, "load jobs and identities (NDJSON, arrays, API pages, fixtures)"},
    {"export", dmj_cmd_export, "write every job as NDJSON (what import takes back)"},
    {"get", dmj_cmd_get, "print one job as the API renders it"},
    {"stats", dmj_cmd_stats, "jobs per team and status, store size"},
    {"verify", dmj_cmd_verify, "check every index against the records"},
    {"keys", dmj_cmd_keys, "personal API keys: create, list, check, revoke"},
    {"backup", dmj_cmd_backup, "compacted, consistent copy of the store"},
    {"prune", dmj_cmd_prune, "delete jobs created before a date, and old change-log entries"},
    {"generate", dmj_cmd_generate, "deterministic synthetic jobs and fixtures"},
    {"sync", dmj_cmd_sync, "follow PostHog's PostgreSQL: jobs, deletions, identities"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: dmj COMMAND [OPTIONS]   (dmj COMMAND --help for its options)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nThe store is --db DIR, else $DMJ_DB, else DMJ_DB in /etc/default/dmj, else\n"
               "./dmj-data. dmj --version prints the version.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return DMJ_TOOL_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return DMJ_TOOL_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("dmj %s%s%s%s\n", DMJ_VERSION, DMJ_COMMIT[0] ? " (git " : "", DMJ_COMMIT,
               DMJ_COMMIT[0] ? ")" : "");
        return DMJ_TOOL_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "dmj: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return DMJ_TOOL_USAGE;
}

/* Internals of the dmj command-line tool: the subcommands and the helpers they share. */
#ifndef DMJ_TOOL_H
#define DMJ_TOOL_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmj/store.h"

/* Exit statuses: 0 done, 1 failed (bad input, inconsistent store...), 2 bad usage. */
#define DMJ_TOOL_OK 0
#define DMJ_TOOL_FAIL 1
#define DMJ_TOOL_USAGE 2

/* Each subcommand gets its own argv, argv[0] being its name. */
int dmj_cmd_import(int argc, char **argv);
int dmj_cmd_export(int argc, char **argv);
int dmj_cmd_get(int argc, char **argv);
int dmj_cmd_stats(int argc, char **argv);
int dmj_cmd_verify(int argc, char **argv);
int dmj_cmd_keys(int argc, char **argv);
int dmj_cmd_backup(int argc, char **argv);
int dmj_cmd_prune(int argc, char **argv);
int dmj_cmd_generate(int argc, char **argv);
int dmj_cmd_sync(int argc, char **argv);

/* A command's options as dmj_tool_getopt reads them. */
struct dmj_tool_args {
    const char *usage; /* printed with `help` by --help, and on bad usage */
    const char *help;
    int operands;   /* after the options: exactly this many, or DMJ_TOOL_SOME */
    bool no_db;     /* the command opens no store: it takes no --db */
    const char *db; /* once the options end: the store directory (dmj_tool_db) */
    int status;     /* once dmj_tool_getopt returned -1: -1 to go on, else the exit status */
};
#define DMJ_TOOL_SOME (-1) /* one operand or more */

/* getopt_long over the command's own `longopts` (NULL, or ending in a zero entry) and the
 * --db and --help every command takes, which it answers itself, as it does a bad option and
 * a wrong number of operands (left last in argv, from optind: getopt moves them there).
 * Returns the next option of `longopts` (its val), or -1 when the options end or the command
 * is to exit (--help, bad usage): a->status says which. */
int dmj_tool_getopt(struct dmj_tool_args *a, int argc, char **argv, const struct option *longopts);
/* Parses the options of a command that takes only --db and --help, and exactly `operands`
 * operands after them. Returns -1 to go on (`*db` resolved, the operands last in argv: getopt
 * moves them there), else the exit status (--help printed `usage` and `help`; bad usage). */
int dmj_tool_db_args(int argc, char **argv, int operands, const char *usage, const char *help,
                     const char **db);
/* Where a packaged host names its store for the CLI (DMJ_DB=DIR), so that `dmj` needs no --db
 * there; $DMJ_DEFAULTS names another file. */
#define DMJ_TOOL_DEFAULTS "/etc/default/dmj"

/* The store directory: --db if given, else $DMJ_DB, else DMJ_DB in the defaults file, else
 * ./dmj-data. */
const char *dmj_tool_db(const char *opt);
/* Opens the store, printing why not on stderr. */
DMJ_MUST_CHECK int dmj_tool_open(const char *db, unsigned flags, struct dmj_store **out);
/* The same with a map size (0: $DMJ_MAP_SIZE or the store's default). */
DMJ_MUST_CHECK int dmj_tool_open_sized(const char *db, unsigned flags, uint64_t map_size,
                                       struct dmj_store **out);
/* A byte count with an optional K, M, G or T suffix (powers of 1024); false if not one. */
bool dmj_tool_parse_size(const char *s, uint64_t *out);
/* Prints "dmj CMD: " and the message on stderr; returns DMJ_TOOL_FAIL. */
int dmj_tool_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the usage line and a hint on stderr; returns DMJ_TOOL_USAGE. */
int dmj_tool_usage(const char *usage);
/* Whole decimal integer within [min, max]; false if it is not one. */
bool dmj_tool_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);
/* A timestamp in the import grammar, or a bare date YYYY-MM-DD (midnight UTC). */
bool dmj_tool_parse_time(const char *s, int64_t *out_us);
/* dmj_store_each_job_tolerant for the commands that walk the jobs: a record that does not
 * decode is named on stderr ("dmj CMD: job ID: record does not decode (why); WHAT"), counted
 * in *bad, and the walk goes on. */
DMJ_MUST_CHECK int dmj_tool_each_job(struct dmj_store *s, int32_t team_id, const char *cmd,
                                     const char *what,
                                     int (*fn)(void *ctx, const struct dmj_job *job), void *ctx,
                                     unsigned long long *bad);
/* Seconds from a monotonic clock. */
double dmj_tool_now(void);

#endif

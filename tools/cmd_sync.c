/* dmj sync: options for the sync engine (src/sync), which keeps the store a replica of
 * PostHog's PostgreSQL (jobs, deletions, identities). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libpq-fe.h>

#include "dmj/error.h"
#include "dmj/store.h"
#include "sync.h"

#include "dmj_tool.h"

static const char usage_text[] =
    "usage: dmj sync [--postgres-file F | --postgres CONNINFO] [--db DIR] [--interval S]\n"
    "                [--once] [--identities] [--teams LIST] [--teams-mod N:R] [--lag S]\n"
    "                [--full-every K] [--batch N] [--logical | --poll] [--slot NAME]\n"
    "       dmj sync --drop-slot [--slot NAME] [--postgres-file F | --postgres CONNINFO]\n"
    "       dmj sync --status [--db DIR]\n";

/* The one thing a signal handler may touch: set on SIGTERM/SIGINT, read between
 * transactions. A process-wide flag because signals are process-wide. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* ---- options ---------------------------------------------------------------------- */

/* "1,2,3" into the array literal "{1,2,3}" after checking every id (no empty ones). */
static bool parse_teams(const char *list, char **out)
{
    size_t len = strlen(list);
    char *arr = malloc(len + 3);
    if (!arr)
        return false;
    size_t n = 0;
    arr[n++] = '{';
    for (const char *p = list;;) {
        size_t tok = strcspn(p, ",");
        char id_text[16];
        int64_t id;
        if (tok == 0 || tok >= sizeof id_text)
            break;
        memcpy(id_text, p, tok);
        id_text[tok] = '\0';
        if (!dmj_tool_parse_int(id_text, 0, INT32_MAX, &id))
            break;
        n += (size_t)sprintf(arr + n, "%s%lld", n > 1 ? "," : "", (long long)id);
        if (p[tok] == '\0') {
            arr[n++] = '}';
            arr[n] = '\0';
            *out = arr;
            return true;
        }
        p += tok + 1;
    }
    free(arr);
    return false;
}

/* "N:R" with 0 <= R < N: the shard of the teams whose id modulo N is R (HAProxy's mod(N)). */
static bool parse_teams_mod(const char *arg, int32_t *n_out, int32_t *r_out)
{
    char n_text[16];
    int64_t n, r;
    const char *colon = strchr(arg, ':');
    if (!colon || (size_t)(colon - arg) >= sizeof n_text)
        return false;
    memcpy(n_text, arg, (size_t)(colon - arg));
    n_text[colon - arg] = '\0';
    if (!dmj_tool_parse_int(n_text, 1, INT32_MAX, &n) ||
        !dmj_tool_parse_int(colon + 1, 0, n - 1, &r))
        return false;
    *n_out = (int32_t)n;
    *r_out = (int32_t)r;
    return true;
}

/* PostgreSQL's rule for slot names. */
static bool slot_name_ok(const char *name)
{
    size_t n = strlen(name);
    return n >= 1 && n <= 63 && strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

static bool parse_seconds(const char *s, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0 && v <= max))
        return false;
    *out = v;
    return true;
}

/* The conninfo on the first line of `path` (without its line end), in *out (malloc'd); warns
 * when the file is readable by group or others. A message on stderr and false on failure. */
static bool read_conninfo_file(const char *path, char **out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        dmj_tool_fail("sync", "--postgres-file: %s: %s", path, strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
        fprintf(stderr,
                "dmj sync: warning: %s is readable by group or others (mode %03o); it holds "
                "the connection string: chmod 600 it\n",
                path, (unsigned)(st.st_mode & 0777));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (n < 0) {
        free(line);
        dmj_tool_fail("sync", "--postgres-file: %s: %s", path, err ? strerror(err) : "empty");
        return false;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    *out = line;
    return true;
}

/* True when libpq would read a password from `conninfo` (a keyword or a URI's user:password@);
 * a string libpq cannot parse holds none it would use. */
static bool has_password(const char *conninfo)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &msg);
    bool found = false;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, "password") == 0 && o->val && o->val[0])
            found = true;
    }
    PQconninfoFree(opts);
    PQfreemem(msg);
    return found;
}

static const char help_text[] =
    "Follows PostHog's PostgreSQL table posthog_datamodelingjob into the store, by logical\n"
    "replication when the server allows it (wal_level=logical, a user with REPLICATION, and\n"
    "the publication dmj_jobs existing or the user able to create it), else by polling; the\n"
    "first line says which. Logical replication: a slot (--slot, default dmj_<store id>),\n"
    "a copy from its snapshot, then every commit in order, deletions and TRUNCATE included,\n"
    "applied exactly once (the position is stored with the changes). See docs/deployment.md\n"
    "for max_slot_wal_keep_size: a stopped replica's slot keeps WAL on the server.\n"
    "  --logical            logical replication, or fail saying why it is not possible\n"
    "  --poll               polling, as below, even where logical replication is possible\n"
    "  --slot NAME          the replication slot (one per replica store)\n"
    "  --drop-slot          drops the slot and the position stored with it, then exits\n"
    "  --status             prints where the store stands (slot, LSN and changes applied;\n"
    "                       the polling watermark), then exits\n"
    "Polling: first in\n"
    "full, then every --interval seconds (default 5) the rows whose (updated_at, id) is past\n"
    "the watermark, which is committed in the same store transaction as the rows it covers.\n"
    "Each cycle reads one REPEATABLE READ snapshot; it re-reads the last --lag seconds\n"
    "(default 5) before the watermark for rows committed late with an older updated_at.\n"
    "Rows equal to the stored ones are not written. When the table's count differs from\n"
    "the store's, and every --full-every cycles (default 60), all ids are compared: jobs\n"
    "PostgreSQL no longer has are deleted, rows with a NULL updated_at are upserted.\n"
    "  --postgres-file F    the libpq connection string or URI on F's first line (F should\n"
    "                       not be readable by group or others: a warning says so)\n"
    "  --postgres CONNINFO  the same on the command line, where every local user can read it\n"
    "                       (`ps`): a warning when it holds a password\n"
    "                       Without either: $DMJ_POSTGRES, else libpq's own sources (PG*\n"
    "                       variables, PGSERVICE, ~/.pgpass or PGPASSFILE). For a PostgreSQL\n"
    "                       on another machine add sslmode=verify-full (and sslrootcert=F):\n"
    "                       libpq's default, prefer, lets anyone on the path feed sync rows\n"
    "  --once               one cycle, then exit (status 1 on any error)\n"
    "  --identities         also organizations, teams, users, memberships and API keys;\n"
    "                       those PostgreSQL no longer has are deleted from the store if\n"
    "                       a sync wrote them (not those only `dmj import` or `dmj keys`\n"
    "                       put there)\n"
    "  --teams LIST         only these teams' jobs (comma-separated ids); others are removed\n"
    "  --teams-mod N:R      only the teams whose id modulo N is R (a shard of N; teams made\n"
    "                       later join it without a restart); with --teams: both must hold\n"
    "  --batch N            rows fetched and committed at a time (default 2000)\n"
    "Without --once, PostgreSQL errors are retried with backoff; SIGTERM/SIGINT stop after\n"
    "the current transaction. One line on stderr per cycle that changed something.\n";

int dmj_cmd_sync(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"postgres", required_argument, NULL, 'p'},   {"interval", required_argument, NULL, 'i'},
        {"once", no_argument, NULL, 'o'},             {"identities", no_argument, NULL, 'I'},
        {"teams", required_argument, NULL, 't'},      {"lag", required_argument, NULL, 'l'},
        {"full-every", required_argument, NULL, 'f'}, {"batch", required_argument, NULL, 'b'},
        {"teams-mod", required_argument, NULL, 'm'}, {"postgres-file", required_argument, NULL, 'F'},
        {"logical", no_argument, NULL, 'L'},          {"poll", no_argument, NULL, 'P'},
        {"slot", required_argument, NULL, 's'},       {"drop-slot", no_argument, NULL, 'D'},
        {"status", no_argument, NULL, 'S'},           {NULL, 0, NULL, 0},
    };
    struct dmj_tool_args a = {.usage = usage_text, .help = help_text};
    struct dmj_sync_options o = {.interval = 5, .lag_us = 5000000, .full_every = 60, .batch = 2000};
    double secs;
    int64_t v;
    int c, status = DMJ_TOOL_USAGE;
    const char *conninfo_file = NULL;
    char *conninfo_read = NULL;
    bool drop_slot = false, show_status = false;
    while ((c = dmj_tool_getopt(&a, argc, argv, longopts)) != -1) {
        switch (c) {
        case 'p':
            o.conninfo = optarg;
            break;
        case 'F':
            conninfo_file = optarg;
            break;
        case 'i':
            if (!parse_seconds(optarg, 86400, &o.interval))
                return dmj_tool_fail("sync", "--interval: not a number of seconds: %s", optarg);
            break;
        case 'o':
            o.once = true;
            break;
        case 'L':
        case 'P':
            if (o.mode != DMJ_SYNC_AUTO && o.mode != (c == 'L' ? DMJ_SYNC_LOGICAL : DMJ_SYNC_POLL)) {
                free(o.teams_array);
                return dmj_tool_fail("sync", "--logical and --poll exclude each other");
            }
            o.mode = c == 'L' ? DMJ_SYNC_LOGICAL : DMJ_SYNC_POLL;
            break;
        case 's':
            if (!slot_name_ok(optarg)) {
                free(o.teams_array);
                return dmj_tool_fail("sync", "--slot: 1 to 63 of a-z, 0-9 and _: %s", optarg);
            }
            o.slot = optarg;
            break;
        case 'D':
            drop_slot = true;
            break;
        case 'S':
            show_status = true;
            break;
        case 'I':
            o.identities = true;
            break;
        case 't':
            free(o.teams_array);
            o.teams_array = NULL;
            if (!parse_teams(optarg, &o.teams_array))
                return dmj_tool_fail("sync", "--teams: not a list of team ids: %s", optarg);
            break;
        case 'm':
            if (!parse_teams_mod(optarg, &o.mod_n, &o.mod_r)) {
                free(o.teams_array);
                return dmj_tool_fail("sync", "--teams-mod: not N:R with 0 <= R < N: %s", optarg);
            }
            break;
        case 'l':
            if (!parse_seconds(optarg, 86400, &secs)) {
                free(o.teams_array);
                return dmj_tool_fail("sync", "--lag: not a number of seconds: %s", optarg);
            }
            o.lag_us = (int64_t)(secs * 1e6);
            break;
        case 'f':
        case 'b':
            if (!dmj_tool_parse_int(optarg, c == 'f' ? 0 : 1, 1000000, &v)) {
                free(o.teams_array);
                return dmj_tool_fail("sync", "--%s: not a count: %s",
                                     c == 'f' ? "full-every" : "batch", optarg);
            }
            if (c == 'f')
                o.full_every = (unsigned)v;
            else
                o.batch = (unsigned)v;
            break;
        }
    }
    if (a.status < 0 && ((o.conninfo && conninfo_file) || (show_status && drop_slot)))
        a.status = dmj_tool_usage(usage_text);
    if (a.status >= 0) {
        free(o.teams_array);
        return a.status;
    }
    o.db = a.db;
    if (show_status) {
        struct dmj_store *store;
        free(o.teams_array);
        if (dmj_tool_open(o.db, DMJ_STORE_RDONLY, &store) != 0)
            return DMJ_TOOL_FAIL;
        int rc = dmj_sync_print_state(store, stdout);
        dmj_store_close(store);
        if (rc != 0)
            return dmj_tool_fail("sync", "%s", dmj_strerror(rc));
        return DMJ_TOOL_OK;
    }
    if (conninfo_file) {
        if (!read_conninfo_file(conninfo_file, &conninfo_read)) {
            free(o.teams_array);
            return DMJ_TOOL_FAIL;
        }
        o.conninfo = conninfo_read;
    } else if (o.conninfo) {
        if (has_password(o.conninfo))
            fprintf(stderr, "dmj sync: warning: --postgres holds a password, which every local "
                            "user can read (ps); use --postgres-file, $DMJ_POSTGRES or "
                            "~/.pgpass\n");
    } else {
        /* libpq ignores an empty dbname: its own environment and files decide */
        o.conninfo = getenv("DMJ_POSTGRES");
        if (!o.conninfo)
            o.conninfo = "";
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    status = DMJ_TOOL_FAIL;
    struct dmj_store *store;
    if (dmj_tool_open(o.db, 0, &store) == 0) {
        int rc = drop_slot ? dmj_sync_drop_slot(store, &o) : dmj_sync_run(store, &o, &stop_requested);
        if (rc == 0)
            status = DMJ_TOOL_OK;
        dmj_store_close(store);
    }
    free(o.teams_array);
    free(conninfo_read);
    return status;
}

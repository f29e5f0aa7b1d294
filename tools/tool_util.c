/* Helpers every dmj subcommand shares: the store location, errors, number and date parsing. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmj/error.h"
#include "dmj/store.h"
#include "dmj/time.h"
#include "dmj/uuid.h"

#include "dmj_tool.h"

/* DMJ_DB=DIR (or "DIR", 'DIR') from a shell-style defaults file, into `out`; false when the
 * file or the line is absent. Comments and other variables are skipped. */
static bool db_from_defaults(const char *path, char *out, size_t size)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, "export ", 7) == 0)
            p += 7;
        if (strncmp(p, "DMJ_DB=", 7) != 0)
            continue;
        p += 7;
        size_t n = strcspn(p, "\r\n");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n >= 2 && (p[0] == '"' || p[0] == '\'') && p[n - 1] == p[0]) {
            p++;
            n -= 2;
        }
        if (n > 0 && n < size) {
            memcpy(out, p, n);
            out[n] = '\0';
            found = true; /* the last assignment wins, as in the shell */
        }
    }
    fclose(f);
    return found;
}

const char *dmj_tool_db(const char *opt)
{
    static char from_file[4096]; /* one store per run of the command */
    if (opt && *opt)
        return opt;
    const char *env = getenv("DMJ_DB");
    if (env && *env)
        return env;
    const char *defaults = getenv("DMJ_DEFAULTS"); /* another defaults file (tests) */
    if (db_from_defaults(defaults && *defaults ? defaults : DMJ_TOOL_DEFAULTS, from_file,
                         sizeof from_file))
        return from_file;
    return "./dmj-data";
}

/* At most this many options of a command's own (dmj sync has the most: 15). */
#define MAX_OPTIONS 24

int dmj_tool_getopt(struct dmj_tool_args *a, int argc, char **argv, const struct option *longopts)
{
    /* --db first and --help last, where the commands had them: getopt names the options an
     * ambiguous abbreviation could mean in this order (--d: --db, --dry-run) */
    struct option all[MAX_OPTIONS + 3];
    size_t n = 0;
    if (!a->no_db)
        all[n++] = (struct option){"db", required_argument, NULL, 'd'};
    for (size_t i = 0; longopts && longopts[i].name && i < MAX_OPTIONS; i++)
        all[n++] = longopts[i];
    all[n++] = (struct option){"help", no_argument, NULL, 'h'};
    all[n] = (struct option){NULL, 0, NULL, 0};
    int c;
    while ((c = getopt_long(argc, argv, "", all, NULL)) == 'd')
        a->db = optarg;
    int operands = argc - optind;
    if (c == -1 && (a->operands == DMJ_TOOL_SOME ? operands < 1 : operands != a->operands)) {
        a->status = dmj_tool_usage(a->usage);
    } else if (c == -1) {
        a->status = -1;
        if (!a->no_db)
            a->db = dmj_tool_db(a->db);
    } else if (c == 'h') {
        printf("%s\n%s", a->usage, a->help);
        a->status = DMJ_TOOL_OK;
        c = -1;
    } else if (c == '?' || c == ':') {
        a->status = dmj_tool_usage(a->usage);
        c = -1;
    }
    return c;
}

int dmj_tool_db_args(int argc, char **argv, int operands, const char *usage, const char *help,
                     const char **db)
{
    struct dmj_tool_args a = {.usage = usage, .help = help, .operands = operands};
    while (dmj_tool_getopt(&a, argc, argv, NULL) != -1)
        continue;
    if (a.status >= 0)
        return a.status;
    *db = a.db;
    return -1;
}

int dmj_tool_open_sized(const char *db, unsigned flags, uint64_t map_size, struct dmj_store **out)
{
    int rc = dmj_store_open(db, flags, (size_t)map_size, out);
    if (rc != 0)
        fprintf(stderr, "dmj: cannot open the store %s: %s\n", db, dmj_strerror(rc));
    return rc;
}

int dmj_tool_open(const char *db, unsigned flags, struct dmj_store **out)
{
    return dmj_tool_open_sized(db, flags, 0, out);
}

bool dmj_tool_parse_size(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    unsigned shift = 0;
    switch (*end) {
    case '\0':
        break;
    case 'K':
    case 'k':
        shift = 10;
        end++;
        break;
    case 'M':
    case 'm':
        shift = 20;
        end++;
        break;
    case 'G':
    case 'g':
        shift = 30;
        end++;
        break;
    case 'T':
    case 't':
        shift = 40;
        end++;
        break;
    default:
        return false;
    }
    if (*end != '\0' || n == 0 || n > (UINT64_MAX >> shift))
        return false;
    *out = (uint64_t)n << shift;
    return true;
}

int dmj_tool_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "dmj %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return DMJ_TOOL_FAIL;
}

int dmj_tool_usage(const char *usage)
{
    fprintf(stderr, "%s(see --help)\n", usage);
    return DMJ_TOOL_USAGE;
}

bool dmj_tool_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s)
        return false;
    const char *p = s[0] == '-' ? s + 1 : s;
    if (!*p)
        return false;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
    }
    errno = 0;
    long long n = strtoll(s, NULL, 10);
    if (errno != 0 || n < min || n > max)
        return false;
    *out = n;
    return true;
}

bool dmj_tool_parse_time(const char *s, int64_t *out_us)
{
    size_t len = strlen(s);
    if (len == 10) {
        char full[32];
        snprintf(full, sizeof full, "%sT00:00:00Z", s);
        return dmj_time_parse(full, strlen(full), out_us) == 0;
    }
    return dmj_time_parse(s, len, out_us) == 0;
}

double dmj_tool_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct tolerant_walk {
    int (*fn)(void *ctx, const struct dmj_job *job);
    void *ctx;
    const char *cmd, *what;
    unsigned long long *bad;
};

static int walk_job(void *ctx, const struct dmj_job *job)
{
    struct tolerant_walk *w = ctx;
    return w->fn(w->ctx, job);
}

static int walk_bad(void *ctx, const uint8_t *id, int err)
{
    struct tolerant_walk *w = ctx;
    char text[DMJ_UUID_TEXT_LEN + 1] = "(malformed key)";
    if (id)
        dmj_uuid_format(id, text);
    fprintf(stderr, "dmj %s: job %s: record does not decode (%s); %s\n", w->cmd, text,
            dmj_strerror(err), w->what);
    (*w->bad)++;
    return 0;
}

int dmj_tool_each_job(struct dmj_store *s, int32_t team_id, const char *cmd, const char *what,
                      int (*fn)(void *ctx, const struct dmj_job *job), void *ctx,
                      unsigned long long *bad)
{
    struct tolerant_walk w = {fn, ctx, cmd, what, bad};
    return dmj_store_each_job_tolerant(s, team_id, walk_job, walk_bad, &w);
}

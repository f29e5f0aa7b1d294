/* dmj import: streams files through the import parser into one write transaction (or batches). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dmj/error.h"
#include "dmj/import.h"
#include "dmj/store.h"

#include "dmj_tool.h"

#define READ_SIZE (1u << 20)

static const char usage_text[] =
    "usage: dmj import [--db DIR] [--team ID] [--kind K] [--batch N] [--skip-invalid]\n"
    "                  [--pg-copy] [--dry-run] [--map-size BYTES] FILE...|-\n";

static const char help_text[] =
    "Loads jobs and identities into the store. Each FILE ('-' is standard input) is NDJSON,\n"
    "a JSON array, an API list page or bare array (needs --team), or a fixtures document\n"
    "(organizations, teams, users, organization_memberships, personal_api_keys); gzip is\n"
    "detected from the magic bytes. Jobs are upserted by id.\n\n"
    "  --db DIR        the store (default $DMJ_DB, else ./dmj-data)\n"
    "  --team ID       team of records that carry none (API pages); others must match\n"
    "  --kind K        kind of records without a \"kind\" key: job, team, organization,\n"
    "                  user, membership, personal_api_key\n"
    "  --batch N       commit every N records (default: one transaction for everything)\n"
    "  --skip-invalid  report bad records with their line and go on\n"
    "  --pg-copy       undo PostgreSQL COPY text escaping (\\\\, \\n, octal...) first\n"
    "  --dry-run       parse and validate only; nothing is stored\n"
    "  --map-size N    the store's map size, K/M/G/T suffixes (default $DMJ_MAP_SIZE,\n"
    "                  else 64G; sparse): raise it when the store is full\n\n"
    "Bad input stops the import with FILE:LINE: field: reason and stores nothing of it\n"
    "(with --batch, the batches committed before stay). Exit status 1 then.\n";

struct run {
    struct dmj_store *store;
    struct dmj_write *w;
    bool dry_run;
    uint64_t batch;    /* 0: one transaction */
    uint64_t in_batch; /* records in the open transaction */
    struct dmj_write_stats total;
    const char *file; /* name being read, for messages */
    /* progress */
    bool tty;
    double started, last_progress;
    uint64_t records_before; /* records of the files read before this one */
    uint64_t bytes_before;
    uint64_t total_bytes; /* of all regular files, 0 when unknown */
    bool progress_shown;  /* a progress line without its newline is on the terminal */
    struct dmj_import *imp;
};

static int commit(struct run *r)
{
    struct dmj_write_stats st = {0, 0};
    int rc = dmj_write_commit(r->w, &st);
    r->w = NULL;
    r->in_batch = 0;
    if (rc != 0)
        return rc;
    r->total.inserted += st.inserted;
    r->total.replaced += st.replaced;
    return 0;
}

static int on_record(void *ctx, const struct dmj_import_record *rec)
{
    struct run *r = ctx;
    if (r->dry_run)
        return 0;
    int rc = dmj_import_write(r->w, rec);
    if (rc != 0)
        return rc;
    if (r->batch && ++r->in_batch >= r->batch) {
        rc = commit(r);
        if (rc == 0)
            rc = dmj_write_begin(r->store, &r->w);
    }
    return rc;
}

/* Ends the progress line so that a message starts on a line of its own. */
static void end_progress(struct run *r)
{
    if (r->progress_shown)
        fputc('\n', stderr);
    r->progress_shown = false;
}

static void on_skipped(void *ctx, const struct dmj_import_error *e)
{
    struct run *r = ctx;
    end_progress(r);
    fprintf(stderr, "%s:%llu: %s: %s (skipped)\n", r->file, (unsigned long long)e->line, e->field,
            e->reason);
}

static void progress(struct run *r, bool final)
{
    double now = dmj_tool_now();
    if (!r->tty || (!final && now - r->last_progress < 0.5))
        return;
    r->last_progress = now;
    double secs = now - r->started;
    uint64_t recs = r->records_before + (r->imp ? dmj_import_count(r->imp) : 0);
    uint64_t bytes = r->bytes_before + (r->imp ? dmj_import_bytes_in(r->imp) : 0);
    double rate = secs > 0 ? (double)recs / secs : 0;
    char eta[32] = "";
    if (r->total_bytes > 0 && bytes > 0 && bytes < r->total_bytes && secs > 0)
        snprintf(eta, sizeof eta, ", ETA %.0f s",
                 secs * (double)(r->total_bytes - bytes) / (double)bytes);
    fprintf(stderr, "\r%llu records, %.1f MB, %.0f records/s%s   ", (unsigned long long)recs,
            (double)bytes / 1e6, rate, eta);
    r->progress_shown = true;
    if (final)
        end_progress(r);
}

/* Reads one input through a fresh parser; prints FILE:LINE: field: reason on bad input. */
static int import_file(struct run *r, const char *path, const struct dmj_import_options *o,
                       unsigned char *buf, uint64_t *records, uint64_t *skipped)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "dmj import: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    r->file = path;
    int rc = dmj_import_new(o, &r->imp);
    if (rc != 0)
        goto Close;
    for (;;) {
        ssize_t n = read(fd, buf, READ_SIZE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            fprintf(stderr, "dmj import: %s: %s\n", path, strerror(errno));
            goto Free;
        }
        if (n == 0)
            break;
        rc = dmj_import_feed(r->imp, buf, (size_t)n);
        if (rc != 0)
            break;
        progress(r, false);
    }
    if (rc == 0)
        rc = dmj_import_finish(r->imp);
    if (rc != 0) {
        const struct dmj_import_error *e = dmj_import_last_error(r->imp);
        end_progress(r);
        fprintf(stderr, "%s:%llu: %s: %s\n", path, (unsigned long long)e->line,
                e->field[0] ? e->field : "input", e->reason[0] ? e->reason : dmj_strerror(rc));
    }
    /* "read" counts every record met, the skipped ones too */
    *records += dmj_import_count(r->imp) + dmj_import_skipped(r->imp);
    *skipped += dmj_import_skipped(r->imp);
    r->records_before += dmj_import_count(r->imp);
    r->bytes_before += dmj_import_bytes_in(r->imp);
Free:
    dmj_import_free(r->imp);
    r->imp = NULL;
Close:
    if (fd != STDIN_FILENO)
        close(fd);
    return rc;
}

int dmj_cmd_import(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'd'},     {"team", required_argument, NULL, 't'},
        {"kind", required_argument, NULL, 'k'},   {"batch", required_argument, NULL, 'b'},
        {"skip-invalid", no_argument, NULL, 's'}, {"pg-copy", no_argument, NULL, 'p'},
        {"dry-run", no_argument, NULL, 'n'},      {"map-size", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    struct dmj_import_options o = {0};
    struct run r = {0};
    const char *db = NULL;
    uint64_t map_size = 0;
    int64_t n;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 't':
            if (!dmj_tool_parse_int(optarg, 0, INT32_MAX, &n))
                return dmj_tool_fail("import", "--team: not a team id: %s", optarg);
            o.has_team = true;
            o.team_id = (int32_t)n;
            break;
        case 'k':
            if (dmj_import_kind_parse(optarg, &o.kind) != 0)
                return dmj_tool_fail("import", "--kind: unknown kind: %s", optarg);
            o.has_kind = true;
            break;
        case 'b':
            if (!dmj_tool_parse_int(optarg, 1, INT64_MAX, &n))
                return dmj_tool_fail("import", "--batch: not a positive count: %s", optarg);
            r.batch = (uint64_t)n;
            break;
        case 's':
            o.skip_invalid = true;
            break;
        case 'p':
            o.pg_copy = true;
            break;
        case 'n':
            r.dry_run = true;
            break;
        case 'm':
            if (!dmj_tool_parse_size(optarg, &map_size))
                return dmj_tool_fail("import", "--map-size: not a size: %s", optarg);
            break;
        case 'h':
            printf("%s\n%s", usage_text, help_text);
            return DMJ_TOOL_OK;
        default:
            return dmj_tool_usage(usage_text);
        }
    }
    if (optind >= argc)
        return dmj_tool_usage(usage_text);
    o.record = on_record;
    o.skipped = on_skipped;
    o.ctx = &r;
    r.tty = isatty(STDERR_FILENO) == 1;
    for (int i = optind; i < argc; i++) {
        struct stat st;
        if (strcmp(argv[i], "-") != 0 && stat(argv[i], &st) == 0 && S_ISREG(st.st_mode))
            r.total_bytes += (uint64_t)st.st_size;
    }

    int status = DMJ_TOOL_FAIL;
    unsigned char *buf = malloc(READ_SIZE);
    if (!buf)
        return dmj_tool_fail("import", "out of memory");
    db = dmj_tool_db(db);
    if (!r.dry_run) {
        if (dmj_tool_open_sized(db, 0, map_size, &r.store) != 0)
            goto Free;
        int rc = dmj_write_begin(r.store, &r.w);
        if (rc != 0) {
            dmj_tool_fail("import", "cannot begin a write: %s", dmj_strerror(rc));
            goto Close;
        }
    }
    r.started = r.last_progress = dmj_tool_now();
    uint64_t records = 0, skipped = 0;
    int rc = 0;
    for (int i = optind; i < argc && rc == 0; i++)
        rc = import_file(&r, argv[i], &o, buf, &records, &skipped);
    if (rc == 0 && r.w)
        rc = commit(&r);
    if (r.w) {
        dmj_write_abort(r.w);
        r.w = NULL;
    }
    double secs = dmj_tool_now() - r.started;
    if (rc == 0)
        progress(&r, true);
    if (rc != 0) {
        fprintf(stderr, "dmj import: failed (%s); %s\n", dmj_strerror(rc),
                r.batch ? "batches committed before the error are stored"
                        : "nothing of this import was stored");
        goto Close;
    }
    fprintf(stderr,
            "dmj import: %llu records read, %llu inserted, %llu replaced, %llu skipped, "
            "%llu bytes, %.3f s%s\n",
            (unsigned long long)records, (unsigned long long)r.total.inserted,
            (unsigned long long)r.total.replaced, (unsigned long long)skipped,
            (unsigned long long)r.bytes_before, secs, r.dry_run ? " (dry run)" : "");
    status = DMJ_TOOL_OK;
Close:
    if (r.store)
        dmj_store_close(r.store);
Free:
    free(buf);
    return status;
}

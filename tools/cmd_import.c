/* dmj import: streams files through the import parser into one write transaction (or batches). */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
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
/* Jobs handed from a parser thread to the writer at once, the string bytes of one such batch
 * (a record needing more gets a batch of its own size), and the batches a parser may have
 * waiting: the writer's input stays bounded (~2 MB a batch: ~16 MB for the first half).
 * The second half's parser may run further ahead: the writer takes its batches only once the
 * first half is stored, and with 8 it stopped after 32k jobs and parsed the rest of its half
 * after the first (one core busy out of two while the input is read; 1M jobs: the parse
 * phase took 1.04 s, the first half's parser 0.53 s). 128 batches (~256 MB at most) hold
 * the second half of a 1M-job file. */
#define BATCH_JOBS 4096u
#define BATCH_ARENA (1u << 20)
#define QUEUE_MAX 8u
#define QUEUE_AHEAD_MAX 128u
/* A plain file at least this large is parsed by two threads, one per half
 * ($DMJ_IMPORT_SPLIT_MIN overrides it, so that tests can split small files). */
#define SPLIT_MIN (16u << 20)
#define MAX_SEGS 2

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
    uint64_t identities; /* identity records stored (the write stats count jobs) */
    const char *file; /* name being read, for messages */
    /* progress */
    bool tty;
    double started, last_progress;
    uint64_t records_before; /* records of the files read before this one */
    uint64_t bytes_before;
    uint64_t total_bytes; /* of all regular files, 0 when unknown */
    bool progress_shown;  /* a progress line without its newline is on the terminal */
    struct dmj_import *imp;
    uint64_t piped_records, piped_bytes; /* progress of the file being read by threads */
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

/* Counts a stored record and commits a full --batch. */
static int stored(struct run *r, int rc)
{
    if (rc != 0)
        return rc;
    if (r->batch && ++r->in_batch >= r->batch) {
        rc = commit(r);
        if (rc == 0)
            rc = dmj_write_begin(r->store, &r->w);
    }
    return rc;
}

static int on_record(void *ctx, const struct dmj_import_record *rec)
{
    struct run *r = ctx;
    if (rec->kind != DMJ_IMPORT_JOB)
        r->identities++;
    if (r->dry_run)
        return 0;
    return stored(r, dmj_import_write(r->w, rec));
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
    uint64_t recs = r->records_before + (r->imp ? dmj_import_count(r->imp) : r->piped_records);
    uint64_t bytes = r->bytes_before + (r->imp ? dmj_import_bytes_in(r->imp) : r->piped_bytes);
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

/* Whether the bytes read around a JSON error look like COPY's text escaping of JSON (`\\"`:
 * a string's escaped quote with its backslash doubled). */
static bool looks_like_copy(const unsigned char *buf, size_t n)
{
    return n >= 3 && memmem(buf, n, "\\\\\"", 3) != NULL;
}

/* Prints a parse error as FILE:LINE: field: reason, and the --pg-copy hint when it fits. */
static void report(const char *path, const struct dmj_import_error *e, uint64_t line_off, int rc,
                   bool copy_like)
{
    fprintf(stderr, "%s:%llu: %s: %s\n", path, (unsigned long long)(e->line + line_off),
            e->field[0] ? e->field : "input", e->reason[0] ? e->reason : dmj_strerror(rc));
    if (copy_like && strcmp(e->field, "json") == 0)
        fprintf(stderr, "%s: hint: the input holds \\\\\" (COPY's text escaping of JSON, as "
                        "psql's \\copy writes it): import it with --pg-copy\n",
                path);
}

/* Reads one input through a fresh parser on this thread; prints FILE:LINE: field: reason on
 * bad input. */
static int import_fd(struct run *r, int fd, const char *path, const struct dmj_import_options *o,
                     unsigned char *buf, uint64_t *records, uint64_t *skipped)
{
    int rc = dmj_import_new(o, &r->imp);
    if (rc != 0)
        return rc;
    bool copy_like = false;
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
        if (rc != 0) {
            copy_like = !o->pg_copy && looks_like_copy(buf, (size_t)n);
            break;
        }
        progress(r, false);
    }
    if (rc == 0)
        rc = dmj_import_finish(r->imp);
    if (rc != 0) {
        end_progress(r);
        report(path, dmj_import_last_error(r->imp), 0, rc, copy_like);
    }
    /* "read" counts every record met, the skipped ones too */
    *records += dmj_import_count(r->imp) + dmj_import_skipped(r->imp);
    *skipped += dmj_import_skipped(r->imp);
    r->records_before += dmj_import_count(r->imp);
    r->bytes_before += dmj_import_bytes_in(r->imp);
Free:
    dmj_import_free(r->imp);
    r->imp = NULL;
    return rc;
}


/* ---- parser threads ---------------------------------------------------------------------
 * The writer (this thread, which holds the LMDB write transaction) stores while parser
 * threads parse: each parser copies its records into batches and queues them, and the
 * writer takes the queues in input order. A large plain file is split at a line boundary
 * near its middle between two parsers; the second half counts only if the first parser,
 * arriving at the split, stands between top-level values (NDJSON), else the first parser
 * reads on to the end and the second one's work is dropped. Every outcome is the one the
 * single-threaded reading gives: same records in the same order, same first error. */

/* Jobs (and their strings) parsed by one thread, or one identity record on its own. */
struct batch {
    struct batch *next;
    size_t n;
    struct dmj_import_record *ident;
    uint64_t ident_line;
    uint64_t bytes_in; /* bytes the parser had read when the batch left, for progress */
    char *arena;
    size_t used, cap;
    uint64_t line[BATCH_JOBS];
    struct dmj_job job[BATCH_JOBS];
};

/* One parser thread and the queue between it and the writer. */
struct seg {
    const struct dmj_import_options *o; /* copied with the callback pointed here */
    int fd;
    bool positioned;  /* read with pread from `start` (a regular file) */
    uint64_t start;   /* first byte */
    uint64_t end;     /* first byte not ours; UINT64_MAX: to the end of the input */
    bool may_stop;    /* the first half: stop at `end` if at a boundary */
    bool dry_run;     /* parse only: nothing is queued */
    atomic_bool cancel;
    pthread_t tid;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct batch *head, *tail, *spare, *cur;
    unsigned queued;
    unsigned queue_max; /* QUEUE_MAX, or QUEUE_AHEAD_MAX for the second half */
    /* outcome, under mu once `done` */
    bool done;
    int rc;
    bool read_failed; /* rc is a read error (errno), not a parse error */
    struct dmj_import_error err;
    bool continued; /* the first half went on to the end of the input */
    bool copy_like; /* the bytes read at a parse error looked like COPY text (looks_like_copy) */
    uint64_t count, skipped, bytes_in, end_line;
};

static void batch_free(struct batch *b)
{
    if (b) {
        free(b->ident);
        free(b->arena);
        free(b);
    }
}

/* The string bytes a record holds; with `b`, the strings are also moved into its arena. */
static size_t strs(enum dmj_import_kind kind, void *u, struct batch *b)
{
    struct dmj_str *list[8], *extra = NULL;
    size_t n = 0, n_extra = 0, total = 0;
    switch (kind) {
    case DMJ_IMPORT_JOB: {
        struct dmj_job *j = u;
        list[n++] = &j->error;
        list[n++] = &j->workflow_id;
        list[n++] = &j->workflow_run_id;
        list[n++] = &j->engine;
        list[n++] = &j->run_mode;
        list[n++] = &j->parent_workflow_id;
        break;
    }
    case DMJ_IMPORT_TEAM:
        list[n++] = &((struct dmj_team *)u)->name;
        break;
    case DMJ_IMPORT_ORG:
        list[n++] = &((struct dmj_org *)u)->name;
        break;
    case DMJ_IMPORT_KEY: {
        struct dmj_key *k = u;
        list[n++] = &k->id;
        extra = k->scopes;
        n_extra = k->n_scopes;
        break;
    }
    default:
        break;
    }
    for (size_t i = 0; i < n + n_extra; i++) {
        struct dmj_str *st = i < n ? list[i] : &extra[i - n];
        if (!st->ptr)
            continue;
        total += st->len;
        if (b) {
            if (st->len > 0)
                memcpy(b->arena + b->used, st->ptr, st->len);
            st->ptr = b->arena + b->used;
            b->used += st->len;
        }
    }
    return total;
}

/* Queues the batch being filled; waits while the queue is full. */
static int ship(struct seg *g)
{
    struct batch *b = g->cur;
    if (!b)
        return 0;
    g->cur = NULL;
    pthread_mutex_lock(&g->mu);
    while (g->queued >= g->queue_max && !atomic_load(&g->cancel))
        pthread_cond_wait(&g->cv, &g->mu);
    bool cancel = atomic_load(&g->cancel);
    if (!cancel) {
        b->next = NULL;
        if (g->tail)
            g->tail->next = b;
        else
            g->head = b;
        g->tail = b;
        g->queued++;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    if (cancel) {
        batch_free(b);
        return -ECANCELED;
    }
    return 0;
}

/* A batch for records whose strings take `need` bytes: a spare one when it is big enough. */
static int fresh(struct seg *g, size_t need)
{
    size_t cap = need > BATCH_ARENA ? need : BATCH_ARENA;
    struct batch *b = NULL;
    pthread_mutex_lock(&g->mu);
    if (g->spare && g->spare->cap >= cap) {
        b = g->spare;
        g->spare = b->next;
    }
    pthread_mutex_unlock(&g->mu);
    if (!b) {
        b = malloc(sizeof *b);
        if (!b)
            return -ENOMEM;
        b->arena = malloc(cap);
        if (!b->arena) {
            free(b);
            return -ENOMEM;
        }
        b->cap = cap;
        b->ident = NULL;
    }
    b->n = 0;
    b->used = 0;
    g->cur = b;
    return 0;
}

/* The parser's callback: the record is copied into the current batch. */
static int seg_record(void *ctx, const struct dmj_import_record *rec)
{
    struct seg *g = ctx;
    int rc;
    if (atomic_load(&g->cancel))
        return -ECANCELED;
    if (g->dry_run)
        return 0;
    void *u = (void *)&rec->u;
    size_t need = strs(rec->kind, u, NULL);
    struct batch *b = g->cur;
    bool job = rec->kind == DMJ_IMPORT_JOB;
    if (b && (!job || b->ident || b->n == BATCH_JOBS || need > b->cap - b->used)) {
        if ((rc = ship(g)) != 0)
            return rc;
        b = NULL;
    }
    if (!b) {
        if ((rc = fresh(g, need)) != 0)
            return rc;
        b = g->cur;
    }
    if (job) {
        b->job[b->n] = rec->u.job;
        b->line[b->n] = rec->line;
        strs(DMJ_IMPORT_JOB, &b->job[b->n], b);
        b->n++;
        return 0;
    }
    /* identities are few: one to a batch, on the heap (a key is 7 KiB) */
    b->ident = malloc(sizeof *b->ident);
    if (!b->ident)
        return -ENOMEM;
    memcpy(b->ident, rec, sizeof *rec);
    b->ident_line = rec->line;
    strs(rec->kind, &b->ident->u, b);
    return ship(g);
}

/* Feeds [start, end) of the input (or all of a stream) to `imp`; -errno on a read error. */
static int seg_read(struct seg *g, struct dmj_import *imp, unsigned char *buf, uint64_t from,
                    uint64_t end, int *parse_rc)
{
    uint64_t off = from;
    while (off < end) {
        size_t want = end - off < READ_SIZE ? (size_t)(end - off) : READ_SIZE;
        ssize_t n = g->positioned ? pread(g->fd, buf, want, (off_t)off) : read(g->fd, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        off += (uint64_t)n;
        int rc = dmj_import_feed(imp, buf, (size_t)n);
        if (rc != 0) {
            *parse_rc = rc;
            g->copy_like = !g->o->pg_copy && looks_like_copy(buf, (size_t)n);
            return 0;
        }
        /* what one read gave goes to the writer at once: a slow stream (a pipe, a FIFO)
         * is stored, and its --batch commits seen, as it comes */
        if (g->cur) {
            g->cur->bytes_in = off - g->start;
            if ((rc = ship(g)) != 0) {
                *parse_rc = rc;
                return 0;
            }
        }
    }
    return 0;
}

static void *seg_main(void *arg)
{
    struct seg *g = arg;
    struct dmj_import_options o = *g->o;
    struct dmj_import *imp = NULL;
    unsigned char *buf = malloc(READ_SIZE);
    int rc = buf ? 0 : -ENOMEM, prc = 0;
    bool read_failed = false;
    o.record = seg_record;
    o.skipped = NULL; /* skip_invalid reads on one thread */
    o.ctx = g;
    if (rc == 0)
        rc = dmj_import_new(&o, &imp);
    if (rc == 0) {
        rc = seg_read(g, imp, buf, g->start, g->end, &prc);
        if (rc == 0 && prc == 0 && g->may_stop && !dmj_import_at_boundary(imp)) {
            g->continued = true; /* not NDJSON after all: the rest is ours */
            rc = seg_read(g, imp, buf, g->end, UINT64_MAX, &prc);
        }
        read_failed = rc != 0;
        if (rc == 0 && prc == 0 && (!g->may_stop || g->continued))
            prc = dmj_import_finish(imp);
        if (rc == 0)
            rc = prc;
    }
    if (rc == 0 || !atomic_load(&g->cancel)) {
        /* the records before an error are stored too (--batch keeps whole batches of them) */
        int src = ship(g);
        if (rc == 0)
            rc = src;
    }
    batch_free(g->cur);
    g->cur = NULL;
    pthread_mutex_lock(&g->mu);
    g->rc = rc;
    g->read_failed = read_failed;
    if (imp) {
        g->err = *dmj_import_last_error(imp);
        g->count = dmj_import_count(imp);
        g->skipped = dmj_import_skipped(imp);
        g->bytes_in = dmj_import_bytes_in(imp);
        g->end_line = dmj_import_line(imp);
    }
    g->done = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    dmj_import_free(imp);
    free(buf);
    return NULL;
}

/* Stores a batch's records; a failure is reported with its line as the parser would. */
static int consume(struct run *r, struct batch *b, uint64_t line_off)
{
    int rc = 0;
    uint64_t line = 0;
    if (b->ident) {
        line = b->ident_line;
        rc = stored(r, dmj_import_write(r->w, b->ident));
        if (rc == 0)
            r->identities++;
    }
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        line = b->line[i];
        rc = stored(r, dmj_write_job(r->w, &b->job[i]));
    }
    if (rc != 0) {
        end_progress(r);
        fprintf(stderr, "%s:%llu: record: cannot store: %s\n", r->file,
                (unsigned long long)(line + line_off), dmj_strerror(rc));
    }
    r->piped_records += b->n + (b->ident ? 1 : 0);
    r->piped_bytes = b->bytes_in;
    return rc;
}

/* Where the second half of a plain file starts: just past a newline near the middle, before
 * a '{' (so the halves are NDJSON lines); 0 when the file is not split. */
static uint64_t split_point(int fd, const struct stat *st, const struct dmj_import_options *o)
{
    unsigned char head[2], win[4096];
    uint64_t min = SPLIT_MIN;
    const char *env = getenv("DMJ_IMPORT_SPLIT_MIN"); /* tests split small files */
    if (env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (*env && !*end)
            min = v;
    }
    if (!S_ISREG(st->st_mode) || (uint64_t)st->st_size < min || st->st_size < 2 || o->pg_copy ||
        o->skip_invalid || sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return 0;
    if (pread(fd, head, 2, 0) != 2 || (head[0] == 0x1f && head[1] == 0x8b))
        return 0; /* gzip: one stream */
    uint64_t at = (uint64_t)st->st_size / 2;
    for (int tries = 0; tries < 256; tries++) {
        ssize_t n = pread(fd, win, sizeof win, (off_t)at);
        if (n <= 1)
            return 0;
        const unsigned char *nl = memchr(win, '\n', (size_t)n - 1);
        if (nl)
            return win[nl - win + 1] == '{' ? at + (uint64_t)(nl - win) + 1 : 0;
        at += (uint64_t)n - 1;
    }
    return 0;
}

static void seg_cancel(struct seg *g)
{
    pthread_mutex_lock(&g->mu);
    atomic_store(&g->cancel, true);
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Reads one input on parser threads while this thread stores. */
static int import_piped(struct run *r, int fd, const char *path, const struct stat *st,
                        uint64_t split, const struct dmj_import_options *o, uint64_t *records,
                        uint64_t *skipped)
{
    struct seg segs[MAX_SEGS];
    int nsegs = split ? 2 : 1, rc = 0;
    uint64_t line_off = 0;
    memset(segs, 0, sizeof segs);
    r->piped_records = r->piped_bytes = 0;
    for (int i = 0; i < nsegs; i++) {
        struct seg *g = &segs[i];
        g->o = o;
        g->fd = fd;
        g->positioned = S_ISREG(st->st_mode) && fd != STDIN_FILENO; /* stdin: from where it is */
        g->start = i == 0 ? 0 : split;
        g->end = i == 0 && split ? split : UINT64_MAX;
        g->may_stop = i == 0 && split;
        g->queue_max = i == 0 ? QUEUE_MAX : QUEUE_AHEAD_MAX;
        g->dry_run = r->dry_run;
        atomic_init(&g->cancel, false);
        pthread_mutex_init(&g->mu, NULL);
        pthread_cond_init(&g->cv, NULL);
    }
    for (int i = 0; i < nsegs && rc == 0; i++) {
        rc = -pthread_create(&segs[i].tid, NULL, seg_main, &segs[i]);
        segs[i].started = rc == 0;
    }
    for (int i = 0; i < nsegs && rc == 0; i++) {
        struct seg *g = &segs[i];
        if (i > 0 && segs[0].continued)
            break;
        for (;;) {
            pthread_mutex_lock(&g->mu);
            while (!g->head && !g->done)
                pthread_cond_wait(&g->cv, &g->mu);
            struct batch *b = g->head;
            if (b) {
                g->head = b->next;
                if (!g->head)
                    g->tail = NULL;
                g->queued--;
                pthread_cond_broadcast(&g->cv);
            }
            pthread_mutex_unlock(&g->mu);
            if (!b)
                break;
            rc = consume(r, b, line_off);
            free(b->ident);
            b->ident = NULL;
            pthread_mutex_lock(&g->mu);
            b->next = g->spare; /* recycled: fresh batches would fault their pages in again */
            g->spare = b;
            pthread_mutex_unlock(&g->mu);
            if (rc != 0)
                break;
            progress(r, false);
        }
        if (rc != 0)
            break;
        if (g->rc != 0) {
            rc = g->rc;
            end_progress(r);
            if (g->read_failed) {
                fprintf(stderr, "dmj import: %s: %s\n", path, strerror(-rc));
            } else {
                report(path, &g->err, line_off, rc, g->copy_like);
            }
            break;
        }
        *records += g->count + g->skipped;
        *skipped += g->skipped;
        r->records_before += g->count;
        r->bytes_before += g->bytes_in;
        r->piped_records = r->piped_bytes = 0;
        line_off += g->end_line - 1;
    }
    for (int i = 0; i < nsegs; i++) {
        struct seg *g = &segs[i];
        seg_cancel(g);
        if (g->started)
            pthread_join(g->tid, NULL);
        while (g->head) {
            struct batch *b = g->head;
            g->head = b->next;
            batch_free(b);
        }
        while (g->spare) {
            struct batch *b = g->spare;
            g->spare = b->next;
            batch_free(b);
        }
        pthread_mutex_destroy(&g->mu);
        pthread_cond_destroy(&g->cv);
    }
    return rc;
}

/* Reads one input: on parser threads unless it is a dry run that one thread reads alone, or
 * bad records are to be skipped (their messages then come in order from one thread). */
static int import_file(struct run *r, const char *path, const struct dmj_import_options *o,
                       unsigned char *buf, uint64_t *records, uint64_t *skipped)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "dmj import: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    r->file = path;
    struct stat st;
    int rc;
    if (o->skip_invalid || fstat(fd, &st) != 0) {
        rc = import_fd(r, fd, path, o, buf, records, skipped);
    } else {
        uint64_t split = fd == STDIN_FILENO ? 0 : split_point(fd, &st, o);
        if (r->dry_run && split == 0)
            rc = import_fd(r, fd, path, o, buf, records, skipped);
        else
            rc = import_piped(r, fd, path, &st, split, o, records, skipped);
    }
    if (fd != STDIN_FILENO)
        close(fd);
    return rc;
}

int dmj_cmd_import(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"team", required_argument, NULL, 't'},     {"kind", required_argument, NULL, 'k'},
        {"batch", required_argument, NULL, 'b'},    {"skip-invalid", no_argument, NULL, 's'},
        {"pg-copy", no_argument, NULL, 'p'},        {"dry-run", no_argument, NULL, 'n'},
        {"map-size", required_argument, NULL, 'm'}, {NULL, 0, NULL, 0},
    };
    struct dmj_tool_args a = {.usage = usage_text, .help = help_text, .operands = DMJ_TOOL_SOME};
    struct dmj_import_options o = {0};
    struct run r = {0};
    uint64_t map_size = 0;
    int64_t n;
    int c;
    while ((c = dmj_tool_getopt(&a, argc, argv, longopts)) != -1) {
        switch (c) {
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
        }
    }
    if (a.status >= 0)
        return a.status;
    /* The store's batch and LMDB's dirty pages come and go by the hundred megabytes:
     * glibc would otherwise hand them back and fault them in again (a third of the
     * system time of a 1M-job import). */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
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
    if (!r.dry_run) {
        if (dmj_tool_open_sized(a.db, 0, map_size, &r.store) != 0)
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
            "dmj import: %llu records read, %llu inserted, %llu replaced, %llu identities "
            "stored, %llu skipped, %llu bytes, %.3f s%s\n",
            (unsigned long long)records, (unsigned long long)r.total.inserted,
            (unsigned long long)r.total.replaced, (unsigned long long)r.identities,
            (unsigned long long)skipped,
            (unsigned long long)r.bytes_before, secs, r.dry_run ? " (dry run)" : "");
    status = DMJ_TOOL_OK;
Close:
    if (r.store)
        dmj_store_close(r.store);
Free:
    free(buf);
    return status;
}

/* Fuzz target: arbitrary bytes as an import document, parsed and written into a throw-away
 * store, then read back.
 *
 * The first byte picks the options (bit 0 --pg-copy, bit 1 --skip-invalid, bit 2 --team 7,
 * bit 3 --kind from bits 4-6), the second how the rest is cut into feeds. Checked:
 * - every failure says why;
 * - every job that comes out renders (dmj_json_add_job_full), parses again and renders to the
 *   same bytes (export -> import -> export is stable);
 * - the records go through dmj_import_write into one write transaction, committed when the
 *   import succeeds (as `dmj import` does); each job then reads back from the store rendering
 *   as the last record of its id did (a hidden one reads as absent), and is deleted again;
 * - every few hundred inputs the store's indexes must still agree with its records;
 * - every string of every record is strict UTF-8 by a decoder written here apart from the
 *   importer's (code points decoded, then range-checked), and that decoder and
 *   dmj_utf8_valid agree on the raw input. */
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "dmj/buf.h"
#include "dmj/error.h"
#include "dmj/import.h"
#include "dmj/json.h"
#include "dmj/store.h"
#include "utf8.h"

#define MAX_TRACKED 32   /* jobs per input checked against the store */
#define VERIFY_EVERY 256 /* inputs between index checks */
#define WIPE_EVERY 4096  /* inputs between fresh stores, so that identities do not pile up */

struct check {
    struct dmj_buf first;
    struct dmj_buf second;
    unsigned records;
    struct dmj_write *w;
    int write_rc;
    /* The jobs written by this input: id and rendering (offsets into `renders`). */
    unsigned n_jobs;
    struct {
        uint8_t id[16];
        bool hidden;
        size_t off, len;
    } jobs[MAX_TRACKED];
    struct dmj_buf renders;
};

/* One store per process, on tmpfs: a commit per input must not wait for a disk. */
static struct {
    char dir[64];
    struct dmj_store *store;
    struct dmj_read *read;
    unsigned inputs;
    FILE *devnull;
} fz;

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

static void fz_close(void)
{
    dmj_read_free(fz.read);
    dmj_store_close(fz.store);
    fz.read = NULL;
    fz.store = NULL;
    if (fz.dir[0])
        nftw(fz.dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    fz.dir[0] = '\0';
}

static void fz_cleanup(void)
{
    fz_close();
    if (fz.devnull)
        fclose(fz.devnull);
}

static void fz_open(void)
{
    /* tmpfs when it has room (a container's /dev/shm may have 64 MB), else /tmp. */
    struct statvfs vfs;
    const char *base = "/tmp";
    if (access("/dev/shm", W_OK) == 0 && statvfs("/dev/shm", &vfs) == 0 &&
        (uint64_t)vfs.f_bavail * vfs.f_frsize >= (uint64_t)512 << 20)
        base = "/dev/shm";
    snprintf(fz.dir, sizeof fz.dir, "%s/dmj-fuzz-import-XXXXXX", base);
    if (mkdtemp(fz.dir) == NULL || dmj_store_open(fz.dir, 0, (size_t)1 << 30, &fz.store) != 0 ||
        dmj_read_new(fz.store, &fz.read) != 0) {
        fprintf(stderr, "fuzz_import: cannot open a store in %s\n", fz.dir);
        fz_close(); /* abort() runs no atexit handler: leave no store behind */
        abort();
    }
}

/* RFC 3629 by decoding: each lead byte's length and payload bits from a table, the code
 * point assembled, then refused when overlong (below the least of its length), a surrogate,
 * or past U+10FFFF. Independent of utf8.c's state machine of second-byte ranges. */
static bool oracle_utf8(const unsigned char *s, size_t n)
{
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        unsigned len = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3
                                  : (b & 0xf8) == 0xf0 ? 4 : 0;
        if (len == 0 || n - i < len)
            return false;
        uint32_t cp = len == 1 ? b : (uint32_t)(b & (0x7f >> len));
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < least[len] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return false;
        i += len;
    }
    return true;
}

static void oracle_str(const char *what, struct dmj_str v)
{
    if (v.ptr && !oracle_utf8((const unsigned char *)v.ptr, v.len)) {
        fprintf(stderr, "record stored with invalid UTF-8 in %s (%zu bytes)\n", what, v.len);
        abort();
    }
}

/* Every string a record would store. */
static void oracle_record(const struct dmj_import_record *rec)
{
    switch (rec->kind) {
    case DMJ_IMPORT_JOB: {
        const struct dmj_job *j = &rec->u.job;
        oracle_str("error", j->error);
        oracle_str("workflow_id", j->workflow_id);
        oracle_str("workflow_run_id", j->workflow_run_id);
        oracle_str("engine", j->engine);
        oracle_str("run_mode", j->run_mode);
        oracle_str("parent_workflow_id", j->parent_workflow_id);
        break;
    }
    case DMJ_IMPORT_TEAM:
        oracle_str("team name", rec->u.team.name);
        break;
    case DMJ_IMPORT_ORG:
        oracle_str("organization name", rec->u.org.name);
        break;
    case DMJ_IMPORT_KEY:
        oracle_str("key id", rec->u.key.id);
        for (unsigned i = 0; i < rec->u.key.n_scopes; i++)
            oracle_str("key scope", rec->u.key.scopes[i]);
        break;
    case DMJ_IMPORT_USER:
    case DMJ_IMPORT_MEMBERSHIP:
        break;
    }
}

static int reparsed(void *ctx, const struct dmj_import_record *rec)
{
    struct check *c = ctx;
    c->records++;
    if (rec->kind != DMJ_IMPORT_JOB)
        abort();
    return dmj_json_add_job_full(&c->second, &rec->u.job);
}

/* Remembers the rendering of a written job; a later record of the same id replaces it. */
static void track_job(struct check *c, const struct dmj_job *job)
{
    unsigned i = 0;
    while (i < c->n_jobs && memcmp(c->jobs[i].id, job->id, 16) != 0)
        i++;
    if (i == MAX_TRACKED)
        return;
    size_t off = c->renders.len;
    if (dmj_buf_add(&c->renders, c->first.data, c->first.len) != 0)
        return;
    if (i == c->n_jobs) {
        memcpy(c->jobs[i].id, job->id, 16);
        c->n_jobs++;
    }
    c->jobs[i].hidden = dmj_job_hidden(job);
    c->jobs[i].off = off;
    c->jobs[i].len = c->first.len;
}

static void round_trip(struct check *c, const struct dmj_job *job)
{
    struct dmj_import_options o = {.record = reparsed, .ctx = c};
    struct dmj_import *imp;
    if (dmj_import_new(&o, &imp) != 0)
        return;
    unsigned before = c->records;
    int rc = dmj_import_feed(imp, c->first.data, c->first.len);
    if (rc == 0)
        rc = dmj_import_finish(imp);
    if (rc != 0) {
        const struct dmj_import_error *e = dmj_import_last_error(imp);
        fprintf(stderr, "export line not importable: %s: %s\n%s\n", e->field, e->reason,
                c->first.data);
        abort();
    }
    dmj_import_free(imp);
    if (c->records != before + 1 || c->first.len != c->second.len ||
        memcmp(c->first.data, c->second.data, c->first.len) != 0) {
        fprintf(stderr, "round trip differs:\n%s\n%s\n", c->first.data,
                c->second.data ? c->second.data : "");
        abort();
    }
    (void)job;
}

static int on_record(void *ctx, const struct dmj_import_record *rec)
{
    struct check *c = ctx;
    oracle_record(rec);
    if (c->w) {
        int rc = dmj_import_write(c->w, rec);
        if (rc != 0) {
            /* Whatever the parser accepts must be storable: -ENOMEM aside, a refusal
             * here is a record the parser should have refused with a reason. */
            fprintf(stderr, "accepted record (line %llu) not storable: %s\n",
                    (unsigned long long)rec->line, dmj_strerror(rc));
            if (rc != -ENOMEM)
                abort();
            c->write_rc = rc;
            return rc; /* the import stops, as `dmj import` does */
        }
    }
    if (rec->kind != DMJ_IMPORT_JOB)
        return 0;
    dmj_buf_reset(&c->first);
    dmj_buf_reset(&c->second);
    if (dmj_json_add_job_full(&c->first, &rec->u.job) != 0)
        return 0; /* too large to render within the bound: nothing to compare */
    round_trip(c, &rec->u.job);
    track_job(c, &rec->u.job);
    return 0;
}

/* The committed jobs read back as written, then go again (identities stay until a wipe). */
static void check_store(struct check *c)
{
    struct dmj_buf got;
    dmj_buf_init(&got, 1u << 20);
    if (dmj_read_begin(fz.read) != 0)
        abort();
    for (unsigned i = 0; i < c->n_jobs; i++) {
        struct dmj_job job;
        int rc = dmj_read_job(fz.read, c->jobs[i].id, &job);
        if (c->jobs[i].hidden) {
            if (rc != DMJ_ENOTFOUND)
                abort();
            continue;
        }
        dmj_buf_reset(&got);
        if (rc != 0 || dmj_json_add_job_full(&got, &job) != 0)
            abort();
        if (got.len != c->jobs[i].len ||
            memcmp(got.data, c->renders.data + c->jobs[i].off, got.len) != 0) {
            fprintf(stderr, "stored job differs:\n%.*s\n%s\n", (int)c->jobs[i].len,
                    c->renders.data + c->jobs[i].off, got.data);
            abort();
        }
    }
    dmj_read_end(fz.read);
    dmj_buf_dispose(&got);

    if (c->n_jobs == 0)
        return;
    struct dmj_write *w;
    if (dmj_write_begin(fz.store, &w) != 0)
        abort();
    for (unsigned i = 0; i < c->n_jobs; i++) {
        if (dmj_write_delete_job(w, c->jobs[i].id) != 0)
            abort();
    }
    if (dmj_write_commit(w, NULL) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    if (fz.store == NULL) {
        fz.devnull = fopen("/dev/null", "w");
        if (!fz.devnull)
            abort();
        fz_open();
        atexit(fz_cleanup);
    }
    if (dmj_utf8_valid(data, size) != oracle_utf8(data, size))
        abort(); /* the two validators disagree */
    uint8_t flags = data[0], cut = data[1];
    data += 2;
    size -= 2;
    struct check c = {.records = 0};
    dmj_buf_init(&c.first, 1u << 20);
    dmj_buf_init(&c.second, 1u << 20);
    dmj_buf_init(&c.renders, 1u << 24);
    struct dmj_import_options o = {
        .pg_copy = flags & 1,
        .skip_invalid = (flags & 2) != 0,
        .has_team = (flags & 4) != 0,
        .team_id = 7,
        .record = on_record,
        .ctx = &c,
    };
    if (flags & 8) {
        o.has_kind = true;
        o.kind = (enum dmj_import_kind)(((flags >> 4) & 7) % 6);
    }
    if (dmj_write_begin(fz.store, &c.w) != 0)
        abort();
    struct dmj_import *imp;
    int rc = dmj_import_new(&o, &imp);
    if (rc != 0) {
        dmj_write_abort(c.w);
        goto Exit;
    }
    /* Feeds of 1 to 256 bytes (0: all at once) exercise tokens, escapes and gzip headers
     * split across reads. */
    size_t step = cut ? cut : size;
    for (size_t off = 0; off < size && rc == 0; off += step)
        rc = dmj_import_feed(imp, data + off, size - off < step ? size - off : step);
    if (rc == 0)
        rc = dmj_import_finish(imp);
    if (rc != 0 && c.write_rc == 0 && dmj_import_last_error(imp)->reason[0] == '\0')
        abort(); /* every failure must say why */
    if (rc != 0 && c.write_rc != 0 && rc != c.write_rc)
        abort(); /* the callback's value comes back as it was */
    dmj_import_free(imp);
    if (rc != 0) {
        dmj_write_abort(c.w);
    } else {
        if (dmj_write_commit(c.w, NULL) != 0)
            abort(); /* everything the parser accepted must be storable */
        check_store(&c);
    }
    if (++fz.inputs % VERIFY_EVERY == 0 && dmj_store_verify(fz.store, fz.devnull) != 0)
        abort();
    if (fz.inputs % WIPE_EVERY == 0) {
        fz_close();
        fz_open();
    }
Exit:
    dmj_buf_dispose(&c.first);
    dmj_buf_dispose(&c.second);
    dmj_buf_dispose(&c.renders);
    return 0;
}

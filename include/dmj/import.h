/** The import parser: NDJSON, JSON arrays, API pages and fixtures documents (docs/import.md),
 * optionally gzip-compressed or in PostgreSQL COPY text escaping, turned into records.
 *
 * A streaming SAX parser (yajl): bytes go in through dmj_import_feed in chunks of any size,
 * and every complete record comes out through the caller's callback while the bytes are
 * being fed. Line numbers are tracked for error messages (`FILE:LINE: field: reason`).
 * A UTF-8 byte order mark at the start is skipped. A job's engine "clickhouse" (the default)
 * comes out as absent (ptr NULL); a raw API key is hashed and never handed out. */
#ifndef DMJ_IMPORT_H
#define DMJ_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmj/error.h"
#include "dmj/identity.h"
#include "dmj/job.h"

struct dmj_import;
struct dmj_write;

enum dmj_import_kind {
    DMJ_IMPORT_JOB = 0,
    DMJ_IMPORT_TEAM,
    DMJ_IMPORT_ORG,
    DMJ_IMPORT_USER,
    DMJ_IMPORT_MEMBERSHIP,
    DMJ_IMPORT_KEY,
};

/** One parsed and validated record. Every pointer in it (strings of the job or identity)
 * lives until the callback returns. */
struct dmj_import_record {
    enum dmj_import_kind kind;
    uint64_t line; /**< line of the record's opening brace, from 1 */
    union {
        struct dmj_job job;
        struct dmj_team team;
        struct dmj_org org;
        struct dmj_user user;
        struct dmj_membership membership;
        struct dmj_key key;
    } u;
};

/** What went wrong where: `field` names the bad key, or is "json" for a syntax error,
 * "gzip" for a bad compressed stream, "record" for a record the callback refused, "input"
 * for anything else; `reason` is a short phrase. */
struct dmj_import_error {
    uint64_t line;
    char field[64];
    char reason[192];
};

struct dmj_import_options {
    bool has_team;   /**< --team: the team of records that carry none */
    int32_t team_id; /**< a record with another team_id is refused */
    bool has_kind;   /**< --kind: the kind of records that carry no "kind" key */
    enum dmj_import_kind kind;
    bool pg_copy;      /**< undo PostgreSQL COPY text escaping, line by line, before parsing */
    bool skip_invalid; /**< report bad records through `skipped` and go on */
    /** Called for each record; a non-zero return stops the import with that value. */
    int (*record)(void *ctx, const struct dmj_import_record *rec);
    /** Called for each record skipped with skip_invalid (may be NULL). */
    void (*skipped)(void *ctx, const struct dmj_import_error *err);
    void *ctx;
};

/** Parses "job", "team", "organization" (or "org"), "user", "membership", "personal_api_key"
 * (or "key"); DMJ_EINVAL else. */
DMJ_MUST_CHECK int dmj_import_kind_parse(const char *s, enum dmj_import_kind *out);

/** A parser for one input (one file: line numbers start at 1). `opts` is copied. */
DMJ_MUST_CHECK int dmj_import_new(const struct dmj_import_options *opts, struct dmj_import **out);
void dmj_import_free(struct dmj_import *imp);
/** Parses the next bytes (gzip is detected from the first two bytes and inflated).
 * DMJ_EINVAL on bad input (see dmj_import_last_error), the callback's non-zero value, or
 * -ENOMEM / DMJ_ETOOBIG. After an error the parser accepts nothing more. */
DMJ_MUST_CHECK int dmj_import_feed(struct dmj_import *imp, const void *data, size_t len);
/** Ends the input: DMJ_EINVAL if it stops inside a value or a gzip stream. */
DMJ_MUST_CHECK int dmj_import_finish(struct dmj_import *imp);
/** The error behind the last DMJ_EINVAL. */
const struct dmj_import_error *dmj_import_last_error(const struct dmj_import *imp);
/** Records handed to the callback, and records skipped, so far. */
uint64_t dmj_import_count(const struct dmj_import *imp);
uint64_t dmj_import_skipped(const struct dmj_import *imp);
/** Compressed bytes fed so far (for progress against a file's size). */
uint64_t dmj_import_bytes_in(const struct dmj_import *imp);

/** The line the parser is on: 1 + the newlines fed so far. */
uint64_t dmj_import_line(const struct dmj_import *imp);
/** Whether the input fed so far ends between top-level values, with nothing pending (no open
 * container, no error, plain text without COPY escaping): a fresh parser could then take the
 * rest of the input, which is how an NDJSON file is split between threads. Meaningful when
 * the bytes fed end with a newline (a number at the very end could still go on). */
bool dmj_import_at_boundary(const struct dmj_import *imp);

/** Stores one record through the store's write calls (dmj_write_job, dmj_write_team...). */
DMJ_MUST_CHECK int dmj_import_write(struct dmj_write *w, const struct dmj_import_record *rec);

#endif

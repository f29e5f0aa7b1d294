/** PostgreSQL's logical replication stream as `dmj sync --logical` reads it: the CopyData
 * messages of START_REPLICATION (XLogData, primary keepalive) and, inside XLogData, the
 * messages of the built-in `pgoutput` plugin, protocol version 1 (begin, commit, relation,
 * insert, update, delete, truncate; type and origin are recognised and passed over).
 *
 * Parsing only: no libpq, no allocation. Strings and values point into the message, which
 * must outlive what was parsed from it. Every length is checked against the message's end;
 * a message that does not fit its grammar is DMJ_EINVAL. */
#ifndef DMJ_PGOUTPUT_H
#define DMJ_PGOUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmj/buf.h"
#include "dmj/error.h"

/* PostgreSQL's limit on a table's columns (MaxTupleAttributeNumber). */
#define PGO_MAX_COLUMNS 1664

/* Type OIDs the row conversion treats specially (pg_type.dat). */
enum {
    PGO_BOOL = 16,
    PGO_INT8 = 20,
    PGO_INT2 = 21,
    PGO_INT4 = 23,
    PGO_OID = 26,
    PGO_JSON = 114,
    PGO_FLOAT4 = 700,
    PGO_FLOAT8 = 701,
    PGO_NUMERIC = 1700,
    PGO_JSONB = 3802,
};

struct pgo_text {
    const char *ptr;
    size_t len;
};

/** One CopyData message of the replication stream. */
struct pgo_copy {
    char kind;           /* 'w' XLogData, 'k' keepalive */
    uint64_t wal_start;  /* 'w': where the data starts; 'k': the server's position (walEnd) */
    uint64_t wal_end;    /* 'w' only */
    bool reply_now;      /* 'k': the server asks for a status update at once */
    const uint8_t *data; /* 'w': the pgoutput message */
    size_t len;
};

DMJ_MUST_CHECK int pgo_parse_copy(const uint8_t *p, size_t n, struct pgo_copy *out);

/** A column value of a tuple: 'n' NULL, 'u' an unchanged TOASTed value (not sent), 't' text. */
struct pgo_value {
    char kind;
    struct pgo_text text;
};

struct pgo_tuple {
    uint16_t ncols;
    struct pgo_value *values; /* the caller's array, PGO_MAX_COLUMNS long */
};

struct pgo_column {
    bool key; /* part of the replica identity */
    struct pgo_text name;
    uint32_t type;
};

enum pgo_kind {
    PGO_BEGIN,
    PGO_COMMIT,
    PGO_RELATION,
    PGO_INSERT,
    PGO_UPDATE,
    PGO_DELETE,
    PGO_TRUNCATE,
    PGO_IGNORED, /* type, origin, message: nothing to apply */
};

struct pgo_message {
    enum pgo_kind kind;
    uint64_t lsn;     /* begin: the commit's LSN; commit: the commit's LSN */
    uint64_t end_lsn; /* commit: the end of the commit record (what a replica confirms) */
    uint32_t relid;   /* relation, insert, update, delete */
    /* relation */
    struct pgo_text nspname, relname;
    uint16_t ncols;
    const uint8_t *columns; /* read them with pgo_next_column */
    size_t columns_len;
    /* insert, update (new), delete (old key or old row); update's old one when sent */
    struct pgo_tuple old, new_row;
    bool has_old;
    /* truncate */
    uint32_t nrelids;
    const uint8_t *relids; /* nrelids big-endian OIDs: pgo_relid_at */
};

/** Parses one pgoutput message. `old_values` and `new_values` are the caller's arrays of
 * PGO_MAX_COLUMNS values each, which the tuples point to. */
DMJ_MUST_CHECK int pgo_parse(const uint8_t *p, size_t n, struct pgo_value *old_values,
                             struct pgo_value *new_values, struct pgo_message *out);

/** The next column of a relation message: `*pos` starts at 0. */
DMJ_MUST_CHECK int pgo_next_column(const struct pgo_message *m, size_t *pos,
                                   struct pgo_column *out);

uint32_t pgo_relid_at(const struct pgo_message *m, uint32_t i);

/** Appends the tuple `t` of a relation whose columns are `cols` (t->ncols of them) as the
 * JSON object row_to_json would write: booleans, numbers and json as such, every other type
 * as a string of its text form, NULL as null. An unchanged TOASTed value ('u') is
 * DMJ_ENOTFOUND: the caller reads the row instead. */
DMJ_MUST_CHECK int pgo_row_json(struct dmj_buf *out, const struct pgo_column *cols,
                                const struct pgo_tuple *t);

/** The standby status update that tells the server `lsn` is written, flushed and applied
 * (34 bytes into `out`); `now_us` is microseconds since 2000-01-01 (PostgreSQL's epoch). */
#define PGO_STATUS_LEN 34
void pgo_status_update(uint8_t out[PGO_STATUS_LEN], uint64_t lsn, int64_t now_us,
                       bool reply);

/** "X/Y", PostgreSQL's text form of an LSN; false when `text` is not one. */
bool pgo_lsn_parse(const char *text, uint64_t *out);
/** Writes "X/Y" (at most 17 bytes and a NUL) to `out`. */
void pgo_lsn_format(uint64_t lsn, char out[18]);

#endif

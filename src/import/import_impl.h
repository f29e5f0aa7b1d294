/* Internals shared by import.c (the SAX parser) and import_record.c (fields -> records). */
#ifndef DMJ_IMPORT_IMPL_H
#define DMJ_IMPORT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

#include "dmj/buf.h"
#include "dmj/import.h"

/* Every key the importer knows, across jobs and identities; the rest are ignored. */
enum dmj__import_field {
    DMJ__F_KIND,
    DMJ__F_ID,
    DMJ__F_TEAM_ID,
    DMJ__F_TEAM,
    DMJ__F_SAVED_QUERY_ID,
    DMJ__F_STATUS,
    DMJ__F_ROWS_MATERIALIZED,
    DMJ__F_ERROR,
    DMJ__F_CREATED_AT,
    DMJ__F_LAST_RUN_AT,
    DMJ__F_WORKFLOW_ID,
    DMJ__F_WORKFLOW_RUN_ID,
    DMJ__F_PARENT_WORKFLOW_ID,
    DMJ__F_RUN_MODE,
    DMJ__F_ROWS_EXPECTED,
    DMJ__F_CREATED_BY_ID,
    DMJ__F_ENGINE,
    DMJ__F_STORAGE_DELTA_MIB,
    DMJ__F_UPDATED_AT,
    DMJ__F_PROJECT_ID,
    DMJ__F_ORGANIZATION_ID,
    DMJ__F_NAME,
    DMJ__F_IS_ACTIVE,
    DMJ__F_CURRENT_TEAM_ID,
    DMJ__F_CURRENT_ORGANIZATION_ID,
    DMJ__F_USER_ID,
    DMJ__F_LEVEL,
    DMJ__F_SECURE_VALUE,
    DMJ__F_VALUE,
    DMJ__F_KEY,
    DMJ__F_SCOPES,
    DMJ__F_SCOPED_TEAMS,
    DMJ__F_SCOPED_ORGANIZATIONS,
    DMJ__F_COUNT
};

enum dmj__import_vtype {
    DMJ__V_NONE = 0, /* key absent */
    DMJ__V_NULL,
    DMJ__V_BOOL,
    DMJ__V_NUMBER,  /* raw JSON number text in the arena */
    DMJ__V_STRING,  /* decoded UTF-8 in the arena */
    DMJ__V_ARRAY,   /* elements elems[off .. off+len) */
    DMJ__V_OBJECT,  /* a map or a nested array where a scalar belongs */
    DMJ__V_TOOMANY, /* an array past the element bound */
    DMJ__V_BADTEXT  /* a string that is not valid UTF-8 */
};

/* One value: strings and numbers live at arena.data + off (NUL-terminated), `len` bytes. */
struct dmj__import_value {
    uint8_t type;
    bool b;
    uint64_t line;
    size_t off;
    size_t len;
};

#define DMJ__IMPORT_MAX_ELEMS 2048

/* The keys of the record being parsed. */
struct dmj__import_fields {
    struct dmj__import_value f[DMJ__F_COUNT];
    struct dmj__import_value elems[DMJ__IMPORT_MAX_ELEMS];
    size_t n_elems;
    struct dmj_buf arena;
    uint64_t line;      /* of the opening brace */
    int container_kind; /* kind given by a fixtures array, or -1 */
    int bad_text;       /* the first field with a string of invalid UTF-8, or -1 */
};

/* The field named by a JSON key, or -1 for a key the importer ignores. */
int dmj__import_field_lookup(const char *key, size_t len);
/* Whether the field takes an array value. */
bool dmj__import_field_is_array(int field);
/* Validates the collected fields into `rec` (whose strings point into the arena); on a bad
 * record fills `err` and returns DMJ_EINVAL. */
DMJ_MUST_CHECK int dmj__import_build(const struct dmj__import_fields *fl,
                                     const struct dmj_import_options *o,
                                     struct dmj_import_record *rec, struct dmj_import_error *err);

/* The raw text yajl parses, followed string by string: the bytes of each string by
 * dmj_utf8_step, and its \u escapes, whose surrogates must come in high-low pairs (yajl
 * would turn a lone one into three bytes of a surrogate, or pair a high one with anything).
 * Only strings are followed: outside them any byte is yajl's to judge. */
struct dmj__import_text {
    uint8_t where;  /* outside a string, inside, after a backslash, in \u's digits */
    uint8_t digits; /* hex digits of \u still to come */
    uint16_t unit;  /* the UTF-16 code unit those digits spell */
    uint16_t high;  /* a high surrogate waiting for its low half, or 0 */
    uint8_t utf8;   /* dmj_utf8_step's state */
    bool bad;       /* the string being read, or the last one closed, is not valid */
};

void dmj__import_text_reset(struct dmj__import_text *t);
/* Follows p[0, len), the next bytes of the text. */
void dmj__import_text_scan(struct dmj__import_text *t, const unsigned char *p, size_t len);

/* A token of a line the fast scanner took (import_fast.c): text at line + off, len bytes. */
enum dmj__import_ttype {
    DMJ__T_KEY,
    DMJ__T_STRING,
    DMJ__T_NUMBER,
    DMJ__T_TRUE,
    DMJ__T_FALSE,
    DMJ__T_NULL,
};

struct dmj__import_tok {
    uint8_t type;
    uint32_t off;
    uint32_t len;
};

/* Tokenizes one line (without its newline) that holds one flat JSON object whose strings have
 * no escapes and are valid UTF-8 (dmj_utf8_step), keys and values alternating in `toks`; returns
 * their number, or -1 for a line to give to yajl (anything else, valid or not, or more than
 * `max` tokens). Never reads outside p[0, len). */
int dmj__import_scan_line(const unsigned char *p, size_t len, struct dmj__import_tok *toks,
                          size_t max);

/* The byte stages in front of the JSON parser (import_decode.c): gzip, detected from the
 * first two bytes, then COPY text escapes when asked. Decoded bytes go to `sink`. */
struct dmj__import_decoder {
    bool pg_copy;
    int (*sink)(void *ctx, const unsigned char *p, size_t len);
    void *ctx;
    char why[112]; /* what was wrong with a compressed stream or COPY text (DMJ_EINVAL) */
    const char *why_field; /* "pg-copy" for COPY text, else NULL ("gzip") */
    uint64_t why_line;     /* the line of a COPY text error */
    enum { GZ_DETECT, GZ_PLAIN, GZ_INFLATE } gz;
    unsigned char magic[2];
    size_t n_magic;
    z_stream z;
    bool z_ready;
    bool z_ended; /* the last gzip member ended cleanly */
    unsigned char *zout;
    enum { PG_NORMAL, PG_BACKSLASH, PG_OCTAL, PG_HEX } pg;
    unsigned pg_digits;
    unsigned pg_value;
    unsigned char *pgout;
    unsigned char pg_bad; /* the byte after a backslash that is no COPY escape */
    uint64_t pg_line;     /* 1 + the newlines of the COPY text so far */
    unsigned bom_seen; /* bytes of a UTF-8 byte order mark matched at the start */
    bool bom_done;
};

DMJ_MUST_CHECK int
dmj__import_decoder_init(struct dmj__import_decoder *d, bool pg_copy,
                         int (*sink)(void *ctx, const unsigned char *p, size_t len), void *ctx);
void dmj__import_decoder_dispose(struct dmj__import_decoder *d);
/* Returns the sink's first non-zero result, DMJ_EINVAL (with `why`) or -ENOMEM. */
DMJ_MUST_CHECK int dmj__import_decoder_feed(struct dmj__import_decoder *d, const unsigned char *p,
                                            size_t len);
/* Ends the input: DMJ_EINVAL for a truncated gzip stream; flushes a pending escape. */
DMJ_MUST_CHECK int dmj__import_decoder_finish(struct dmj__import_decoder *d);

#endif

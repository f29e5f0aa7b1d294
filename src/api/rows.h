/** A worker's rendered jobs: each job's JSON kept with the exact bytes of the record it was
 * rendered from, so that a page is an index walk plus copies.
 *
 * A row is found by its job id and served only when the stored record's bytes are equal to
 * the kept ones, byte for byte: a job that changed, was deleted and stored again, or moved to
 * another team is rendered anew, and a commit to other jobs discards nothing. Memory is a
 * ring of fixed size (and a slot table sized from it): what is kept longest is overwritten
 * first. One per worker thread. */
#ifndef DMJ_API_ROWS_H
#define DMJ_API_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmj/error.h"
#include "dmj/job.h"
#include "dmj/store.h"

struct dmj_rows;

/** What a list, `running` or `recent` needs to know of a job, and its JSON. */
struct dmj_row {
    const char *json; /**< the served object; valid until the next dmj_rows_get on the cache */
    size_t json_len;  /**< 0 for a hidden job (never served) */
    uint64_t digest;  /**< dmj_digest_bytes of the JSON (digest.h) */
    enum dmj_status status;
    bool hidden;       /**< engine duckgres: skipped everywhere */
    bool materializes; /**< workflow_id starts with "materialize" */
    bool execute_dag;  /**< workflow_id starts with "execute-dag" */
};

/** The default ring per worker, and what DMJ_JOB_CACHE_MB=N sets instead (0: nothing is kept,
 * each row is decoded and rendered). */
#define DMJ_ROWS_DEFAULT_BYTES ((size_t)16 << 20)

/** A cache keeping up to `bytes` of records and JSON (0: keeps nothing), rendering the
 * cursor generation's ten fields or, with `current`, the offset generation's twelve. */
DMJ_MUST_CHECK int dmj_rows_new(size_t bytes, bool current, struct dmj_rows **out);
void dmj_rows_free(struct dmj_rows *rows);
/** The row of record `rec`: kept, or decoded, rendered and kept. DMJ_EBADRECORD or
 * DMJ_EVERSION for a record that does not decode, -ENOMEM, DMJ_ETOOBIG. */
DMJ_MUST_CHECK int dmj_rows_get(struct dmj_rows *rows, const struct dmj_job_rec *rec,
                                struct dmj_row *out);
/** The walk's next row (hidden ones included), its record in `rec`: from the index entry
 * alone when the job's record was found equal to a kept row in the same committed state,
 * else read and looked up as dmj_rows_get does. DMJ_EEND past the walk's last row. */
DMJ_MUST_CHECK int dmj_rows_next(struct dmj_rows *rows, struct dmj_walk *walk,
                                 struct dmj_job_rec *rec, struct dmj_row *out);
/** Rows found kept and rows rendered since the cache was made. */
void dmj_rows_counts(const struct dmj_rows *rows, uint64_t *kept, uint64_t *rendered);

#endif

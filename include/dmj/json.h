/** JSON output exactly as DRF renders it (docs/api.md): jobs, error bodies, strings.
 *
 * The escaping is DRF's (Python json.dumps, ensure_ascii=False, U+2028/U+2029 escaped), which
 * yajl's generator cannot produce (it leaves U+2028/U+2029 raw), hence a writer of our own. */
#ifndef DMJ_JSON_H
#define DMJ_JSON_H

#include "dmj/buf.h"
#include "dmj/job.h"

/** Appends `"..."` with DRF's escaping of the UTF-8 bytes `s` (ptr NULL appends `null`). */
DMJ_MUST_CHECK int dmj_json_add_string(struct dmj_buf *out, struct dmj_str s);
/** Appends the served object of one job: the ten fields of section 2, in order, compact. */
DMJ_MUST_CHECK int dmj_json_add_job(struct dmj_buf *out, const struct dmj_job *job);
/** The same in PostHog's current generation (docs/api.md, the offset generation): twelve
 * fields, run_mode after status and updated_at after last_run_at. */
DMJ_MUST_CHECK int dmj_json_add_job_current(struct dmj_buf *out, const struct dmj_job *job);
/** Appends every field of the job as one NDJSON object (what `dmj export` writes and
 * `dmj import` takes back unchanged), without the newline. */
DMJ_MUST_CHECK int dmj_json_add_job_full(struct dmj_buf *out, const struct dmj_job *job);
/** Appends PostHog's error body {"type":..,"code":..,"detail":..,"attr":..}; attr may be NULL. */
DMJ_MUST_CHECK int dmj_json_add_error(struct dmj_buf *out, const char *type, const char *code,
                                      const char *detail, const char *attr);

#endif

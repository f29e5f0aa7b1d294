/** The data modeling job record: every field of docs/import.md. */
#ifndef DMJ_JOB_H
#define DMJ_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** A borrowed string: `ptr == NULL` is JSON null; otherwise `len` bytes of UTF-8, not
 * NUL-terminated. Who owns the bytes is said where the string is handed out. */
struct dmj_str {
    const char *ptr;
    size_t len;
};

enum dmj_status {
    DMJ_STATUS_RUNNING = 0,
    DMJ_STATUS_COMPLETED = 1,
    DMJ_STATUS_FAILED = 2,
    DMJ_STATUS_CANCELLED = 3,
    DMJ_STATUS_SKIPPED = 4,
};
#define DMJ_STATUS_COUNT 5

struct dmj_job {
    uint8_t id[16];
    int32_t team_id;
    bool has_saved_query_id;
    uint8_t saved_query_id[16];
    enum dmj_status status;
    int64_t rows_materialized;
    struct dmj_str error;
    int64_t created_at; /**< microseconds, UTC */
    bool has_last_run_at;
    int64_t last_run_at;
    struct dmj_str workflow_id;
    struct dmj_str workflow_run_id;
    bool has_rows_expected;
    int64_t rows_expected;
    /* stored, not served */
    struct dmj_str engine; /**< NULL ptr means the default, "clickhouse" */
    struct dmj_str run_mode;
    struct dmj_str parent_workflow_id;
    bool has_storage_delta_mib;
    double storage_delta_mib;
    bool has_created_by_id;
    int64_t created_by_id;
    bool has_updated_at;
    int64_t updated_at;
};

/** "Running", "Completed", ... */
const char *dmj_status_name(enum dmj_status s);
/** Exact, case-sensitive match of the five names; DMJ_EINVAL else. */
int dmj_status_parse(const char *s, size_t len, enum dmj_status *out);
/** Whether PostHog hides the job (engine "duckgres"). */
bool dmj_job_hidden(const struct dmj_job *job);
/** Whether workflow_id starts with "materialize" (what recent and running select). */
bool dmj_job_materializes(const struct dmj_job *job);

#endif

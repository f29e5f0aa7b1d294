/* The job record's small rules: status names and the two selections PostHog makes on a job. */
#include <string.h>

#include "dmj/error.h"
#include "dmj/job.h"

static const struct {
    const char *name;
    size_t len;
} status_names[DMJ_STATUS_COUNT] = {
    [DMJ_STATUS_RUNNING] = {"Running", 7}, [DMJ_STATUS_COMPLETED] = {"Completed", 9},
    [DMJ_STATUS_FAILED] = {"Failed", 6},   [DMJ_STATUS_CANCELLED] = {"Cancelled", 9},
    [DMJ_STATUS_SKIPPED] = {"Skipped", 7},
};

const char *dmj_status_name(enum dmj_status s)
{
    if ((unsigned)s >= DMJ_STATUS_COUNT)
        return "Unknown";
    return status_names[s].name;
}

int dmj_status_parse(const char *s, size_t len, enum dmj_status *out)
{
    for (unsigned i = 0; i < DMJ_STATUS_COUNT; i++) {
        if (status_names[i].len == len && memcmp(status_names[i].name, s, len) == 0) {
            *out = (enum dmj_status)i;
            return 0;
        }
    }
    return DMJ_EINVAL;
}

static bool str_equal(struct dmj_str s, const char *lit, size_t n)
{
    return s.ptr != NULL && s.len == n && memcmp(s.ptr, lit, n) == 0;
}

bool dmj_job_hidden(const struct dmj_job *job)
{
    return str_equal(job->engine, "duckgres", 8);
}

bool dmj_job_materializes(const struct dmj_job *job)
{
    /* PostHog filters with workflow_id__startswith="materialize": case-sensitive. */
    static const char prefix[] = "materialize";
    const struct dmj_str w = job->workflow_id;
    return w.ptr != NULL && w.len >= sizeof prefix - 1 &&
           memcmp(w.ptr, prefix, sizeof prefix - 1) == 0;
}

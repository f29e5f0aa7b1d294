/* Unit tests of job.c: the status names and the two selections PostHog makes on a job (hidden
 * duckgres jobs, materialization workflows). */
#include <string.h>

#include "check.h"
#include "dmj/error.h"
#include "dmj/job.h"

static void test_status_names(void)
{
    static const struct {
        enum dmj_status s;
        const char *name;
    } names[] = {{DMJ_STATUS_RUNNING, "Running"},     {DMJ_STATUS_COMPLETED, "Completed"},
                 {DMJ_STATUS_FAILED, "Failed"},       {DMJ_STATUS_CANCELLED, "Cancelled"},
                 {DMJ_STATUS_SKIPPED, "Skipped"}};
    CHECK_EQ_INT(sizeof names / sizeof names[0], DMJ_STATUS_COUNT);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        enum dmj_status got = DMJ_STATUS_COUNT;
        CHECK_EQ_STR(dmj_status_name(names[i].s), names[i].name);
        CHECK_EQ_INT(dmj_status_parse(names[i].name, strlen(names[i].name), &got), 0);
        CHECK_EQ_INT(got, names[i].s);
    }
    CHECK_EQ_STR(dmj_status_name(DMJ_STATUS_COUNT), "Unknown");

    /* Exact and case-sensitive; the length is the given one, not the C string's; a refused
     * name leaves the out-parameter alone. */
    static const char *const bad[] = {"running", "RUNNING", "Runnin", "Running ", " Running",
                                      "Complete", "Canceled", "", "Unknown"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum dmj_status got = DMJ_STATUS_SKIPPED;
        CHECK_EQ_INT(dmj_status_parse(bad[i], strlen(bad[i]), &got), DMJ_EINVAL);
        CHECK_EQ_INT(got, DMJ_STATUS_SKIPPED);
    }
    enum dmj_status got = DMJ_STATUS_SKIPPED;
    CHECK_EQ_INT(dmj_status_parse("Failed", 5, &got), DMJ_EINVAL);
    CHECK_EQ_INT(dmj_status_parse("FailedX", 6, &got), 0);
    CHECK_EQ_INT(got, DMJ_STATUS_FAILED);
    CHECK_EQ_INT(dmj_status_parse("Fail\0d", 6, &got), DMJ_EINVAL);
}

static struct dmj_job job_with(const char *engine, const char *workflow_id)
{
    struct dmj_job j;
    memset(&j, 0, sizeof j);
    if (engine)
        j.engine = (struct dmj_str){engine, strlen(engine)};
    if (workflow_id)
        j.workflow_id = (struct dmj_str){workflow_id, strlen(workflow_id)};
    return j;
}

static void test_hidden(void)
{
    struct dmj_job j = job_with("duckgres", NULL);
    CHECK(dmj_job_hidden(&j));
    /* The default engine (no value), clickhouse and near misses are served. */
    static const char *const served[] = {NULL, "clickhouse", "Duckgres", "duckgres ", "duckgre",
                                         "duckgresql", ""};
    for (size_t i = 0; i < sizeof served / sizeof served[0]; i++) {
        j = job_with(served[i], NULL);
        CHECK(!dmj_job_hidden(&j));
    }
    /* Only the given length counts. */
    j = job_with("duckgres!", NULL);
    j.engine.len = 8;
    CHECK(dmj_job_hidden(&j));
}

static void test_materializes(void)
{
    static const char *const yes[] = {"materialize", "materialize-a", "materialize_x_y",
                                      "materializeanything"};
    static const char *const no[] = {NULL, "", "materializ", "Materialize-a", "MATERIALIZE",
                                     " materialize", "other", "xmaterialize"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        struct dmj_job j = job_with(NULL, yes[i]);
        CHECK(dmj_job_materializes(&j));
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        struct dmj_job j = job_with(NULL, no[i]);
        CHECK(!dmj_job_materializes(&j));
    }
    /* A workflow_id cut short by its length is not a prefix match. */
    struct dmj_job j = job_with(NULL, "materialize-a");
    j.workflow_id.len = 10;
    CHECK(!dmj_job_materializes(&j));
}

int main(void)
{
    test_status_names();
    test_hidden();
    test_materializes();
    return check_done();
}

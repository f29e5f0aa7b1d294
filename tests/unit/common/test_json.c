/* Tests of the DRF-exact JSON writer: string escaping, job objects, export records, errors. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dmj/job.h"
#include "dmj/json.h"
#include "dmj/time.h"
#include "dmj/uuid.h"

#include "data/json_strings.inc"

static struct dmj_str S(const char *s) {
    struct dmj_str r = {s, strlen(s)};
    return r;
}

static const struct dmj_str NUL_STR = {NULL, 0};

/* Renders `len` bytes from an exact-size heap copy (ASan catches reads past `len`). */
static int render(struct dmj_buf *b, const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);
    if (!p)
        return -1;
    if (len)
        memcpy(p, s, len);
    struct dmj_str str = {p, len};
    dmj_buf_reset(b);
    int rc = dmj_json_add_string(b, str);
    free(p);
    return rc;
}

static void test_ascii(void)
{
    struct dmj_buf b;
    dmj_buf_init(&b, 1024);
    for (unsigned c = 0; c < 128; c++) {
        char ch = (char)c;
        CHECK_EQ_INT(render(&b, &ch, 1), 0);
        CHECK_EQ_STR(b.data, ascii_want[c]);
        CHECK_EQ_INT(b.len, strlen(ascii_want[c]));
    }
    dmj_buf_dispose(&b);
}

static void test_strings(void)
{
    struct dmj_buf b;
    dmj_buf_init(&b, 1024);
    for (size_t i = 0; i < sizeof strings_want / sizeof strings_want[0]; i++) {
        CHECK_EQ_INT(render(&b, strings_want[i].in, strings_want[i].len), 0);
        CHECK_EQ_STR(b.data, strings_want[i].want);
    }
    /* NULL is JSON null; appends add to what is there. */
    dmj_buf_reset(&b);
    CHECK_EQ_INT(dmj_json_add_string(&b, NUL_STR), 0);
    CHECK_EQ_INT(dmj_json_add_string(&b, S("x")), 0);
    CHECK_EQ_STR(b.data, "null\"x\"");
    /* Bytes that only start U+2028 when complete, or are not UTF-8 at all, pass as they
     * are (import refuses invalid UTF-8; the writer must merely stay in bounds). */
    CHECK_EQ_INT(render(&b, "\xe2", 1), 0);
    CHECK_EQ_STR(b.data, "\"\xe2\"");
    CHECK_EQ_INT(render(&b, "\xe2\x80", 2), 0);
    CHECK_EQ_STR(b.data, "\"\xe2\x80\"");
    CHECK_EQ_INT(render(&b, "\xe2\x80\xa8", 2), 0);
    CHECK_EQ_STR(b.data, "\"\xe2\x80\"");
    CHECK_EQ_INT(render(&b, "\xe2\xe2\x80\xa9\xff", 5), 0);
    CHECK_EQ_STR(b.data, "\"\xe2\\u2029\xff\"");
    dmj_buf_dispose(&b);
}

static void test_bounds(void)
{
    struct dmj_buf b;
    /* "a\nb" renders as 6 bytes: a buffer of 5 refuses it and stays as it was. */
    dmj_buf_init(&b, 5);
    CHECK_EQ_INT(dmj_buf_adds(&b, "[]"), 0);
    CHECK_EQ_INT(dmj_json_add_string(&b, S("a\nb")), DMJ_ETOOBIG);
    CHECK_EQ_STR(b.data, "[]");
    dmj_buf_dispose(&b);
    dmj_buf_init(&b, 6);
    CHECK_EQ_INT(dmj_json_add_string(&b, S("a\nb")), 0);
    CHECK_EQ_STR(b.data, "\"a\\nb\"");
    dmj_buf_dispose(&b);

    /* A long string of mixed runs, checked against a byte-at-a-time rendering. */
    size_t n = 100000;
    char *s = malloc(n), *want = malloc(n * 6 + 3);
    if (!s || !want) {
        free(s);
        free(want);
        return;
    }
    uint32_t state = 7;
    size_t w = 0;
    want[w++] = '"';
    for (size_t i = 0; i < n; i++) {
        state = state * 1103515245u + 12345u;
        unsigned r = (state >> 16) % 40;
        s[i] = r < 30 ? (char)('a' + r % 26) : r < 33 ? '\n' : r < 36 ? '"' : (char)0x1e;
        if (s[i] == '\n') {
            memcpy(want + w, "\\n", 2);
            w += 2;
        } else if (s[i] == '"') {
            memcpy(want + w, "\\\"", 2);
            w += 2;
        } else if (s[i] == 0x1e) {
            memcpy(want + w, "\\u001e", 6);
            w += 6;
        } else {
            want[w++] = s[i];
        }
    }
    want[w++] = '"';
    want[w] = '\0';
    dmj_buf_init(&b, 1 << 20);
    CHECK_EQ_INT(render(&b, s, n), 0);
    CHECK_EQ_INT(b.len, w);
    CHECK(b.len == w && memcmp(b.data, want, w) == 0);
    dmj_buf_dispose(&b);
    free(s);
    free(want);
}

static void set_uuid(uint8_t out[16], const char *text)
{
    int rc = dmj_uuid_parse(text, strlen(text), out);
    CHECK_EQ_INT(rc, 0);
}

static int64_t when(const char *text)
{
    int64_t us = 0;
    int rc = dmj_time_parse(text, strlen(text), &us);
    CHECK_EQ_INT(rc, 0);
    return us;
}

/* A job from the reference peer's samples/01_list_first_page.txt. */
static void sample_job(struct dmj_job *j)
{
    memset(j, 0, sizeof *j);
    set_uuid(j->id, "3f6e1d72-e722-4f67-833c-041d2db8f970");
    j->team_id = 1;
    j->has_saved_query_id = true;
    set_uuid(j->saved_query_id, "2cdc4133-f1f9-41c0-acb4-2ee1a7741fba");
    j->status = DMJ_STATUS_COMPLETED;
    j->rows_materialized = 1288533;
    j->created_at = when("2024-01-30T23:36:02.661258Z");
    j->has_last_run_at = true;
    j->last_run_at = when("2024-01-31T00:28:11.453198Z");
    j->workflow_id = S("materialize-view-2cdc4133-f1f9-41c0-acb4-2ee1a7741fba-2024-01-30T23:36:02."
                       "661258Z");
    j->workflow_run_id = S("7ce5d0bf-acd8-47e3-ac72-f836da90f077");
    j->has_rows_expected = true;
    j->rows_expected = 1328935;
}

/* The same job as the peer serves it, without the closing brace. */
#define SAMPLE_FIELDS                                                                              \
    "{\"id\":\"3f6e1d72-e722-4f67-833c-041d2db8f970\",\"saved_query_id\":\"2cdc4133-f1f9-41c0-"    \
    "acb4-2ee1a7741fba\",\"status\":\"Completed\",\"rows_materialized\":1288533,\"error\":null,"   \
    "\"created_at\":\"2024-01-30T23:36:02.661258Z\",\"last_run_at\":\"2024-01-31T00:28:11."        \
    "453198Z\",\"workflow_id\":\"materialize-view-2cdc4133-f1f9-41c0-acb4-2ee1a7741fba-2024-01-"   \
    "30T23:36:02.661258Z\",\"workflow_run_id\":\"7ce5d0bf-acd8-47e3-ac72-f836da90f077\","          \
    "\"rows_expected\":1328935"

static void test_job(void)
{
    struct dmj_buf b;
    struct dmj_job j;
    dmj_buf_init(&b, 1 << 16);
    sample_job(&j);
    CHECK_EQ_INT(dmj_json_add_job(&b, &j), 0);
    CHECK_EQ_STR(b.data, SAMPLE_FIELDS "}");

    /* Every nullable field null, whole-second time, extreme integers, an escaped error. */
    memset(&j, 0, sizeof j);
    j.status = DMJ_STATUS_FAILED;
    j.rows_materialized = INT64_MIN;
    j.error = S("Code: 241.\n\"x\"\xe2\x80\xa8");
    j.created_at = when("1969-12-31T23:59:59Z");
    j.has_rows_expected = true;
    j.rows_expected = INT64_MAX;
    dmj_buf_reset(&b);
    CHECK_EQ_INT(dmj_json_add_job(&b, &j), 0);
    CHECK_EQ_STR(b.data,
                 "{\"id\":\"00000000-0000-0000-0000-000000000000\",\"saved_query_id\":null,"
                 "\"status\":\"Failed\",\"rows_materialized\":-9223372036854775808,\"error\":"
                 "\"Code: 241.\\n\\\"x\\\"\\u2028\",\"created_at\":\"1969-12-31T23:59:59Z\","
                 "\"last_run_at\":null,\"workflow_id\":null,\"workflow_run_id\":null,"
                 "\"rows_expected\":9223372036854775807}");

    /* The statuses' names. */
    const char *names[] = {"Running", "Completed", "Failed", "Cancelled", "Skipped"};
    for (unsigned s = 0; s < DMJ_STATUS_COUNT; s++) {
        enum dmj_status st = DMJ_STATUS_RUNNING;
        j.status = (enum dmj_status)s;
        dmj_buf_reset(&b);
        CHECK_EQ_INT(dmj_json_add_job(&b, &j), 0);
        char want[64];
        snprintf(want, sizeof want, "\"status\":\"%s\",", names[s]);
        CHECK(strstr(b.data, want) != NULL);
        CHECK_EQ_STR(dmj_status_name((enum dmj_status)s), names[s]);
        CHECK_EQ_INT(dmj_status_parse(names[s], strlen(names[s]), &st), 0);
        CHECK_EQ_INT(st, s);
    }
    dmj_buf_dispose(&b);
}

static void test_job_bounds(void)
{
    /* A failed append leaves the buffer exactly as it was, at every possible maximum. */
    struct dmj_job j;
    struct dmj_buf full;
    sample_job(&j);
    j.error = S("an error with \"quotes\"");
    dmj_buf_init(&full, 1 << 16);
    CHECK_EQ_INT(dmj_json_add_job_full(&full, &j), 0);
    unsigned failures = 0;
    for (size_t max = 2; max < full.len + 4; max++) {
        struct dmj_buf b;
        dmj_buf_init(&b, max);
        int rc = dmj_buf_adds(&b, "[,");
        if (!rc)
            rc = dmj_json_add_job_full(&b, &j);
        int ok = max >= full.len + 2 ? rc == 0
                                     : rc == DMJ_ETOOBIG && b.len == 2 && strcmp(b.data, "[,") == 0;
        failures += !ok;
        dmj_buf_dispose(&b);
    }
    CHECK_EQ_INT(failures, 0);
    dmj_buf_dispose(&full);
}

/* PostHog's current generation: run_mode after status, updated_at after last_run_at; the
 * same text whether written at once or piece by piece near the buffer's maximum. */
static void test_job_current(void)
{
    static const char want_null[] =
        "{\"id\":\"3f6e1d72-e722-4f67-833c-041d2db8f970\",\"saved_query_id\":\"2cdc4133-f1f9-"
        "41c0-acb4-2ee1a7741fba\",\"status\":\"Completed\",\"run_mode\":null,"
        "\"rows_materialized\":1288533,\"error\":null,\"created_at\":\"2024-01-30T23:36:02."
        "661258Z\",\"last_run_at\":\"2024-01-31T00:28:11.453198Z\",\"updated_at\":null,"
        "\"workflow_id\":\"materialize-view-2cdc4133-f1f9-41c0-acb4-2ee1a7741fba-2024-01-30T23:"
        "36:02.661258Z\",\"workflow_run_id\":\"7ce5d0bf-acd8-47e3-ac72-f836da90f077\","
        "\"rows_expected\":1328935}";
    struct dmj_buf b;
    struct dmj_job j;
    dmj_buf_init(&b, 1 << 16);
    sample_job(&j);
    CHECK_EQ_INT(dmj_json_add_job_current(&b, &j), 0);
    CHECK_EQ_STR(b.data, want_null);

    j.run_mode = S("incr\"emental");
    j.has_updated_at = true;
    j.updated_at = when("2024-02-01T00:00:00Z");
    dmj_buf_reset(&b);
    CHECK_EQ_INT(dmj_json_add_job_current(&b, &j), 0);
    CHECK(strstr(b.data, "\"status\":\"Completed\",\"run_mode\":\"incr\\\"emental\","
                         "\"rows_materialized\":") != NULL);
    CHECK(strstr(b.data, "\"last_run_at\":\"2024-01-31T00:28:11.453198Z\",\"updated_at\":"
                         "\"2024-02-01T00:00:00Z\",\"workflow_id\":") != NULL);
    unsigned failures = 0;
    for (size_t max = 2; max < b.len + 4; max++) {
        struct dmj_buf small;
        dmj_buf_init(&small, max);
        int rc = dmj_buf_adds(&small, "[,");
        if (!rc)
            rc = dmj_json_add_job_current(&small, &j);
        int ok = max >= b.len + 2
                     ? rc == 0 && strcmp(small.data + 2, b.data) == 0
                     : rc == DMJ_ETOOBIG && small.len == 2 && strcmp(small.data, "[,") == 0;
        failures += !ok;
        dmj_buf_dispose(&small);
    }
    CHECK_EQ_INT(failures, 0);
    /* The cursor generation's text is unchanged by the stored run_mode and updated_at. */
    dmj_buf_reset(&b);
    CHECK_EQ_INT(dmj_json_add_job(&b, &j), 0);
    CHECK_EQ_STR(b.data, SAMPLE_FIELDS "}");
    dmj_buf_dispose(&b);
}

static void test_job_full(void)
{
    struct dmj_buf b;
    struct dmj_job j;
    dmj_buf_init(&b, 1 << 16);
    sample_job(&j);
    j.team_id = 2147483647;
    CHECK_EQ_INT(dmj_json_add_job_full(&b, &j), 0);
    CHECK_EQ_STR(b.data, SAMPLE_FIELDS
                 ","
                 "\"team_id\":2147483647,\"engine\":\"clickhouse\",\"run_mode\":null,"
                 "\"parent_workflow_id\":null,\"storage_delta_mib\":null,\"created_by_id\":null,"
                 "\"updated_at\":null}");

    j.team_id = -5;
    j.engine = S("duckgres");
    j.run_mode = S("full_refresh");
    j.parent_workflow_id = S("p\tw");
    j.has_storage_delta_mib = true;
    j.storage_delta_mib = 12.5;
    j.has_created_by_id = true;
    j.created_by_id = 7;
    j.has_updated_at = true;
    j.updated_at = when("0001-01-01T00:00:00.000001Z");
    dmj_buf_reset(&b);
    CHECK_EQ_INT(dmj_json_add_job_full(&b, &j), 0);
    const char *tail = strstr(b.data, ",\"team_id\":");
    CHECK(tail != NULL);
    CHECK_EQ_STR(tail, ",\"team_id\":-5,\"engine\":\"duckgres\",\"run_mode\":\"full_refresh\","
                       "\"parent_workflow_id\":\"p\\tw\",\"storage_delta_mib\":12.5,"
                       "\"created_by_id\":7,\"updated_at\":\"0001-01-01T00:00:00.000001Z\"}");
    CHECK(dmj_job_hidden(&j));
    j.engine = S("duckgres ");
    CHECK(!dmj_job_hidden(&j));
    j.engine = NUL_STR;
    CHECK(!dmj_job_hidden(&j));
    dmj_buf_dispose(&b);
}

/* Doubles and Python's repr() of them (Python 3.11). */
static const struct {
    double v;
    const char *repr;
} doubles[] = {
    {0x0.0p+0, "0.0"},
    {-0x0.0p+0, "-0.0"},
    {0x1.0000000000000p+0, "1.0"},
    {0x1.999999999999ap-4, "0.1"},
    {0x1.1c37937e08000p+53, "1e+16"},
    {0x1.c6bf526340000p+49, "1000000000000000.0"},
    {0x1.d6f3454800000p+26, "123456789.125"},
    {0x1.4f8b588e368f1p-17, "1e-05"},
    {0x1.a36e2eb1c432dp-14, "0.0001"},
    {0x1.02e4b6ce5dc68p-13, "0.00012345"},
    {0x1.421f5f40d8376p-23, "1.5e-07"},
    {0x1.249ad2594c37dp+332, "1e+100"},
    {0x0.0000000000001p-1022, "5e-324"},
    {0x1.fffffffffffffp+1023, "1.7976931348623157e+308"},
    {0x1.4000000000000p+1, "2.5"},
    {-0x1.e000000000000p+1, "-3.75"},
    {0x1.5555555555555p-2, "0.3333333333333333"},
    {0x1.0000000000000p+53, "9007199254740992.0"},
    {0x1.0f0cf064dd592p+73, "1e+22"},
    {0x1.34a456d5cfaadp+10, "1234.5678"},
    {-0x1.56e1fc2f8f359p-997, "-1e-300"},
    {0x1.9000000000000p+6, "100.0"},
    {0x1.3333333333333p-2, "0.3"},
};

static void test_doubles(void)
{
    struct dmj_buf b;
    struct dmj_job j;
    dmj_buf_init(&b, 1 << 16);
    memset(&j, 0, sizeof j);
    j.has_storage_delta_mib = true;
    for (size_t i = 0; i < sizeof doubles / sizeof doubles[0]; i++) {
        j.storage_delta_mib = doubles[i].v;
        dmj_buf_reset(&b);
        CHECK_EQ_INT(dmj_json_add_job_full(&b, &j), 0);
        char want[96];
        snprintf(want, sizeof want, "\"storage_delta_mib\":%s,", doubles[i].repr);
        if (!strstr(b.data, want))
            fprintf(stderr, "want %s in %s\n", want, b.data);
        CHECK(strstr(b.data, want) != NULL);
    }
    /* Random doubles print as text that reads back to the same value. */
    uint64_t state = 3;
    unsigned bad = 0;
    for (int i = 0; i < 20000; i++) {
        state = state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
        double v;
        uint64_t bits = state;
        memcpy(&v, &bits, sizeof v);
        if (v != v || v - v != 0) /* NaN and infinities are never stored */
            continue;
        j.storage_delta_mib = v;
        dmj_buf_reset(&b);
        CHECK_EQ_INT(dmj_json_add_job_full(&b, &j), 0);
        const char *p = strstr(b.data, "\"storage_delta_mib\":");
        char *end = NULL;
        double back = p ? strtod(p + 20, &end) : 0;
        if (!p || back != v || !end || *end != ',' || memcmp(&back, &v, sizeof v) != 0)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    dmj_buf_dispose(&b);
}

static void test_error(void)
{
    struct dmj_buf b;
    dmj_buf_init(&b, 1024);
    CHECK_EQ_INT(dmj_json_add_error(&b, "invalid_request", "not_found", "Not found.", NULL), 0);
    CHECK_EQ_STR(b.data,
                 "{\"type\":\"invalid_request\",\"code\":\"not_found\",\"detail\":\"Not found.\","
                 "\"attr\":null}");
    dmj_buf_reset(&b);
    CHECK_EQ_INT(dmj_json_add_error(&b, "validation_error", "invalid_choice",
                                    "Select a valid choice. That choice is not one of the "
                                    "available choices.",
                                    "saved_query_id"),
                 0);
    CHECK_EQ_STR(b.data, "{\"type\":\"validation_error\",\"code\":\"invalid_choice\",\"detail\":"
                         "\"Select a valid choice. That choice is not one of the available "
                         "choices.\",\"attr\":\"saved_query_id\"}");
    dmj_buf_reset(&b);
    CHECK_EQ_INT(dmj_json_add_error(&b, "invalid_request", "method_not_allowed",
                                    "Method \"P\\ST\" not allowed.", NULL),
                 0);
    CHECK_EQ_STR(b.data, "{\"type\":\"invalid_request\",\"code\":\"method_not_allowed\",\"detail\":"
                         "\"Method \\\"P\\\\ST\\\" not allowed.\",\"attr\":null}");
    dmj_buf_dispose(&b);
    /* Too small: refused, buffer unchanged. */
    dmj_buf_init(&b, 40);
    CHECK_EQ_INT(dmj_buf_adds(&b, "x"), 0);
    CHECK_EQ_INT(dmj_json_add_error(&b, "invalid_request", "not_found", "Not found.", NULL),
                 DMJ_ETOOBIG);
    CHECK_EQ_STR(b.data, "x");
    CHECK_EQ_INT(b.len, 1);
    dmj_buf_dispose(&b);
}

static void test_materializes(void)
{
    struct dmj_job j;
    memset(&j, 0, sizeof j);
    CHECK(!dmj_job_materializes(&j));
    j.workflow_id = S("materialize");
    CHECK(dmj_job_materializes(&j));
    j.workflow_id = S("materialize-view-x");
    CHECK(dmj_job_materializes(&j));
    j.workflow_id = S("Materialize-view");
    CHECK(!dmj_job_materializes(&j));
    j.workflow_id = S("materializ");
    CHECK(!dmj_job_materializes(&j));
    j.workflow_id = S("");
    CHECK(!dmj_job_materializes(&j));
    enum dmj_status st = DMJ_STATUS_SKIPPED;
    CHECK_EQ_INT(dmj_status_parse("running", 7, &st), DMJ_EINVAL);
    CHECK_EQ_INT(dmj_status_parse("Running ", 8, &st), DMJ_EINVAL);
    CHECK_EQ_INT(dmj_status_parse("Runnin", 6, &st), DMJ_EINVAL);
    CHECK_EQ_INT(dmj_status_parse("", 0, &st), DMJ_EINVAL);
    CHECK_EQ_INT(st, DMJ_STATUS_SKIPPED);
}

int main(void)
{
    test_ascii();
    test_strings();
    test_bounds();
    test_job();
    test_job_bounds();
    test_job_current();
    test_job_full();
    test_doubles();
    test_error();
    test_materializes();
    return check_done();
}

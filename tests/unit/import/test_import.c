/* Unit tests of the importer's public calls (dmj/import.h): the input forms, field readings,
 * options, errors with their line and field, chunked feeding, and dmj_import_write into a
 * real store in a temporary directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "tmpdir.h"
#include "dmj/import.h"
#include "dmj/store.h"
#include "dmj/uuid.h"

#define ID1 "10000000-0000-4000-8000-000000000001"
#define ID2 "10000000-0000-4000-8000-000000000002"
#define SQ "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"

/* What the callback saw, copied out (record pointers live only during the call). */
struct seen {
    unsigned n;
    struct {
        enum dmj_import_kind kind;
        uint64_t line;
        uint8_t id[16];
        int32_t team;
        enum dmj_status status;
        int64_t created_at;
        int64_t rows_materialized;
        bool has_sq, has_last_run, engine_null, has_rows_expected;
        char engine[16], error[32], workflow_id[32];
        char key_hash[DMJ_KEY_HASH_LEN + 1];
    } r[8];
    unsigned skipped;
    uint64_t skipped_line[8];
    char skipped_field[8][64];
    int stop_at; /* return -1234 from the callback for this record (1-based), 0: never */
    struct dmj_write *w; /* when set, every record also goes to dmj_import_write */
};

static void copy_str(char *out, size_t cap, struct dmj_str s)
{
    size_t n = s.ptr ? (s.len < cap - 1 ? s.len : cap - 1) : 0;
    if (n)
        memcpy(out, s.ptr, n);
    out[n] = '\0';
}

static int on_record(void *ctx, const struct dmj_import_record *rec)
{
    struct seen *s = ctx;
    if (s->stop_at && (int)s->n + 1 == s->stop_at)
        return -1234;
    if (s->n < 8) {
        memset(&s->r[s->n], 0, sizeof s->r[s->n]);
        s->r[s->n].kind = rec->kind;
        s->r[s->n].line = rec->line;
        if (rec->kind == DMJ_IMPORT_JOB) {
            const struct dmj_job *j = &rec->u.job;
            memcpy(s->r[s->n].id, j->id, 16);
            s->r[s->n].team = j->team_id;
            s->r[s->n].status = j->status;
            s->r[s->n].created_at = j->created_at;
            s->r[s->n].rows_materialized = j->rows_materialized;
            s->r[s->n].has_sq = j->has_saved_query_id;
            s->r[s->n].has_last_run = j->has_last_run_at;
            s->r[s->n].has_rows_expected = j->has_rows_expected;
            s->r[s->n].engine_null = j->engine.ptr == NULL;
            copy_str(s->r[s->n].engine, sizeof s->r[s->n].engine, j->engine);
            copy_str(s->r[s->n].error, sizeof s->r[s->n].error, j->error);
            copy_str(s->r[s->n].workflow_id, sizeof s->r[s->n].workflow_id, j->workflow_id);
        } else if (rec->kind == DMJ_IMPORT_KEY) {
            memcpy(s->r[s->n].key_hash, rec->u.key.secure_value, sizeof s->r[s->n].key_hash);
            s->r[s->n].created_at = rec->u.key.has_created_at ? rec->u.key.created_at : -1;
        }
    }
    s->n++;
    return s->w ? dmj_import_write(s->w, rec) : 0;
}

static void on_skipped(void *ctx, const struct dmj_import_error *err)
{
    struct seen *s = ctx;
    if (s->skipped < 8) {
        s->skipped_line[s->skipped] = err->line;
        snprintf(s->skipped_field[s->skipped], sizeof s->skipped_field[0], "%s", err->field);
    }
    s->skipped++;
}

/* Feeds `text` in pieces of `chunk` bytes (0: whole) and finishes; the first non-zero
 * result, and the parser's error copied to `err` when there is one. */
static int run(const struct dmj_import_options *base, const char *text, size_t len, size_t chunk,
               struct seen *s, struct dmj_import_error *err)
{
    struct dmj_import_options o = *base;
    struct dmj_import *imp;
    o.record = on_record;
    o.skipped = on_skipped;
    o.ctx = s;
    int rc = dmj_import_new(&o, &imp);
    if (rc)
        return rc;
    if (chunk == 0)
        chunk = len ? len : 1;
    for (size_t at = 0; rc == 0 && at < len; at += chunk)
        rc = dmj_import_feed(imp, text + at, len - at < chunk ? len - at : chunk);
    if (rc == 0)
        rc = dmj_import_finish(imp);
    if (rc == DMJ_EINVAL && err)
        *err = *dmj_import_last_error(imp);
    if (rc == 0)
        CHECK_EQ_INT(dmj_import_count(imp), s->n);
    dmj_import_free(imp);
    return rc;
}

static const char NDJSON[] =
    "{\"id\":\"" ID1 "\",\"team_id\":7,\"status\":\"Completed\",\"created_at\":"
    "\"2024-05-01T10:00:00.12345+02:00\",\"rows_materialized\":12,\"engine\":\"clickhouse\","
    "\"error\":\"a \\\"b\\\"\\n\",\"workflow_id\":\"materialize-x\",\"unknown\":[1,{\"x\":2}]}\n"
    "{\"status\":\"Running\",\"created_at\":\"2024-05-01 10:00:00\",\"id\":\"{urn:uuid:"
    "10000000000040008000000000000002}\",\"team\":7,\"engine\":\"duckgres\",\"saved_query_id\":"
    "\"" SQ "\",\"last_run_at\":null,\"rows_expected\":null}\n";

static void check_ndjson(const struct seen *s)
{
    uint8_t id1[16], id2[16];
    CHECK_EQ_INT(dmj_uuid_parse(ID1, strlen(ID1), id1), 0);
    CHECK_EQ_INT(dmj_uuid_parse(ID2, strlen(ID2), id2), 0);
    CHECK_EQ_INT(s->n, 2);
    CHECK_EQ_INT(s->r[0].kind, DMJ_IMPORT_JOB);
    CHECK_EQ_INT(s->r[0].line, 1);
    CHECK(memcmp(s->r[0].id, id1, 16) == 0);
    CHECK_EQ_INT(s->r[0].team, 7);
    CHECK_EQ_INT(s->r[0].status, DMJ_STATUS_COMPLETED);
    /* 2024-05-01T08:00:00.123450Z (Python: datetime(2024,5,1,8,0,0,123450,utc).timestamp()) */
    CHECK_EQ_INT(s->r[0].created_at, 1714550400123450LL);
    CHECK_EQ_INT(s->r[0].rows_materialized, 12);
    CHECK(s->r[0].engine_null); /* clickhouse, the default, comes out absent */
    CHECK_EQ_STR(s->r[0].error, "a \"b\"\n");
    CHECK_EQ_STR(s->r[0].workflow_id, "materialize-x");
    CHECK(!s->r[0].has_sq);
    CHECK_EQ_INT(s->r[1].line, 2);
    CHECK(memcmp(s->r[1].id, id2, 16) == 0);
    CHECK_EQ_INT(s->r[1].team, 7); /* "team" is a synonym of team_id */
    CHECK_EQ_INT(s->r[1].status, DMJ_STATUS_RUNNING);
    CHECK_EQ_INT(s->r[1].created_at, 1714557600000000LL); /* naive: UTC */
    CHECK_EQ_INT(s->r[1].rows_materialized, 0);
    CHECK_EQ_STR(s->r[1].engine, "duckgres");
    CHECK(s->r[1].has_sq && !s->r[1].has_last_run && !s->r[1].has_rows_expected);
}

static void test_ndjson_chunks(void)
{
    static const size_t chunks[] = {0, 1, 2, 3, 7, 64};
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        struct seen s = {0};
        struct dmj_import_options o = {0};
        CHECK_EQ_INT(run(&o, NDJSON, strlen(NDJSON), chunks[i], &s, NULL), 0);
        check_ndjson(&s);
    }
    /* A byte order mark first changes nothing. */
    char bom[sizeof NDJSON + 3] = "\xEF\xBB\xBF";
    memcpy(bom + 3, NDJSON, sizeof NDJSON);
    struct seen s = {0};
    struct dmj_import_options o = {0};
    CHECK_EQ_INT(run(&o, bom, strlen(bom), 5, &s, NULL), 0);
    check_ndjson(&s);
}

static void test_other_forms(void)
{
    /* A JSON array of the same objects, and an API page with --team. */
    static const char array[] = "[{\"id\":\"" ID1 "\",\"team_id\":3,\"status\":\"Failed\","
                                "\"created_at\":\"2024-05-01T00:00:00Z\"},\n{\"id\":\"" ID2
                                "\",\"team_id\":3,\"status\":\"Skipped\","
                                "\"created_at\":\"2024-05-01T00:00:01Z\"}]";
    struct seen s = {0};
    struct dmj_import_options o = {0};
    CHECK_EQ_INT(run(&o, array, strlen(array), 3, &s, NULL), 0);
    CHECK_EQ_INT(s.n, 2);
    CHECK_EQ_INT(s.r[0].status, DMJ_STATUS_FAILED);
    CHECK_EQ_INT(s.r[1].status, DMJ_STATUS_SKIPPED);
    CHECK_EQ_INT(s.r[1].line, 2);

    static const char page[] = "{\"next\":null,\"previous\":null,\"results\":[{\"id\":\"" ID1
                               "\",\"status\":\"Cancelled\",\"created_at\":"
                               "\"2024-05-01T00:00:00Z\",\"saved_query_id\":null}]}";
    memset(&s, 0, sizeof s);
    o.has_team = true;
    o.team_id = 9;
    CHECK_EQ_INT(run(&o, page, strlen(page), 0, &s, NULL), 0);
    CHECK_EQ_INT(s.n, 1);
    CHECK_EQ_INT(s.r[0].team, 9);
    CHECK_EQ_INT(s.r[0].status, DMJ_STATUS_CANCELLED);

    /* PostgreSQL COPY text escaping undone line by line with pg_copy. */
    static const char copy[] = "{\"id\":\"" ID1 "\",\"team_id\":1,\"status\":\"Failed\","
                               "\"created_at\":\"2024-05-01T00:00:00Z\",\"error\":"
                               "\"x\\\\\"y\\\\\\\\z\"}\n";
    memset(&s, 0, sizeof s);
    struct dmj_import_options pg = {.pg_copy = true};
    CHECK_EQ_INT(run(&pg, copy, strlen(copy), 4, &s, NULL), 0);
    CHECK_EQ_INT(s.n, 1);
    CHECK_EQ_STR(s.r[0].error, "x\"y\\z");
    /* Without pg_copy the same line is bad JSON. */
    memset(&s, 0, sizeof s);
    struct dmj_import_error err;
    CHECK_EQ_INT(run(&o, copy, strlen(copy), 0, &s, &err), DMJ_EINVAL);
}

static void test_identities(void)
{
    static const char text[] =
        "{\"kind\":\"team\",\"id\":2,\"project_id\":2,\"organization_id\":"
        "\"11111111-1111-4111-8111-111111111111\",\"name\":\"T\"}\n"
        "{\"kind\":\"personal_api_key\",\"id\":\"k1\",\"user_id\":7,\"value\":\"phx_abc\","
        "\"scopes\":[\"warehouse_view:read\"],\"scoped_teams\":null,"
        "\"scoped_organizations\":null}\n"
        "{\"kind\":\"personal_api_key\",\"id\":\"k2\",\"user_id\":7,\"value\":\"phx_def\","
        "\"created_at\":\"1970-01-01T01:00:01.5+01:00\"}\n";
    struct seen s = {0};
    struct dmj_import_options o = {0};
    CHECK_EQ_INT(run(&o, text, strlen(text), 0, &s, NULL), 0);
    CHECK_EQ_INT(s.n, 3);
    /* PostHog's created_at when the record has one */
    CHECK(s.r[1].created_at == -1 && s.r[2].created_at == 1500000);
    CHECK_EQ_INT(s.r[0].kind, DMJ_IMPORT_TEAM);
    CHECK_EQ_INT(s.r[1].kind, DMJ_IMPORT_KEY);
    /* The raw key is hashed: PostHog's "sha256$" + hex(sha256("phx_abc")). */
    char want[DMJ_KEY_HASH_LEN + 1];
    dmj_key_hash("phx_abc", 7, want);
    CHECK_EQ_STR(s.r[1].key_hash, want);
    CHECK(strncmp(want, "sha256$", 7) == 0);

    static const struct {
        const char *name;
        int rc;
        enum dmj_import_kind kind;
    } kinds[] = {{"job", 0, DMJ_IMPORT_JOB},
                 {"team", 0, DMJ_IMPORT_TEAM},
                 {"organization", 0, DMJ_IMPORT_ORG},
                 {"org", 0, DMJ_IMPORT_ORG},
                 {"user", 0, DMJ_IMPORT_USER},
                 {"membership", 0, DMJ_IMPORT_MEMBERSHIP},
                 {"personal_api_key", 0, DMJ_IMPORT_KEY},
                 {"key", 0, DMJ_IMPORT_KEY},
                 {"Job", DMJ_EINVAL, DMJ_IMPORT_JOB},
                 {"", DMJ_EINVAL, DMJ_IMPORT_JOB},
                 {"keys", DMJ_EINVAL, DMJ_IMPORT_JOB}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        enum dmj_import_kind k = DMJ_IMPORT_MEMBERSHIP;
        CHECK_EQ_INT(dmj_import_kind_parse(kinds[i].name, &k), kinds[i].rc);
        CHECK_EQ_INT(k, kinds[i].rc ? DMJ_IMPORT_MEMBERSHIP : kinds[i].kind);
    }
}

static const char TWO_BAD[] =
    "{\"id\":\"" ID1 "\",\"team_id\":1,\"status\":\"Completed\",\"created_at\":"
    "\"2024-05-01T00:00:00Z\"}\n"
    "{\"id\":\"" ID2 "\",\"team_id\":1,\"status\":\"completed\",\"created_at\":"
    "\"2024-05-01T00:00:00Z\"}\n"
    "{\"id\":\"" ID2 "\",\"team_id\":1,\"status\":\"Running\",\"created_at\":"
    "\"2024-02-30T00:00:00Z\"}\n"
    "{\"id\":\"" ID2 "\",\"team_id\":1,\"status\":\"Running\",\"created_at\":"
    "\"2024-02-29T00:00:00Z\"}\n";

static void test_errors(void)
{
    struct seen s = {0};
    struct dmj_import_error err;
    struct dmj_import_options o = {0};
    /* The first bad record stops the import with its line and field. */
    CHECK_EQ_INT(run(&o, TWO_BAD, strlen(TWO_BAD), 0, &s, &err), DMJ_EINVAL);
    CHECK_EQ_INT(s.n, 1);
    CHECK_EQ_INT(err.line, 2);
    CHECK_EQ_STR(err.field, "status");

    /* skip_invalid: both bad records reported with their lines (2024-02-30 is no date), the
     * good ones kept. */
    memset(&s, 0, sizeof s);
    struct dmj_import_options skip = {.skip_invalid = true};
    CHECK_EQ_INT(run(&skip, TWO_BAD, strlen(TWO_BAD), 9, &s, NULL), 0);
    CHECK_EQ_INT(s.n, 2);
    CHECK_EQ_INT(s.skipped, 2);
    CHECK_EQ_INT(s.skipped_line[0], 2);
    CHECK_EQ_STR(s.skipped_field[0], "status");
    CHECK_EQ_INT(s.skipped_line[1], 3);
    CHECK_EQ_STR(s.skipped_field[1], "created_at");
    CHECK_EQ_INT(s.r[1].line, 4);

    /* --team: a record of another team is refused; one without a team takes it. */
    static const char teams[] = "{\"id\":\"" ID1 "\",\"status\":\"Running\",\"created_at\":"
                                "\"2024-05-01T00:00:00Z\"}\n{\"id\":\"" ID2 "\",\"team_id\":"
                                "5,\"status\":\"Running\",\"created_at\":"
                                "\"2024-05-01T00:00:00Z\"}\n";
    memset(&s, 0, sizeof s);
    struct dmj_import_options team = {.has_team = true, .team_id = 4};
    CHECK_EQ_INT(run(&team, teams, strlen(teams), 0, &s, &err), DMJ_EINVAL);
    CHECK_EQ_INT(s.n, 1);
    CHECK_EQ_INT(s.r[0].team, 4);
    CHECK_EQ_INT(err.line, 2);
    /* Without --team the first record has no team at all. */
    memset(&s, 0, sizeof s);
    CHECK_EQ_INT(run(&o, teams, strlen(teams), 0, &s, &err), DMJ_EINVAL);
    CHECK_EQ_INT(s.n, 0);
    CHECK_EQ_INT(err.line, 1);

    /* Input that stops inside a value fails at finish. */
    memset(&s, 0, sizeof s);
    CHECK_EQ_INT(run(&o, TWO_BAD, 30, 0, &s, &err), DMJ_EINVAL);
    CHECK_EQ_INT(s.n, 0);

    /* The callback's own refusal stops the import with its value, and nothing more is
     * taken after an error. */
    memset(&s, 0, sizeof s);
    s.stop_at = 2;
    struct dmj_import_options stop = {.skip_invalid = true, .record = on_record, .ctx = &s};
    struct dmj_import *imp;
    CHECK_EQ_INT(dmj_import_new(&stop, &imp), 0);
    CHECK_EQ_INT(dmj_import_feed(imp, TWO_BAD, strlen(TWO_BAD)), -1234);
    CHECK_EQ_INT(s.n, 1);
    CHECK(dmj_import_feed(imp, "\n", 1) != 0);
    dmj_import_free(imp);
}

static void test_boundary(void)
{
    struct seen s = {0};
    struct dmj_import_options o = {.record = on_record, .ctx = &s};
    struct dmj_import *imp;
    const char *nl = strchr(NDJSON, '\n');
    size_t first = (size_t)(nl - NDJSON) + 1;
    CHECK_EQ_INT(dmj_import_new(&o, &imp), 0);
    CHECK_EQ_INT(dmj_import_feed(imp, NDJSON, 20), 0);
    CHECK(!dmj_import_at_boundary(imp));
    CHECK_EQ_INT(dmj_import_feed(imp, NDJSON + 20, first - 20), 0);
    CHECK(dmj_import_at_boundary(imp));
    CHECK_EQ_INT(dmj_import_line(imp), 2);
    CHECK_EQ_INT(dmj_import_count(imp), 1);
    CHECK_EQ_INT(dmj_import_bytes_in(imp), first);
    CHECK_EQ_INT(dmj_import_finish(imp), 0);
    dmj_import_free(imp);
}

/* dmj_import_write: the records parsed land in a real store and read back. */
static void test_write(void)
{
    char dir[64];
    struct dmj_store *st = NULL;
    struct dmj_write *w = NULL;
    struct dmj_read *r = NULL;
    CHECK_EQ_INT(tmpdir_make("dmj-test-import-", dir, sizeof dir), 0);
    CHECK_EQ_INT(dmj_store_open(dir, 0, (size_t)64 << 20, &st), 0);
    if (!st)
        return;
    CHECK_EQ_INT(dmj_write_begin(st, &w), 0);
    struct seen s = {0};
    s.w = w;
    struct dmj_import_options o = {0};
    CHECK_EQ_INT(run(&o, NDJSON, strlen(NDJSON), 0, &s, NULL), 0);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);

    uint8_t id1[16];
    CHECK_EQ_INT(dmj_uuid_parse(ID1, strlen(ID1), id1), 0);
    CHECK_EQ_INT(dmj_read_new(st, &r), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    struct dmj_job j;
    CHECK_EQ_INT(dmj_read_job(r, id1, &j), 0);
    CHECK_EQ_INT(j.team_id, 7);
    CHECK_EQ_INT(j.created_at, 1714550400123450LL);
    CHECK_EQ_INT(j.rows_materialized, 12);
    CHECK(j.error.len == 6 && memcmp(j.error.ptr, "a \"b\"\n", 6) == 0);
    dmj_read_end(r);
    dmj_read_free(r);
    dmj_store_close(st);
    CHECK_EQ_INT(tmpdir_remove(dir), 0);
}

int main(void)
{
    test_ndjson_chunks();
    test_other_forms();
    test_identities();
    test_errors();
    test_boundary();
    test_write();
    return check_done();
}

/* Unit tests of rows.c: a job's JSON is kept with its record's bytes and served only while
 * the stored record is the same, byte for byte; what is kept stays within the ring. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "dmj/json.h"
#include "dmj/store.h"
#include "rows.h"
#include "tmpdir.h"

static struct dmj_job make_job(uint8_t n, enum dmj_status status, const char *workflow)
{
    struct dmj_job j;
    memset(&j, 0, sizeof j);
    j.id[0] = 0x40;
    j.id[15] = n;
    j.team_id = 1;
    j.status = status;
    j.rows_materialized = n;
    j.created_at = 1704067200000000LL + n;
    j.workflow_id = (struct dmj_str){workflow, strlen(workflow)};
    j.run_mode = (struct dmj_str){"full", 4};
    return j;
}

static int put(struct dmj_store *s, const struct dmj_job *j)
{
    struct dmj_write *w;
    int rc = dmj_write_begin(s, &w);
    if (rc == 0)
        rc = dmj_write_job(w, j);
    return rc == 0 ? dmj_write_commit(w, NULL) : rc;
}

/* The row of job `id` in a read of its own, with its JSON copied out to `json`. */
static int row_of(struct dmj_store *s, struct dmj_rows *rows, const uint8_t id[16],
                  struct dmj_row *row, char *json, size_t cap)
{
    struct dmj_read *r;
    struct dmj_job_rec rec;
    int rc = dmj_read_new(s, &r);
    if (rc)
        return rc;
    rc = dmj_read_begin(r);
    if (rc == 0)
        rc = dmj_read_job_rec(r, id, &rec);
    if (rc == 0)
        rc = dmj_rows_get(rows, &rec, row);
    if (rc == 0 && row->json_len < cap) {
        memcpy(json, row->json, row->json_len);
        json[row->json_len] = '\0';
    }
    dmj_read_end(r);
    dmj_read_free(r);
    return rc;
}

/* The JSON dmj_json_add_job(_current) writes for `j`. */
static void rendered(const struct dmj_job *j, bool current, char *out, size_t cap)
{
    struct dmj_buf b;
    dmj_buf_init(&b, 1 << 20);
    int rc = current ? dmj_json_add_job_current(&b, j) : dmj_json_add_job(&b, j);
    snprintf(out, cap, "%s", rc == 0 && b.data ? b.data : "");
    dmj_buf_dispose(&b);
}

static void test_kept_until_changed(struct dmj_store *s, bool current)
{
    struct dmj_rows *rows;
    struct dmj_row row;
    char json[2048], want[2048];
    uint64_t kept, made;
    struct dmj_job j = make_job(1, DMJ_STATUS_RUNNING, "materialize-a");

    CHECK_EQ_INT(dmj_rows_new(1 << 20, current, &rows), 0);
    CHECK_EQ_INT(put(s, &j), 0);
    rendered(&j, current, want, sizeof want);
    CHECK_EQ_INT(row_of(s, rows, j.id, &row, json, sizeof json), 0);
    CHECK_EQ_STR(json, want);
    CHECK(row.status == DMJ_STATUS_RUNNING && row.materializes && !row.hidden &&
          !row.execute_dag);
    /* the same record again, in another read: kept */
    CHECK_EQ_INT(row_of(s, rows, j.id, &row, json, sizeof json), 0);
    CHECK_EQ_STR(json, want);
    dmj_rows_counts(rows, &kept, &made);
    CHECK_EQ_INT(kept, 1);
    CHECK_EQ_INT(made, 1);

    /* a commit to another job leaves it kept */
    struct dmj_job other = make_job(2, DMJ_STATUS_COMPLETED, "execute-dag-x");
    CHECK_EQ_INT(put(s, &other), 0);
    CHECK_EQ_INT(row_of(s, rows, j.id, &row, json, sizeof json), 0);
    dmj_rows_counts(rows, &kept, &made);
    CHECK_EQ_INT(kept, 2);
    CHECK_EQ_INT(made, 1);
    CHECK_EQ_INT(row_of(s, rows, other.id, &row, json, sizeof json), 0);
    CHECK(row.execute_dag && !row.materializes && row.status == DMJ_STATUS_COMPLETED);

    /* the job itself changed: rendered anew, never the old JSON */
    j.status = DMJ_STATUS_FAILED;
    j.error = (struct dmj_str){"boom \"x\"", 8};
    CHECK_EQ_INT(put(s, &j), 0);
    rendered(&j, current, want, sizeof want);
    CHECK_EQ_INT(row_of(s, rows, j.id, &row, json, sizeof json), 0);
    CHECK_EQ_STR(json, want);
    CHECK(row.status == DMJ_STATUS_FAILED);

    /* hidden: known as such, no JSON */
    j.engine = (struct dmj_str){"duckgres", 8};
    CHECK_EQ_INT(put(s, &j), 0);
    CHECK_EQ_INT(row_of(s, rows, j.id, &row, json, sizeof json), 0);
    CHECK(row.hidden && row.json_len == 0);
    j.engine = (struct dmj_str){NULL, 0};
    CHECK_EQ_INT(put(s, &j), 0);
    dmj_rows_free(rows);
}

/* A ring far smaller than the rows walked: old rows are rendered again, each right. */
static void test_small_ring(struct dmj_store *s)
{
    struct dmj_rows *rows, *none;
    struct dmj_row row;
    char json[2048], want[2048];
    CHECK_EQ_INT(dmj_rows_new(16384, false, &rows), 0);
    CHECK_EQ_INT(dmj_rows_new(0, false, &none), 0);
    for (int round = 0; round < 3; round++) {
        for (uint8_t n = 10; n < 60; n++) {
            struct dmj_job j = make_job(n, DMJ_STATUS_COMPLETED, "materialize-b");
            if (round == 0)
                CHECK_EQ_INT(put(s, &j), 0);
            rendered(&j, false, want, sizeof want);
            CHECK_EQ_INT(row_of(s, rows, j.id, &row, json, sizeof json), 0);
            CHECK_EQ_STR(json, want);
            CHECK_EQ_INT(row_of(s, none, j.id, &row, json, sizeof json), 0);
            CHECK_EQ_STR(json, want);
        }
    }
    uint64_t kept, made;
    dmj_rows_counts(none, &kept, &made);
    CHECK_EQ_INT(kept, 0);
    dmj_rows_counts(rows, &kept, &made);
    CHECK(kept > 0 && made > 50); /* some kept, some overwritten and made again */
    dmj_rows_free(none);
    dmj_rows_free(rows);
}

int main(void)
{
    char dir[256];
    struct dmj_store *s;
    if (tmpdir_make("dmj-test-rows.", dir, sizeof dir) != 0)
        return 1;
    CHECK_EQ_INT(dmj_store_open(dir, 0, 64 << 20, &s), 0);
    test_kept_until_changed(s, false);
    test_kept_until_changed(s, true);
    test_small_ring(s);
    dmj_store_close(s);
    CHECK_EQ_INT(tmpdir_remove(dir), 0);
    return check_done();
}

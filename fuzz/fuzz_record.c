/* Fuzz target: arbitrary bytes through every record decoder; what decodes must re-encode to a
 * record that decodes to the same fields, and encoding that again gives the same bytes
 * (encode(decode(x)) is stable). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int str_eq(struct dmj_str a, struct dmj_str b)
{
    if (!a.ptr || !b.ptr)
        return !a.ptr && !b.ptr;
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Doubles compare by bits so that a NaN payload must survive too. */
static int dbl_eq(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static void check_job(const struct dmj_job *a, const struct dmj_job *b)
{
    int eq = memcmp(a->id, b->id, 16) == 0 && a->team_id == b->team_id &&
             a->has_saved_query_id == b->has_saved_query_id &&
             memcmp(a->saved_query_id, b->saved_query_id, 16) == 0 && a->status == b->status &&
             a->rows_materialized == b->rows_materialized && str_eq(a->error, b->error) &&
             a->created_at == b->created_at && a->has_last_run_at == b->has_last_run_at &&
             a->last_run_at == b->last_run_at && str_eq(a->workflow_id, b->workflow_id) &&
             str_eq(a->workflow_run_id, b->workflow_run_id) &&
             a->has_rows_expected == b->has_rows_expected && a->rows_expected == b->rows_expected &&
             str_eq(a->engine, b->engine) && str_eq(a->run_mode, b->run_mode) &&
             str_eq(a->parent_workflow_id, b->parent_workflow_id) &&
             a->has_storage_delta_mib == b->has_storage_delta_mib &&
             (!a->has_storage_delta_mib || dbl_eq(a->storage_delta_mib, b->storage_delta_mib)) &&
             a->has_created_by_id == b->has_created_by_id && a->created_by_id == b->created_by_id &&
             a->has_updated_at == b->has_updated_at && a->updated_at == b->updated_at;
    if (!eq)
        abort();
}

/* The second encoding (of the re-decoded record) must equal the first byte for byte. */
static void same_bytes(const struct dmj_buf *a, const struct dmj_buf *b)
{
    if (a->len != b->len || (a->len && memcmp(a->data, b->data, a->len) != 0))
        abort();
}

static void fuzz_job(const uint8_t *data, size_t size, struct dmj_buf *b, struct dmj_buf *b2)
{
    struct dmj_job j1, j2;
    if (dmj_codec_decode_job(data, size, &j1) != 0)
        return;
    dmj_buf_reset(b);
    if (dmj_codec_encode_job(&j1, b) != 0)
        abort();
    if (dmj_codec_decode_job(b->data, b->len, &j2) != 0)
        abort();
    check_job(&j1, &j2);
    dmj_buf_reset(b2);
    if (dmj_codec_encode_job(&j2, b2) != 0)
        abort();
    same_bytes(b, b2);
}

static void fuzz_team(const uint8_t *data, size_t size, struct dmj_buf *b, struct dmj_buf *b2)
{
    struct dmj_team t1, t2;
    if (dmj_codec_decode_team(data, size, &t1) != 0)
        return;
    dmj_buf_reset(b);
    if (dmj_codec_encode_team(&t1, b) != 0 || dmj_codec_decode_team(b->data, b->len, &t2) != 0)
        abort();
    if (t1.id != t2.id || t1.project_id != t2.project_id ||
        memcmp(t1.organization_id, t2.organization_id, 16) != 0 || !str_eq(t1.name, t2.name))
        abort();
    dmj_buf_reset(b2);
    if (dmj_codec_encode_team(&t2, b2) != 0)
        abort();
    same_bytes(b, b2);
}

static void fuzz_org(const uint8_t *data, size_t size, struct dmj_buf *b, struct dmj_buf *b2)
{
    struct dmj_org o1, o2;
    if (dmj_codec_decode_org(data, size, &o1) != 0)
        return;
    dmj_buf_reset(b);
    if (dmj_codec_encode_org(&o1, b) != 0 || dmj_codec_decode_org(b->data, b->len, &o2) != 0)
        abort();
    if (memcmp(o1.id, o2.id, 16) != 0 || !str_eq(o1.name, o2.name))
        abort();
    dmj_buf_reset(b2);
    if (dmj_codec_encode_org(&o2, b2) != 0)
        abort();
    same_bytes(b, b2);
}

static void fuzz_user(const uint8_t *data, size_t size, struct dmj_buf *b, struct dmj_buf *b2)
{
    struct dmj_user u1, u2;
    if (dmj_codec_decode_user(data, size, &u1) != 0)
        return;
    dmj_buf_reset(b);
    if (dmj_codec_encode_user(&u1, b) != 0 || dmj_codec_decode_user(b->data, b->len, &u2) != 0)
        abort();
    if (u1.id != u2.id || u1.is_active != u2.is_active ||
        u1.has_current_team != u2.has_current_team ||
        (u1.has_current_team && u1.current_team_id != u2.current_team_id) ||
        u1.has_current_org != u2.has_current_org ||
        (u1.has_current_org && memcmp(u1.current_org, u2.current_org, 16) != 0))
        abort();
    dmj_buf_reset(b2);
    if (dmj_codec_encode_user(&u2, b2) != 0)
        abort();
    same_bytes(b, b2);
}

static void fuzz_key(const uint8_t *data, size_t size, struct dmj_buf *b, struct dmj_buf *b2)
{
    /* static: the struct is ~7 KB, and fuzzing is single-threaded */
    static struct dmj_key k1, k2;
    if (dmj_codec_decode_key(data, size, &k1) != 0)
        return;
    dmj_buf_reset(b);
    if (dmj_codec_encode_key(&k1, b) != 0 || dmj_codec_decode_key(b->data, b->len, &k2) != 0)
        abort();
    if (strcmp(k1.secure_value, k2.secure_value) != 0 || !str_eq(k1.id, k2.id) ||
        k1.user_id != k2.user_id || k1.n_scopes != k2.n_scopes || k1.n_teams != k2.n_teams ||
        k1.n_orgs != k2.n_orgs || k1.has_created_at != k2.has_created_at ||
        (k1.has_created_at && k1.created_at != k2.created_at))
        abort();
    for (unsigned i = 0; i < k1.n_scopes; i++)
        if (!str_eq(k1.scopes[i], k2.scopes[i]))
            abort();
    for (unsigned i = 0; i < k1.n_teams; i++)
        if (k1.scoped_teams[i] != k2.scoped_teams[i])
            abort();
    for (unsigned i = 0; i < k1.n_orgs; i++)
        if (memcmp(k1.scoped_orgs[i], k2.scoped_orgs[i], 16) != 0)
            abort();
    dmj_buf_reset(b2);
    if (dmj_codec_encode_key(&k2, b2) != 0)
        abort();
    same_bytes(b, b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dmj_buf b, b2;
    dmj_buf_init(&b, 1u << 26);
    dmj_buf_init(&b2, 1u << 26);
    fuzz_job(data, size, &b, &b2);
    fuzz_team(data, size, &b, &b2);
    fuzz_org(data, size, &b, &b2);
    fuzz_user(data, size, &b, &b2);
    fuzz_key(data, size, &b, &b2);
    dmj_buf_dispose(&b2);
    dmj_buf_dispose(&b);
    return 0;
}

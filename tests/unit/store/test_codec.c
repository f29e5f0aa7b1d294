/* Unit tests of the msgpack records: round trips, versions, and rejection of bad bytes. */
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "codec.h"

static struct dmj_str S(const char *s) {
    struct dmj_str r = {s, s ? strlen(s) : 0};
    return r;
}

static bool
str_eq(struct dmj_str a, struct dmj_str b)
{
    if (!a.ptr || !b.ptr)
        return !a.ptr && !b.ptr;
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

static void full_job(struct dmj_job *j)
{
    memset(j, 0, sizeof *j);
    for (int i = 0; i < 16; i++) {
        j->id[i] = (uint8_t)(i * 17 + 1);
        j->saved_query_id[i] = (uint8_t)(0xf0 - i);
    }
    j->team_id = -5;
    j->has_saved_query_id = true;
    j->status = DMJ_STATUS_FAILED;
    j->rows_materialized = INT64_MAX;
    j->error = S("boom \"quoted\" \xe2\x80\xa8");
    j->created_at = -1234567890123LL;
    j->has_last_run_at = true;
    j->last_run_at = INT64_MIN;
    j->workflow_id = S("materialize-abc");
    j->workflow_run_id = S("");
    j->has_rows_expected = true;
    j->rows_expected = 300;
    j->engine = S("duckgres");
    j->run_mode = S("full_refresh");
    j->parent_workflow_id = S("parent");
    j->has_storage_delta_mib = true;
    j->storage_delta_mib = -1.5e-300;
    j->has_created_by_id = true;
    j->created_by_id = 77;
    j->has_updated_at = true;
    j->updated_at = 1700000000000000LL;
}

static bool job_eq(const struct dmj_job *a, const struct dmj_job *b)
{
    return memcmp(a->id, b->id, 16) == 0 && a->team_id == b->team_id &&
           a->has_saved_query_id == b->has_saved_query_id &&
           (!a->has_saved_query_id || memcmp(a->saved_query_id, b->saved_query_id, 16) == 0) &&
           a->status == b->status && a->rows_materialized == b->rows_materialized &&
           str_eq(a->error, b->error) && a->created_at == b->created_at &&
           a->has_last_run_at == b->has_last_run_at &&
           (!a->has_last_run_at || a->last_run_at == b->last_run_at) &&
           str_eq(a->workflow_id, b->workflow_id) &&
           str_eq(a->workflow_run_id, b->workflow_run_id) &&
           a->has_rows_expected == b->has_rows_expected &&
           (!a->has_rows_expected || a->rows_expected == b->rows_expected) &&
           str_eq(a->engine, b->engine) && str_eq(a->run_mode, b->run_mode) &&
           str_eq(a->parent_workflow_id, b->parent_workflow_id) &&
           a->has_storage_delta_mib == b->has_storage_delta_mib &&
           (!a->has_storage_delta_mib || a->storage_delta_mib == b->storage_delta_mib) &&
           a->has_created_by_id == b->has_created_by_id &&
           (!a->has_created_by_id || a->created_by_id == b->created_by_id) &&
           a->has_updated_at == b->has_updated_at &&
           (!a->has_updated_at || a->updated_at == b->updated_at);
}

static void test_job_roundtrip(void)
{
    struct dmj_job j, d;
    struct dmj_buf b;
    dmj_buf_init(&b, 1 << 20);
    full_job(&j);
    CHECK_EQ_INT(dmj_codec_encode_job(&j, &b), 0);
    CHECK_EQ_INT(dmj_codec_decode_job(b.data, b.len, &d), 0);
    CHECK(job_eq(&j, &d));
    /* decoded strings point into the record, no copies */
    CHECK((const char *)d.error.ptr > b.data && d.error.ptr < b.data + b.len);
    CHECK_EQ_INT(d.workflow_run_id.len, 0);
    CHECK(d.workflow_run_id.ptr != NULL);

    /* every optional absent: nils come back as absent */
    struct dmj_job m;
    memset(&m, 0, sizeof m);
    m.id[0] = 1;
    m.team_id = 2;
    m.status = DMJ_STATUS_RUNNING;
    m.created_at = 1;
    dmj_buf_reset(&b);
    CHECK_EQ_INT(dmj_codec_encode_job(&m, &b), 0);
    memset(&d, 0xaa, sizeof d);
    CHECK_EQ_INT(dmj_codec_decode_job(b.data, b.len, &d), 0);
    CHECK(job_eq(&m, &d));
    CHECK(d.error.ptr == NULL && d.engine.ptr == NULL && !d.has_saved_query_id);

    /* records append: two in one buffer, each decodable at its offset */
    dmj_buf_reset(&b);
    CHECK_EQ_INT(dmj_codec_encode_job(&j, &b), 0);
    size_t first = b.len;
    CHECK_EQ_INT(dmj_codec_encode_job(&m, &b), 0);
    CHECK_EQ_INT(dmj_codec_decode_job(b.data + first, b.len - first, &d), 0);
    CHECK(job_eq(&m, &d));
    /* the two together are not one record (trailing bytes) */
    CHECK_EQ_INT(dmj_codec_decode_job(b.data, b.len, &d), DMJ_EBADRECORD);

    /* invalid status is refused by the encoder, the buffer untouched */
    size_t before = b.len;
    m.status = (enum dmj_status)9;
    CHECK_EQ_INT(dmj_codec_encode_job(&m, &b), DMJ_EINVAL);
    CHECK_EQ_INT(b.len, before);
    dmj_buf_dispose(&b);
}

static void test_job_truncated(void)
{
    struct dmj_job j, d;
    struct dmj_buf b;
    dmj_buf_init(&b, 1 << 20);
    full_job(&j);
    CHECK_EQ_INT(dmj_codec_encode_job(&j, &b), 0);
    unsigned bad = 0;
    for (size_t n = 0; n < b.len; n++) {
        /* a heap copy of exactly n bytes so that ASan sees any overread */
        unsigned char *p = malloc(n ? n : 1);
        memcpy(p, b.data, n);
        memset(&d, 0x5a, sizeof d);
        int rc = dmj_codec_decode_job(p, n, &d);
        bad += rc == DMJ_EBADRECORD;
        free(p);
    }
    CHECK_EQ_INT(bad, b.len);
    /* flipping any single byte must never crash; most flips must be refused */
    unsigned ok = 0;
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            unsigned char *p = malloc(b.len);
            memcpy(p, b.data, b.len);
            p[i] ^= (unsigned char)(1u << bit);
            ok += dmj_codec_decode_job(p, b.len, &d) == 0;
            free(p);
        }
    }
    CHECK(ok < b.len * 8);
    dmj_buf_dispose(&b);
}

/* Hand-packed records that are well-formed msgpack but not a job. */
static void test_job_wrong_types(void)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct dmj_job d;

    /* version 2 */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 18);
    msgpack_pack_int(&pk, 2);
    CHECK_EQ_INT(dmj_codec_decode_job(sb.data, sb.size, &d), DMJ_EVERSION);
    msgpack_sbuffer_destroy(&sb);

    /* a map instead of an array */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 1);
    CHECK_EQ_INT(dmj_codec_decode_job(sb.data, sb.size, &d), DMJ_EBADRECORD);
    msgpack_sbuffer_destroy(&sb);

    /* right version, id as a string instead of bin */
    struct dmj_job j;
    full_job(&j);
    struct dmj_buf b;
    dmj_buf_init(&b, 4096);
    CHECK_EQ_INT(dmj_codec_encode_job(&j, &b), 0);
    /* byte 4 is the bin8 marker of the id (array16 marker, version, then the id) */
    CHECK_EQ_INT((unsigned char)b.data[4], 0xc4);
    b.data[4] = (char)0xd9; /* str8 of length 16: same size, wrong type */
    CHECK_EQ_INT(dmj_codec_decode_job(b.data, b.len, &d), DMJ_EBADRECORD);
    dmj_buf_dispose(&b);

    /* team id out of int32 range */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 18);
    msgpack_pack_int(&pk, 1);
    uint8_t id[16] = {0};
    msgpack_pack_bin(&pk, 16);
    msgpack_pack_bin_body(&pk, id, 16);
    msgpack_pack_int64(&pk, (int64_t)INT32_MAX + 1);
    for (int i = 0; i < 15; i++)
        msgpack_pack_nil(&pk);
    CHECK_EQ_INT(dmj_codec_decode_job(sb.data, sb.size, &d), DMJ_EBADRECORD);
    msgpack_sbuffer_destroy(&sb);

    /* uint64 above INT64_MAX for created_at */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 18);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_bin(&pk, 16);
    msgpack_pack_bin_body(&pk, id, 16);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_nil(&pk);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_nil(&pk);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    for (int i = 0; i < 10; i++)
        msgpack_pack_nil(&pk);
    CHECK_EQ_INT(dmj_codec_decode_job(sb.data, sb.size, &d), DMJ_EBADRECORD);
    msgpack_sbuffer_destroy(&sb);

    /* and the same record with a valid created_at (int8 negative) decodes */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 18);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_bin(&pk, 16);
    msgpack_pack_bin_body(&pk, id, 16);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_nil(&pk);
    msgpack_pack_int(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_nil(&pk);
    msgpack_pack_int8(&pk, -100);
    for (int i = 0; i < 7; i++)
        msgpack_pack_nil(&pk);
    msgpack_pack_float(&pk, 0.5f);
    msgpack_pack_nil(&pk);
    msgpack_pack_nil(&pk);
    CHECK_EQ_INT(dmj_codec_decode_job(sb.data, sb.size, &d), 0);
    CHECK_EQ_INT(d.created_at, -100);
    CHECK_EQ_INT(d.status, DMJ_STATUS_SKIPPED);
    CHECK(d.has_storage_delta_mib && d.storage_delta_mib == 0.5);
    msgpack_sbuffer_destroy(&sb);
}

static void test_identities(void)
{
    struct dmj_buf b;
    dmj_buf_init(&b, 1 << 20);

    struct dmj_team t = {.id = 42, .project_id = -9, .name = {"Team \xc3\xa9", 7}}, t2;
    memset(t.organization_id, 0xab, 16);
    CHECK_EQ_INT(dmj_codec_encode_team(&t, &b), 0);
    CHECK_EQ_INT(dmj_codec_decode_team(b.data, b.len, &t2), 0);
    CHECK_EQ_INT(t2.id, 42);
    CHECK_EQ_INT(t2.project_id, -9);
    CHECK(memcmp(t2.organization_id, t.organization_id, 16) == 0);
    CHECK(str_eq(t2.name, t.name));
    /* a team record is not a job, nor an org */
    struct dmj_job j;
    struct dmj_org o2;
    CHECK_EQ_INT(dmj_codec_decode_job(b.data, b.len, &j), DMJ_EBADRECORD);
    CHECK_EQ_INT(dmj_codec_decode_org(b.data, b.len, &o2), DMJ_EBADRECORD);

    dmj_buf_reset(&b);
    struct dmj_org o = {.name = {NULL, 0}};
    memset(o.id, 3, 16);
    CHECK_EQ_INT(dmj_codec_encode_org(&o, &b), 0);
    CHECK_EQ_INT(dmj_codec_decode_org(b.data, b.len, &o2), 0);
    CHECK(o2.name.ptr == NULL && o2.id[15] == 3);

    dmj_buf_reset(&b);
    struct dmj_user u = {.id = INT64_MIN,
                         .is_active = true,
                         .has_current_team = true,
                         .current_team_id = 7,
                         .has_current_org = false},
                    u2;
    CHECK_EQ_INT(dmj_codec_encode_user(&u, &b), 0);
    CHECK_EQ_INT(dmj_codec_decode_user(b.data, b.len, &u2), 0);
    CHECK(u2.id == INT64_MIN && u2.is_active && u2.has_current_team && u2.current_team_id == 7 &&
          !u2.has_current_org);
    CHECK_EQ_INT(dmj_codec_decode_user(b.data, b.len - 1, &u2), DMJ_EBADRECORD);

    static struct dmj_key k, k2;
    memset(&k, 0, sizeof k);
    strcpy(k.secure_value,
           "sha256$0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    CHECK_EQ_INT(strlen(k.secure_value), DMJ_KEY_HASH_LEN);
    k.id = S("key1");
    k.user_id = 7;
    k.n_scopes = 2;
    k.scopes[0] = S("warehouse_view:read");
    k.scopes[1] = S("*");
    k.n_teams = DMJ_KEY_MAX_TEAMS;
    for (unsigned i = 0; i < k.n_teams; i++)
        k.scoped_teams[i] = (int32_t)i - 3;
    k.n_orgs = 1;
    memset(k.scoped_orgs[0], 0x11, 16);
    dmj_buf_reset(&b);
    CHECK_EQ_INT(dmj_codec_encode_key(&k, &b), 0);
    CHECK_EQ_INT(dmj_codec_decode_key(b.data, b.len, &k2), 0);
    CHECK_EQ_STR(k2.secure_value, k.secure_value);
    CHECK(str_eq(k2.id, k.id) && k2.user_id == 7);
    CHECK_EQ_INT(k2.n_scopes, 2);
    CHECK(str_eq(k2.scopes[0], k.scopes[0]) && str_eq(k2.scopes[1], k.scopes[1]));
    CHECK_EQ_INT(k2.n_teams, DMJ_KEY_MAX_TEAMS);
    CHECK_EQ_INT(k2.scoped_teams[0], -3);
    CHECK_EQ_INT(k2.scoped_teams[DMJ_KEY_MAX_TEAMS - 1], DMJ_KEY_MAX_TEAMS - 4);
    CHECK_EQ_INT(k2.n_orgs, 1);
    CHECK(k2.scoped_orgs[0][7] == 0x11);
    CHECK(!k2.has_created_at);

    /* the creation time, when known, is one more element; records without it still load */
    size_t without = b.len;
    k.has_created_at = true;
    k.created_at = 1700000000123456;
    dmj_buf_reset(&b);
    CHECK_EQ_INT(dmj_codec_encode_key(&k, &b), 0);
    CHECK(b.len > without);
    CHECK_EQ_INT(dmj_codec_decode_key(b.data, b.len, &k2), 0);
    CHECK(k2.has_created_at && k2.created_at == 1700000000123456);
    CHECK(str_eq(k2.id, k.id) && k2.n_teams == DMJ_KEY_MAX_TEAMS);
    CHECK_EQ_INT(dmj_codec_decode_key(b.data, b.len - 1, &k2), DMJ_EBADRECORD);
    k.has_created_at = false;

    /* over the caps: refused when encoding, and when decoding a record that has them */
    k.n_teams = DMJ_KEY_MAX_TEAMS + 1;
    size_t before = b.len;
    CHECK_EQ_INT(dmj_codec_encode_key(&k, &b), DMJ_ETOOBIG);
    CHECK_EQ_INT(b.len, before);
    k.n_teams = 0;

    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 7);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "abc", 3);
    msgpack_pack_nil(&pk);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_array(&pk, DMJ_KEY_MAX_SCOPES + 1);
    for (int i = 0; i < DMJ_KEY_MAX_SCOPES + 1; i++) {
        msgpack_pack_str(&pk, 1);
        msgpack_pack_str_body(&pk, "s", 1);
    }
    msgpack_pack_array(&pk, 0);
    msgpack_pack_array(&pk, 0);
    k2.n_scopes = 99;
    CHECK_EQ_INT(dmj_codec_decode_key(sb.data, sb.size, &k2), DMJ_EBADRECORD);
    CHECK_EQ_INT(k2.n_scopes, 99); /* untouched on failure */
    msgpack_sbuffer_destroy(&sb);

    /* a hash longer than the field */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 7);
    msgpack_pack_int(&pk, 1);
    char longhash[100];
    memset(longhash, 'a', sizeof longhash);
    msgpack_pack_str(&pk, sizeof longhash);
    msgpack_pack_str_body(&pk, longhash, sizeof longhash);
    msgpack_pack_nil(&pk);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_array(&pk, 0);
    CHECK_EQ_INT(dmj_codec_decode_key(sb.data, sb.size, &k2), DMJ_EBADRECORD);
    msgpack_sbuffer_destroy(&sb);

    /* a creation time that is not an integer, and a ninth element */
    for (int variant = 0; variant < 2; variant++) {
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, variant == 0 ? 8 : 9);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_str(&pk, 3);
        msgpack_pack_str_body(&pk, "abc", 3);
        msgpack_pack_nil(&pk);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_array(&pk, 0);
        msgpack_pack_array(&pk, 0);
        msgpack_pack_array(&pk, 0);
        if (variant == 0) {
            msgpack_pack_nil(&pk);
        } else {
            msgpack_pack_int(&pk, 5);
            msgpack_pack_int(&pk, 6);
        }
        CHECK_EQ_INT(dmj_codec_decode_key(sb.data, sb.size, &k2), DMJ_EBADRECORD);
        msgpack_sbuffer_destroy(&sb);
    }

    /* a buffer too small for the record: DMJ_ETOOBIG, buffer unchanged */
    struct dmj_buf small;
    dmj_buf_init(&small, 10);
    struct dmj_job fj;
    full_job(&fj);
    CHECK_EQ_INT(dmj_codec_encode_job(&fj, &small), DMJ_ETOOBIG);
    CHECK_EQ_INT(small.len, 0);
    dmj_buf_dispose(&small);
    dmj_buf_dispose(&b);
}

int main(void)
{
    test_job_roundtrip();
    test_job_truncated();
    test_job_wrong_types();
    test_identities();
    return check_done();
}

/* Unit tests of the store's identity deletions (membership, key, user, team, organization);
 * test_store.c has the store id's and the deletion of a damaged team record. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tmpdir.h"
#include "dmj/store.h"


static const uint8_t ORG_A[16] = {0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0,
                                  0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0};
static const uint8_t ORG_B[16] = {0xb0, 0xb0, 0xb0, 0xb0, 0xb0, 0xb0, 0xb0, 0xb0,
                                  0xb0, 0xb0, 0xb0, 0xb0, 0xb0, 0xb0, 0xb0, 0xb0};

/* The number of problems verify reports (its result agreeing: 0 only when there are none). */
static int verify_lines(struct dmj_store *s)
{
    char *text = NULL;
    size_t len = 0;
    int lines = 0;
    FILE *f = open_memstream(&text, &len);
    int rc = dmj_store_verify(s, f);
    fclose(f);
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    if (lines)
        fprintf(stderr, "(verify says)\n%s", text);
    free(text);
    if ((rc == 0) != (lines == 0))
        return -1;
    return lines;
}

static void make_key(struct dmj_key *k, const char *hash, int64_t user)
{
    memset(k, 0, sizeof *k);
    snprintf(k->secure_value, sizeof k->secure_value, "%s", hash);
    k->id = (struct dmj_str){"kid", 3};
    k->user_id = user;
    k->n_scopes = 1;
    k->scopes[0] = (struct dmj_str){"warehouse_view:read", 19};
}

/* Organizations A and B; teams 3 and 9 in A, 7 in B; users 42 (in A and B) and 43 (in A);
 * keys "sha256$k42" and "sha256$k43"; one job in team 3. */
static void populate(struct dmj_store *s)
{
    static struct dmj_key k;
    struct dmj_write *w;
    struct dmj_org oa = {.name = {"A", 1}}, ob = {.name = {"B", 1}};
    memcpy(oa.id, ORG_A, 16);
    memcpy(ob.id, ORG_B, 16);
    struct dmj_team t[3] = {{.id = 3, .name = {"three", 5}},
                            {.id = 9, .name = {"nine", 4}},
                            {.id = 7, .name = {"seven", 5}}};
    memcpy(t[0].organization_id, ORG_A, 16);
    memcpy(t[1].organization_id, ORG_A, 16);
    memcpy(t[2].organization_id, ORG_B, 16);
    struct dmj_user u42 = {.id = 42, .is_active = true}, u43 = {.id = 43, .is_active = true};
    struct dmj_membership m[3] = {
        {.user_id = 42, .level = 8}, {.user_id = 42, .level = 1}, {.user_id = 43, .level = 1}};
    memcpy(m[0].organization_id, ORG_A, 16);
    memcpy(m[1].organization_id, ORG_B, 16);
    memcpy(m[2].organization_id, ORG_A, 16);
    struct dmj_job j = {.team_id = 3, .created_at = 1000, .status = DMJ_STATUS_RUNNING};
    j.id[15] = 1;

    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_org(w, &oa), 0);
    CHECK_EQ_INT(dmj_write_org(w, &ob), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(dmj_write_team(w, &t[i]), 0);
        CHECK_EQ_INT(dmj_write_membership(w, &m[i]), 0);
    }
    CHECK_EQ_INT(dmj_write_user(w, &u42), 0);
    CHECK_EQ_INT(dmj_write_user(w, &u43), 0);
    make_key(&k, "sha256$k42", 42);
    CHECK_EQ_INT(dmj_write_key(w, &k), 0);
    make_key(&k, "sha256$k43", 43);
    CHECK_EQ_INT(dmj_write_key(w, &k), 0);
    CHECK_EQ_INT(dmj_write_job(w, &j), 0);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    CHECK_EQ_INT(verify_lines(s), 0);
}

static int count_job(void *ctx, const struct dmj_job *j)
{
    (void)j;
    (*(unsigned *)ctx)++;
    return 0;
}

static void test_delete_membership_key_user(const char *root)
{
    char path[512];
    struct dmj_store *s;
    struct dmj_read *r;
    struct dmj_write *w;
    static struct dmj_key k;
    struct dmj_user u;
    uint8_t org[16];
    snprintf(path, sizeof path, "%s/people", root);
    CHECK_EQ_INT(dmj_store_open(path, 0, 1 << 24, &s), 0);
    populate(s);
    CHECK_EQ_INT(dmj_read_new(s, &r), 0);

    /* an aborted delete changes nothing */
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_delete_membership(w, 42, ORG_A), 0);
    CHECK_EQ_INT(dmj_write_delete_key(w, "sha256$k42"), 0);
    CHECK_EQ_INT(dmj_write_delete_user(w, 42), 0);
    dmj_write_abort(w);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_membership(r, 42, ORG_A), 0);
    CHECK_EQ_INT(dmj_read_key(r, "sha256$k42", &k), 0);
    CHECK_EQ_INT(dmj_read_user(r, 42, &u), 0);
    dmj_read_end(r);

    /* the membership of A goes; B's and the other user's stay */
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_delete_membership(w, 42, ORG_A), 0);
    CHECK_EQ_INT(dmj_write_delete_membership(w, 42, ORG_A), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_delete_membership(w, 44, ORG_B), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0); /* a not-found delete leaves it usable */
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_membership(r, 42, ORG_A), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_read_membership(r, 42, ORG_B), 0);
    CHECK_EQ_INT(dmj_read_membership(r, 43, ORG_A), 0);
    CHECK_EQ_INT(dmj_read_first_org_of_user(r, 42, org), 0);
    CHECK(memcmp(org, ORG_B, 16) == 0);
    dmj_read_end(r);

    /* the key goes; hashes no key could have are simply not found */
    char longer[100];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_delete_key(w, "sha256$k42"), 0);
    CHECK_EQ_INT(dmj_write_delete_key(w, "sha256$k42"), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_delete_key(w, "sha256$k4"), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_delete_key(w, ""), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_delete_key(w, longer), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_key(r, "sha256$k42", &k), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_read_key(r, "sha256$k43", &k), 0);
    dmj_read_end(r);

    /* the user goes; the other stays */
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_delete_user(w, 43), 0);
    CHECK_EQ_INT(dmj_write_delete_user(w, 43), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_delete_user(w, -1), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_user(r, 43, &u), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_read_user(r, 42, &u), 0);
    dmj_read_end(r);
    CHECK_EQ_INT(verify_lines(s), 0);

    /* a transaction of not-found deletes commits nothing: no new txnid to wake anyone */
    uint64_t before = dmj_store_last_txnid(s);
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_delete_user(w, 43), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_delete_membership(w, 43, ORG_B), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_delete_key(w, "sha256$none"), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_delete_team(w, 1234), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_delete_org(w, (const uint8_t[16]){1}), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    CHECK_EQ_INT(dmj_store_last_txnid(s), before);

    dmj_read_free(r);
    dmj_store_close(s);
}

static void test_delete_team_org(const char *root)
{
    char path[512];
    struct dmj_store *s;
    struct dmj_read *r;
    struct dmj_write *w;
    struct dmj_team t;
    int32_t team = 0;
    unsigned jobs = 0;
    snprintf(path, sizeof path, "%s/teams", root);
    CHECK_EQ_INT(dmj_store_open(path, 0, 1 << 24, &s), 0);
    populate(s);
    CHECK_EQ_INT(dmj_read_new(s, &r), 0);

    /* team 3 goes with its organization's entry: A's first team is then 9; its job stays */
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_delete_team(w, 3), 0);
    CHECK_EQ_INT(dmj_write_delete_team(w, 3), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_team(r, 3, &t), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_read_team(r, 9, &t), 0);
    CHECK_EQ_INT(dmj_read_first_team_of_org(r, ORG_A, &team), 0);
    CHECK_EQ_INT(team, 9);
    dmj_read_end(r);
    CHECK_EQ_INT(dmj_store_each_job(s, 3, count_job, &jobs), 0);
    CHECK_EQ_INT(jobs, 1);
    CHECK_EQ_INT(verify_lines(s), 0);

    /* organization A goes with its list of teams; team 9 still names it, which verify reports
     * until the team goes too; B is untouched */
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_delete_org(w, ORG_A), 0);
    CHECK_EQ_INT(dmj_write_delete_org(w, ORG_A), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_first_team_of_org(r, ORG_A, &team), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_read_first_team_of_org(r, ORG_B, &team), 0);
    CHECK_EQ_INT(team, 7);
    dmj_read_end(r);
    CHECK_EQ_INT(verify_lines(s), 1);
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_delete_team(w, 9), 0);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    CHECK_EQ_INT(verify_lines(s), 0);

    /* a team and its organization in one transaction, after a put of another team into the
     * same organization: all three entries go, nothing else */
    struct dmj_team t8 = {.id = 8, .name = {"eight", 5}};
    memcpy(t8.organization_id, ORG_B, 16);
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    CHECK_EQ_INT(dmj_write_team(w, &t8), 0);
    CHECK_EQ_INT(dmj_write_delete_team(w, 7), 0);
    CHECK_EQ_INT(dmj_write_delete_org(w, ORG_B), 0);
    CHECK_EQ_INT(dmj_write_delete_team(w, 8), 0);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);
    CHECK_EQ_INT(dmj_read_begin(r), 0);
    CHECK_EQ_INT(dmj_read_team(r, 7, &t), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_read_team(r, 8, &t), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_read_first_team_of_org(r, ORG_B, &team), DMJ_ENOTFOUND);
    CHECK_EQ_INT(dmj_read_membership(r, 42, ORG_B), 0); /* memberships are the caller's */
    dmj_read_end(r);
    CHECK_EQ_INT(verify_lines(s), 0);
    dmj_read_free(r);
    dmj_store_close(s);
}

int main(void)
{
    char root[64];
    if (tmpdir_make("dmj_test_store_identity.", root, sizeof root) != 0) {
        perror("mkdtemp");
        return 1;
    }
    test_delete_membership_key_user(root);
    test_delete_team_org(root);
    if (tmpdir_remove(root) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return check_done();
}

/** The identity pass of the sync engine: PostHog's organizations, teams, users, memberships
 * and API keys (hashed) into the store, and the deletion of those a previous pass wrote that
 * PostgreSQL no longer has (and only those). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "dmj/buf.h"
#include "dmj/error.h"
#include "dmj/import.h"
#include "dmj/store.h"

#include "sync_impl.h"

const struct dmj__sync_owned_list dmj__sync_owned_lists[OWN_COUNT] = {
    [OWN_KEY] = {"sync.keys", DMJ_KEY_HASH_LEN},
    [OWN_MEMBERSHIP] = {"sync.memberships", 8 + 16},
    [OWN_USER] = {"sync.users", 8},
    [OWN_TEAM] = {"sync.teams", 4},
    [OWN_ORG] = {"sync.orgs", 16},
};

/* Adds an identity record to the list of what this pass wrote (owned_lists' entry format). */
int dmj__sync_note_owned(struct sync *s, const struct dmj_import_record *rec)
{
    uint8_t e[DMJ_KEY_HASH_LEN];
    enum owned_kind k;
    switch (rec->kind) {
    case DMJ_IMPORT_KEY:
        k = OWN_KEY;
        memcpy(e, rec->u.key.secure_value, DMJ_KEY_HASH_LEN);
        break;
    case DMJ_IMPORT_MEMBERSHIP:
        k = OWN_MEMBERSHIP;
        memcpy(e, &rec->u.membership.user_id, 8);
        memcpy(e + 8, rec->u.membership.organization_id, 16);
        break;
    case DMJ_IMPORT_USER:
        k = OWN_USER;
        memcpy(e, &rec->u.user.id, 8);
        break;
    case DMJ_IMPORT_TEAM:
        k = OWN_TEAM;
        memcpy(e, &rec->u.team.id, 4);
        break;
    case DMJ_IMPORT_ORG:
        k = OWN_ORG;
        memcpy(e, rec->u.org.id, 16);
        break;
    default:
        return 0;
    }
    return dmj_buf_add(&s->seen[k], e, dmj__sync_owned_lists[k].size);
}

static const char *const identity_queries[] = {
    "SELECT json_build_object('kind', 'organization', 'id', o.id, 'name', o.name)::text"
    " FROM posthog_organization o ORDER BY o.id",
    "SELECT json_build_object('kind', 'team', 'id', t.id, 'project_id', t.project_id,"
    " 'organization_id', t.organization_id, 'name', t.name)::text"
    " FROM posthog_team t ORDER BY t.id",
    "SELECT json_build_object('kind', 'user', 'id', u.id, 'is_active', u.is_active,"
    " 'current_team_id', u.current_team_id,"
    " 'current_organization_id', u.current_organization_id)::text"
    " FROM posthog_user u ORDER BY u.id",
    "SELECT json_build_object('kind', 'membership', 'user_id', m.user_id,"
    " 'organization_id', m.organization_id, 'level', m.level)::text"
    " FROM posthog_organizationmembership m ORDER BY m.user_id, m.organization_id",
    /* Keys stay hashed: PostHog keeps "sha256$..." in secure_value; a legacy key without
     * one cannot be checked without its raw value, which is not copied. */
    "SELECT json_build_object('kind', 'personal_api_key', 'id', k.id, 'user_id', k.user_id,"
    " 'secure_value', k.secure_value, 'scopes', k.scopes, 'scoped_teams', k.scoped_teams,"
    " 'scoped_organizations', k.scoped_organizations, 'created_at', k.created_at)::text"
    " FROM posthog_personalapikey k WHERE k.secure_value IS NOT NULL ORDER BY k.id",
};
#define N_IDENTITY_QUERIES (sizeof identity_queries / sizeof identity_queries[0])

static int cmp_entry(const void *a, const void *b, void *size)
{
    return memcmp(a, b, *(const size_t *)size);
}

/* Whether the sorted list `v` of `n` entries of `size` bytes holds `e`. */
static bool holds(const uint8_t *v, size_t n, size_t size, const uint8_t *e)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(v + mid * size, e, size);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Deletes one owned identity; one already gone is not an error (nor counted). */
static int delete_owned(struct sync *s, enum owned_kind k, const uint8_t *e)
{
    char hash[DMJ_KEY_HASH_LEN + 1];
    int64_t user;
    int32_t team;
    int rc;
    switch (k) {
    case OWN_KEY:
        memcpy(hash, e, DMJ_KEY_HASH_LEN);
        hash[DMJ_KEY_HASH_LEN] = '\0';
        rc = dmj_write_delete_key(s->w, hash);
        break;
    case OWN_MEMBERSHIP:
        memcpy(&user, e, 8);
        rc = dmj_write_delete_membership(s->w, user, e + 8);
        break;
    case OWN_USER:
        memcpy(&user, e, 8);
        rc = dmj_write_delete_user(s->w, user);
        break;
    case OWN_TEAM:
        memcpy(&team, e, 4);
        rc = dmj_write_delete_team(s->w, team);
        break;
    default:
        rc = dmj_write_delete_org(s->w, e);
        break;
    }
    if (rc == 0)
        s->revoked++;
    return rc == DMJ_ENOTFOUND ? 0 : rc;
}

/* The owned list `k` as the store keeps it, into `out` (empty when absent); `*absent` says
 * whether it was. */
static int read_owned(struct sync *s, enum owned_kind k, struct dmj_buf *out, bool *absent)
{
    size_t cap = 4096, len = 0;
    int rc = dmj__sync_read_start(s);
    while (rc == 0) {
        dmj_buf_reset(out);
        rc = dmj_buf_reserve(out, cap);
        if (rc == 0)
            rc = dmj_read_meta(s->read, dmj__sync_owned_lists[k].name, out->data, cap, &len);
        if (rc != DMJ_ETOOBIG)
            break;
        cap *= 2;
        rc = 0;
    }
    dmj__sync_read_stop(s);
    *absent = rc == DMJ_ENOTFOUND;
    if (*absent) {
        len = 0;
        rc = 0;
    }
    if (rc == 0)
        out->len = len;
    return rc;
}

/* Deletes the entries of the owned list `k` that this pass did not write (PostgreSQL no
 * longer has them), and stores this pass's list in its place. Inside the identity write
 * transaction, after the pass's upserts. */
static int revoke_gone(struct sync *s, enum owned_kind k, struct dmj_buf *old)
{
    struct dmj_buf *now = &s->seen[k];
    size_t size = dmj__sync_owned_lists[k].size, n_now = now->len / size;
    bool absent;
    if (n_now)
        qsort_r(now->data, n_now, size, cmp_entry, &size);
    int rc = read_owned(s, k, old, &absent);
    if (rc == 0 && absent && k == OWN_MEMBERSHIP && s->stored_identities)
        fprintf(stderr, "dmj sync: warning: an older dmj sync kept this store's identities; it "
                        "did not delete memberships, teams or organizations: any that PostgreSQL "
                        "dropped before now stay (sync into a new store to drop them)\n");
    const uint8_t *o = (const uint8_t *)old->data;
    for (size_t i = 0; rc == 0 && i + size <= old->len; i += size) {
        if (!holds((const uint8_t *)now->data, n_now, size, o + i))
            rc = delete_owned(s, k, o + i);
    }
    if (rc == 0)
        rc = dmj_write_meta(s->w, dmj__sync_owned_lists[k].name, n_now ? now->data : "", n_now * size);
    return rc;
}

/* Reads the five tables; when their digest differs from the one stored with the last
 * identity write, upserts them all and deletes the owned identities they no longer hold, in
 * one transaction with the new digest. A row that does not parse counts as absent (its
 * identity is deleted if sync wrote it before: access fails closed) and is reported. */
int dmj__sync_identities(struct sync *s)
{
    PGresult *res[N_IDENTITY_QUERIES] = {0};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    int rc = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(ctx, IDENTITIES_FORMAT, sizeof IDENTITIES_FORMAT - 1))
        rc = -ENOMEM;
    for (size_t q = 0; rc == 0 && q < N_IDENTITY_QUERIES; q++) {
        rc = dmj__sync_pg_exec(s, identity_queries[q], 0, NULL, 0, &res[q]);
        for (int i = 0; rc == 0 && i < PQntuples(res[q]); i++) {
            if (!EVP_DigestUpdate(ctx, PQgetvalue(res[q], i, 0),
                                  (size_t)PQgetlength(res[q], i, 0) + 1))
                rc = -ENOMEM;
        }
    }
    if (rc == 0 && !EVP_DigestFinal_ex(ctx, md, &md_len))
        rc = -ENOMEM;
    EVP_MD_CTX_free(ctx);
    if (rc == 0) {
        unsigned char old[EVP_MAX_MD_SIZE];
        size_t old_len = 0;
        rc = dmj__sync_read_start(s);
        if (rc == 0)
            rc = dmj_read_meta(s->read, IDENTITIES_NAME, old, sizeof old, &old_len);
        dmj__sync_read_stop(s);
        if (rc == 0 && old_len == md_len && memcmp(old, md, md_len) == 0)
            goto out; /* nothing changed since the last identity write */
        s->stored_identities = rc == 0;
        if (rc == DMJ_ENOTFOUND || rc == 0)
            rc = 0;
    }
    for (int k = 0; k < OWN_COUNT; k++)
        dmj_buf_reset(&s->seen[k]);
    /* Upserts first, then the deletions, all in one transaction: a reader sees the
     * identities of one PostgreSQL snapshot or of the one before, never a mix. */
    for (size_t q = 0; rc == 0 && q < N_IDENTITY_QUERIES; q++)
        rc = dmj__sync_feed_rows(s, res[q]);
    if (rc == 0)
        rc = dmj__sync_write_start(s);
    struct dmj_buf old;
    dmj_buf_init(&old, (size_t)1 << 30);
    for (int k = 0; rc == 0 && k < OWN_COUNT; k++)
        rc = revoke_gone(s, (enum owned_kind)k, &old);
    dmj_buf_dispose(&old);
    if (rc == 0)
        rc = dmj_write_meta(s->w, IDENTITIES_NAME, md, md_len);
    if (rc == 0)
        rc = dmj__sync_batch_end(s);
out:
    dmj__sync_write_abort(s);
    for (size_t q = 0; q < N_IDENTITY_QUERIES; q++)
        PQclear(res[q]);
    return rc;
}

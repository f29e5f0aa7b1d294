/* A worker remembers a credential and team that passed authentication and the permission
 * checks, for the committed state they passed in only: a commit (a key that lost its scope, a
 * revoked key, a user made inactive) is checked in full again; another team, another
 * credential or a failure is never answered from what was remembered. Run without the answer
 * cache, which would answer the repeats itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dmj/api.h"
#include "dmj/identity.h"
#include "dmj/store.h"

#include "fixture.h"
#include "tmpdir.h"

#define L1 "/api/environments/1/data_modeling_jobs/"
#define L2 "/api/environments/2/data_modeling_jobs/"
#define LC "/api/environments/@current/data_modeling_jobs/"

static int status_of(struct dmj_api_worker *w, const char *path, const char *query,
                     const char *key)
{
    struct dmj_api_response r;
    char auth[128];
    snprintf(auth, sizeof auth, "Bearer %s", key);
    struct dmj_api_request q = fixture_request("GET", path, query, key ? auth : NULL, "h:1");
    dmj_api_handle(w, &q, &r);
    return r.status;
}

/* Writes K_READ with `scope` (NULL: deletes it) in one commit. */
static int commit_key(struct dmj_store *s, const char *scope)
{
    struct dmj_write *w;
    char hash[DMJ_KEY_HASH_LEN + 1];
    int rc = dmj_write_begin(s, &w);
    if (rc)
        return rc;
    if (scope) {
        rc = fixture_key(w, K_READ, 1, scope, 0, NULL);
    } else {
        dmj_key_hash(K_READ, strlen(K_READ), hash);
        rc = dmj_write_delete_key(w, hash);
    }
    if (rc) {
        dmj_write_abort(w);
        return rc;
    }
    return dmj_write_commit(w, NULL);
}

int main(void)
{
    char dir[64];
    struct dmj_store *store = NULL;
    struct dmj_api_worker *w = NULL;

    if (fixture_make("dmj-test-auth-recall-", dir, sizeof dir, &store) != 0) {
        fprintf(stderr, "could not build the fixture store\n");
        return 1;
    }
    setenv("DMJ_RESPONSE_CACHE", "0", 1);
    struct dmj_api_config cfg = {.max_limit = 1000};
    CHECK_EQ_INT(dmj_api_worker_new(store, &cfg, &w), 0);

    /* passed, then remembered: the same answer */
    CHECK_EQ_INT(status_of(w, L1, "limit=2", K_READ), 200);
    CHECK_EQ_INT(status_of(w, L1, "limit=3", K_READ), 200);
    CHECK_EQ_INT(status_of(w, LC, NULL, K_READ), 200);
    /* the same key in the query is its own entry; so is another team, and a failure is never
     * remembered */
    CHECK_EQ_INT(status_of(w, L1, "personal_api_key=" K_READ, NULL), 200);
    CHECK_EQ_INT(status_of(w, L1, "personal_api_key=" K_READ, NULL), 200);
    CHECK_EQ_INT(status_of(w, L1, NULL, K_TEAM3), 403);
    CHECK_EQ_INT(status_of(w, L1, NULL, K_TEAM3), 403);
    CHECK_EQ_INT(status_of(w, L1, NULL, K_WRONG_SCOPE), 403);
    CHECK_EQ_INT(status_of(w, L1, NULL, "phx_no_such_key"), 401);
    CHECK_EQ_INT(status_of(w, L1, NULL, "phx_no_such_key"), 401);
    CHECK_EQ_INT(status_of(w, "/api/environments/999/data_modeling_jobs/", NULL, K_READ), 404);
    CHECK_EQ_INT(status_of(w, L1 "running/", NULL, K_BOB), 200);
    CHECK_EQ_INT(status_of(w, L2, NULL, K_BOB), 403);

    /* a commit takes the scope away: checked again, refused */
    CHECK_EQ_INT(commit_key(store, "insight:read"), 0);
    CHECK_EQ_INT(status_of(w, L1, "limit=2", K_READ), 403);
    CHECK_EQ_INT(status_of(w, LC, NULL, K_READ), 403);
    CHECK_EQ_INT(commit_key(store, "warehouse_view:read"), 0);
    CHECK_EQ_INT(status_of(w, L1, "limit=2", K_READ), 200);
    CHECK_EQ_INT(status_of(w, L1, "limit=2", K_READ), 200);
    /* revoked: 401 at once */
    CHECK_EQ_INT(commit_key(store, NULL), 0);
    CHECK_EQ_INT(status_of(w, L1, "limit=2", K_READ), 401);
    CHECK_EQ_INT(status_of(w, L1, "personal_api_key=" K_READ, NULL), 401);

    dmj_api_worker_free(w);
    dmj_store_close(store);
    CHECK_EQ_INT(tmpdir_remove(dir), 0);
    return check_done();
}

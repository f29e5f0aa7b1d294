/* The fixture store of fixture.h, built through the store's own write calls. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dmj/identity.h"
#include "dmj/store.h"
#include "dmj/uuid.h"

#include "fixture.h"
#include "tmpdir.h"

void fixture_uuid(const char *text, uint8_t out[16])
{
    if (dmj_uuid_parse(text, strlen(text), out) != 0)
        memset(out, 0, 16);
}

struct dmj_str fixture_str(const char *s)
{
    struct dmj_str r = {s, s ? strlen(s) : 0};
    return r;
}

struct dmj_api_request fixture_request(const char *method, const char *path, const char *query,
                                       const char *authorization, const char *host)
{
    struct dmj_api_request q;
    memset(&q, 0, sizeof q);
    q.method = fixture_str(method);
    q.path = fixture_str(path);
    q.query = fixture_str(query);
    q.authorization = fixture_str(authorization);
    q.host = fixture_str(host);
    return q;
}

struct dmj_job fixture_job(const char *id, int32_t team, const char *sq, enum dmj_status status,
                           int seconds, const char *wf)
{
    struct dmj_job j;
    memset(&j, 0, sizeof j);
    fixture_uuid(id, j.id);
    j.team_id = team;
    if (sq) {
        j.has_saved_query_id = true;
        fixture_uuid(sq, j.saved_query_id);
    }
    j.status = status;
    j.created_at = FIXTURE_T0 + (int64_t)seconds * 1000000;
    j.workflow_id = fixture_str(wf);
    return j;
}

int fixture_key(struct dmj_write *w, const char *key, int64_t user, const char *scope, int32_t team,
                const char *org)
{
    static struct dmj_key k; /* large; the fixture is built once, on one thread */
    memset(&k, 0, sizeof k);
    dmj_key_hash(key, strlen(key), k.secure_value);
    k.id = fixture_str(key + 4);
    k.user_id = user;
    if (scope) {
        k.n_scopes = 1;
        k.scopes[0] = fixture_str(scope);
    }
    if (team) {
        k.n_teams = 1;
        k.scoped_teams[0] = team;
    }
    if (org) {
        k.n_orgs = 1;
        fixture_uuid(org, k.scoped_orgs[0]);
    }
    return dmj_write_key(w, &k);
}

static int add_member(struct dmj_write *w, int64_t user, const char *org)
{
    struct dmj_membership m;
    memset(&m, 0, sizeof m);
    m.user_id = user;
    fixture_uuid(org, m.organization_id);
    m.level = 1;
    return dmj_write_membership(w, &m);
}

static int add_user(struct dmj_write *w, int64_t id, bool active, int32_t team, const char *org)
{
    struct dmj_user u;
    memset(&u, 0, sizeof u);
    u.id = id;
    u.is_active = active;
    if (team) {
        u.has_current_team = true;
        u.current_team_id = team;
    }
    if (org) {
        u.has_current_org = true;
        fixture_uuid(org, u.current_org);
    }
    return dmj_write_user(w, &u);
}

int fixture_build(const char *dir, struct dmj_store **out)
{
    struct dmj_store *s = NULL;
    struct dmj_write *w = NULL;
    int rc = dmj_store_open(dir, 0, (size_t)64 << 20, &s);
    if (rc != 0)
        return rc;
    rc = dmj_write_begin(s, &w);
    if (rc != 0) {
        dmj_store_close(s);
        return rc;
    }

    struct dmj_org o1, o2;
    memset(&o1, 0, sizeof o1);
    memset(&o2, 0, sizeof o2);
    fixture_uuid(ORG1_TEXT, o1.id);
    o1.name = fixture_str("Org 1");
    fixture_uuid(ORG2_TEXT, o2.id);
    o2.name = fixture_str("Org 2");
    if (rc == 0)
        rc = dmj_write_org(w, &o1);
    if (rc == 0)
        rc = dmj_write_org(w, &o2);

    static const struct {
        int32_t id;
        const char *org;
    } teams[] = {{1, ORG1_TEXT}, {2, ORG2_TEXT}, {3, ORG1_TEXT}};
    for (size_t i = 0; rc == 0 && i < sizeof teams / sizeof teams[0]; i++) {
        struct dmj_team t;
        memset(&t, 0, sizeof t);
        t.id = teams[i].id;
        t.project_id = teams[i].id;
        fixture_uuid(teams[i].org, t.organization_id);
        t.name = fixture_str("Team");
        rc = dmj_write_team(w, &t);
    }

    /* alice (1): both orgs, current team 1; bob (2): org 1, nothing current; carol (3): no
     * organization; dave (4): inactive; erin (5): org 2, a current team that is gone. */
    static const struct {
        int64_t id;
        bool active;
        int32_t team;
        const char *org;
    } users[] = {
        {1, true, 1, ORG1_TEXT}, {2, true, 0, NULL}, {3, true, 0, NULL},
        {4, false, 1, ORG1_TEXT}, {5, true, 99, NULL},
    };
    for (size_t i = 0; rc == 0 && i < sizeof users / sizeof users[0]; i++)
        rc = add_user(w, users[i].id, users[i].active, users[i].team, users[i].org);
    static const struct {
        int64_t user;
        const char *org;
    } members[] = {{1, ORG1_TEXT}, {1, ORG2_TEXT}, {2, ORG1_TEXT}, {4, ORG1_TEXT}, {5, ORG2_TEXT}};
    for (size_t i = 0; rc == 0 && i < sizeof members / sizeof members[0]; i++)
        rc = add_member(w, members[i].user, members[i].org);

    static const struct {
        const char *key;
        int64_t user;
        const char *scope;
        int32_t team;
        const char *org;
    } keys[] = {
        {K_READ, 1, "warehouse_view:read", 0, NULL},
        {K_WRITE, 1, "warehouse_view:write", 0, NULL},
        {K_STAR, 1, "*", 0, NULL},
        {K_WRONG_SCOPE, 1, "insight:read", 0, NULL},
        {K_EMPTY_SCOPES, 1, NULL, 0, NULL},
        {K_TEAM3, 1, "warehouse_view:read", 3, NULL},
        {K_ORG2, 1, "warehouse_view:read", 0, ORG2_TEXT},
        {K_INACTIVE, 4, "warehouse_view:read", 0, NULL},
        {K_BOB, 2, "warehouse_view:read", 0, NULL},
        {K_CAROL, 3, "warehouse_view:read", 0, NULL},
        {K_ERIN, 5, "warehouse_view:read", 0, NULL},
        {K_TEAM3_WRONG_SCOPE, 1, "insight:read", 3, NULL},
        {K_BOB_WRONG_SCOPE, 2, "insight:read", 0, NULL},
    };
    for (size_t i = 0; rc == 0 && i < sizeof keys / sizeof keys[0]; i++)
        rc = fixture_key(w, keys[i].key, keys[i].user, keys[i].scope, keys[i].team, keys[i].org);

    for (size_t i = 0; rc == 0 && i < sizeof FIXTURE_JOBS / sizeof FIXTURE_JOBS[0]; i++) {
        const struct fixture_job_row *f = &FIXTURE_JOBS[i];
        struct dmj_job j =
            fixture_job(f->id, f->team, f->saved_query_id, f->status, f->seconds, f->workflow_id);
        j.rows_materialized = f->rows_materialized;
        j.error = fixture_str(f->error);
        if (f->last_run_after_t0_us >= 0) {
            j.has_last_run_at = true;
            j.last_run_at = FIXTURE_T0 + f->last_run_after_t0_us;
        }
        j.workflow_run_id = fixture_str(f->workflow_run_id);
        if (f->rows_expected >= 0) {
            j.has_rows_expected = true;
            j.rows_expected = f->rows_expected;
        }
        j.engine = fixture_str(f->engine);
        rc = dmj_write_job(w, &j);
    }

    if (rc != 0) {
        dmj_write_abort(w);
        dmj_store_close(s);
        return rc;
    }
    rc = dmj_write_commit(w, NULL);
    if (rc != 0) {
        dmj_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

int fixture_make(const char *prefix, char *dir, size_t cap, struct dmj_store **out)
{
    int rc = tmpdir_make(prefix, dir, cap);
    if (rc != 0)
        return rc;
    rc = fixture_build(dir, out);
    if (rc != 0)
        tmpdir_remove(dir);
    return rc;
}

/* Tests of dmj_api_handle: every check of docs/api.md's checks in order, each endpoint's exact
 * body, and that no key ever reads another team's jobs, against a store built in a temp dir. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "dmj/api.h"
#include "dmj/identity.h"
#include "dmj/query.h"
#include "dmj/store.h"
#include "dmj/uuid.h"

#include "store_impl.h"
#include "fixture.h"
#include "tmpdir.h"

static struct dmj_api_worker *W;
static struct dmj_api_response R;
static char body[1 << 16];

/* Optional request fields for the next call; reset after each. */
static const char *next_host = "testserver";
static const char *next_inm;
static const char *next_proto;

static int do_request(const char *method, const char *path, const char *query, const char *auth)
{
    struct dmj_api_request q = fixture_request(method, path, query, auth, next_host);
    q.if_none_match = fixture_str(next_inm);
    q.forwarded_proto = fixture_str(next_proto);
    dmj_api_handle(W, &q, &R);
    size_t n = R.body_len < sizeof body - 1 ? R.body_len : sizeof body - 1;
    memcpy(body, R.body, n);
    body[n] = '\0';
    next_host = "testserver";
    next_inm = NULL;
    next_proto = NULL;
    return R.status;
}

static int get(const char *path, const char *query, const char *key)
{
    char auth[256];
    if (key == NULL)
        return do_request("GET", path, query, NULL);
    snprintf(auth, sizeof auth, "Bearer %s", key);
    return do_request("GET", path, query, auth);
}

#define ERR(type, code, detail, attr)                                                              \
    "{\"type\":\"" type "\",\"code\":\"" code "\",\"detail\":\"" detail "\",\"attr\":" attr "}"
#define E404(detail) ERR("invalid_request", "not_found", detail, "null")
#define E403(detail) ERR("authentication_error", "permission_denied", detail, "null")
#define E401F(detail) ERR("authentication_error", "authentication_failed", detail, "null")
#define E401_NONE                                                                                  \
    ERR("authentication_error", "not_authenticated",                                               \
        "Authentication credentials were not provided.", "null")

#define L1 "/api/environments/1/data_modeling_jobs/"

static unsigned throttle_wait;
static char throttle_seen[DMJ_KEY_HASH_LEN + 1];

static unsigned fake_limiter(void *ctx, const char *secure_value)
{
    (void)ctx;
    snprintf(throttle_seen, sizeof throttle_seen, "%s", secure_value);
    return throttle_wait;
}

static void test_routes(void)
{
    CHECK_EQ_INT(get("/api/foo", NULL, NULL), 404);
    CHECK_EQ_STR(body, E404("Endpoint not found."));
    CHECK(!R.allow);
    CHECK_EQ_INT(get("/api", NULL, NULL), 404);
    CHECK_EQ_STR(body, E404("Endpoint not found."));
    CHECK_EQ_INT(get("/apix", NULL, NULL), 404);
    CHECK_EQ_STR(body, E404("Not found."));
    CHECK_EQ_INT(get("/", NULL, NULL), 404);
    CHECK_EQ_STR(body, E404("Not found."));
    CHECK_EQ_INT(do_request("POST", "/nothing", NULL, NULL), 404);
    CHECK_EQ_STR(body, E404("Not found."));
    /* A team segment with '.' or empty matches no route. */
    CHECK_EQ_INT(get("/api/environments/1.0/data_modeling_jobs/", NULL, K_READ), 404);
    CHECK_EQ_STR(body, E404("Endpoint not found."));
    CHECK_EQ_INT(get("/api/environments//data_modeling_jobs/", NULL, K_READ), 404);
    CHECK_EQ_STR(body, E404("Endpoint not found."));
    CHECK_EQ_INT(get(L1 "a/b/", NULL, K_READ), 404);
    CHECK_EQ_STR(body, E404("Endpoint not found."));
    CHECK_EQ_INT(get(L1 "x.json", NULL, K_READ), 404);
    CHECK_EQ_STR(body, E404("Endpoint not found."));
    CHECK_EQ_INT(get("/api/environments/1/data_modeling_jobs//", NULL, K_READ), 404);
    /* Routed paths: both prefixes, slash optional, percent-decoded first. */
    CHECK_EQ_INT(get("/api/environments/1/data_modeling_jobs", NULL, K_READ), 200);
    CHECK(R.allow && R.json);
    CHECK_EQ_STR(R.endpoint, "list");
    CHECK_EQ_INT(get("/api/projects/1/data_modeling_jobs/", NULL, K_READ), 200);
    CHECK_EQ_INT(get("/api/%65nvironments/1/data_modeling_jobs%2Frunning", NULL, K_READ), 200);
    CHECK_EQ_STR(R.endpoint, "running");
    CHECK_EQ_INT(get(L1 "recent", NULL, K_READ), 200);
    CHECK_EQ_STR(R.endpoint, "recent");
    CHECK_EQ_INT(get(L1 "RECENT/", NULL, K_READ), 404); /* a (malformed) job id */
    CHECK_EQ_STR(R.endpoint, "retrieve");
    CHECK_EQ_STR(body, E404("Not found."));
    /* Django validates the Host before routing. */
    next_host = "bad_host.example";
    CHECK_EQ_INT(get(L1, NULL, K_READ), 400);
    next_host = "[::1]:8000";
    CHECK_EQ_INT(get(L1, NULL, K_READ), 200);
    next_host = "Example.COM.:80";
    CHECK_EQ_INT(get(L1, NULL, K_READ), 200);
    next_host = ".";
    CHECK_EQ_INT(get(L1, NULL, K_READ), 400);
    next_host = "a:8x";
    CHECK_EQ_INT(get(L1, NULL, K_READ), 400);
}

static void test_authentication(void)
{
    CHECK_EQ_INT(get(L1, NULL, NULL), 401);
    CHECK_EQ_STR(body, E401_NONE);
    CHECK(R.www_authenticate && R.allow);
    CHECK_EQ_INT(get(L1, NULL, "phx_unknown"), 401);
    CHECK_EQ_STR(body, E401F("Personal API key found in request Authorization header is invalid."));
    CHECK(R.www_authenticate);
    CHECK_EQ_INT(get(L1, "personal_api_key=nope", NULL), 401);
    CHECK_EQ_STR(body, E401F("Personal API key found in request query string is invalid."));
    CHECK_EQ_INT(get(L1, "personal_api_key=", NULL), 401);
    CHECK_EQ_STR(body, E401F("Personal API key found in request query string is invalid."));
    /* Last value wins. */
    CHECK_EQ_INT(get(L1, "personal_api_key=nope&personal_api_key=" K_READ, NULL), 200);
    CHECK_EQ_INT(get(L1, "personal_api_key=" K_READ "&personal_api_key=nope", NULL), 401);
    CHECK_EQ_INT(get(L1, NULL, "pha_anything"), 401);
    CHECK_EQ_STR(body, E401F("Invalid access token."));
    /* The header wins over the query when it matches the Bearer pattern... */
    CHECK_EQ_INT(get(L1, "personal_api_key=" K_READ, "phx_unknown"), 401);
    /* ...and counts as absent when it does not. */
    CHECK_EQ_INT(do_request("GET", L1, "personal_api_key=" K_READ, "bearer " K_READ), 200);
    CHECK_EQ_INT(do_request("GET", L1, NULL, "bearer " K_READ), 401);
    CHECK_EQ_STR(body, E401_NONE);
    CHECK_EQ_INT(do_request("GET", L1, NULL, "Bearer x"), 401); /* \S.+ needs two chars */
    CHECK_EQ_STR(body, E401_NONE);
    CHECK_EQ_INT(do_request("GET", L1, NULL, "Bearer"), 401);
    CHECK_EQ_STR(body, E401_NONE);
    CHECK_EQ_INT(do_request("GET", L1, NULL, "Bearer" K_READ), 401);
    CHECK_EQ_STR(body, E401_NONE);
    /* Spaces as Python's \s and str.strip() know them; one final '\n' allowed. */
    CHECK_EQ_INT(do_request("GET", L1, NULL, "Bearer \t\x1c " K_READ " \xa0\t"), 200);
    CHECK_EQ_INT(do_request("GET", L1, NULL, "Bearer " K_READ "\n"), 200);
    CHECK_EQ_INT(do_request("GET", L1, NULL, "Bearer " K_READ "\nx"), 401);
    CHECK_EQ_STR(body, E401_NONE);
    CHECK_EQ_INT(do_request("GET", L1, NULL, "Bearer " K_READ " x"), 401);
    CHECK_EQ_STR(body, E401F("Personal API key found in request Authorization header is invalid."));
    /* Inactive owner. */
    CHECK_EQ_INT(get(L1, NULL, K_INACTIVE), 401);
    CHECK_EQ_STR(body, E401F("Personal API key found in request Authorization header is invalid."));
}

static void test_methods(void)
{
    CHECK_EQ_INT(do_request("POST", L1, NULL, NULL), 401); /* authentication first */
    CHECK_EQ_INT(do_request("POST", L1, NULL, "Bearer " K_READ), 405);
    CHECK_EQ_STR(body, ERR("invalid_request", "method_not_allowed",
                           "Method \\\"POST\\\" not allowed.", "null"));
    CHECK(R.allow && !R.www_authenticate);
    /* Before the team is looked at, and with the method upper-cased as Django does. */
    CHECK_EQ_INT(do_request("delete", "/api/projects/999/data_modeling_jobs/x", NULL,
                            "Bearer " K_WRONG_SCOPE),
                 405);
    CHECK_EQ_STR(body, ERR("invalid_request", "method_not_allowed",
                           "Method \\\"DELETE\\\" not allowed.", "null"));
    CHECK_EQ_INT(do_request("get", L1, NULL, "Bearer " K_READ), 200);
    CHECK_EQ_INT(do_request("HEAD", L1, NULL, "Bearer " K_READ), 200);
    CHECK(R.head && R.body_len > 0);
    CHECK_EQ_INT(do_request("OPTIONS", L1, NULL, "Bearer " K_READ), 200);
    CHECK_EQ_STR(body, "{\"name\":\"Data Modeling Job List\",\"description\":\"List data modeling "
                       "jobs which are \\\"runs\\\" for our saved queries.\",\"renders\":["
                       "\"application/json\"],\"parses\":[\"application/json\","
                       "\"application/x-www-form-urlencoded\",\"multipart/form-data\"]}");
    CHECK(R.etag[0] == '\0');
    /* The detail route does not look the job up. */
    CHECK_EQ_INT(do_request("OPTIONS", L1 "not-a-job", NULL, "Bearer " K_READ), 200);
    CHECK(strstr(body, "\"name\":\"Data Modeling Job Instance\"") != NULL);
    CHECK_EQ_INT(do_request("OPTIONS", L1 "running", NULL, "Bearer " K_READ), 200);
    CHECK(strstr(body, "{\"name\":\"Running\",\"description\":\"Get all currently running jobs "
                       "from the v2 backend.\"") == body);
    CHECK_EQ_INT(do_request("OPTIONS", L1 "recent/", NULL, "Bearer " K_READ), 200);
    CHECK(strstr(body, "{\"name\":\"Recent\",\"description\":\"Get the most recent non-running "
                       "job for each saved query from the v2 backend.\"") == body);
    /* OPTIONS runs every check. */
    CHECK_EQ_INT(do_request("OPTIONS", L1, NULL, NULL), 401);
    CHECK_EQ_INT(do_request("OPTIONS", L1, NULL, "Bearer " K_WRONG_SCOPE), 403);
    CHECK_EQ_INT(
        do_request("OPTIONS", "/api/projects/77/data_modeling_jobs/", NULL, "Bearer " K_READ), 404);
}

static void test_teams(void)
{
    static const char *bad[] = {"abc",         "99",         "2147483648",
                                "-2147483649", "4294967297", "1e3",
                                "0x1",         "%E0%A5%A7",  "99999999999999999999999"};
    char path[128];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "/api/environments/%s/data_modeling_jobs/", bad[i]);
        CHECK_EQ_INT(get(path, NULL, K_READ), 404);
        CHECK_EQ_STR(body, E404("Project not found."));
    }
    /* int() spellings of team 1. */
    CHECK_EQ_INT(get("/api/environments/+1/data_modeling_jobs/", NULL, K_READ), 200);
    CHECK_EQ_INT(get("/api/environments/%201%09/data_modeling_jobs/", NULL, K_READ), 200);
    CHECK_EQ_INT(get("/api/environments/0_0_1/data_modeling_jobs/", NULL, K_READ), 200);
    /* @current: the current team; else the first team of the first organization. */
    CHECK_EQ_INT(get("/api/environments/@current/data_modeling_jobs/recent", NULL, K_READ), 200);
    CHECK_EQ_STR(body, RECENT_TEAM1);
    CHECK_EQ_INT(get("/api/projects/%40current/data_modeling_jobs/running", NULL, K_BOB), 200);
    CHECK_EQ_STR(body, RUNNING_TEAM1);
    CHECK_EQ_INT(get("/api/projects/@current/data_modeling_jobs/", NULL, K_ERIN), 200);
    CHECK(strstr(body, J_TEAM2_ID) != NULL);
    CHECK_EQ_INT(get("/api/projects/@current/data_modeling_jobs/", NULL, K_CAROL), 404);
    CHECK_EQ_STR(body, E404("Project not found."));
    CHECK_EQ_INT(get("/api/projects/@CURRENT/data_modeling_jobs/", NULL, K_READ), 404);
}

static void test_permissions(void)
{
    CHECK_EQ_INT(get(L1, NULL, K_TEAM3), 403);
    CHECK_EQ_STR(body, E403("API key does not have access to the requested project: ID 1."));
    CHECK_EQ_INT(get("/api/environments/3/data_modeling_jobs/", NULL, K_TEAM3), 200);
    CHECK_EQ_INT(get(L1, NULL, K_ORG2), 403);
    CHECK_EQ_STR(
        body,
        E403("API key does not have access to the requested organization: ID " ORG1_TEXT "."));
    CHECK_EQ_INT(get("/api/environments/2/data_modeling_jobs/", NULL, K_ORG2), 200);
    /* Restrictions before the scope, the scope before the membership. */
    CHECK_EQ_INT(get(L1, NULL, K_TEAM3_WRONG_SCOPE), 403);
    CHECK_EQ_STR(body, E403("API key does not have access to the requested project: ID 1."));
    CHECK_EQ_INT(get(L1, NULL, K_WRONG_SCOPE), 403);
    CHECK_EQ_STR(body, E403("API key missing required scope 'warehouse_view:read'"));
    CHECK_EQ_INT(get(L1, NULL, K_EMPTY_SCOPES), 403);
    CHECK_EQ_STR(body, E403("API key missing required scope 'warehouse_view:read'"));
    CHECK_EQ_INT(get(L1, NULL, K_WRITE), 200);
    CHECK_EQ_INT(get(L1, NULL, K_STAR), 200);
    CHECK_EQ_INT(get("/api/environments/2/data_modeling_jobs/", NULL, K_BOB), 403);
    CHECK_EQ_STR(body, E403("You don't have access to the project."));
    CHECK_EQ_INT(get("/api/environments/2/data_modeling_jobs/", NULL, K_BOB_WRONG_SCOPE), 403);
    CHECK_EQ_STR(body, E403("API key missing required scope 'warehouse_view:read'"));
    /* A team that does not exist is 404 whatever the key's scope. */
    CHECK_EQ_INT(get("/api/environments/5/data_modeling_jobs/", NULL, K_WRONG_SCOPE), 404);
}

static void test_rate_limit(struct dmj_store *store)
{
    struct dmj_api_worker *plain = W;
    struct dmj_api_config cfg = {.max_limit = 1000, .rate_limit = fake_limiter};
    CHECK_EQ_INT(dmj_api_worker_new(store, &cfg, &W), 0);
    throttle_wait = 0;
    CHECK_EQ_INT(get(L1, NULL, K_READ), 200);
    CHECK_EQ_STR(throttle_seen, K_READ_HASH);
    throttle_wait = 7;
    CHECK_EQ_INT(get(L1, NULL, K_READ), 429);
    CHECK_EQ_STR(body, ERR("throttled_error", "throttled",
                           "Request was throttled. Expected available in 7 seconds.", "null"));
    CHECK_EQ_INT(R.retry_after, 7);
    throttle_wait = 1;
    CHECK_EQ_INT(get(L1, NULL, K_READ), 429);
    CHECK_EQ_STR(body, ERR("throttled_error", "throttled",
                           "Request was throttled. Expected available in 1 second.", "null"));
    /* After the membership check: a non-member is 403, not 429. */
    CHECK_EQ_INT(get("/api/environments/2/data_modeling_jobs/", NULL, K_BOB), 403);
    dmj_api_worker_free(W);
    W = plain;
}

static void test_saved_query_filter(void)
{
    CHECK_EQ_INT(get(L1, "saved_query_id=%00", K_READ), 400);
    CHECK_EQ_STR(body, ERR("validation_error", "null_characters_not_allowed",
                           "Null characters are not allowed.", "\"saved_query_id\""));
    CHECK_EQ_INT(get(L1, "saved_query_id=nope&cursor=YQ", K_READ), 400);
    CHECK_EQ_STR(body, ERR("validation_error", "invalid_choice",
                           "Select a valid choice. That choice is not one of the available "
                           "choices.",
                           "\"saved_query_id\""));
    CHECK_EQ_INT(get(L1 J1_ID, "saved_query_id=x", K_READ), 400);
    /* Empty: no filter. */
    CHECK_EQ_INT(get(L1, "saved_query_id=&limit=1000", K_READ), 200);
    CHECK(strstr(body, J1_ID) != NULL && strstr(body, J3_ID) != NULL);
    CHECK_EQ_INT(get(L1, "saved_query_id={urn:uuid:" SQ_B_UPPER "}", K_READ), 200);
    CHECK(strstr(body, J3_ID) != NULL && strstr(body, J1_ID) == NULL);
    CHECK_EQ_INT(get(L1, "saved_query_id=" SQ_UNKNOWN, K_READ), 200);
    CHECK_EQ_STR(body, "{\"next\":null,\"previous\":null,\"results\":[]}");
}

static void test_list(void)
{
    CHECK_EQ_INT(get(L1, "cursor=YQ", K_READ), 404); /* base64 without its padding */
    CHECK_EQ_STR(body, E404("Invalid cursor"));
    /* Non-base64 characters are dropped as CPython does: "%%%" is the empty cursor. */
    CHECK_EQ_INT(get(L1, "cursor=%%%", K_READ), 200);
    CHECK(strncmp(body, "{\"next\":null,\"previous\":null,\"results\":[{", 41) == 0);
    CHECK_EQ_INT(get(L1, "cursor=", K_READ), 200);
    CHECK(strncmp(body, "{\"next\":null,\"previous\":null,\"results\":[{", 41) == 0);
    CHECK_EQ_INT(get(L1, "limit=1&b=2&a", K_READ), 200);
    CHECK_EQ_STR(body, LIST_LIMIT1);
    CHECK(R.etag[0] == '"');
    next_proto = "https";
    CHECK_EQ_INT(get(L1, "limit=1&b=2&a", K_READ), 200);
    CHECK(strstr(body, "\"next\":\"https://testserver/") != NULL);
    next_proto = "HTTPS";
    CHECK_EQ_INT(get(L1, "limit=1&b=2&a", K_READ), 200);
    CHECK(strstr(body, "\"next\":\"http://testserver/") != NULL);
    /* Limit rules: invalid or <= 0 -> 100 (all six of team 1's jobs), clamped to max. */
    static const char *all[] = {"limit=0", "limit=-3",  "limit=abc",
                                "limit=",  "limit=2.5", "limit=99999999999999999999999"};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        CHECK_EQ_INT(get(L1, all[i], K_READ), 200);
        CHECK(strstr(body, "\"next\":null") == body + 1);
    }
    CHECK_EQ_INT(get(L1, "limit=%205%20", K_READ), 200);
    CHECK(strstr(body, "\"next\":\"http") == body + 1);
    /* A query as long as h2o lets through, every byte re-quoted thrice over in the link. */
    {
        static const char start[] = "{\"next\":\"http://testserver/api/";
        size_t n = 130000;
        char *q = malloc(10 + 3 * n + 1);
        CHECK(q != NULL);
        if (q) {
            memcpy(q, "limit=1&x=", 10);
            for (size_t i = 0; i < n; i++)
                memcpy(q + 10 + 3 * i, "%FF", 3);
            q[10 + 3 * n] = '\0';
            CHECK_EQ_INT(get(L1, q, K_READ), 200);
            CHECK(strncmp(body, start, sizeof start - 1) == 0);
            CHECK(R.body_len > 9 * n);
            free(q);
        }
    }
    /* The previous link of the second page. */
    CHECK_EQ_INT(get(L1, "limit=1&cursor=" SECOND_PAGE_CURSOR, K_READ), 200);
    CHECK(strstr(body, "\"previous\":\"http://testserver" L1 "?cursor=") != NULL);
}

static void test_retrieve(void)
{
    CHECK_EQ_INT(get(L1 J1_ID, NULL, K_READ), 200);
    CHECK_EQ_STR(body, J1_JSON);
    CHECK_EQ_STR(R.endpoint, "retrieve");
    CHECK_EQ_INT(get(L1 J1_ID_ALT "/", NULL, K_READ), 200);
    CHECK_EQ_STR(body, J1_JSON);
    CHECK_EQ_INT(get(L1 J1_ID, "saved_query_id=" SQ_A, K_READ), 200);
    CHECK_EQ_INT(get(L1 J1_ID, "saved_query_id=" SQ_B, K_READ), 404);
    CHECK_EQ_STR(body, E404("Not found."));
    CHECK_EQ_INT(get(L1 "00000000-0000-0000-0000-000000000000", NULL, K_READ), 404);
    CHECK_EQ_STR(body, E404("Not found."));
    /* Another team's job is not found in this team, with any key. */
    CHECK_EQ_INT(get(L1 J_TEAM2_ID, NULL, K_READ), 404);
    CHECK_EQ_STR(body, E404("Not found."));
    CHECK_EQ_INT(get(L1 J_TEAM2_ID, NULL, K_STAR), 404);
    CHECK_EQ_INT(get("/api/environments/2/data_modeling_jobs/" J_TEAM2_ID, NULL, K_READ), 200);
    CHECK_EQ_INT(get("/api/environments/2/data_modeling_jobs/" J1_ID, NULL, K_READ), 404);
    /* Hidden (duckgres) jobs are never served. */
    CHECK_EQ_INT(get(L1 J_HIDDEN_ID, NULL, K_READ), 404);
}

static void test_running_recent(void)
{
    CHECK_EQ_INT(get(L1 "running/", "saved_query_id=nope&cursor=YQ", K_READ), 200);
    CHECK_EQ_STR(body, RUNNING_TEAM1);
    CHECK_EQ_INT(get(L1 "recent", "saved_query_id=nope", K_READ), 200);
    CHECK_EQ_STR(body, RECENT_TEAM1);
    CHECK_EQ_INT(get("/api/environments/3/data_modeling_jobs/running", NULL, K_READ), 200);
    CHECK_EQ_STR(body, "[]");
    CHECK_EQ_INT(get("/api/environments/3/data_modeling_jobs/recent", NULL, K_READ), 200);
    CHECK_EQ_STR(body, "[]");
}

/* Django parses the query only when something reads it; past the field limit that is a 500. */
static void test_unparsable_query(void)
{
    static char q[4 * DMJ_QUERY_MAX_PARAMS + 64];
    size_t n = 0;
    for (unsigned i = 0; i < DMJ_QUERY_MAX_PARAMS + 10; i++)
        n += (size_t)snprintf(q + n, sizeof q - n, "%sa", i ? "&" : "");
    CHECK_EQ_INT(get(L1 "running", q, K_READ), 200);
    CHECK_EQ_STR(body, RUNNING_TEAM1);
    CHECK_EQ_INT(get(L1 "recent", q, K_READ), 200);
    CHECK_EQ_INT(do_request("OPTIONS", L1, q, "Bearer " K_READ), 200);
    CHECK_EQ_INT(do_request("POST", L1, q, "Bearer " K_READ), 405);
    CHECK_EQ_INT(get(L1, q, "pha_x"), 401);
    CHECK_EQ_INT(get(L1 "running", q, NULL), 500); /* looks for personal_api_key */
    CHECK_EQ_STR(body, ERR("server_error", "error", "A server error occurred.", "null"));
    CHECK_EQ_INT(get(L1, q, K_READ), 500);
    CHECK_EQ_INT(get(L1 J1_ID, q, K_READ), 500);
}

static void test_cross_team(void)
{
    /* No key of any kind lists a job of team 2 under team 1 or team 3, or team 1's under 2;
     * each gets the status docs/api.md's checks gives it: teams 1 and 3 are in org 1, team 2
     * in org 2; alice (read, write, star, team3, org2) is in both, bob in org 1, erin in 2. */
    static const struct {
        const char *key;
        int team1, team2, team3;
    } keys[] = {{K_READ, 200, 200, 200}, {K_WRITE, 200, 200, 200}, {K_STAR, 200, 200, 200},
                {K_TEAM3, 403, 403, 200}, /* scoped to team 3 */
                {K_ORG2, 403, 200, 403},  /* scoped to org 2 */
                {K_BOB, 200, 403, 200},   /* not a member of org 2 */
                {K_ERIN, 403, 200, 403}}; /* not a member of org 1 */
    static const struct {
        const char *path;
        int team;
    } paths[] = {{L1, 1},
                 {L1 "running", 1},
                 {L1 "recent", 1},
                 {"/api/environments/3/data_modeling_jobs/", 3},
                 {"/api/environments/3/data_modeling_jobs/recent", 3}};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
            int want = paths[p].team == 1 ? keys[k].team1 : keys[k].team3;
            CHECK_EQ_INT(get(paths[p].path, "limit=1000", keys[k].key), want);
            CHECK(strstr(body, J_TEAM2_ID) == NULL);
        }
        CHECK_EQ_INT(get("/api/environments/2/data_modeling_jobs/", "limit=1000", keys[k].key),
                     keys[k].team2);
        CHECK(strstr(body, J1_ID) == NULL && strstr(body, J3_ID) == NULL);
    }
}

static void test_etag(void)
{
    char etag[48];
    CHECK_EQ_INT(get(L1, "limit=2", K_READ), 200);
    memcpy(etag, R.etag, sizeof etag);
    CHECK(strlen(etag) > 2 && etag[0] == '"' && etag[strlen(etag) - 1] == '"');
    /* HEAD has the same validator; another query or key has another. */
    CHECK_EQ_INT(do_request("HEAD", L1, "limit=2", "Bearer " K_READ), 200);
    CHECK_EQ_STR(R.etag, etag);
    CHECK_EQ_INT(get(L1, "limit=3", K_READ), 200);
    CHECK(strcmp(R.etag, etag) != 0);
    CHECK_EQ_INT(get(L1, "limit=2", K_STAR), 200);
    CHECK(strcmp(R.etag, etag) != 0);
    char inm[128];
    snprintf(inm, sizeof inm, "\"zzz\", W/%s", etag);
    next_inm = inm;
    CHECK_EQ_INT(get(L1, "limit=2", K_READ), 304);
    CHECK_EQ_INT(R.body_len, 0);
    CHECK_EQ_STR(R.etag, etag);
    next_inm = "*";
    CHECK_EQ_INT(get(L1, "limit=2", K_READ), 304);
    next_inm = "\"other\"";
    CHECK_EQ_INT(get(L1, "limit=2", K_READ), 200);
    /* Only a 200 has a validator, and checks come before the 304. */
    next_inm = "*";
    CHECK_EQ_INT(get(L1, "limit=2", NULL), 401);
    CHECK(R.etag[0] == '\0');
    next_inm = "*";
    CHECK_EQ_INT(get(L1 J_TEAM2_ID, NULL, K_READ), 404);
    CHECK(R.etag[0] == '\0');
    next_inm = "*";
    CHECK_EQ_INT(get(L1, "cursor=YQ", K_READ), 404);
    next_inm = "*";
    CHECK_EQ_INT(get(L1 J1_ID, NULL, K_READ), 304);
}

static void test_health(void)
{
    next_host = "not valid";
    CHECK_EQ_INT(do_request("GET", "/_health", NULL, NULL), 200);
    CHECK_EQ_STR(body, "{\"status\":\"ok\"}");
    CHECK_EQ_STR(R.endpoint, "health");
    CHECK_EQ_INT(do_request("GET", "/_health/", NULL, NULL), 404);
}

/* Replaces a stored value with bytes no codec accepts, behind the store's back. */
static int corrupt(struct dmj_store *s, enum dmj__db db, const void *key, size_t key_len)
{
    static const char junk[] = "\xc1\xc1 not msgpack";
    MDB_txn *txn;
    MDB_val k = {key_len, (void *)key}, v = {sizeof junk - 1, (void *)junk};
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0)
        return rc;
    rc = mdb_put(txn, s->dbi[db], &k, &v, 0);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

/* Undecodable records answer 500 with the generic body, never a crash or a partial page. */
static void test_bad_records(struct dmj_store *store)
{
    uint8_t team3[4], job2[KEY_JOB_LEN], id[16];
    dmj__put32(team3, 3);
    fixture_uuid(J2_ID, id);
    dmj__key_job(job2, 1, FIXTURE_T0 + 4000000, id);
    CHECK_EQ_INT(corrupt(store, DB_TEAMS, team3, sizeof team3), 0);
    CHECK_EQ_INT(corrupt(store, DB_JOBS, job2, sizeof job2), 0);

    static const char *e500 = ERR("server_error", "error", "A server error occurred.", "null");
    CHECK_EQ_INT(get("/api/environments/3/data_modeling_jobs/", NULL, K_READ), 500);
    CHECK_EQ_STR(body, e500);
    CHECK_EQ_INT(get(L1, NULL, K_READ), 500);
    CHECK_EQ_STR(body, e500);
    CHECK(R.etag[0] == '\0');
    CHECK_EQ_INT(get(L1 J2_ID, NULL, K_READ), 500);
    CHECK_EQ_STR(body, e500);
    /* Pages and jobs that do not touch the bad record are still served (recent stops at
     * J1, newer than the damaged J2 of the same saved query). */
    CHECK_EQ_INT(get(L1 "recent", NULL, K_READ), 200);
    CHECK_EQ_STR(body, RECENT_TEAM1);
    CHECK_EQ_INT(get(L1 J1_ID, NULL, K_READ), 200);
    CHECK_EQ_INT(get(L1, "limit=2", K_READ), 200);
    CHECK_EQ_INT(get(L1 "running", NULL, K_READ), 200);
    CHECK_EQ_STR(body, RUNNING_TEAM1);
}

int main(void)
{
    char dir[64];
    struct dmj_store *store = NULL;

    if (fixture_make("dmj-test-api-", dir, sizeof dir, &store) != 0) {
        fprintf(stderr, "could not build the fixture store\n");
        return 1;
    }
    struct dmj_api_config cfg = {.max_limit = 1000};
    CHECK_EQ_INT(dmj_api_worker_new(store, &cfg, &W), 0);

    test_routes();
    test_authentication();
    test_methods();
    test_teams();
    test_permissions();
    test_rate_limit(store);
    test_saved_query_filter();
    test_list();
    test_retrieve();
    test_running_recent();
    test_unparsable_query();
    test_cross_team();
    test_etag();
    test_health();
    test_bad_records(store); /* last: it damages the store */

    dmj_api_worker_free(W);
    dmj_store_close(store);
    tmpdir_remove(dir);
    return check_done();
}

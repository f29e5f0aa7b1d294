/* The small store the API's unit tests and fuzz/fuzz_request.c run the API against: two
 * organizations, three teams, five users, keys with each restriction, and team 1's jobs
 * chosen so that list, running and recent each have something to include and to leave out. */
#ifndef DMJ_TEST_FIXTURE_H
#define DMJ_TEST_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "dmj/api.h"
#include "dmj/identity.h"
#include "dmj/store.h"
#include "dmj/uuid.h"

#define ORG1_TEXT "11111111-1111-4111-8111-111111111111"
#define ORG2_TEXT "22222222-2222-4222-8222-222222222222"

#define SQ_B_UPPER "BBBBBBBB-BBBB-4BBB-8BBB-BBBBBBBBBBBB"
#define SQ_UNKNOWN "dddddddd-dddd-4ddd-8ddd-dddddddddddd"
#define J1_ID_ALT "%7Burn:uuid:10000000000040008000000000000001%7D"

/* 2024-01-01T00:00:00Z in microseconds. */
#define FIXTURE_T0 1704067200000000LL

/* One job of the fixture; -1 stands for null in the integer fields. */
struct fixture_job_row {
    const char *id;
    int32_t team;
    const char *saved_query_id;
    enum dmj_status status;
    int seconds; /* created_at = FIXTURE_T0 + seconds */
    const char *workflow_id;
    int64_t rows_materialized;
    const char *error;
    int64_t last_run_after_t0_us;
    const char *workflow_run_id;
    int64_t rows_expected;
    const char *engine;
};

/* The jobs (FIXTURE_JOBS), SQ_A..SQ_C, the J*_ID ids, K_READ and its hash, and the bodies
 * DRF answers for them (J1_JSON, RUNNING_TEAM1, RECENT_TEAM1, LIST_LIMIT1...): printed by
 * tests/unit/data/gen_api_bodies.py from DRF's own serializer, renderer and paginator (the
 * rows are used by fixture.c alone). */
#include "api_bodies.inc"

#define K_WRITE "phx_write_key_0002"
#define K_STAR "phx_star_key_0003"
#define K_WRONG_SCOPE "phx_wrong_scope_0004"
#define K_EMPTY_SCOPES "phx_empty_scopes_0005"
#define K_TEAM3 "phx_team3_0006"
#define K_ORG2 "phx_org2_0007"
#define K_INACTIVE "phx_inactive_0008"
#define K_BOB "phx_bob_0009"
#define K_CAROL "phx_carol_0010"
#define K_ERIN "phx_erin_0011"
#define K_TEAM3_WRONG_SCOPE "phx_team3_wrong_0012"
#define K_BOB_WRONG_SCOPE "phx_bob_wrong_0013"

/** Parses a UUID's text into `out`; all zeros when it is not one. */
void fixture_uuid(const char *text, uint8_t out[16]);

/** A dmj_str over `s` (NULL gives the empty string); valid while `s` is. */
struct dmj_str fixture_str(const char *s);
/** A request as dmjd hands it to the API: `method` on `path`, with the query (the part after
 * '?'), Authorization header and Host when not NULL; the other fields empty. */
struct dmj_api_request fixture_request(const char *method, const char *path, const char *query,
                                       const char *authorization, const char *host);

/** One job with only the fields the tests look at, the rest null; its strings point to the
 * arguments. */
struct dmj_job fixture_job(const char *id, int32_t team, const char *sq, enum dmj_status status,
                           int seconds, const char *wf);

/** Writes the key `key` (its hash, and its id from its fifth character on) of `user` with at
 * most one scope, one scoped team (0: none) and one scoped organization (NULL: none);
 * dmj_write_key's result. Not thread-safe. */
int fixture_key(struct dmj_write *w, const char *key, int64_t user, const char *scope,
                int32_t team, const char *org) __attribute__((warn_unused_result));

/** Creates a store in the existing, empty directory `dir` and fills it: 0 and the open store
 * in `*out` (the caller closes it), or the first failing call's error, `*out` unchanged and
 * `dir` perhaps holding part of a store. */
int fixture_build(const char *dir, struct dmj_store **out) __attribute__((warn_unused_result));

/** fixture_build in a new temporary directory /tmp/<prefix>XXXXXX (tmpdir.h), whose path is
 * written to `dir` (`cap` bytes): 0 and the open store in `*out`, or an error with nothing
 * left behind. The caller closes the store, then removes `dir` with tmpdir_remove. */
int fixture_make(const char *prefix, char *dir, size_t cap, struct dmj_store **out)
    __attribute__((warn_unused_result));

#endif

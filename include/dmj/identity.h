/** Teams, users, organizations, memberships and personal API keys: who may read what. */
#ifndef DMJ_IDENTITY_H
#define DMJ_IDENTITY_H

#include <stdbool.h>
#include <stdint.h>

#include "dmj/error.h"
#include "dmj/job.h"

#define DMJ_KEY_MAX_SCOPES 128
#define DMJ_KEY_MAX_TEAMS 1024
#define DMJ_KEY_MAX_ORGS 64
#define DMJ_KEY_HASH_LEN 71 /**< "sha256$" + 64 lowercase hex digits */

struct dmj_team {
    int32_t id;
    int64_t project_id;
    uint8_t organization_id[16];
    struct dmj_str name;
};

struct dmj_org {
    uint8_t id[16];
    struct dmj_str name;
};

struct dmj_user {
    int64_t id;
    bool is_active;
    bool has_current_team;
    int32_t current_team_id;
    bool has_current_org;
    uint8_t current_org[16];
};

struct dmj_membership {
    int64_t user_id;
    uint8_t organization_id[16];
    int32_t level;
};

/** A personal API key. Only its hash is ever stored. Lists are empty when null or []. */
struct dmj_key {
    char secure_value[DMJ_KEY_HASH_LEN + 1]; /**< NUL-terminated "sha256$<hex>" */
    struct dmj_str id;
    int64_t user_id;
    unsigned n_scopes;
    struct dmj_str scopes[DMJ_KEY_MAX_SCOPES];
    unsigned n_teams;
    int32_t scoped_teams[DMJ_KEY_MAX_TEAMS];
    unsigned n_orgs;
    uint8_t scoped_orgs[DMJ_KEY_MAX_ORGS][16];
    bool has_created_at; /**< false for keys imported without a creation time */
    int64_t created_at;  /**< microseconds, UTC */
};

/** "sha256$" + hex(sha256(key)) into `out` (72 bytes, NUL-terminated). */
void dmj_key_hash(const char *key, size_t len, char out[DMJ_KEY_HASH_LEN + 1]);
/** Constant-time comparison of two NUL-terminated hashes of DMJ_KEY_HASH_LEN characters. */
bool dmj_key_hash_equal(const char *a, const char *b);
/** A new random key "phx_" + 47 alphanumerics (OpenSSL's RAND_bytes), NUL-terminated. */
DMJ_MUST_CHECK int dmj_key_generate(char out[64]);

#endif

/* Turns the key/value pairs of one parsed JSON object into a validated job or identity. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmj/identity.h"
#include "dmj/import.h"
#include "dmj/job.h"
#include "dmj/time.h"
#include "dmj/uuid.h"

#include "import_impl.h"

static const struct {
    const char *name;
    size_t len;
} fields[DMJ__F_COUNT] = {
    [DMJ__F_KIND] = {"kind", 4},
    [DMJ__F_ID] = {"id", 2},
    [DMJ__F_TEAM_ID] = {"team_id", 7},
    [DMJ__F_TEAM] = {"team", 4},
    [DMJ__F_SAVED_QUERY_ID] = {"saved_query_id", 14},
    [DMJ__F_STATUS] = {"status", 6},
    [DMJ__F_ROWS_MATERIALIZED] = {"rows_materialized", 17},
    [DMJ__F_ERROR] = {"error", 5},
    [DMJ__F_CREATED_AT] = {"created_at", 10},
    [DMJ__F_LAST_RUN_AT] = {"last_run_at", 11},
    [DMJ__F_WORKFLOW_ID] = {"workflow_id", 11},
    [DMJ__F_WORKFLOW_RUN_ID] = {"workflow_run_id", 15},
    [DMJ__F_PARENT_WORKFLOW_ID] = {"parent_workflow_id", 18},
    [DMJ__F_RUN_MODE] = {"run_mode", 8},
    [DMJ__F_ROWS_EXPECTED] = {"rows_expected", 13},
    [DMJ__F_CREATED_BY_ID] = {"created_by_id", 13},
    [DMJ__F_ENGINE] = {"engine", 6},
    [DMJ__F_STORAGE_DELTA_MIB] = {"storage_delta_mib", 17},
    [DMJ__F_UPDATED_AT] = {"updated_at", 10},
    [DMJ__F_PROJECT_ID] = {"project_id", 10},
    [DMJ__F_ORGANIZATION_ID] = {"organization_id", 15},
    [DMJ__F_NAME] = {"name", 4},
    [DMJ__F_IS_ACTIVE] = {"is_active", 9},
    [DMJ__F_CURRENT_TEAM_ID] = {"current_team_id", 15},
    [DMJ__F_CURRENT_ORGANIZATION_ID] = {"current_organization_id", 23},
    [DMJ__F_USER_ID] = {"user_id", 7},
    [DMJ__F_LEVEL] = {"level", 5},
    [DMJ__F_SECURE_VALUE] = {"secure_value", 12},
    [DMJ__F_VALUE] = {"value", 5},
    [DMJ__F_KEY] = {"key", 3},
    [DMJ__F_SCOPES] = {"scopes", 6},
    [DMJ__F_SCOPED_TEAMS] = {"scoped_teams", 12},
    [DMJ__F_SCOPED_ORGANIZATIONS] = {"scoped_organizations", 20},
};

/* The name of a field, for messages. */
static const char *field_name(int f)
{
    return fields[f].name;
}

int dmj__import_field_lookup(const char *key, size_t len)
{
    /* This runs for every key of every record: the candidates of each length are listed
     * (at most three, as field + 1 so that 0 ends a list), a key costs one or two compares. */
#define C(f) (uint8_t)((f) + 1)
    static const uint8_t by_len[24][3] = {
        [2] = {C(DMJ__F_ID)},
        [3] = {C(DMJ__F_KEY)},
        [4] = {C(DMJ__F_KIND), C(DMJ__F_TEAM), C(DMJ__F_NAME)},
        [5] = {C(DMJ__F_ERROR), C(DMJ__F_LEVEL), C(DMJ__F_VALUE)},
        [6] = {C(DMJ__F_STATUS), C(DMJ__F_ENGINE), C(DMJ__F_SCOPES)},
        [7] = {C(DMJ__F_TEAM_ID), C(DMJ__F_USER_ID)},
        [8] = {C(DMJ__F_RUN_MODE)},
        [9] = {C(DMJ__F_IS_ACTIVE)},
        [10] = {C(DMJ__F_CREATED_AT), C(DMJ__F_UPDATED_AT), C(DMJ__F_PROJECT_ID)},
        [11] = {C(DMJ__F_LAST_RUN_AT), C(DMJ__F_WORKFLOW_ID)},
        [12] = {C(DMJ__F_SECURE_VALUE), C(DMJ__F_SCOPED_TEAMS)},
        [13] = {C(DMJ__F_ROWS_EXPECTED), C(DMJ__F_CREATED_BY_ID)},
        [14] = {C(DMJ__F_SAVED_QUERY_ID)},
        [15] = {C(DMJ__F_WORKFLOW_RUN_ID), C(DMJ__F_ORGANIZATION_ID), C(DMJ__F_CURRENT_TEAM_ID)},
        [17] = {C(DMJ__F_ROWS_MATERIALIZED), C(DMJ__F_STORAGE_DELTA_MIB)},
        [18] = {C(DMJ__F_PARENT_WORKFLOW_ID)},
        [20] = {C(DMJ__F_SCOPED_ORGANIZATIONS)},
        [23] = {C(DMJ__F_CURRENT_ORGANIZATION_ID)},
    };
#undef C
    if (len >= sizeof by_len / sizeof by_len[0])
        return -1;
    for (int c = 0; c < 3 && by_len[len][c] != 0; c++) {
        int i = by_len[len][c] - 1;
        if (memcmp(fields[i].name, key, len) == 0)
            return i;
    }
    return -1;
}

bool dmj__import_field_is_array(int field)
{
    return field == DMJ__F_SCOPES || field == DMJ__F_SCOPED_TEAMS ||
           field == DMJ__F_SCOPED_ORGANIZATIONS;
}

int dmj_import_kind_parse(const char *s, enum dmj_import_kind *out)
{
    static const struct {
        const char *name;
        enum dmj_import_kind kind;
    } names[] = {
        {"job", DMJ_IMPORT_JOB},
        {"team", DMJ_IMPORT_TEAM},
        {"organization", DMJ_IMPORT_ORG},
        {"org", DMJ_IMPORT_ORG},
        {"user", DMJ_IMPORT_USER},
        {"membership", DMJ_IMPORT_MEMBERSHIP},
        {"organization_membership", DMJ_IMPORT_MEMBERSHIP},
        {"personal_api_key", DMJ_IMPORT_KEY},
        {"key", DMJ_IMPORT_KEY},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].kind;
            return 0;
        }
    }
    return DMJ_EINVAL;
}

/* The state of one build: where the values are and where an error goes. */
struct ctx {
    const struct dmj__import_fields *fl;
    struct dmj_import_error *err;
};

static int fail(struct ctx *c, int field, const char *reason)
{
    const struct dmj__import_value *v = field >= 0 ? &c->fl->f[field] : NULL;
    c->err->line = v && v->type != DMJ__V_NONE ? v->line : c->fl->line;
    snprintf(c->err->field, sizeof c->err->field, "%s", field >= 0 ? field_name(field) : "record");
    snprintf(c->err->reason, sizeof c->err->reason, "%s", reason);
    return DMJ_EINVAL;
}

static const struct dmj__import_value *val(struct ctx *c, int field)
{
    return &c->fl->f[field];
}

static const char *text(struct ctx *c, const struct dmj__import_value *v)
{
    return c->fl->arena.data + v->off;
}

static bool absent_or_null(const struct dmj__import_value *v)
{
    return v->type == DMJ__V_NONE || v->type == DMJ__V_NULL;
}

/* A JSON integer (no fraction or exponent) within [min, max]. */
static int int_value(struct ctx *c, const struct dmj__import_value *v, int64_t min, int64_t max,
                     int64_t *out)
{
    if (v->type != DMJ__V_NUMBER)
        return DMJ_EINVAL;
    const char *s = text(c, v);
    bool neg = v->len > 0 && s[0] == '-';
    for (size_t i = neg ? 1 : 0; i < v->len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return DMJ_EINVAL;
    }
    if (neg && v->len == 1)
        return DMJ_ETOOBIG; /* what strtoll's empty conversion gave */
    /* By hand rather than strtoll (a fifth of the per-record cost): the magnitude is
     * accumulated unsigned and refused once past 2^63. */
    uint64_t m = 0;
    const uint64_t limit = (uint64_t)INT64_MAX + 1;
    for (size_t i = neg ? 1 : 0; i < v->len; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (m > (limit - d) / 10)
            return DMJ_ETOOBIG;
        m = m * 10 + d;
    }
    if (!neg && m > (uint64_t)INT64_MAX)
        return DMJ_ETOOBIG;
    int64_t n = neg ? (m == limit ? INT64_MIN : -(int64_t)m) : (int64_t)m;
    if (n < min || n > max)
        return DMJ_ETOOBIG;
    *out = n;
    return 0;
}

/* An integer field: required, or optional with `*present` telling whether it was given. */
static int get_int(struct ctx *c, int field, int64_t min, int64_t max, bool nullable, bool *present,
                   int64_t *out)
{
    const struct dmj__import_value *v = val(c, field);
    if (absent_or_null(v)) {
        if (v->type == DMJ__V_NULL && !nullable)
            return fail(c, field, "must not be null");
        if (!present)
            return fail(c, field, "required");
        *present = false;
        return 0;
    }
    int rc = int_value(c, v, min, max, out);
    if (rc == DMJ_ETOOBIG)
        return fail(c, field, "integer out of range");
    if (rc != 0)
        return fail(c, field, nullable ? "expected an integer or null" : "expected an integer");
    if (present)
        *present = true;
    return 0;
}

/* A string field; absent or null gives ptr NULL unless `required`. */
static int get_str(struct ctx *c, int field, bool required, bool nullable, struct dmj_str *out)
{
    const struct dmj__import_value *v = val(c, field);
    if (v->type == DMJ__V_NONE && required)
        return fail(c, field, "required");
    if (v->type == DMJ__V_NULL && !nullable)
        return fail(c, field, "must not be null");
    if (absent_or_null(v)) {
        out->ptr = NULL;
        out->len = 0;
        return 0;
    }
    if (v->type != DMJ__V_STRING)
        return fail(c, field, nullable ? "expected a string or null" : "expected a string");
    out->ptr = text(c, v);
    out->len = v->len;
    return 0;
}

/* Hex digit values plus one, so that 0 marks a byte that is not a hex digit. */
static const uint8_t hex1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

/* The canonical 36-character spelling parsed in place (nearly every input uses it);
 * anything else goes to dmj_uuid_parse and its full set of spellings. */
static int parse_uuid(const char *s, size_t len, uint8_t out[16])
{
    if (len != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
        return dmj_uuid_parse(s, len, out);
    /* where each byte's two digits start; a bad digit shows as a value past 15 in `bad`,
     * checked once at the end rather than per digit */
    static const uint8_t at[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
    uint8_t id[16];
    unsigned bad = 0;
    for (size_t j = 0; j < 16; j++) {
        unsigned hi = hex1[(unsigned char)s[at[j]]] - 1u;
        unsigned lo = hex1[(unsigned char)s[at[j] + 1]] - 1u;
        bad |= hi | lo;
        id[j] = (uint8_t)(hi << 4 | (lo & 15));
    }
    if (bad > 15)
        return dmj_uuid_parse(s, len, out);
    memcpy(out, id, 16);
    return 0;
}

/* A string that a parser turns into a value: required (never null), or optional (null or
 * absent leave `*present` false). */
static int get_parsed(struct ctx *c, int field, bool required, bool *present,
                      bool (*parse)(struct dmj_str s, void *out), void *out, const char *reason)
{
    struct dmj_str s;
    int rc = get_str(c, field, required, !required, &s);
    if (rc != 0)
        return rc;
    if (s.ptr && !parse(s, out))
        return fail(c, field, reason);
    if (present)
        *present = s.ptr != NULL;
    return 0;
}

static bool uuid_of(struct dmj_str s, void *out)
{
    return parse_uuid(s.ptr, s.len, out) == 0;
}

static bool time_of(struct dmj_str s, void *out)
{
    return dmj_time_parse(s.ptr, s.len, out) == 0;
}

static int get_uuid(struct ctx *c, int field, bool required, bool *present, uint8_t out[16])
{
    return get_parsed(c, field, required, present, uuid_of, out, "not a UUID");
}

static int get_time(struct ctx *c, int field, bool required, bool *present, int64_t *out)
{
    return get_parsed(c, field, required, present, time_of, out, "not a timestamp");
}

static int build_job(struct ctx *c, const struct dmj_import_options *o, struct dmj_job *j)
{
    int rc;
    memset(j, 0, sizeof *j);
    if ((rc = get_uuid(c, DMJ__F_ID, true, NULL, j->id)) != 0)
        return rc;

    int team_field = val(c, DMJ__F_TEAM_ID)->type != DMJ__V_NONE ? DMJ__F_TEAM_ID : DMJ__F_TEAM;
    bool has_team = false;
    int64_t team = 0;
    if ((rc = get_int(c, team_field, 0, INT32_MAX, false, &has_team, &team)) != 0)
        return rc;
    if (!has_team) {
        if (!o->has_team)
            return fail(c, DMJ__F_TEAM_ID, "required (an API page carries none: give --team)");
        team = o->team_id;
    } else if (o->has_team && team != o->team_id) {
        return fail(c, team_field, "differs from --team");
    }
    j->team_id = (int32_t)team;

    if ((rc = get_uuid(c, DMJ__F_SAVED_QUERY_ID, false, &j->has_saved_query_id,
                       j->saved_query_id)) != 0)
        return rc;

    struct dmj_str st;
    if ((rc = get_str(c, DMJ__F_STATUS, true, false, &st)) != 0)
        return rc;
    if (dmj_status_parse(st.ptr, st.len, &j->status) != 0)
        return fail(c, DMJ__F_STATUS, "not one of Running, Completed, Failed, Cancelled, Skipped");

    bool has_rows = false;
    /* null is taken as 0, as the reference peer's loader does */
    if ((rc = get_int(c, DMJ__F_ROWS_MATERIALIZED, INT64_MIN, INT64_MAX, true, &has_rows,
                      &j->rows_materialized)) != 0)
        return rc;
    if (!has_rows)
        j->rows_materialized = 0;

    if ((rc = get_str(c, DMJ__F_ERROR, false, true, &j->error)) != 0)
        return rc;
    if ((rc = get_time(c, DMJ__F_CREATED_AT, true, NULL, &j->created_at)) != 0)
        return rc;
    if ((rc = get_time(c, DMJ__F_LAST_RUN_AT, false, &j->has_last_run_at, &j->last_run_at)) != 0)
        return rc;
    if ((rc = get_str(c, DMJ__F_WORKFLOW_ID, false, true, &j->workflow_id)) != 0 ||
        (rc = get_str(c, DMJ__F_WORKFLOW_RUN_ID, false, true, &j->workflow_run_id)) != 0 ||
        (rc = get_str(c, DMJ__F_PARENT_WORKFLOW_ID, false, true, &j->parent_workflow_id)) != 0 ||
        (rc = get_str(c, DMJ__F_RUN_MODE, false, true, &j->run_mode)) != 0)
        return rc;
    if ((rc = get_int(c, DMJ__F_ROWS_EXPECTED, INT64_MIN, INT64_MAX, true, &j->has_rows_expected,
                      &j->rows_expected)) != 0 ||
        (rc = get_int(c, DMJ__F_CREATED_BY_ID, INT64_MIN, INT64_MAX, true, &j->has_created_by_id,
                      &j->created_by_id)) != 0)
        return rc;

    /* The default engine is stored as absent, so that a store does not repeat it a
     * billion times; export prints it back. */
    if ((rc = get_str(c, DMJ__F_ENGINE, false, true, &j->engine)) != 0)
        return rc;
    if (j->engine.ptr && j->engine.len == 10 && memcmp(j->engine.ptr, "clickhouse", 10) == 0)
        j->engine.ptr = NULL, j->engine.len = 0;

    const struct dmj__import_value *d = val(c, DMJ__F_STORAGE_DELTA_MIB);
    if (d->type == DMJ__V_NUMBER) {
        char *end;
        double x = strtod(text(c, d), &end);
        if (end != text(c, d) + d->len || !isfinite(x))
            return fail(c, DMJ__F_STORAGE_DELTA_MIB, "number out of range");
        j->has_storage_delta_mib = true;
        j->storage_delta_mib = x;
    } else if (!absent_or_null(d)) {
        return fail(c, DMJ__F_STORAGE_DELTA_MIB, "expected a number or null");
    }
    return get_time(c, DMJ__F_UPDATED_AT, false, &j->has_updated_at, &j->updated_at);
}

static int build_team(struct ctx *c, struct dmj_team *t)
{
    int rc;
    int64_t n;
    memset(t, 0, sizeof *t);
    if ((rc = get_int(c, DMJ__F_ID, 0, INT32_MAX, false, NULL, &n)) != 0)
        return rc;
    t->id = (int32_t)n;
    bool has_project = false;
    if ((rc = get_int(c, DMJ__F_PROJECT_ID, INT64_MIN, INT64_MAX, true, &has_project,
                      &t->project_id)) != 0)
        return rc;
    if (!has_project)
        t->project_id = t->id; /* PostHog's default: a project per team, same id */
    if ((rc = get_uuid(c, DMJ__F_ORGANIZATION_ID, true, NULL, t->organization_id)) != 0)
        return rc;
    return get_str(c, DMJ__F_NAME, false, true, &t->name);
}

static int build_org(struct ctx *c, struct dmj_org *g)
{
    int rc;
    memset(g, 0, sizeof *g);
    if ((rc = get_uuid(c, DMJ__F_ID, true, NULL, g->id)) != 0)
        return rc;
    return get_str(c, DMJ__F_NAME, false, true, &g->name);
}

static int build_user(struct ctx *c, struct dmj_user *u)
{
    int rc;
    memset(u, 0, sizeof *u);
    if ((rc = get_int(c, DMJ__F_ID, INT64_MIN, INT64_MAX, false, NULL, &u->id)) != 0)
        return rc;
    const struct dmj__import_value *a = val(c, DMJ__F_IS_ACTIVE);
    if (a->type == DMJ__V_BOOL)
        u->is_active = a->b;
    else if (a->type == DMJ__V_NONE)
        u->is_active = true;
    else
        return fail(c, DMJ__F_IS_ACTIVE, "expected true or false");
    int64_t team = 0;
    if ((rc = get_int(c, DMJ__F_CURRENT_TEAM_ID, 0, INT32_MAX, true, &u->has_current_team,
                      &team)) != 0)
        return rc;
    u->current_team_id = (int32_t)team;
    return get_uuid(c, DMJ__F_CURRENT_ORGANIZATION_ID, false, &u->has_current_org, u->current_org);
}

static int build_membership(struct ctx *c, struct dmj_membership *m)
{
    int rc;
    memset(m, 0, sizeof *m);
    if ((rc = get_int(c, DMJ__F_USER_ID, INT64_MIN, INT64_MAX, false, NULL, &m->user_id)) != 0)
        return rc;
    if ((rc = get_uuid(c, DMJ__F_ORGANIZATION_ID, true, NULL, m->organization_id)) != 0)
        return rc;
    bool has_level = false;
    int64_t level = 0;
    if ((rc = get_int(c, DMJ__F_LEVEL, INT32_MIN, INT32_MAX, true, &has_level, &level)) != 0)
        return rc;
    m->level = has_level ? (int32_t)level : 1; /* PostHog's "member" */
    return 0;
}

/* The array of a list field, or NULL for null/absent; an error for anything else. */
static int get_array(struct ctx *c, int field, size_t max, const struct dmj__import_value **out,
                     size_t *n)
{
    const struct dmj__import_value *v = val(c, field);
    *out = NULL;
    *n = 0;
    if (absent_or_null(v))
        return 0;
    if (v->type == DMJ__V_TOOMANY || (v->type == DMJ__V_ARRAY && v->len > max))
        return fail(c, field, "too many values");
    if (v->type != DMJ__V_ARRAY)
        return fail(c, field, "expected an array or null");
    *out = &c->fl->elems[v->off];
    *n = v->len;
    return 0;
}

static bool is_key_hash(struct dmj_str s)
{
    if (s.len != DMJ_KEY_HASH_LEN || memcmp(s.ptr, "sha256$", 7) != 0)
        return false;
    for (size_t i = 7; i < s.len; i++) {
        char ch = s.ptr[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return false;
    }
    return true;
}

static int build_key(struct ctx *c, struct dmj_key *k)
{
    int rc;
    /* Only the counted parts of the lists matter: clearing 7 KiB per key is not needed. */
    k->n_scopes = k->n_teams = k->n_orgs = 0;
    if ((rc = get_str(c, DMJ__F_ID, true, false, &k->id)) != 0)
        return rc;
    if ((rc = get_int(c, DMJ__F_USER_ID, INT64_MIN, INT64_MAX, false, NULL, &k->user_id)) != 0)
        return rc;
    /* PostHog's personalapikey.created_at; absent or null in older exports */
    if ((rc = get_time(c, DMJ__F_CREATED_AT, false, &k->has_created_at, &k->created_at)) != 0)
        return rc;

    struct dmj_str hash, raw_value, raw_key;
    if ((rc = get_str(c, DMJ__F_SECURE_VALUE, false, true, &hash)) != 0 ||
        (rc = get_str(c, DMJ__F_VALUE, false, true, &raw_value)) != 0 ||
        (rc = get_str(c, DMJ__F_KEY, false, true, &raw_key)) != 0)
        return rc;
    int raw_field = raw_value.ptr ? DMJ__F_VALUE : DMJ__F_KEY;
    struct dmj_str raw = raw_value.ptr ? raw_value : raw_key;
    if (raw.ptr && raw.len == 0)
        return fail(c, raw_field, "empty key");
    if (hash.ptr && !is_key_hash(hash))
        return fail(c, DMJ__F_SECURE_VALUE, "expected \"sha256$\" and 64 lowercase hex digits");
    if (raw.ptr) {
        char computed[DMJ_KEY_HASH_LEN + 1];
        dmj_key_hash(raw.ptr, raw.len, computed);
        if (hash.ptr) {
            char given[DMJ_KEY_HASH_LEN + 1];
            memcpy(given, hash.ptr, DMJ_KEY_HASH_LEN);
            given[DMJ_KEY_HASH_LEN] = '\0';
            if (!dmj_key_hash_equal(computed, given))
                return fail(c, DMJ__F_SECURE_VALUE, "does not match the hash of the raw key");
        }
        memcpy(k->secure_value, computed, sizeof computed);
    } else if (hash.ptr) {
        memcpy(k->secure_value, hash.ptr, DMJ_KEY_HASH_LEN);
        k->secure_value[DMJ_KEY_HASH_LEN] = '\0';
    } else {
        return fail(c, DMJ__F_SECURE_VALUE, "required (or a raw \"value\" or \"key\")");
    }

    const struct dmj__import_value *e;
    size_t n;
    if ((rc = get_array(c, DMJ__F_SCOPES, DMJ_KEY_MAX_SCOPES, &e, &n)) != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (e[i].type != DMJ__V_STRING)
            return fail(c, DMJ__F_SCOPES, "expected strings");
        k->scopes[i].ptr = text(c, &e[i]);
        k->scopes[i].len = e[i].len;
    }
    k->n_scopes = (unsigned)n;
    if ((rc = get_array(c, DMJ__F_SCOPED_TEAMS, DMJ_KEY_MAX_TEAMS, &e, &n)) != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        int64_t t;
        if (int_value(c, &e[i], 0, INT32_MAX, &t) != 0)
            return fail(c, DMJ__F_SCOPED_TEAMS, "expected team ids");
        k->scoped_teams[i] = (int32_t)t;
    }
    k->n_teams = (unsigned)n;
    if ((rc = get_array(c, DMJ__F_SCOPED_ORGANIZATIONS, DMJ_KEY_MAX_ORGS, &e, &n)) != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (e[i].type != DMJ__V_STRING ||
            dmj_uuid_parse(text(c, &e[i]), e[i].len, k->scoped_orgs[i]) != 0)
            return fail(c, DMJ__F_SCOPED_ORGANIZATIONS, "expected organization UUIDs");
    }
    k->n_orgs = (unsigned)n;
    return 0;
}

int dmj__import_build(const struct dmj__import_fields *fl, const struct dmj_import_options *o,
                      struct dmj_import_record *rec, struct dmj_import_error *err)
{
    struct ctx c = {.fl = fl, .err = err};
    /* before anything else: a string that is not text is wrong whatever the record's kind */
    if (fl->bad_text >= 0)
        return fail(&c, fl->bad_text, "invalid UTF-8");
    enum dmj_import_kind kind = DMJ_IMPORT_JOB;
    const struct dmj__import_value *kv = &fl->f[DMJ__F_KIND];
    if (kv->type == DMJ__V_STRING) {
        if (memchr(text(&c, kv), '\0', kv->len) != NULL ||
            dmj_import_kind_parse(text(&c, kv), &kind) != 0)
            return fail(&c, DMJ__F_KIND,
                        "not one of job, team, organization, user, membership, "
                        "personal_api_key");
    } else if (kv->type != DMJ__V_NONE && kv->type != DMJ__V_NULL) {
        return fail(&c, DMJ__F_KIND, "expected a string");
    } else if (fl->container_kind >= 0) {
        kind = (enum dmj_import_kind)fl->container_kind;
    } else if (o->has_kind) {
        kind = o->kind;
    }
    rec->kind = kind;
    rec->line = fl->line;
    switch (kind) {
    case DMJ_IMPORT_JOB:
        return build_job(&c, o, &rec->u.job);
    case DMJ_IMPORT_TEAM:
        return build_team(&c, &rec->u.team);
    case DMJ_IMPORT_ORG:
        return build_org(&c, &rec->u.org);
    case DMJ_IMPORT_USER:
        return build_user(&c, &rec->u.user);
    case DMJ_IMPORT_MEMBERSHIP:
        return build_membership(&c, &rec->u.membership);
    case DMJ_IMPORT_KEY:
        return build_key(&c, &rec->u.key);
    }
    return fail(&c, DMJ__F_KIND, "unknown kind");
}

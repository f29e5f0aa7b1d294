/* Fuzz target: arbitrary bytes as an import document, parsed and written into a throw-away
 * store, then read back.
 *
 * The first byte picks the options (bit 0 --pg-copy, bit 1 --skip-invalid, bit 2 --team 7,
 * bit 3 --kind from bits 4-6), the second how the rest is cut into feeds. Checked:
 * - every failure says why;
 * - every job that comes out renders (dmj_json_add_job_full), parses again and renders to the
 *   same bytes (export -> import -> export is stable);
 * - the records go through dmj_import_write into one write transaction, committed when the
 *   import succeeds (as `dmj import` does); each job then reads back from the store rendering
 *   as the last record of its id did (a hidden one reads as absent), and is deleted again;
 * - every few hundred inputs the store's indexes must still agree with its records;
 * - every string of every record is strict UTF-8 by a decoder written here apart from the
 *   importer's (code points decoded, then range-checked), and that decoder and
 *   dmj_utf8_valid agree on the raw input;
 * - every record of an NDJSON line has the fields that the import rules give for the line as
 *   yajl's tree API reads it, and the records those rules refuse are refused (below). */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <yajl_tree.h>

#include "dmj/buf.h"
#include "dmj/error.h"
#include "dmj/import.h"
#include "dmj/json.h"
#include "dmj/store.h"
#include "utf8.h"

#include "grammar.h"

#define MAX_TRACKED 32   /* jobs per input checked against the store */
#define VERIFY_EVERY 256 /* inputs between index checks */
#define WIPE_EVERY 4096  /* inputs between fresh stores, so that identities do not pile up */
#define LIST_ELEMS_MAX 2048 /* list elements of one record the importer takes */

struct check {
    struct dmj_buf first;
    struct dmj_buf second;
    unsigned records;
    struct dmj_write *w;
    int write_rc;
    /* The jobs written by this input: id and rendering (offsets into `renders`). */
    unsigned n_jobs;
    struct {
        uint8_t id[16];
        bool hidden;
        size_t off, len;
    } jobs[MAX_TRACKED];
    struct dmj_buf renders;
};

/* One store per process, on tmpfs: a commit per input must not wait for a disk. */
static struct {
    char dir[64];
    struct dmj_store *store;
    struct dmj_read *read;
    unsigned inputs;
    FILE *devnull;
} fz;

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

static void fz_close(void)
{
    dmj_read_free(fz.read);
    dmj_store_close(fz.store);
    fz.read = NULL;
    fz.store = NULL;
    if (fz.dir[0])
        nftw(fz.dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    fz.dir[0] = '\0';
}

static void fz_cleanup(void)
{
    fz_close();
    if (fz.devnull)
        fclose(fz.devnull);
}

static void fz_open(void)
{
    /* tmpfs when it has room (a container's /dev/shm may have 64 MB), else /tmp. */
    struct statvfs vfs;
    const char *base = "/tmp";
    if (access("/dev/shm", W_OK) == 0 && statvfs("/dev/shm", &vfs) == 0 &&
        (uint64_t)vfs.f_bavail * vfs.f_frsize >= (uint64_t)512 << 20)
        base = "/dev/shm";
    snprintf(fz.dir, sizeof fz.dir, "%s/dmj-fuzz-import-XXXXXX", base);
    if (mkdtemp(fz.dir) == NULL || dmj_store_open(fz.dir, 0, (size_t)1 << 30, &fz.store) != 0 ||
        dmj_read_new(fz.store, &fz.read) != 0) {
        fprintf(stderr, "fuzz_import: cannot open a store in %s\n", fz.dir);
        fz_close(); /* abort() runs no atexit handler: leave no store behind */
        abort();
    }
}

/* RFC 3629 by decoding: each lead byte's length and payload bits from a table, the code
 * point assembled, then refused when overlong (below the least of its length), a surrogate,
 * or past U+10FFFF. Independent of utf8.c's state machine of second-byte ranges. */
static bool oracle_utf8(const unsigned char *s, size_t n)
{
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        unsigned len = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3
                                  : (b & 0xf8) == 0xf0 ? 4 : 0;
        if (len == 0 || n - i < len)
            return false;
        uint32_t cp = len == 1 ? b : (uint32_t)(b & (0x7f >> len));
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < least[len] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return false;
        i += len;
    }
    return true;
}

static void oracle_str(const char *what, struct dmj_str v)
{
    if (v.ptr && !oracle_utf8((const unsigned char *)v.ptr, v.len)) {
        fprintf(stderr, "record stored with invalid UTF-8 in %s (%zu bytes)\n", what, v.len);
        abort();
    }
}

/* Every string a record would store. */
static void oracle_record(const struct dmj_import_record *rec)
{
    switch (rec->kind) {
    case DMJ_IMPORT_JOB: {
        const struct dmj_job *j = &rec->u.job;
        oracle_str("error", j->error);
        oracle_str("workflow_id", j->workflow_id);
        oracle_str("workflow_run_id", j->workflow_run_id);
        oracle_str("engine", j->engine);
        oracle_str("run_mode", j->run_mode);
        oracle_str("parent_workflow_id", j->parent_workflow_id);
        break;
    }
    case DMJ_IMPORT_TEAM:
        oracle_str("team name", rec->u.team.name);
        break;
    case DMJ_IMPORT_ORG:
        oracle_str("organization name", rec->u.org.name);
        break;
    case DMJ_IMPORT_KEY:
        oracle_str("key id", rec->u.key.id);
        for (unsigned i = 0; i < rec->u.key.n_scopes; i++)
            oracle_str("key scope", rec->u.key.scopes[i]);
        break;
    case DMJ_IMPORT_USER:
    case DMJ_IMPORT_MEMBERSHIP:
        break;
    }
}

/* ---- the fields of each record against an independent reading of its line ----------
 *
 * An NDJSON line that holds one JSON object is parsed again by yajl's tree API (the importer
 * uses its own scanner and yajl's SAX API), and the import rules are applied to the tree:
 *
 * - the record's kind: its "kind" key (a string: job; team; organization or org; user;
 *   membership or organization_membership; personal_api_key or key), else --kind, else job;
 *   null counts as absent, anything else refuses the record;
 * - every string of the record, keys and values at any depth, is RFC 3629 UTF-8 once
 *   decoded, and every \u escape of a surrogate is half of a high-low pair, else refused;
 * - when a key comes more than once, its last value counts (as Python's json reads it);
 *   unknown keys are ignored;
 * - a UUID is the UUID grammar (grammar.h): "urn:" and "uuid:" removed, braces stripped from
 *   both ends, '-' removed, then exactly 32 hex digits;
 * - a timestamp is the import's form (grammar.h): YYYY-MM-DD, 'T' or ' ', HH:MM:SS, an
 *   optional fraction of 1 to 6 digits, then optionally Z, z, +-HH, +-HHMM or +-HH:MM;
 *   a real calendar date and time, years 1 to 9999 in UTC; kept as UTC microseconds;
 * - an integer is a JSON number without fraction or exponent, within the field's bounds
 *   (team ids 0 to 2^31-1, membership levels 32-bit, everything else 64-bit);
 * - a required field may be neither absent nor null; an optional one may be either and is
 *   then not given (rows_materialized then 0, engine clickhouse, a team's project its id, a
 *   membership's level 1, a user active);
 * - jobs: id (UUID), team_id (else team; an integer; absent only with --team, and equal to
 *   it when given with --team), saved_query_id (UUID), status (exactly Running, Completed,
 *   Failed, Cancelled or Skipped), rows_materialized, error, created_at (required),
 *   last_run_at, workflow_id, workflow_run_id, parent_workflow_id, run_mode, rows_expected,
 *   created_by_id, engine ("clickhouse" stored as the default), storage_delta_mib (a number
 *   whose nearest double is finite), updated_at;
 * - teams: id (integer), project_id, organization_id (UUID, required), name; organizations:
 *   id (UUID), name; users: id, is_active (true or false; null refused), current_team_id
 *   (a team id), current_organization_id; memberships: user_id, organization_id, level;
 * - personal API keys: id (a string), user_id, secure_value ("sha256$" and 64 lowercase
 *   hex digits), or a raw "value" (else "key": the first that is a string), not empty,
 *   hashed; one of the two required; scopes (strings, at most 128), scoped_teams (team ids,
 *   at most 1024), scoped_organizations (UUIDs, at most 64), each an array or null;
 *   created_at (a timestamp, or absent or null).
 *
 * The comparison leaves out what a reading of one line cannot settle, and says so:
 * - lines that are not one JSON object by yajl's tree, or that come after a line that is
 *   not one complete JSON value (the line may then be inside an array or an object), or
 *   that follow a byte order mark other than at the start;
 * - top-level objects that are API pages or fixtures documents (a "results", "teams",
 *   "users", "organizations", "personal_api_keys" or "organization_memberships" key whose
 *   value is an array): their records are the arrays' elements;
 * - lines with a raw NUL byte or a \u0000 escape (the tree API gives C strings), or with a
 *   comment (yajl's tree parser takes comments, which are no JSON);
 * - a key's hash when the record gives it raw (the SHA-256 is not restated here), and so a
 *   record with both a raw key and a well-formed hash (whether they match);
 * - records whose arrays under scopes, scoped_teams and scoped_organizations hold more than
 *   2048 elements together: the importer's bound on one record's list elements, its own
 *   choice, refuses those;
 * - inputs in PostgreSQL COPY escaping and gzip-compressed inputs.
 * Everything else must agree: an accepted record has exactly the fields the rules give, a
 * record the rules refuse is refused (the import stops on its line, or --skip-invalid skips
 * it), a record the rules accept is neither refused nor dropped. */

enum verdict { V_UNCHECKED, V_ACCEPT, V_REFUSE };

struct line_rule {
    uint8_t verdict;
    bool seen;    /* a record came out for this line */
    bool skipped; /* --skip-invalid skipped this line */
    const char *why;
    yajl_val tree;
    struct dmj_import_record want;
};

static struct {
    bool active;
    size_t n;
    struct line_rule *l;
    struct dmj_import_options o;
} ex;

/* The last member named `key`. */
static yajl_val member(yajl_val obj, const char *key)
{
    for (size_t i = obj->u.object.len; i-- > 0;) {
        if (strcmp(obj->u.object.keys[i], key) == 0)
            return obj->u.object.values[i];
    }
    return NULL;
}

static const char *r_str(yajl_val r, const char *key, bool required, bool nullable,
                         struct dmj_str *out)
{
    yajl_val v = member(r, key);
    out->ptr = NULL;
    out->len = 0;
    if (!v)
        return required ? "required" : NULL;
    if (YAJL_IS_NULL(v))
        return nullable ? NULL : "null";
    if (!YAJL_IS_STRING(v))
        return "not a string";
    out->ptr = v->u.string;
    out->len = strlen(v->u.string);
    return NULL;
}

/* An integer value (not a key), by strtoll of the number's text. */
static bool r_int_value(yajl_val v, int64_t min, int64_t max, int64_t *out)
{
    if (!YAJL_IS_NUMBER(v) || strpbrk(v->u.number.r, ".eE"))
        return false;
    char *end;
    errno = 0;
    long long n = strtoll(v->u.number.r, &end, 10);
    if (errno != 0 || *end != '\0' || n < min || n > max)
        return false;
    *out = n;
    return true;
}

/* An optional integer: `*has` false when absent or (nullable) null. */
static const char *r_int(yajl_val r, const char *key, int64_t min, int64_t max, bool nullable,
                         bool *has, int64_t *out)
{
    yajl_val v = member(r, key);
    *has = false;
    *out = 0;
    if (!v)
        return NULL;
    if (YAJL_IS_NULL(v))
        return nullable ? NULL : "null";
    if (!r_int_value(v, min, max, out))
        return "not an integer in range";
    *has = true;
    return NULL;
}

static const char *r_req_int(yajl_val r, const char *key, int64_t min, int64_t max, int64_t *out)
{
    bool has;
    const char *why = r_int(r, key, min, max, false, &has, out);
    return why ? why : has ? NULL : "required";
}

static const char *r_uuid(yajl_val r, const char *key, bool required, bool *has, uint8_t out[16])
{
    struct dmj_str s;
    const char *why = r_str(r, key, required, !required, &s);
    if (has)
        *has = s.ptr != NULL;
    if (why || !s.ptr)
        return why;
    return grammar_uuid(s.ptr, s.len, out) ? NULL : "not a UUID";
}

static const char *r_time(yajl_val r, const char *key, bool required, bool *has, int64_t *out)
{
    struct dmj_str s;
    const char *why = r_str(r, key, required, !required, &s);
    *out = 0;
    if (has)
        *has = s.ptr != NULL;
    if (why || !s.ptr)
        return why;
    return grammar_import_timestamp(s.ptr, s.len, out) ? NULL : "not a timestamp";
}

static const char *rule_job(yajl_val r, const struct dmj_import_options *o, struct dmj_job *j)
{
    static const char *const statuses[] = {
        [DMJ_STATUS_RUNNING] = "Running", [DMJ_STATUS_COMPLETED] = "Completed",
        [DMJ_STATUS_FAILED] = "Failed",   [DMJ_STATUS_CANCELLED] = "Cancelled",
        [DMJ_STATUS_SKIPPED] = "Skipped",
    };
    const char *why;
    bool has;
    int64_t n;
    memset(j, 0, sizeof *j);
    if ((why = r_uuid(r, "id", true, NULL, j->id)))
        return why;
    if ((why = r_int(r, member(r, "team_id") ? "team_id" : "team", 0, INT32_MAX, false, &has, &n)))
        return why;
    if (!has && !o->has_team)
        return "no team";
    if (has && o->has_team && n != o->team_id)
        return "team differs from --team";
    j->team_id = has ? (int32_t)n : o->team_id;
    if ((why = r_uuid(r, "saved_query_id", false, &j->has_saved_query_id, j->saved_query_id)))
        return why;
    struct dmj_str st;
    if ((why = r_str(r, "status", true, false, &st)))
        return why;
    unsigned s = 0;
    while (s < DMJ_STATUS_COUNT && strcmp(st.ptr, statuses[s]) != 0)
        s++;
    if (s == DMJ_STATUS_COUNT)
        return "not a status";
    j->status = (enum dmj_status)s;
    if ((why = r_int(r, "rows_materialized", INT64_MIN, INT64_MAX, true, &has,
                     &j->rows_materialized)) ||
        (why = r_str(r, "error", false, true, &j->error)) ||
        (why = r_time(r, "created_at", true, NULL, &j->created_at)) ||
        (why = r_time(r, "last_run_at", false, &j->has_last_run_at, &j->last_run_at)) ||
        (why = r_str(r, "workflow_id", false, true, &j->workflow_id)) ||
        (why = r_str(r, "workflow_run_id", false, true, &j->workflow_run_id)) ||
        (why = r_str(r, "parent_workflow_id", false, true, &j->parent_workflow_id)) ||
        (why = r_str(r, "run_mode", false, true, &j->run_mode)) ||
        (why = r_int(r, "rows_expected", INT64_MIN, INT64_MAX, true, &j->has_rows_expected,
                     &j->rows_expected)) ||
        (why = r_int(r, "created_by_id", INT64_MIN, INT64_MAX, true, &j->has_created_by_id,
                     &j->created_by_id)) ||
        (why = r_str(r, "engine", false, true, &j->engine)) ||
        (why = r_time(r, "updated_at", false, &j->has_updated_at, &j->updated_at)))
        return why;
    if (j->engine.ptr && strcmp(j->engine.ptr, "clickhouse") == 0)
        j->engine.ptr = NULL, j->engine.len = 0;
    yajl_val d = member(r, "storage_delta_mib");
    if (d && !YAJL_IS_NULL(d)) {
        if (!YAJL_IS_NUMBER(d))
            return "storage_delta_mib not a number";
        j->storage_delta_mib = strtod(d->u.number.r, NULL);
        if (!isfinite(j->storage_delta_mib))
            return "storage_delta_mib not finite";
        j->has_storage_delta_mib = true;
    }
    return NULL;
}

/* An array field's elements, or none for absent and null. */
static const char *r_array(yajl_val r, const char *key, size_t max, yajl_val **out, size_t *n)
{
    yajl_val v = member(r, key);
    *out = NULL;
    *n = 0;
    if (!v || YAJL_IS_NULL(v))
        return NULL;
    if (!YAJL_IS_ARRAY(v))
        return "not an array";
    if (v->u.array.len > max)
        return "too many values";
    *out = v->u.array.values;
    *n = v->u.array.len;
    return NULL;
}

static bool key_hash_form(const char *s)
{
    if (strlen(s) != DMJ_KEY_HASH_LEN || strncmp(s, "sha256$", 7) != 0)
        return false;
    return strspn(s + 7, "0123456789abcdef") == DMJ_KEY_HASH_LEN - 7;
}

/* NULL, a reason to refuse, or UNSETTLED for a key whose hash is not restated here. */
static const char UNSETTLED[] = "unsettled";

static const char *rule_key(yajl_val r, struct dmj_key *k)
{
    const char *why;
    struct dmj_str hash, value, raw;
    k->n_scopes = k->n_teams = k->n_orgs = 0;
    k->secure_value[0] = '\0';
    if ((why = r_str(r, "id", true, false, &k->id)) ||
        (why = r_req_int(r, "user_id", INT64_MIN, INT64_MAX, &k->user_id)) ||
        (why = r_str(r, "secure_value", false, true, &hash)) ||
        (why = r_str(r, "value", false, true, &value)) ||
        (why = r_str(r, "key", false, true, &raw)))
        return why;
    /* PostHog's personalapikey.created_at: absent or null in older exports */
    if ((why = r_time(r, "created_at", false, &k->has_created_at, &k->created_at)))
        return why;
    if (value.ptr)
        raw = value;
    if (raw.ptr && raw.len == 0)
        return "empty raw key";
    if (hash.ptr && !key_hash_form(hash.ptr))
        return "secure_value not a hash";
    if (!raw.ptr && !hash.ptr)
        return "no key";
    yajl_val *e;
    size_t n;
    if ((why = r_array(r, "scopes", DMJ_KEY_MAX_SCOPES, &e, &n)))
        return why;
    for (size_t i = 0; i < n; i++) {
        if (!YAJL_IS_STRING(e[i]))
            return "scope not a string";
        k->scopes[i] = (struct dmj_str){e[i]->u.string, strlen(e[i]->u.string)};
    }
    k->n_scopes = (unsigned)n;
    if ((why = r_array(r, "scoped_teams", DMJ_KEY_MAX_TEAMS, &e, &n)))
        return why;
    for (size_t i = 0; i < n; i++) {
        int64_t t;
        if (!r_int_value(e[i], 0, INT32_MAX, &t))
            return "scoped team not a team id";
        k->scoped_teams[i] = (int32_t)t;
    }
    k->n_teams = (unsigned)n;
    if ((why = r_array(r, "scoped_organizations", DMJ_KEY_MAX_ORGS, &e, &n)))
        return why;
    for (size_t i = 0; i < n; i++) {
        if (!YAJL_IS_STRING(e[i]) ||
            !grammar_uuid(e[i]->u.string, strlen(e[i]->u.string), k->scoped_orgs[i]))
            return "scoped organization not a UUID";
    }
    k->n_orgs = (unsigned)n;
    if (raw.ptr)
        return hash.ptr ? UNSETTLED : NULL; /* the stored hash is then not compared */
    memcpy(k->secure_value, hash.ptr, DMJ_KEY_HASH_LEN + 1);
    return NULL;
}

static const char *rule_record(yajl_val r, const struct dmj_import_options *o,
                               struct dmj_import_record *rec)
{
    static const struct {
        const char *name;
        enum dmj_import_kind kind;
    } kinds[] = {
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
    const char *why;
    struct dmj_str kind;
    if ((why = r_str(r, "kind", false, true, &kind)))
        return why;
    rec->kind = o->has_kind ? o->kind : DMJ_IMPORT_JOB;
    if (kind.ptr) {
        size_t i = 0;
        while (i < sizeof kinds / sizeof kinds[0] && strcmp(kind.ptr, kinds[i].name) != 0)
            i++;
        if (i == sizeof kinds / sizeof kinds[0])
            return "unknown kind";
        rec->kind = kinds[i].kind;
    }
    int64_t n;
    bool has;
    switch (rec->kind) {
    case DMJ_IMPORT_JOB:
        return rule_job(r, o, &rec->u.job);
    case DMJ_IMPORT_TEAM: {
        struct dmj_team *t = &rec->u.team;
        memset(t, 0, sizeof *t);
        if ((why = r_req_int(r, "id", 0, INT32_MAX, &n)) ||
            (why = r_int(r, "project_id", INT64_MIN, INT64_MAX, true, &has, &t->project_id)) ||
            (why = r_uuid(r, "organization_id", true, NULL, t->organization_id)) ||
            (why = r_str(r, "name", false, true, &t->name)))
            return why;
        t->id = (int32_t)n;
        if (!has)
            t->project_id = n;
        return NULL;
    }
    case DMJ_IMPORT_ORG:
        memset(&rec->u.org, 0, sizeof rec->u.org);
        if ((why = r_uuid(r, "id", true, NULL, rec->u.org.id)))
            return why;
        return r_str(r, "name", false, true, &rec->u.org.name);
    case DMJ_IMPORT_USER: {
        struct dmj_user *u = &rec->u.user;
        memset(u, 0, sizeof *u);
        yajl_val a = member(r, "is_active");
        if (a && !YAJL_IS_TRUE(a) && !YAJL_IS_FALSE(a))
            return "is_active not a boolean";
        u->is_active = !a || YAJL_IS_TRUE(a);
        if ((why = r_req_int(r, "id", INT64_MIN, INT64_MAX, &u->id)) ||
            (why = r_int(r, "current_team_id", 0, INT32_MAX, true, &u->has_current_team, &n)) ||
            (why = r_uuid(r, "current_organization_id", false, &u->has_current_org,
                          u->current_org)))
            return why;
        u->current_team_id = (int32_t)n;
        return NULL;
    }
    case DMJ_IMPORT_MEMBERSHIP: {
        struct dmj_membership *m = &rec->u.membership;
        memset(m, 0, sizeof *m);
        if ((why = r_req_int(r, "user_id", INT64_MIN, INT64_MAX, &m->user_id)) ||
            (why = r_uuid(r, "organization_id", true, NULL, m->organization_id)) ||
            (why = r_int(r, "level", INT32_MIN, INT32_MAX, true, &has, &n)))
            return why;
        m->level = has ? (int32_t)n : 1;
        return NULL;
    }
    case DMJ_IMPORT_KEY:
        return rule_key(r, &rec->u.key);
    }
    return "unknown kind";
}

/* Every string of a tree, keys too, is strict UTF-8. */
static bool tree_text(yajl_val v)
{
    if (YAJL_IS_STRING(v))
        return oracle_utf8((const unsigned char *)v->u.string, strlen(v->u.string));
    if (YAJL_IS_OBJECT(v)) {
        for (size_t i = 0; i < v->u.object.len; i++) {
            if (!oracle_utf8((const unsigned char *)v->u.object.keys[i],
                             strlen(v->u.object.keys[i])) ||
                !tree_text(v->u.object.values[i]))
                return false;
        }
    }
    if (YAJL_IS_ARRAY(v)) {
        for (size_t i = 0; i < v->u.array.len; i++) {
            if (!tree_text(v->u.array.values[i]))
                return false;
        }
    }
    return true;
}

/* The raw line's escapes (a backslash only ever stands inside a string of a line that parsed):
 * whether a \u0000 is among them, and whether every surrogate escape is half of a high-low
 * pair written as two adjacent escapes. */
static bool raw_escapes(const char *s, size_t n, bool *nul)
{
    bool high = false;
    *nul = false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            if (high)
                return false;
            continue;
        }
        if (i + 1 < n && s[i + 1] != 'u') {
            if (high)
                return false;
            i++;
            continue;
        }
        unsigned unit = 0;
        for (size_t k = i + 2; k < i + 6 && k < n; k++)
            unit = unit * 16 + (unsigned)grammar_hex(s[k]);
        i += 5;
        *nul |= unit == 0;
        bool is_high = unit >= 0xd800 && unit <= 0xdbff, is_low = unit >= 0xdc00 && unit <= 0xdfff;
        if (high != is_low)
            return false;
        high = is_high;
    }
    return !high;
}

/* Whether the raw line has a '/' outside its strings: a comment, which the tree parser takes. */
static bool raw_comment(const char *s, size_t n)
{
    bool in = false;
    for (size_t i = 0; i < n; i++) {
        if (in && s[i] == '\\')
            i++;
        else if (s[i] == '"')
            in = !in;
        else if (!in && s[i] == '/')
            return true;
    }
    return false;
}

static bool container(yajl_val r)
{
    static const char *const keys[] = {"results", "teams", "users", "organizations",
                                       "personal_api_keys", "organization_memberships"};
    for (size_t i = 0; i < r->u.object.len; i++) {
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            if (strcmp(r->u.object.keys[i], keys[k]) == 0 && YAJL_IS_ARRAY(r->u.object.values[i]))
                return true;
        }
    }
    return false;
}

static size_t list_elems(yajl_val r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->u.object.len; i++) {
        const char *k = r->u.object.keys[i];
        yajl_val v = r->u.object.values[i];
        if (YAJL_IS_ARRAY(v) && (strcmp(k, "scopes") == 0 || strcmp(k, "scoped_teams") == 0 ||
                                 strcmp(k, "scoped_organizations") == 0))
            n += v->u.array.len;
    }
    return n;
}

static bool json_blank(const char *s, size_t n)
{
    return strspn(s, " \t\r") >= n;
}

/* Whether the line ends where its one value does: an object's closing brace, then blanks. */
static bool ends_value(const char *s, size_t n)
{
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        n--;
    return n > 0 && s[n - 1] == '}';
}

static void ex_clear(void)
{
    for (size_t i = 0; i < ex.n; i++)
        yajl_tree_free(ex.l[i].tree);
    free(ex.l);
    memset(&ex, 0, sizeof ex);
}

/* Reads the input's lines and what the rules say of each. */
static void ex_prepare(const uint8_t *data, size_t size, const struct dmj_import_options *o)
{
    memset(&ex, 0, sizeof ex);
    if (o->pg_copy || (size > 0 && data[0] == 0x1f))
        return; /* COPY escaping, or (perhaps) gzip */
    ex.active = true;
    ex.o = *o;
    size_t lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    ex.l = calloc(lines + 1, sizeof *ex.l); /* [0] unused: lines count from 1 */
    if (!ex.l)
        abort();
    ex.n = lines + 1;
    bool top = true; /* every line before was blank or one complete JSON value */
    size_t at = 0;
    if (size >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
        at = 3;
    for (size_t ln = 1; ln <= lines && at <= size; ln++) {
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        size_t len = (nl ? (size_t)(nl - data) : size) - at;
        const char *s = (const char *)data + at;
        at += len + 1;
        struct line_rule *L = &ex.l[ln];
        if (memchr(s, '\0', len)) {
            top = false;
            continue;
        }
        char *z = strndup(s, len);
        if (!z)
            abort();
        bool blank = json_blank(z, len);
        char err[256] = "";
        L->tree = blank ? NULL : yajl_tree_parse(z, err, sizeof err);
        if (YAJL_IS_OBJECT(L->tree) && !ends_value(z, len)) {
            /* a value followed by the start of another (`{...}"i{`): the tree parser reads
             * the first and stops, the importer goes on into what follows, maybe across
             * lines; neither this line nor the next can be settled */
            yajl_tree_free(L->tree);
            L->tree = NULL;
            free(z);
            top = false;
            continue;
        }
        bool was_top = top;
        /* After a syntax error on a line that began between values the importer starts
         * again at the next line (or stops there); not after a line that is the beginning
         * of a value (premature EOF), that ends in the beginning of another (trailing
         * garbage), or whose text the tree parser refused (UTF-8: the importer's own check
         * comes once a string is read, and its record may go on). */
        bool restarts = !L->tree && !blank && !strstr(err, "premature EOF") &&
                        !strstr(err, "trailing garbage") && !strstr(err, "UTF8");
        top = top && (blank || L->tree || restarts);
        bool nul = false, pairs = raw_escapes(z, len, &nul);
        bool comment = raw_comment(z, len);
        free(z);
        if (!was_top || !YAJL_IS_OBJECT(L->tree) || nul || comment || container(L->tree) ||
            list_elems(L->tree) > LIST_ELEMS_MAX)
            continue;
        if (!pairs || !tree_text(L->tree)) {
            L->verdict = V_REFUSE;
            L->why = "invalid UTF-8";
            continue;
        }
        L->why = rule_record(L->tree, o, &L->want);
        L->verdict = L->why == UNSETTLED ? V_UNCHECKED : L->why ? V_REFUSE : V_ACCEPT;
    }
}

static bool same_str(struct dmj_str a, struct dmj_str b)
{
    return (a.ptr == NULL) == (b.ptr == NULL) && a.len == b.len &&
           (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* The first field in which the record differs from the rules' reading, or NULL. */
static const char *differs(const struct dmj_import_record *w, const struct dmj_import_record *g)
{
    if (w->kind != g->kind)
        return "kind";
    switch (w->kind) {
    case DMJ_IMPORT_JOB: {
        const struct dmj_job *a = &w->u.job, *b = &g->u.job;
#define D(cond, name)                                                                            \
    if (!(cond))                                                                                 \
        return name;
        D(memcmp(a->id, b->id, 16) == 0, "id")
        D(a->team_id == b->team_id, "team_id")
        D(a->has_saved_query_id == b->has_saved_query_id &&
              (!a->has_saved_query_id || memcmp(a->saved_query_id, b->saved_query_id, 16) == 0),
          "saved_query_id")
        D(a->status == b->status, "status")
        D(a->rows_materialized == b->rows_materialized, "rows_materialized")
        D(same_str(a->error, b->error), "error")
        D(a->created_at == b->created_at, "created_at")
        D(a->has_last_run_at == b->has_last_run_at &&
              (!a->has_last_run_at || a->last_run_at == b->last_run_at),
          "last_run_at")
        D(same_str(a->workflow_id, b->workflow_id), "workflow_id")
        D(same_str(a->workflow_run_id, b->workflow_run_id), "workflow_run_id")
        D(a->has_rows_expected == b->has_rows_expected &&
              (!a->has_rows_expected || a->rows_expected == b->rows_expected),
          "rows_expected")
        D(same_str(a->engine, b->engine), "engine")
        D(same_str(a->run_mode, b->run_mode), "run_mode")
        D(same_str(a->parent_workflow_id, b->parent_workflow_id), "parent_workflow_id")
        D(a->has_storage_delta_mib == b->has_storage_delta_mib &&
              (!a->has_storage_delta_mib ||
               memcmp(&a->storage_delta_mib, &b->storage_delta_mib, sizeof(double)) == 0),
          "storage_delta_mib")
        D(a->has_created_by_id == b->has_created_by_id &&
              (!a->has_created_by_id || a->created_by_id == b->created_by_id),
          "created_by_id")
        D(a->has_updated_at == b->has_updated_at &&
              (!a->has_updated_at || a->updated_at == b->updated_at),
          "updated_at")
        return NULL;
    }
    case DMJ_IMPORT_TEAM:
        D(w->u.team.id == g->u.team.id, "team id")
        D(w->u.team.project_id == g->u.team.project_id, "team project_id")
        D(memcmp(w->u.team.organization_id, g->u.team.organization_id, 16) == 0,
          "team organization_id")
        D(same_str(w->u.team.name, g->u.team.name), "team name")
        return NULL;
    case DMJ_IMPORT_ORG:
        D(memcmp(w->u.org.id, g->u.org.id, 16) == 0, "organization id")
        D(same_str(w->u.org.name, g->u.org.name), "organization name")
        return NULL;
    case DMJ_IMPORT_USER: {
        const struct dmj_user *a = &w->u.user, *b = &g->u.user;
        D(a->id == b->id, "user id")
        D(a->is_active == b->is_active, "user is_active")
        D(a->has_current_team == b->has_current_team &&
              (!a->has_current_team || a->current_team_id == b->current_team_id),
          "user current_team_id")
        D(a->has_current_org == b->has_current_org &&
              (!a->has_current_org || memcmp(a->current_org, b->current_org, 16) == 0),
          "user current_organization_id")
        return NULL;
    }
    case DMJ_IMPORT_MEMBERSHIP:
        D(w->u.membership.user_id == g->u.membership.user_id, "membership user_id")
        D(memcmp(w->u.membership.organization_id, g->u.membership.organization_id, 16) == 0,
          "membership organization_id")
        D(w->u.membership.level == g->u.membership.level, "membership level")
        return NULL;
    case DMJ_IMPORT_KEY: {
        const struct dmj_key *a = &w->u.key, *b = &g->u.key;
        D(same_str(a->id, b->id), "key id")
        D(a->user_id == b->user_id, "key user_id")
        D(a->secure_value[0] == '\0' || strcmp(a->secure_value, b->secure_value) == 0,
          "key secure_value")
        D(a->n_scopes == b->n_scopes, "key scopes")
        for (unsigned i = 0; i < a->n_scopes; i++)
            D(same_str(a->scopes[i], b->scopes[i]), "key scopes")
        D(a->n_teams == b->n_teams &&
              memcmp(a->scoped_teams, b->scoped_teams, a->n_teams * sizeof(int32_t)) == 0,
          "key scoped_teams")
        D(a->n_orgs == b->n_orgs && memcmp(a->scoped_orgs, b->scoped_orgs, a->n_orgs * 16) == 0,
          "key scoped_organizations")
        D(a->has_created_at == b->has_created_at &&
              (!a->has_created_at || a->created_at == b->created_at),
          "key created_at")
        return NULL;
    }
#undef D
    }
    return "kind";
}

static struct line_rule *ex_line(uint64_t line)
{
    return ex.active && line > 0 && line < ex.n ? &ex.l[line] : NULL;
}

/* A record came out: its line's rules must accept it, with the same fields. */
static void ex_record(const struct dmj_import_record *rec)
{
    struct line_rule *L = ex_line(rec->line);
    if (!L || L->verdict == V_UNCHECKED)
        return;
    if (L->verdict == V_REFUSE) {
        fprintf(stderr, "line %llu accepted, but the rules refuse it (%s)\n",
                (unsigned long long)rec->line, L->why);
        abort();
    }
    if (L->seen) {
        fprintf(stderr, "line %llu gave two records\n", (unsigned long long)rec->line);
        abort();
    }
    L->seen = true;
    const char *field = differs(&L->want, rec);
    if (field) {
        fprintf(stderr, "line %llu: %s differs from the rules' reading of the line\n",
                (unsigned long long)rec->line, field);
        abort();
    }
}

static void ex_skipped(void *ctx, const struct dmj_import_error *e)
{
    (void)ctx;
    struct line_rule *L = ex_line(e->line);
    if (!L)
        return;
    if (L->verdict == V_ACCEPT) {
        fprintf(stderr, "line %llu skipped (%s: %s), but the rules accept it\n",
                (unsigned long long)e->line, e->field, e->reason);
        abort();
    }
    L->skipped = true;
}

/* After the import: every line before the one it stopped on (all of them when it did not
 * stop) came out or was skipped as its rules say, and the line it stopped on is one the
 * rules refuse or cannot settle. */
static void ex_finish(int rc, const struct dmj_import_error *e, bool callback_failed)
{
    if (!ex.active || callback_failed)
        return;
    uint64_t end = ex.n;
    if (rc != 0) {
        struct line_rule *L = ex_line(e->line);
        if (L && L->verdict == V_ACCEPT && !L->seen) {
            fprintf(stderr, "line %llu refused (%s: %s), but the rules accept it\n",
                    (unsigned long long)e->line, e->field, e->reason);
            abort();
        }
        end = e->line;
    }
    for (uint64_t i = 1; i < end && i < ex.n; i++) {
        const struct line_rule *L = &ex.l[i];
        if ((L->verdict == V_ACCEPT && !L->seen) || (L->verdict == V_REFUSE && !L->skipped)) {
            fprintf(stderr, "line %llu neither %s\n", (unsigned long long)i,
                    L->verdict == V_ACCEPT ? "came out, as the rules accept it"
                                           : "was refused, as the rules refuse it");
            abort();
        }
    }
}

static int reparsed(void *ctx, const struct dmj_import_record *rec)
{
    struct check *c = ctx;
    c->records++;
    if (rec->kind != DMJ_IMPORT_JOB)
        abort();
    return dmj_json_add_job_full(&c->second, &rec->u.job);
}

/* Remembers the rendering of a written job; a later record of the same id replaces it. */
static void track_job(struct check *c, const struct dmj_job *job)
{
    unsigned i = 0;
    while (i < c->n_jobs && memcmp(c->jobs[i].id, job->id, 16) != 0)
        i++;
    if (i == MAX_TRACKED)
        return;
    size_t off = c->renders.len;
    if (dmj_buf_add(&c->renders, c->first.data, c->first.len) != 0)
        return;
    if (i == c->n_jobs) {
        memcpy(c->jobs[i].id, job->id, 16);
        c->n_jobs++;
    }
    c->jobs[i].hidden = dmj_job_hidden(job);
    c->jobs[i].off = off;
    c->jobs[i].len = c->first.len;
}

static void round_trip(struct check *c, const struct dmj_job *job)
{
    struct dmj_import_options o = {.record = reparsed, .ctx = c};
    struct dmj_import *imp;
    if (dmj_import_new(&o, &imp) != 0)
        return;
    unsigned before = c->records;
    int rc = dmj_import_feed(imp, c->first.data, c->first.len);
    if (rc == 0)
        rc = dmj_import_finish(imp);
    if (rc != 0) {
        const struct dmj_import_error *e = dmj_import_last_error(imp);
        fprintf(stderr, "export line not importable: %s: %s\n%s\n", e->field, e->reason,
                c->first.data);
        abort();
    }
    dmj_import_free(imp);
    if (c->records != before + 1 || c->first.len != c->second.len ||
        memcmp(c->first.data, c->second.data, c->first.len) != 0) {
        fprintf(stderr, "round trip differs:\n%s\n%s\n", c->first.data,
                c->second.data ? c->second.data : "");
        abort();
    }
    (void)job;
}

static int on_record(void *ctx, const struct dmj_import_record *rec)
{
    struct check *c = ctx;
    oracle_record(rec);
    ex_record(rec);
    if (c->w) {
        int rc = dmj_import_write(c->w, rec);
        if (rc != 0) {
            /* Whatever the parser accepts must be storable: -ENOMEM aside, a refusal
             * here is a record the parser should have refused with a reason. */
            fprintf(stderr, "accepted record (line %llu) not storable: %s\n",
                    (unsigned long long)rec->line, dmj_strerror(rc));
            if (rc != -ENOMEM)
                abort();
            c->write_rc = rc;
            return rc; /* the import stops, as `dmj import` does */
        }
    }
    if (rec->kind != DMJ_IMPORT_JOB)
        return 0;
    dmj_buf_reset(&c->first);
    dmj_buf_reset(&c->second);
    if (dmj_json_add_job_full(&c->first, &rec->u.job) != 0)
        return 0; /* too large to render within the bound: nothing to compare */
    round_trip(c, &rec->u.job);
    track_job(c, &rec->u.job);
    return 0;
}

/* The committed jobs read back as written, then go again (identities stay until a wipe). */
static void check_store(struct check *c)
{
    struct dmj_buf got;
    dmj_buf_init(&got, 1u << 20);
    if (dmj_read_begin(fz.read) != 0)
        abort();
    for (unsigned i = 0; i < c->n_jobs; i++) {
        struct dmj_job job;
        int rc = dmj_read_job(fz.read, c->jobs[i].id, &job);
        if (c->jobs[i].hidden) {
            if (rc != DMJ_ENOTFOUND)
                abort();
            continue;
        }
        dmj_buf_reset(&got);
        if (rc != 0 || dmj_json_add_job_full(&got, &job) != 0)
            abort();
        if (got.len != c->jobs[i].len ||
            memcmp(got.data, c->renders.data + c->jobs[i].off, got.len) != 0) {
            fprintf(stderr, "stored job differs:\n%.*s\n%s\n", (int)c->jobs[i].len,
                    c->renders.data + c->jobs[i].off, got.data);
            abort();
        }
    }
    dmj_read_end(fz.read);
    dmj_buf_dispose(&got);

    if (c->n_jobs == 0)
        return;
    struct dmj_write *w;
    if (dmj_write_begin(fz.store, &w) != 0)
        abort();
    for (unsigned i = 0; i < c->n_jobs; i++) {
        if (dmj_write_delete_job(w, c->jobs[i].id) != 0)
            abort();
    }
    if (dmj_write_commit(w, NULL) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    if (fz.store == NULL) {
        fz.devnull = fopen("/dev/null", "w");
        if (!fz.devnull)
            abort();
        fz_open();
        atexit(fz_cleanup);
    }
    if (dmj_utf8_valid(data, size) != oracle_utf8(data, size))
        abort(); /* the two validators disagree */
    uint8_t flags = data[0], cut = data[1];
    data += 2;
    size -= 2;
    struct check c = {.records = 0};
    dmj_buf_init(&c.first, 1u << 20);
    dmj_buf_init(&c.second, 1u << 20);
    dmj_buf_init(&c.renders, 1u << 24);
    struct dmj_import_options o = {
        .pg_copy = flags & 1,
        .skip_invalid = (flags & 2) != 0,
        .has_team = (flags & 4) != 0,
        .team_id = 7,
        .record = on_record,
        .skipped = ex_skipped,
        .ctx = &c,
    };
    if (flags & 8) {
        o.has_kind = true;
        o.kind = (enum dmj_import_kind)(((flags >> 4) & 7) % 6);
    }
    ex_prepare(data, size, &o);
    if (dmj_write_begin(fz.store, &c.w) != 0)
        abort();
    struct dmj_import *imp;
    int rc = dmj_import_new(&o, &imp);
    if (rc != 0) {
        dmj_write_abort(c.w);
        goto Exit;
    }
    /* Feeds of 1 to 256 bytes (0: all at once) exercise tokens, escapes and gzip headers
     * split across reads. */
    size_t step = cut ? cut : size;
    for (size_t off = 0; off < size && rc == 0; off += step)
        rc = dmj_import_feed(imp, data + off, size - off < step ? size - off : step);
    if (rc == 0)
        rc = dmj_import_finish(imp);
    if (rc != 0 && c.write_rc == 0 && dmj_import_last_error(imp)->reason[0] == '\0')
        abort(); /* every failure must say why */
    if (rc != 0 && c.write_rc != 0 && rc != c.write_rc)
        abort(); /* the callback's value comes back as it was */
    ex_finish(rc, dmj_import_last_error(imp), c.write_rc != 0);
    dmj_import_free(imp);
    if (rc != 0) {
        dmj_write_abort(c.w);
    } else {
        if (dmj_write_commit(c.w, NULL) != 0)
            abort(); /* everything the parser accepted must be storable */
        check_store(&c);
    }
    if (++fz.inputs % VERIFY_EVERY == 0 && dmj_store_verify(fz.store, fz.devnull) != 0)
        abort();
    if (fz.inputs % WIPE_EVERY == 0) {
        fz_close();
        fz_open();
    }
Exit:
    ex_clear();
    dmj_buf_dispose(&c.first);
    dmj_buf_dispose(&c.second);
    dmj_buf_dispose(&c.renders);
    return 0;
}

/* dmj keys: creates a personal API key (printed once, only its hash stored) that can answer,
 * lists the stored keys, checks one, or revokes one by key, hash or id. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "dmj/error.h"
#include "dmj/identity.h"
#include "dmj/store.h"
#include "dmj/time.h"
#include "dmj/uuid.h"

#include "dmj_tool.h"

static const char usage_text[] =
    "usage: dmj keys create [--db DIR] --user ID [--team ID] --scopes S[,S...]\n"
    "                       [--teams ID,...] [--orgs UUID,...]\n"
    "       dmj keys list [--db DIR]\n"
    "       dmj keys check [--db DIR] -|ID|KEY|sha256$HEX\n"
    "       dmj keys revoke [--db DIR] -|ID|KEY|sha256$HEX\n";

static const char help_text[] =
    "create: makes a new random key \"phx_...\" for the user, stores its hash with the\n"
    "        scopes and optional team / organization restrictions, and prints the key on\n"
    "        standard output: it cannot be shown again. The key must be able to answer:\n"
    "        the user must be in the store, active, and a member of the organization of\n"
    "        a team (of each of --teams); else nothing is stored and the command that\n"
    "        would work is printed. --team ID makes what is missing for that team: an\n"
    "        organization and the team (when the team is not in the store), the user,\n"
    "        and the user's membership of the team's organization.\n"
    "        Scopes: one of *, warehouse_view:read, warehouse_view:write is needed (what\n"
    "        PostHog asks for these endpoints); PostHog's other scopes (OBJECT:read or\n"
    "        OBJECT:write) are stored with a warning; any other scope is refused.\n"
    "list:   every stored key: id, user, creation time (- when the key was imported\n"
    "        without one), scopes, teams, organizations, hash.\n"
    "check:  looks a key up (by the key, its stored hash, or the id `create` and `list`\n"
    "        print) and prints what it may do; exit 1 when the store does not know it.\n"
    "revoke: deletes that key from the store: it then gets 401; exit 1 when the store\n"
    "        does not know it. A key `dmj sync --identities` copied from PostgreSQL is\n"
    "        revoked there: sync writes it again while PostgreSQL has it.\n"
    "-: check and revoke read the key (or hash) from the first line of standard input,\n"
    "   which keeps it off the command line, where every local user can read it (ps).\n";

/* The scopes PostHog's permission check accepts for the data modeling jobs endpoints. */
static const char *const reaching_scopes[] = {"*", "warehouse_view:read", "warehouse_view:write"};

/* PostHog's scope objects (posthog/scopes.py, APIScopeObject): OBJECT:read and OBJECT:write
 * are real scopes that grant nothing here. */
static const char *const posthog_objects[] = {
    "action", "access_control", "activity_log", "alert", "annotation", "batch_export",
    "batch_import", "cohort", "comment", "dashboard", "dashboard_template", "dataset",
    "early_access_feature", "error_tracking", "evaluation", "event_definition", "experiment",
    "export", "feature_flag", "file_system", "group", "hog_function", "insight", "integration",
    "link", "live_debugger", "llm_gateway", "logs", "notebook", "organization",
    "organization_integration", "organization_member", "person", "persisted_folder", "plugin",
    "project", "property_definition", "query", "revenue_analytics", "session_recording",
    "session_recording_playlist", "sharing_configuration", "subscription", "survey", "task",
    "user", "warehouse_table", "web_analytics", "webhook",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Splits a comma-separated list in place; empty items are refused. Returns the count or -1. */
static int split(char *s, char **items, int max)
{
    int n = 0;
    if (*s == '\0')
        return 0;
    for (char *p = s;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (*p == '\0' || n == max)
            return -1;
        items[n++] = p;
        if (!comma)
            return n;
        p = comma + 1;
    }
}

/* Checks the scopes: 0 when one reaches these endpoints and every other is PostHog's (those
 * warned about), else DMJ_TOOL_FAIL with the reason printed. */
static int check_scopes(const struct dmj_key *k)
{
    bool reaches = false;
    for (unsigned i = 0; i < k->n_scopes; i++) {
        const char *s = k->scopes[i].ptr;
        bool known = false;
        for (size_t j = 0; j < COUNT(reaching_scopes) && !known; j++)
            known = strcmp(s, reaching_scopes[j]) == 0;
        if (known) {
            reaches = true;
            continue;
        }
        const char *colon = strchr(s, ':');
        if (colon && (strcmp(colon, ":read") == 0 || strcmp(colon, ":write") == 0)) {
            for (size_t j = 0; j < COUNT(posthog_objects) && !known; j++)
                known = strlen(posthog_objects[j]) == (size_t)(colon - s) &&
                        strncmp(s, posthog_objects[j], (size_t)(colon - s)) == 0;
        }
        if (!known)
            return dmj_tool_fail("keys",
                                 "--scopes: %s is not a PostHog scope (these endpoints take *, "
                                 "warehouse_view:read or warehouse_view:write)",
                                 s);
        fprintf(stderr,
                "dmj keys: warning: scope %s is PostHog's but grants nothing on these "
                "endpoints\n",
                s);
    }
    if (!reaches)
        return dmj_tool_fail("keys",
                             "--scopes: none of them reaches these endpoints: every request "
                             "would get 403; add warehouse_view:read");
    return 0;
}

/* What `create` was asked for, for the checks and the command it suggests. */
struct create_args {
    const char *db;
    const char *scopes; /* as given, for the suggested command */
    char restrict_text[1024]; /* " --teams ..." and " --orgs ..." as given, likewise */
    bool has_team;
    int32_t team; /* --team */
};

/* Keeps " OPTION VALUE" for the suggested command (cut when very long). */
static void add_restriction(struct create_args *a, const char *option, const char *value)
{
    size_t used = strlen(a->restrict_text);
    snprintf(a->restrict_text + used, sizeof a->restrict_text - used, " %s %s", option, value);
}

/* Prints the command that would make the key answer, with --team `team`. */
static int suggest(const struct create_args *a, const struct dmj_key *k, int32_t team,
                   const char *why)
{
    fprintf(stderr,
            "dmj keys: %s: a key for it could only get 401 or 403, so none was made.\n"
            "Import the identities from PostHog (docs/import.md: dmj import, or dmj sync\n"
            "--identities), or make a minimal organization, team and membership with:\n"
            "  dmj keys create --db %s --user %lld --team %d --scopes '%s'%s\n",
            why, a->db, (long long)k->user_id, team, a->scopes, a->restrict_text);
    return DMJ_TOOL_FAIL;
}

/* The lowest team id the store's jobs name (1 when it has none), for a suggestion. */
static int first_job_team(void *ctx, const struct dmj_job *job)
{
    *(int32_t *)ctx = job->team_id;
    return 1;
}

static int32_t some_team(struct dmj_store *s, const struct dmj_key *k)
{
    if (k->n_teams > 0)
        return k->scoped_teams[0];
    int32_t team = 1;
    if (dmj_store_each_job(s, -1, first_job_team, &team) < 0)
        team = 1;
    return team;
}

/* Whether the user may read `team` once keyed: the team is stored and the user is a member of
 * its organization. */
static bool reaches_team(struct dmj_read *r, int64_t user, int32_t team)
{
    struct dmj_team t;
    return dmj_read_team(r, team, &t) == 0 &&
           dmj_read_membership(r, user, t.organization_id) == 0;
}

/* Refuses (with the command that would work) a key that could only answer 401 or 403. */
static int check_identity(struct dmj_store *s, struct dmj_read *r, const struct create_args *a,
                          const struct dmj_key *k)
{
    char why[160];
    struct dmj_user u;
    int rc = dmj_read_user(r, k->user_id, &u);
    if (rc == DMJ_ENOTFOUND) {
        snprintf(why, sizeof why, "user %lld is not in the store", (long long)k->user_id);
        return suggest(a, k, some_team(s, k), why);
    }
    if (rc != 0)
        return dmj_tool_fail("keys", "cannot read user %lld: %s", (long long)k->user_id,
                             dmj_strerror(rc));
    if (!u.is_active)
        return dmj_tool_fail("keys",
                             "user %lld is inactive: PostHog answers 401 to its keys; nothing "
                             "was made",
                             (long long)k->user_id);
    for (unsigned i = 0; i < k->n_teams; i++) {
        if (!reaches_team(r, k->user_id, k->scoped_teams[i])) {
            snprintf(why, sizeof why, "user %lld is not a member of team %d's organization",
                     (long long)k->user_id, k->scoped_teams[i]);
            return suggest(a, k, k->scoped_teams[i], why);
        }
    }
    uint8_t org[16];
    if (k->n_teams == 0 && dmj_read_first_org_of_user(r, k->user_id, org) != 0) {
        snprintf(why, sizeof why, "user %lld is a member of no organization",
                 (long long)k->user_id);
        return suggest(a, k, some_team(s, k), why);
    }
    return 0;
}

/* --team: writes what the user needs to read the team and is missing (the organization and
 * the team, the user, the membership), saying what on stderr. */
static int make_identity(struct dmj_read *r, struct dmj_write *w, const struct create_args *a,
                         int64_t user_id)
{
    struct dmj_team t;
    char name[64], text[DMJ_UUID_TEXT_LEN + 1];
    int rc = dmj_read_team(r, a->team, &t);
    if (rc == DMJ_ENOTFOUND) {
        struct dmj_org o = {0};
        if (getrandom(o.id, sizeof o.id, 0) != (ssize_t)sizeof o.id)
            return -errno;
        o.id[6] = (uint8_t)((o.id[6] & 0x0f) | 0x40); /* a version 4 UUID */
        o.id[8] = (uint8_t)((o.id[8] & 0x3f) | 0x80);
        snprintf(name, sizeof name, "Organization of team %d", a->team);
        o.name = (struct dmj_str){name, strlen(name)};
        rc = dmj_write_org(w, &o);
        if (rc != 0)
            return rc;
        memset(&t, 0, sizeof t);
        t.id = a->team;
        t.project_id = a->team;
        memcpy(t.organization_id, o.id, 16);
        static const char team_name[] = "Default project";
        t.name = (struct dmj_str){team_name, sizeof team_name - 1};
        rc = dmj_write_team(w, &t);
        if (rc != 0)
            return rc;
        dmj_uuid_format(o.id, text);
        fprintf(stderr, "dmj keys: made organization %s and team %d in it\n", text, a->team);
    } else if (rc != 0) {
        return rc;
    }
    struct dmj_user u;
    rc = dmj_read_user(r, user_id, &u);
    if (rc == DMJ_ENOTFOUND) {
        u = (struct dmj_user){.id = user_id,
                              .is_active = true,
                              .has_current_team = true,
                              .current_team_id = a->team,
                              .has_current_org = true};
        memcpy(u.current_org, t.organization_id, 16);
        rc = dmj_write_user(w, &u);
        if (rc != 0)
            return rc;
        fprintf(stderr, "dmj keys: made user %lld (active, current team %d)\n",
                (long long)user_id, a->team);
    } else if (rc != 0) {
        return rc;
    }
    rc = dmj_read_membership(r, user_id, t.organization_id);
    if (rc == DMJ_ENOTFOUND) {
        /* PostHog's OrganizationMembership.Level.MEMBER */
        struct dmj_membership m = {.user_id = user_id, .level = 1};
        memcpy(m.organization_id, t.organization_id, 16);
        rc = dmj_write_membership(w, &m);
        if (rc != 0)
            return rc;
        dmj_uuid_format(t.organization_id, text);
        fprintf(stderr, "dmj keys: made user %lld a member of organization %s\n",
                (long long)user_id, text);
    }
    return rc;
}

static int create(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"user", required_argument, NULL, 'u'},
        {"team", required_argument, NULL, 'T'},
        {"scopes", required_argument, NULL, 's'},
        {"teams", required_argument, NULL, 't'},
        {"orgs", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    struct dmj_tool_args opts = {.usage = usage_text, .help = help_text};
    struct dmj_key k = {0}; /* 7 KiB on the stack is fine for a one-shot command */
    struct create_args a = {0};
    bool has_user = false, has_scopes = false;
    char *items[DMJ_KEY_MAX_TEAMS];
    char scopes_text[1024];
    int n, c;
    int64_t v;
    while ((c = dmj_tool_getopt(&opts, argc, argv, longopts)) != -1) {
        switch (c) {
        case 'u':
            if (!dmj_tool_parse_int(optarg, INT64_MIN, INT64_MAX, &k.user_id))
                return dmj_tool_fail("keys", "--user: not a user id: %s", optarg);
            has_user = true;
            break;
        case 'T':
            if (!dmj_tool_parse_int(optarg, 0, INT32_MAX, &v))
                return dmj_tool_fail("keys", "--team: not a team id: %s", optarg);
            a.has_team = true;
            a.team = (int32_t)v;
            break;
        case 's':
            snprintf(scopes_text, sizeof scopes_text, "%s", optarg);
            a.scopes = scopes_text;
            n = split(optarg, items, DMJ_KEY_MAX_SCOPES);
            if (n <= 0)
                return dmj_tool_fail("keys", "--scopes: empty or too many scopes");
            for (int i = 0; i < n; i++)
                k.scopes[i] = (struct dmj_str){items[i], strlen(items[i])};
            k.n_scopes = (unsigned)n;
            has_scopes = true;
            break;
        case 't':
            add_restriction(&a, "--teams", optarg);
            n = split(optarg, items, DMJ_KEY_MAX_TEAMS);
            if (n <= 0)
                return dmj_tool_fail("keys", "--teams: empty or too many teams");
            for (int i = 0; i < n; i++) {
                if (!dmj_tool_parse_int(items[i], 0, INT32_MAX, &v))
                    return dmj_tool_fail("keys", "--teams: not a team id: %s", items[i]);
                k.scoped_teams[i] = (int32_t)v;
            }
            k.n_teams = (unsigned)n;
            break;
        case 'o':
            add_restriction(&a, "--orgs", optarg);
            n = split(optarg, items, DMJ_KEY_MAX_ORGS);
            if (n <= 0)
                return dmj_tool_fail("keys", "--orgs: empty or too many organizations");
            for (int i = 0; i < n; i++) {
                if (dmj_uuid_parse(items[i], strlen(items[i]), k.scoped_orgs[i]) != 0)
                    return dmj_tool_fail("keys", "--orgs: not a UUID: %s", items[i]);
            }
            k.n_orgs = (unsigned)n;
            break;
        }
    }
    if (opts.status >= 0)
        return opts.status;
    if (!has_user || !has_scopes)
        return dmj_tool_usage(usage_text);
    if (check_scopes(&k) != 0)
        return DMJ_TOOL_FAIL;
    a.db = opts.db;

    char raw[64], id[64];
    int rc = dmj_key_generate(raw);
    if (rc == 0)
        rc = dmj_key_generate(id); /* the key's public id: 24 more random characters */
    if (rc != 0)
        return dmj_tool_fail("keys", "no randomness: %s", dmj_strerror(rc));
    k.id = (struct dmj_str){id + 4, 24};
    dmj_key_hash(raw, strlen(raw), k.secure_value);
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) == 0) {
        k.has_created_at = true;
        k.created_at = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    }

    struct dmj_store *s;
    if (dmj_tool_open(a.db, 0, &s) != 0)
        return DMJ_TOOL_FAIL;
    struct dmj_read *r = NULL;
    struct dmj_write *w = NULL;
    int status = DMJ_TOOL_FAIL;
    rc = dmj_read_new(s, &r);
    if (rc == 0)
        rc = dmj_read_begin(r);
    if (rc != 0) {
        dmj_tool_fail("keys", "cannot read the store: %s", dmj_strerror(rc));
        goto Close;
    }
    /* One writer at a time: what the read saw is what the write changes. */
    rc = dmj_write_begin(s, &w);
    if (rc == 0 && a.has_team)
        rc = make_identity(r, w, &a, k.user_id);
    if (rc != 0) {
        dmj_tool_fail("keys", "cannot store the key: %s", dmj_strerror(rc));
        goto Abort;
    }
    if (!a.has_team && check_identity(s, r, &a, &k) != 0)
        goto Abort;
    rc = dmj_write_key(w, &k);
    if (rc == 0)
        rc = dmj_write_commit(w, NULL);
    w = NULL;
    if (rc != 0) {
        dmj_tool_fail("keys", "cannot store the key: %s", dmj_strerror(rc));
        goto Close;
    }
    printf("%s\n", raw);
    fprintf(stderr, "dmj keys: key id %.24s for user %lld; shown once, only its hash is stored\n",
            id + 4, (long long)k.user_id);
    status = DMJ_TOOL_OK;
Abort:
    if (w)
        dmj_write_abort(w);
Close:
    if (r) {
        dmj_read_end(r);
        dmj_read_free(r);
    }
    dmj_store_close(s);
    explicit_bzero(raw, sizeof raw);
    return status;
}

static void print_key(const struct dmj_key *k)
{
    char created[DMJ_TIME_TEXT_MAX] = "-";
    if (k->has_created_at)
        dmj_time_format_drf(k->created_at, created);
    printf("id %.*s, user %lld, created %s, scopes [", (int)k->id.len, k->id.ptr ? k->id.ptr : "",
           (long long)k->user_id, created);
    for (unsigned i = 0; i < k->n_scopes; i++)
        printf("%s%.*s", i ? "," : "", (int)k->scopes[i].len, k->scopes[i].ptr);
    printf("], teams [");
    for (unsigned i = 0; i < k->n_teams; i++)
        printf("%s%d", i ? "," : "", k->scoped_teams[i]);
    printf("], organizations [");
    for (unsigned i = 0; i < k->n_orgs; i++) {
        char text[DMJ_UUID_TEXT_LEN + 1];
        dmj_uuid_format(k->scoped_orgs[i], text);
        printf("%s%s", i ? "," : "", text);
    }
    printf("], hash %s\n", k->secure_value);
}

/* The stored hash a KEY|sha256$HEX argument names. */
static void hash_arg(const char *arg, size_t len, char hash[DMJ_KEY_HASH_LEN + 1])
{
    if (len == DMJ_KEY_HASH_LEN && strncmp(arg, "sha256$", 7) == 0) {
        memcpy(hash, arg, DMJ_KEY_HASH_LEN);
        hash[DMJ_KEY_HASH_LEN] = '\0';
    } else {
        dmj_key_hash(arg, len, hash);
    }
}

/* The key on standard input's first line (its line end dropped), hashed as hash_arg does;
 * false (and a message) when there is no line or it is too long to be a key. */
static bool hash_stdin(char hash[DMJ_KEY_HASH_LEN + 1])
{
    char line[1024];
    if (!fgets(line, sizeof line, stdin)) {
        dmj_tool_fail("keys", "-: no key on standard input");
        return false;
    }
    size_t n = strlen(line);
    if (n == sizeof line - 1 && line[n - 1] != '\n') {
        dmj_tool_fail("keys", "-: the line on standard input is too long for a key");
        return false;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    hash_arg(line, n, hash);
    explicit_bzero(line, sizeof line);
    return true;
}

/* dmj_tool_open failed (and said why). */
#define OPEN_FAILED 1

/* Whether `arg` has the form of the id `create` gives a key (24 letters and digits). */
static bool id_shaped(const char *arg)
{
    size_t n = strlen(arg);
    if (n == 0 || n > 64 || strncmp(arg, "phx_", 4) == 0 || strncmp(arg, "sha256$", 7) == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = arg[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

/* The hash of the stored key whose id is `id`: 0, DMJ_ENOTFOUND, or -EEXIST when several
 * keys share it (each then named on stderr). */
static int hash_of_id(struct dmj_read *r, const char *id, char hash[DMJ_KEY_HASH_LEN + 1])
{
    static struct dmj_key k; /* 7 KiB; one walk at a time in a one-shot command */
    char after[DMJ_KEY_HASH_LEN + 1];
    size_t len = strlen(id);
    unsigned found = 0;
    bool first = true;
    int rc;
    while ((rc = dmj_read_next_key(r, first ? NULL : after, &k)) == 0) {
        first = false;
        memcpy(after, k.secure_value, sizeof after);
        if (k.id.len == len && memcmp(k.id.ptr, id, len) == 0) {
            if (found++ > 0)
                fprintf(stderr, "dmj keys: id %s is also the key with hash %s\n", id,
                        k.secure_value);
            else
                memcpy(hash, k.secure_value, DMJ_KEY_HASH_LEN + 1);
        }
    }
    if (rc != DMJ_EEND && rc != 0)
        return rc;
    if (found > 1)
        return -EEXIST;
    return found ? 0 : DMJ_ENOTFOUND;
}

/* Resolves the argument of check and revoke to a stored hash: an id when a key has that id,
 * else a key or a sha256$HEX hash (hash_arg). */
static int resolve(struct dmj_read *r, const char *arg, char hash[DMJ_KEY_HASH_LEN + 1])
{
    if (id_shaped(arg)) {
        int rc = hash_of_id(r, arg, hash);
        if (rc != DMJ_ENOTFOUND)
            return rc;
    }
    hash_arg(arg, strlen(arg), hash);
    return 0;
}

/* Prints what the key `arg` names may do; a dmj code, or OPEN_FAILED. */
static int check_key(const char *db, const char *arg, char hash[DMJ_KEY_HASH_LEN + 1])
{
    struct dmj_store *s;
    if (dmj_tool_open(db, DMJ_STORE_RDONLY, &s) != 0)
        return OPEN_FAILED;
    static struct dmj_key k;
    struct dmj_read *r = NULL;
    int rc = dmj_read_new(s, &r);
    if (rc == 0)
        rc = dmj_read_begin(r);
    if (rc == 0 && arg)
        rc = resolve(r, arg, hash);
    if (rc == 0)
        rc = dmj_read_key(r, hash, &k);
    if (rc == 0)
        print_key(&k);
    if (r) {
        dmj_read_end(r);
        dmj_read_free(r);
    }
    dmj_store_close(s);
    return rc;
}

/* Deletes the key `arg` names (or with `hash` when arg is NULL); a dmj code, or OPEN_FAILED. */
static int revoke_key(const char *db, const char *arg, char hash[DMJ_KEY_HASH_LEN + 1])
{
    /* a writable open would make an empty store where there is none */
    char path[4096];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/data.mdb", db) >= (int)sizeof path || stat(path, &st) != 0)
        return -ENOENT;
    struct dmj_store *s;
    if (dmj_tool_open(db, 0, &s) != 0)
        return OPEN_FAILED;
    struct dmj_read *r = NULL;
    struct dmj_write *w = NULL;
    int rc = 0;
    if (arg) {
        rc = dmj_read_new(s, &r);
        if (rc == 0)
            rc = dmj_read_begin(r);
        if (rc == 0)
            rc = resolve(r, arg, hash);
        if (r) {
            dmj_read_end(r);
            dmj_read_free(r);
        }
    }
    if (rc == 0)
        rc = dmj_write_begin(s, &w);
    if (rc == 0)
        rc = dmj_write_delete_key(w, hash);
    if (rc == 0)
        rc = dmj_write_commit(w, NULL);
    else if (w)
        dmj_write_abort(w);
    dmj_store_close(s);
    return rc;
}

/* keys check / keys revoke -|ID|KEY|sha256$HEX: the key it names, checked or deleted. */
static int key_command(int argc, char **argv, bool revoke)
{
    const char *db;
    int status = dmj_tool_db_args(argc, argv, 1, usage_text, help_text, &db);
    if (status >= 0)
        return status;
    char hash[DMJ_KEY_HASH_LEN + 1] = "";
    const char *arg = argv[argc - 1];
    if (strcmp(arg, "-") == 0) {
        if (!hash_stdin(hash))
            return DMJ_TOOL_FAIL;
        arg = NULL;
    }
    int rc = revoke ? revoke_key(db, arg, hash) : check_key(db, arg, hash);
    if (rc == OPEN_FAILED)
        return DMJ_TOOL_FAIL;
    if (rc == DMJ_ENOTFOUND)
        return dmj_tool_fail("keys", "no such key (hash %s)", hash);
    if (rc == -EEXIST)
        return dmj_tool_fail("keys", "several keys have the id %s: name one by its hash", arg);
    if (rc != 0)
        return dmj_tool_fail("keys", "%s%s", revoke ? "cannot revoke the key: " : "",
                             dmj_strerror(rc));
    if (revoke)
        fprintf(stderr, "dmj keys: revoked the key with hash %s\n", hash);
    return DMJ_TOOL_OK;
}

/* keys list: every stored key, one line each, in hash order. */
static int list(int argc, char **argv)
{
    const char *db;
    int status = dmj_tool_db_args(argc, argv, 0, usage_text, help_text, &db);
    if (status >= 0)
        return status;
    struct dmj_store *s;
    if (dmj_tool_open(db, DMJ_STORE_RDONLY, &s) != 0)
        return DMJ_TOOL_FAIL;
    static struct dmj_key k;
    char after[DMJ_KEY_HASH_LEN + 1];
    struct dmj_read *r = NULL;
    unsigned long long n = 0;
    int rc = dmj_read_new(s, &r);
    if (rc == 0)
        rc = dmj_read_begin(r);
    while (rc == 0 && (rc = dmj_read_next_key(r, n ? after : NULL, &k)) == 0) {
        memcpy(after, k.secure_value, sizeof after);
        print_key(&k);
        n++;
    }
    if (r) {
        dmj_read_end(r);
        dmj_read_free(r);
    }
    dmj_store_close(s);
    if (rc != DMJ_EEND)
        return dmj_tool_fail("keys", "cannot list the keys: %s", dmj_strerror(rc));
    fprintf(stderr, "dmj keys: %llu keys\n", n);
    return DMJ_TOOL_OK;
}

int dmj_cmd_keys(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "create") == 0)
        return create(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "list") == 0)
        return list(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "check") == 0)
        return key_command(argc - 1, argv + 1, false);
    if (argc >= 2 && strcmp(argv[1], "revoke") == 0)
        return key_command(argc - 1, argv + 1, true);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("%s\n%s", usage_text, help_text);
        return DMJ_TOOL_OK;
    }
    return dmj_tool_usage(usage_text);
}

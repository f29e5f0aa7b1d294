/* dmj keys: creates a personal API key (printed once, only its hash stored), checks one, or
 * revokes one. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "dmj/error.h"
#include "dmj/identity.h"
#include "dmj/store.h"
#include "dmj/uuid.h"

#include "dmj_tool.h"

static const char usage_text[] =
    "usage: dmj keys create [--db DIR] --user ID --scopes S[,S...] [--teams ID,...]\n"
    "                       [--orgs UUID,...]\n"
    "       dmj keys check [--db DIR] -|KEY|sha256$HEX\n"
    "       dmj keys revoke [--db DIR] -|KEY|sha256$HEX\n";

static const char help_text[] =
    "create: makes a new random key \"phx_...\" for the user, stores its hash with the\n"
    "        scopes (--scopes '' for none) and optional team / organization restrictions,\n"
    "        and prints the key on standard output: it cannot be shown again.\n"
    "check:  looks a key (or its stored hash) up and prints what it may do; exit 1 when\n"
    "        the store does not know it.\n"
    "revoke: deletes the key (or the key with that hash) from the store: it then gets 401;\n"
    "        exit 1 when the store does not know it. A key `dmj sync --identities` copied\n"
    "        from PostgreSQL is revoked there: sync writes it again while PostgreSQL has it.\n"
    "-: check and revoke read the key (or hash) from the first line of standard input,\n"
    "   which keeps it off the command line, where every local user can read it (ps).\n";

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

static int create(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'd'},
        {"user", required_argument, NULL, 'u'},
        {"scopes", required_argument, NULL, 's'},
        {"teams", required_argument, NULL, 't'},
        {"orgs", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct dmj_key k = {0}; /* 7 KiB on the stack is fine for a one-shot command */
    const char *db = NULL;
    bool has_user = false, has_scopes = false;
    char *items[DMJ_KEY_MAX_TEAMS];
    int n, c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'u':
            if (!dmj_tool_parse_int(optarg, INT64_MIN, INT64_MAX, &k.user_id))
                return dmj_tool_fail("keys", "--user: not a user id: %s", optarg);
            has_user = true;
            break;
        case 's':
            n = split(optarg, items, DMJ_KEY_MAX_SCOPES);
            if (n < 0)
                return dmj_tool_fail("keys", "--scopes: empty or too many scopes");
            for (int i = 0; i < n; i++)
                k.scopes[i] = (struct dmj_str){items[i], strlen(items[i])};
            k.n_scopes = (unsigned)n;
            has_scopes = true;
            break;
        case 't':
            n = split(optarg, items, DMJ_KEY_MAX_TEAMS);
            if (n <= 0)
                return dmj_tool_fail("keys", "--teams: empty or too many teams");
            for (int i = 0; i < n; i++) {
                int64_t t;
                if (!dmj_tool_parse_int(items[i], 0, INT32_MAX, &t))
                    return dmj_tool_fail("keys", "--teams: not a team id: %s", items[i]);
                k.scoped_teams[i] = (int32_t)t;
            }
            k.n_teams = (unsigned)n;
            break;
        case 'o':
            n = split(optarg, items, DMJ_KEY_MAX_ORGS);
            if (n <= 0)
                return dmj_tool_fail("keys", "--orgs: empty or too many organizations");
            for (int i = 0; i < n; i++) {
                if (dmj_uuid_parse(items[i], strlen(items[i]), k.scoped_orgs[i]) != 0)
                    return dmj_tool_fail("keys", "--orgs: not a UUID: %s", items[i]);
            }
            k.n_orgs = (unsigned)n;
            break;
        case 'h':
            printf("%s\n%s", usage_text, help_text);
            return DMJ_TOOL_OK;
        default:
            return dmj_tool_usage(usage_text);
        }
    }
    if (optind != argc || !has_user || !has_scopes)
        return dmj_tool_usage(usage_text);

    char raw[64], id[64];
    int rc = dmj_key_generate(raw);
    if (rc == 0)
        rc = dmj_key_generate(id); /* the key's public id: 24 more random characters */
    if (rc != 0)
        return dmj_tool_fail("keys", "no randomness: %s", dmj_strerror(rc));
    k.id = (struct dmj_str){id + 4, 24};
    dmj_key_hash(raw, strlen(raw), k.secure_value);

    struct dmj_store *s;
    if (dmj_tool_open(dmj_tool_db(db), 0, &s) != 0)
        return DMJ_TOOL_FAIL;
    struct dmj_read *r;
    if (dmj_read_new(s, &r) == 0) {
        struct dmj_user u;
        if (dmj_read_begin(r) == 0) {
            if (dmj_read_user(r, k.user_id, &u) != 0)
                fprintf(stderr, "dmj keys: warning: user %lld is not in the store\n",
                        (long long)k.user_id);
            dmj_read_end(r);
        }
        dmj_read_free(r);
    }
    struct dmj_write *w = NULL;
    rc = dmj_write_begin(s, &w);
    if (rc == 0)
        rc = dmj_write_key(w, &k);
    if (rc == 0)
        rc = dmj_write_commit(w, NULL);
    else if (w)
        dmj_write_abort(w);
    dmj_store_close(s);
    if (rc != 0)
        return dmj_tool_fail("keys", "cannot store the key: %s", dmj_strerror(rc));
    printf("%s\n", raw);
    fprintf(stderr, "dmj keys: key id %.24s for user %lld; shown once, only its hash is stored\n",
            id + 4, (long long)k.user_id);
    return DMJ_TOOL_OK;
}

static void print_key(const struct dmj_key *k)
{
    printf("id %.*s, user %lld, scopes [", (int)k->id.len, k->id.ptr ? k->id.ptr : "",
           (long long)k->user_id);
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

/* Prints what the key with `hash` may do; a dmj code, or OPEN_FAILED. */
static int check_key(const char *db, const char *hash)
{
    struct dmj_store *s;
    if (dmj_tool_open(db, DMJ_STORE_RDONLY, &s) != 0)
        return OPEN_FAILED;
    struct dmj_key k;
    struct dmj_read *r = NULL;
    int rc = dmj_read_new(s, &r);
    if (rc == 0)
        rc = dmj_read_begin(r);
    if (rc == 0) {
        rc = dmj_read_key(r, hash, &k);
        if (rc == 0)
            print_key(&k);
        dmj_read_end(r);
    }
    if (r)
        dmj_read_free(r);
    dmj_store_close(s);
    return rc;
}

/* Deletes the key with `hash`; a dmj code, or OPEN_FAILED. */
static int revoke_key(const char *db, const char *hash)
{
    /* a writable open would make an empty store where there is none */
    char path[4096];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/data.mdb", db) >= (int)sizeof path || stat(path, &st) != 0)
        return -ENOENT;
    struct dmj_store *s;
    if (dmj_tool_open(db, 0, &s) != 0)
        return OPEN_FAILED;
    struct dmj_write *w = NULL;
    int rc = dmj_write_begin(s, &w);
    if (rc == 0)
        rc = dmj_write_delete_key(w, hash);
    if (rc == 0)
        rc = dmj_write_commit(w, NULL);
    else if (w)
        dmj_write_abort(w);
    dmj_store_close(s);
    return rc;
}

/* keys check / keys revoke -|KEY|sha256$HEX: the key with that hash, checked or deleted. */
static int key_command(int argc, char **argv, bool revoke)
{
    const char *db;
    int status = dmj_tool_db_args(argc, argv, 1, usage_text, help_text, &db);
    if (status >= 0)
        return status;
    char hash[DMJ_KEY_HASH_LEN + 1];
    const char *arg = argv[argc - 1];
    if (strcmp(arg, "-") != 0)
        hash_arg(arg, strlen(arg), hash);
    else if (!hash_stdin(hash))
        return DMJ_TOOL_FAIL;
    int rc = revoke ? revoke_key(db, hash) : check_key(db, hash);
    if (rc == OPEN_FAILED)
        return DMJ_TOOL_FAIL;
    if (rc == DMJ_ENOTFOUND)
        return dmj_tool_fail("keys", "no such key (hash %s)", hash);
    if (rc != 0)
        return dmj_tool_fail("keys", "%s%s", revoke ? "cannot revoke the key: " : "",
                             dmj_strerror(rc));
    if (revoke)
        fprintf(stderr, "dmj keys: revoked the key with hash %s\n", hash);
    return DMJ_TOOL_OK;
}

int dmj_cmd_keys(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "create") == 0)
        return create(argc - 1, argv + 1);
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

/* dmj generate: deterministic synthetic run history and identities, for demos, tests and
 * benchmarks, in the formats of shared/tools/gen_jobs.py (same shape, not the same bytes). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmj/buf.h"
#include "dmj/error.h"
#include "dmj/identity.h"
#include "dmj/json.h"

#include "dmj_tool.h"

static const char usage_text[] =
    "usage: dmj generate --jobs N --teams T [--orgs O] [--seed S] [--out F]\n"
    "                    [--fixtures-out F] [--saved-queries-per-team Q] [--start DATE]\n"
    "                    [--span-days D]\n";

static const char help_text[] =
    "Writes N synthetic jobs as NDJSON (to F, default standard output) and, with\n"
    "--fixtures-out, the organizations, teams, saved queries, users, memberships and\n"
    "personal API keys (raw \"key\" and \"secure_value\") in gen_jobs.py's fixtures format,\n"
    "usable by both `dmj import` and the Django reference peer. Same arguments, same\n"
    "bytes, on every machine (splitmix64). Defaults: 2 organizations, seed 1, 8 saved\n"
    "queries per team, created_at from 2024-01-01 over 30 days; the last team of three or\n"
    "more gets no jobs. About 5% of jobs are Running; runs of equal created_at values,\n"
    "whole-second timestamps, null saved queries and awkward unicode errors are mixed in.\n";

#define OUT_FLUSH (1u << 20)
#define RING 8

/* ---- randomness ------------------------------------------------------------------- */

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static double unit(uint64_t *s)
{
    return (double)(next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static uint64_t below(uint64_t *s, uint64_t n)
{
    return (uint64_t)(unit(s) * (double)n);
}

static void uuid4(uint64_t *s, uint8_t out[16])
{
    uint64_t a = next(s), b = next(s);
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(a >> (56 - 8 * i));
        out[8 + i] = (uint8_t)(b >> (56 - 8 * i));
    }
    out[6] = (uint8_t)((out[6] & 0x0f) | 0x40);
    out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
}

static void token(uint64_t *s, char *out, size_t n)
{
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for (size_t i = 0; i < n; i++)
        out[i] = alnum[below(s, 62)];
    out[n] = '\0';
}

/* ---- output ----------------------------------------------------------------------- */

struct out {
    FILE *f;
    char *buf;
    size_t len;
    int err;
};

static void flush(struct out *o)
{
    if (o->len && fwrite(o->buf, 1, o->len, o->f) != o->len)
        o->err = -EIO;
    o->len = 0;
}

static void put(struct out *o, const char *s, size_t n)
{
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_u64(struct out *o, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        o->buf[o->len++] = tmp[--n];
}

static void put_uuid(struct out *o, const uint8_t id[16])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            o->buf[o->len++] = '-';
        o->buf[o->len++] = hex[id[i] >> 4];
        o->buf[o->len++] = hex[id[i] & 15];
    }
}

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ"; the date part is cached since runs share days. */
struct tsfmt {
    int64_t day;
    char date[48];
};

static void put_digits(char *p, unsigned v, int n)
{
    while (n--) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

static void put_ts(struct out *o, struct tsfmt *c, int64_t us)
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    int64_t day = secs / 86400, rest = secs % 86400;
    if (rest < 0) {
        rest += 86400;
        day--;
    }
    if (day != c->day) {
        time_t t = (time_t)(day * 86400);
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(c->date, sizeof c->date, "%04d-%02d-%02dT", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday);
        c->day = day;
    }
    char *p = o->buf + o->len;
    memcpy(p, c->date, 11);
    put_digits(p + 11, (unsigned)(rest / 3600), 2);
    p[13] = ':';
    put_digits(p + 14, (unsigned)(rest / 60 % 60), 2);
    p[16] = ':';
    put_digits(p + 17, (unsigned)(rest % 60), 2);
    p[19] = '.';
    put_digits(p + 20, (unsigned)frac, 6);
    p[26] = 'Z';
    o->len += 27;
}

/* ---- the world -------------------------------------------------------------------- */

struct world {
    unsigned teams, orgs, sq_per_team, empty_teams;
    uint8_t (*org_ids)[16];
    uint8_t (*sq_ids)[16]; /* team t's saved queries at (t-1)*sq_per_team */
    char (*api_tokens)[48];
};

/* Error texts with everything an encoder can get wrong; JSON-encoded once at start. */
static const char *const failed_errors[] = {
    "Query failed: table 'events' does not exist",
    "Column \"amount\" is of type String but expression is of type Int64",
    "Unexpected token near 'SELECT' at line 1\nSELECT * FRM events\n              ^",
    "Path C:\\warehouse\\views\\daily.sql not found\t(code 404)",
    "Timeout after 3600s \xe2\x80\x94 materialization cancelled by scheduler",
    "Erreur de syntaxe pr\xc3\xa8s de \xc2\xab\xc2\xa0"
    "FROM\xc2\xa0\xc2\xbb \xe2\x80\x93 r\xc3\xa9"
    "essayez",
    "クエリが失敗しました: テーブルがありません",
    "Memory limit exceeded \xf0\x9f\x92\xa5 (total) would use 10.00 GiB",
    "line separator\xe2\x80\xa8paragraph separator\xe2\x80\xa9"
    "end",
    "control chars: \x01\x02\x1f and DEL \x7f",
    "JSON-ish payload: {\"key\": \"va\\\"lue\", \"list\": [1, 2, 3]}",
    "</script><script>alert('x')</script> & <b>bold</b>",
    "Code: 241. DB::Exception: Memory limit (for query) exceeded: would use 9.31 GiB "
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "Emoji family \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 and "
    "flag \xf0\x9f\x87\xba\xf0\x9f\x87\xb8",
    "",
};
#define N_FAILED (sizeof failed_errors / sizeof failed_errors[0])

static const char *const cancelled_errors[] = {"Cancelled by user", "Workflow was cancelled", ""};
#define N_CANCELLED (sizeof cancelled_errors / sizeof cancelled_errors[0])

struct encoded {
    struct dmj_buf b[N_FAILED + N_CANCELLED];
};

static int encode_errors(struct encoded *e)
{
    for (size_t i = 0; i < N_FAILED + N_CANCELLED; i++) {
        const char *s = i < N_FAILED ? failed_errors[i] : cancelled_errors[i - N_FAILED];
        dmj_buf_init(&e->b[i], 4096);
        int rc = dmj_json_add_string(&e->b[i], (struct dmj_str){s, strlen(s)});
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void free_errors(struct encoded *e)
{
    for (size_t i = 0; i < N_FAILED + N_CANCELLED; i++)
        dmj_buf_dispose(&e->b[i]);
}

static void put_buf(struct out *o, const struct dmj_buf *b)
{
    put(o, b->data, b->len);
}

/* ---- jobs ------------------------------------------------------------------------- */

struct team_state {
    int64_t ring[RING];
    unsigned ring_len;
    int64_t burst_ts;
    unsigned burst_left;
};

struct job_params {
    uint64_t jobs;
    uint64_t seed;
    int64_t start_us, span_us;
};

static int64_t pick_created(uint64_t *rng, struct team_state *ts, int64_t start, int64_t span)
{
    if (ts->burst_left > 0) {
        ts->burst_left--;
        return ts->burst_ts;
    }
    int64_t created;
    if (ts->ring_len > 0 && unit(rng) < 0.2) {
        created = ts->ring[below(rng, ts->ring_len)]; /* an exact duplicate of a recent one */
    } else {
        created = start + (int64_t)below(rng, (uint64_t)span);
        if (unit(rng) < 0.02)
            created -= created % 1000000;
    }
    if (unit(rng) < 0.0008) {
        /* a burst: the next 20-149 jobs of this team share this created_at */
        ts->burst_ts = created;
        ts->burst_left = 20 + (unsigned)below(rng, 130);
    }
    if (ts->ring_len < RING)
        ts->ring[ts->ring_len++] = created;
    else
        ts->ring[below(rng, RING)] = created;
    return created;
}

static void put_str_or_null(struct out *o, const char *s)
{
    if (!s) {
        puts_(o, "null");
        return;
    }
    o->buf[o->len++] = '"';
    puts_(o, s);
    o->buf[o->len++] = '"';
}

static int write_jobs(const struct world *w, const struct job_params *p, const struct encoded *e,
                      struct out *o)
{
    unsigned job_teams = w->teams - w->empty_teams;
    struct team_state *ts = calloc(job_teams, sizeof *ts);
    if (!ts)
        return -ENOMEM;
    uint64_t rng = p->seed * 0x2545f4914f6cdd1du + 1;
    struct tsfmt fmt_created = {.day = INT64_MIN}, fmt_last = {.day = INT64_MIN};
    for (uint64_t i = 0; i < p->jobs && o->err == 0; i++) {
        unsigned team = 1 + (unsigned)below(&rng, job_teams);
        uint8_t id[16], tmp[16];
        uuid4(&rng, id);
        int64_t created = pick_created(&rng, &ts[team - 1], p->start_us, p->span_us);

        const char *status;
        int64_t duration, rows;
        const struct dmj_buf *error = NULL;
        double r = unit(&rng);
        if (r < 0.05) {
            status = "Running";
            duration = (int64_t)below(&rng, 600000000u);
            rows = unit(&rng) < 0.7 ? 0 : (int64_t)below(&rng, 100000);
        } else if ((r = unit(&rng)) < 0.68) {
            status = "Completed";
            duration = (int64_t)below(&rng, 3600000000u);
            rows = (int64_t)below(&rng, 5000000);
        } else if (r < 0.88) {
            status = "Failed";
            duration = (int64_t)below(&rng, 1800000000u);
            rows = unit(&rng) < 0.5 ? 0 : (int64_t)below(&rng, 1000);
            error = &e->b[below(&rng, N_FAILED)];
        } else if (r < 0.99) {
            status = "Cancelled";
            duration = (int64_t)below(&rng, 900000000u);
            rows = (int64_t)below(&rng, 10000);
            if (unit(&rng) < 0.7)
                error = &e->b[N_FAILED + below(&rng, N_CANCELLED)];
        } else {
            status = "Skipped";
            duration = 0;
            rows = 0;
        }
        int64_t last_run = created + duration;
        if (unit(&rng) < 0.02) {
            last_run -= last_run % 1000000;
            if (last_run < created)
                last_run = created;
        }
        bool has_expected = unit(&rng) >= 0.3;
        int64_t expected = rows + (int64_t)below(&rng, 50000);
        const uint8_t *sq = NULL;
        if (w->sq_per_team > 0 && unit(&rng) >= 0.1)
            sq = w->sq_ids[(size_t)(team - 1) * w->sq_per_team + below(&rng, w->sq_per_team)];

        /* room for the longest line: the fixed parts, two timestamps, a long error */
        if (o->len > OUT_FLUSH)
            flush(o);
        puts_(o, "{\"id\":\"");
        put_uuid(o, id);
        puts_(o, "\",\"team_id\":");
        put_u64(o, team);
        puts_(o, ",\"saved_query_id\":");
        if (sq) {
            o->buf[o->len++] = '"';
            put_uuid(o, sq);
            o->buf[o->len++] = '"';
        } else {
            puts_(o, "null");
        }
        puts_(o, ",\"status\":");
        put_str_or_null(o, status);
        puts_(o, ",\"rows_materialized\":");
        put_u64(o, (uint64_t)rows);
        puts_(o, ",\"error\":");
        if (error)
            put_buf(o, error);
        else
            puts_(o, "null");
        puts_(o, ",\"created_at\":\"");
        size_t created_at = o->len;
        put_ts(o, &fmt_created, created);
        puts_(o, "\",\"last_run_at\":\"");
        put_ts(o, &fmt_last, last_run);
        puts_(o, "\",\"workflow_id\":");
        double wr = unit(&rng);
        const char *prefix = wr < 0.80   ? "materialize-view-"
                             : wr < 0.88 ? "other-data-import-"
                             : wr < 0.93 ? NULL
                             : wr < 0.97 ? "Materialize-View-"
                                         : "materialize_dag-";
        if (!prefix) {
            puts_(o, "null");
        } else {
            o->buf[o->len++] = '"';
            puts_(o, prefix);
            bool view = wr < 0.80 || (wr >= 0.93 && wr < 0.97); /* ids end in created_at */
            if (view && sq) {
                put_uuid(o, sq);
            } else {
                uuid4(&rng, tmp);
                put_uuid(o, tmp);
            }
            if (view) {
                o->buf[o->len++] = '-';
                memmove(o->buf + o->len, o->buf + created_at, 27);
                o->len += 27;
            }
            o->buf[o->len++] = '"';
        }
        puts_(o, ",\"workflow_run_id\":");
        if (unit(&rng) < 0.1) {
            puts_(o, "null");
        } else {
            uuid4(&rng, tmp);
            o->buf[o->len++] = '"';
            put_uuid(o, tmp);
            o->buf[o->len++] = '"';
        }
        puts_(o, ",\"rows_expected\":");
        if (has_expected)
            put_u64(o, (uint64_t)expected);
        else
            puts_(o, "null");
        puts_(o, "}\n");
    }
    flush(o);
    free(ts);
    return o->err;
}

/* ---- fixtures --------------------------------------------------------------------- */

/* One of the scenario keys: the raw key (printed in the fixtures), its hash, its id. */
struct fixture_key {
    char raw[64];
    char hash[DMJ_KEY_HASH_LEN + 1];
    char id[32];
};

static int make_world(struct world *w, uint64_t seed, struct fixture_key keys[12])
{
    uint64_t rng = seed * 1000003u + 17;
    w->org_ids = calloc(w->orgs, 16);
    w->sq_ids = calloc((size_t)w->teams * (w->sq_per_team ? w->sq_per_team : 1), 16);
    w->api_tokens = calloc(w->teams, sizeof w->api_tokens[0]);
    if (!w->org_ids || !w->sq_ids || !w->api_tokens)
        return -ENOMEM;
    for (unsigned i = 0; i < w->orgs; i++)
        uuid4(&rng, w->org_ids[i]);
    for (unsigned t = 0; t < w->teams; t++) {
        memcpy(w->api_tokens[t], "phc_", 4);
        token(&rng, w->api_tokens[t] + 4, 43);
    }
    for (size_t i = 0; i < (size_t)w->teams * w->sq_per_team; i++)
        uuid4(&rng, w->sq_ids[i]);
    for (int k = 0; k < 12; k++) {
        memcpy(keys[k].raw, "phx_", 4);
        token(&rng, keys[k].raw + 4, 47);
        dmj_key_hash(keys[k].raw, 51, keys[k].hash);
        token(&rng, keys[k].id, 24);
    }
    return 0;
}

static void free_world(struct world *w)
{
    free(w->org_ids);
    free(w->sq_ids);
    free(w->api_tokens);
}

static void fput_uuid(FILE *f, const uint8_t id[16])
{
    char text[40];
    snprintf(text, sizeof text,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", id[0], id[1],
             id[2], id[3], id[4], id[5], id[6], id[7], id[8], id[9], id[10], id[11], id[12], id[13],
             id[14], id[15]);
    fprintf(f, "\"%s\"", text);
}

static int write_fixtures(const struct world *w, uint64_t seed, uint64_t jobs,
                          const struct fixture_key keys[12], const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fprintf(f, "{\n \"format\": \"drf_ref-fixtures-1\",\n \"seed\": %llu,\n \"organizations\": [",
            (unsigned long long)seed);
    for (unsigned i = 0; i < w->orgs; i++) {
        fprintf(f, "%s\n  {\"id\": ", i ? "," : "");
        fput_uuid(f, w->org_ids[i]);
        fprintf(f, ", \"name\": \"Organization %u\"}", i + 1);
    }
    fprintf(f, "\n ],\n \"teams\": [");
    for (unsigned t = 1; t <= w->teams; t++) {
        fprintf(f, "%s\n  {\"id\": %u, \"project_id\": %u, \"organization_id\": ", t > 1 ? "," : "",
                t, t);
        fput_uuid(f, w->org_ids[(t - 1) % w->orgs]);
        fprintf(f, ", \"name\": \"Team %u\", \"api_token\": \"%s\"}", t, w->api_tokens[t - 1]);
    }
    fprintf(f, "\n ],\n \"saved_queries\": [");
    for (unsigned t = 1; t <= w->teams; t++) {
        for (unsigned q = 0; q < w->sq_per_team; q++) {
            fprintf(f, "%s\n  {\"id\": ", t > 1 || q > 0 ? "," : "");
            fput_uuid(f, w->sq_ids[(size_t)(t - 1) * w->sq_per_team + q]);
            fprintf(f, ", \"team_id\": %u, \"name\": \"view_%u_%u\"}", t, t, q);
        }
    }
    /* The scenario users and keys of gen_jobs.py, so that tests find them by label. */
    unsigned first_team_of_last_org = w->orgs; /* team i is in org (i-1) % orgs */
    fprintf(f, "\n ],\n \"users\": [\n");
    fprintf(f, "  {\"id\": 1, \"email\": \"alice@example.com\", \"is_active\": true, "
               "\"current_team_id\": 1, \"current_organization_id\": ");
    fput_uuid(f, w->org_ids[0]);
    fprintf(f, ", \"scenario\": \"member (admin) of every organization\"},\n");
    fprintf(f, "  {\"id\": 2, \"email\": \"bob@example.com\", \"is_active\": true, "
               "\"current_team_id\": 1, \"current_organization_id\": ");
    fput_uuid(f, w->org_ids[0]);
    fprintf(f, ", \"scenario\": \"member of the first organization only\"},\n");
    fprintf(f, "  {\"id\": 3, \"email\": \"carol@example.com\", \"is_active\": true, "
               "\"current_team_id\": null, \"current_organization_id\": null, "
               "\"scenario\": \"no organization, no current team\"},\n");
    fprintf(f, "  {\"id\": 4, \"email\": \"dave@example.com\", \"is_active\": false, "
               "\"current_team_id\": 1, \"current_organization_id\": ");
    fput_uuid(f, w->org_ids[0]);
    fprintf(f, ", \"scenario\": \"inactive user, member of every organization\"},\n");
    fprintf(f,
            "  {\"id\": 5, \"email\": \"erin@example.com\", \"is_active\": true, "
            "\"current_team_id\": null, \"current_organization_id\": null, \"scenario\": "
            "\"member of the last organization only, no current team (resolves to team "
            "%u)\"}\n ],\n \"organization_memberships\": [",
            first_team_of_last_org);
    for (unsigned i = 0; i < w->orgs; i++) {
        fprintf(f, "%s\n  {\"user_id\": 1, \"organization_id\": ", i ? "," : "");
        fput_uuid(f, w->org_ids[i]);
        fprintf(f, ", \"level\": 8},\n  {\"user_id\": 4, \"organization_id\": ");
        fput_uuid(f, w->org_ids[i]);
        fprintf(f, ", \"level\": 1}");
    }
    fprintf(f, ",\n  {\"user_id\": 2, \"organization_id\": ");
    fput_uuid(f, w->org_ids[0]);
    fprintf(f, ", \"level\": 1},\n  {\"user_id\": 5, \"organization_id\": ");
    fput_uuid(f, w->org_ids[w->orgs - 1]);
    fprintf(f, ", \"level\": 1}\n ],\n \"personal_api_keys\": [");
    static const struct {
        const char *label;
        int user;
        const char *scopes; /* JSON */
        const char *teams;  /* JSON */
        bool org1;
    } specs[12] = {
        {"read", 1, "[\"warehouse_view:read\"]", "null", false},
        {"write", 1, "[\"warehouse_view:write\"]", "null", false},
        {"star", 1, "[\"*\"]", "null", false},
        {"wrong_scope", 1, "[\"insight:read\", \"warehouse_table:read\"]", "null", false},
        {"empty_scopes", 1, "[]", "null", false},
        {"null_scopes", 1, "null", "null", false},
        {"team1_only", 1, "[\"warehouse_view:read\"]", "[1]", false},
        {"org1_only", 1, "[\"warehouse_view:read\"]", "null", true},
        {"bob_read", 2, "[\"warehouse_view:read\"]", "null", false},
        {"carol_read", 3, "[\"warehouse_view:read\"]", "null", false},
        {"dave_read", 4, "[\"warehouse_view:read\"]", "null", false},
        {"erin_read", 5, "[\"warehouse_view:read\"]", "null", false},
    };
    for (int k = 0; k < 12; k++) {
        fprintf(f,
                "%s\n  {\"id\": \"%s\", \"label\": \"%s\", \"user_id\": %d, \"key\": \"%s\", "
                "\"secure_value\": \"%s\", \"scopes\": %s, \"scoped_teams\": %s, "
                "\"scoped_organizations\": ",
                k ? "," : "", keys[k].id, specs[k].label, specs[k].user, keys[k].raw, keys[k].hash,
                specs[k].scopes, specs[k].teams);
        if (specs[k].org1) {
            fputc('[', f);
            fput_uuid(f, w->org_ids[0]);
            fputc(']', f);
        } else {
            fputs("null", f);
        }
        fputc('}', f);
    }
    fprintf(
        f,
        "\n ],\n \"generator\": {\"tool\": \"dmj generate\", \"jobs\": %llu, \"teams\": %u, "
        "\"orgs\": %u, \"empty_teams\": %u, \"saved_queries_per_team\": %u, \"seed\": %llu}\n}\n",
        (unsigned long long)jobs, w->teams, w->orgs, w->empty_teams, w->sq_per_team,
        (unsigned long long)seed);
    int rc = ferror(f) ? -EIO : 0;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

int dmj_cmd_generate(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"jobs", required_argument, NULL, 'j'},
        {"teams", required_argument, NULL, 't'},
        {"orgs", required_argument, NULL, 'o'},
        {"seed", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'O'},
        {"fixtures-out", required_argument, NULL, 'F'},
        {"saved-queries-per-team", required_argument, NULL, 'q'},
        {"start", required_argument, NULL, 'S'},
        {"span-days", required_argument, NULL, 'D'},
        {NULL, 0, NULL, 0},
    };
    struct dmj_tool_args a = {.usage = usage_text, .help = help_text, .no_db = true};
    struct job_params p = {.jobs = 1000, .seed = 1, .span_us = 30ll * 86400 * 1000000};
    struct world w = {.teams = 4, .orgs = 2, .sq_per_team = 8};
    const char *out_path = "-", *fixtures_path = NULL;
    int64_t n;
    int c;
    dmj_tool_parse_time("2024-01-01", &p.start_us);
    while ((c = dmj_tool_getopt(&a, argc, argv, longopts)) != -1) {
        switch (c) {
        case 'j':
            if (!dmj_tool_parse_int(optarg, 0, INT64_MAX, &n))
                return dmj_tool_fail("generate", "--jobs: not a count: %s", optarg);
            p.jobs = (uint64_t)n;
            break;
        case 't':
            if (!dmj_tool_parse_int(optarg, 1, 1000000, &n))
                return dmj_tool_fail("generate", "--teams: 1 to 1000000: %s", optarg);
            w.teams = (unsigned)n;
            break;
        case 'o':
            if (!dmj_tool_parse_int(optarg, 1, 10000, &n))
                return dmj_tool_fail("generate", "--orgs: 1 to 10000: %s", optarg);
            w.orgs = (unsigned)n;
            break;
        case 's':
            if (!dmj_tool_parse_int(optarg, 0, INT64_MAX, &n))
                return dmj_tool_fail("generate", "--seed: not a number: %s", optarg);
            p.seed = (uint64_t)n;
            break;
        case 'O':
            out_path = optarg;
            break;
        case 'F':
            fixtures_path = optarg;
            break;
        case 'q':
            if (!dmj_tool_parse_int(optarg, 0, 1000, &n))
                return dmj_tool_fail("generate", "--saved-queries-per-team: 0 to 1000: %s", optarg);
            w.sq_per_team = (unsigned)n;
            break;
        case 'S':
            if (!dmj_tool_parse_time(optarg, &p.start_us))
                return dmj_tool_fail("generate", "--start: not a date: %s", optarg);
            break;
        case 'D':
            if (!dmj_tool_parse_int(optarg, 1, 36500, &n))
                return dmj_tool_fail("generate", "--span-days: 1 to 36500: %s", optarg);
            p.span_us = n * 86400 * 1000000;
            break;
        }
    }
    if (a.status >= 0)
        return a.status;
    if (w.orgs > w.teams)
        w.orgs = w.teams;
    w.empty_teams = w.teams >= 3 ? 1 : 0;

    struct fixture_key keys[12];
    struct encoded enc;
    memset(&enc, 0, sizeof enc);
    struct out o = {.f = stdout};
    int rc = make_world(&w, p.seed, keys);
    if (rc == 0)
        rc = encode_errors(&enc);
    if (rc == 0 && fixtures_path)
        rc = write_fixtures(&w, p.seed, p.jobs, keys, fixtures_path);
    if (rc != 0) {
        dmj_tool_fail("generate", "%s", dmj_strerror(rc));
        goto Exit;
    }
    if (strcmp(out_path, "-") != 0) {
        o.f = fopen(out_path, "w");
        if (!o.f) {
            rc = dmj_tool_fail("generate", "%s: %s", out_path, strerror(errno));
            goto Exit;
        }
    }
    o.buf = malloc(OUT_FLUSH + 64 * 1024);
    if (!o.buf)
        rc = -ENOMEM;
    if (rc == 0)
        rc = write_jobs(&w, &p, &enc, &o);
    int closed = o.f != stdout ? fclose(o.f) : fflush(stdout);
    if (closed != 0 && rc == 0)
        rc = -EIO;
    free(o.buf);
    if (rc != 0)
        dmj_tool_fail("generate", "%s", dmj_strerror(rc));
Exit:
    free_errors(&enc);
    free_world(&w);
    return rc == 0 ? DMJ_TOOL_OK : DMJ_TOOL_FAIL;
}

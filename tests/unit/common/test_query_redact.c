/* Unit tests of dmj_query_find and dmj_query_redact: every spelling of personal_api_key that
 * dmj_query_parse reads as the key (and so the API accepts) is found and cut, whatever its
 * encoding, tabs, repetitions or the query's reading (UTF-8 or Latin-1); nothing else is. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hex.h"
#include "dmj/query.h"

#define KEY "phx_zpsO2dMTHxKdSybu0f6rA8kn0eKmjCeD3XGoQWAdaZR2NNE"
#define KEY2 "phx_uc3QxW9f1PLmA7vTn0b5GkRy2HsJdE8Z4iOaUq6YeBcNtVo"
#define PATH "/api/environments/1/data_modeling_jobs/?"

/* Spellings the API reads as KEY (the last personal_api_key is KEY); "%K" in a case stands
 * for KEY with every character percent-encoded. */
static const char *const ACCEPTED[] = {
    "personal_api_key=" KEY,
    "limit=1&personal_api_key=" KEY "&x=",
    "personal%5Fapi%5Fkey=" KEY,
    "personal%5fapi_key=" KEY,
    "%70%65%72%73%6F%6E%61%6C%5F%61%70%69%5F%6B%65%79=" KEY,
    "personal_api_key=%70hx_zpsO2dMTHxKdSybu0f6rA8kn0eKmjCeD3XGoQWAdaZR2NNE",
    "personal_api_key=%K",
    "personal_api_key=phx_zpsO2d%4DTHxKdSybu0f6rA8kn0eKmjCeD3XGoQWAdaZR2NNE",
    "personal_api_key=" KEY2 "&personal_api_key=" KEY,
    "personal_api_key=" KEY2 "&personal_api_key=%K",
    "personal_api_key=" KEY "#personal_api_key=x",
    "personal_api\t_key=%70hx_zpsO2dMTHxKdSybu0f6rA8kn0eKmjCeD3XGoQWAdaZR2NNE",
    "personal_api\t_key=" KEY,
    "\tpersonal_api_key\t=" KEY,
    "personal_api_key=phx_zp\tsO2dMTHxKdSybu0f6rA8kn0eKmjCeD3XGoQWAdaZR2NNE",
    "personal_api_key=p\th\tx\t_zpsO2dMTHxKdSybu0f6rA8kn0eKmjCeD3XGoQWAdaZR2NNE",
    "personal_api_key=%7\t0hx_zpsO2dMTHxKdSybu0f6rA8kn0eKmjCeD3XGoQWAdaZR2NNE",
    "personal%5\tFapi_key=" KEY,
    "personal_api_key=" KEY "\t",
    "personal_api_key=" KEY "\t\t#x",
    "personal_api_key=" KEY2 "&\tpersonal_api_key=" KEY,
    /* high bytes elsewhere: read as Latin-1, or as UTF-8 */
    "x=\377&personal_api_key=" KEY,
    "x=\303\251&personal_api_key=" KEY,
    "x=\303\t\251&personal_api\t_key=%K",
};

/* Appends `s` with "%K" replaced by KEY percent-encoded. */
static void expand(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        if (s[0] == '%' && s[1] == 'K') {
            for (const char *k = KEY; *k; k++)
                n += (size_t)snprintf(out + n, cap - n, "%%%02X", (unsigned char)*k);
            s++;
        } else if (n + 1 < cap) {
            out[n++] = *s;
        }
    }
    out[n] = '\0';
}

/* What the API would read of `s`: tabs dropped, %XX decoded. */
static void api_reading(char *out, const char *s, size_t len)
{
    size_t n = 0;
    char *tmp = malloc(len + 1), *t = tmp;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\t')
            *t++ = s[i];
    }
    size_t tl = (size_t)(t - tmp);
    for (size_t i = 0; i < tl; i++) {
        if (tmp[i] == '%' && i + 2 < tl && dmj_hex_value((unsigned char)tmp[i + 1]) >= 0 &&
            dmj_hex_value((unsigned char)tmp[i + 2]) >= 0) {
            out[n++] = (char)(dmj_hex_value((unsigned char)tmp[i + 1]) * 16 +
                              dmj_hex_value((unsigned char)tmp[i + 2]));
            i += 2;
        } else {
            out[n++] = tmp[i];
        }
    }
    out[n] = '\0';
    free(tmp);
}

/* True when `text` holds 6 consecutive characters of `key` past its 8th, or its first 9. */
static bool leaks(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (size_t i = 8; i + 6 <= klen; i++) {
        char w[7];
        memcpy(w, key + i, 6);
        w[6] = '\0';
        if (strstr(text, w))
            return true;
    }
    char head[10];
    memcpy(head, key, 9);
    head[9] = '\0';
    return strstr(text, head) != NULL;
}

static void redact(struct dmj_buf *out, const char *target)
{
    dmj_buf_reset(out);
    CHECK_EQ_INT(dmj_query_redact(out, target, strlen(target), "personal_api_key", 8), 0);
}

static void test_accepted_spellings(void)
{
    struct dmj_query q;
    dmj_query_init(&q, 1 << 20);
    struct dmj_buf out;
    dmj_buf_init(&out, 1 << 20);
    static char query[4096], target[4096 + sizeof PATH], read_back[8192];
    for (size_t i = 0; i < sizeof ACCEPTED / sizeof *ACCEPTED; i++) {
        expand(query, sizeof query, ACCEPTED[i]);
        /* the API reads KEY from it: the case is one the API accepts */
        CHECK_EQ_INT(dmj_query_parse(&q, query, strlen(query)), 0);
        const struct dmj_query_param *p = dmj_query_last(&q, "personal_api_key");
        CHECK(p != NULL && p->value_len == strlen(KEY) && memcmp(p->value, KEY, p->value_len) == 0);
        snprintf(target, sizeof target, "%s%s", PATH, query);
        redact(&out, target);
        api_reading(read_back, out.data, out.len);
        bool bad = leaks(out.data, KEY) || leaks(read_back, KEY) || leaks(out.data, KEY2) ||
                   leaks(read_back, KEY2);
        CHECK(!bad);
        if (bad)
            fprintf(stderr, "  case %zu: %s\n  -> %s\n", i, query, out.data);
        /* what is left is still a query the API reads without any key */
        const char *qm = strchr(out.data, '?');
        CHECK_EQ_INT(dmj_query_parse(&q, qm + 1, strlen(qm + 1)), 0);
        p = dmj_query_last(&q, "personal_api_key");
        CHECK(p != NULL && p->value_len <= 11);
    }
    dmj_buf_dispose(&out);
    dmj_query_dispose(&q);
}

struct exact_case {
    const char *target, *want;
};

static void test_exact(void)
{
    static const struct exact_case CASES[] = {
        {"/p", "/p"},
        {"/p?", "/p?"},
        {"/phx_abc?x=1", "/phx_abc?x=1"}, /* the path is not the query (the log masks key shapes) */
        {"/p?personal_api_key=" KEY, "/p?personal_api_key=phx_zpsO..."},
        {"/p?personal_api_key=" KEY "&a=b", "/p?personal_api_key=phx_zpsO...&a=b"},
        {"/p?personal_api_key=phx_a", "/p?personal_api_key=phx_a"},
        {"/p?personal_api_key=phx_abcd", "/p?personal_api_key=phx_abcd"},
        {"/p?personal_api_key=phx_abcde", "/p?personal_api_key=phx_abcd..."},
        {"/p?personal_api_key=", "/p?personal_api_key="},
        {"/p?personal_api_key", "/p?personal_api_key"},
        {"/p?personal_api_key=%70hx", "/p?personal_api_key=..."},
        {"/p?personal_api_key=ph+x", "/p?personal_api_key=ph..."},
        {"/p?personal_api_key=a&personal_api_key=" KEY,
         "/p?personal_api_key=a&personal_api_key=phx_zpsO..."},
        {"/p?personal_api\t_key=%70hx_abc&x=1", "/p?personal_api\t_key=...&x=1"},
        {"/p?personal_api_key=phx\t_abcdef", "/p?personal_api_key=phx..."},
        {"/p?personal_api_key=" KEY "#k=" KEY, "/p?personal_api_key=phx_zpsO...#k=" KEY},
        /* not the key's name, as the API reads it */
        {"/p?personal_api_keys=" KEY, "/p?personal_api_keys=" KEY},
        {"/p?personal+api_key=" KEY, "/p?personal+api_key=" KEY},
        {"/p?Personal_api_key=" KEY, "/p?Personal_api_key=" KEY},
        {"/p?personal_api_key%3D" KEY, "/p?personal_api_key%3D" KEY},
        {"/p?x=personal_api_key=" KEY, "/p?x=personal_api_key=" KEY},
        {"/p?personal_api_key;a=" KEY, "/p?personal_api_key;a=" KEY},
        {"/p#?personal_api_key=" KEY, "/p#?personal_api_key=phx_zpsO..."},
        {"/p?a?personal_api_key=" KEY, "/p?a?personal_api_key=" KEY},
    };
    struct dmj_buf out;
    dmj_buf_init(&out, 1 << 16);
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        redact(&out, CASES[i].target);
        CHECK_EQ_STR(out.data ? out.data : "", CASES[i].want);
    }
    dmj_buf_dispose(&out);
}

struct found {
    size_t n, at[4][3];
};

static int collect(void *ctx, size_t name_at, size_t value_at, size_t end)
{
    struct found *f = ctx;
    if (f->n == 4)
        return -1;
    f->at[f->n][0] = name_at;
    f->at[f->n][1] = value_at;
    f->at[f->n][2] = end;
    f->n++;
    return 0;
}

static void test_find_offsets(void)
{
    /* offsets are in the raw text: a field starts at its first byte that is not a tab and
     * ends at the '&' or '#' after it */
    static const char raw[] = "a=1&\tperso\tnal_api_key\t=v\t1&personal_api_key&x#personal_api_key=z";
    struct found f = {0};
    CHECK_EQ_INT(dmj_query_find(raw, sizeof raw - 1, "personal_api_key", collect, &f), 0);
    CHECK_EQ_INT(f.n, 2);
    CHECK_EQ_INT(f.at[0][0], 5);
    CHECK_EQ_INT(f.at[0][1], 24);
    CHECK_EQ_INT(f.at[0][2], 27);
    CHECK_EQ_INT(f.at[1][0], 28);
    CHECK_EQ_INT(f.at[1][1], 44);
    CHECK_EQ_INT(f.at[1][2], 44);
    /* the callback's code stops the search */
    struct found full = {.n = 4};
    CHECK_EQ_INT(dmj_query_find(raw, sizeof raw - 1, "personal_api_key", collect, &full), -1);
}

/* More fields than dmj_query_parse takes (a 500 at the API): every key is still cut. */
static void test_many_fields(void)
{
    size_t n = DMJ_QUERY_MAX_PARAMS + 10;
    size_t cap = n * (sizeof("personal_api_key=" KEY "&")) + 64;
    char *target = malloc(cap);
    size_t len = (size_t)snprintf(target, cap, "/p?");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(target + len, cap - len, "personal_api_key=" KEY "&");
    struct dmj_buf out;
    dmj_buf_init(&out, 2 * cap);
    redact(&out, target);
    CHECK(!leaks(out.data, KEY));
    size_t cuts = 0;
    for (const char *p = out.data; (p = strstr(p, "phx_zpsO...")) != NULL; p++)
        cuts++;
    CHECK_EQ_INT(cuts, n);
    /* too small an output buffer: an error, and the buffer as it was */
    struct dmj_buf small;
    dmj_buf_init(&small, 16);
    CHECK(dmj_query_redact(&small, target, len, "personal_api_key", 8) != 0);
    CHECK_EQ_INT(small.len, 0);
    dmj_buf_dispose(&small);
    dmj_buf_dispose(&out);
    free(target);
}

int main(void)
{
    test_accepted_spellings();
    test_exact();
    test_find_offsets();
    test_many_fields();
    return check_done();
}

/* Unit tests of query.c: request.GET parsing, links, paths and quote_plus; percent.h's decoder.
 *
 * The expected values in the tables were produced once by the real Python code on this
 * machine (Debian 12: Python 3.11 urllib.parse, Django 3.2 QueryDict/WSGIRequest/
 * build_absolute_uri, DRF 3.14 replace_query_param, gunicorn 20.1 split_request_uri and
 * unquote_to_wsgi_str), with a script that fed each raw request target through gunicorn's
 * split, Django's request and DRF's link code and printed C literals. Parse results are
 * written as urlencode(parse_qsl(...)) in field order. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "dmj/query.h"
#include "percent.h"

struct parse_case {
    const char *raw;
    size_t len;
    const char *urlencoded; /* urlencode(parse_qsl(query, keep_blank_values=True)) */
};

/* clang-format off */
static const struct parse_case PARSE[] = {
    {"", 0, ""},
    {"a", 1, "a="},
    {"a=", 2, "a="},
    {"=", 1, "="},
    {"=b", 2, "=b"},
    {"a=b&c=d", 7, "a=b&c=d"},
    {"a=1&a=2", 7, "a=1&a=2"},
    {"&&a&&", 5, "a="},
    {"a+b=c+d", 7, "a+b=c+d"},
    {"a%20b=%2B", 9, "a+b=%2B"},
    {"%zz=%4", 6, "%25zz=%254"},
    {"%%41", 4, "%25A="},
    {"x=%C3%A9", 8, "x=%C3%A9"},
    {"x=%C3", 5, "x=%EF%BF%BD"},
    {"x=%E2%82", 8, "x=%EF%BF%BD"},
    {"x=%ff%fe", 8, "x=%EF%BF%BD%EF%BF%BD"},
    {"x=\303\251", 4, "x=%C3%A9"},
    {"x=\351", 3, "x=%C3%A9"},
    {"x=\303\251&y=\351", 8, "x=%C3%83%C2%A9&y=%C3%A9"},
    {"x=%C3\251", 6, "x=%EF%BF%BD%C2%A9"},
    {"k=%E2\303\251", 7, "k=%EF%BF%BD%C3%A9"},
    {"a=b;c=d", 7, "a=b%3Bc%3Dd"},
    {"a=b#c=d", 7, "a=b"},
    {"a\011=b\011&\011", 7, "a=b"},
    {"%00=%00", 7, "%00=%00"},
    {"x=%ED%A0%80", 11, "x=%EF%BF%BD%EF%BF%BD%EF%BF%BD"},
    {"x=%F0%90%80%80", 14, "x=%F0%90%80%80"},
    {"x=%F4%90%80%80", 14, "x=%EF%BF%BD%EF%BF%BD%EF%BF%BD%EF%BF%BD"},
    {"x=%E0%80%80", 11, "x=%EF%BF%BD%EF%BF%BD%EF%BF%BD"},
    {"x=\355\240\200", 5, "x=%C3%AD%C2%A0%C2%80"},
    {"==&=a=b", 7, "=%3D&=a%3Db"},
    {"x=%C0%AF", 8, "x=%EF%BF%BD%EF%BF%BD"},
    {"x=%2", 4, "x=%252"},
    {"\377\376=1", 4, "%C3%BF%C3%BE=1"},
    {"a=%\01141", 6, "a=A"},
};
/* clang-format on */

struct link_case {
    const char *raw_path;
    const char *raw_query;
    const char *decoded_path; /* Django's request.path */
    const char *link;         /* replace_query_param(build_absolute_uri(), 'cursor', 'CUR') */
};

/* clang-format off */
static const struct link_case LINK[] = {
    {"/api/environments/1/data_modeling_jobs/", "", "/api/environments/1/data_modeling_jobs/", "http://h:1/api/environments/1/data_modeling_jobs/\077cursor=CUR"},
    {"/api/environments/1/data_modeling_jobs/", "limit=5", "/api/environments/1/data_modeling_jobs/", "http://h:1/api/environments/1/data_modeling_jobs/\077cursor=CUR&limit=5"},
    {"/api/environments/1/data_modeling_jobs/", "cursor=abc&limit=5&cursor=d", "/api/environments/1/data_modeling_jobs/", "http://h:1/api/environments/1/data_modeling_jobs/\077cursor=CUR&limit=5"},
    {"/api/environments/1/data_modeling_jobs/", "z=1&a=2&a=1&b&%C3%A9=x&A=3&_=4&~=5", "/api/environments/1/data_modeling_jobs/", "http://h:1/api/environments/1/data_modeling_jobs/\077A=3&_=4&a=2&a=1&b=&cursor=CUR&z=1&~=5&%C3%A9=x"},
    {"/api/environments/1/data_modeling_jobs/", "x=\303\251", "/api/environments/1/data_modeling_jobs/", "http://h:1/api/environments/1/data_modeling_jobs/\077cursor=CUR&x=%C3%83%C2%A9"},
    {"/api/environments/1/data_modeling_jobs/", "x=\351", "/api/environments/1/data_modeling_jobs/", "http://h:1/api/environments/1/data_modeling_jobs/\077cursor=CUR&x=%C3%A9"},
    {"/api/environments/1/data_modeling_jobs/", "x=%C3%A9&y=a+b%2Bc%20d", "/api/environments/1/data_modeling_jobs/", "http://h:1/api/environments/1/data_modeling_jobs/\077cursor=CUR&x=%C3%A9&y=a+b%2Bc+d"},
    {"/api/environments/1/data_modeling_jobs/", "q=a;b&r=%zz&s=!*()'~-._", "/api/environments/1/data_modeling_jobs/", "http://h:1/api/environments/1/data_modeling_jobs/\077cursor=CUR&q=a%3Bb&r=%25zz&s=%21%2A%28%29%27~-._"},
    {"/api/environments/1/data_modeling_jobs/", "a=1#frag", "/api/environments/1/data_modeling_jobs/", "http://h:1/api/environments/1/data_modeling_jobs/\077a=1&cursor=CUR"},
    {"/api/environments/%201%20/data_modeling_jobs", "limit=1", "/api/environments/ 1 /data_modeling_jobs", "http://h:1/api/environments/%201%20/data_modeling_jobs\077cursor=CUR&limit=1"},
    {"/api/projects/@current/data_modeling_jobs", "k=%00&saved_query_id=%7B1%7D", "/api/projects/@current/data_modeling_jobs", "http://h:1/api/projects/@current/data_modeling_jobs\077cursor=CUR&k=%00&saved_query_id=%7B1%7D"},
    {"/a%2Fb/c%3Fd/e%23f/%C3%A9/+/;=/%7e%5B/\303\251", "x=\303\251&x=\351", "/a/b/c\077d/e#f/\303\251/+/;=/~[/\303\203\302\251", "http://h:1/a/b/c%3Fd/e%23f/%C3%A9/+/%3B%3D/~%5B/%C3%83%C2%A9\077cursor=CUR&x=%C3%83%C2%A9&x=%C3%A9"},
};
/* clang-format on */

/* The parsed fields written back as urlencode() would. */
static void render(const struct dmj_query *q, struct dmj_buf *out)
{
    dmj_buf_reset(out);
    for (unsigned i = 0; i < q->n; i++) {
        int rc = 0;
        if (i)
            rc = dmj_buf_addc(out, '&');
        if (!rc)
            rc = dmj_query_add_quoted(out, q->params[i].key, q->params[i].key_len);
        if (!rc)
            rc = dmj_buf_addc(out, '=');
        if (!rc)
            rc = dmj_query_add_quoted(out, q->params[i].value, q->params[i].value_len);
        CHECK_EQ_INT(rc, 0);
        CHECK(q->params[i].key[q->params[i].key_len] == '\0');
        CHECK(q->params[i].value[q->params[i].value_len] == '\0');
    }
}

static void test_parse_table(void)
{
    struct dmj_query q;
    struct dmj_buf out;
    dmj_query_init(&q, 4096);
    dmj_buf_init(&out, 4096);
    for (size_t i = 0; i < sizeof PARSE / sizeof PARSE[0]; i++) {
        int rc = dmj_query_parse(&q, PARSE[i].raw, PARSE[i].len);
        CHECK_EQ_INT(rc, 0);
        render(&q, &out);
        const char *got = out.len ? out.data : "";
        if (strcmp(got, PARSE[i].urlencoded) != 0)
            fprintf(stderr, "parse case %zu\n", i);
        CHECK_EQ_STR(got, PARSE[i].urlencoded);
    }
    dmj_buf_dispose(&out);
    dmj_query_dispose(&q);
}

static void test_last(void)
{
    struct dmj_query q;
    dmj_query_init(&q, 1024);
    const char *raw = "limit=5&cursor=a&x&limit=7&cursor=&%6Cimit=9";
    CHECK_EQ_INT(dmj_query_parse(&q, raw, strlen(raw)), 0);
    CHECK_EQ_INT(q.n, 6);
    const struct dmj_query_param *p = dmj_query_last(&q, "limit");
    CHECK(p != NULL);
    if (p)
        CHECK_EQ_STR(p->value, "9");
    p = dmj_query_last(&q, "cursor");
    CHECK(p != NULL);
    if (p)
        CHECK_EQ_INT(p->value_len, 0);
    p = dmj_query_last(&q, "x");
    CHECK(p != NULL && p->value_len == 0);
    CHECK(dmj_query_last(&q, "saved_query_id") == NULL);
    CHECK(dmj_query_last(&q, "limi") == NULL);
    /* A key with a NUL inside is not the same key as its prefix. */
    raw = "a%00b=1";
    CHECK_EQ_INT(dmj_query_parse(&q, raw, strlen(raw)), 0);
    CHECK(dmj_query_last(&q, "a") == NULL);
    CHECK_EQ_INT(q.params[0].key_len, 3);
    /* Re-parsing replaces everything. */
    CHECK_EQ_INT(dmj_query_parse(&q, "", 0), 0);
    CHECK_EQ_INT(q.n, 0);
    CHECK(dmj_query_last(&q, "a") == NULL);
    CHECK_EQ_INT(dmj_query_parse(&q, NULL, 0), 0);
    CHECK_EQ_INT(q.n, 0);
    dmj_query_dispose(&q);
}

static void test_limits(void)
{
    struct dmj_query q;
    char raw[4 * DMJ_QUERY_MAX_PARAMS + 8];
    dmj_query_init(&q, 1 << 16);
    /* 256 fields pass (empty ones count, as in Python's max_num_fields), 257 do not. */
    size_t n = 0;
    for (int i = 0; i < DMJ_QUERY_MAX_PARAMS - 1; i++)
        raw[n++] = '&';
    raw[n++] = 'a';
    CHECK_EQ_INT(dmj_query_parse(&q, raw, n), 0);
    CHECK_EQ_INT(q.n, 1);
    raw[n++] = '&';
    CHECK_EQ_INT(dmj_query_parse(&q, raw, n), DMJ_ETOOBIG);
    CHECK_EQ_INT(q.n, 0);
    n = 0;
    for (int i = 0; i < DMJ_QUERY_MAX_PARAMS; i++) {
        raw[n++] = 'k';
        raw[n++] = '&';
    }
    CHECK_EQ_INT(dmj_query_parse(&q, raw, n - 1), 0);
    CHECK_EQ_INT(q.n, DMJ_QUERY_MAX_PARAMS);
    CHECK_EQ_INT(dmj_query_parse(&q, raw, n), DMJ_ETOOBIG);
    dmj_query_dispose(&q);

    /* Storage bound: Latin-1 bytes double in size. */
    dmj_query_init(&q, 16);
    CHECK_EQ_INT(dmj_query_parse(&q, "a=bcdef", 7), 0);
    CHECK_EQ_INT(dmj_query_parse(&q, "a=\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9", 10), DMJ_ETOOBIG);
    CHECK_EQ_INT(q.n, 0);
    dmj_query_dispose(&q);
}

static void test_links(void)
{
    struct dmj_query q;
    struct dmj_buf path, out;
    dmj_query_init(&q, 4096);
    dmj_buf_init(&path, 4096);
    dmj_buf_init(&out, 4096);
    for (size_t i = 0; i < sizeof LINK / sizeof LINK[0]; i++) {
        const struct link_case *c = &LINK[i];
        /* The server splits the target at the first '?'. */
        dmj_buf_reset(&path);
        CHECK_EQ_INT(dmj_query_decode_path(c->raw_path, strlen(c->raw_path), &path), 0);
        CHECK_EQ_STR(path.len ? path.data : "", c->decoded_path);
        CHECK_EQ_INT(dmj_query_parse(&q, c->raw_query, strlen(c->raw_query)), 0);
        dmj_buf_reset(&out);
        CHECK_EQ_INT(dmj_buf_adds(&out, "<"), 0);
        CHECK_EQ_INT(dmj_query_build_link(&out, false, "h:1", 3, path.data, path.len, &q, "CUR", 3),
                     0);
        CHECK_EQ_STR(out.data + 1, c->link);
        CHECK(out.data[0] == '<');
    }
    /* https, and a cursor value that needs quoting (base64 '+', '/', '='). */
    CHECK_EQ_INT(dmj_query_parse(&q, "limit=2", 7), 0);
    dmj_buf_reset(&out);
    CHECK_EQ_INT(dmj_query_build_link(&out, true, "example.com", 11, "/p", 2, &q, "a+/b=", 5), 0);
    CHECK_EQ_STR(out.data, "https://example.com/p?cursor=a%2B%2Fb%3D&limit=2");
    /* A link that does not fit leaves the buffer as it was. */
    struct dmj_buf small;
    dmj_buf_init(&small, 20);
    CHECK_EQ_INT(dmj_buf_adds(&small, "x"), 0);
    CHECK_EQ_INT(dmj_query_build_link(&small, true, "example.com", 11, "/p", 2, &q, "a", 1),
                 DMJ_ETOOBIG);
    CHECK_EQ_INT(small.len, 1);
    CHECK_EQ_STR(small.data, "x");
    dmj_buf_dispose(&small);
    /* DRF's replace_query_param and remove_query_param (the offset generation's links):
     * every value of a set key goes, the others keep their order, keys sorted. */
    CHECK_EQ_INT(dmj_query_parse(&q, "offset=3&z=1&limit=x&a=%C3%A9&offset=4&b&limit=9", 48), 0);
    struct dmj_query_set set[2] = {{"limit", "10", 2}, {"offset", "13", 2}};
    dmj_buf_reset(&out);
    CHECK_EQ_INT(dmj_query_build_link_set(&out, false, "h", 1, "/p/", 3, &q, set, 2), 0);
    CHECK_EQ_STR(out.data, "http://h/p/?a=%C3%A9&b=&limit=10&offset=13&z=1");
    set[1].value = NULL;
    dmj_buf_reset(&out);
    CHECK_EQ_INT(dmj_query_build_link_set(&out, false, "h", 1, "/p/", 3, &q, set, 2), 0);
    CHECK_EQ_STR(out.data, "http://h/p/?a=%C3%A9&b=&limit=10&z=1");
    CHECK_EQ_INT(dmj_query_build_link_set(&out, false, "h", 1, "/", 1, &q, set, 5), DMJ_EINVAL);
    dmj_buf_dispose(&out);
    dmj_buf_dispose(&path);
    dmj_query_dispose(&q);
}

static void test_quote(void)
{
    struct dmj_buf out;
    dmj_buf_init(&out, 256);
    /* quote_plus('AZaz09_.-~ +/:%\x00\xc3\xa9') */
    CHECK_EQ_INT(dmj_query_add_quoted(&out, "AZaz09_.-~ +/:%\0\xc3\xa9", 18), 0);
    CHECK_EQ_STR(out.data, "AZaz09_.-~+%2B%2F%3A%25%00%C3%A9");
    dmj_buf_dispose(&out);
}

static void test_decode_path(void)
{
    struct dmj_buf out;
    dmj_buf_init(&out, 64);
    /* Invalid UTF-8 after decoding becomes U+FFFD (the header's rule; Django re-percents). */
    CHECK_EQ_INT(dmj_query_decode_path("/a%FFb%E2%82", 12, &out), 0);
    CHECK_EQ_STR(out.data, "/a\xef\xbf\xbd"
                           "b\xef\xbf\xbd");
    dmj_buf_reset(&out);
    /* gunicorn: tabs removed, '#' ends the path. */
    CHECK_EQ_INT(dmj_query_decode_path("/a\tb#c", 6, &out), 0);
    CHECK_EQ_STR(out.data, "/ab");
    dmj_buf_dispose(&out);
}

/* dmj_percent_next over `s`: the bytes out, '!' after each escaped one. */
static void percent_decoded(const char *s, bool plus, char *out)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        bool escaped;
        *out++ = (char)dmj_percent_next((const unsigned char *)s, n, &i, plus, &escaped);
        if (escaped)
            *out++ = '!';
    }
    *out = '\0';
}

static void test_percent_next(void)
{
    static const struct {
        const char *in;
        bool plus;
        const char *out;
    } cases[] = {
        {"%41%62", false, "A!b!"}, {"%4", false, "%4"},     {"%4g1", false, "%4g1"},
        {"%%41", false, "%A!"},    {"a+%2B", true, "a +!"}, {"a+%2b", false, "a++!"},
        {"%", true, "%"},          {"%2", true, "%2"},      {"x%7e", true, "x~!"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char out[32];
        percent_decoded(cases[c].in, cases[c].plus, out);
        CHECK_EQ_STR(out, cases[c].out);
    }
    /* the escape's byte as it is, NUL and bytes >= 0x80 included */
    size_t i = 0;
    CHECK_EQ_INT(dmj_percent_next((const unsigned char *)"%00", 3, &i, true, NULL), 0);
    CHECK_EQ_INT((int)i, 3);
    i = 0;
    CHECK_EQ_INT(dmj_percent_next((const unsigned char *)"%FF", 3, &i, true, NULL), 0xff);
    /* an escape cut by the end of the string is not one */
    i = 0;
    CHECK_EQ_INT(dmj_percent_next((const unsigned char *)"%41", 2, &i, true, NULL), '%');
    CHECK_EQ_INT((int)i, 1);
}

int main(void)
{
    test_parse_table();
    test_last();
    test_limits();
    test_links();
    test_quote();
    test_decode_path();
    test_percent_next();
    return check_done();
}

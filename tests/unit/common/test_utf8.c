/* Unit tests of strict UTF-8: Markus Kuhn's decoder stress cases (UTF-8-test.txt, sections 2
 * to 5) through dmj_utf8_valid and through the importer's two parsers, \u escapes and their
 * surrogate pairs, and `dmj_store_verify` finding invalid text stored by an older version. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tmpdir.h"
#include "dmj/error.h"
#include "dmj/import.h"
#include "dmj/store.h"
#include "utf8.h"

struct kuhn {
    const char *name; /* the section of UTF-8-test.txt */
    const char *bytes;
    size_t len;
    bool valid; /* by RFC 3629 */
};

#define K(name, s, valid) {name, s, sizeof s - 1, valid}

static const struct kuhn cases[] = {
    /* 1 Some correct UTF-8 text */
    K("1 kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true),
    /* 2.1 First possible sequence of a certain length */
    K("2.1.1 1 byte U+0000", "\x00", true),
    K("2.1.2 2 bytes U+0080", "\xc2\x80", true),
    K("2.1.3 3 bytes U+0800", "\xe0\xa0\x80", true),
    K("2.1.4 4 bytes U+10000", "\xf0\x90\x80\x80", true),
    K("2.1.5 5 bytes U-00200000", "\xf8\x88\x80\x80\x80", false),
    K("2.1.6 6 bytes U-04000000", "\xfc\x84\x80\x80\x80\x80", false),
    /* 2.2 Last possible sequence of a certain length */
    K("2.2.1 1 byte U+007F", "\x7f", true),
    K("2.2.2 2 bytes U+07FF", "\xdf\xbf", true),
    K("2.2.3 3 bytes U+FFFF", "\xef\xbf\xbf", true),
    K("2.2.4 4 bytes U-001FFFFF", "\xf7\xbf\xbf\xbf", false),
    K("2.2.5 5 bytes U-03FFFFFF", "\xfb\xbf\xbf\xbf\xbf", false),
    K("2.2.6 6 bytes U-7FFFFFFF", "\xfd\xbf\xbf\xbf\xbf\xbf", false),
    /* 2.3 Other boundary conditions */
    K("2.3.1 U+D7FF", "\xed\x9f\xbf", true),
    K("2.3.2 U+E000", "\xee\x80\x80", true),
    K("2.3.3 U+FFFD", "\xef\xbf\xbd", true),
    K("2.3.4 U+10FFFF", "\xf4\x8f\xbf\xbf", true),
    K("2.3.5 U+110000", "\xf4\x90\x80\x80", false),
    /* 3.1 Unexpected continuation bytes */
    K("3.1.1 first continuation byte 0x80", "\x80", false),
    K("3.1.2 last continuation byte 0xbf", "\xbf", false),
    K("3.1.3 2 continuation bytes", "\x80\xbf", false),
    K("3.1.4 3 continuation bytes", "\x80\xbf\x80", false),
    K("3.1.5 4 continuation bytes", "\x80\xbf\x80\xbf", false),
    K("3.1.6 5 continuation bytes", "\x80\xbf\x80\xbf\x80", false),
    K("3.1.7 6 continuation bytes", "\x80\xbf\x80\xbf\x80\xbf", false),
    K("3.1.8 7 continuation bytes", "\x80\xbf\x80\xbf\x80\xbf\x80", false),
    /* 3.1.9 (all 64 continuation bytes), 3.2 (lonely start characters) and 3.4 are built
     * in main() */
    /* 3.3 Sequences with last continuation byte missing */
    K("3.3.1 2-byte sequence, last byte missing (U+0000)", "\xc0", false),
    K("3.3.2 3-byte sequence, last byte missing (U+0000)", "\xe0\x80", false),
    K("3.3.3 4-byte sequence, last byte missing (U+0000)", "\xf0\x80\x80", false),
    K("3.3.4 5-byte sequence, last byte missing (U+0000)", "\xf8\x80\x80\x80", false),
    K("3.3.5 6-byte sequence, last byte missing (U+0000)", "\xfc\x80\x80\x80\x80", false),
    K("3.3.6 2-byte sequence, last byte missing (U+07FF)", "\xdf", false),
    K("3.3.7 3-byte sequence, last byte missing (U+FFFF)", "\xef\xbf", false),
    K("3.3.8 4-byte sequence, last byte missing (U-001FFFFF)", "\xf7\xbf\xbf", false),
    K("3.3.9 5-byte sequence, last byte missing (U-03FFFFFF)", "\xfb\xbf\xbf\xbf", false),
    K("3.3.10 6-byte sequence, last byte missing (U-7FFFFFFF)", "\xfd\xbf\xbf\xbf\xbf", false),
    /* 3.3 again with a valid 3-byte character cut short that RFC 3629 allows whole */
    K("3.3 U+20AC with its last byte missing", "\xe2\x82", false),
    K("3.3 U+1F600 with its last byte missing", "\xf0\x9f\x98", false),
    /* 3.5 Impossible bytes */
    K("3.5.1 fe", "\xfe", false),
    K("3.5.2 ff", "\xff", false),
    K("3.5.3 fe fe ff ff", "\xfe\xfe\xff\xff", false),
    /* 4.1 Examples of an overlong ASCII character (U+002F) */
    K("4.1.1 c0 af", "\xc0\xaf", false),
    K("4.1.2 e0 80 af", "\xe0\x80\xaf", false),
    K("4.1.3 f0 80 80 af", "\xf0\x80\x80\xaf", false),
    K("4.1.4 f8 80 80 80 af", "\xf8\x80\x80\x80\xaf", false),
    K("4.1.5 fc 80 80 80 80 af", "\xfc\x80\x80\x80\x80\xaf", false),
    /* 4.2 Maximum overlong sequences */
    K("4.2.1 U+007F as c1 bf", "\xc1\xbf", false),
    K("4.2.2 U+07FF as e0 9f bf", "\xe0\x9f\xbf", false),
    K("4.2.3 U+FFFF as f0 8f bf bf", "\xf0\x8f\xbf\xbf", false),
    K("4.2.4 U-001FFFFF as f8 87 bf bf bf", "\xf8\x87\xbf\xbf\xbf", false),
    K("4.2.5 U-03FFFFFF as fc 83 bf bf bf bf", "\xfc\x83\xbf\xbf\xbf\xbf", false),
    /* 4.3 Overlong representation of the NUL character */
    K("4.3.1 c0 80", "\xc0\x80", false),
    K("4.3.2 e0 80 80", "\xe0\x80\x80", false),
    K("4.3.3 f0 80 80 80", "\xf0\x80\x80\x80", false),
    K("4.3.4 f8 80 80 80 80", "\xf8\x80\x80\x80\x80", false),
    K("4.3.5 fc 80 80 80 80 80", "\xfc\x80\x80\x80\x80\x80", false),
    /* 5.1 Single UTF-16 surrogates */
    K("5.1.1 U+D800", "\xed\xa0\x80", false),
    K("5.1.2 U+DB7F", "\xed\xad\xbf", false),
    K("5.1.3 U+DB80", "\xed\xae\x80", false),
    K("5.1.4 U+DBFF", "\xed\xaf\xbf", false),
    K("5.1.5 U+DC00", "\xed\xb0\x80", false),
    K("5.1.6 U+DF80", "\xed\xbe\x80", false),
    K("5.1.7 U+DFFF", "\xed\xbf\xbf", false),
    /* 5.2 Paired UTF-16 surrogates */
    K("5.2.1 U+D800 U+DC00", "\xed\xa0\x80\xed\xb0\x80", false),
    K("5.2.2 U+D800 U+DFFF", "\xed\xa0\x80\xed\xbf\xbf", false),
    K("5.2.3 U+DB7F U+DC00", "\xed\xad\xbf\xed\xb0\x80", false),
    K("5.2.4 U+DB7F U+DFFF", "\xed\xad\xbf\xed\xbf\xbf", false),
    K("5.2.5 U+DB80 U+DC00", "\xed\xae\x80\xed\xb0\x80", false),
    K("5.2.6 U+DB80 U+DFFF", "\xed\xae\x80\xed\xbf\xbf", false),
    K("5.2.7 U+DBFF U+DC00", "\xed\xaf\xbf\xed\xb0\x80", false),
    K("5.2.8 U+DBFF U+DFFF", "\xed\xaf\xbf\xed\xbf\xbf", false),
    /* 5.3 Noncharacter code positions: not malformed, RFC 3629 encodes them */
    K("5.3.1 U+FFFE", "\xef\xbf\xbe", true),
    K("5.3.2 U+FFFF", "\xef\xbf\xbf", true),
    K("5.3.3 U+FDD0", "\xef\xb7\x90", true),
    K("5.3.3 U+FDEF", "\xef\xb7\xaf", true),
    K("5.3.4 U+1FFFE", "\xf0\x9f\xbf\xbe", true),
    K("5.3.4 U+10FFFF", "\xf4\x8f\xbf\xbf", true),
};

/* ---- the importer ------------------------------------------------------------------ */

struct got {
    unsigned records;
    char error[256]; /* the job's error, as stored */
    size_t error_len;
};

static int on_record(void *ctx, const struct dmj_import_record *rec)
{
    struct got *g = ctx;
    g->records++;
    if (rec->kind == DMJ_IMPORT_JOB && rec->u.job.error.ptr &&
        rec->u.job.error.len < sizeof g->error) {
        memcpy(g->error, rec->u.job.error.ptr, rec->u.job.error.len);
        g->error_len = rec->u.job.error.len;
    }
    return 0;
}

/* Imports `doc` fed `step` bytes at a time (0: at once); returns the import's result and
 * fills `e` with its error. */
static int import(const char *doc, size_t len, size_t step, bool pg_copy, struct got *g,
                  struct dmj_import_error *e)
{
    struct dmj_import_options o = {.record = on_record, .ctx = g, .pg_copy = pg_copy};
    struct dmj_import *imp;
    memset(g, 0, sizeof *g);
    if (dmj_import_new(&o, &imp) != 0)
        return -1;
    int rc = 0;
    if (step == 0)
        step = len;
    for (size_t off = 0; off < len && rc == 0; off += step)
        rc = dmj_import_feed(imp, doc + off, len - off < step ? len - off : step);
    if (rc == 0)
        rc = dmj_import_finish(imp);
    *e = *dmj_import_last_error(imp);
    dmj_import_free(imp);
    return rc;
}

#define JOB_HEAD                                                                           \
    "{\"id\":\"6e8d0d6c-1111-4111-8111-000000000001\",\"team_id\":1,\"status\":\"Failed\","  \
    "\"created_at\":\"2024-05-01T10:00:00Z\",\"error\":\""

/* The JSON string text `s` (between the quotes) as a job's error: on one line (the fast
 * path), inside a two-line array (yajl), and fed a byte at a time (strings and characters
 * split between feeds). A valid one is stored as `want`; an invalid one is refused as
 * "error: invalid UTF-8" on the line of the value. */
static void check_import(const char *name, const char *s, size_t len, bool valid,
                         const char *want, size_t want_len)
{
    static const char tail[] = "\"}\n";
    char doc[1024];
    size_t head = sizeof JOB_HEAD - 1;
    if (head + len + sizeof tail + 4 > sizeof doc)
        abort();
    for (int form = 0; form < 3; form++) {
        size_t n = 0;
        if (form == 1) {
            memcpy(doc, "[\n", 2);
            n = 2;
        }
        memcpy(doc + n, JOB_HEAD, head);
        n += head;
        memcpy(doc + n, s, len);
        n += len;
        memcpy(doc + n, tail, sizeof tail - 1);
        n += sizeof tail - 1;
        if (form == 1) {
            memcpy(doc + n - 1, "\n]\n", 3);
            n += 2;
        }
        struct got g;
        struct dmj_import_error e;
        int rc = import(doc, n, form == 2 ? 1 : 0, false, &g, &e);
        if (valid) {
            bool ok = rc == 0 && g.records == 1 && g.error_len == want_len &&
                      memcmp(g.error, want, want_len) == 0;
            CHECK(ok);
            if (!ok)
                fprintf(stderr, "  %s (form %d): rc %d, %s: %s\n", name, form, rc, e.field,
                        e.reason);
        } else {
            bool ok = rc == DMJ_EINVAL && g.records == 0 && strcmp(e.field, "error") == 0 &&
                      strcmp(e.reason, "invalid UTF-8") == 0 && e.line == (form == 1 ? 2 : 1);
            CHECK(ok);
            if (!ok)
                fprintf(stderr, "  %s (form %d): rc %d, records %u, line %llu, %s: %s\n", name,
                        form, rc, g.records, (unsigned long long)e.line, e.field, e.reason);
        }
    }
}

static void check_case(const char *name, const char *s, size_t len, bool valid)
{
    bool got = dmj_utf8_valid(s, len);
    CHECK(got == valid);
    if (got != valid)
        fprintf(stderr, "  %s: dmj_utf8_valid says %s\n", name, got ? "valid" : "invalid");
    /* JSON strings cannot hold a raw control character, whatever its encoding */
    if (memchr(s, '\0', len) == NULL)
        check_import(name, s, len, valid, s, len);
}

static void test_kuhn(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(cases[i].name, cases[i].bytes, cases[i].len, cases[i].valid);

    char buf[256];
    size_t n = 0;
    /* 3.1.9 Sequence of all 64 possible continuation bytes (0x80-0xbf) */
    for (unsigned c = 0x80; c <= 0xbf; c++)
        buf[n++] = (char)c;
    check_case("3.1.9 all 64 continuation bytes", buf, n, false);
    /* 3.2.1-3.2.5 Lonely start characters, each followed by a space (c0-df, e0-ef, f0-f7,
     * f8-fb, fc-fd), every lead alone and all of a group together */
    static const struct {
        const char *name;
        unsigned lo, hi;
    } lonely[] = {{"3.2.1 2-byte leads + space", 0xc0, 0xdf},
                  {"3.2.2 3-byte leads + space", 0xe0, 0xef},
                  {"3.2.3 4-byte leads + space", 0xf0, 0xf7},
                  {"3.2.4 5-byte leads + space", 0xf8, 0xfb},
                  {"3.2.5 6-byte leads + space", 0xfc, 0xfd}};
    for (size_t i = 0; i < sizeof lonely / sizeof lonely[0]; i++) {
        n = 0;
        for (unsigned c = lonely[i].lo; c <= lonely[i].hi; c++) {
            char one[2] = {(char)c, ' '};
            check_case(lonely[i].name, one, 2, false);
            buf[n++] = (char)c;
            buf[n++] = ' ';
        }
        check_case(lonely[i].name, buf, n, false);
    }
    /* 3.4 Concatenation of incomplete sequences: the ten of 3.3 */
    n = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (strncmp(cases[i].name, "3.3.", 4) == 0) {
            memcpy(buf + n, cases[i].bytes, cases[i].len);
            n += cases[i].len;
        }
    }
    CHECK_EQ_INT(n, 30);
    check_case("3.4 concatenated incomplete sequences", buf, n, false);
    /* every valid case once more after ASCII and between ASCII, past the 8-byte skip */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(buf, "abcdefghijk", 11);
        memcpy(buf + 11, cases[i].bytes, cases[i].len);
        memcpy(buf + 11 + cases[i].len, "lmnopqrstu", 10);
        CHECK(dmj_utf8_valid(buf, 21 + cases[i].len) == cases[i].valid);
        CHECK(dmj_utf8_valid(buf, 11 + cases[i].len) == cases[i].valid);
    }
    CHECK(dmj_utf8_valid("", 0));
}

/* \u escapes: surrogates only as a high-low pair. */
static void test_escapes(void)
{
    static const struct {
        const char *json; /* between the quotes */
        const char *want; /* NULL: refused */
    } esc[] = {
        {"\\ud83d\\ude00", "\xf0\x9f\x98\x80"},
        {"a\\uD83D\\uDE00b", "a\xf0\x9f\x98\x80" "b"},
        {"\\ud800\\udc00", "\xf0\x90\x80\x80"},
        {"\\udbff\\udfff", "\xf4\x8f\xbf\xbf"},
        {"\\u00e9\\u20ac\\uffff", "\xc3\xa9\xe2\x82\xac\xef\xbf\xbf"},
        {"\\ud7ff\\ue000", "\xed\x9f\xbf\xee\x80\x80"},
        {"\\udc00", NULL},
        {"x\\udfff", NULL},
        {"\\ud800", NULL},
        {"\\ud800x", NULL},
        {"\\ud800\\n", NULL},
        {"\\ud800\\u0041", NULL},
        {"\\ud800\\ud800", NULL},
        {"\\ude00\\ud83d", NULL},
        {"\\ud83d\\ude00\\ude00", NULL},
        {"\\ud800\xc3\xa9", NULL},
        {"\\u00e9\xc0\xaf", NULL},
    };
    for (size_t i = 0; i < sizeof esc / sizeof esc[0]; i++)
        check_import(esc[i].json, esc[i].json, strlen(esc[i].json), esc[i].want != NULL,
                     esc[i].want, esc[i].want ? strlen(esc[i].want) : 0);
}

/* Where no field takes the string: a key, an ignored value, a nested value; and a field of
 * an identity, a list element; --pg-copy's own escapes. */
static void test_other_places(void)
{
    static const struct {
        const char *doc;
        const char *field;
        unsigned line;
    } bad[] = {
        {JOB_HEAD "x\",\"\xc0\xaf\":1}\n", "json", 1},
        {JOB_HEAD "x\",\"note\":\"\\udc00\"}\n", "json", 1},
        {JOB_HEAD "x\",\"meta\":{\"a\":[\"\xed\xa0\x80\"]}}\n", "json", 1},
        {"{\"next\":\"\\ud800\",\"results\":[]}\n", "json", 1},
        {"{\"teams\":[\n{\"id\":1,\"organization_id\":\"4ab6e06e-9625-47ed-89ab-b3f56382b938\","
         "\"name\":\"\xf4\x90\x80\x80\"}]}\n",
         "name", 2},
        {"{\"kind\":\"personal_api_key\",\"id\":\"k\",\"user_id\":1,\"value\":\"phx_1\","
         "\"scopes\":[\"a\",\"\\udc00\"]}\n",
         "scopes", 1},
        {"{\"kind\":\"personal_api_key\",\"id\":\"\xe0\x80\xaf\",\"user_id\":1,"
         "\"value\":\"phx_1\"}\n",
         "id", 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (size_t step = 0; step <= 1; step++) {
            struct got g;
            struct dmj_import_error e;
            int rc = import(bad[i].doc, strlen(bad[i].doc), step, false, &g, &e);
            bool ok = rc == DMJ_EINVAL && g.records == 0 && strcmp(e.field, bad[i].field) == 0 &&
                      strcmp(e.reason, "invalid UTF-8") == 0 && e.line == bad[i].line;
            CHECK(ok);
            if (!ok)
                fprintf(stderr, "  other place %zu: rc %d, line %llu, %s: %s\n", i, rc,
                        (unsigned long long)e.line, e.field, e.reason);
        }
    }
    /* COPY text: \xc0\xaf and \355\240\200 are the raw bytes; \\udc00 is JSON's escape */
    static const char *copy[] = {JOB_HEAD "\\xc0\\xaf\"}\n", JOB_HEAD "\\355\\240\\200\"}\n",
                                 JOB_HEAD "\\\\udc00\"}\n"};
    for (size_t i = 0; i < sizeof copy / sizeof copy[0]; i++) {
        struct got g;
        struct dmj_import_error e;
        int rc = import(copy[i], strlen(copy[i]), 0, true, &g, &e);
        CHECK(rc == DMJ_EINVAL && g.records == 0 && strcmp(e.field, "error") == 0 &&
              strcmp(e.reason, "invalid UTF-8") == 0);
    }
    struct got g;
    struct dmj_import_error e;
    const char *pair = JOB_HEAD "\\\\ud83d\\\\ude00\\xf0\\x9f\\x92\\xa5\"}\n";
    CHECK_EQ_INT(import(pair, strlen(pair), 0, true, &g, &e), 0);
    CHECK(g.records == 1 && g.error_len == 8 &&
          memcmp(g.error, "\xf0\x9f\x98\x80\xf0\x9f\x92\xa5", 8) == 0);
}

/* A store written by an older version may hold invalid text: verify names each record. */
static void test_verify(void)
{
    char dir[64];
    if (tmpdir_make("dmj_test_utf8.", dir, sizeof dir) != 0)
        abort();
    struct dmj_store *s;
    CHECK_EQ_INT(dmj_store_open(dir, 0, 1 << 24, &s), 0);
    if (!s)
        return;
    struct dmj_write *w;
    CHECK_EQ_INT(dmj_write_begin(s, &w), 0);
    struct dmj_job j = {.team_id = 1, .status = DMJ_STATUS_FAILED, .created_at = 1};
    j.id[15] = 1;
    j.error = (struct dmj_str){"fine \xf0\x9f\x92\xa5", 9};
    CHECK_EQ_INT(dmj_write_job(w, &j), 0);
    j.id[15] = 2;
    j.error = (struct dmj_str){"over\xc0\xaflong", 10};
    CHECK_EQ_INT(dmj_write_job(w, &j), 0);
    j.id[15] = 3;
    j.error = (struct dmj_str){"ok", 2};
    j.workflow_id = (struct dmj_str){"\xed\xa0\x80", 3};
    CHECK_EQ_INT(dmj_write_job(w, &j), 0);
    struct dmj_team t = {.id = 4, .project_id = 4, .name = {"\xf4\x90\x80\x80", 4}};
    CHECK_EQ_INT(dmj_write_team(w, &t), 0);
    CHECK_EQ_INT(dmj_write_commit(w, NULL), 0);

    char *out = NULL;
    size_t out_len = 0;
    FILE *f = open_memstream(&out, &out_len);
    CHECK_EQ_INT(dmj_store_verify(s, f), DMJ_EBADRECORD);
    fclose(f);
    CHECK(out && strstr(out, "jobs: 00000000-0000-0000-0000-000000000002: error: invalid UTF-8"));
    CHECK(out &&
          strstr(out, "jobs: 00000000-0000-0000-0000-000000000003: workflow_id: invalid UTF-8"));
    CHECK(out && strstr(out, "teams: team 4: name: invalid UTF-8"));
    CHECK(out && strstr(out, "000000000001") == NULL);
    if (out)
        fputs(out, stderr);
    free(out);
    dmj_store_close(s);
    tmpdir_remove(dir);
}

int main(void)
{
    test_kuhn();
    test_escapes();
    test_other_places();
    test_verify();
    return check_done();
}

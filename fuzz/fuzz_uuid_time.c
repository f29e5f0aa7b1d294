/* Fuzz target: the UUID and timestamp parsers and the JSON string escaper. Each parser must
 * accept exactly what the grammar accepts (docs/api.md's grammar for UUIDs and cursor
 * positions, include/dmj/time.h for the import's timestamps; grammar.h reads them on its own,
 * with the spec's regular expressions and Python's calendar) with the same value, and what
 * the printers write must read back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmj/buf.h"
#include "dmj/json.h"
#include "dmj/time.h"
#include "dmj/uuid.h"

#include "grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MIN_US INT64_C(-62135596800000000)
#define MAX_US INT64_C(253402300799999999)

static void check_uuid(const char *s, size_t n)
{
    uint8_t id[16], back[16], want[16];
    char text[DMJ_UUID_TEXT_LEN + 1], expect[DMJ_UUID_TEXT_LEN + 1];
    memset(id, 0xA5, sizeof id);
    bool valid = grammar_uuid(s, n, want);
    if (dmj_uuid_parse(s, n, id) != 0) {
        if (valid)
            abort(); /* the grammar takes it */
        for (size_t i = 0; i < sizeof id; i++) {
            if (id[i] != 0xA5)
                abort(); /* out-parameters are written only on success */
        }
        return;
    }
    if (!valid || memcmp(id, want, 16) != 0)
        abort(); /* accepted outside the grammar, or read as another UUID */
    dmj_uuid_format(id, text);
    /* Lowercase hex in groups of 8-4-4-4-12. */
    size_t k = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            expect[k++] = '-';
        expect[k++] = "0123456789abcdef"[id[i] >> 4];
        expect[k++] = "0123456789abcdef"[id[i] & 15];
    }
    expect[k] = '\0';
    if (strcmp(text, expect) != 0 || dmj_uuid_parse(text, DMJ_UUID_TEXT_LEN, back) != 0 ||
        memcmp(id, back, 16) != 0)
        abort();
}

/* Both printed forms of `us` must have their grammar, say `us` by the grammar's own reading,
 * and read back through both parsers as `us`. */
static void check_time_value(int64_t us)
{
    char drf[DMJ_TIME_TEXT_MAX], py[DMJ_TIME_TEXT_MAX];
    int64_t a, b, c, d, g1, g2;
    regmatch_t m[2];
    if (us < MIN_US || us > MAX_US)
        abort();
    size_t n1 = dmj_time_format_drf(us, drf), n2 = dmj_time_format_py(us, py);
    if (n1 != strlen(drf) || n2 != strlen(py))
        abort();
    bool fraction = us % 1000000 != 0;
    if (!grammar_match(3, drf, n1, m, 2) || (m[1].rm_so >= 0) != fraction ||
        !grammar_match(4, py, n2, m, 2) || (m[1].rm_so >= 0) != fraction)
        abort();
    if (!grammar_django_timestamp(drf, n1, &g1) || g1 != us ||
        !grammar_django_timestamp(py, n2, &g2) || g2 != us)
        abort();
    if (dmj_time_parse(drf, n1, &a) != 0 || a != us || dmj_time_parse(py, n2, &b) != 0 || b != us ||
        dmj_time_parse_django(drf, n1, &c) != 0 || c != us ||
        dmj_time_parse_django(py, n2, &d) != 0 || d != us)
        abort();
}

/* A parser and its grammar disagree: say how, then fail. */
static void time_mismatch(const char *what, const char *s, size_t n, bool accepted, int64_t us,
                          bool valid, int64_t want)
{
    fprintf(stderr, "fuzz_uuid_time: %s %s \"%.*s\"", what, accepted ? "accepted" : "refused",
            (int)(n < 80 ? n : 80), s);
    if (accepted)
        fprintf(stderr, " as %lld", (long long)us);
    if (valid)
        fprintf(stderr, "; the grammar reads %lld\n", (long long)want);
    else
        fprintf(stderr, "; the grammar refuses it\n");
    abort();
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* the writer only ever prints lowercase */
}

/* Decodes the writer's output (only the escapes it may produce) and compares it with the
 * input; aborts on anything DRF would not have written. */
static void check_json(const char *s, size_t n)
{
    struct dmj_buf b;
    struct dmj_str str = {s, n};
    dmj_buf_init(&b, 6 * n + 16);
    if (dmj_json_add_string(&b, str) != 0) {
        dmj_buf_dispose(&b);
        return; /* only -ENOMEM can happen with this maximum */
    }
    const unsigned char *o = (const unsigned char *)b.data;
    size_t len = b.len, i = 1, k = 0;
    if (len < n + 2 || o[0] != '"' || o[len - 1] != '"')
        abort();
    for (; i < len - 1; i++) {
        unsigned char c = o[i];
        if (c < 0x20 || c == '"')
            abort();
        if (c == 0xE2 && len - 1 - i >= 3 && o[i + 1] == 0x80 &&
            (o[i + 2] == 0xA8 || o[i + 2] == 0xA9))
            abort();
        if (c != '\\') {
            if (k >= n || (unsigned char)s[k++] != c)
                abort();
            continue;
        }
        if (++i >= len - 1)
            abort();
        static const char from[] = "\"\\bfnrt", to[] = "\"\\\b\f\n\r\t";
        const char *e = memchr(from, o[i], sizeof from - 1);
        if (e) {
            if (k >= n || s[k++] != to[e - from])
                abort();
            continue;
        }
        if (o[i] != 'u' || len - 1 - i < 5)
            abort();
        unsigned code = 0;
        for (unsigned j = 1; j <= 4; j++) {
            int v = hexval((char)o[i + j]);
            if (v < 0)
                abort();
            code = code * 16 + (unsigned)v;
        }
        i += 4;
        if (code == 0x2028 || code == 0x2029) {
            if (n - k < 3 || (unsigned char)s[k] != 0xE2 || (unsigned char)s[k + 1] != 0x80 ||
                (unsigned char)s[k + 2] != (code == 0x2028 ? 0xA8 : 0xA9))
                abort();
            k += 3;
        } else {
            /* Short escapes exist for these, so \u00XX must not be used for them. */
            if (code >= 0x20 || code == '\b' || code == '\f' || code == '\n' || code == '\r' ||
                code == '\t' || k >= n || (unsigned char)s[k++] != code)
                abort();
        }
    }
    if (k != n)
        abort();
    dmj_buf_dispose(&b);
}

/* A timestamp parser against its grammar: accepted exactly when the grammar accepts, with the
 * grammar's value; nothing written on a refusal. */
static void check_time_parser(const char *what, int (*parse)(const char *, size_t, int64_t *),
                              bool (*grammar)(const char *, size_t, int64_t *), const char *s,
                              size_t size)
{
    int64_t want = 0, us = INT64_C(0x5A5A5A5A5A5A5A5A);
    bool valid = grammar(s, size, &want);
    if (parse(s, size, &us) == 0) {
        if (!valid || us != want)
            time_mismatch(what, s, size, true, us, valid, want);
        check_time_value(us);
    } else if (valid) {
        time_mismatch(what, s, size, false, us, valid, want);
    } else if (us != INT64_C(0x5A5A5A5A5A5A5A5A)) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    int64_t us;

    check_uuid(s, size);
    check_time_parser("dmj_time_parse", dmj_time_parse, grammar_import_timestamp, s, size);
    check_time_parser("dmj_time_parse_django", dmj_time_parse_django, grammar_django_timestamp,
                      s, size);
    /* The input read as a microsecond count, when it is eight bytes: any int64 prints. */
    if (size == 8) {
        char t[DMJ_TIME_TEXT_MAX];
        memcpy(&us, data, 8);
        if (dmj_time_format_drf(us, t) >= DMJ_TIME_TEXT_MAX ||
            dmj_time_format_py(us, t) >= DMJ_TIME_TEXT_MAX)
            abort();
        if (us >= MIN_US && us <= MAX_US)
            check_time_value(us);
    }
    check_json(s, size);
    return 0;
}

/* Tests of UUID parsing (uuid.UUID's spellings, checked against Python) and printing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dmj/uuid.h"

/* Inputs and what Python's uuid.UUID-with-ASCII-hex (the reference peer's parse_uuid in
 * peers/drf_ref/jobs/parsing.py) prints for them, NULL when it refuses them; produced by
 * running that function over these strings with Python 3.11. */
static const struct {
    const char *text;
    size_t len;
    const char *want;
} cases[] = {
    {"12345678-1234-5678-1234-567812345678", 36, "12345678-1234-5678-1234-567812345678"},
    {"{12345678-1234-5678-1234-567812345678}", 38, "12345678-1234-5678-1234-567812345678"},
    {"urn:uuid:12345678-1234-5678-1234-567812345678", 45, "12345678-1234-5678-1234-567812345678"},
    {"0123456789abcdef0123456789ABCDEF", 32, "01234567-89ab-cdef-0123-456789abcdef"},
    {"0123456789abcdef0123456789abcdef", 32, "01234567-89ab-cdef-0123-456789abcdef"},
    {"{{{0123456789abcdef0123456789ABCDEF}}}", 38, "01234567-89ab-cdef-0123-456789abcdef"},
    {"{0123456789abcdef0123456789ABCDEF", 33, "01234567-89ab-cdef-0123-456789abcdef"},
    {"0123456789abcdef0123456789ABCDEF}{", 34, "01234567-89ab-cdef-0123-456789abcdef"},
    {"}{0123456789abcdef0123456789ABCDEF{}", 36, "01234567-89ab-cdef-0123-456789abcdef"},
    {"{-0123456789abcdef0123456789ABCDEF-}", 36, "01234567-89ab-cdef-0123-456789abcdef"},
    {"-{0123456789abcdef0123456789ABCDEF}", 35, NULL},
    {"{0123456789abcdef0123456789ABCDEF}-", 35, NULL},
    {"0123456789abcdef{}0123456789ABCDEF", 34, NULL},
    {"urn:urn:uuid:uuid:0123456789abcdef0123456789ABCDEF", 50,
     "01234567-89ab-cdef-0123-456789abcdef"},
    {"urnurn::0123456789abcdef0123456789ABCDEF", 40, NULL},
    {"uurn:uid:0123456789abcdef0123456789ABCDEF", 41, "01234567-89ab-cdef-0123-456789abcdef"},
    {"uuuid::0123456789abcdef0123456789ABCDEF", 39, NULL},
    {"uuid:urn:0123456789abcdef0123456789ABCDEF", 41, "01234567-89ab-cdef-0123-456789abcdef"},
    {"urn:uuid0123456789abcdef0123456789ABCDEF", 40, NULL},
    {"0123456789urn:abcdef0123456789ABCDEF", 36, "01234567-89ab-cdef-0123-456789abcdef"},
    {"0123456789uuid:abcdef0123456789ABCDEF", 37, "01234567-89ab-cdef-0123-456789abcdef"},
    {"----0123456789abcdef0123456789ABCDEF----", 40, "01234567-89ab-cdef-0123-456789abcdef"},
    {"0-1-2-3-4-5-6-7-8-9-a-b-c-d-e-f-0-1-2-3-4-5-6-7-8-9-A-B-C-D-E-F", 63,
     "01234567-89ab-cdef-0123-456789abcdef"},
    {"0123456789abcdef0123456789ABCDE", 31, NULL},
    {"0123456789abcdef0123456789ABCDEF0", 33, NULL},
    {"0123456789abcdef0123456789ABCDEg", 32, NULL},
    {" 0123456789abcdef0123456789ABCDEF", 33, NULL},
    {"0123456789abcdef0123456789ABCDEF ", 33, NULL},
    {"0123456789abcdef0123456789ABCDEF\n", 33, NULL},
    {"0123456789abcdef\0"
     "0123456789ABCDEF",
     33, NULL},
    {"", 0, NULL},
    {"{}", 2, NULL},
    {"urn:", 4, NULL},
    {"uuid:", 5, NULL},
    {"urn:uuid:{0123456789abcdef0123456789ABCDEF}", 43, "01234567-89ab-cdef-0123-456789abcdef"},
    {"{urn:uuid:0123456789abcdef0123456789ABCDEF}", 43, "01234567-89ab-cdef-0123-456789abcdef"},
    {"0123456789abcdef0123456789ABCDurn:EFuuid:", 41, "01234567-89ab-cdef-0123-456789abcdef"},
    {"{0123456789abcdef0123456789ABCDEF-}}", 36, "01234567-89ab-cdef-0123-456789abcdef"},
    {"uuid:uuid:456789abcdef0123456789ABCDEF", 38, NULL},
    /* 36 characters: the canonical fast path and the shapes that must fall through it. */
    {"01234567-89AB-CDEF-0123-456789ABCDEF", 36, "01234567-89ab-cdef-0123-456789abcdef"},
    {"0123456-789ab-cdef-0123-456789abcdef", 36, "01234567-89ab-cdef-0123-456789abcdef"},
    {"01234567-89ab-cdef-0123-456789abcdeg", 36, NULL},
    {"01234567-89ab-cdef-0123-456789abcde-", 36, NULL},
    {"{1234567-89ab-cdef-0123-456789abcde}", 36, NULL},
    {"0123456789abcdef0123-456789abcdef{}}", 36, "01234567-89ab-cdef-0123-456789abcdef"},
    {"01234567_89ab_cdef_0123_456789abcdef", 36, NULL},
};

/* Parses from a heap block of exactly `len` bytes so that ASan sees any read past it. */
static int parse_exact(const char *s, size_t len, uint8_t out[16])
{
    char *p = malloc(len ? len : 1);
    if (!p)
        return -1;
    if (len)
        memcpy(p, s, len);
    int rc = dmj_uuid_parse(p, len, out);
    free(p);
    return rc;
}

static void test_cases(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t id[16];
        memset(id, 0xAA, sizeof id);
        int rc = parse_exact(cases[i].text, cases[i].len, id);
        if (cases[i].want) {
            char text[DMJ_UUID_TEXT_LEN + 1];
            CHECK_EQ_INT(rc, 0);
            dmj_uuid_format(id, text);
            CHECK_EQ_STR(text, cases[i].want);
        } else {
            if (rc != DMJ_EINVAL)
                fprintf(stderr, "case %zu accepted\n", i);
            CHECK_EQ_INT(rc, DMJ_EINVAL);
            /* The out-parameter is written only on success. */
            for (unsigned k = 0; k < 16; k++)
                CHECK_EQ_INT(id[k], 0xAA);
        }
    }
}

static void test_long_inputs(void)
{
    /* Python takes any number of removable pieces; so must we, without a length limit. */
    const char *hex = "0123456789abcdef0123456789abcdef";
    size_t reps = 100000, n = 0;
    char *s = malloc(reps * 5 + 32);
    uint8_t id[16];
    char text[DMJ_UUID_TEXT_LEN + 1];
    if (!s)
        return;
    for (size_t i = 0; i < reps; i++) {
        memcpy(s + n, i % 2 ? "uuid:" : "urn:", i % 2 ? 5 : 4);
        n += i % 2 ? 5 : 4;
    }
    memcpy(s + n, hex, 32);
    n += 32;
    CHECK_EQ_INT(parse_exact(s, n, id), 0);
    dmj_uuid_format(id, text);
    CHECK_EQ_STR(text, "01234567-89ab-cdef-0123-456789abcdef");
    memset(s, '-', n);
    CHECK_EQ_INT(parse_exact(s, n, id), DMJ_EINVAL);
    memcpy(s + n - 32, hex, 32);
    CHECK_EQ_INT(parse_exact(s, n, id), 0);
    s[0] = 'x';
    CHECK_EQ_INT(parse_exact(s, n, id), DMJ_EINVAL);
    free(s);
}

static void test_len_bound(void)
{
    /* Only `len` bytes count: a 33-character text cut at 32 parses. */
    uint8_t id[16];
    CHECK_EQ_INT(dmj_uuid_parse("0123456789abcdef0123456789abcdefZ", 32, id), 0);
    CHECK_EQ_INT(dmj_uuid_parse("0123456789abcdef0123456789abcdef", 31, id), DMJ_EINVAL);
    CHECK_EQ_INT(dmj_uuid_parse("urn:0123456789abcdef0123456789abcdef", 3, id), DMJ_EINVAL);
    /* "urn" cut before its colon is not a prefix to remove. */
    CHECK_EQ_INT(dmj_uuid_parse("urn:", 3, id), DMJ_EINVAL);
}

static void test_format_round_trip(void)
{
    uint64_t state = 99;
    for (int i = 0; i < 10000; i++) {
        uint8_t id[16], back[16];
        char text[DMJ_UUID_TEXT_LEN + 1];
        for (unsigned k = 0; k < 16; k++) {
            state = state * UINT64_C(6364136223846793005) + 1442695040888963407u;
            id[k] = (uint8_t)(state >> 56);
        }
        dmj_uuid_format(id, text);
        if (strlen(text) != DMJ_UUID_TEXT_LEN || text[8] != '-' || text[13] != '-' ||
            text[18] != '-' || text[23] != '-' || dmj_uuid_parse(text, 36, back) != 0 ||
            memcmp(id, back, 16) != 0) {
            CHECK(0);
            break;
        }
    }
    uint8_t all[16];
    char text[DMJ_UUID_TEXT_LEN + 1];
    memset(all, 0xff, 16);
    dmj_uuid_format(all, text);
    CHECK_EQ_STR(text, "ffffffff-ffff-ffff-ffff-ffffffffffff");
    memset(all, 0, 16);
    dmj_uuid_format(all, text);
    CHECK_EQ_STR(text, "00000000-0000-0000-0000-000000000000");
}

int main(void)
{
    test_cases();
    test_long_inputs();
    test_len_bound();
    test_format_round_trip();
    return check_done();
}

/* Unit tests of cursor.c: decoding and encoding DRF's cursor strings.
 *
 * The tables were produced once by the real Python code on this machine (Debian 12:
 * Python 3.11 base64.b64decode / binascii, urllib.parse.parse_qs, DRF 3.14's
 * CursorPagination.encode_cursor, and the peer's decode_cursor of jobs/views.py in
 * DRF_REF_DMJ mode with jobs/parsing.py), printed as C literals by a small script. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "dmj/cursor.h"

struct decode_case {
    const char *value;
    size_t len;
    bool ok;
    uint64_t offset;
    bool reverse;
    const char *position; /* NULL: none */
};

/* clang-format off */
static const struct decode_case DECODE[] = {
    {"", 0, true, 0, false, NULL},
    {"bz01", 4, true, 5, false, NULL},
    {"bz01JnI9MQ==", 12, true, 5, true, NULL},
    {"cj0x", 4, true, 0, true, NULL},
    {"bz0xMDAx", 8, true, 1000, false, NULL},
    {"bz0tMQ==", 8, false, 0, false, NULL},
    {"bz0tMA==", 8, true, 0, false, NULL},
    {"bz0rMyZyPS0y", 12, true, 3, true, NULL},
    {"cj0w", 4, true, 0, false, NULL},
    {"cj14", 4, false, 0, false, NULL},
    {"bz0=", 4, false, 0, false, NULL},
    {"bw==", 4, false, 0, false, NULL},
    {"bz0xJm89eA==", 12, true, 1, false, NULL},
    {"bz14Jm89MQ==", 12, false, 0, false, NULL},
    {"cD0yMDE5LTA4LTI0IDE0OjE1OjIyLjEyMzQ1NiswMDowMA==", 48, false, 0, false, NULL},
    {"cD0yMDE5LTA4LTI0KzE0JTNBMTUlM0EyMiUyQjAwJTNBMDA=", 48, true, 0, false, "2019-08-24 14:15:22+00:00"},
    {"cD0yMDE5LTA4LTI0", 16, true, 0, false, "2019-08-24"},
    {"cD0yMDE5LTEzLTAx", 16, false, 0, false, NULL},
    {"cD0yMDE5LTA4LTI0Cg==", 20, true, 0, false, "2019-08-24\012"},
    {"cD0yMDE5LTA4LTI0VDE0OjE1Wg==", 28, true, 0, false, "2019-08-24T14:15Z"},
    {"cD0yMDE5LTA4LTI0VDE0OjE1OjIyLDEyMzQ1Njc4OTFa", 44, true, 0, false, "2019-08-24T14:15:22,1234567891Z"},
    {"cD0=", 4, false, 0, false, NULL},
    {"cA==", 4, false, 0, false, NULL},
    {"JTZGPTc=", 8, true, 7, false, NULL},
    {"bys9Nw==", 8, true, 0, false, NULL},
    {"bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05bz05", 120, false, 0, false, NULL},
    {"bz0wMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAz", 804, true, 3, false, NULL},
    {"JiZvPTImJg==", 12, true, 2, false, NULL},
    {"eD0xJm89MyZwPTIwMjAtMDEtMDEmcj0xJnA9anVuaw==", 44, true, 3, true, "2020-01-01"},
    {"bz0lMzE=", 8, true, 1, false, NULL},
    {"bz0lQzMlQTk=", 12, false, 0, false, NULL},
    {"cD0yMDE5LTA4LTI0JUMzJUE5", 24, false, 0, false, NULL},
    {"bz0xXzA=", 8, true, 10, false, NULL},
    {"bz0gNCA=", 8, true, 4, false, NULL},
    {"bz01", 4, true, 5, false, NULL},
    {"bz01==", 6, true, 5, false, NULL},
    {"bz0", 3, false, 0, false, NULL},
    {"b", 1, false, 0, false, NULL},
    {"bz=01", 5, true, 5, false, NULL},
    {"=bz01", 5, true, 5, false, NULL},
    {"b!z\0770\0121", 7, true, 5, false, NULL},
    {"bz01====junk", 12, false, 0, false, NULL},
    {"cj0x", 4, true, 0, true, NULL},
    {"cj0x=", 5, true, 0, true, NULL},
    {"cj0=", 4, false, 0, false, NULL},
    {"cj==", 4, false, 0, false, NULL},
    {"cg==", 4, false, 0, false, NULL},
    {"cg=", 3, false, 0, false, NULL},
    {"cg", 2, false, 0, false, NULL},
    {"====", 4, true, 0, false, NULL},
    {"YQ==YQ==", 8, true, 0, false, NULL},
    {"\303\251", 2, false, 0, false, NULL},
    {"bz01\303\251", 6, false, 0, false, NULL},
    {"/w==", 4, false, 0, false, NULL},
    {"gA==", 4, false, 0, false, NULL},
    {"bz0xfw==", 8, false, 0, false, NULL},
    {"cD0yMDE5LTA4LTI0IDE0OjE1OjIyLjEyMzQ1NisyNDowMA==", 48, false, 0, false, NULL},
    {"cD0wMDAwLTAxLTAx", 16, false, 0, false, NULL},
    {"cD05OTk5LTEyLTMxVDIzOjU5OjU5LTAxOjAw", 36, false, 0, false, NULL},
    {"cD0yMDE5LTA4LTI0IDE0OjE1OjIyOTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ==", 84, false, 0, false, NULL},
};
/* clang-format on */

struct encode_case {
    uint64_t offset;
    bool reverse;
    const char *position;
    const char *encoded;
};

/* clang-format off */
static const struct encode_case ENCODE[] = {
    {0ULL, false, NULL, ""},
    {5ULL, false, NULL, "bz01"},
    {0ULL, true, NULL, "cj0x"},
    {3ULL, true, NULL, "bz0zJnI9MQ=="},
    {1100ULL, false, NULL, "bz0xMTAw"},
    {0ULL, false, "2019-08-24 14:15:22.123456+00:00", "cD0yMDE5LTA4LTI0KzE0JTNBMTUlM0EyMi4xMjM0NTYlMkIwMCUzQTAw"},
    {2ULL, true, "2019-08-24 14:15:22+00:00", "bz0yJnI9MSZwPTIwMTktMDgtMjQrMTQlM0ExNSUzQTIyJTJCMDAlM0EwMA=="},
    {0ULL, true, "2019-08-24T14:15:22,5Z", "cj0xJnA9MjAxOS0wOC0yNFQxNCUzQTE1JTNBMjIlMkM1Wg=="},
    {7ULL, false, "2019-08-24\012", "bz03JnA9MjAxOS0wOC0yNCUwQQ=="},
    {18446744073709551615ULL, true, "2019-08-24", "bz0xODQ0Njc0NDA3MzcwOTU1MTYxNSZyPTEmcD0yMDE5LTA4LTI0"},
};
/* clang-format on */

static bool b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/' || c == '=';
}

static void test_decode_table(void)
{
    for (size_t i = 0; i < sizeof DECODE / sizeof DECODE[0]; i++) {
        const struct decode_case *d = &DECODE[i];
        struct dmj_cursor c;
        memset(&c, 0x5a, sizeof c);
        int rc = dmj_cursor_decode(d->value, d->len, &c);
        if ((rc == 0) != d->ok)
            fprintf(stderr, "decode case %zu: rc %d\n", i, rc);
        if (!d->ok) {
            CHECK_EQ_INT(rc, DMJ_EBADCURSOR);
            CHECK_EQ_INT(c.offset, 0x5a5a5a5a5a5a5a5aULL); /* untouched */
            continue;
        }
        CHECK_EQ_INT(rc, 0);
        if (rc)
            continue;
        CHECK_EQ_INT(c.offset, d->offset);
        CHECK_EQ_INT(c.reverse, d->reverse);
        CHECK_EQ_INT(c.has_position, d->position != NULL);
        if (d->position) {
            CHECK_EQ_STR(c.position, d->position);
            CHECK_EQ_INT(c.position_len, strlen(d->position));
        }

        /* Whatever decodes encodes to pure base64 that decodes to the same cursor. */
        struct dmj_buf b;
        struct dmj_cursor again;
        dmj_buf_init(&b, 1024);
        CHECK_EQ_INT(dmj_cursor_encode(&c, &b), 0);
        for (size_t k = 0; k < b.len; k++)
            CHECK(b64_char(b.data[k]));
        CHECK_EQ_INT(dmj_cursor_decode(b.data, b.len, &again), 0);
        CHECK_EQ_INT(again.offset, c.offset);
        CHECK_EQ_INT(again.reverse, c.reverse);
        CHECK_EQ_INT(again.has_position, c.has_position);
        if (c.has_position) {
            CHECK_EQ_STR(again.position, c.position);
            CHECK_EQ_INT(again.position_us, c.position_us);
        }
        dmj_buf_dispose(&b);
    }
}

static void test_positions(void)
{
    /* position_us is the parsed position (values computed with Python's datetime). */
    struct dmj_cursor c;
    const char *v = "cD0yMDE5LTA4LTI0"; /* p=2019-08-24 */
    CHECK_EQ_INT(dmj_cursor_decode(v, strlen(v), &c), 0);
    CHECK_EQ_INT(c.position_us, 1566604800000000LL);
    v = "cD0yMDE5LTA4LTI0KzE0JTNBMTUlM0EyMiUyQjAwJTNBMDA="; /* p=2019-08-24 14:15:22+00:00 */
    CHECK_EQ_INT(dmj_cursor_decode(v, strlen(v), &c), 0);
    CHECK_EQ_INT(c.position_us, 1566656122000000LL);
    v = "cD0yMDE5LTA4LTI0VDE0OjE1OjIyLDEyMzQ1Njc4OTFa"; /* fraction digits past six ignored */
    CHECK_EQ_INT(dmj_cursor_decode(v, strlen(v), &c), 0);
    CHECK_EQ_INT(c.position_us, 1566656122123456LL);
    /* An empty value is the first page: nothing set. */
    CHECK_EQ_INT(dmj_cursor_decode("", 0, &c), 0);
    CHECK(c.offset == 0 && !c.reverse && !c.has_position);
}

static void test_encode_table(void)
{
    for (size_t i = 0; i < sizeof ENCODE / sizeof ENCODE[0]; i++) {
        const struct encode_case *e = &ENCODE[i];
        struct dmj_cursor c;
        memset(&c, 0, sizeof c);
        c.offset = e->offset;
        c.reverse = e->reverse;
        if (e->position) {
            c.has_position = true;
            c.position_len = strlen(e->position);
            memcpy(c.position, e->position, c.position_len + 1);
        }
        struct dmj_buf b;
        dmj_buf_init(&b, 1024);
        CHECK_EQ_INT(dmj_buf_adds(&b, "x="), 0); /* appends after what is there */
        CHECK_EQ_INT(dmj_cursor_encode(&c, &b), 0);
        CHECK_EQ_STR(b.data + 2, e->encoded);
        CHECK_EQ_INT(b.len, 2 + strlen(e->encoded));
        dmj_buf_dispose(&b);
    }
    /* Too small a buffer: an error, and the buffer unchanged. */
    struct dmj_cursor c = {.offset = 123456, .reverse = true};
    struct dmj_buf b;
    dmj_buf_init(&b, 12);
    CHECK_EQ_INT(dmj_buf_adds(&b, "ab"), 0);
    CHECK_EQ_INT(dmj_cursor_encode(&c, &b), DMJ_ETOOBIG);
    CHECK_EQ_INT(b.len, 2);
    CHECK_EQ_STR(b.data, "ab");
    dmj_buf_dispose(&b);
}

int main(void)
{
    test_decode_table();
    test_positions();
    test_encode_table();
    return check_done();
}

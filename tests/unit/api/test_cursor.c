/* Unit tests of cursor.c: decoding and encoding DRF's cursor strings.
 *
 * The tables (data/cursor_tables.inc) are printed by data/gen_cursor_tables.py from DRF
 * 3.14's own CursorPagination.decode_cursor and encode_cursor, with dmj's two stated
 * differences applied on top (data/drf_oracle.py); the suite regenerates and compares them
 * (unit.generated_tables). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "cursor.h"

struct decode_case {
    const char *value;
    size_t len;
    bool ok;
    uint64_t offset;
    bool reverse;
    const char *position; /* NULL: none */
    int64_t position_us;  /* the position parsed (Django's parse_datetime, in UTC) */
};

struct encode_case {
    uint64_t offset;
    bool reverse;
    const char *position;
    const char *encoded;
};

/* clang-format off */
#include "data/cursor_tables.inc"
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
            CHECK_EQ_INT(c.position_us, d->position_us);
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

static void test_empty(void)
{
    /* An empty value is the first page: nothing set. */
    struct dmj_cursor c;
    memset(&c, 0x5a, sizeof c);
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
    test_empty();
    test_encode_table();
    return check_done();
}

/* Unit tests of number.c: Python's int(). The expected values were produced once by the
 * peer's jobs/parsing.py parse_int (Python 3.11's int()) on this machine. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "number.h"

struct int_case {
    const char *s;
    size_t len;
    bool ok;
    long long value;
    bool overflow;
};

/* clang-format off */
static const struct int_case INTS[] = {
    {"0", 1, true, 0LL, false},
    {"-0", 2, true, 0LL, false},
    {"+7", 2, true, 7LL, false},
    {" 12 ", 4, true, 12LL, false},
    {"\011\012\013\014\015 3\015\012", 9, true, 3LL, false},
    {"1_000", 5, true, 1000LL, false},
    {"1__0", 4, false, 0, false},
    {"_1", 2, false, 0, false},
    {"1_", 2, false, 0, false},
    {"+", 1, false, 0, false},
    {"", 0, false, 0, false},
    {" ", 1, false, 0, false},
    {"1 2", 3, false, 0, false},
    {"0x10", 4, false, 0, false},
    {"00012", 5, true, 12LL, false},
    {"-9223372036854775808", 20, true, INT64_MIN, false},
    {"9223372036854775807", 19, true, 9223372036854775807LL, false},
    {"9223372036854775808", 19, true, INT64_MAX, true},
    {"-9223372036854775809", 20, true, INT64_MIN, true},
    {"99999999999999999999999", 23, true, INT64_MAX, true},
    {"--1", 3, false, 0, false},
    {"+-1", 3, false, 0, false},
    {"1.0", 3, false, 0, false},
    {"\0341", 2, false, 0, false},
    {"1e3", 3, false, 0, false},
    {"\331\241", 2, false, 0, false},
    {"-_1", 3, false, 0, false},
    {"1_0_0", 5, true, 100LL, false},
};
/* clang-format on */

static void test_ints(void)
{
    for (size_t i = 0; i < sizeof INTS / sizeof INTS[0]; i++) {
        long long v = 42;
        bool over = false;
        int rc = dmj_parse_int(INTS[i].s, INTS[i].len, &v, &over);
        if ((rc == 0) != INTS[i].ok)
            fprintf(stderr, "int case %zu\n", i);
        CHECK_EQ_INT(rc == 0, INTS[i].ok);
        if (INTS[i].ok) {
            CHECK_EQ_INT(v, INTS[i].value);
            CHECK_EQ_INT(over, INTS[i].overflow);
        } else {
            CHECK_EQ_INT(rc, DMJ_EINVAL);
            CHECK_EQ_INT(v, 42); /* untouched on failure */
        }
    }
    /* CPython's 4300-digit limit counts digits (not '_', sign or spaces). */
    static char big[4400];
    long long v;
    bool over;
    memset(big, '1', sizeof big);
    CHECK_EQ_INT(dmj_parse_int(big, 4300, &v, &over), 0);
    CHECK(over);
    CHECK_EQ_INT(dmj_parse_int(big, 4301, &v, &over), DMJ_EINVAL);
    memset(big, '0', sizeof big);
    big[4299] = '7';
    CHECK_EQ_INT(dmj_parse_int(big, 4300, &v, &over), 0);
    CHECK_EQ_INT(v, 7);
    CHECK(!over);
    for (int i = 1; i < 4300; i += 2)
        big[i] = '_';
    big[0] = '1';
    CHECK_EQ_INT(dmj_parse_int(big, 4301, &v, &over), 0);
}

int main(void)
{
    test_ints();
    return check_done();
}

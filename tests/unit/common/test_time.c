/* Tests of timestamp parsing (import and Django grammars) and of the DRF and Python forms. */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "dmj/time.h"

#define MIN_US INT64_C(-62135596800000000) /* 0001-01-01T00:00:00Z */
#define MAX_US INT64_C(253402300799999999) /* 9999-12-31T23:59:59.999999Z */

/* Django 3.2's verdicts on generated strings: see data/gen_django_times.py. */
static const struct {
    const char *text;
    size_t len;
    int valid;
    int64_t us;
} django_table[] = {
#include "data/django_times.inc"
};

/* Copies `len` bytes to a heap block of exactly that size, so that AddressSanitizer
 * reports any read past `len` (there is no NUL after the text). */
static char *exact_copy(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);
    if (p && len)
        memcpy(p, s, len);
    return p;
}

static int parse(const char *s, int64_t *us)
{
    size_t len = strlen(s);
    char *p = exact_copy(s, len);
    int rc = p ? dmj_time_parse(p, len, us) : -1;
    free(p);
    return rc;
}

static int parse_dj(const char *s, size_t len, int64_t *us)
{
    char *p = exact_copy(s, len);
    int rc = p ? dmj_time_parse_django(p, len, us) : -1;
    free(p);
    return rc;
}

static int64_t parse_ok(const char *s)
{
    int64_t us = INT64_MIN;
    int rc = parse(s, &us);
    if (rc)
        fprintf(stderr, "dmj_time_parse(\"%s\") = %d\n", s, rc);
    CHECK_EQ_INT(rc, 0);
    return us;
}

static void parse_bad(const char *s)
{
    int64_t us = 42;
    int rc = parse(s, &us);
    if (rc != DMJ_EINVAL)
        fprintf(stderr, "dmj_time_parse(\"%s\") accepted\n", s);
    CHECK_EQ_INT(rc, DMJ_EINVAL);
    CHECK_EQ_INT(us, 42); /* out-parameter untouched on failure */
}

static void test_import_forms(void)
{
    /* What PostgreSQL's row_to_json and gen_jobs.py write. */
    CHECK_EQ_INT(parse_ok("2024-05-01T10:00:00.12345+00:00"), INT64_C(1714557600123450));
    CHECK_EQ_INT(parse_ok("2024-05-01T10:00:00+00:00"), INT64_C(1714557600000000));
    CHECK_EQ_INT(parse_ok("2019-01-02T04:05:06.000123Z"), INT64_C(1546401906000123));
    CHECK_EQ_INT(parse_ok("2019-01-02T04:05:06.000123z"), INT64_C(1546401906000123));
    CHECK_EQ_INT(parse_ok("2019-01-02 04:05:06.000123"), INT64_C(1546401906000123));
    CHECK_EQ_INT(parse_ok("1970-01-01T00:00:00Z"), 0);
    CHECK_EQ_INT(parse_ok("1970-01-01T00:00:00.5"), 500000);
    CHECK_EQ_INT(parse_ok("1970-01-01T00:00:00.000001"), 1);
    /* Offsets: +HH, +HHMM, +HH:MM, negative, and the largest ones. */
    CHECK_EQ_INT(parse_ok("1970-01-01T05:00:00+05"), 0);
    CHECK_EQ_INT(parse_ok("1970-01-01T05:30:00+0530"), 0);
    CHECK_EQ_INT(parse_ok("1970-01-01T05:30:00+05:30"), 0);
    CHECK_EQ_INT(parse_ok("1969-12-31T18:30:00-05:30"), 0);
    CHECK_EQ_INT(parse_ok("1970-01-01T23:59:00+23:59"), 0);
    CHECK_EQ_INT(parse_ok("1969-12-31T00:01:00-23:59"), 0);
    /* Before 1970. */
    CHECK_EQ_INT(parse_ok("1969-12-31T23:59:59.999999Z"), -1);
    CHECK_EQ_INT(parse_ok("1900-03-01T00:00:00Z"), INT64_C(-2203891200000000));
    /* Leap days. */
    CHECK_EQ_INT(parse_ok("2024-02-29T00:00:00Z"), INT64_C(1709164800000000));
    CHECK_EQ_INT(parse_ok("2000-02-29T00:00:00Z"), INT64_C(951782400000000));
    parse_bad("2023-02-29T00:00:00Z");
    parse_bad("1900-02-29T00:00:00Z");
    parse_bad("2100-02-29T00:00:00Z");
    /* Years 1 and 9999, and offsets that push past them. */
    CHECK_EQ_INT(parse_ok("0001-01-01T00:00:00Z"), MIN_US);
    CHECK_EQ_INT(parse_ok("9999-12-31T23:59:59.999999Z"), MAX_US);
    CHECK_EQ_INT(parse_ok("0001-01-01T00:00:00-01:00"), MIN_US + INT64_C(3600000000));
    parse_bad("0001-01-01T00:00:00+00:01");
    parse_bad("9999-12-31T23:59:59.999999-00:01");
    parse_bad("0000-12-31T23:00:00Z");
    parse_bad("0000-12-31T23:00:00-01:00"); /* year 0 is not a date, even if UTC is year 1 */
    /* Field ranges. */
    parse_bad("2024-00-01T00:00:00Z");
    parse_bad("2024-13-01T00:00:00Z");
    parse_bad("2024-01-00T00:00:00Z");
    parse_bad("2024-01-32T00:00:00Z");
    parse_bad("2024-04-31T00:00:00Z");
    parse_bad("2024-01-01T24:00:00Z");
    parse_bad("2024-01-01T00:60:00Z");
    parse_bad("2024-01-01T00:00:60Z");
    parse_bad("2024-01-01T00:00:00+24:00");
    parse_bad("2024-01-01T00:00:00+05:60");
    parse_bad("2024-01-01T00:00:00-2400");
    /* Shapes the import does not take. */
    parse_bad("");
    parse_bad("2024-01-01");
    parse_bad("2024-1-01T00:00:00Z");
    parse_bad("2024-01-01T0:00:00Z");
    parse_bad("2024-01-01T00:00Z");
    parse_bad("2024-01-01t00:00:00Z");
    parse_bad("2024-01-01_00:00:00Z");
    parse_bad("2024-01-01T00:00:00.");
    parse_bad("2024-01-01T00:00:00.1234567");
    parse_bad("2024-01-01T00:00:00,5");
    parse_bad("2024-01-01T00:00:00Z\n");
    parse_bad("2024-01-01T00:00:00 ");
    parse_bad("2024-01-01T00:00:00ZZ");
    parse_bad("2024-01-01T00:00:00+5");
    parse_bad("2024-01-01T00:00:00+053");
    parse_bad("2024-01-01T00:00:00+05:3");
    parse_bad("2024-01-01T00:00:00+05:");
    parse_bad("2024-01-01T00:00:00+");
    parse_bad("2024-01-01T00:00:00+05:30:00");
    parse_bad("+024-01-01T00:00:00Z");
    parse_bad("20240101T000000Z");
    int64_t us = 42;
    CHECK_EQ_INT(dmj_time_parse("2024-01-01T00:00:00\0Z", 21, &us), DMJ_EINVAL);
    CHECK_EQ_INT(us, 42);
}

static void test_import_len(void)
{
    /* Only `len` bytes count: a shorter length sees a shorter (here still valid) text. */
    const char *s = "2024-01-01T00:00:00.5Z";
    int64_t us = 0;
    CHECK_EQ_INT(dmj_time_parse(s, 19, &us), 0);
    CHECK_EQ_INT(us, INT64_C(1704067200000000));
    CHECK_EQ_INT(dmj_time_parse(s, 20, &us), DMJ_EINVAL); /* ends at the '.' */
    CHECK_EQ_INT(dmj_time_parse(s, 21, &us), 0);
    CHECK_EQ_INT(us, INT64_C(1704067200500000));
    for (size_t n = 0; n < 19; n++)
        CHECK_EQ_INT(dmj_time_parse(s, n, &us), DMJ_EINVAL);
}

static void test_django_table(void)
{
    size_t n = sizeof django_table / sizeof django_table[0];
    unsigned valid = 0;
    CHECK(n >= 300);
    for (size_t i = 0; i < n; i++) {
        int64_t us = 7;
        int rc = parse_dj(django_table[i].text, django_table[i].len, &us);
        int ok = django_table[i].valid ? rc == 0 && us == django_table[i].us
                                       : rc == DMJ_EINVAL && us == 7;
        if (!ok)
            fprintf(stderr, "django row %zu: rc %d us %" PRId64 ", Django says %s %" PRId64 "\n", i,
                    rc, us, django_table[i].valid ? "valid" : "invalid", django_table[i].us);
        CHECK(ok);
        valid += django_table[i].valid;
    }
    /* The table must exercise both outcomes, or it proves little. */
    CHECK(valid > 50);
    CHECK(n - valid > 50);
}

static void test_django_details(void)
{
    int64_t us;
    /* One trailing "\n" is allowed, two are not; nothing else may trail. */
    CHECK_EQ_INT(parse_dj("2020-01-01\n", 11, &us), 0);
    CHECK_EQ_INT(us, INT64_C(1577836800000000));
    CHECK_EQ_INT(parse_dj("2020-01-01T00:00Z\n", 18, &us), 0);
    CHECK_EQ_INT(parse_dj("2020-01-01T00:00Z\n\n", 19, &us), DMJ_EINVAL);
    CHECK_EQ_INT(parse_dj("2020-01-01T00:00Z\r", 18, &us), DMJ_EINVAL);
    CHECK_EQ_INT(parse_dj("2020-01-01\n ", 12, &us), DMJ_EINVAL);
    /* Fractions: left-justified, 7-12 digits ignored past the sixth, 13 refused. */
    CHECK_EQ_INT(parse_dj("1970-01-01 00:00:00.5", 21, &us), 0);
    CHECK_EQ_INT(us, 500000);
    CHECK_EQ_INT(parse_dj("1970-01-01 00:00:00,0000019", 27, &us), 0);
    CHECK_EQ_INT(us, 1);
    CHECK_EQ_INT(parse_dj("1970-01-01 00:00:00.123456789999", 32, &us), 0);
    CHECK_EQ_INT(us, 123456);
    CHECK_EQ_INT(parse_dj("1970-01-01 00:00:00.1234567899999", 33, &us), DMJ_EINVAL);
    CHECK_EQ_INT(parse_dj("1970-01-01 00:00.5", 18, &us), DMJ_EINVAL); /* no seconds */
    /* Offsets: Django's minute arithmetic, and the 24 h limit. */
    CHECK_EQ_INT(parse_dj("1970-01-01 00:00+05:99", 22, &us), 0);
    CHECK_EQ_INT(us, INT64_C(-399) * 60000000);
    CHECK_EQ_INT(parse_dj("1970-01-01 00:00-0030", 21, &us), 0);
    CHECK_EQ_INT(us, INT64_C(30) * 60000000);
    CHECK_EQ_INT(parse_dj("1970-01-01 00:00+23:60", 22, &us), DMJ_EINVAL);
    CHECK_EQ_INT(parse_dj("1970-01-01 00:00+24", 19, &us), DMJ_EINVAL);
    CHECK_EQ_INT(parse_dj("1970-01-01 00:00+2", 18, &us), DMJ_EINVAL);
    CHECK_EQ_INT(parse_dj("1970-01-01 00:00z", 17, &us), DMJ_EINVAL);
    /* One-digit fields and the year bounds. */
    CHECK_EQ_INT(parse_dj("1970-1-2 3:4:5", 14, &us), 0);
    CHECK_EQ_INT(us, INT64_C(97445000000));
    CHECK_EQ_INT(parse_dj("0001-01-01", 10, &us), 0);
    CHECK_EQ_INT(us, MIN_US);
    CHECK_EQ_INT(parse_dj("0000-01-01", 10, &us), DMJ_EINVAL);
    CHECK_EQ_INT(parse_dj("9999-12-31 23:59:59.999999", 26, &us), 0);
    CHECK_EQ_INT(us, MAX_US);
    CHECK_EQ_INT(parse_dj("9999-12-31 23:59:59.999999-00:01", 32, &us), DMJ_EINVAL);
    /* Only `len` bytes are looked at. */
    CHECK_EQ_INT(dmj_time_parse_django("2020-01-01Tgarbage", 10, &us), 0);
    CHECK_EQ_INT(dmj_time_parse_django("2020-01-01T00:00:00.5", 20, &us), DMJ_EINVAL);
    CHECK_EQ_INT(dmj_time_parse_django("", 0, &us), DMJ_EINVAL);
}

static void test_format(void)
{
    char t[DMJ_TIME_TEXT_MAX];
    CHECK_EQ_INT(dmj_time_format_drf(INT64_C(1566656122123456), t), 27);
    CHECK_EQ_STR(t, "2019-08-24T14:15:22.123456Z");
    CHECK_EQ_INT(dmj_time_format_drf(INT64_C(1566656122000000), t), 20);
    CHECK_EQ_STR(t, "2019-08-24T14:15:22Z");
    CHECK_EQ_INT(dmj_time_format_py(INT64_C(1566656122123456), t), 32);
    CHECK_EQ_STR(t, "2019-08-24 14:15:22.123456+00:00");
    CHECK_EQ_INT(dmj_time_format_py(INT64_C(1566656122000000), t), 25);
    CHECK_EQ_STR(t, "2019-08-24 14:15:22+00:00");
    dmj_time_format_drf(1, t);
    CHECK_EQ_STR(t, "1970-01-01T00:00:00.000001Z");
    dmj_time_format_drf(-1, t);
    CHECK_EQ_STR(t, "1969-12-31T23:59:59.999999Z");
    dmj_time_format_py(INT64_C(-1000000), t);
    CHECK_EQ_STR(t, "1969-12-31 23:59:59+00:00");
    dmj_time_format_drf(MIN_US, t);
    CHECK_EQ_STR(t, "0001-01-01T00:00:00Z");
    dmj_time_format_drf(MAX_US, t);
    CHECK_EQ_STR(t, "9999-12-31T23:59:59.999999Z");
    dmj_time_format_py(INT64_C(951782400000000), t);
    CHECK_EQ_STR(t, "2000-02-29 00:00:00+00:00");
    dmj_time_format_drf(INT64_C(-59011459200000000), t); /* zero-padded year 100 */
    CHECK_EQ_STR(t, "0100-01-01T00:00:00Z");
    /* Values outside the stored range still print within the buffer. */
    CHECK(dmj_time_format_py(INT64_MIN, t) < DMJ_TIME_TEXT_MAX);
    CHECK(dmj_time_format_py(INT64_MAX, t) < DMJ_TIME_TEXT_MAX);
    CHECK(dmj_time_format_drf(INT64_MIN, t) < DMJ_TIME_TEXT_MAX);
}

/* A small deterministic generator for the round trips. */
static uint64_t next_rand(uint64_t *state)
{
    *state = *state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return *state >> 11;
}

static void test_round_trips(void)
{
    uint64_t state = 12345;
    unsigned bad = 0;
    const uint64_t span = (uint64_t)(MAX_US - MIN_US) + 1;
    for (int i = 0; i < 200000; i++) {
        int64_t us;
        uint64_t r = next_rand(&state);
        switch (i % 4) {
        case 0: /* anywhere in the range */
            us = MIN_US + (int64_t)(r % span);
            break;
        case 1: /* whole seconds, to exercise the form without a fraction */
            us = (MIN_US + (int64_t)(r % span)) / 1000000 * 1000000;
            break;
        case 2: /* near the ends and near the epoch */
            us = (r & 1 ? MIN_US : MAX_US) + (r & 1 ? 1 : -1) * (int64_t)(r % 100000000000);
            break;
        default:
            us = (int64_t)(r % 200000000000) - 100000000000;
        }
        char drf[DMJ_TIME_TEXT_MAX], py[DMJ_TIME_TEXT_MAX];
        size_t n1 = dmj_time_format_drf(us, drf), n2 = dmj_time_format_py(us, py);
        int64_t a = 0, b = 0, c = 0, d = 0;
        int ok = n1 == strlen(drf) && n2 == strlen(py) && dmj_time_parse(drf, n1, &a) == 0 &&
                 a == us && dmj_time_parse(py, n2, &b) == 0 && b == us &&
                 dmj_time_parse_django(drf, n1, &c) == 0 && c == us &&
                 dmj_time_parse_django(py, n2, &d) == 0 && d == us;
        if (!ok && bad++ < 5)
            fprintf(stderr, "round trip of %" PRId64 " failed: %s / %s\n", us, drf, py);
    }
    CHECK_EQ_INT(bad, 0);
}

/* What libc's gmtime_r and snprintf print for `us` in both forms: an oracle that shares no
 * code with time.c's calendar arithmetic or its digit writing. */
static void libc_forms(int64_t us, char drf[128], char py[128])
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    char date[48], fr[16] = "";
    snprintf(date, sizeof date, "%04d-%02d-%02d%c%02d:%02d:%02d", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, 'T', tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (frac)
        snprintf(fr, sizeof fr, ".%06d", (int)frac);
    snprintf(drf, 128, "%s%sZ", date, fr);
    date[10] = ' ';
    snprintf(py, 128, "%s%s+00:00", date, fr);
}

/* Every stored timestamp prints as libc prints it: all years 1..9999 (random instants,
 * day and year edges, leap days, whole seconds, fractions with inner zeros). */
static void test_format_against_libc(void)
{
    uint64_t state = 777;
    unsigned bad = 0;
    const uint64_t span = (uint64_t)(MAX_US - MIN_US) + 1;
    for (int i = 0; i < 300000; i++) {
        uint64_t r = next_rand(&state);
        int64_t us = MIN_US + (int64_t)(r % span);
        switch (i % 5) {
        case 1: /* a day's last and first microsecond */
            us = us / 86400000000 * 86400000000 - (int64_t)(r >> 40 & 1);
            break;
        case 2: /* whole seconds */
            us = us / 1000000 * 1000000;
            break;
        case 3: /* fractions such as .000100 and .010000 */
            us = us / 1000000 * 1000000 + (int64_t)((r >> 50) % 7 == 0 ? 100 : 10000);
            break;
        case 4: /* 1900..2100, where the jobs are */
            us = INT64_C(-2208988800000000) + (int64_t)(r % UINT64_C(6311433600000000));
            break;
        default:
            break;
        }
        if (us < MIN_US || us > MAX_US)
            continue;
        char drf[DMJ_TIME_TEXT_MAX], py[DMJ_TIME_TEXT_MAX], want_drf[128], want_py[128];
        size_t n1 = dmj_time_format_drf(us, drf), n2 = dmj_time_format_py(us, py);
        libc_forms(us, want_drf, want_py);
        int ok = n1 == strlen(want_drf) && strcmp(drf, want_drf) == 0 &&
                 n2 == strlen(want_py) && strcmp(py, want_py) == 0;
        if (!ok && bad++ < 5)
            fprintf(stderr, "%" PRId64 ": %s / %s, libc %s / %s\n", us, drf, py, want_drf,
                    want_py);
    }
    CHECK_EQ_INT(bad, 0);
    /* Leap days and century rules, exactly. */
    char t[DMJ_TIME_TEXT_MAX];
    dmj_time_format_drf(INT64_C(-2203891200000000), t); /* 1900 is not leap */
    CHECK_EQ_STR(t, "1900-03-01T00:00:00Z");
    dmj_time_format_drf(INT64_C(4107542399999999), t);
    CHECK_EQ_STR(t, "2100-02-28T23:59:59.999999Z");
    dmj_time_format_drf(INT64_C(13574563200000000), t); /* 2400 is */
    CHECK_EQ_STR(t, "2400-02-29T00:00:00Z");
    dmj_time_format_py(INT64_C(1706654573010203), t);
    CHECK_EQ_STR(t, "2024-01-30 22:42:53.010203+00:00");
}

int main(void)
{
    test_import_forms();
    test_import_len();
    test_django_table();
    test_django_details();
    test_format();
    test_round_trips();
    test_format_against_libc();
    return check_done();
}

/* Timestamps: int64 microseconds since the epoch (UTC), parsed from the import and cursor
 * grammars and printed as DRF and Python print them, with integer calendar arithmetic. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmj/time.h"

#define US_PER_SEC INT64_C(1000000)
#define US_PER_DAY (INT64_C(86400) * US_PER_SEC)
/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z, Python's datetime.min and max. */
#define MIN_US (INT64_C(-62135596800) * US_PER_SEC)
#define MAX_US (INT64_C(253402300800) * US_PER_SEC - 1)

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil):
 * years are counted from March so that the leap day is the last day of the year. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* The inverse of days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool is_leap(unsigned y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(unsigned y, unsigned m)
{
    static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Broken-down fields of a parsed text; offset_min is east of UTC. */
struct fields {
    unsigned year, month, day, hour, minute, second, usec;
    int offset_min;
};

/* Validates the calendar fields and converts to UTC microseconds within years 1..9999. */
static int fields_to_us(const struct fields *f, int64_t *out_us)
{
    if (f->year < 1 || f->year > 9999 || f->month < 1 || f->month > 12 || f->day < 1 ||
        f->day > days_in_month(f->year, f->month) || f->hour > 23 || f->minute > 59 ||
        f->second > 59 || f->usec > 999999 || f->offset_min <= -1440 || f->offset_min >= 1440)
        return DMJ_EINVAL;
    int64_t secs = days_from_civil(f->year, f->month, f->day) * 86400 + f->hour * 3600 +
                   f->minute * 60 + f->second - (int64_t)f->offset_min * 60;
    int64_t us = secs * US_PER_SEC + f->usec;
    if (us < MIN_US || us > MAX_US)
        return DMJ_EINVAL;
    *out_us = us;
    return 0;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Reads exactly n digits at s[*i]; false when there are fewer. */
static bool digits_exact(const char *s, size_t len, size_t *i, unsigned n, unsigned *out)
{
    unsigned v = 0;
    if (len - *i < n)
        return false;
    for (unsigned k = 0; k < n; k++) {
        if (!is_digit(s[*i + k]))
            return false;
        v = v * 10 + (unsigned)(s[*i + k] - '0');
    }
    *i += n;
    *out = v;
    return true;
}

/* Reads min..max digits greedily (the regex [0-9]{min,max}); false when fewer than min. */
static bool digits_range(const char *s, size_t len, size_t *i, unsigned min, unsigned max,
                         unsigned *out, unsigned *count)
{
    unsigned v = 0, n = 0;
    while (n < max && *i + n < len && is_digit(s[*i + n])) {
        v = v * 10 + (unsigned)(s[*i + n] - '0');
        n++;
    }
    if (n < min)
        return false;
    *i += n;
    *out = v;
    if (count)
        *count = n;
    return true;
}

static bool at(const char *s, size_t len, size_t i, char c)
{
    return i < len && s[i] == c;
}

/* Fraction digits [i, i+n) read as microseconds, left-justified to six places. */
static unsigned fraction_us(unsigned value, unsigned ndigits)
{
    while (ndigits < 6) {
        value *= 10;
        ndigits++;
    }
    return value;
}

/*
 * The zone suffix, when there is one: 'Z' (and 'z' for the import), or [+-]HH with an
 * optional [:]MM (Django's (:?[0-9]{2})?). Anything the suffix leaves unread is left for the
 * caller's end-of-text check, which is how "+05:3" or "+053" fail in both grammars. Django
 * takes the minutes as int(tz[-2:]) without a range check ("+05:99" is 5 h 99 min; only the
 * total must stay under a day, which fields_to_us checks); the import wants real HH:MM.
 */
static bool parse_zone(const char *s, size_t len, size_t *i, bool import, int *offset_min)
{
    if (at(s, len, *i, 'Z') || (import && at(s, len, *i, 'z'))) {
        (*i)++;
        return true;
    }
    if (!at(s, len, *i, '+') && !at(s, len, *i, '-'))
        return true;
    int sign = s[*i] == '-' ? -1 : 1;
    unsigned hh, mm = 0;
    size_t j = *i + 1;
    if (!digits_exact(s, len, &j, 2, &hh))
        return false;
    *i = j;
    if (at(s, len, j, ':'))
        j++;
    if (digits_exact(s, len, &j, 2, &mm))
        *i = j;
    if (import && (hh > 23 || mm > 59))
        return false;
    *offset_min = sign * (int)(hh * 60 + mm);
    return true;
}

/* The form dmj export and gen_jobs write, YYYY-MM-DDTHH:MM:SS.ffffffZ, read by position
 * (nearly every imported timestamp); false for any other text, which the grammar then
 * reads. It takes exactly what the grammar reads as these fields, so results are equal. */
static bool parse_canonical(const char *s, size_t len, struct fields *f)
{
    static const uint8_t digit_at[20] = {0,  1,  2,  3,  5,  6,  8,  9,  11, 12,
                                         14, 15, 17, 18, 20, 21, 22, 23, 24, 25};
    if (len != 27 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != '.' || s[26] != 'Z')
        return false;
    unsigned d[20];
    bool bad = false;
    for (size_t k = 0; k < 20; k++) {
        d[k] = (unsigned)(unsigned char)s[digit_at[k]] - '0';
        bad |= d[k] > 9;
    }
    if (bad)
        return false;
    f->year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3];
    f->month = d[4] * 10 + d[5];
    f->day = d[6] * 10 + d[7];
    f->hour = d[8] * 10 + d[9];
    f->minute = d[10] * 10 + d[11];
    f->second = d[12] * 10 + d[13];
    f->usec = ((((d[14] * 10 + d[15]) * 10 + d[16]) * 10 + d[17]) * 10 + d[18]) * 10 + d[19];
    f->offset_min = 0;
    return true;
}

int dmj_time_parse(const char *s, size_t len, int64_t *out_us)
{
    struct fields f = {0};
    size_t i = 0;

    if (parse_canonical(s, len, &f))
        return fields_to_us(&f, out_us);

    if (!digits_exact(s, len, &i, 4, &f.year) || !at(s, len, i++, '-') ||
        !digits_exact(s, len, &i, 2, &f.month) || !at(s, len, i++, '-') ||
        !digits_exact(s, len, &i, 2, &f.day))
        return DMJ_EINVAL;
    if (!at(s, len, i, 'T') && !at(s, len, i, ' '))
        return DMJ_EINVAL;
    i++;
    if (!digits_exact(s, len, &i, 2, &f.hour) || !at(s, len, i++, ':') ||
        !digits_exact(s, len, &i, 2, &f.minute) || !at(s, len, i++, ':') ||
        !digits_exact(s, len, &i, 2, &f.second))
        return DMJ_EINVAL;
    if (at(s, len, i, '.')) {
        unsigned v, n;
        i++;
        if (!digits_range(s, len, &i, 1, 6, &v, &n))
            return DMJ_EINVAL;
        f.usec = fraction_us(v, n);
    }
    if (!parse_zone(s, len, &i, true, &f.offset_min))
        return DMJ_EINVAL;
    if (i != len)
        return DMJ_EINVAL;
    return fields_to_us(&f, out_us);
}

/* Python's re "$": the end of the text, or just before one final "\n". */
static bool at_dollar(const char *s, size_t len, size_t i)
{
    return i == len || (i + 1 == len && s[i] == '\n');
}

int dmj_time_parse_django(const char *s, size_t len, int64_t *out_us)
{
    struct fields f = {0};
    size_t i = 0;

    if (!digits_exact(s, len, &i, 4, &f.year) || !at(s, len, i++, '-') ||
        !digits_range(s, len, &i, 1, 2, &f.month, NULL) || !at(s, len, i++, '-') ||
        !digits_range(s, len, &i, 1, 2, &f.day, NULL))
        return DMJ_EINVAL;
    /* parse_date's grammar: the date alone means midnight (naive, so UTC). */
    if (at_dollar(s, len, i))
        return fields_to_us(&f, out_us);
    if (!at(s, len, i, 'T') && !at(s, len, i, ' '))
        return DMJ_EINVAL;
    i++;
    /* Every repetition below is greedy and what follows it can never start with a digit,
     * so the regex engine's backtracking could not find another match: one pass decides. */
    if (!digits_range(s, len, &i, 1, 2, &f.hour, NULL) || !at(s, len, i++, ':') ||
        !digits_range(s, len, &i, 1, 2, &f.minute, NULL))
        return DMJ_EINVAL;
    if (at(s, len, i, ':')) {
        i++;
        if (!digits_range(s, len, &i, 1, 2, &f.second, NULL))
            return DMJ_EINVAL;
        if (at(s, len, i, '.') || at(s, len, i, ',')) {
            unsigned v, n, ignored, m = 0;
            i++;
            if (!digits_range(s, len, &i, 1, 6, &v, &n))
                return DMJ_EINVAL;
            if (n == 6 && !digits_range(s, len, &i, 0, 6, &ignored, &m))
                return DMJ_EINVAL;
            f.usec = fraction_us(v, n);
        }
    }
    if (!parse_zone(s, len, &i, false, &f.offset_min))
        return DMJ_EINVAL;
    if (!at_dollar(s, len, i))
        return DMJ_EINVAL;
    return fields_to_us(&f, out_us);
}

/* Writes v zero-padded to `width` digits at p; returns the end. v < 10^width. */
static char *put_uint(char *p, unsigned v, unsigned width)
{
    for (unsigned k = width; k > 0; k--) {
        p[k - 1] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

/* "YYYY-MM-DD" sep "HH:MM:SS[.ffffff]" of any int64 (years outside 1..9999 included, which
 * are never stored but must still print within the buffer); returns the end. */
static char *put_datetime_any(char *p, int64_t us, char sep)
{
    int64_t days = us / US_PER_DAY, rem = us % US_PER_DAY;
    if (rem < 0) {
        rem += US_PER_DAY;
        days--;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 0) {
        *p++ = '-';
        y = -y;
    }
    unsigned ydigits = 4;
    for (int64_t t = y / 10000; t > 0; t /= 10)
        ydigits++;
    p = put_uint(p, (unsigned)y, ydigits);
    *p++ = '-';
    p = put_uint(p, m, 2);
    *p++ = '-';
    p = put_uint(p, d, 2);
    *p++ = sep;
    unsigned secs = (unsigned)(rem / US_PER_SEC), frac = (unsigned)(rem % US_PER_SEC);
    p = put_uint(p, secs / 3600, 2);
    *p++ = ':';
    p = put_uint(p, secs / 60 % 60, 2);
    *p++ = ':';
    p = put_uint(p, secs % 60, 2);
    if (frac) {
        *p++ = '.';
        p = put_uint(p, frac, 6);
    }
    return p;
}

/* The two digits of every value 0..99, so that a field is written a pair at a time with one
 * division by 100 (a multiplication) instead of a division per digit. */
static const char digit_pairs[201] = "00010203040506070809101112131415161718192021222324"
                                     "25262728293031323334353637383940414243444546474849"
                                     "50515253545556575859606162636465666768697071727374"
                                     "75767778798081828384858687888990919293949596979899";

/* Writes v (0..99) as two digits at p; returns the end. */
static inline char *put_pair(char *p, unsigned v)
{
    p[0] = digit_pairs[2 * v];
    p[1] = digit_pairs[2 * v + 1];
    return p + 2;
}

/*
 * put_datetime_any for the years 1..9999 that the store holds (every job's two timestamps in
 * every rendered page, so this is the hot one): the time counted from 0001-01-01 is never
 * negative, so the day split and Hinnant's civil_from_days need no sign corrections and run
 * in unsigned arithmetic whose divisions by constants are multiplications, and the digits
 * go out in pairs. Same bytes as put_datetime_any (test_time compares them and libc).
 */
static char *put_datetime(char *p, int64_t us, char sep)
{
    if (us < MIN_US || us > MAX_US)
        return put_datetime_any(p, us, sep);
    uint64_t since_min = (uint64_t)(us - MIN_US);
    uint64_t days = since_min / (uint64_t)US_PER_DAY; /* since 0001-01-01 */
    uint64_t rem = since_min % (uint64_t)US_PER_DAY;
    /* civil_from_days counts from 0000-03-01, 306 days before 0001-01-01. */
    uint64_t z = days + 306;
    unsigned era = (unsigned)(z / 146097), doe = (unsigned)(z % 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    unsigned y = yoe + era * 400 + (m <= 2);
    unsigned secs = (unsigned)(rem / (uint64_t)US_PER_SEC);
    unsigned frac = (unsigned)(rem % (uint64_t)US_PER_SEC);

    p = put_pair(p, y / 100);
    p = put_pair(p, y % 100);
    *p++ = '-';
    p = put_pair(p, m);
    *p++ = '-';
    p = put_pair(p, d);
    *p++ = sep;
    p = put_pair(p, secs / 3600);
    *p++ = ':';
    p = put_pair(p, secs / 60 % 60);
    *p++ = ':';
    p = put_pair(p, secs % 60);
    if (frac) {
        *p++ = '.';
        p = put_pair(p, frac / 10000);
        p = put_pair(p, frac / 100 % 100);
        p = put_pair(p, frac % 100);
    }
    return p;
}

size_t dmj_time_format_drf(int64_t us, char out[DMJ_TIME_TEXT_MAX])
{
    char *p = put_datetime(out, us, 'T');
    *p++ = 'Z';
    *p = '\0';
    return (size_t)(p - out);
}

size_t dmj_time_format_py(int64_t us, char out[DMJ_TIME_TEXT_MAX])
{
    char *p = put_datetime(out, us, ' ');
    for (const char *z = "+00:00"; *z; z++)
        *p++ = *z;
    *p = '\0';
    return (size_t)(p - out);
}

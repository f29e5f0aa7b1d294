/* The fuzz oracles' own reading of docs/api.md's grammar (timestamps, UUIDs) and of the
 * import's timestamp form (include/dmj/time.h), written apart from src/common: the grammars are
 * the spec's regular expressions run by the C library's POSIX regex engine, the calendar is
 * Python's datetime rules (proleptic Gregorian, ordinal days as date.toordinal counts them),
 * and nothing here calls into dmj. */
#ifndef DMJ_FUZZ_GRAMMAR_H
#define DMJ_FUZZ_GRAMMAR_H

#include <regex.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Section 0's Timestamp, as Django 3.2's datetime_re and date_re with \d as [0-9]. */
#define GRAMMAR_DJANGO_DATETIME                                                                  \
    "^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})[T ]([0-9]{1,2}):([0-9]{1,2})"                           \
    "(:([0-9]{1,2})([.,]([0-9]{1,6})[0-9]{0,6})?)?(Z|([+-])([0-9]{2})(:?([0-9]{2}))?)?$"
#define GRAMMAR_DJANGO_DATE "^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})$"
/* The import's form (include/dmj/time.h): two-digit fields, seconds required, a fraction of
 * 1 to 6 digits after '.', then 'Z' (or 'z'), +-HH, +-HHMM or +-HH:MM with a real HH:MM. */
#define GRAMMAR_IMPORT                                                                           \
    "^([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2})(:([0-9]{2})(\\.([0-9]{1,6})"       \
    ")?)(Z|z|([+-])([0-9]{2})(:?([0-9]{2}))?)?$"
/* The printed forms: DRF's and Python's str(datetime) in UTC. */
#define GRAMMAR_DRF_OUT "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{6})?Z$"
#define GRAMMAR_PY_OUT                                                                           \
    "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{6})?\\+00:00$"

/* Capture groups of the two datetime expressions above, which number them alike. */
enum { G_YEAR = 1, G_MONTH, G_DAY, G_HOUR, G_MINUTE, G_SECONDS_PART, G_SECOND, G_FRACTION_PART,
       G_FRACTION, G_ZONE, G_ZONE_SIGN, G_ZONE_HH, G_ZONE_MM_PART, G_ZONE_MM, G_COUNT };

static regex_t grammar_re[5];

static inline void grammar_init(void)
{
    static bool done;
    static const char *const patterns[5] = {GRAMMAR_DJANGO_DATETIME, GRAMMAR_DJANGO_DATE,
                                            GRAMMAR_IMPORT, GRAMMAR_DRF_OUT, GRAMMAR_PY_OUT};
    if (done)
        return;
    for (int i = 0; i < 5; i++) {
        if (regcomp(&grammar_re[i], patterns[i], REG_EXTENDED) != 0)
            abort();
    }
    done = true;
}

/* regexec over exactly s[0..n) (a NUL inside matches nothing in these grammars). */
static inline bool grammar_match(int which, const char *s, size_t n, regmatch_t *m, size_t nm)
{
    grammar_init();
    if (memchr(s, '\0', n))
        return false;
    char *z = malloc(n + 1);
    if (!z)
        abort();
    memcpy(z, s, n);
    z[n] = '\0';
    bool ok = regexec(&grammar_re[which], z, nm, m, 0) == 0;
    free(z);
    return ok;
}

static inline long grammar_num(const char *s, const regmatch_t *m)
{
    long v = 0;
    for (regoff_t i = m->rm_so; i < m->rm_eo; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

static inline bool grammar_leap(long y)
{
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

/* Python's date(y, m, d) check, then date.toordinal() (0001-01-01 is day 1). */
static inline bool grammar_ordinal(long y, long m, long d, long *ordinal)
{
    static const int before[13] = {0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    static const int length[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1)
        return false;
    if (d > length[m] + (m == 2 && grammar_leap(y)))
        return false;
    long p = y - 1;
    *ordinal = p * 365 + p / 4 - p / 100 + p / 400 + before[m] + (m > 2 && grammar_leap(y)) + d;
    return true;
}

#define GRAMMAR_EPOCH_ORDINAL 719163L /* date(1970, 1, 1).toordinal() */
#define GRAMMAR_MIN_US INT64_C(-62135596800000000)
#define GRAMMAR_MAX_US INT64_C(253402300799999999)

/* datetime(...) from the captures of a datetime expression, then the zone's offset (which
 * Python's timezone() wants strictly inside a day), then years 1..9999 once in UTC. */
static inline bool grammar_fields(const char *s, const regmatch_t *g, bool real_hhmm, int64_t *us)
{
    long ordinal, hour = grammar_num(s, &g[G_HOUR]), minute = grammar_num(s, &g[G_MINUTE]);
    long second = g[G_SECOND].rm_so >= 0 ? grammar_num(s, &g[G_SECOND]) : 0;
    long micro = 0;
    if (g[G_FRACTION_PART].rm_so >= 0) {
        /* The first six digits after the separator, however the engine split the digits
         * between the captured and the ignored repetition. */
        regoff_t k = g[G_FRACTION_PART].rm_so + 1;
        for (int place = 0; place < 6; place++, k++)
            micro = micro * 10 + (k < g[G_FRACTION_PART].rm_eo ? s[k] - '0' : 0);
    }
    if (!grammar_ordinal(grammar_num(s, &g[G_YEAR]), grammar_num(s, &g[G_MONTH]),
                         grammar_num(s, &g[G_DAY]), &ordinal) ||
        hour > 23 || minute > 59 || second > 59)
        return false;
    long offset = 0;
    if (g[G_ZONE_SIGN].rm_so >= 0) {
        long hh = grammar_num(s, &g[G_ZONE_HH]);
        long mm = g[G_ZONE_MM].rm_so >= 0 ? grammar_num(s, &g[G_ZONE_MM]) : 0;
        if (real_hhmm && (hh > 23 || mm > 59))
            return false;
        offset = hh * 60 + mm;
        if (s[g[G_ZONE_SIGN].rm_so] == '-')
            offset = -offset;
        if (offset <= -1440 || offset >= 1440)
            return false;
    }
    int64_t seconds = ((int64_t)(ordinal - GRAMMAR_EPOCH_ORDINAL) * 24 + hour) * 3600 +
                      minute * 60 + second - (int64_t)offset * 60;
    int64_t v = seconds * 1000000 + micro;
    if (v < GRAMMAR_MIN_US || v > GRAMMAR_MAX_US)
        return false;
    *us = v;
    return true;
}

/* Section 0's Timestamp: parse_datetime, else parse_date at midnight UTC; Python's "$" also
 * matches before one final '\n'. True and the UTC microseconds when `s` is one. */
static inline bool grammar_django_timestamp(const char *s, size_t n, int64_t *us)
{
    regmatch_t g[G_COUNT];
    if (n > 0 && s[n - 1] == '\n')
        n--;
    if (grammar_match(0, s, n, g, G_COUNT))
        return grammar_fields(s, g, false, us);
    if (grammar_match(1, s, n, g, 4)) {
        long ordinal;
        if (!grammar_ordinal(grammar_num(s, &g[1]), grammar_num(s, &g[2]), grammar_num(s, &g[3]),
                             &ordinal))
            return false;
        *us = (int64_t)(ordinal - GRAMMAR_EPOCH_ORDINAL) * 86400 * 1000000;
        return true;
    }
    return false;
}

/* The import's timestamp form. */
static inline bool grammar_import_timestamp(const char *s, size_t n, int64_t *us)
{
    regmatch_t g[G_COUNT];
    return grammar_match(2, s, n, g, G_COUNT) && grammar_fields(s, g, true, us);
}

static inline int grammar_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Python's str.replace(word, ''): every non-overlapping occurrence, left to right. */
static inline size_t grammar_remove(char *s, size_t n, const char *word)
{
    size_t w = strlen(word), k = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= w && memcmp(s + i, word, w) == 0) {
            i += w;
            continue;
        }
        s[k++] = s[i++];
    }
    return k;
}

/* Section 0's UUID: every "urn:" removed, then every "uuid:", '{' and '}' stripped from both
 * ends, every '-' removed, then exactly 32 ASCII hex digits. */
static inline bool grammar_uuid(const char *in, size_t n, uint8_t out[16])
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, in, n);
    n = grammar_remove(s, n, "urn:");
    n = grammar_remove(s, n, "uuid:");
    size_t a = 0;
    while (a < n && (s[a] == '{' || s[a] == '}'))
        a++;
    while (n > a && (s[n - 1] == '{' || s[n - 1] == '}'))
        n--;
    size_t k = grammar_remove(s + a, n - a, "-");
    bool ok = k == 32;
    for (size_t i = 0; ok && i < 32; i += 2) {
        int hi = grammar_hex(s[a + i]), lo = grammar_hex(s[a + i + 1]);
        ok = hi >= 0 && lo >= 0;
        if (ok)
            out[i / 2] = (uint8_t)(hi * 16 + lo);
    }
    free(s);
    return ok;
}

#endif

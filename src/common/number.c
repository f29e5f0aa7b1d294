/* Integers as Python 3.11's int() reads a str: what Django code does with a query value or
 * a URL segment before dmj answers. */
#include <stdint.h>

#include "number.h"

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* CPython refuses integer strings with more digits than this (int_info.default_max_str_digits). */
#define PY_MAX_STR_DIGITS 4300

int dmj_parse_int(const char *s, size_t len, long long *out, bool *overflow)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, end = len;
    while (i < end && is_space(p[i]))
        i++;
    while (end > i && is_space(p[end - 1]))
        end--;
    bool neg = false;
    if (i < end && (p[i] == '+' || p[i] == '-')) {
        neg = p[i] == '-';
        i++;
    }
    if (i == end)
        return DMJ_EINVAL;
    /* Accumulate the magnitude as negative so that INT64_MIN fits. */
    long long v = 0;
    bool over = false;
    size_t digits = 0;
    bool prev_digit = false;
    for (; i < end; i++) {
        unsigned char c = p[i];
        if (c == '_') {
            if (!prev_digit || i + 1 >= end || p[i + 1] < '0' || p[i + 1] > '9')
                return DMJ_EINVAL;
            prev_digit = false;
            continue;
        }
        if (c < '0' || c > '9')
            return DMJ_EINVAL;
        prev_digit = true;
        digits++;
        int d = c - '0';
        if (!over) {
            if (v < (INT64_MIN + d) / 10)
                over = true;
            else
                v = v * 10 - d;
        }
    }
    if (digits > PY_MAX_STR_DIGITS)
        return DMJ_EINVAL;
    if (over) {
        v = neg ? INT64_MIN : INT64_MAX;
    } else if (!neg) {
        if (v == INT64_MIN) {
            over = true;
            v = INT64_MAX;
        } else {
            v = -v;
        }
    }
    *out = v;
    *overflow = over;
    return 0;
}

/** Percent-decoding as Python's urllib.parse unquotes, for the query reader (query.c) and the
 * cursor's (api/cursor.c). */
#ifndef DMJ_PERCENT_H
#define DMJ_PERCENT_H

#include <stdbool.h>
#include <stddef.h>

#include "hex.h"

/** Reads the unit at s[*i] of s[0..n) (*i < n) and moves *i past it: "%XX" with two hex
 * digits (either case) is the byte XX, '+' is a space when `plus` (unquote_plus), and any
 * other byte, a '%' without two hex digits after it included, is itself. Returns the byte;
 * `escaped` (when not NULL) says whether it was "%XX". */
static inline unsigned char dmj_percent_next(const unsigned char *s, size_t n, size_t *i,
                                             bool plus, bool *escaped)
{
    size_t at = *i;
    unsigned char c = s[at];
    int high = -1, low = -1;
    if (c == '%' && n - at > 2) {
        high = dmj_hex_value(s[at + 1]);
        low = dmj_hex_value(s[at + 2]);
    }
    bool escape = high >= 0 && low >= 0;
    if (escaped)
        *escaped = escape;
    if (escape) {
        *i = at + 3;
        return (unsigned char)(high * 16 + low);
    }
    *i = at + 1;
    return c == '+' && plus ? ' ' : c;
}

#endif

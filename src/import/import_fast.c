/* A conservative scanner for the common NDJSON line (one flat object of strings without
 * escapes, numbers and literals): such a line is tokenized here at a few instructions a
 * byte, anything else is left to yajl, which then gives its usual values and messages. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "import_impl.h"
#include "utf8.h"

/* Byte classes: what may appear unescaped inside a string this scanner takes (printable
 * ASCII but the quote and the backslash), and JSON whitespace other than the newline. */
static bool plain(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

static bool blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static bool digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static size_t skip_blank(const unsigned char *p, size_t i, size_t len)
{
    while (i < len && blank(p[i]))
        i++;
    return i;
}

/* A string at p[i] (the opening quote): its contents' end, or 0 when it needs yajl (an
 * escape, a control character, invalid UTF-8, no closing quote); yajl's path then says what
 * is wrong with the same words. */
static size_t string_end(const unsigned char *p, size_t i, size_t len)
{
    i++;
    for (;;) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* Eight bytes at a time while none of them is special (the classic SWAR tests: a
         * byte below 0x20, one with the top bit, one equal to '"' or '\\'); little-endian
         * loads make the lowest flagged byte the first in the text, and that flag is exact
         * (borrows only run upwards). */
        const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
        while (i + 8 <= len) {
            uint64_t v;
            memcpy(&v, p + i, 8);
            uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
            uint64_t special = ((v - ones * 0x20) & ~v) | v | ((q - ones) & ~q) | ((b - ones) & ~b);
            special &= high;
            if (special) {
                i += (size_t)__builtin_ctzll(special) / 8;
                break;
            }
            i += 8;
        }
#endif
        while (i < len && plain(p[i]))
            i++;
        if (i >= len)
            return 0;
        unsigned char c = p[i];
        if (c == '"')
            return i;
        if (c < 0x80)
            return 0; /* a backslash or a control character */
        /* one character past ASCII: its bytes up to the state between characters */
        unsigned st = dmj_utf8_step(DMJ_UTF8_ACCEPT, c);
        for (i++; st > DMJ_UTF8_REJECT && i < len; i++)
            st = dmj_utf8_step(st, p[i]);
        if (st != DMJ_UTF8_ACCEPT)
            return 0;
    }
}

/* A number by JSON's grammar at p[i]: its end, or 0 when it is not one. */
static size_t number_end(const unsigned char *p, size_t i, size_t len)
{
    if (i < len && p[i] == '-')
        i++;
    if (i >= len || !digit(p[i]))
        return 0;
    if (p[i] == '0') {
        i++;
    } else {
        while (i < len && digit(p[i]))
            i++;
    }
    if (i < len && p[i] == '.') {
        i++;
        if (i >= len || !digit(p[i]))
            return 0;
        while (i < len && digit(p[i]))
            i++;
    }
    if (i < len && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < len && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= len || !digit(p[i]))
            return 0;
        while (i < len && digit(p[i]))
            i++;
    }
    /* what follows must end the number, or yajl would read it differently */
    if (i < len && !blank(p[i]) && p[i] != ',' && p[i] != '}')
        return 0;
    return i;
}

static bool literal(const unsigned char *p, size_t i, size_t len, const char *word, size_t n)
{
    if (len - i < n)
        return false;
    for (size_t k = 0; k < n; k++) {
        if (p[i + k] != (unsigned char)word[k])
            return false;
    }
    return i + n == len || blank(p[i + n]) || p[i + n] == ',' || p[i + n] == '}';
}

int dmj__import_scan_line(const unsigned char *p, size_t len, struct dmj__import_tok *toks,
                          size_t max)
{
    size_t i = skip_blank(p, 0, len), n = 0;
    if (i >= len || p[i] != '{')
        return -1;
    i = skip_blank(p, i + 1, len);
    if (i < len && p[i] == '}') {
        i++;
    } else {
        for (;;) {
            /* "key" : value */
            if (i >= len || p[i] != '"' || n + 2 > max)
                return -1;
            size_t e = string_end(p, i, len);
            if (e == 0)
                return -1;
            toks[n++] = (struct dmj__import_tok){DMJ__T_KEY, (uint32_t)(i + 1),
                                                 (uint32_t)(e - i - 1)};
            i = skip_blank(p, e + 1, len);
            if (i >= len || p[i] != ':')
                return -1;
            i = skip_blank(p, i + 1, len);
            if (i >= len)
                return -1;
            struct dmj__import_tok *t = &toks[n++];
            t->off = (uint32_t)i;
            switch (p[i]) {
            case '"':
                e = string_end(p, i, len);
                if (e == 0)
                    return -1;
                t->type = DMJ__T_STRING;
                t->off = (uint32_t)(i + 1);
                t->len = (uint32_t)(e - i - 1);
                i = e + 1;
                break;
            case 't':
                if (!literal(p, i, len, "true", 4))
                    return -1;
                t->type = DMJ__T_TRUE;
                t->len = 4;
                i += 4;
                break;
            case 'f':
                if (!literal(p, i, len, "false", 5))
                    return -1;
                t->type = DMJ__T_FALSE;
                t->len = 5;
                i += 5;
                break;
            case 'n':
                if (!literal(p, i, len, "null", 4))
                    return -1;
                t->type = DMJ__T_NULL;
                t->len = 4;
                i += 4;
                break;
            default:
                e = number_end(p, i, len);
                if (e == 0)
                    return -1;
                t->type = DMJ__T_NUMBER;
                t->len = (uint32_t)(e - i);
                i = e;
                break;
            }
            i = skip_blank(p, i, len);
            if (i < len && p[i] == ',') {
                i = skip_blank(p, i + 1, len);
                continue;
            }
            if (i < len && p[i] == '}') {
                i++;
                break;
            }
            return -1;
        }
    }
    /* one object to a line: anything after it but blanks is yajl's business */
    i = skip_blank(p, i, len);
    return i == len ? (int)n : -1;
}

/* Fuzz target: arbitrary bytes as the `cursor` value. dmj_cursor_decode must decide as DRF
 * 3.14's CursorPagination.decode_cursor does (restated below from Debian's
 * /usr/lib/python3/dist-packages/rest_framework/pagination.py and the CPython 3.11 calls it
 * makes, apart from src/api/cursor.c), with the two differences docs/api.md states: the same
 * verdict, offset, reverse flag and position. Whatever decodes must also encode to pure
 * base64 that decodes to the same cursor. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"

#include "grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/' || c == '=';
}

/* ---- the rule ------------------------------------------------------------------------
 *
 * decode_cursor(request):
 *   querystring = b64decode(encoded.encode('ascii')).decode('ascii')
 *   tokens = parse.parse_qs(querystring, keep_blank_values=True)
 *   offset = _positive_int(tokens.get('o', ['0'])[0], cutoff=1000)   # int(); < 0 is an error
 *   reverse = bool(int(tokens.get('r', ['0'])[0]))
 *   position = tokens.get('p', [None])[0]
 * and any TypeError or ValueError is 404 Invalid cursor. dmj differs as docs/api.md says:
 * int() reads ASCII only (section 9.8, section 0's Integer), and a position must be a
 * timestamp of section 0 (section 9.3: PostHog fails with a 500 later instead). */

struct rule {
    bool ok;
    uint64_t offset;
    bool reverse;
    bool has_position;
    int64_t position_us;
    size_t position_len;
    char position[1024];
};

/* The value of a base64 character, -1 for '=' and -2 for anything else. */
static int sextet(unsigned char c)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (c == '=')
        return -1;
    const char *p = c ? strchr(alphabet, c) : NULL;
    return p ? (int)(p - alphabet) : -2;
}

/* base64.b64decode(s) (binascii.a2b_base64, strict_mode=False): characters outside the
 * alphabet are dropped; the data characters are counted in groups of four; a run of '='
 * ends the input once the group holds two or three data characters and the run fills it
 * to four (a '=' earlier in a group is dropped like any other stray character); at the end
 * of the input a group that is not empty is an error ("Incorrect padding"). The bytes are
 * the data characters' bits, eight at a time, leftover bits dropped. Returns the length, or
 * -1 for the error. `out` has room for n bytes. */
static long b64decode(const uint8_t *s, size_t n, uint8_t *out)
{
    uint32_t bits = 0;
    unsigned nbits = 0, in_group = 0, pad_run = 0;
    long len = 0;
    for (size_t i = 0; i < n; i++) {
        int v = sextet(s[i]);
        if (v == -2)
            continue;
        if (v == -1) {
            pad_run++;
            if (in_group >= 2 && in_group + pad_run >= 4)
                return len;
            continue;
        }
        pad_run = 0;
        in_group = (in_group + 1) % 4;
        bits = (bits << 6) | (uint32_t)v;
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            out[len++] = (uint8_t)(bits >> nbits);
            bits &= (1u << nbits) - 1;
        }
    }
    return in_group == 0 ? len : -1;
}

static int hex_digit(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (uint8_t)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* parse_qsl's unquote(x.replace('+', ' ')) as bytes: '+' is a space, '%' and two hex digits
 * one byte, any other '%' itself. Returns the length written to `out`. (What UTF-8 text
 * those bytes make does not matter below: a key is "o", "r" or "p" exactly when its bytes
 * are, and values must be ASCII.) */
static size_t unquote_plus(const uint8_t *s, size_t n, uint8_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[k++] = ' ';
        } else if (s[i] == '%' && i + 2 < n && hex_digit(s[i + 1]) >= 0 &&
                   hex_digit(s[i + 2]) >= 0) {
            out[k++] = (uint8_t)(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
            i += 2;
        } else {
            out[k++] = s[i];
        }
    }
    return k;
}

static bool ascii_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* int(s) on ASCII text: spaces around, a sign, digits with single '_' between digits. The
 * sign, whether the value is zero, and the magnitude saturated at `cap`. */
static bool python_int(const uint8_t *s, size_t n, bool *negative, bool *zero, uint64_t cap,
                       uint64_t *value)
{
    size_t a = 0;
    while (a < n && ascii_space(s[a]))
        a++;
    while (n > a && ascii_space(s[n - 1]))
        n--;
    *negative = false;
    if (a < n && (s[a] == '+' || s[a] == '-'))
        *negative = s[a++] == '-';
    if (a == n)
        return false;
    *zero = true;
    *value = 0;
    for (size_t i = a; i < n; i++) {
        if (s[i] == '_') {
            if (i == a || i + 1 == n || s[i + 1] == '_')
                return false;
            continue;
        }
        if (s[i] < '0' || s[i] > '9')
            return false;
        *zero = *zero && s[i] == '0';
        *value = *value > cap / 10 ? cap : *value * 10 + (uint64_t)(s[i] - '0');
        if (*value > cap)
            *value = cap;
    }
    return true;
}

static bool all_ascii(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= 0x80)
            return false;
    }
    return true;
}

static void expected(const uint8_t *data, size_t size, struct rule *r)
{
    memset(r, 0, sizeof *r);
    if (!all_ascii(data, size)) /* encoded.encode('ascii') */
        return;
    uint8_t *qs = malloc(size + 1), *key = malloc(size + 1), *val = malloc(size + 1);
    if (!qs || !key || !val)
        abort();
    long qlen = b64decode(data, size, qs);
    if (qlen < 0 || !all_ascii(qs, (size_t)qlen)) /* binascii.Error; .decode('ascii') */
        goto out;
    /* parse_qs(keep_blank_values=True): fields split at '&', empty ones skipped, a field
     * without '=' an empty value; the first value of each key counts. */
    const uint8_t *first[3] = {NULL, NULL, NULL};
    size_t first_len[3] = {0, 0, 0};
    uint8_t *vals = malloc((size_t)qlen + 1); /* each key's first value, unquoted */
    if (!vals)
        abort();
    size_t vals_used = 0;
    for (long start = 0; start <= qlen;) {
        long end = start;
        while (end < qlen && qs[end] != '&')
            end++;
        if (end > start) {
            long eq = start;
            while (eq < end && qs[eq] != '=')
                eq++;
            size_t klen = unquote_plus(qs + start, (size_t)(eq - start), key);
            int which = klen != 1 ? -1 : key[0] == 'o' ? 0 : key[0] == 'r' ? 1 : key[0] == 'p' ? 2 : -1;
            if (which >= 0 && !first[which]) {
                size_t vlen = eq < end ? unquote_plus(qs + eq + 1, (size_t)(end - eq - 1), val) : 0;
                memcpy(vals + vals_used, val, vlen);
                first[which] = vals + vals_used;
                first_len[which] = vlen;
                vals_used += vlen;
            }
        }
        start = end + 1;
    }
    bool negative, zero, ok = true;
    uint64_t v;
    if (first[0]) {
        ok = all_ascii(first[0], first_len[0]) &&
             python_int(first[0], first_len[0], &negative, &zero, DMJ_CURSOR_OFFSET_CUTOFF, &v) &&
             (!negative || zero);
        r->offset = ok && !negative ? v : 0;
    }
    if (ok && first[1]) {
        ok = all_ascii(first[1], first_len[1]) &&
             python_int(first[1], first_len[1], &negative, &zero, 1, &v);
        r->reverse = ok && !zero;
    }
    if (ok && first[2]) {
        ok = all_ascii(first[2], first_len[2]) &&
             grammar_django_timestamp((const char *)first[2], first_len[2], &r->position_us) &&
             first_len[2] < sizeof r->position;
        if (ok) {
            r->has_position = true;
            r->position_len = first_len[2];
            memcpy(r->position, first[2], first_len[2]);
        }
    }
    r->ok = ok;
    free(vals);
out:
    free(qs);
    free(key);
    free(val);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dmj_cursor c, again, untouched;
    /* Out-parameters are written only on success (STYLE.md): a refused cursor leaves a
     * poisoned struct exactly as it was. */
    static struct rule want;
    expected(data, size, &want);
    memset(&c, 0xA5, sizeof c);
    memcpy(&untouched, &c, sizeof c);
    int rc = dmj_cursor_decode((const char *)data, size, &c);
    if (rc != 0) {
        if (want.ok) {
            fprintf(stderr, "fuzz_cursor: refused (%d), DRF's rule decodes it (o=%llu r=%d)\n",
                    rc, (unsigned long long)want.offset, want.reverse);
            abort();
        }
        if (memcmp(&c, &untouched, sizeof c) != 0)
            abort();
        return 0;
    }
    if (!want.ok || c.offset != want.offset || c.reverse != want.reverse ||
        c.has_position != want.has_position ||
        (c.has_position &&
         (c.position_len != want.position_len || c.position_us != want.position_us ||
          memcmp(c.position, want.position, want.position_len) != 0))) {
        fprintf(stderr,
                "fuzz_cursor: decoded o=%llu r=%d p=%d (%lld); DRF's rule: %s o=%llu r=%d p=%d "
                "(%lld)\n",
                (unsigned long long)c.offset, c.reverse, c.has_position,
                (long long)c.position_us, want.ok ? "decodes," : "refuses;",
                (unsigned long long)want.offset, want.reverse, want.has_position,
                (long long)want.position_us);
        abort();
    }
    if (c.offset > DMJ_CURSOR_OFFSET_CUTOFF || c.position_len > DMJ_CURSOR_POSITION_MAX ||
        (c.has_position && c.position[c.position_len] != '\0'))
        abort();

    struct dmj_buf b;
    dmj_buf_init(&b, 4096);
    if (dmj_cursor_encode(&c, &b) != 0)
        abort();
    for (size_t i = 0; i < b.len; i++) {
        if (!b64_char((unsigned char)b.data[i]))
            abort();
    }
    if (dmj_cursor_decode(b.len ? b.data : "", b.len, &again) != 0)
        abort();
    if (again.offset != c.offset || again.reverse != c.reverse ||
        again.has_position != c.has_position)
        abort();
    if (c.has_position &&
        (again.position_len != c.position_len || again.position_us != c.position_us ||
         memcmp(again.position, c.position, c.position_len) != 0))
        abort();
    dmj_buf_dispose(&b);
    return 0;
}

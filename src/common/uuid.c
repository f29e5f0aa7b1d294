/* UUID text parsing with Python uuid.UUID's rules (ASCII hex only) and lowercase printing. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hex.h"
#include "dmj/uuid.h"

/*
 * Python computes s.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "")
 * and wants exactly 32 hex digits left. The input may be arbitrarily long (any number of
 * removable pieces), so instead of building the intermediate strings we run the three
 * passes as a pipeline of small streams: stage 1 yields the characters of s1, stage 2
 * keeps a five-character window of s1 to drop "uuid:" the way str.replace does (left to
 * right, non-overlapping, no rescan of what it produced), and the last stage applies the
 * brace strip and the digit count. Nothing is allocated and nothing past `len` is read.
 */

struct urn_stream {
    const char *s;
    size_t len;
    size_t i;
};

/* Next character of s.replace("urn:", ""), or -1 at the end. */
static int urn_next(struct urn_stream *u)
{
    while (u->i < u->len) {
        if (u->len - u->i >= 4 && memcmp(u->s + u->i, "urn:", 4) == 0) {
            u->i += 4;
            continue;
        }
        return (unsigned char)u->s[u->i++];
    }
    return -1;
}

struct uuid_stream {
    struct urn_stream urn;
    int win[5]; /* lookahead over stage 1; -1 marks its end */
    unsigned n; /* characters held in win */
};

/* Next character of s1.replace("uuid:", ""), or -1 at the end. */
static int uuid_next(struct uuid_stream *st)
{
    for (;;) {
        while (st->n < 5) {
            int c = urn_next(&st->urn);
            if (c < 0)
                break;
            st->win[st->n++] = c;
        }
        if (st->n == 0)
            return -1;
        if (st->n == 5 && st->win[0] == 'u' && st->win[1] == 'u' && st->win[2] == 'i' &&
            st->win[3] == 'd' && st->win[4] == ':') {
            st->n = 0;
            continue;
        }
        int c = st->win[0];
        memmove(st->win, st->win + 1, (st->n - 1) * sizeof st->win[0]);
        st->n--;
        return c;
    }
}

/* The canonical 8-4-4-4-12 spelling, which is nearly every input (job ids in imports and
 * URLs), decoded without the general pipeline; false when `s` is anything else. */
static bool parse_canonical(const char *s, size_t len, uint8_t out[16])
{
    /* Where each byte's two digits start, around the hyphens at 8, 13, 18 and 23. */
    static const unsigned char pos[16] = {0,  2,  4,  6,  9,  11, 14, 16,
                                          19, 21, 24, 26, 28, 30, 32, 34};
    uint8_t id[16];
    if (len != DMJ_UUID_TEXT_LEN || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
        return false;
    for (unsigned k = 0; k < 16; k++) {
        int hi = dmj_hex_value((unsigned char)s[pos[k]]),
            lo = dmj_hex_value((unsigned char)s[pos[k] + 1]);
        if (hi < 0 || lo < 0)
            return false;
        id[k] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(out, id, 16);
    return true;
}

int dmj_uuid_parse(const char *s, size_t len, uint8_t out[16])
{
    if (parse_canonical(s, len, out))
        return 0;
    struct uuid_stream st = {.urn = {.s = s, .len = len, .i = 0}, .n = 0};
    uint8_t id[16];
    unsigned digits = 0;
    bool leading = true;   /* still inside the braces that strip() removes at the start */
    bool trailing = false; /* saw a brace after content: only braces may follow */

    for (int c = uuid_next(&st); c >= 0; c = uuid_next(&st)) {
        if (c == '{' || c == '}') {
            if (!leading)
                trailing = true;
            continue;
        }
        leading = false;
        /* A non-brace after a brace that followed content: that brace stays in the string. */
        if (trailing)
            return DMJ_EINVAL;
        if (c == '-')
            continue;
        int v = dmj_hex_value((unsigned char)c);
        if (v < 0 || digits == 32)
            return DMJ_EINVAL;
        if (digits % 2 == 0)
            id[digits / 2] = (uint8_t)(v << 4);
        else
            id[digits / 2] |= (uint8_t)v;
        digits++;
    }
    if (digits != 32)
        return DMJ_EINVAL;
    memcpy(out, id, 16);
    return 0;
}

void dmj_uuid_format(const uint8_t id[16], char out[DMJ_UUID_TEXT_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (unsigned i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[id[i] >> 4];
        out[o++] = hex[id[i] & 0xf];
    }
    out[o] = '\0';
}

/* Strict UTF-8 (RFC 3629, section 4's grammar): a state machine of its second-byte ranges. */
#include <stdint.h>
#include <string.h>

#include "utf8.h"

/* The states inside a character: how many continuation bytes are left, and for the second
 * byte of four leads the narrower range that keeps the character out of the overlong forms,
 * the surrogates and the code points past U+10FFFF. */
enum {
    TAIL1 = 2, /* one more 80..BF */
    TAIL2,     /* two more */
    TAIL3,     /* three more */
    AFTER_E0,  /* A0..BF, then one: E0 80..9F would be overlong */
    AFTER_ED,  /* 80..9F, then one: ED A0..BF are the surrogates */
    AFTER_F0,  /* 90..BF, then two: F0 80..8F would be overlong */
    AFTER_F4,  /* 80..8F, then two: F4 90.. is past U+10FFFF */
};

static unsigned within(unsigned char c, unsigned char lo, unsigned char hi, unsigned next)
{
    return c >= lo && c <= hi ? next : DMJ_UTF8_REJECT;
}

unsigned dmj_utf8_step(unsigned state, unsigned char c)
{
    switch (state) {
    case DMJ_UTF8_ACCEPT:
        if (c < 0x80)
            return DMJ_UTF8_ACCEPT;
        if (c < 0xc2)
            return DMJ_UTF8_REJECT; /* a continuation byte, or C0/C1 (overlong ASCII) */
        if (c < 0xe0)
            return TAIL1;
        if (c == 0xe0)
            return AFTER_E0;
        if (c == 0xed)
            return AFTER_ED;
        if (c < 0xf0)
            return TAIL2;
        if (c == 0xf0)
            return AFTER_F0;
        if (c < 0xf4)
            return TAIL3;
        if (c == 0xf4)
            return AFTER_F4;
        return DMJ_UTF8_REJECT; /* F5..FF lead nothing */
    case TAIL1:
        return within(c, 0x80, 0xbf, DMJ_UTF8_ACCEPT);
    case TAIL2:
        return within(c, 0x80, 0xbf, TAIL1);
    case TAIL3:
        return within(c, 0x80, 0xbf, TAIL2);
    case AFTER_E0:
        return within(c, 0xa0, 0xbf, TAIL1);
    case AFTER_ED:
        return within(c, 0x80, 0x9f, TAIL1);
    case AFTER_F0:
        return within(c, 0x90, 0xbf, TAIL2);
    case AFTER_F4:
        return within(c, 0x80, 0x8f, TAIL2);
    default:
        return DMJ_UTF8_REJECT;
    }
}

bool dmj_utf8_valid(const void *s, size_t len)
{
    const unsigned char *p = s;
    unsigned state = DMJ_UTF8_ACCEPT;
    size_t i = 0;
    while (i < len) {
        /* ASCII eight bytes at a time between characters: most stored text is ASCII */
        if (state == DMJ_UTF8_ACCEPT) {
            uint64_t v;
            while (len - i >= 8) {
                memcpy(&v, p + i, 8);
                if (v & 0x8080808080808080u)
                    break;
                i += 8;
            }
            if (i == len)
                break;
        }
        state = dmj_utf8_step(state, p[i++]);
        if (state == DMJ_UTF8_REJECT)
            return false;
    }
    return state == DMJ_UTF8_ACCEPT;
}

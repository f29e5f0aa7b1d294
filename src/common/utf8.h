/* Strict UTF-8 as RFC 3629 defines it: the one check every string dmj stores goes through. */
#ifndef DMJ_UTF8_H
#define DMJ_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* States of dmj_utf8_step: between characters, after a byte no valid text has there (it
 * stays), and five states inside a character. */
enum {
    DMJ_UTF8_ACCEPT = 0,
    DMJ_UTF8_REJECT = 1,
};

/** The state after byte `c` in `state` (DMJ_UTF8_ACCEPT to start): text is valid when every
 * step avoids DMJ_UTF8_REJECT and the last one gives DMJ_UTF8_ACCEPT. No overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing past U+10FFFF, no truncated sequences. */
unsigned dmj_utf8_step(unsigned state, unsigned char c);

/** Whether s[0, len) is valid UTF-8 by dmj_utf8_step (NUL is a character like any other). */
bool dmj_utf8_valid(const void *s, size_t len);

#endif

/* The strict UTF-8 check of the strings yajl parses, escapes included, read from the raw text
 * beside yajl (whose own check takes overlong forms and surrogates, and whose \u decoding
 * pairs a high surrogate with whatever escape follows). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hex.h"
#include "import_impl.h"
#include "utf8.h"

enum { OUT, IN, ESCAPE, HEX };

void dmj__import_text_reset(struct dmj__import_text *t)
{
    *t = (struct dmj__import_text){.where = OUT, .utf8 = DMJ_UTF8_ACCEPT};
}

/* The code unit of a \uXXXX just read. */
static void unit_done(struct dmj__import_text *t)
{
    unsigned u = t->unit;
    if (u >= 0xd800 && u <= 0xdbff) {
        if (t->high)
            t->bad = true; /* two high halves */
        t->high = (uint16_t)u;
    } else if (u >= 0xdc00 && u <= 0xdfff) {
        if (!t->high)
            t->bad = true; /* a low half alone */
        t->high = 0;
    } else if (t->high) {
        t->bad = true; /* a high half followed by another character */
        t->high = 0;
    }
}

void dmj__import_text_scan(struct dmj__import_text *t, const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        switch (t->where) {
        case OUT:
            if (c == '"') {
                t->where = IN;
                t->bad = false;
                t->high = 0;
                t->utf8 = DMJ_UTF8_ACCEPT;
            }
            break;
        case IN:
            /* a quote or a backslash ends any character: one cut short is invalid, and so is
             * a high surrogate with anything but an escape after it */
            if (c == '"' || c == '\\') {
                if (t->utf8 != DMJ_UTF8_ACCEPT)
                    t->bad = true;
                t->utf8 = DMJ_UTF8_ACCEPT;
                if (c == '"') {
                    if (t->high)
                        t->bad = true;
                    t->where = OUT;
                } else {
                    t->where = ESCAPE;
                }
                break;
            }
            if (t->high) {
                t->bad = true;
                t->high = 0;
            }
            t->utf8 = (uint8_t)dmj_utf8_step(t->utf8, c);
            if (t->utf8 == DMJ_UTF8_REJECT) {
                t->bad = true;
                t->utf8 = DMJ_UTF8_ACCEPT; /* the verdict is in: read on to the quote */
            }
            break;
        case ESCAPE:
            if (c == 'u') {
                t->where = HEX;
                t->digits = 4;
                t->unit = 0;
                break;
            }
            if (t->high) {
                t->bad = true; /* \n, \" ... after a high half */
                t->high = 0;
            }
            t->where = IN;
            break;
        case HEX: {
            int digit = dmj_hex_value(c); /* not one: yajl refuses the text anyway */
            t->unit = (uint16_t)(t->unit << 4 | (digit < 0 ? 0u : (unsigned)digit));
            if (--t->digits == 0) {
                unit_done(t);
                t->where = IN;
            }
            break;
        }
        }
    }
}

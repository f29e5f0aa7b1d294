/** Hex digits, for the parsers that read %XX escapes, UUIDs and COPY's \xHH. */
#ifndef DMJ_HEX_H
#define DMJ_HEX_H

/** The value of an ASCII hex digit (either case), or -1 for any other byte. */
static inline int dmj_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif

/* Fuzz target: arbitrary bytes as the `cursor` value; whatever decodes must encode to pure
 * base64 that decodes to the same offset, direction and position. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dmj/cursor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/' || c == '=';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dmj_cursor c, again, untouched;
    /* Out-parameters are written only on success (STYLE.md): a refused cursor leaves a
     * poisoned struct exactly as it was. */
    memset(&c, 0xA5, sizeof c);
    memcpy(&untouched, &c, sizeof c);
    if (dmj_cursor_decode((const char *)data, size, &c) != 0) {
        if (memcmp(&c, &untouched, sizeof c) != 0)
            abort();
        return 0;
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

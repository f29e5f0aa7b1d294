/* dmj_json_add_string against a byte-at-a-time reference of DRF's escaping, over random
 * strings dense in the bytes that matter (quotes, backslashes, controls, U+2028/9 and their
 * broken prefixes) at every offset, so the 16- and 8-byte scans are checked at their edges. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dmj/json.h"

/* Python's json.dumps(ensure_ascii=False) with U+2028/U+2029 escaped, one byte at a time. */
static size_t reference(const unsigned char *s, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;
    out[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        const char *two = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t"
                          : c == '\b' ? "\\b"
                          : c == '\f' ? "\\f"
                                      : NULL;
        if (two) {
            memcpy(out + k, two, 2);
            k += 2;
        } else if (c < 0x20) {
            memcpy(out + k, "\\u00", 4);
            out[k + 4] = hex[c >> 4];
            out[k + 5] = hex[c & 0xf];
            k += 6;
        } else if (c == 0xE2 && i + 2 < n && s[i + 1] == 0x80 &&
                   (s[i + 2] == 0xA8 || s[i + 2] == 0xA9)) {
            memcpy(out + k, s[i + 2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
            k += 6;
            i += 2;
        } else {
            out[k++] = (char)c;
        }
    }
    out[k++] = '"';
    return k;
}

int main(void)
{
    static const unsigned char special[] = {'"',  '\\', '\n', 0x00, 0x01, 0x1f, 0x20, 0xE2,
                                            0x80, 0xA8, 0xA9, 0x7f, 0xff, 0xE1, 0x21, '/'};
    unsigned char s[96];
    char want[96 * 6 + 2];
    struct dmj_buf b;
    unsigned mismatches = 0;
    uint64_t x = 0x9e3779b97f4a7c15ULL;

    dmj_buf_init(&b, 1 << 16);
    for (int t = 0; t < 200000; t++) {
        /* xorshift64: the same strings on every run */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t n = (size_t)(x % sizeof s);
        unsigned density = (unsigned)(x >> 8) % 4; /* 0: all special, else 1 in 20 */
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bool pick = density == 0 || (x >> 20) % 20 == 0;
            s[i] =
                pick ? special[(x >> 32) % sizeof special] : (unsigned char)('a' + (x >> 40) % 26);
        }
        dmj_buf_reset(&b);
        CHECK_EQ_INT(dmj_json_add_string(&b, (struct dmj_str){(const char *)s, n}), 0);
        size_t k = reference(s, n, want);
        if (b.len != k || memcmp(b.data, want, k) != 0) {
            if (mismatches++ < 5)
                fprintf(stderr, "string %d (%zu bytes): got %.*s, want %.*s\n", t, n, (int)b.len,
                        b.data, (int)k, want);
        }
    }
    CHECK_EQ_INT((int)mismatches, 0);

    /* A served job renders its strings the same way. */
    struct dmj_job job;
    memset(&job, 0, sizeof job);
    job.workflow_id = (struct dmj_str){"a\"b\\c\xe2\x80\xa8"
                                       "0123456789abcdef\x01",
                                       25};
    dmj_buf_reset(&b);
    CHECK_EQ_INT(dmj_json_add_job(&b, &job), 0);
    CHECK(strstr(b.data, "\"workflow_id\":\"a\\\"b\\\\c\\u20280123456789abcdef\\u0001\",") != NULL);
    dmj_buf_dispose(&b);
    return check_done();
}

/* Tests of the bounded growable buffer. */
#include "check.h"
#include "dmj/buf.h"

int main(void)
{
    struct dmj_buf b;
    dmj_buf_init(&b, 8);
    CHECK_EQ_INT(dmj_buf_adds(&b, "abcd"), 0);
    CHECK_EQ_INT(dmj_buf_printf(&b, "%d", 123), 0);
    CHECK_EQ_STR(b.data, "abcd123");
    CHECK_EQ_INT(dmj_buf_add(&b, "xy", 2), DMJ_ETOOBIG);
    CHECK_EQ_STR(b.data, "abcd123"); /* unchanged after a refused append */
    CHECK_EQ_INT(dmj_buf_addc(&b, 'z'), 0);
    CHECK_EQ_INT(b.len, 8);
    CHECK_EQ_INT(dmj_buf_addc(&b, 'w'), DMJ_ETOOBIG); /* at the maximum */
    CHECK_EQ_STR(b.data, "abcd123z");
    dmj_buf_reset(&b);
    CHECK_EQ_INT(b.len, 0);
    /* rollback: an error cuts back to the length given, success keeps everything */
    CHECK_EQ_INT(dmj_buf_adds(&b, "ab"), 0);
    CHECK_EQ_INT(dmj_buf_adds(&b, "cd"), 0);
    CHECK_EQ_INT(dmj_buf_rollback(&b, 2, 0), 0);
    CHECK_EQ_STR(b.data, "abcd");
    CHECK_EQ_INT(dmj_buf_rollback(&b, 2, DMJ_ETOOBIG), DMJ_ETOOBIG);
    CHECK_EQ_STR(b.data, "ab");
    CHECK_EQ_INT(b.len, 2);
    dmj_buf_dispose(&b);

    /* one byte at a time across the buffer's growth, NUL-terminated after each */
    dmj_buf_init(&b, 1000);
    for (int i = 0; i < 1000; i++) {
        CHECK_EQ_INT(dmj_buf_addc(&b, (char)('a' + i % 26)), 0);
        CHECK_EQ_INT(b.data[b.len], '\0');
    }
    CHECK_EQ_INT(b.len, 1000);
    CHECK_EQ_INT(b.data[999], 'a' + 999 % 26);
    CHECK_EQ_INT(dmj_buf_addc(&b, 'x'), DMJ_ETOOBIG);
    CHECK_EQ_INT(b.len, 1000);
    dmj_buf_dispose(&b);
    return check_done();
}
